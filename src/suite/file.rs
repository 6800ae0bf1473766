//! Suite files: the TOML shape of a scenario file, as written by users.
//!
//! Values keep their byte span so the validator can point at a line.

use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    pub title: Spanned<String>,
    /// The rule checked, in a sentence.
    pub rule: Spanned<String>,
    /// Where the rule comes from, e.g. "RFC 5321 §5.1".
    pub rfc: Spanned<String>,
    pub strength: Spanned<String>,
    /// How long the scenario may take before undecided expectations are judged.
    pub deadline: Option<Spanned<String>>,
    /// Quiet time before "never" expectations are judged once all else is decided.
    pub settle: Option<Spanned<String>>,
    /// Neutral knobs (`queue_lifetime = "5s"`) and per-target tables
    /// (`[target.postfix] set = {...}`); scenarios with settings get their own instance.
    #[serde(default)]
    pub target: BTreeMap<String, Spanned<toml::Value>>,
    #[serde(default)]
    pub dns: DnsFile,
    #[serde(default)]
    pub hosts: BTreeMap<String, Spanned<HostFile>>,
    #[serde(default, rename = "message")]
    pub messages: Vec<Spanned<MessageFile>>,
    #[serde(default, rename = "expect")]
    pub expects: Vec<Spanned<ExpectFile>>,
    /// Negative controls: ways to make a target break this scenario's rule.
    #[serde(default, rename = "control")]
    pub controls: Vec<Spanned<ControlFile>>,
    /// Raw client sessions with the target (inbound suites); see `suite::session`.
    #[serde(default, rename = "session")]
    pub sessions: Vec<Spanned<super::session::SessionFile>>,
}

