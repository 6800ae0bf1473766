//! Judge stage (tests): each rule decided from hand-made observations.

use super::judge::*;
use super::observe::{ConnectSeen, Delivery, Injection, Line, Observations, Session};
use super::{instance_addr, setting_groups};
use super::{unsupported, Group};
use crate::suite::{parse_scenario, Expect, Scenario, Timer};
use crate::world::Scope;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

const HEAD: &str = r#"
title = "t"
rule = "r"
rfc = "RFC 5321 §4.2.1"
strength = "MUST"
deadline = "20s"
[dns]
records = ["dest.test MX 10 mx.dest.test", "dest.test MX 20 mx20.dest.test"]
[hosts.mx]
name = "mx.dest.test"
[hosts.mx20]
name = "mx20.dest.test"
[[message]]
from = "alice@src.test"
to = ["bob@dest.test"]
"#;

fn scenario(expects: &str) -> Scenario {
    parse_scenario(
        Path::new("suites/x/0001-t.toml"),
        &format!("{HEAD}{expects}"),
    )
    .unwrap()
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn delivery(host: &str, at: f64, from: &str, rcpts: &[&str], data: &str) -> Delivery {
    Delivery {
        host: host.into(),
        attempt: 0,
        at: secs(at),
        mail_from: from.into(),
        mail_params: vec![],
        rcpts: rcpts.iter().map(|r| r.to_string()).collect(),
        data: data.as_bytes().to_vec(),
    }
}

fn session(host: &str, at: f64, deliveries: Vec<Delivery>) -> Session {
    Session {
        host: host.into(),
        attempt: 0,
        at: secs(at),
        transcript: vec![],
        deliveries,
        after_refusal: Vec::new(),
        closed: true,
    }
}

fn syn(host: &str, at: f64) -> ConnectSeen {
    ConnectSeen {
        host: host.into(),
        at: secs(at),
    }
}

fn judge(sc: &Scenario, o: &Observations, now: f64, last: bool) -> Vec<Decision> {
    let scope = Scope::new(0);
    use crate::target::knobs::{Knob, Knobs, Value};
    let knobs: Knobs = [
        (Knob::RetryMin, Value::Time(secs(3.0))),
        (Knob::RetryMax, Value::Time(secs(6.0))),
        (Knob::QueueLifetime, Value::Time(secs(5.0 * 86400.0))),
    ]
    .into_iter()
    .collect();
    let cx = Ctx {
        sc,
        scope: &scope,
        o,
        now: secs(now),
        last,
        knobs: &knobs,
        hostname: "mta.target.test",
    };
    sc.expects.iter().map(|e| decide(e, &cx)).collect()
}

fn one(sc: &Scenario, o: &Observations, now: f64, last: bool) -> Decision {
    judge(sc, o, now, last).remove(0)
}

fn is_pass(d: &Decision) -> bool {
    matches!(d, Decision::Pass(_))
}

fn fail_text(d: Decision) -> String {
    match d {
        Decision::Fail(t) => t,
        other => panic!("expected a failure, got {other:?}"),
    }
}

const BOB: &str = "bob@dest.s0.test";
const ALICE: &str = "alice@src.s0.test";

#[test]
fn double_delivery_fails_at_once_and_one_passes_only_when_settled() {
    let sc = scenario("[[expect]]\ndeliveries = { host = \"mx\", count = 1 }\n");
    let mut o = Observations::default();
    o.sessions.push(session(
        "mx",
        0.1,
        vec![delivery("mx", 0.1, ALICE, &[BOB], "")],
    ));
    assert_eq!(one(&sc, &o, 0.2, false), Decision::Pending);
    assert!(is_pass(&one(&sc, &o, 3.0, true)));
    o.sessions.push(session(
        "mx",
        1.2,
        vec![delivery("mx", 1.2, ALICE, &[BOB], "")],
    ));
    let why = fail_text(one(&sc, &o, 1.3, false));
    assert!(
        why.contains("expected exactly 1") && why.contains("2 deliveries"),
        "{why}"
    );
}

#[test]
fn deliveries_count_only_the_named_recipient_and_ignore_dsns() {
    let sc = scenario(
        "[[expect]]\ndeliveries = { host = \"mx\", rcpt = \"carol@dest.test\", count = 0 }\n",
    );
    let mut o = Observations::default();
    o.sessions.push(session(
        "mx",
        0.1,
        vec![
            delivery("mx", 0.1, ALICE, &[BOB], ""),
            delivery("mx", 0.2, "", &["carol@dest.s0.test"], ""),
        ],
    ));
    assert!(is_pass(&one(&sc, &o, 3.0, true)));
}

#[test]
fn not_delivered_is_decided_by_its_window() {
    let sc = scenario("[[expect]]\nnot_delivered = { within = \"5s\" }\n");
    let mut o = Observations::default();
    assert_eq!(window_end(&sc.expects[0]), Some(secs(5.0)));
    assert_eq!(one(&sc, &o, 2.0, false), Decision::Pending);
    assert!(is_pass(&one(&sc, &o, 5.0, false)));
    // The window ended early only because the scenario did: not a pass.
    assert!(matches!(one(&sc, &o, 2.0, true), Decision::Fail(_)));
    o.sessions.push(session(
        "mx",
        3.0,
        vec![delivery("mx", 3.0, ALICE, &[BOB], "")],
    ));
    let why = fail_text(one(&sc, &o, 3.1, false));
    assert!(why.contains("accepted a message"), "{why}");
    // A delivery after the window does not count.
    let mut late = Observations::default();
    late.sessions.push(session(
        "mx",
        6.0,
        vec![delivery("mx", 6.0, ALICE, &[BOB], "")],
    ));
    assert!(is_pass(&one(&sc, &late, 6.1, false)));
}

#[test]
fn attempts_count_syns_and_bound_both_ways() {
    let sc = scenario("[[expect]]\nattempts = { host = \"mx\", at_least = 2, at_most = 3 }\n");
    let mut o = Observations::default();
    o.connects.push(syn("mx", 0.1));
    assert_eq!(one(&sc, &o, 0.2, false), Decision::Pending);
    assert!(matches!(one(&sc, &o, 9.0, true), Decision::Fail(_)));
    o.connects.push(syn("mx", 1.1));
    // At most 3: only decided once the scenario is quiet.
    assert_eq!(one(&sc, &o, 1.2, false), Decision::Pending);
    assert!(is_pass(&one(&sc, &o, 9.0, true)));
    o.connects.push(syn("mx", 2.1));
    o.connects.push(syn("mx", 3.1));
    let why = fail_text(one(&sc, &o, 3.2, false));
    assert!(why.contains("4 connection attempt(s)"), "{why}");
}

#[test]
fn retry_gaps_are_checked_against_the_target_settings() {
    let sc = scenario(
        "[[expect]]\nretry_after = { host = \"mx\", min = \"retry_min\", max = \"retry_max\" }\n",
    );
    assert!(matches!(
        &sc.expects[0],
        Expect::RetryAfter { min: Some(Timer::Knob(k)), max: Some(Timer::Knob(_)), .. } if *k == crate::target::knobs::Knob::RetryMin
    ));
    // The knobs the judge sees here: retry_min = 3 s, retry_max = 6 s.
    let mut o = Observations::default();
    for t in [0.1, 3.15, 7.2] {
        o.connects.push(syn("mx", t));
    }
    assert_eq!(one(&sc, &o, 7.3, false), Decision::Pending);
    let Decision::Pass(text) = one(&sc, &o, 12.0, true) else {
        panic!("expected a pass")
    };
    assert!(text.contains("gaps 3.05, 4.05 s"), "{text}");
    assert!(text.contains("retry_min = 3.0 s"), "{text}");
    assert!(text.contains("allowance 1.0 s"), "{text}");

    // A gap within the 1 s tolerance below the minimum passes (whole-second clocks)...
    let mut rounded = Observations::default();
    for t in [0.48, 2.51, 5.2] {
        rounded.connects.push(syn("mx", t));
    }
    assert!(is_pass(&one(&sc, &rounded, 12.0, true)));
    // ...one further below fails, whichever gap it is.
    let mut fast = Observations::default();
    for t in [0.1, 3.2, 4.5] {
        fast.connects.push(syn("mx", t));
    }
    let why = fail_text(one(&sc, &fast, 4.6, false));
    assert!(
        why.contains("retry 2 came 1.300 s after the previous attempt, sooner than retry_min"),
        "{why}"
    );
    // Every gap is checked against the maximum, not only the first.
    let mut slow = Observations::default();
    for t in [0.1, 3.1, 11.2] {
        slow.connects.push(syn("mx", t));
    }
    let why = fail_text(one(&sc, &slow, 11.3, false));
    assert!(
        why.contains("retry 2 came 8.100 s after the previous attempt, later than retry_max"),
        "{why}"
    );

    // No retry at all: overdue once max (plus allowances) has passed.
    let mut none = Observations::default();
    none.connects.push(syn("mx", 0.1));
    assert_eq!(one(&sc, &none, 1.0, false), Decision::Pending);
    assert!(matches!(one(&sc, &none, 9.0, false), Decision::Fail(_)));
}

#[test]
fn a_minimum_within_the_clock_tolerance_is_refused_as_unfailable() {
    let sc = scenario("[[expect]]\ncontacted = \"mx\"\n[[expect]]\nretry_after = { host = \"mx\", min = \"1s\" }\n");
    let problems = lint(&sc);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0]
            .1
            .contains("not above the 1.0 s clock tolerance"),
        "{problems:?}"
    );
}

