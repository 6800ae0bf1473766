//! Scenario file loader: any text gives a scenario or an error that points
//! at a line of that text, never a panic; session script steps name lines of
//! the text too.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use mtaspec::suite::{parse_scenario, Step, SuiteError};

/// Pieces of scenario files: keys, tables, values in and out of range.
#[rustfmt::skip]
const TOKENS: &[&str] = &[
    "title = \"t\"\n", "rule = \"r\"\n", "rfc = \"RFC 5321 §5.1\"\n", "strength = \"MUST\"\n",
    "strength = \"SHOULD\"\n", "strength = \"may\"\n", "deadline = \"20s\"\n", "settle = \"1h 2m\"\n",
    "deadline = \"99999999999999999999y\"\n", "[dns]\n", "records = [", "faults = [", "]\n", ", ",
    "\"dest.test MX 10 mx1.dest.test\"", "\"dest.test MX 0 .\"", "\"mx1.dest.test A 192.0.2.1\"",
    "\"mx1.dest.test AAAA ::1\"", "\"a.test CNAME b.test\"", "\"a.test TXT \\\"v=spf1\\\"\"",
    "\"dest.test MX servfail\"", "\"dest.test timeout\"", "\"example.com MX 10 x\"",
    "[hosts.mx1]\n", "[hosts.sender-mx]\n", "name = \"mx1.dest.test\"\n", "address = false\n",
    "attempt = [{ connect = \"refuse\" }]\n", "[[hosts.mx1.attempt]]\n", "connect = \"reset\"\n",
    "connect = \"accept\"\n", "greeting = ", "ehlo = ", "mail = ", "rcpt = ", "data = ", "eod = ",
    "quit = ", "\"451 4.3.0 try later\"", "\"250-a\\n250 b\"", "\"250\"", "\"drop\"", "\"stall\"",
    "\"x\"", "\"\"", "\"25\"", "\"250-a\\n\\n250 b\"", "[\"550 5.1.1 no\", \"250 ok\"]", "[]",
    "[[message]]\n", "from = \"a@src.test\"\n", "from = \"\"\n", "to = [\"b@dest.test\"]\n",
    "to = []\n", "subject = \"s\"\n", "headers = [\"X-A: b\"]\n", "received = 30\n",
    "mail_params = [\"RET=HDRS\"]\n", "[[expect]]\n", "delivered = { host = \"mx1\" }\n",
    "order = [\"mx1\", \"sender-mx\"]\n", "contacted = \"mx1\"\n", "not_contacted = \"mx2\"\n",
    "accepted = true\n", "dsn = { status = \"5.1.1\", action = \"failed\" }\n",
    "dsn = { status = \"5.\" }\n", "no_dsn = true\n", "no_dsn = false\n",
    "\n", "\"", "'", "=",
    "[", "]", "{", "}", "#", "\\", "é", "\r\n", "\t", "0", ".", "-",
    // Inbound sessions (appended: earlier seeds keep their token numbers).
    "[[session]]\n", "from = \"trusted\"\n", "script = '''\n", "'''\n", "< 220\n",
    "< 2xx 2.1 /ok/\n", "< 500|502 within 5s\n", "< closed\n", "< nothing 1s\n",
    "> EHLO client.test\n", "send \"a\\r\\n.\\n\\x00\"\n", "data \"x\\r\\n.\\r\\n\"\n",
    "bdat-last \"{y*3}\"\n", "pause 1ms\n", "starttls\n", "enhanced on\n", "repeat 3\n", "end\n",
    "{i}", "\\x", "/", "!/",
    "relayed = { host = \"mx1\", count = 1, body = \"as-sent\", smuggled_from = \"m@src.test\" }\n",
];

fn text(data: &[u8]) -> String {
    let Some((&mode, rest)) = data.split_first() else {
        return String::new();
    };
    if mode & 1 == 0 {
        return String::from_utf8_lossy(rest).into_owned();
    }
    let mut out = String::new();
    for &b in rest {
        let i = usize::from(b);
        if i < TOKENS.len() * 2 {
            out.push_str(TOKENS[i % TOKENS.len()]);
        } else {
            out.push(char::from(b));
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let text = text(data);
    match parse_scenario(Path::new("suites/fuzz/0001-input.toml"), &text) {
        Ok(s) => {
            assert!((!s.messages.is_empty() || !s.sessions.is_empty()) && !s.expects.is_empty());
            // Session steps name lines of the file.
            let lines = text.split('\n').count();
            for st in s.sessions.iter().flat_map(|x| &x.steps) {
                assert!(st.line >= 1 && st.line <= lines, "step line {}", st.line);
            }
            for h in &s.hosts {
                assert!(!h.attempts.is_empty());
                let _ = h.refuses_from();
                for n in 0..h.attempts.len() + 1 {
                    let a = h.attempt(n);
                    let _ = a.rcpt(7);
                    for st in [&a.greeting, &a.ehlo, &a.mail, &a.data, &a.eod] {
                        if let Step::Reply(lines) = st {
                            assert!(!lines.is_empty());
                            for l in lines {
                                let b = l.as_bytes();
                                assert!(b.len() >= 3 && (b'2'..=b'5').contains(&b[0]), "{l:?}");
                            }
                        }
                    }
                }
            }
            for e in &s.expects {
                let _ = mtaspec::run::judge::describe(e);
            }
        }
        Err(SuiteError::Invalid { line, column, .. }) => {
            assert!(line >= 1 && line <= text.split('\n').count(), "line {line}");
            assert!(column >= 1);
        }
        Err(e) => panic!("parse_scenario gave {e} for text"),
    }
});
