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
        &with_expect(
            r#"retry_after = { host = "mx10", min = "1s", max = "maximal_backoff_time" }"#,
        ),
    )
    .unwrap();
    assert_eq!(
        s.expects[0],
        Expect::RetryAfter {
            host: "mx10".into(),
            min: Some(Timer::Fixed(Duration::from_secs(1))),
            max: Some(Timer::Setting("maximal_backoff_time".into())),
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
fn target_settings_load_as_strings_and_bad_ones_name_the_line() {
    let text = GOOD.replace(
        "[dns]",
        "[target]\nset = { maximal_queue_lifetime = \"5s\", hopcount_limit = 101, soft_bounce = false }\n\n[dns]",
    );
    let s = parse_scenario(Path::new("suites/x/0001-t.toml"), &text).unwrap();
    assert_eq!(
        s.target_set
            .get("maximal_queue_lifetime")
            .map(String::as_str),
        Some("5s")
    );
    assert_eq!(
        s.target_set.get("hopcount_limit").map(String::as_str),
        Some("101")
    );
    assert_eq!(
        s.target_set.get("soft_bounce").map(String::as_str),
        Some("no")
    );
    let (line, msg) = err(&GOOD.replace("[dns]", "[target]\nset = { \"a b\" = \"1\" }\n[dns]"));
    assert_eq!(line, 8);
    assert!(msg.contains("bad target setting name `a b`"), "{msg}");
    let (_, msg) = err(&GOOD.replace("[dns]", "[target]\nset = { x = [1] }\n[dns]"));
    assert!(msg.contains("must be a string, number or boolean"), "{msg}");
    // No [target] at all: the default instance.
    assert!(parse_scenario(Path::new("suites/x/0001-t.toml"), GOOD)
        .unwrap()
        .target_set
        .is_empty());
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