#[test]
fn a_knob_the_target_does_not_report_is_an_error_not_a_guess() {
    use crate::target::knobs::{Knob, Knobs, Value};
    let knobs: Knobs = [(Knob::RetryMin, Value::Time(secs(3.0)))]
        .into_iter()
        .collect();
    assert_eq!(
        resolve_timer(&Timer::Knob(Knob::RetryMin), &knobs),
        Ok(secs(3.0))
    );
    let why = resolve_timer(&Timer::Knob(Knob::QueueRun), &knobs).unwrap_err();
    assert!(why.contains("does not report its `queue_run`"), "{why}");
    assert_eq!(
        resolve_timer(&Timer::Fixed(secs(2.0)), &knobs),
        Ok(secs(2.0))
    );
}

fn injection(accepted: bool, reply: &str) -> Injection {
    let line = |from_peer: bool, text: &str| Line {
        at: secs(0.01),
        from_peer,
        text: text.into(),
    };
    Injection {
        message: 0,
        at: secs(0.0),
        accepted,
        transcript: vec![
            line(true, "220 mta.target.test ESMTP"),
            line(false, "DATA"),
            line(true, "354 go ahead"),
            line(false, "[message: 100 octets]"),
            line(true, reply),
            line(false, "QUIT"),
            line(true, "221 2.0.0 Bye"),
        ],
        error: None,
    }
}

