//! Unit tests of the suite loader: valid files and the errors of bad ones.

use super::*;

const GOOD: &str = r#"
title = "t"
rule = "r"
rfc = "RFC 5321 §5.1"
strength = "MUST"

[dns]
records = ["dest.test MX 10 mx10.dest.test", "null.test MX 0 ."]
faults = ["broken.test MX servfail"]

[hosts.mx10]
name = "mx10.dest.test"
[[hosts.mx10.attempt]]
greeting = "421 4.3.2 busy"
[[hosts.mx10.attempt]]
rcpt = ["250 ok", "451 4.2.0 later"]

[[message]]
from = "alice@src.test"
to = ["bob@dest.test"]

[[expect]]
delivered = { host = "mx10" }
"#;

fn err(text: &str) -> (usize, String) {
    match parse_scenario(Path::new("suites/x/0001-t.toml"), text) {
        Err(SuiteError::Invalid { line, message, .. }) => (line, message),
        other => panic!("expected a validation error, got {other:?}"),
    }
}

#[test]
fn loads_a_full_scenario() {
    let s = parse_scenario(Path::new("suites/x/0001-t.toml"), GOOD).unwrap();
    assert_eq!(s.id, "x/0001-t");
    assert_eq!(s.strength, Strength::Must);
    assert_eq!(s.deadline, DEFAULT_DEADLINE);
    // The sender's MX was added to catch DSNs.
    assert!(s
        .hosts
        .iter()
        .any(|h| h.key == SENDER_MX && h.name.as_deref() == Some("mx.src.test")));
    let mx10 = s.hosts.iter().find(|h| h.key == "mx10").unwrap();
    assert_eq!(mx10.attempts.len(), 2);
    assert_eq!(
        mx10.attempt(0).greeting,
        Step::Reply(vec!["421 4.3.2 busy".into()])
    );
    assert_eq!(
        mx10.attempt(5).rcpt(1),
        &Step::Reply(vec!["451 4.2.0 later".into()])
    );
    assert_eq!(
        mx10.attempt(5).rcpt(7),
        &Step::Reply(vec!["451 4.2.0 later".into()])
    );
    assert!(s.records.contains(&DnsRecord {
        name: "null.test".into(),
        data: RecordData::Mx {
            preference: 0,
            exchange: ".".into()
        }
    }));
    assert_eq!(s.faults[0].fault, fake_dns::Fault::ServFail);
    assert_eq!(s.faults[0].qtype.as_deref(), Some("MX"));
    assert_eq!(
        s.expects,
        vec![Expect::Delivered {
            host: "mx10".into(),
            rcpt: vec!["bob@dest.test".into()]
        }]
    );
}

#[test]
fn the_shipped_suites_load() {
    let files = discover(&[PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("suites")]).unwrap();
    assert!(!files.is_empty());
    let (ok, errs) = load_all(&files);
    assert!(errs.is_empty(), "{errs:?}");
    assert_eq!(ok.len(), files.len());
}

#[test]
fn syntax_errors_name_the_line() {
    let (line, msg) = err("title = \"t\"\nrule = \"r\"\nrfc = \"x\"\nstrength = MUST\n");
    assert_eq!(line, 4);
    assert!(msg.contains("string"), "{msg}");
}

#[test]
fn unknown_keys_name_the_line() {
    let text = GOOD.replace("[[message]]", "[[message]]\nform = \"x@y.test\"");
    let (line, msg) = err(&text);
    assert_eq!(line, 19);
    assert!(msg.contains("unknown field `form`"), "{msg}");
}

#[test]
fn bad_records_say_how_to_fix_them() {
    let text = GOOD.replace("null.test MX 0 .", "null.test MX ten mx.null.test");
    let (line, msg) = err(&text);
    assert_eq!(line, 8);
    assert!(msg.contains("preference `ten`"), "{msg}");
    let (_, msg) = err(&GOOD.replace("dest.test MX 10", "dest.example.com MX 10"));
    assert!(msg.contains("must end in .test"), "{msg}");
    let (_, msg) = err(&GOOD.replace("MX servfail", "MX explode"));
    assert!(msg.contains("unknown fault `explode`"), "{msg}");
}

#[test]
fn bad_steps_and_strengths_are_refused() {
    let (_, msg) = err(&GOOD.replace("421 4.3.2 busy", "hello"));
    assert!(msg.contains("write `NNN text`"), "{msg}");
    let (line, msg) = err(&GOOD.replace("\"MUST\"", "\"OUGHT\""));
    assert_eq!(line, 5);
    assert!(msg.contains("unknown requirement strength"), "{msg}");
}

#[test]
fn refuse_must_end_a_script() {
    let text = GOOD.replace("greeting = \"421 4.3.2 busy\"", "connect = \"refuse\"");
    let (_, msg) = err(&text);
    assert!(msg.contains("may only end a script"), "{msg}");
}

#[test]
fn expectations_name_declared_hosts() {
    let (line, msg) = err(&GOOD.replace("host = \"mx10\"", "host = \"mx99\""));
    assert_eq!(line, 22);
    assert!(msg.contains("unknown host `mx99`"), "{msg}");
    let (_, msg) = err(&GOOD.replace("delivered = { host = \"mx10\" }", "teleported = true"));
    assert!(msg.contains("unknown variant `teleported`"), "{msg}");
}
