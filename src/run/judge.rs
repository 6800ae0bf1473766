//! Judge stage: decide each expectation from the observations, with the rule's RFC section and strength.

use super::observe::{Delivery, Observations};
use crate::suite::{DsnExpect, Expect, Returned, Scenario, Timer, SENDER_MX};
use crate::world::Scope;
use serde::Serialize;
use std::collections::BTreeMap;
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

/// `true` for expectations that can only pass once nothing more will happen.
pub fn is_negative(e: &Expect) -> bool {
    matches!(
        e,
        Expect::NotContacted(_)
            | Expect::NoDsn
            | Expect::NotDelivered { .. }
            | Expect::Deliveries { .. }
            | Expect::RetryAfter { .. }
            | Expect::Attempts {
                at_most: Some(_),
                ..
            }
            | Expect::Order(_)
            | Expect::NotQueried { .. }
    )
}

/// `true` when `e` is still pending but can be decided once the scenario is
/// quiet: a DSN expectation after a DSN that did not match has arrived (one
/// more may follow, but only within the settle time).
pub fn waits_for_quiet(e: &Expect, sc: &Scenario, scope: &Scope, o: &Observations) -> bool {
    match e {
        Expect::Dsn(d) => !dsns_to(o, &scope.address(&d.to)).is_empty(),
        Expect::RefusedOrDsn { .. } => !dsns_to(o, &scope.address(&sc.messages[0].from)).is_empty(),
        e => is_negative(e),
    }
}