#[test]
fn a_dialogue_that_broke_off_is_reported_as_such_not_by_its_last_reply() {
    let sc = scenario("[[expect]]\naccepted = true\n");
    let mut o = Observations::default();
    let mut i = injection(false, "250 HELP");
    i.transcript.truncate(1);
    i.error = Some("no complete reply within 10 s".into());
    o.injections.push(i);
    let why = fail_text(one(&sc, &o, 0.1, true));
    assert!(
        why.contains("the dialogue broke off: no complete reply within 10 s"),
        "{why}"
    );
}

#[test]
fn refusal_status_is_read_from_the_decisive_reply_not_the_quit() {
    assert_eq!(
        reply_status("554 5.4.0 Error: too many hops").as_deref(),
        Some("5.4.0")
    );
    assert_eq!(reply_status("554 too many hops"), None);
    assert!(status_matches("5.4.6", "5.4") && status_matches("5.4.6", "5"));
    assert!(!status_matches("5.4.60", "5.4.6"));

    let sc = scenario("[[expect]]\nrefused_or_dsn = { status = \"5.4.6\" }\n");
    let mut o = Observations::default();
    o.injections
        .push(injection(false, "554 5.4.0 Error: too many hops"));
    let why = fail_text(one(&sc, &o, 0.1, false));
    assert!(
        why.contains("554 5.4.0") && why.contains("status 5.4.0"),
        "{why}"
    );

    let sc = scenario("[[expect]]\nrefused_or_dsn = { status = \"5\" }\n");
    assert!(is_pass(&one(&sc, &o, 0.1, false)));

    // Accepted: now a DSN must follow.
    let mut acc = Observations::default();
    acc.injections.push(injection(true, "250 2.0.0 Ok: queued"));
    assert_eq!(one(&sc, &acc, 0.1, false), Decision::Pending);
    assert!(matches!(one(&sc, &acc, 9.0, true), Decision::Fail(_)));
}

#[test]
fn a_refused_message_fails_delivery_at_once() {
    let sc = scenario("[[expect]]\ndelivered = { host = \"mx\" }\n");
    let mut o = Observations::default();
    o.injections
        .push(injection(false, "554 5.4.0 Error: too many hops"));
    let why = fail_text(one(&sc, &o, 0.1, false));
    assert!(why.contains("refused the message: 554 5.4.0"), "{why}");
}

