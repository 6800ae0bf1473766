//! Judge stage: expectations about what reached the fake hosts — deliveries, contacts, order, attempts, the injection's outcome.

use super::*;

/// The message reached `host` for every recipient in `rcpt`.
pub struct Delivered<'a> {
    pub host: &'a String,
    pub rcpt: &'a [String],
}

impl Check for Delivered<'_> {
    fn describe(&self) -> String {
        let Self { host, rcpt } = *self;

        format!("delivered via {host} for {}", rcpt.join(", "))
    }

    fn decide(&self, cx: &Ctx) -> Decision {
        let Self { host, rcpt } = *self;
        let (sc, scope, o) = (cx.sc, cx.scope, cx.o);
        let pending_or = |why: String| cx.pending_or(why);

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
        // The loader refuses an empty `rcpt`; should one get here anyway it
        // is a failure, never a pass on nothing (nor a panic).
        let found = got.iter().find(|d| {
            d.rcpts
                .iter()
                .any(|x| want.iter().any(|w| x.eq_ignore_ascii_case(w)))
        });
        if let (false, Some(d)) = (want.is_empty(), found.filter(|_| want.iter().all(have))) {
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
                        !d.mail_from.is_empty() && d.rcpts.iter().any(|x| x.eq_ignore_ascii_case(r))
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
}

/// The target tried to connect to `h`.
pub struct Contacted<'a> {
    pub h: &'a String,
}

impl Check for Contacted<'_> {
    fn describe(&self) -> String {
        let h = self.h;
        format!("{h} contacted")
    }

    fn decide(&self, cx: &Ctx) -> Decision {
        let h = self.h;
        let (scope, o) = (cx.scope, cx.o);
        let pending_or = |why: String| cx.pending_or(why);
        match first_contact(o, h) {
            Some(t) => Decision::Pass(format!("{h} contacted at {t:.3} s")),
            None => pending_or(format!(
                "expected a connection attempt to {h}; observed: {}",
                scope.unscope(&summary(o))
            )),
        }
    }
}

/// The target never tried to connect to `h`.
pub struct NotContacted<'a> {
    pub h: &'a String,
}

impl Check for NotContacted<'_> {
    fn describe(&self) -> String {
        let h = self.h;
        format!("{h} never contacted")
    }

    fn negative(&self) -> bool {
        true
    }

    fn unfailable(&self, sc: &Scenario) -> Option<String> {
        let h = sc.hosts.iter().find(|x| x.key == *self.h)?;
        (!h.address_record).then(|| {
            format!(
                "host `{}` has no address record, so the target can never find it; expect a look-up of its name instead (queried)",
                self.h
            )
        })
    }

    fn decide(&self, cx: &Ctx) -> Decision {
        let h = self.h;
        let (scope, o, last) = (cx.scope, cx.o, cx.last);
        match first_contact(o, h) {
            Some(t) => Decision::Fail(format!(
                "expected {h} never to be contacted; observed a connection attempt at {t:.3} s ({})",
                scope.unscope(&summary(o))
            )),
            None if last => Decision::Pass(format!("{h} was never contacted")),
            None => Decision::Pending,
        }
    }
}

/// First contacts came in this order.
pub struct Order<'a> {
    pub hosts: &'a [String],
}

impl Check for Order<'_> {
    fn describe(&self) -> String {
        let h = self.hosts;
        format!("first contact order {}", h.join(" → "))
    }

    fn negative(&self) -> bool {
        true
    }

    fn anchor(&self) -> bool {
        true
    }

    fn decide(&self, cx: &Ctx) -> Decision {
        let h = self.hosts;
        let (scope, o, last) = (cx.scope, cx.o, cx.last);
        order(h, o, scope, last)
    }
}

/// The target accepted (or refused) the injected message.
pub struct Accepted<'a> {
    pub want: &'a bool,
}

impl Check for Accepted<'_> {
    fn describe(&self) -> String {
        if *self.want {
            "target accepts the message".into()
        } else {
            "target refuses the message".into()
        }
    }

    fn decide(&self, cx: &Ctx) -> Decision {
        let want = self.want;
        let (scope, o) = (cx.scope, cx.o);
        let pending_or = |why: String| cx.pending_or(why);
        match o.injections.first() {
            None => pending_or("the message was not injected".into()),
            Some(i) => {
                let last_reply = last_reply(i);
                if i.accepted == *want {
                    Decision::Pass(format!("target answered: {}", scope.unscope(&last_reply)))
                } else if let Some(e) = &i.error {
                    // The dialogue broke off: its last reply is not an answer.
                    Decision::Fail(format!(
                        "expected the target to {} the message; the dialogue broke off: {} (last reply: {})",
                        if *want { "accept" } else { "refuse" },
                        scope.unscope(e),
                        scope.unscope(&last_reply)
                    ))
                } else {
                    Decision::Fail(format!(
                        "expected the target to {} the message; it answered: {}",
                        if *want { "accept" } else { "refuse" },
                        scope.unscope(&last_reply)
                    ))
                }
            }
        }
    }
}

