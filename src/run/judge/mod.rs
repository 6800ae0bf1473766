//! Judge stage: decide each expectation from the observations, with the rule's RFC section and strength.

mod delivery;
mod dns;
mod dsn;
mod queue;
mod session;
mod timing;

pub use dsn::auto_submitted;
pub use timing::{resolve_timer, GRANULARITY};

use super::observe::{Delivery, Observations};
use crate::suite::{DsnExpect, Expect, Returned, Scenario, Timer, SENDER_MX};
use crate::world::Scope;
use serde::Serialize;
use std::time::Duration;

/// The state of one expectation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "detail", rename_all = "snake_case")]
pub enum Decision {
    Pending,
    Pass(String),
    Fail(String),
}

impl Decision {
    pub fn decided(&self) -> bool {
        !matches!(self, Decision::Pending)
    }
}

/// Everything the judge needs to decide one expectation.
pub struct Ctx<'a> {
    pub sc: &'a Scenario,
    pub scope: &'a Scope,
    pub o: &'a Observations,
    /// Time since the scenario began.
    pub now: Duration,
    /// Nothing more will be observed: pending becomes final.
    pub last: bool,
    /// The effective knobs of the target instance that ran the scenario.
    pub knobs: &'a crate::target::knobs::Knobs,
    /// The target's own host name (Reporting-MTA).
    pub hostname: &'a str,
}

impl Ctx<'_> {
    /// Pending while more may be observed; `Fail(why)` once nothing more will be.
    pub fn pending_or(&self, why: String) -> Decision {
        if self.last {
            Decision::Fail(why)
        } else {
            Decision::Pending
        }
    }
}

/// Everything about one kind of expectation: how it reads in a report,
/// whether it can only pass once nothing more happens, and its decision.
/// Adding an expectation means one implementation in one family module.
pub trait Check {
    /// A short description for reports ("delivered via mx20").
    fn describe(&self) -> String;
    /// `true` when it can only pass once nothing more will happen.
    fn negative(&self) -> bool {
        false
    }
    /// `true` when still pending but decidable once the scenario is quiet.
    fn waits_for_quiet(&self, _cx: &Ctx) -> bool {
        self.negative()
    }
    /// When a time-window expectation can be decided (since the scenario's start).
    fn window_end(&self) -> Option<Duration> {
        None
    }
    /// `true` when passing shows the target acted (delivered, contacted,
    /// bounced, queried, kept the message ...): every scenario needs one.
    fn anchor(&self) -> bool {
        !self.negative()
    }
    /// Why this expectation can never fail in scenario `sc` (the place where
    /// the forbidden event would show up does not exist), if so.
    fn unfailable(&self, _sc: &Scenario) -> Option<String> {
        None
    }
    /// Decide it from the observations so far.
    fn decide(&self, cx: &Ctx) -> Decision;
}

/// The rules that refuse a scenario that cannot fail: `(line, why)` for each
/// problem (the line of the expectation, or of the first one).
pub fn lint(sc: &Scenario) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let line = |i: usize| sc.expect_lines.get(i).copied().unwrap_or(1);
    for (i, e) in sc.expects.iter().enumerate() {
        if let Some(why) = check(e).unfailable(sc) {
            out.push((line(i), format!("`{}` cannot fail: {why}", describe(e))));
        }
    }
    if !sc.expects.iter().any(|e| check(e).anchor()) {
        out.push((
            line(0),
            "every expectation here passes when nothing happens: add one that shows the target acted (delivered, contacted, dsn, accepted, queried, queued, attempts with at_least)".into(),
        ));
    }
    out
}

/// The one place that maps an expectation onto its family's [`Check`].
pub fn check(e: &Expect) -> Box<dyn Check + '_> {
    match e {
        Expect::Delivered { host, rcpt } => Box::new(delivery::Delivered { host, rcpt }),
        Expect::Order(hosts) => Box::new(delivery::Order { hosts }),
        Expect::Contacted(h) => Box::new(delivery::Contacted { h }),
        Expect::NotContacted(h) => Box::new(delivery::NotContacted { h }),
        Expect::Accepted(want) => Box::new(delivery::Accepted { want }),
        Expect::NotDelivered { within, host } => Box::new(delivery::NotDelivered { within, host }),
        Expect::Deliveries { host, count, rcpt } => {
            Box::new(delivery::Deliveries { host, count, rcpt })
        }
        Expect::Attempts {
            host,
            at_least,
            at_most,
        } => Box::new(delivery::Attempts {
            host,
            at_least,
            at_most,
        }),
        Expect::Dsn(want) => Box::new(dsn::Dsn { want }),
        Expect::NoDsn { action } => Box::new(dsn::NoDsn { action }),
        Expect::Queued => Box::new(queue::Queued),
        Expect::Session(x) => Box::new(session::Session { x }),
        Expect::RefusedOrDsn { status } => Box::new(dsn::RefusedOrDsn { status }),
        Expect::RetryAfter { host, min, max } => Box::new(timing::RetryAfter { host, min, max }),
        Expect::Queried { name, qtype } => Box::new(dns::Query {
            name,
            qtype,
            want: true,
        }),
        Expect::NotQueried { name, qtype } => Box::new(dns::Query {
            name,
            qtype,
            want: false,
        }),
    }
}

/// Decide `e` in the context `cx`.
pub fn decide(e: &Expect, cx: &Ctx) -> Decision {
    check(e).decide(cx)
}

/// A short description of `e` for reports.
pub fn describe(e: &Expect) -> String {
    check(e).describe()
}

/// `true` for expectations that can only pass once nothing more will happen.
pub fn is_negative(e: &Expect) -> bool {
    check(e).negative()
}