#[test]
fn no_dsn_catches_a_null_sender_message_to_anyone_but_the_recipients() {
    let sc = scenario("[[expect]]\nno_dsn = true\n");
    let mut o = Observations::default();
    // The injected message itself, relayed with <> (a bounce being delivered): not a DSN.
    o.sessions.push(session(
        "mx",
        0.1,
        vec![delivery("mx", 0.1, "", &[BOB], "")],
    ));
    assert!(is_pass(&one(&sc, &o, 3.0, true)));
    o.sessions.push(session(
        "sender-mx",
        0.2,
        vec![delivery("sender-mx", 0.2, "", &[ALICE], "")],
    ));
    assert!(matches!(one(&sc, &o, 0.3, false), Decision::Fail(_)));
}

/// A bounce as Postfix writes it, for bob@dest.test in scope s0.
fn postfix_dsn(status: &str, action: &str, returned: &str) -> String {
    format!(
        "From: MAILER-DAEMON@mta.target.test (Mail Delivery System)\r\n\
Subject: Undelivered Mail Returned to Sender\r\n\
To: {ALICE}\r\n\
Auto-Submitted: auto-replied\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status;\r\n\
\tboundary=\"B1\"\r\n\
\r\n\
--B1\r\n\
Content-Type: text/plain; charset=us-ascii\r\n\
\r\n\
I'm sorry to have to inform you that your message could not\r\n\
be delivered to one or more recipients.\r\n\
\r\n\
--B1\r\n\
Content-Type: message/delivery-status\r\n\
\r\n\
Reporting-MTA: dns; mta.target.test\r\n\
Original-Envelope-Id: env-1\r\n\
Arrival-Date: Mon, 23 Nov 2026 12:00:00 +0000 (UTC)\r\n\
\r\n\
Final-Recipient: rfc822; {BOB}\r\n\
Original-Recipient: rfc822;robert@example.org\r\n\
Action: {action}\r\n\
Status: {status}\r\n\
Remote-MTA: dns; mx.dest.s0.test\r\n\
Diagnostic-Code: smtp; 550 5.1.1 <{BOB}>: no such user\r\n\
\r\n\
--B1\r\n\
Content-Type: {returned}\r\n\
\r\n\
Subject: hello\r\n\
From: {ALICE}\r\n\
\r\n\
--B1--\r\n"
    )
}

fn dsn_obs(data: &str) -> Observations {
    let mut o = Observations::default();
    o.sessions.push(session(
        "sender-mx",
        0.3,
        vec![delivery("sender-mx", 0.3, "", &[ALICE], data)],
    ));
    o
}

#[test]
fn dsn_fields_are_all_checked() {
    let sc = scenario(
        r#"[[expect]]
dsn = { status = "5.1.1", action = "failed", reporting_mta = true, remote_mta = "mx", diagnostic = "550 5.1.1", multipart_report = true, returned = "headers", envid = "env-1", orcpt = "rfc822;robert@example.org", no_findings = ["*"] }
"#,
    );
    let good = dsn_obs(&postfix_dsn("5.1.1", "failed", "text/rfc822-headers"));
    let Decision::Pass(text) = one(&sc, &good, 0.4, false) else {
        panic!("expected a pass: {:?}", one(&sc, &good, 0.4, true))
    };
    assert!(text.contains("conformance findings: none"), "{text}");
    assert!(
        text.contains("<bob@dest.test>"),
        "reports are unscoped: {text}"
    );

    // Each field that differs is named; the DSN is still reported.
    let bad = dsn_obs(&postfix_dsn("4.2.0", "delayed", "message/rfc822"));
    assert_eq!(one(&sc, &bad, 0.4, false), Decision::Pending);
    let why = fail_text(one(&sc, &bad, 5.0, true));
    for part in [
        "Status 4.2.0 (wanted 5.1.1)",
        "Action delayed (wanted failed)",
        "returned content message/rfc822 (wanted headers only)",
    ] {
        assert!(why.contains(part), "missing {part:?} in {why}");
    }
}

#[test]
fn dsn_remote_mta_and_reporting_mta_must_name_the_right_hosts() {
    let sc = scenario("[[expect]]\ndsn = { remote_mta = \"mx20\", reporting_mta = true }\n");
    let other = postfix_dsn("5.1.1", "failed", "text/rfc822-headers").replace(
        "Reporting-MTA: dns; mta.target.test",
        "Reporting-MTA: dns; elsewhere.test",
    );
    let why = fail_text(one(&sc, &dsn_obs(&other), 5.0, true));
    assert!(
        why.contains("Remote-MTA mx.dest.test (wanted mx20, mx20.dest.test)"),
        "{why}"
    );
    assert!(why.contains("Reporting-MTA dns; elsewhere.test"), "{why}");
}