/// Nothing was delivered (via `host`) within the window.
pub struct NotDelivered<'a> {
    pub within: &'a Duration,
    pub host: &'a Option<String>,
}

impl Check for NotDelivered<'_> {
    fn describe(&self) -> String {
        let Self { within, host } = *self;
        format!(
            "nothing delivered{} within {}",
            host.as_ref()
                .map(|h| format!(" via {h}"))
                .unwrap_or_default(),
            humantime::format_duration(*within)
        )
    }

    fn negative(&self) -> bool {
        true
    }

    fn window_end(&self) -> Option<Duration> {
        Some(*self.within)
    }

    fn decide(&self, cx: &Ctx) -> Decision {
        let Self { within, host } = *self;
        let (scope, o, last) = (cx.scope, cx.o, cx.last);

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
}

/// Exactly `count` deliveries via `host` (optionally for one recipient).
pub struct Deliveries<'a> {
    pub host: &'a String,
    pub count: &'a usize,
    pub rcpt: &'a Option<String>,
}

impl Check for Deliveries<'_> {
    fn describe(&self) -> String {
        let Self { host, count, rcpt } = *self;
        format!(
            "exactly {count} deliver{} via {host}{}",
            if *count == 1 { "y" } else { "ies" },
            rcpt.as_ref()
                .map(|r| format!(" for {r}"))
                .unwrap_or_default()
        )
    }

    fn negative(&self) -> bool {
        true
    }

    fn anchor(&self) -> bool {
        *self.count > 0
    }

    fn unfailable(&self, sc: &Scenario) -> Option<String> {
        if *self.count > 0 {
            return None;
        }
        let h = sc.hosts.iter().find(|x| x.key == *self.host)?;
        never_accepts(h).map(|why| {
            format!(
                "host `{}` can never accept a message ({why}); remove it or let an attempt accept",
                self.host
            )
        })
    }

    fn decide(&self, cx: &Ctx) -> Decision {
        let Self { host, count, rcpt } = *self;
        let (scope, o, last) = (cx.scope, cx.o, cx.last);

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
            rcpt.as_ref()
                .map(|r| format!(" for {r}"))
                .unwrap_or_default(),
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
}

/// Connection attempts to `host` within bounds.
pub struct Attempts<'a> {
    pub host: &'a String,
    pub at_least: &'a Option<usize>,
    pub at_most: &'a Option<usize>,
}

impl Check for Attempts<'_> {
    fn describe(&self) -> String {
        let Self {
            host,
            at_least,
            at_most,
        } = *self;
        match (at_least, at_most) {
            (Some(a), Some(b)) => format!("{a} to {b} connection attempts to {host}"),
            (Some(a), None) => format!("at least {a} connection attempts to {host}"),
            (None, Some(b)) => format!("at most {b} connection attempts to {host}"),
            (None, None) => format!("connection attempts to {host}"),
        }
    }

    fn negative(&self) -> bool {
        self.at_most.is_some()
    }

    fn anchor(&self) -> bool {
        self.at_least.is_some_and(|n| n > 0)
    }

    fn decide(&self, cx: &Ctx) -> Decision {
        let Self {
            host,
            at_least,
            at_most,
        } = *self;
        let (o, last) = (cx.o, cx.last);
        let pending_or = |why: String| cx.pending_or(why);

        let times = attempt_times(o, host);
        let n = times.len();
        let shown = format!("{n} connection attempt(s) to {host}{}", schedule(&times));
        if at_most.is_some_and(|m| n > m) {
            return Decision::Fail(format!("expected {}; observed {shown}", self.describe()));
        }
        let enough = at_least.is_none_or(|l| n >= l);
        if enough && (at_most.is_none() || last) {
            Decision::Pass(shown)
        } else {
            pending_or(format!("expected {}; observed {shown}", self.describe()))
        }
    }
}

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

/// Why every connection attempt of `h` refuses the message, or `None` if one may accept it.
pub fn never_accepts(h: &crate::suite::HostSpec) -> Option<String> {
    use crate::suite::{Connect, Step};
    let refuses = |step: &Step, ok: u8| match step {
        Step::Reply(l) => l
            .last()
            .and_then(|x| x.bytes().next())
            .is_some_and(|c| c != ok),
        _ => true,
    };
    let mut whys = Vec::new();
    for (n, a) in h.attempts.iter().enumerate() {
        let why = if !matches!(a.connect, Connect::Accept) {
            Some(format!("attempt {}: connect {:?}", n + 1, a.connect).to_ascii_lowercase())
        } else if refuses(&a.greeting, b'2') {
            Some(format!("attempt {}: greeting", n + 1))
        } else if refuses(&a.mail, b'2') {
            Some(format!("attempt {}: MAIL", n + 1))
        } else if a.rcpt.iter().all(|s| refuses(s, b'2')) {
            Some(format!("attempt {}: every RCPT", n + 1))
        } else if refuses(&a.data, b'3') {
            Some(format!("attempt {}: DATA", n + 1))
        } else if refuses(&a.eod, b'2') {
            Some(format!("attempt {}: end of data", n + 1))
        } else {
            None
        };
        whys.push(why?);
    }
    Some(whys.join(", "))
}