/// `true` when `e` is still pending but can be decided once the scenario is quiet.
pub fn waits_for_quiet(e: &Expect, cx: &Ctx) -> bool {
    check(e).waits_for_quiet(cx)
}

/// When a time-window expectation can be decided (since the scenario's start).
pub fn window_end(e: &Expect) -> Option<Duration> {
    check(e).window_end()
}

/// The target's decisive answer to an injection: its first 4yz/5yz reply,
/// else its reply to the end of data, else its last reply.
fn last_reply(i: &super::observe::Injection) -> String {
    let peer = || i.transcript.iter().filter(|l| l.from_peer);
    peer()
        .find(|l| l.text.starts_with(['4', '5']))
        .or_else(|| {
            let eod = i
                .transcript
                .iter()
                .position(|l| !l.from_peer && l.text.starts_with("[message"))?;
            i.transcript[eod..].iter().find(|l| l.from_peer)
        })
        .or_else(|| peer().next_back())
        .map(|l| l.text.clone())
        .unwrap_or_else(|| i.error.clone().unwrap_or_default())
}

/// The enhanced status code in a reply line (`554 5.4.0 Error` → `5.4.0`).
pub fn reply_status(line: &str) -> Option<String> {
    let rest = line.get(4..)?;
    let tok = rest.split_whitespace().next()?;
    let parts: Vec<&str> = tok.split('.').collect();
    (parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit())))
    .then(|| tok.to_string())
}

/// `5.1.1` matches the patterns `5`, `5.1` and `5.1.1`.
pub fn status_matches(status: &str, pattern: &str) -> bool {
    status == pattern || status.starts_with(&format!("{pattern}."))
}

/// Times of the connection attempts to `host` (SYNs seen, or sessions when the watcher saw none).
fn attempt_times(o: &Observations, host: &str) -> Vec<Duration> {
    let mut syn: Vec<Duration> = o
        .connects
        .iter()
        .filter(|c| c.host == host)
        .map(|c| c.at)
        .collect();
    let mut ses: Vec<Duration> = o
        .sessions
        .iter()
        .filter(|s| s.host == host)
        .map(|s| s.at)
        .collect();
    syn.sort();
    ses.sort();
    if ses.len() > syn.len() {
        ses
    } else {
        syn
    }
}

fn schedule(times: &[Duration]) -> String {
    if times.is_empty() {
        return String::new();
    }
    let at: Vec<String> = times
        .iter()
        .map(|t| format!("{:.2}", t.as_secs_f64()))
        .collect();
    let gaps: Vec<String> = times
        .windows(2)
        .map(|w| format!("{:.2}", (w[1] - w[0]).as_secs_f64()))
        .collect();
    if gaps.is_empty() {
        format!(" at {} s", at.join(", "))
    } else {
        format!(" at {} s (gaps {} s)", at.join(", "), gaps.join(", "))
    }
}

fn deliveries<'a>(o: &'a Observations, host: &'a str) -> impl Iterator<Item = &'a Delivery> {
    o.sessions
        .iter()
        .filter(move |s| s.host == host)
        .flat_map(|s| s.deliveries.iter())
}

/// Messages with the null reverse-path that reached the sender's MX for `to`.
fn dsns_to<'a>(o: &'a Observations, to: &str) -> Vec<&'a Delivery> {
    o.sessions
        .iter()
        .flat_map(|s| s.deliveries.iter())
        .filter(|d| d.mail_from.is_empty() && d.rcpts.iter().any(|r| r.eq_ignore_ascii_case(to)))
        .collect()
}

/// Seconds at which `host` was first contacted: its first SYN, or its first
/// session when the watcher saw none. SYNs are read in order from one socket,
/// so they order hosts reliably; a session's time is taken by another task and
/// may come before the watcher reports an earlier SYN.
fn first_contact(o: &Observations, host: &str) -> Option<f64> {
    let syn = o
        .connects
        .iter()
        .filter(|c| c.host == host)
        .map(|c| c.at)
        .min();
    let ses = || {
        o.sessions
            .iter()
            .filter(|s| s.host == host)
            .map(|s| s.at)
            .min()
    };
    syn.or_else(ses).map(|d| d.as_secs_f64())
}

/// One line on what happened, for failure messages.
pub fn summary(o: &Observations) -> String {
    let mut parts = Vec::new();
    let mut hosts: Vec<&str> = Vec::new();
    for c in &o.connects {
        if !hosts.contains(&c.host.as_str()) {
            hosts.push(&c.host);
        }
    }
    for s in &o.sessions {
        if !hosts.contains(&s.host.as_str()) {
            hosts.push(&s.host);
        }
    }
    for h in hosts {
        let n = o.connects.iter().filter(|c| c.host == h).count();
        let delivered: Vec<String> = deliveries(o, h)
            .map(|d| {
                if d.mail_from.is_empty() {
                    format!("a DSN for {}", d.rcpts.join(","))
                } else {
                    format!("a message for {}", d.rcpts.join(","))
                }
            })
            .collect();
        let who = if h == SENDER_MX { "sender's MX" } else { h };
        let ignored: Vec<&str> = o
            .sessions
            .iter()
            .filter(|s| s.host == h)
            .flat_map(|s| s.after_refusal.iter().map(String::as_str))
            .collect();
        if !ignored.is_empty() {
            parts.push(format!(
                "{who}: the target kept talking after a refusing greeting ({})",
                ignored.join(" / ")
            ));
        }
        if delivered.is_empty() {
            parts.push(format!(
                "{who}: {n} connection attempt(s), nothing accepted"
            ));
        } else {
            parts.push(format!(
                "{who}: {n} connection attempt(s), accepted {}",
                delivered.join(", ")
            ));
        }
    }
    if parts.is_empty() {
        "no host was contacted".into()
    } else {
        parts.join("; ")
    }
}
