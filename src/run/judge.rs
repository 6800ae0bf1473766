//! Judge stage: decide each expectation from the observations, with the rule's RFC section and strength.

use super::observe::{Delivery, Observations};
use crate::suite::{Expect, Scenario, SENDER_MX};
use crate::world::Scope;
use serde::Serialize;

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
    matches!(e, Expect::NotContacted(_) | Expect::NoDsn)
}

/// Decide `e`; with `last`, nothing more will be observed, so pending becomes final.
pub fn decide(e: &Expect, sc: &Scenario, scope: &Scope, o: &Observations, last: bool) -> Decision {
    let pending_or = |why: String| {
        if last {
            Decision::Fail(why)
        } else {
            Decision::Pending
        }
    };
    match e {
        Expect::Delivered { host, rcpt } => {
            let want: Vec<String> = rcpt.iter().map(|r| scope.address(r).to_ascii_lowercase()).collect();
            let got: Vec<&Delivery> = deliveries(o, host).filter(|d| !d.mail_from.is_empty()).collect();
            let have = |r: &String| got.iter().any(|d| d.rcpts.iter().any(|x| x.eq_ignore_ascii_case(r)));
            if want.iter().all(have) {
                let d = got[0];
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
                    o.sessions.iter().filter(|s| s.host != *host).flat_map(|s| &s.deliveries).any(|d| {
                        !d.mail_from.is_empty() && d.rcpts.iter().any(|x| x.eq_ignore_ascii_case(r))
                    })
                };
                if want.iter().any(|r| !have(r) && elsewhere(r)) {
                    Decision::Fail(why)
                } else {
                    pending_or(why)
                }
            }
        }
        Expect::Contacted(h) => match first_contact(o, h) {
            Some(t) => Decision::Pass(format!("{h} contacted at {t:.3} s")),
            None => pending_or(format!("expected a connection attempt to {h}; observed: {}", scope.unscope(&summary(o)))),
        },
        Expect::NotContacted(h) => match first_contact(o, h) {
            Some(t) => Decision::Fail(format!(
                "expected {h} never to be contacted; observed a connection attempt at {t:.3} s ({})",
                scope.unscope(&summary(o))
            )),
            None if last => Decision::Pass(format!("{h} was never contacted")),
            None => Decision::Pending,
        },
        Expect::Order(hosts) => {
            // Order comes from the SYNs alone: the watcher sees them in the
            // kernel's order, while sessions are recorded by other tasks.
            let times: Vec<Option<f64>> = hosts.iter().map(|h| first_syn(o, h)).collect();
            // A later host contacted while an earlier one was not (yet) is out of order.
            for (i, t) in times.iter().enumerate() {
                if let Some(t) = t {
                    for (j, u) in times.iter().enumerate().take(i) {
                        let early = match u {
                            None => true,
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
                pending_or(format!(
                    "expected first contact order {}; observed: {}",
                    hosts.join(" → "),
                    scope.unscope(&summary(o))
                ))
            }
        }
        Expect::Accepted(want) => match o.injections.first() {
            None => pending_or("the message was not injected".into()),
            Some(i) => {
                let last_reply = i
                    .transcript
                    .iter()
                    .rev()
                    .find(|l| l.from_peer)
                    .map(|l| l.text.clone())
                    .unwrap_or_else(|| i.error.clone().unwrap_or_default());
                if i.accepted == *want {
                    Decision::Pass(format!("target answered: {last_reply}"))
                } else {
                    Decision::Fail(format!(
                        "expected the target to {} the message; it answered: {}",
                        if *want { "accept" } else { "refuse" },
                        scope.unscope(&last_reply)
                    ))
                }
            }
        },
        Expect::Dsn { to, status, action } => {
            let dsns = dsns_to(o, &scope.address(to));
            let mut seen = Vec::new();
            for d in &dsns {
                match crate::dsn::parse(&d.data) {
                    Err(e) => seen.push(format!("unreadable DSN: {e}")),
                    Ok(p) => {
                        let rcpt = p.recipients().next();
                        let st = rcpt.and_then(|r| r.status.as_ref()).map(|s| s.raw.trim().to_string());
                        let act = rcpt.and_then(|r| r.action.as_ref()).map(|a| a.raw().trim().to_ascii_lowercase());
                        let st_ok = status.as_ref().is_none_or(|want| {
                            st.as_deref().is_some_and(|s| s == want || s.starts_with(&format!("{want}.")))
                        });
                        let act_ok = action
                            .as_ref()
                            .is_none_or(|want| act.as_deref().is_some_and(|a| a.eq_ignore_ascii_case(want)));
                        let desc = format!(
                            "DSN at {:.3} s with Status {} and Action {}",
                            d.at.as_secs_f64(),
                            st.as_deref().unwrap_or("(none)"),
                            act.as_deref().unwrap_or("(none)")
                        );
                        if st_ok && act_ok {
                            return Decision::Pass(desc);
                        }
                        seen.push(desc);
                    }
                }
            }
            pending_or(format!(
                "expected {}; observed: {}",
                e.describe(),
                if seen.is_empty() { "no DSN".to_string() } else { seen.join("; ") }
            ))
        }
        Expect::NoDsn => {
            let dsns = dsns_to(o, &scope.address(&sc.messages[0].from));
            match dsns.first() {
                Some(d) => Decision::Fail(format!(
                    "expected no DSN; one reached {} at {:.3} s",
                    d.host,
                    d.at.as_secs_f64()
                )),
                None if last => Decision::Pass("no DSN was sent".into()),
                None => Decision::Pending,
            }
        }
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

/// Seconds at which the first SYN to `host` was seen.
fn first_syn(o: &Observations, host: &str) -> Option<f64> {
    o.connects
        .iter()
        .filter(|c| c.host == host)
        .map(|c| c.at)
        .min()
        .map(|d| d.as_secs_f64())
}

/// Seconds at which `host` was first contacted (SYN seen, or a session opened).
fn first_contact(o: &Observations, host: &str) -> Option<f64> {
    let syn = o
        .connects
        .iter()
        .filter(|c| c.host == host)
        .map(|c| c.at)
        .min();
    let ses = o
        .sessions
        .iter()
        .filter(|s| s.host == host)
        .map(|s| s.at)
        .min();
    syn.into_iter().chain(ses).min().map(|d| d.as_secs_f64())
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