/// When a time-window expectation can be decided (since the scenario's start).
pub fn window_end(e: &Expect) -> Option<Duration> {
    match e {
        Expect::NotDelivered { within, .. } => Some(*within),
        _ => None,
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
    /// The effective settings of the target instance that ran the scenario.
    pub settings: &'a BTreeMap<String, String>,
    /// The target's own host name (Reporting-MTA).
    pub hostname: &'a str,
}

/// Decide `e` in the context `cx`.
pub fn decide(e: &Expect, cx: &Ctx) -> Decision {
    let (sc, scope, o, last) = (cx.sc, cx.scope, cx.o, cx.last);
    let pending_or = |why: String| {
        if last {
            Decision::Fail(why)
        } else {
            Decision::Pending
        }
    };
    match e {
        Expect::Delivered { host, rcpt } => {
            let want: Vec<String> = rcpt
                .iter()
                .map(|r| scope.address(r).to_ascii_lowercase())
                .collect();
            let got: Vec<&Delivery> = deliveries(o, host)
                .filter(|d| !d.mail_from.is_empty())
                .collect();
            let have = |r: &String| {
                got.iter()
                    .any(|d| d.rcpts.iter().any(|x| x.eq_ignore_ascii_case(r)))
            };
            if want.iter().all(have) {
                let d = got
                    .iter()
                    .find(|d| d.rcpts.iter().any(|x| want.iter().any(|w| x.eq_ignore_ascii_case(w))))
                    .unwrap_or(&got[0]);
                Decision::Pass(format!(
                    "delivered via {host} (attempt {}) at {:.3} s",
                    d.attempt + 1,
                    d.at.as_secs_f64()
                ))
            } else {
                let why = format!(
                    "expected delivery via {host} for {}; observed: {}",
                    rcpt.join(", "),
                    scope.unscope(&summary(o))
                );
                // Once a recipient was taken by another host, the target has
                // handed it over and will not deliver it again.
                let elsewhere = |r: &String| {
                    o.sessions
                        .iter()
                        .filter(|s| s.host != *host)
                        .flat_map(|s| &s.deliveries)
                        .any(|d| {
                            !d.mail_from.is_empty()
                                && d.rcpts.iter().any(|x| x.eq_ignore_ascii_case(r))
                        })
                };
                // Nothing the target refused can be delivered.
                let refused = !o.injections.is_empty()
                    && o.injections.len() == sc.messages.len()
                    && o.injections.iter().all(|i| !i.accepted);
                if refused {
                    let r = o.injections.first().map(last_reply).unwrap_or_default();
                    Decision::Fail(format!(
                        "expected delivery via {host} for {}; the target refused the message: {}",
                        rcpt.join(", "),
                        scope.unscope(&r)
                    ))
                } else if want.iter().any(|r| !have(r) && elsewhere(r)) {
                    Decision::Fail(why)
                } else if let Some((r, at)) = want
                    .iter()
                    .filter(|r| !have(r))
                    .find_map(|r| failed_dsn_for(o, sc, scope, r).map(|at| (r, at)))
                {
                    // The target gave the recipient up and told the sender so.
                    Decision::Fail(format!(
                        "{why}; the target returned {} as failed in a DSN at {:.3} s",
                        scope.unscope(r),
                        at.as_secs_f64()
                    ))
                } else {
                    pending_or(why)
                }
            }
        }
        Expect::Contacted(h) => match first_contact(o, h) {
            Some(t) => Decision::Pass(format!("{h} contacted at {t:.3} s")),
            None => pending_or(format!(
                "expected a connection attempt to {h}; observed: {}",
                scope.unscope(&summary(o))
            )),
        },
        Expect::NotContacted(h) => match first_contact(o, h) {
            Some(t) => Decision::Fail(format!(
                "expected {h} never to be contacted; observed a connection attempt at {t:.3} s ({})",
                scope.unscope(&summary(o))
            )),
            None if last => Decision::Pass(format!("{h} was never contacted")),
            None => Decision::Pending,
        },
        Expect::Order(hosts) => order(hosts, o, scope, last),
        Expect::Accepted(want) => match o.injections.first() {
            None => pending_or("the message was not injected".into()),
            Some(i) => {
                let last_reply = last_reply(i);
                if i.accepted == *want {
                    Decision::Pass(format!("target answered: {}", scope.unscope(&last_reply)))
                } else {
                    Decision::Fail(format!(
                        "expected the target to {} the message; it answered: {}",
                        if *want { "accept" } else { "refuse" },
                        scope.unscope(&last_reply)
                    ))
                }
            }
        },
        Expect::Dsn(want) => {
            let dsns = dsns_to(o, &scope.address(&want.to));
            let mut seen = Vec::new();
            for d in &dsns {
                match check_dsn(want, d, cx) {
                    Ok(pass) => return Decision::Pass(pass),
                    Err(why) => seen.push(why),
                }
            }
            pending_or(format!(
                "expected {}; observed: {}",
                e.describe(),
                if seen.is_empty() {
                    format!("no DSN ({})", scope.unscope(&summary(o)))
                } else {
                    seen.join("; ")
                }
            ))
        }
        Expect::Queried { name, qtype } | Expect::NotQueried { name, qtype } => {
            let scoped = scope.name(name);
            let hit = o
                .dns
                .iter()
                .find(|q| q.name.eq_ignore_ascii_case(&scoped) && q.qtype.eq_ignore_ascii_case(qtype));
            let want = matches!(e, Expect::Queried { .. });
            match (hit, want) {
                (Some(q), true) => Decision::Pass(format!("queried at {:.3} s ({})", q.at.as_secs_f64(), q.outcome)),
                (Some(q), false) => Decision::Fail(format!(
                    "expected no DNS query for {name} {qtype}; the target asked at {:.3} s",
                    q.at.as_secs_f64()
                )),
                (None, true) => pending_or(format!("expected a DNS query for {name} {qtype}; none was seen")),
                (None, false) if last => Decision::Pass(format!("{name} {qtype} was never queried")),
                (None, false) => Decision::Pending,
            }
        }
        Expect::NoDsn => {
            let ours: Vec<String> = sc
                .messages
                .iter()
                .flat_map(|m| &m.to)
                .map(|t| scope.address(t))
                .collect();
            // A null-sender message for anyone but the injected recipients is a DSN.
            let dsn = o.sessions.iter().flat_map(|s| &s.deliveries).find(|d| {
                d.mail_from.is_empty()
                    && !d
                        .rcpts
                        .iter()
                        .all(|r| ours.iter().any(|x| x.eq_ignore_ascii_case(r)))
            });
            match dsn {
                Some(d) => Decision::Fail(format!(
                    "expected no DSN; one reached {} for {} at {:.3} s",
                    d.host,
                    scope.unscope(&d.rcpts.join(", ")),
                    d.at.as_secs_f64()
                )),
                None if last => Decision::Pass("no DSN was sent".into()),
                None => Decision::Pending,
            }
        }
        Expect::NotDelivered { within, host } => {
            let hit = o
                .sessions
                .iter()
                .filter(|s| host.as_ref().is_none_or(|h| s.host == *h))
                .flat_map(|s| &s.deliveries)
                .filter(|d| !d.mail_from.is_empty() && d.at <= *within)
                .min_by_key(|d| d.at);
            match hit {
                Some(d) => Decision::Fail(format!(
                    "expected nothing delivered within {}; {} accepted a message for {} at {:.3} s",
                    humantime::format_duration(*within),
                    d.host,
                    scope.unscope(&d.rcpts.join(", ")),
                    d.at.as_secs_f64()
                )),
                None if cx.now >= *within => Decision::Pass(format!(
                    "nothing delivered within {} (the message stayed with the target; {})",
                    humantime::format_duration(*within),
                    scope.unscope(&summary(o))
                )),
                None if last => Decision::Fail(format!(
                    "the scenario ended after {:.1} s, before the {} window closed",
                    cx.now.as_secs_f64(),
                    humantime::format_duration(*within)
                )),
                None => Decision::Pending,
            }
        }
        Expect::Deliveries { host, count, rcpt } => {
            let want = rcpt.as_ref().map(|r| scope.address(r));
            let got: Vec<&Delivery> = deliveries(o, host)
                .filter(|d| !d.mail_from.is_empty())
                .filter(|d| {
                    want.as_ref()
                        .is_none_or(|w| d.rcpts.iter().any(|x| x.eq_ignore_ascii_case(w)))
                })
                .collect();
            let times: Vec<String> = got
                .iter()
                .map(|d| format!("{:.3} s", d.at.as_secs_f64()))
                .collect();
            let what = format!(
                "{} deliver{} via {host}{}{}",
                got.len(),
                if got.len() == 1 { "y" } else { "ies" },
                rcpt.as_ref().map(|r| format!(" for {r}")).unwrap_or_default(),
                if times.is_empty() {
                    String::new()
                } else {
                    format!(" (at {})", times.join(", "))
                }
            );
            if got.len() > *count {
                Decision::Fail(format!("expected exactly {count}; observed {what}"))
            } else if last {
                if got.len() == *count {
                    Decision::Pass(what)
                } else {
                    Decision::Fail(format!("expected exactly {count}; observed {what}"))
                }
            } else {
                Decision::Pending
            }
        }
        Expect::Attempts {
            host,
            at_least,
            at_most,
        } => {
            let times = attempt_times(o, host);
            let n = times.len();
            let shown = format!(
                "{n} connection attempt(s) to {host}{}",
                schedule(&times)
            );
            if at_most.is_some_and(|m| n > m) {
                return Decision::Fail(format!("expected {}; observed {shown}", e.describe()));
            }
            let enough = at_least.is_none_or(|l| n >= l);
            if enough && (at_most.is_none() || last) {
                Decision::Pass(shown)
            } else {
                pending_or(format!("expected {}; observed {shown}", e.describe()))
            }
        }
        Expect::RetryAfter { host, min, max } => {
            let times = attempt_times(o, host);
            let resolve = |t: &Timer| -> Result<Duration, String> { resolve_timer(t, cx.settings) };
            let (min_d, max_d) = match (min.as_ref().map(resolve).transpose(), max.as_ref().map(resolve).transpose()) {
                (Ok(a), Ok(b)) => (a, b),
                (Err(m), _) | (_, Err(m)) => return Decision::Fail(m),
            };
            let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
            let bounds = format!(
                "{}{}",
                min.as_ref()
                    .zip(min_d)
                    .map(|(t, d)| format!(" min {t} = {:.1} s", d.as_secs_f64()))
                    .unwrap_or_default(),
                max.as_ref()
                    .zip(max_d)
                    .map(|(t, d)| format!(" max {t} = {:.1} s", d.as_secs_f64()))
                    .unwrap_or_default()
            );
            let measured = format!(
                "measured retry schedule for {host}{}; configured:{bounds} (clock granularity allowance {:.1} s)",
                schedule(&times),
                GRANULARITY.as_secs_f64()
            );
            if let Some(m) = min_d {
                if let Some((i, g)) = gaps
                    .iter()
                    .enumerate()
                    .find(|(_, g)| **g + GRANULARITY < m)
                {
                    return Decision::Fail(format!(
                        "retry {} came {:.3} s after the previous attempt, sooner than {}; {measured}",
                        i + 1,
                        g.as_secs_f64(),
                        min.as_ref().map(|t| t.to_string()).unwrap_or_default()
                    ));
                }
                // Rounding to whole seconds does not add up: n retries take
                // at least n × min less one clock step in all.
                let n = gaps.len() as u32;
                let span: Duration = gaps.iter().sum();
                if n > 1 && span + GRANULARITY < m * n {
                    return Decision::Fail(format!(
                        "{n} retries came within {:.3} s (mean gap {:.3} s), sooner than {n} × {} allows; {measured}",
                        span.as_secs_f64(),
                        span.as_secs_f64() / f64::from(n),
                        min.as_ref().map(|t| t.to_string()).unwrap_or_default()
                    ));
                }
            }
            if let (Some(m), Some(g)) = (max_d, gaps.first()) {
                if *g > m + GRANULARITY {
                    return Decision::Fail(format!(
                        "the first retry came {:.3} s after the first attempt, later than {}; {measured}",
                        g.as_secs_f64(),
                        max.as_ref().map(|t| t.to_string()).unwrap_or_default()
                    ));
                }
            }
            if gaps.is_empty() {
                // No retry yet: fail once the first retry is overdue, or at the end.
                if let (Some(m), Some(first)) = (max_d, times.first()) {
                    if cx.now > *first + m + GRANULARITY + Duration::from_secs(1) {
                        return Decision::Fail(format!(
                            "no retry within {} of the first attempt; {measured}",
                            max.as_ref().map(|t| t.to_string()).unwrap_or_default()
                        ));
                    }
                }
                pending_or(format!("expected at least two attempts; {measured}"))
            } else if last {
                Decision::Pass(measured)
            } else {
                Decision::Pending
            }
        }
        Expect::RefusedOrDsn { status } => {
            let Some(i) = o.injections.first() else {
                return pending_or("the message was not injected".into());
            };
            if !i.accepted {
                let reply = last_reply(i);
                let st = reply_status(&reply);
                return if st.as_deref().is_some_and(|s| status_matches(s, status)) {
                    Decision::Pass(format!("refused in session: {}", scope.unscope(&reply)))
                } else {
                    Decision::Fail(format!(
                        "expected status {status}; the target refused the message in session with {} (status {})",
                        scope.unscope(&reply),
                        st.as_deref().unwrap_or("none")
                    ))
                };
            }
            let want = crate::suite::DsnExpect {
                to: sc.messages[0].from.clone(),
                status: Some(status.clone()),
                ..Default::default()
            };
            let mut seen = Vec::new();
            for d in dsns_to(o, &scope.address(&want.to)) {
                match check_dsn(&want, d, cx) {
                    Ok(pass) => return Decision::Pass(format!("accepted, then bounced: {pass}")),
                    Err(why) => seen.push(why),
                }
            }
            pending_or(format!(
                "expected a refusal or a DSN with status {status}; the target accepted the message; {}",
                if seen.is_empty() {
                    "no DSN followed".to_string()
                } else {
                    seen.join("; ")
                }
            ))
        }
    }
}

/// Retry times are kept in whole seconds by some MTAs (Postfix stamps the
/// queue file's time with the next attempt): one measured gap may be up to a
/// second shorter or longer than configured, though the sum of several gaps
/// is off by at most this much too.
pub const GRANULARITY: Duration = Duration::from_secs(1);

fn order(hosts: &[String], o: &Observations, scope: &Scope, last: bool) -> Decision {
    let times: Vec<Option<f64>> = hosts.iter().map(|h| first_contact(o, h)).collect();
    // A later host contacted while an earlier one was not (yet) is out of order.
    for (i, t) in times.iter().enumerate() {
        if let Some(t) = t {
            for (j, u) in times.iter().enumerate().take(i) {
                // An earlier host not seen yet may only be late in the report
                // (the SYN watcher runs apart): decided when the scenario settles.
                let early = match u {
                    None => last,
                    Some(u) => u > t,
                };
                if early {
                    return Decision::Fail(format!(
                        "expected first contact order {}; {} was contacted at {t:.3} s before {}",
                        hosts.join(" → "),
                        hosts[i],
                        hosts[j]
                    ));
                }
            }
        }
    }
    if times.iter().all(Option::is_some) {
        let shown: Vec<String> = hosts
            .iter()
            .zip(&times)
            .map(|(h, t)| format!("{h} at {:.3} s", t.unwrap_or_default()))
            .collect();
        Decision::Pass(shown.join(", "))
    } else {
        let why = format!(
            "expected first contact order {}; observed: {}",
            hosts.join(" → "),
            scope.unscope(&summary(o))
        );
        if last {
            Decision::Fail(why)
        } else {
            Decision::Pending
        }
    }
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

/// Resolve a timer against the instance's settings (Postfix time units).
pub fn resolve_timer(t: &Timer, settings: &BTreeMap<String, String>) -> Result<Duration, String> {
    match t {
        Timer::Fixed(d) => Ok(*d),
        Timer::Setting(k) => {
            let v = settings
                .get(k)
                .map(String::as_str)
                .or_else(|| POSTFIX_TIME_DEFAULTS.iter().find(|(n, _)| n == k).map(|(_, v)| *v))
                .ok_or_else(|| {
                    format!("the target setting `{k}` is not known to mtaspec; write a duration instead")
                })?;
            postfix_time(k, v)
                .ok_or_else(|| format!("cannot read the target setting {k} = {v} as a time"))
        }
    }
}

/// Postfix defaults for time settings the lab does not set.
const POSTFIX_TIME_DEFAULTS: &[(&str, &str)] = &[
    ("delay_warning_time", "0h"),
    ("queue_run_delay", "300s"),
    ("minimal_backoff_time", "300s"),
    ("maximal_backoff_time", "4000s"),
    ("maximal_queue_lifetime", "5d"),
    ("bounce_queue_lifetime", "5d"),
];

/// A Postfix time value: a number with an optional unit (s, m, h, d, w); a bare
/// number takes the parameter's default unit (days for lifetimes, hours for
/// delay_warning_time, seconds otherwise).
pub fn postfix_time(key: &str, v: &str) -> Option<Duration> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let n: u64 = v[..split].parse().ok()?;
    let unit = match &v[split..] {
        "" if key.ends_with("_lifetime") => "d",
        "" if key == "delay_warning_time" => "h",
        "" => "s",
        u => u,
    };
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        "w" => 7 * 86400,
        _ => return None,
    };
    Some(Duration::from_secs(n * secs))
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

/// Check one DSN against the expectation: `Ok(description)` or `Err(what differs)`.
fn check_dsn(want: &DsnExpect, d: &Delivery, cx: &Ctx) -> Result<String, String> {
    let scope = cx.scope;
    let at = format!("DSN at {:.3} s", d.at.as_secs_f64());
    let p = crate::dsn::parse(&d.data).map_err(|e| format!("{at}: unreadable: {e}"))?;
    let findings = crate::dsn::check(&p);
    let mut bad: Vec<String> = Vec::new();
    let rcpt = match &want.rcpt {
        None => p.recipients().next(),
        Some(r) => {
            let a = scope.address(r);
            p.recipients()
                .find(|x| x.addresses().iter().any(|y| y.eq_ignore_ascii_case(&a)))
        }
    };
    if rcpt.is_none() {
        bad.push(match &want.rcpt {
            Some(r) => format!("no recipient group for {r}"),
            None => "no recipient group".into(),
        });
    }
    if let (Some(w), Some(r)) = (&want.reason, rcpt) {
        let all = crate::dsn::classify(&p);
        let c = p.recipients().zip(&all).find(|(x, _)| std::ptr::eq(*x, r));
        if let Some((_, c)) = c.filter(|(_, c)| c.reason.as_str() != w) {
            bad.push(format!(
                "reason {} by {} (wanted {w})",
                c.reason, c.evidence
            ));
        }
    }
    let st = rcpt
        .and_then(|r| r.status.as_ref())
        .map(|s| s.raw.trim().to_string());
    let act = rcpt
        .and_then(|r| r.action.as_ref())
        .map(|a| a.raw().trim().to_ascii_lowercase());
    if let Some(w) = &want.status {
        if !st.as_deref().is_some_and(|s| status_matches(s, w)) {
            bad.push(format!(
                "Status {} (wanted {w})",
                st.as_deref().unwrap_or("missing")
            ));
        }
    }
    if let Some(w) = &want.action {
        if act.as_deref().is_none_or(|a| a != w) {
            bad.push(format!(
                "Action {} (wanted {w})",
                act.as_deref().unwrap_or("missing")
            ));
        }
    }
    let reporting = p
        .per_message()
        .and_then(|m| m.reporting_mta.as_ref())
        .map(|v| v.raw.clone());
    if want.reporting_mta
        && !reporting.as_deref().is_some_and(|r| {
            r.to_ascii_lowercase()
                .contains(&cx.hostname.to_ascii_lowercase())
        })
    {
        bad.push(format!(
            "Reporting-MTA {} (wanted the target's name {})",
            reporting.as_deref().unwrap_or("missing"),
            cx.hostname
        ));
    }
    let remote = rcpt
        .and_then(|r| r.remote_mta.as_ref())
        .map(|v| v.value.trim().trim_end_matches('.').to_ascii_lowercase());
    if let Some(h) = &want.remote_mta {
        let idx = cx.sc.hosts.iter().position(|x| x.key == *h);
        let name = idx
            .and_then(|i| cx.sc.hosts[i].name.as_ref())
            .map(|n| scope.name(n));
        let addr = idx.map(|i| scope.host_addr(i).to_string());
        let ok = remote.as_deref().is_some_and(|r| {
            name.as_deref().is_some_and(|n| r == n)
                || addr.as_deref().is_some_and(|a| r.contains(a))
        });
        if !ok {
            bad.push(format!(
                "Remote-MTA {} (wanted {h}, {})",
                remote
                    .as_deref()
                    .map(|r| scope.unscope(r))
                    .unwrap_or_else(|| "missing".into()),
                name.as_deref()
                    .map(|n| scope.unscope(n))
                    .unwrap_or_default()
            ));
        }
    }
    let diag = rcpt
        .and_then(|r| r.diagnostic_code.as_ref())
        .map(|c| scope.unscope(&c.value.raw));
    if let Some(w) = &want.diagnostic {
        if !diag
            .as_deref()
            .is_some_and(|x| x.to_ascii_lowercase().contains(&w.to_ascii_lowercase()))
        {
            bad.push(format!(
                "Diagnostic-Code {} (wanted one containing {w:?})",
                diag.as_deref().unwrap_or("missing")
            ));
        }
    }
    if want.multipart_report {
        let mut why = Vec::new();
        if p.content_type != "multipart/report" {
            why.push(format!("content type {}", p.content_type));
        }
        if p.report_type.as_deref() != Some("delivery-status") {
            why.push(format!(
                "report-type {}",
                p.report_type.as_deref().unwrap_or("missing")
            ));
        }
        if p.legacy || p.reports.is_empty() {
            why.push("no message/delivery-status part".into());
        }
        if p.human_text.is_none() {
            why.push("no human-readable part".into());
        }
        if !why.is_empty() {
            bad.push(format!("not a multipart/report DSN: {}", why.join(", ")));
        }
    }
    if let Some(w) = want.returned {
        let got = p.returned.as_ref().map(|r| r.kind);
        let ok = match w {
            Returned::Headers => got == Some(crate::dsn::ReturnedKind::HeadersOnly),
            Returned::Full => got == Some(crate::dsn::ReturnedKind::FullMessage),
            Returned::Nothing => got.is_none(),
        };
        if !ok {
            bad.push(format!(
                "returned content {} (wanted {})",
                p.returned
                    .as_ref()
                    .map(|r| r.content_type.clone())
                    .unwrap_or_else(|| "none".into()),
                match w {
                    Returned::Headers => "headers only",
                    Returned::Full => "the full message",
                    Returned::Nothing => "none",
                }
            ));
        }
    }
    let envid = p.per_message().and_then(|m| m.original_envelope_id.clone());
    if let Some(w) = &want.envid {
        if envid.as_deref().map(str::trim) != Some(w.as_str()) {
            bad.push(format!(
                "Original-Envelope-Id {} (wanted {w})",
                envid.as_deref().unwrap_or("missing")
            ));
        }
    }
    let orcpt = rcpt.and_then(|r| r.original_recipient.as_ref());
    if let Some(w) = &want.orcpt {
        let (kind, addr) = match w.split_once(';') {
            Some((k, a)) => (Some(k.trim()), a.trim()),
            None => (None, w.trim()),
        };
        let ok = orcpt.is_some_and(|v| {
            v.address().eq_ignore_ascii_case(&scope.address(addr))
                && kind.is_none_or(|k| v.is_kind(k))
        });
        if !ok {
            bad.push(format!(
                "Original-Recipient {} (wanted {w})",
                orcpt
                    .map(|v| scope.unscope(&v.raw))
                    .unwrap_or_else(|| "missing".into())
            ));
        }
    }
    if want.will_retry_until && rcpt.is_some_and(|r| r.will_retry_until.is_none()) {
        bad.push("no Will-Retry-Until".into());
    }
    if want.auto_submitted {
        match auto_submitted(&d.data) {
            Some(v) if !v.eq_ignore_ascii_case("no") => {}
            Some(v) => bad.push(format!("Auto-Submitted: {v} (wanted auto-replied)")),
            None => bad.push("no Auto-Submitted header (wanted auto-replied)".into()),
        }
    }
    if !want.no_findings.is_empty() {
        let mut b = globset::GlobSetBuilder::new();
        for g in &want.no_findings {
            if let Ok(g) = globset::Glob::new(g) {
                b.add(g);
            }
        }
        if let Ok(set) = b.build() {
            for f in findings.iter().filter(|f| set.is_match(&f.rule)) {
                bad.push(format!(
                    "finding {} ({} {}): {}",
                    f.rule,
                    f.section,
                    f.strength,
                    scope.unscope(&f.detail)
                ));
            }
        }
    }
    let desc = format!(
        "{at} from {} with Status {}, Action {}{}{}",
        if d.mail_from.is_empty() {
            "<>"
        } else {
            &d.mail_from
        },
        st.as_deref().unwrap_or("(none)"),
        act.as_deref().unwrap_or("(none)"),
        diag.as_deref()
            .map(|x| format!(", Diagnostic-Code {x}"))
            .unwrap_or_default(),
        if findings.is_empty() {
            "; conformance findings: none".to_string()
        } else {
            format!(
                "; conformance findings: {}",
                findings
                    .iter()
                    .map(|f| format!(
                        "{} ({} {}): {}",
                        f.rule,
                        f.section,
                        f.strength,
                        scope.unscope(&f.detail)
                    ))
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        }
    );
    if bad.is_empty() {
        Ok(desc)
    } else {
        Err(format!("{desc} — differs: {}", bad.join(", ")))
    }
}

/// The value of the top-level `Auto-Submitted:` header (keyword only, no comment).
pub fn auto_submitted(message: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(message);
    let header = text
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .split("\n\n")
        .next()
        .unwrap_or_default()
        .to_string();
    header.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim().eq_ignore_ascii_case("auto-submitted").then(|| {
            let v = value.trim();
            v.split(|c: char| c == ';' || c == '(' || c.is_whitespace())
                .next()
                .unwrap_or(v)
                .to_string()
        })
    })
}

/// When a DSN to the first message's sender reports `rcpt` (scoped) as failed: its time.
fn failed_dsn_for(o: &Observations, sc: &Scenario, scope: &Scope, rcpt: &str) -> Option<Duration> {
    let sender = scope.address(&sc.messages.first()?.from);
    dsns_to(o, &sender).into_iter().find_map(|d| {
        let p = crate::dsn::parse(&d.data).ok()?;
        let failed = p.recipients().any(|x| {
            x.action.as_ref().and_then(|a| a.name()) == Some("failed")
                && x.addresses().iter().any(|a| a.eq_ignore_ascii_case(rcpt))
        });
        failed.then_some(d.at)
    })
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