/// One `[[control]]`: settings under which the target breaks the rule (the
/// scenario must then fail), or `none = "why no setting of any target can"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlFile {
    /// Which target the control applies to (`postfix`).
    pub target: Option<Spanned<String>>,
    /// Raw settings for that target, in its own terms.
    pub set: Option<Spanned<toml::Table>>,
    /// Neutral knobs (`queue_lifetime = "0s"`).
    pub knobs: Option<Spanned<toml::Table>>,
    /// How the control breaks the rule, in a sentence.
    pub why: Option<Spanned<String>>,
    /// No control exists: why.
    pub none: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsFile {
    /// Zone-file-like lines: `NAME TYPE DATA`, e.g. `dest.test MX 10 mx1.dest.test`.
    #[serde(default)]
    pub records: Vec<Spanned<String>>,
    /// `NAME [TYPE] FAULT` with FAULT one of nxdomain, servfail, refused, timeout, truncate.
    #[serde(default)]
    pub faults: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostFile {
    /// The host's DNS name; an A record to its lab address is added unless `address = false`.
    pub name: Option<String>,
    #[serde(default = "yes")]
    pub address: bool,
    /// Per connection attempt; the last entry repeats.
    #[serde(default, rename = "attempt")]
    pub attempts: Vec<AttemptFile>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttemptFile {
    /// accept (default), refuse, reset, drop, stall.
    pub connect: Option<String>,
    pub greeting: Option<StepFile>,
    pub ehlo: Option<StepFile>,
    pub helo: Option<StepFile>,
    pub mail: Option<StepFile>,
    /// One step for every RCPT, or a list applied to RCPTs in order (the last repeats).
    pub rcpt: Option<StepFile>,
    pub data: Option<StepFile>,
    /// The reply after the message's final dot.
    pub eod: Option<StepFile>,
    pub rset: Option<StepFile>,
    pub quit: Option<StepFile>,
}

/// A reply (`"451 4.3.0 try later"`, lines joined by `\n` for multi-line),
/// `"drop"`, `"stall"`, or for RCPT a list of those (by position) or a table
/// keyed by recipient address.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum StepFile {
    One(String),
    Many(Vec<String>),
    /// For RCPT: replies keyed by recipient address, whatever their order.
    ByAddress(BTreeMap<String, String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageFile {
    pub from: String,
    /// The From: header's address when it should differ from the envelope
    /// sender (with `from = ""`, where a forbidden bounce would go).
    pub header_from: Option<String>,
    pub to: Vec<String>,
    pub subject: Option<String>,
    pub body: Option<String>,
    /// Extra header lines, `Name: value`, put before the generated ones.
    #[serde(default)]
    pub headers: Vec<String>,
    /// Prepend this many `Received:` headers (loop tests).
    #[serde(default)]
    pub received: u32,
    /// ESMTP parameters for MAIL FROM, e.g. `["RET=HDRS", "ENVID=abc"]`.
    #[serde(default)]
    pub mail_params: Vec<String>,
    /// ESMTP parameters for every RCPT TO, e.g. `["NOTIFY=NEVER"]`.
    #[serde(default)]
    pub rcpt_params: Vec<String>,
}

/// One expectation: a table with exactly one key naming the check.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ExpectFile {
    /// The message reached this host (250 after its data) for these recipients (all by default).
    Delivered(DeliveredFile),
    /// The target tried to connect to these hosts, in this order of first attempt.
    Order(Vec<String>),
    /// The target tried to connect to this host.
    Contacted(String),
    /// The target never tried to connect to this host.
    NotContacted(String),
    /// The target accepted the injected message (250 at end of data).
    Accepted(bool),
    /// A DSN reached the sender's MX.
    Dsn(Box<DsnFile>),
    /// No DSN reached the sender's MX (`true`), or none with this action (`{ action = "failed" }`).
    NoDsn(NoDsnFile),
    /// The message is still in the target's own queue at the end (`true`).
    Queued(bool),
    /// Nothing was delivered for the scenario's messages during a window.
    NotDelivered(NotDeliveredFile),
    /// Exactly `count` deliveries reached a host (catches double delivery).
    Deliveries(DeliveriesFile),
    /// The target tried to connect to a host at least / at most N times.
    Attempts(AttemptsFile),
    /// The gaps between connection attempts to a host, against the target's timers.
    RetryAfter(RetryAfterFile),
    /// The target refused the message in session, or bounced it, with this status.
    RefusedOrDsn(RefusedOrDsnFile),
    /// The target looked this name up: `"dest.test MX"`.
    Queried(String),
    /// The target never looked this name up: `"dest.test A"`.
    NotQueried(String),
    /// What reached a fake host after the `[[session]]`s (inbound suites).
    Relayed(super::session::RelayedFile),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum NoDsnFile {
    Any(bool),
    Action {
        /// Only DSNs with this Action count (failed, delayed, ...).
        action: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotDeliveredFile {
    /// Length of the window, from the scenario's start ("5s").
    pub within: String,
    /// Only deliveries to this host count (all hosts by default).
    pub host: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesFile {
    pub host: String,
    pub count: usize,
    /// Only deliveries carrying this recipient count.
    pub rcpt: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttemptsFile {
    pub host: String,
    pub at_least: Option<usize>,
    pub at_most: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryAfterFile {
    pub host: String,
    /// Shortest allowed gap: a duration ("1s") or a target setting ("minimal_backoff_time").
    pub min: Option<String>,
    /// Longest allowed gap before the first retry: a duration or a target setting.
    pub max: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefusedOrDsnFile {
    /// A class ("5") or an RFC 3463 code ("5.4.6").
    pub status: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveredFile {
    pub host: String,
    pub rcpt: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DsnFile {
    /// Recipient of the DSN (the original sender by default).
    pub to: Option<String>,
    /// Status the DSN must report: a class ("5"), or a full code ("5.1.10").
    pub status: Option<String>,
    /// Action the DSN must report (failed, delayed, ...).
    pub action: Option<String>,
    /// The recipient the report is about (the first one by default).
    pub rcpt: Option<String>,
    /// A recipient the DSN must not report on (one that was delivered).
    pub not_rcpt: Option<String>,
    /// The DSN must not arrive before this time since injection, less one
    /// second of clock granularity: a duration or a time knob ("queue_lifetime").
    pub not_before: Option<String>,
    /// `true`: Reporting-MTA must name the target's myhostname.
    pub reporting_mta: Option<bool>,
    /// A host key: Remote-MTA must name that host.
    pub remote_mta: Option<String>,
    /// A substring the Diagnostic-Code must contain, e.g. "550 5.1.1".
    pub diagnostic: Option<String>,
    /// `true`: multipart/report; report-type=delivery-status with a human part and a status part.
    pub multipart_report: Option<bool>,
    /// What came back of the message: "headers", "full" or "none".
    pub returned: Option<String>,
    /// Original-Envelope-Id the DSN must carry.
    pub envid: Option<String>,
    /// Original-Recipient the DSN must carry, e.g. "rfc822;bob@dest.test".
    pub orcpt: Option<String>,
    /// `true`: the recipient group carries Will-Retry-Until.
    pub will_retry_until: Option<bool>,
    /// `true`: the DSN's header has `Auto-Submitted:` with a value other than `no` (RFC 3834 §5).
    pub auto_submitted: Option<bool>,
    /// Conformance findings (rule ids, globs allowed: "dsn.action.*") that must not occur.
    #[serde(default)]
    pub no_findings: Vec<String>,
    /// Why the recipient bounced, as `bounce::classify` reads it ("user-unknown").
    pub reason: Option<String>,
}
