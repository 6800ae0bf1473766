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

#[test]
fn a_delivery_with_no_recipient_is_refused_at_load() {
    let (line, msg) = err(&with_expect(r#"delivered = { host = "mx10", rcpt = [] }"#));
    assert_eq!(line, 22);
    assert!(msg.contains("`rcpt = []` names no recipient"), "{msg}");
    let (_, msg) = err(&with_expect(
        r#"delivered = { host = "mx10", rcpt = ["bob"] }"#,
    ));
    assert!(msg.contains("`bob` is not an address"), "{msg}");
}

fn with_expect(expect: &str) -> String {
    GOOD.replace("delivered = { host = \"mx10\" }", expect)
}

#[test]
fn dsn_expectations_load_every_field() {
    let s = parse_scenario(
        Path::new("suites/x/0001-t.toml"),
        &with_expect(
            r#"dsn = { status = "5.1.1", action = "Failed", rcpt = "bob@dest.test", reporting_mta = true, remote_mta = "mx10", diagnostic = "550 5.1.1", multipart_report = true, returned = "headers", envid = "e1", orcpt = "rfc822;bob@dest.test", will_retry_until = true, no_findings = ["dsn.action.*"] }"#,
        ),
    )
    .unwrap();
    let Expect::Dsn(d) = &s.expects[0] else {
        panic!("expected a DSN expectation")
    };
    assert_eq!(d.to, "alice@src.test");
    assert_eq!(d.action.as_deref(), Some("failed"));
    assert!(d.reporting_mta && d.multipart_report && d.will_retry_until);
    assert_eq!(d.remote_mta.as_deref(), Some("mx10"));
    assert_eq!(d.returned, Some(Returned::Headers));
    assert_eq!(d.no_findings, vec!["dsn.action.*".to_string()]);
    // sisimai's spelling is accepted and stored as the vocabulary's name.
    let s = parse_scenario(
        Path::new("suites/x/0001-t.toml"),
        &with_expect(r#"dsn = { reason = "userunknown" }"#),
    )
    .unwrap();
    let Expect::Dsn(d) = &s.expects[0] else {
        panic!("expected a DSN expectation")
    };
    assert_eq!(d.reason.as_deref(), Some("user-unknown"));
}

#[test]
fn bad_dsn_expectations_are_refused_with_the_fix() {
    let (line, msg) = err(&with_expect(r#"dsn = { remote_mta = "mx99" }"#));
    assert_eq!(line, 22);
    assert!(msg.contains("unknown host `mx99`"), "{msg}");
    let (_, msg) = err(&with_expect(r#"dsn = { returned = "body" }"#));
    assert!(msg.contains("\"headers\", \"full\" or \"none\""), "{msg}");
    let (_, msg) = err(&with_expect(r#"dsn = { reporting_mta = false }"#));
    assert!(msg.contains("checks nothing"), "{msg}");
    let (_, msg) = err(&with_expect(r#"dsn = { action = "bounced" }"#));
    assert!(msg.contains("RFC 3464 §2.3.3"), "{msg}");
    let (_, msg) = err(&with_expect(r#"dsn = { no_findings = ["dsn.[x"] }"#));
    assert!(msg.contains("bad finding pattern"), "{msg}");
    let (_, msg) = err(&with_expect(r#"dsn = { rcpt = "bob" }"#));
    assert!(msg.contains("not an address"), "{msg}");
    let (_, msg) = err(&with_expect(r#"dsn = { colour = "red" }"#));
    assert!(msg.contains("unknown field `colour`"), "{msg}");
    let (line, msg) = err(&with_expect(r#"dsn = { reason = "no-such-user" }"#));
    assert_eq!(line, 22);
    assert!(
        msg.contains("unknown bounce reason \"no-such-user\"") && msg.contains("user-unknown"),
        "{msg}"
    );
    // A host without a name has no name a Remote-MTA field could carry.
    let text = with_expect(r#"dsn = { remote_mta = "anon" }"#)
        .replace("[hosts.mx10]", "[hosts.anon]\n[hosts.mx10]");
    let (_, msg) = err(&text);
    assert!(msg.contains("has no `name`"), "{msg}");
}

#[test]
fn windows_counts_and_retry_timers_are_validated() {
    let s = parse_scenario(
        Path::new("suites/x/0001-t.toml"),
        &with_expect(r#"not_delivered = { within = "5s" }"#),
    )
    .unwrap();
    assert_eq!(
        s.expects[0],
        Expect::NotDelivered {
            within: Duration::from_secs(5),
            host: None
        }
    );
    // The window must close before the deadline (30 s by default).
    let (_, msg) = err(&with_expect(r#"not_delivered = { within = "40s" }"#));
    assert!(msg.contains("raise `deadline`"), "{msg}");
    let (_, msg) = err(&with_expect(r#"not_delivered = { within = "soon" }"#));
    assert!(msg.contains("bad duration `soon`"), "{msg}");
    let (_, msg) = err(&with_expect(r#"attempts = { host = "mx10" }"#));
    assert!(msg.contains("needs `at_least`"), "{msg}");
    let (_, msg) = err(&with_expect(
        r#"attempts = { host = "mx10", at_least = 3, at_most = 2 }"#,
    ));
    assert!(msg.contains("more than `at_most = 2`"), "{msg}");
    let (_, msg) = err(&with_expect(r#"deliveries = { host = "nope", count = 1 }"#));
    assert!(msg.contains("unknown host `nope`"), "{msg}");

    let s = parse_scenario(
        Path::new("suites/x/0001-t.toml"),
        &with_expect(r#"retry_after = { host = "mx10", min = "1s", max = "retry_max" }"#),
    )
    .unwrap();
    assert_eq!(
        s.expects[0],
        Expect::RetryAfter {
            host: "mx10".into(),
            min: Some(Timer::Fixed(Duration::from_secs(1))),
            max: Some(Timer::Knob(crate::target::knobs::Knob::RetryMax)),
        }
    );
    let (_, msg) = err(&with_expect(r#"retry_after = { host = "mx10" }"#));
    assert!(msg.contains("needs `min`, `max` or both"), "{msg}");
    let (_, msg) = err(&with_expect(
        r#"retry_after = { host = "mx10", min = "1 fortnight" }"#,
    ));
    assert!(msg.contains("bad duration"), "{msg}");
    let (_, msg) = err(&with_expect(
        r#"retry_after = { host = "mx10", min = "a-b" }"#,
    ));
    assert!(msg.contains("bad time `a-b`"), "{msg}");
    let (_, msg) = err(&with_expect(r#"refused_or_dsn = { status = "6.0.0" }"#));
    assert!(msg.contains("bad status `6.0.0`"), "{msg}");
}

#[test]
fn target_knobs_and_raw_settings_load_and_bad_ones_name_the_line() {
    use crate::target::knobs::{Knob, Value};
    let text = GOOD.replace(
        "[dns]",
        "[target]\nqueue_lifetime = \"5s\"\nhop_limit = 101\n\n[target.postfix]\nset = { soft_bounce = false, smtp_mx_address_limit = 1 }\n\n[dns]",
    );
    let s = parse_scenario(Path::new("suites/x/0001-t.toml"), &text).unwrap();
    assert_eq!(
        s.knobs.get(&Knob::QueueLifetime),
        Some(&Value::Time(Duration::from_secs(5)))
    );
    assert_eq!(s.knobs.get(&Knob::HopLimit), Some(&Value::Count(101)));
    let pf = &s.target_sets["postfix"];
    assert_eq!(pf.get("soft_bounce").map(String::as_str), Some("no"));
    assert_eq!(
        pf.get("smtp_mx_address_limit").map(String::as_str),
        Some("1")
    );
    let (line, msg) = err(&GOOD.replace(
        "[dns]",
        "[target.postfix]\nset = { \"a b\" = \"1\" }\n[dns]",
    ));
    assert_eq!(line, 7, "the [target.postfix] table");
    assert!(msg.contains("bad target setting name `a b`"), "{msg}");
    let (_, msg) = err(&GOOD.replace("[dns]", "[target.postfix]\nset = { x = [1] }\n[dns]"));
    assert!(msg.contains("must be a string, number or boolean"), "{msg}");
    // The old Postfix-only form is refused with the way forward.
    let (_, msg) = err(&GOOD.replace(
        "[dns]",
        "[target]\nset = { maximal_queue_lifetime = \"5s\" }\n[dns]",
    ));
    assert!(msg.contains("[target.<name>] set"), "{msg}");
    let (_, msg) = err(&GOOD.replace("[dns]", "[target]\nqueue_lifetime = 5\n[dns]"));
    assert!(msg.contains("is a time in quotes"), "{msg}");
    let (_, msg) = err(&GOOD.replace("[dns]", "[target.qmail]\nset = { a = 1 }\n[dns]"));
    assert!(msg.contains("unknown [target] key `qmail`"), "{msg}");
    // No [target] at all: the default instance.
    let s = parse_scenario(Path::new("suites/x/0001-t.toml"), GOOD).unwrap();
    assert!(s.knobs.is_empty() && s.target_sets.is_empty());
}

#[test]
fn a_record_can_point_at_the_target() {
    let text = GOOD.replace("\"null.test MX 0 .\"", "\"self.dest.test A target\"");
    let s = parse_scenario(Path::new("suites/x/0001-t.toml"), &text).unwrap();
    assert!(s.records.iter().any(|r| r.data == RecordData::TargetA));
    let (_, msg) = err(&GOOD.replace("\"null.test MX 0 .\"", "\"self.dest.test A nowhere\""));
    assert!(msg.contains("an IPv4 address or `target`"), "{msg}");
}

#[test]
fn dns_query_expectations_are_checked() {
    let text = GOOD.replace(
        "delivered = { host = \"mx10\" }",
        "queried = \"dest.test mx\"\n[[expect]]\nnot_queried = \"dest.test A\"",
    );
    let s = parse_scenario(Path::new("suites/x/0001-t.toml"), &text).unwrap();
    assert_eq!(
        s.expects,
        vec![
            Expect::Queried {
                name: "dest.test".into(),
                qtype: "MX".into()
            },
            Expect::NotQueried {
                name: "dest.test".into(),
                qtype: "A".into()
            },
        ]
    );
    let (_, msg) = err(&GOOD.replace("delivered = { host = \"mx10\" }", "queried = \"dest.test\""));
    assert!(msg.contains("write `NAME TYPE`"), "{msg}");
    let (_, msg) = err(&GOOD.replace(
        "delivered = { host = \"mx10\" }",
        "queried = \"dest.com MX\"",
    ));
    assert!(msg.contains("must end in .test"), "{msg}");
}

/// GOOD with `extra` appended (extra starts with its own blank line).
fn with_controls(extra: &str) -> (String, usize) {
    // The line the first appended `[[control]]` header lands on.
    let first = GOOD.matches('\n').count() + 2;
    (format!("{GOOD}\n{extra}"), first)
}

#[test]
fn controls_load_with_their_line_and_lay_over_the_scenario() {
    use crate::target::knobs::{Knob, Value};
    let (text, first) = with_controls(
        r#"[[control]]
target = "postfix"
set = { soft_bounce = "yes", smtp_mx_address_limit = 1 }
why = "5xx become 4xx: no DSN"

[[control]]
target = "exim"
knobs = { queue_lifetime = "0s" }
why = "one try only"
"#,
    );
    let text = text.replace(
        "[dns]",
        "[target]\nqueue_lifetime = \"5s\"\nhop_limit = 101\n[target.postfix]\nset = { soft_bounce = \"no\", delay_warning_time = \"1h\" }\n[dns]",
    );
    let first = first + 5;
    let s = parse_scenario(Path::new("suites/x/0001-t.toml"), &text).unwrap();
    assert_eq!(s.no_control, None);
    assert_eq!(s.controls.len(), 2);
    let c = &s.controls[0];
    assert_eq!(c.target, "postfix");
    assert_eq!(c.line, first, "the first [[control]] header");
    assert_eq!(c.why, "5xx become 4xx: no DSN");
    assert_eq!(c.describe(), "smtp_mx_address_limit = 1, soft_bounce = yes");
    assert_eq!(s.controls[1].line, first + 5);
    assert_eq!(
        s.controls[1].knobs.get(&Knob::QueueLifetime),
        Some(&Value::Time(Duration::ZERO))
    );

    // Under control 1 the control's settings win over the scenario's own; the rest stay.
    let v = s.under_control(0);
    assert_eq!(v.id, "x/0001-t [control 1]");
    let pf = &v.target_sets["postfix"];
    assert_eq!(pf["soft_bounce"], "yes");
    assert_eq!(pf["delay_warning_time"], "1h");
    assert_eq!(pf["smtp_mx_address_limit"], "1");
    assert_eq!(v.knobs, s.knobs);
    // Under control 2 (for exim) the knob wins over the scenario's, Postfix's settings are untouched.
    let v = s.under_control(1);
    assert_eq!(
        v.knobs.get(&Knob::QueueLifetime),
        Some(&Value::Time(Duration::ZERO))
    );
    assert_eq!(v.knobs.get(&Knob::HopLimit), Some(&Value::Count(101)));
    assert_eq!(v.target_sets["postfix"], s.target_sets["postfix"]);
    assert!(v.target_sets["exim"].is_empty());
    assert_eq!(v.expects, s.expects);
}

#[test]
fn a_scenario_may_say_no_control_exists_and_nothing_else() {
    let (text, _) = with_controls("[[control]]\nnone = \"no target has a setting for this\"\n");
    let s = parse_scenario(Path::new("suites/x/0001-t.toml"), &text).unwrap();
    assert!(s.controls.is_empty());
    assert_eq!(
        s.no_control.as_deref(),
        Some("no target has a setting for this")
    );

    // `none` stands alone in its block ...
    let (text, first) =
        with_controls("[[control]]\nnone = \"nothing\"\ntarget = \"postfix\"\nwhy = \"w\"\n");
    let (line, msg) = err(&text);
    assert!(
        msg.contains("`target` in a [[control]] with `none`"),
        "{msg}"
    );
    assert_eq!(line, first + 2, "the `target` line");
    // ... and in the scenario.
    let (text, first) = with_controls(
        "[[control]]\nnone = \"nothing\"\n\n[[control]]\ntarget = \"postfix\"\nset = { soft_bounce = \"yes\" }\nwhy = \"w\"\n",
    );
    let (line, msg) = err(&text);
    assert!(msg.contains("has no other [[control]]"), "{msg}");
    assert!(line >= first, "{line}");
    let (text, _) = with_controls("[[control]]\nnone = \"  \"\n");
    let (_, msg) = err(&text);
    assert!(msg.contains("`none` needs the reason"), "{msg}");
}

#[test]
fn bad_controls_name_the_line_and_the_fix() {
    let cases = [
        // (control block, line offset from its header, message part)
        (
            "[[control]]\nset = { soft_bounce = \"yes\" }\nwhy = \"w\"\n",
            None,
            "a [[control]] needs `target` (one of postfix, exim",
        ),
        (
            "[[control]]\ntarget = \"qmail\"\nset = { soft_bounce = \"yes\" }\nwhy = \"w\"\n",
            Some(1),
            "unknown target `qmail`: use one of postfix",
        ),
        (
            "[[control]]\ntarget = \"postfix\"\nwhy = \"w\"\n",
            None,
            "needs `set = { ... }` (the target's own settings) or `knobs = { ... }`",
        ),
        (
            "[[control]]\ntarget = \"postfix\"\nset = {}\nwhy = \"w\"\n",
            None,
            "needs `set = { ... }`",
        ),
        (
            "[[control]]\ntarget = \"postfix\"\nset = { soft_bounce = \"yes\" }\n",
            None,
            "a [[control]] needs `why`",
        ),
        (
            "[[control]]\ntarget = \"postfix\"\nknobs = { queue_lifetim = \"0s\" }\nwhy = \"w\"\n",
            Some(2),
            "unknown knob `queue_lifetim`: use one of queue_lifetime",
        ),
        (
            "[[control]]\ntarget = \"postfix\"\nknobs = { hop_limit = \"5\" }\nwhy = \"w\"\n",
            Some(2),
            "`hop_limit` is a count",
        ),
        (
            "[[control]]\ntarget = \"postfix\"\nset = { \"a b\" = 1 }\nwhy = \"w\"\n",
            Some(2),
            "bad target setting name `a b`",
        ),
        (
            "[[control]]\ntarget = \"postfix\"\nsett = { soft_bounce = \"yes\" }\nwhy = \"w\"\n",
            None,
            "unknown field `sett`",
        ),
    ];
    for (block, offset, want) in cases {
        let (text, first) = with_controls(block);
        let (line, msg) = err(&text);
        assert!(msg.contains(want), "{block}: {msg}");
        match offset {
            Some(o) => assert_eq!(line, first + o, "{block}: {msg}"),
            None => assert!(
                (first..first + 4).contains(&line),
                "{block}: line {line}, block at {first}"
            ),
        }
    }
}

#[test]
fn a_suite_file_without_a_control_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("0001-t.toml");
    std::fs::write(&file, GOOD).unwrap();
    let e = load_file(&file).unwrap_err().to_string();
    assert!(e.contains("0001-t.toml:1:1: no [[control]]"), "{e}");
    assert!(e.contains("none = \"why no setting"), "{e}");
    std::fs::write(&file, format!("{GOOD}\n[[control]]\nnone = \"n\"\n")).unwrap();
    assert!(load_file(&file).is_ok());
}

#[test]
fn every_shipped_scenario_declares_a_control_or_why_none() {
    let files = discover(&[PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("suites")]).unwrap();
    let (ok, _) = load_all(&files);
    for sc in &ok {
        assert!(
            !sc.controls.is_empty() || sc.no_control.is_some(),
            "{}",
            sc.id
        );
        for c in &sc.controls {
            assert!(
                crate::target::FUTURE_NAMES.contains(&c.target.as_str()),
                "{}",
                sc.id
            );
        }
    }
}

#[test]
fn rcpt_replies_can_be_keyed_by_address() {
    let text = GOOD.replace(
        "rcpt = [\"250 ok\", \"451 4.2.0 later\"]",
        "rcpt = { \"bob@dest.test\" = \"550 5.1.1 no\", \"Carol@Dest.test\" = \"250 ok\" }",
    );
    let s = parse_scenario(Path::new("suites/x/0001-t.toml"), &text).unwrap();
    let a = s.hosts.iter().find(|h| h.key == "mx10").unwrap().attempt(1);
    assert_eq!(
        a.rcpt_by.get("bob@dest.test"),
        Some(&crate::suite::Step::Reply(vec!["550 5.1.1 no".into()]))
    );
    assert!(a.rcpt_by.contains_key("carol@dest.test"));
    let (_, msg) = err(&GOOD.replace(
        "rcpt = [\"250 ok\", \"451 4.2.0 later\"]",
        "rcpt = { \"bob\" = \"250 ok\" }",
    ));
    assert!(msg.contains("not an address"), "{msg}");
    let (_, msg) = err(&GOOD.replace(
        "rcpt = [\"250 ok\", \"451 4.2.0 later\"]",
        "mail = { \"bob@dest.test\" = \"250 ok\" }",
    ));
    assert!(msg.contains("takes one reply"), "{msg}");
}

const INBOUND: &str = r#"title = "t"
rule = "r"
rfc = "RFC 5321 §4.1.1.4"
strength = "MUST"
[hosts.mx]
name = "mx.dest.test"
[[session]]
script = '''
< 220
> EHLO client.test
< 250
'''
[[expect]]
relayed = { host = "mx", count = 1, smuggled_from = "mallory@src.test" }
"#;

#[test]
fn sessions_load_with_file_lines_and_a_replies_expectation() {
    let s = parse_scenario(Path::new("suites/x/0001-t.toml"), INBOUND).unwrap();
    assert!(s.messages.is_empty());
    assert_eq!(s.sessions.len(), 1);
    // `< 220` is on line 9 of the file.
    let lines: Vec<usize> = s.sessions[0].steps.iter().map(|st| st.line).collect();
    assert_eq!(lines, vec![9, 10, 11]);
    assert_eq!(s.expects.len(), 2);
    assert!(matches!(
        &s.expects[1],
        Expect::Session(session::SessionExpect::Replies(0))
    ));
}

#[test]
fn session_script_errors_name_the_file_line() {
    let (line, msg) = err(&INBOUND.replace("> EHLO client.test", "> EHLO \\q"));
    assert_eq!(line, 10, "{msg}");
    assert!(msg.contains("unknown escape `\\q`"), "{msg}");
    let (line, msg) = err(&INBOUND.replace("< 250\n'''", "< 250\nsend \"x\n'''"));
    assert_eq!(line, 12, "{msg}");
    assert!(msg.contains("unterminated"), "{msg}");
    let (_, msg) = err(&INBOUND.replace("[[session]]", "[[session]]\nfrom = \"inside\""));
    assert!(msg.contains("use \"outside\""), "{msg}");
    let (_, msg) = err(&INBOUND.replace("host = \"mx\"", "host = \"nope\""));
    assert!(msg.contains("unknown host `nope`"), "{msg}");
    let (_, msg) = err(&INBOUND.replace("mallory@src.test", "mallory@src.com"));
    assert!(msg.contains("must end in .test"), "{msg}");
}

#[test]
fn a_script_in_a_basic_string_reports_its_own_line_numbers() {
    let text = INBOUND.replace(
        "script = '''\n< 220\n> EHLO client.test\n< 250\n'''",
        "script = \"< 220\\n> EHLO \\\\q\\n\"",
    );
    assert_ne!(text, INBOUND);
    let (line, msg) = err(&text);
    assert_eq!(line, 8, "the string's own line: {msg}");
    assert!(
        msg.contains("session script line 2: unknown escape"),
        "{msg}"
    );
}
