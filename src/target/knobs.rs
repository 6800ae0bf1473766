//! Target stage: the neutral knobs a scenario sets on any MTA (queue lifetime, back-off, hop limit, ...).
//!
//! Each target translates these into its own configuration and reports the
//! values it really uses ([`Knobs`] again), which is what the judge compares
//! measured times with.

use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// A setting every MTA has in some form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Knob {
    /// How long a message may stay queued before it is returned as failed.
    QueueLifetime,
    /// The same for bounces (messages with a null sender).
    BounceLifetime,
    /// After how long a still-queued message causes a "delayed" DSN (0: never).
    DelayWarning,
    /// Shortest wait before a deferred message is retried.
    RetryMin,
    /// Longest wait between retries of a deferred message.
    RetryMax,
    /// How often the queue is scanned for messages due for a retry.
    QueueRun,
    /// How long the target waits for a remote host to accept a connection.
    ConnectTimeout,
    /// How many Received: headers a message may carry before it is treated as looping.
    HopLimit,
}

impl Knob {
    pub const ALL: [Knob; 8] = [
        Knob::QueueLifetime,
        Knob::BounceLifetime,
        Knob::DelayWarning,
        Knob::RetryMin,
        Knob::RetryMax,
        Knob::QueueRun,
        Knob::ConnectTimeout,
        Knob::HopLimit,
    ];

    /// The name used in scenario files.
    pub fn name(self) -> &'static str {
        match self {
            Knob::QueueLifetime => "queue_lifetime",
            Knob::BounceLifetime => "bounce_lifetime",
            Knob::DelayWarning => "delay_warning",
            Knob::RetryMin => "retry_min",
            Knob::RetryMax => "retry_max",
            Knob::QueueRun => "queue_run",
            Knob::ConnectTimeout => "connect_timeout",
            Knob::HopLimit => "hop_limit",
        }
    }

    pub fn from_name(name: &str) -> Option<Knob> {
        Knob::ALL.into_iter().find(|k| k.name() == name)
    }

    /// `true` for the one knob that is a count, not a time.
    pub fn is_count(self) -> bool {
        self == Knob::HopLimit
    }

    /// Every knob name, for error messages.
    pub fn names() -> String {
        Knob::ALL.map(Knob::name).join(", ")
    }
}

impl fmt::Display for Knob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A knob's value: a time, or a count for [`Knob::HopLimit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(untagged)]
pub enum Value {
    Time(Duration),
    Count(u32),
}

impl Value {
    /// Parse a scenario file's value for `knob`: a time like `5s` / `2m`, or a count.
    pub fn parse(knob: Knob, v: &toml::Value) -> Result<Value, String> {
        match (knob.is_count(), v) {
            (true, toml::Value::Integer(n)) if *n >= 1 && *n <= 100_000 => {
                Ok(Value::Count(*n as u32))
            }
            (true, _) => Err(format!(
                "`{knob}` is a count from 1 to 100000, e.g. {knob} = 100"
            )),
            (false, toml::Value::String(s)) => humantime::parse_duration(s.trim())
                .map(Value::Time)
                .map_err(|e| {
                    format!("`{knob} = \"{s}\"` is not a time ({e}); write e.g. \"5s\" or \"2m\"")
                }),
            (false, _) => Err(format!(
                "`{knob}` is a time in quotes, e.g. {knob} = \"5s\""
            )),
        }
    }

    pub fn as_time(self) -> Option<Duration> {
        match self {
            Value::Time(d) => Some(d),
            Value::Count(_) => None,
        }
    }

    pub fn as_count(self) -> Option<u32> {
        match self {
            Value::Count(n) => Some(n),
            Value::Time(_) => None,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Time(d) if d.subsec_millis() == 0 => write!(f, "{}s", d.as_secs()),
            Value::Time(d) => write!(f, "{}ms", d.as_millis()),
            Value::Count(n) => write!(f, "{n}"),
        }
    }
}

/// Values for some knobs.
pub type Knobs = BTreeMap<Knob, Value>;

/// The lab's defaults: fast timers so that retries and expiries happen in
/// seconds. A scenario's own knobs override these.
pub fn lab_defaults() -> Knobs {
    let t = |s| Value::Time(Duration::from_secs(s));
    Knobs::from([
        (Knob::QueueRun, t(1)),
        (Knob::RetryMin, t(2)),
        (Knob::RetryMax, t(2)),
        (Knob::ConnectTimeout, t(2)),
        (Knob::QueueLifetime, t(30)),
        (Knob::BounceLifetime, t(30)),
    ])
}

/// `defaults` with `over` laid on top.
pub fn layered(defaults: &Knobs, over: &Knobs) -> Knobs {
    let mut k = defaults.clone();
    k.extend(over.iter().map(|(a, b)| (*a, *b)));
    k
}

/// `a = 1s, b = 2s` for reports.
pub fn describe(k: &Knobs) -> String {
    k.iter()
        .map(|(n, v)| format!("{n} = {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_values_parse() {
        for k in Knob::ALL {
            assert_eq!(Knob::from_name(k.name()), Some(k));
        }
        assert_eq!(Knob::from_name("maximal_queue_lifetime"), None);
        let s = |x: &str| toml::Value::String(x.into());
        assert_eq!(
            Value::parse(Knob::QueueLifetime, &s("5s")),
            Ok(Value::Time(Duration::from_secs(5)))
        );
        assert!(Value::parse(Knob::QueueLifetime, &toml::Value::Integer(5)).is_err());
        assert!(Value::parse(Knob::QueueLifetime, &s("soon")).is_err());
        assert_eq!(
            Value::parse(Knob::HopLimit, &toml::Value::Integer(101)),
            Ok(Value::Count(101))
        );
        assert!(Value::parse(Knob::HopLimit, &s("101")).is_err());
        assert!(Value::parse(Knob::HopLimit, &toml::Value::Integer(0)).is_err());
        assert_eq!(
            Value::Time(Duration::from_millis(1500)).to_string(),
            "1500ms"
        );
    }
}