#[test]
fn a_dsn_claiming_the_failed_message_is_still_queued_is_caught_by_no_findings() {
    let sc = scenario(
        "[[expect]]\ndsn = { action = \"failed\", no_findings = [\"dsn.action.failed-but-queued\"] }\n",
    );
    let text = postfix_dsn("4.4.7", "failed", "text/rfc822-headers").replace(
        "be delivered to one or more recipients.",
        "be delivered yet. We will keep trying.",
    );
    let why = fail_text(one(&sc, &dsn_obs(&text), 5.0, true));
    assert!(
        why.contains("finding dsn.action.failed-but-queued"),
        "{why}"
    );
}

#[test]
fn first_contact_order_trusts_syns_over_session_times() {
    let sc = scenario("[[expect]]\norder = [\"mx\", \"mx20\"]\n");
    let mut o = Observations::default();
    // The session on mx20 was recorded before the watcher reported the SYN to mx.
    o.sessions.push(session("mx20", 0.040, vec![]));
    assert_eq!(one(&sc, &o, 0.05, false), Decision::Pending);
    o.connects.push(syn("mx", 0.041));
    o.connects.push(syn("mx20", 0.042));
    assert!(is_pass(&one(&sc, &o, 0.05, false)));
    // mx never contacted at all: out of order once the scenario settles.
    let mut only20 = Observations::default();
    only20.connects.push(syn("mx20", 0.04));
    assert!(matches!(one(&sc, &only20, 3.0, true), Decision::Fail(_)));
}

#[test]
fn instances_get_distinct_addresses_and_groups_are_deduplicated() {
    assert_eq!(instance_addr(0, 0), Ipv4Addr::new(127, 0, 0, 1));
    assert_eq!(instance_addr(0, 1), Ipv4Addr::new(127, 0, 2, 1));
    assert_ne!(instance_addr(0, 52), crate::lab::DNS_ADDR);
    // A second MTA's instances never meet the first one's.
    assert_eq!(instance_addr(1, 0), Ipv4Addr::new(127, 0, 3, 1));
    assert_eq!(instance_addr(4, 3), Ipv4Addr::new(127, 0, 6, 4));
    let plain = scenario("[[expect]]\ncontacted = \"mx\"\n");
    let set = parse_scenario(
        Path::new("suites/x/0002-t.toml"),
        &format!("{HEAD}[target]\nqueue_lifetime = \"5s\"\n[[expect]]\ncontacted = \"mx\"\n"),
    )
    .unwrap();
    let raw = parse_scenario(
        Path::new("suites/x/0003-t.toml"),
        &format!(
            "{HEAD}[target.postfix]\nset = {{ soft_bounce = \"yes\" }}\n[target.exim]\nset = {{ x = \"1\" }}\n[[expect]]\ncontacted = \"mx\"\n"
        ),
    )
    .unwrap();
    let groups = setting_groups(
        &[set.clone(), plain, set, raw.clone()],
        &NoRetryKnobs,
        0,
        None,
    );
    assert_eq!(groups.len(), 3);
    assert_eq!(groups[0], Group::default());
    assert_eq!(
        groups[1]
            .knobs
            .get(&crate::target::knobs::Knob::QueueLifetime),
        Some(&crate::target::knobs::Value::Time(secs(5.0)))
    );
    // Only the raw settings for the MTA under test count.
    assert_eq!(
        groups[2].set.get("soft_bounce").map(String::as_str),
        Some("yes")
    );
    assert!(!groups[2].set.contains_key("x"));
}

/// An MTA that cannot set its retry delay, for the unsupported outcome.
struct NoRetryKnobs;

impl crate::target::Mta for NoRetryKnobs {
    fn name(&self) -> &'static str {
        "postfix"
    }
    fn version(&self) -> Result<String, crate::target::TargetError> {
        Ok("0".into())
    }
    fn support(&self, knob: crate::target::knobs::Knob) -> crate::target::Support {
        match knob {
            crate::target::knobs::Knob::RetryMin => crate::target::Support::No("compiled in"),
            _ => crate::target::Support::Yes,
        }
    }
    fn start(
        &self,
        _: &crate::target::Spec,
    ) -> Result<Box<dyn crate::target::Instance>, crate::target::TargetError> {
        unreachable!("not started in unit tests")
    }
}

