//! Judge stage: expectations about time — the retry schedule against the target's effective knobs.

use super::*;

/// Gaps between connection attempts to `host` within the bounds.
pub struct RetryAfter<'a> {
    pub host: &'a String,
    pub min: &'a Option<Timer>,
    pub max: &'a Option<Timer>,
}

impl Check for RetryAfter<'_> {
    fn describe(&self) -> String {
        let Self { host, min, max } = *self;

        let mut s = format!("retries to {host}");
        if let Some(m) = min {
            s.push_str(&format!(" no sooner than {m}"));
        }
        if let Some(m) = max {
            s.push_str(&format!(", first retry within {m}"));
        }
        s
    }

    fn negative(&self) -> bool {
        true
    }

    fn anchor(&self) -> bool {
        true
    }

    fn unfailable(&self, sc: &Scenario) -> Option<String> {
        let value = |t: &Timer| match t {
            Timer::Fixed(d) => Some(*d),
            Timer::Knob(k) => sc.knobs.get(k).and_then(|v| v.as_time()),
        };
        let min = self.min.as_ref()?;
        let d = value(min)?;
        (d <= GRANULARITY).then(|| {
            format!(
                "its minimum {min} = {:.1} s is not above the {:.1} s clock tolerance, so no gap can be short enough to fail; raise it (e.g. retry_min = \"3s\") or drop `min`",
                d.as_secs_f64(),
                GRANULARITY.as_secs_f64()
            )
        })
    }

    fn decide(&self, cx: &Ctx) -> Decision {
        let Self { host, min, max } = *self;
        let (o, last) = (cx.o, cx.last);
        let pending_or = |why: String| cx.pending_or(why);

        let times = attempt_times(o, host);
        let resolve = |t: &Timer| -> Result<Duration, String> { resolve_timer(t, cx.knobs) };
        let (min_d, max_d) = match (
            min.as_ref().map(resolve).transpose(),
            max.as_ref().map(resolve).transpose(),
        ) {
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
            if let Some((i, g)) = gaps.iter().enumerate().find(|(_, g)| **g + GRANULARITY < m) {
                return Decision::Fail(format!(
                    "retry {} came {:.3} s after the previous attempt, sooner than {}; {measured}",
                    i + 1,
                    g.as_secs_f64(),
                    min.as_ref().map(|t| t.to_string()).unwrap_or_default()
                ));
            }
        }
        if let Some(m) = max_d {
            if let Some((i, g)) = gaps.iter().enumerate().find(|(_, g)| **g > m + GRANULARITY) {
                return Decision::Fail(format!(
                    "retry {} came {:.3} s after the previous attempt, later than {}; {measured}",
                    i + 1,
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
}

/// Retry times are kept in whole seconds by some MTAs (Postfix stamps the
/// queue file's time with the next attempt): one measured gap may be up to a
/// second shorter or longer than configured, though the sum of several gaps
/// is off by at most this much too.
pub const GRANULARITY: Duration = Duration::from_secs(1);

/// Resolve a timer against the effective knobs of the instance that ran the scenario.
pub fn resolve_timer(t: &Timer, knobs: &crate::target::knobs::Knobs) -> Result<Duration, String> {
    match t {
        Timer::Fixed(d) => Ok(*d),
        Timer::Knob(k) => knobs.get(k).and_then(|v| v.as_time()).ok_or_else(|| {
            format!("the target does not report its `{k}`; write a duration instead")
        }),
    }
}