#[test]
fn a_knob_the_target_cannot_set_makes_the_scenario_unsupported_and_gets_no_instance() {
    let needs = parse_scenario(
        Path::new("suites/x/0004-t.toml"),
        &format!("{HEAD}[target]\nretry_min = \"1s\"\n[[expect]]\ncontacted = \"mx\"\n"),
    )
    .unwrap();
    let why = unsupported(&needs, &NoRetryKnobs).expect("unsupported");
    assert!(why.contains("cannot set `retry_min`: compiled in"), "{why}");
    assert_eq!(setting_groups(&[needs], &NoRetryKnobs, 0, None).len(), 1);
    let plain = scenario("[[expect]]\ncontacted = \"mx\"\n");
    assert_eq!(unsupported(&plain, &NoRetryKnobs), None);
}

#[test]
fn auto_submitted_is_read_from_the_top_level_header_only() {
    let dsn = postfix_dsn("5.1.1", "failed", "text/rfc822-headers");
    assert_eq!(
        auto_submitted(dsn.as_bytes()).as_deref(),
        Some("auto-replied")
    );
    let without = dsn.replace("Auto-Submitted: auto-replied\r\n", "");
    // The returned headers further down do not count.
    let nested = without.replace(
        "Subject: hello\r\n",
        "Subject: hello\r\nAuto-Submitted: auto-generated\r\n",
    );
    assert_eq!(auto_submitted(nested.as_bytes()), None);
    let sc = scenario("[[expect]]\ndsn = { auto_submitted = true }\n");
    assert!(is_pass(&one(&sc, &dsn_obs(&dsn), 0.4, false)));
    let why = fail_text(one(&sc, &dsn_obs(&nested), 5.0, true));
    assert!(why.contains("no Auto-Submitted header"), "{why}");
    let no = dsn.replace("Auto-Submitted: auto-replied", "Auto-Submitted: no");
    let why = fail_text(one(&sc, &dsn_obs(&no), 5.0, true));
    assert!(why.contains("Auto-Submitted: no"), "{why}");
}

#[test]
fn dns_queries_are_matched_by_scoped_name_and_type() {
    use crate::run::observe::DnsQuery;
    let sc = scenario(
        "[[expect]]\nqueried = \"dest.test MX\"\n[[expect]]\nnot_queried = \"dest.test A\"\n",
    );
    let mut o = Observations::default();
    let q = |name: &str, qtype: &str| DnsQuery {
        at: secs(0.1),
        name: name.into(),
        qtype: qtype.into(),
        outcome: "Answered { count: 1 }".into(),
    };
    // An unscoped name is another scenario's: it does not count.
    o.dns.push(q("dest.test", "MX"));
    let d = judge(&sc, &o, 0.2, false);
    assert_eq!(d, vec![Decision::Pending, Decision::Pending]);
    o.dns.push(q(&Scope::new(0).name("dest.test"), "MX"));
    let d = judge(&sc, &o, 0.3, false);
    assert!(is_pass(&d[0]), "{d:?}");
    assert_eq!(d[1], Decision::Pending, "a negative waits for the end");
    assert!(is_pass(&judge(&sc, &o, 9.0, true)[1]));
    o.dns.push(q(&Scope::new(0).name("dest.test"), "A"));
    assert!(fail_text(judge(&sc, &o, 0.4, false).remove(1)).contains("the target asked at 0.100 s"));
}

#[test]
fn the_lint_refuses_each_kind_of_scenario_that_cannot_fail() {
    let problems = |text: &str| -> Vec<String> {
        let sc = parse_scenario(Path::new("suites/x/0009-t.toml"), text).unwrap();
        lint(&sc)
            .into_iter()
            .map(|(l, w)| format!("{l}: {w}"))
            .collect()
    };
    // Only negative expectations: nothing shows the target acted.
    let p = problems(&format!(
        "{HEAD}[[expect]]\nnot_contacted = \"mx20\"\n[[expect]]\nno_dsn = true\n"
    ));
    assert!(
        p.iter().any(|x| x.contains("passes when nothing happens")),
        "{p:?}"
    );
    // no_dsn with the null sender and nowhere for a bounce to go.
    let null = HEAD.replace("from = \"alice@src.test\"", "from = \"\"");
    let p = problems(&format!(
        "{null}[[expect]]\ncontacted = \"mx\"\n[[expect]]\nno_dsn = true\n"
    ));
    assert!(
        p.iter().any(|x| x.contains("`no DSN sent` cannot fail")),
        "{p:?}"
    );
    // ... which `header_from` fixes: the forbidden bounce has somewhere to arrive.
    let watched = null.replace(
        "from = \"\"",
        "from = \"\"\nheader_from = \"mailer-daemon@src.test\"",
    );
    let p = problems(&format!(
        "{watched}[[expect]]\ncontacted = \"mx\"\n[[expect]]\nno_dsn = true\n"
    ));
    assert!(p.is_empty(), "{p:?}");
    // deliveries = 0 on a host whose every attempt rejects the recipient.
    let rejecting = HEAD.replace(
        "[hosts.mx]\nname = \"mx.dest.test\"",
        "[hosts.mx]\nname = \"mx.dest.test\"\nattempt = [{ rcpt = \"550 5.1.1 no\" }]",
    );
    let p = problems(&format!("{rejecting}[[expect]]\ncontacted = \"mx\"\n[[expect]]\ndeliveries = {{ host = \"mx\", count = 0 }}\n"));
    assert!(
        p.iter()
            .any(|x| x.contains("can never accept a message (attempt 1: every RCPT)")),
        "{p:?}"
    );
    // ... but not when a later attempt may accept.
    let later = rejecting.replace(
        "[{ rcpt = \"550 5.1.1 no\" }]",
        "[{ rcpt = \"451 4.2.0 later\" }, {}]",
    );
    let p = problems(&format!("{later}[[expect]]\ncontacted = \"mx\"\n[[expect]]\ndeliveries = {{ host = \"mx\", count = 0 }}\n"));
    assert!(p.is_empty(), "{p:?}");
    // not_contacted on a host the target cannot find.
    let hidden = HEAD.replace(
        "[hosts.mx20]\nname = \"mx20.dest.test\"",
        "[hosts.mx20]\nname = \"mx20.dest.test\"\naddress = false",
    );
    let p = problems(&format!(
        "{hidden}[[expect]]\ncontacted = \"mx\"\n[[expect]]\nnot_contacted = \"mx20\"\n"
    ));
    assert!(
        p.iter().any(|x| x.contains("has no address record")),
        "{p:?}"
    );
    // Every rule names the line of the expectation.
    assert!(p[0].starts_with("19: "), "{p:?}");
}

#[test]
fn dsn_checks_compare_parsed_codes_exact_names_recipients_and_time() {
    let o_with = |dsn: String, at: f64| {
        let mut o = Observations::default();
        o.sessions.push(session(
            "sender-mx",
            at,
            vec![delivery("sender-mx", at, "", &[ALICE], &dsn)],
        ));
        o
    };
    let dsn = postfix_dsn("5.1.1", "failed", "");
    // The status is read from the parsed code: a comment does not hide it...
    let commented = dsn.replace("Status: 5.1.1", "Status: 5.1.1 (no such user)");
    let sc = scenario("[[expect]]\ndsn = { status = \"5.1.1\" }\n");
    assert!(is_pass(&one(&sc, &o_with(commented, 1.0), 1.0, false)));
    // ... and text that only looks like the code does not match.
    let fake = dsn.replace("Status: 5.1.1", "Status: 5.1.1x");
    assert!(!is_pass(&one(&sc, &o_with(fake, 1.0), 1.0, true)));
    // Remote-MTA must name the host exactly, not contain it.
    let sc = scenario("[[expect]]\ndsn = { remote_mta = \"mx\" }\n");
    assert!(is_pass(&one(&sc, &o_with(dsn.clone(), 1.0), 1.0, false)));
    let longer = dsn.replace(
        "Remote-MTA: dns; mx.dest.s0.test",
        "Remote-MTA: dns; mx.dest.s0.test.evil",
    );
    assert!(!is_pass(&one(&sc, &o_with(longer, 1.0), 1.0, true)));
    // Reporting-MTA likewise.
    let sc = scenario("[[expect]]\ndsn = { reporting_mta = true }\n");
    let other = dsn.replace(
        "Reporting-MTA: dns; mta.target.test",
        "Reporting-MTA: dns; mta.target.test.example",
    );
    assert!(is_pass(&one(&sc, &o_with(dsn.clone(), 1.0), 1.0, false)));
    assert!(!is_pass(&one(&sc, &o_with(other, 1.0), 1.0, true)));
    // A delivered recipient must not be reported on.
    let sc = scenario("[[expect]]\ndsn = { not_rcpt = \"bob@dest.test\" }\n");
    let why = fail_text(one(&sc, &o_with(dsn.clone(), 1.0), 1.0, true));
    assert!(why.contains("reports on bob@dest.test"), "{why}");
    // Not before the queue lifetime (5 days in these knobs) less 1 s.
    let sc = scenario("[[expect]]\ndsn = { not_before = \"4s\" }\n");
    let why = fail_text(one(&sc, &o_with(dsn.clone(), 2.5), 2.5, true));
    assert!(why.contains("came at 2.500 s, before 4s"), "{why}");
    assert!(is_pass(&one(&sc, &o_with(dsn, 3.2), 3.2, false)));
}

#[test]
fn no_dsn_with_an_action_counts_only_that_action() {
    let mut o = Observations::default();
    o.sessions.push(session(
        "sender-mx",
        1.0,
        vec![delivery(
            "sender-mx",
            1.0,
            "",
            &[ALICE],
            &postfix_dsn("4.2.0", "delayed", ""),
        )],
    ));
    let failed_only = scenario("[[expect]]\nno_dsn = { action = \"failed\" }\n");
    assert!(is_pass(&one(&failed_only, &o, 2.0, true)));
    let any = scenario("[[expect]]\nno_dsn = true\n");
    assert!(matches!(one(&any, &o, 2.0, false), Decision::Fail(_)));
}

#[test]
fn queued_is_read_from_the_targets_queue_at_the_end() {
    let sc = scenario("[[expect]]\nqueued = true\n");
    let mut o = Observations::default();
    assert_eq!(one(&sc, &o, 1.0, false), Decision::Pending);
    assert!(matches!(one(&sc, &o, 1.0, true), Decision::Fail(_)));
    o.queue = Some(Ok(vec![crate::target::Queued {
        id: "4ABC".into(),
        sender: ALICE.into(),
        recipients: vec!["someone@else.test".into()],
        reason: None,
    }]));
    let why = fail_text(one(&sc, &o, 1.0, true));
    assert!(why.contains("none for bob@dest.test"), "{why}");
    o.queue = Some(Ok(vec![crate::target::Queued {
        id: "4ABC".into(),
        sender: ALICE.into(),
        recipients: vec![BOB.into()],
        reason: Some("connection refused".into()),
    }]));
    let Decision::Pass(text) = one(&sc, &o, 1.0, true) else {
        panic!("expected a pass")
    };
    assert!(text.contains("queued as 4ABC"), "{text}");
}

#[test]
fn names_in_raw_settings_are_scoped_like_the_scenario() {
    let scope = Scope::new(7);
    assert_eq!(
        super::scope_names("mailer-daemon@src.test", &scope),
        "mailer-daemon@src.s7.test"
    );
    assert_eq!(
        super::scope_names("bounce, 2bounce", &scope),
        "bounce, 2bounce"
    );
    assert_eq!(
        super::scope_names("regexp:{{/x/ REDIRECT a@b.test}}", &scope),
        "regexp:{{/x/ REDIRECT a@b.s7.test}}"
    );
}

#[test]
fn sessions_are_unsupported_on_a_target_that_relays_only_for_authenticated_clients() {
    let with_session = parse_scenario(
        Path::new("suites/x/0005-t.toml"),
        "title = \"t\"\nrule = \"r\"\nrfc = \"RFC 5321\"\nstrength = \"MUST\"\n\
         [[session]]\nscript = '''\n< 220\n> RCPT TO:<b@dest.test>\n< 503\n'''\n",
    )
    .unwrap();
    let why = unsupported(&with_session, &crate::target::chasquid::CHASQUID)
        .expect("unsupported on chasquid");
    assert!(why.contains("503 5.7.1 Relay not allowed"), "{why}");
    assert_eq!(unsupported(&with_session, &NoRetryKnobs), None);
    let probe = parse_scenario(
        Path::new("suites/x/0006-t.toml"),
        "title = \"t\"\nrule = \"r\"\nrfc = \"RFC 5321\"\nstrength = \"MUST\"\n\
         [[session]]\nscript = '''\n< 220\n> NOOP\n< 250\n'''\n",
    )
    .unwrap();
    assert_eq!(
        unsupported(&probe, &crate::target::chasquid::CHASQUID),
        None
    );
    let plain = scenario("[[expect]]\ncontacted = \"mx\"\n");
    assert_eq!(
        unsupported(&plain, &crate::target::chasquid::CHASQUID),
        None
    );
}
