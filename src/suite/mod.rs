//! Load stage: suite files (TOML) → validated [`Scenario`] plans.
//!
//! Every error names the file, the line and column, what is wrong and how to
//! fix it; one bad file does not hide the others (see [`load_all`]).

pub mod file;
pub mod known;
pub mod session;

use crate::rfc::Strength;
use file::{AttemptFile, ExpectFile, ScenarioFile, StepFile};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default time a scenario may run before undecided expectations are judged.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);
/// Default quiet time before "never happened" expectations are judged.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(2);
/// Host key used for the sender domain's MX when a scenario declares none.
pub const SENDER_MX: &str = "sender-mx";

/// A suite file that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: no scenario files (*.toml) found; pass a suite folder such as suites/ or a scenario file")]
    NoScenarios { path: PathBuf },
}

/// A validated scenario, ready to be turned into a world.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// `<suite>/<file stem>`, e.g. `mx-fallback/0001-refused-connection`.
    pub id: String,
    /// The suite folder's name (`mx-fallback`).
    pub suite: String,
    pub path: PathBuf,
    pub title: String,
    pub rule: String,
    pub rfc: String,
    pub strength: Strength,
    pub deadline: Duration,
    pub settle: Duration,
    /// Neutral knobs this scenario needs (`[target]`); a target that cannot
    /// set one reports the scenario as unsupported.
    pub knobs: crate::target::knobs::Knobs,
    /// Raw settings per target name (`[target.NAME] set`), used only on that target.
    pub target_sets: BTreeMap<String, BTreeMap<String, String>>,
    pub records: Vec<DnsRecord>,
    pub faults: Vec<DnsFault>,
    pub hosts: Vec<HostSpec>,
    pub messages: Vec<MessageSpec>,
    pub expects: Vec<Expect>,
    /// The line of each `[[expect]]` in the file, for error messages.
    pub expect_lines: Vec<usize>,
    /// Negative controls (`[[control]]`): settings under which the scenario must fail.
    pub controls: Vec<Control>,
    /// `[[control]] none = "..."`: why no setting of any target breaks the rule.
    pub no_control: Option<String>,
    /// Raw client sessions with the target, run in order after the messages.
    pub sessions: Vec<session::SessionSpec>,
}

/// A negative control: knobs and raw settings that make `target` break the
/// scenario's rule, so that the scenario must fail under them.
#[derive(Debug, Clone, PartialEq)]
pub struct Control {
    /// The target the control applies to (one of [`crate::target::FUTURE_NAMES`]).
    pub target: String,
    pub knobs: crate::target::knobs::Knobs,
    /// Raw settings for `target`, laid over the scenario's own.
    pub set: BTreeMap<String, String>,
    /// How the control breaks the rule.
    pub why: String,
    /// Line of the `[[control]]` in the scenario file.
    pub line: usize,
}

impl Control {
    /// `soft_bounce = yes, queue_lifetime = 0s` for reports.
    pub fn describe(&self) -> String {
        self.knobs
            .iter()
            .map(|(k, v)| format!("{k} = {v}"))
            .chain(self.set.iter().map(|(k, v)| format!("{k} = {v}")))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Scenario {
    /// This scenario under its `n`-th control (0-based): the control's knobs
    /// and settings laid over the scenario's own, and an id of its own
    /// (`<id> [control N]`), so that it runs on an instance with those settings.
    pub fn under_control(&self, n: usize) -> Scenario {
        let c = &self.controls[n];
        let mut sc = self.clone();
        sc.id = format!("{} [control {}]", self.id, n + 1);
        sc.knobs.extend(c.knobs.iter().map(|(k, v)| (*k, *v)));
        sc.target_sets
            .entry(c.target.clone())
            .or_default()
            .extend(c.set.iter().map(|(k, v)| (k.clone(), v.clone())));
        sc
    }
}

/// A DNS record with names as written in the scenario (the world scopes them).
#[derive(Debug, Clone, PartialEq)]
pub struct DnsRecord {
    pub name: String,
    pub data: RecordData,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RecordData {
    A(Ipv4Addr),
    /// `NAME A target`: the address the target listens on (an MX pointing back at it).
    TargetA,
    Aaaa(std::net::Ipv6Addr),
    Mx {
        preference: u16,
        exchange: String,
    },
    Cname(String),
    Txt(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct DnsFault {
    pub name: String,
    /// Record type the fault applies to; all types when `None`.
    pub qtype: Option<String>,
    pub fault: fake_dns::Fault,
}

/// A fake remote host and its script.
#[derive(Debug, Clone)]
pub struct HostSpec {
    pub key: String,
    pub name: Option<String>,
    pub address_record: bool,
    /// Attempts in order; the last repeats. Never empty.
    pub attempts: Vec<Attempt>,
}

impl HostSpec {
    /// The script for connection attempt `n` (0-based).
    pub fn attempt(&self, n: usize) -> &Attempt {
        &self.attempts[n.min(self.attempts.len() - 1)]
    }
    /// Whether the host has stopped listening by attempt `n`.
    pub fn refuses_from(&self) -> Option<usize> {
        self.attempts
            .iter()
            .position(|a| a.connect == Connect::Refuse)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connect {
    Accept,
    /// Nothing listens: the connection is refused by the kernel.
    Refuse,
    /// Accept, then reset the connection at once.
    Reset,
    /// Accept, then close without a greeting.
    Drop,
    /// Accept and never say anything.
    Stall,
}

/// What the host does in answer to one command.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Send these reply lines (each a complete `NNN text` line).
    Reply(Vec<String>),
    Drop,
    Stall,
}

/// One connection attempt's script.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub connect: Connect,
    pub greeting: Step,
    pub ehlo: Step,
    pub helo: Step,
    pub mail: Step,
    pub rcpt: Vec<Step>,
    /// Replies keyed by recipient address (lowercase), whatever the order the
    /// target sends its RCPTs in; addresses not listed get `rcpt`.
    pub rcpt_by: std::collections::BTreeMap<String, Step>,
    pub data: Step,
    pub eod: Step,
    pub rset: Step,
    pub quit: Step,
}

impl Default for Attempt {
    fn default() -> Self {
        let r = |s: &str| Step::Reply(vec![s.to_string()]);
        Attempt {
            connect: Connect::Accept,
            greeting: r("220 fake host ready"),
            ehlo: Step::Reply(vec![
                "250-fake host".into(),
                "250-PIPELINING".into(),
                "250-8BITMIME".into(),
                "250-ENHANCEDSTATUSCODES".into(),
                "250 DSN".into(),
            ]),
            helo: r("250 fake host"),
            mail: r("250 2.1.0 ok"),
            rcpt: vec![r("250 2.1.5 ok")],
            rcpt_by: Default::default(),
            data: r("354 end with <CRLF>.<CRLF>"),
            eod: r("250 2.0.0 queued"),
            rset: r("250 2.0.0 ok"),
            quit: r("221 2.0.0 bye"),
        }
    }
}

impl Attempt {
    /// The step for the `n`-th RCPT (0-based) of a transaction; the last repeats.
    pub fn rcpt(&self, n: usize) -> &Step {
        &self.rcpt[n.min(self.rcpt.len() - 1)]
    }
}

/// A message the client injects into the target.
#[derive(Debug, Clone)]
pub struct MessageSpec {
    pub from: String,
    /// The From: header's address, when it differs from the envelope sender.
    pub header_from: Option<String>,
    pub to: Vec<String>,
    pub subject: String,
    pub body: String,
    pub headers: Vec<String>,
    pub received: u32,
    pub mail_params: Vec<String>,
    pub rcpt_params: Vec<String>,
}

/// One expectation, decided by the judge.
#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    Delivered {
        host: String,
        rcpt: Vec<String>,
    },
    Order(Vec<String>),
    Contacted(String),
    NotContacted(String),
    Accepted(bool),
    Dsn(Box<DsnExpect>),
    /// No DSN (with this Action, when given) reached the sender.
    NoDsn {
        action: Option<String>,
    },
    /// The injected message is still in the target's queue at the end.
    Queued,
    NotDelivered {
        within: Duration,
        host: Option<String>,
    },
    Deliveries {
        host: String,
        count: usize,
        rcpt: Option<String>,
    },
    Attempts {
        host: String,
        at_least: Option<usize>,
        at_most: Option<usize>,
    },
    RetryAfter {
        host: String,
        min: Option<Timer>,
        max: Option<Timer>,
    },
    RefusedOrDsn {
        status: String,
    },
    /// A DNS query the target made (name as written, record type upper-case).
    Queried {
        name: String,
        qtype: String,
    },
    NotQueried {
        name: String,
        qtype: String,
    },
    /// Inbound: a session's replies, or what the sessions got relayed.
    Session(session::SessionExpect),
}

/// A time in an expectation: fixed, or read from the target's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Timer {
    Fixed(Duration),
    /// A neutral knob such as `retry_min`, read from the instance that ran the scenario.
    Knob(crate::target::knobs::Knob),
}

impl std::fmt::Display for Timer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Timer::Fixed(d) => write!(f, "{}", humantime::format_duration(*d)),
            Timer::Knob(k) => f.write_str(k.name()),
        }
    }
}

/// What a DSN must look like.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DsnExpect {
    pub to: String,
    pub status: Option<String>,
    pub action: Option<String>,
    pub rcpt: Option<String>,
    /// A recipient the DSN must not report on.
    pub not_rcpt: Option<String>,
    /// Earliest arrival (less the clock granularity).
    pub not_before: Option<Timer>,
    pub reporting_mta: bool,
    /// Host key whose name Remote-MTA must carry.
    pub remote_mta: Option<String>,
    pub diagnostic: Option<String>,
    pub multipart_report: bool,
    pub returned: Option<Returned>,
    pub envid: Option<String>,
    pub orcpt: Option<String>,
    pub will_retry_until: bool,
    pub auto_submitted: bool,
    pub no_findings: Vec<String>,
    /// Bounce reason name (`crate::dsn::Reason`), checked at load.
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned {
    Headers,
    Full,
    Nothing,
}

/// Find scenario files under the given paths (folders recursively, `*.toml`,
/// skipping `known-deviations/`), sorted.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<PathBuf>, SuiteError> {
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|source| SuiteError::Read {
            path: p.clone(),
            source,
        })?;
        if meta.is_file() {
            out.push(p.clone());
            continue;
        }
        let before = out.len();
        walk(p, &mut out)?;
        if out.len() == before {
            return Err(SuiteError::NoScenarios { path: p.clone() });
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), SuiteError> {
    let rd = std::fs::read_dir(dir).map_err(|source| SuiteError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    for entry in rd {
        let entry = entry.map_err(|source| SuiteError::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "known-deviations") {
                continue;
            }
            walk(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "toml") {
            out.push(path);
        }
    }
    Ok(())
}

/// Load every file; return the scenarios that loaded and the errors of those that did not.
pub fn load_all(files: &[PathBuf]) -> (Vec<Scenario>, Vec<SuiteError>) {
    let mut ok = Vec::new();
    let mut errs = Vec::new();
    for f in files {
        match load_file(f) {
            Ok(s) => ok.push(s),
            Err(e) => errs.push(e),
        }
    }
    (ok, errs)
}

/// Read and validate one scenario file.
pub fn load_file(path: &Path) -> Result<Scenario, SuiteError> {
    let text = std::fs::read_to_string(path).map_err(|source| SuiteError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let sc = parse_scenario(path, &text)?;
    require_control(&sc)?;
    Ok(sc)
}

/// A suite file must show how its scenario can fail: at least one
/// `[[control]]`, or `[[control]] none = "why no control exists"`.
/// ([`parse_scenario`] leaves this to the caller, so that snippets can be checked.)
pub fn require_control(sc: &Scenario) -> Result<(), SuiteError> {
    if sc.controls.is_empty() && sc.no_control.is_none() {
        return Err(SuiteError::Invalid {
            path: sc.path.clone(),
            line: 1,
            column: 1,
            message: "no [[control]]: add one that makes a target break the rule \
                      (`[[control]]` with `target`, `set` or `knobs`, and `why`), \
                      or `[[control]] none = \"why no setting of any target breaks it\"` \
                      (see suites/README.md, Negative controls)"
                .into(),
        });
    }
    Ok(())
}

/// Validate a scenario given as text (`path` is used for ids and messages).
pub fn parse_scenario(path: &Path, text: &str) -> Result<Scenario, SuiteError> {
    let v = Validator { path, text };
    let raw: ScenarioFile = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        v.error(span, e.message().trim().to_string())
    })?;
    v.scenario(raw)
}

struct Validator<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Validator<'_> {
    /// `[target]`: neutral knobs, and `[target.NAME] set = {...}` per target.
    #[allow(clippy::type_complexity)]
    fn target(
        &self,
        t: &BTreeMap<String, toml::Spanned<toml::Value>>,
    ) -> Result<
        (
            crate::target::knobs::Knobs,
            BTreeMap<String, BTreeMap<String, String>>,
        ),
        SuiteError,
    > {
        use crate::target::knobs::{Knob, Value};
        let mut knobs = crate::target::knobs::Knobs::new();
        let mut sets = BTreeMap::new();
        for (k, v) in t {
            let span = v.span();
            let v = v.get_ref();
            if let Some(knob) = Knob::from_name(k) {
                let v = Value::parse(knob, v).map_err(|m| self.error(span.clone(), m))?;
                knobs.insert(knob, v);
                continue;
            }
            let targets = crate::target::names();
            if !targets.contains(&k.as_str()) && !crate::target::FUTURE_NAMES.contains(&k.as_str())
            {
                let hint = if k == "set" {
                    " (target settings are neutral knobs now; raw settings go in [target.<name>] set = {...})"
                } else {
                    ""
                };
                return Err(self.error(
                    span,
                    format!(
                        "unknown [target] key `{k}`{hint}: use a knob ({}) or a per-target table [target.NAME] with NAME one of {}",
                        Knob::names(),
                        crate::target::FUTURE_NAMES.join(", ")
                    ),
                ));
            }
            let toml::Value::Table(table) = v else {
                return Err(self.error(
                    span,
                    format!("[target.{k}] must be a table with `set = {{ ... }}`"),
                ));
            };
            let mut set = BTreeMap::new();
            for (tk, tv) in table {
                if tk != "set" {
                    return Err(self.error(
                        span,
                        format!("unknown key `{tk}` in [target.{k}]: only `set = {{ ... }}`"),
                    ));
                }
                let toml::Value::Table(pairs) = tv else {
                    return Err(self.error(
                        span,
                        format!("[target.{k}] set must be a table of settings"),
                    ));
                };
                set = self.settings(pairs, span.clone())?;
            }
            sets.insert(k.clone(), set);
        }
        Ok((knobs, sets))
    }

    /// Raw target settings (`set = { soft_bounce = "yes" }`): names checked,
    /// values as strings (booleans as yes / no).
    fn settings(
        &self,
        pairs: &toml::Table,
        span: Range<usize>,
    ) -> Result<BTreeMap<String, String>, SuiteError> {
        let mut set = BTreeMap::new();
        for (pk, pv) in pairs {
            if pk.is_empty()
                || !pk
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
            {
                return Err(self.error(
                    span,
                    format!("bad target setting name `{pk}`: letters, digits, _ and . only"),
                ));
            }
            let pv = match pv {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => if *b { "yes" } else { "no" }.to_string(),
                other => {
                    return Err(self.error(
                        span,
                        format!(
                            "target setting `{pk}` must be a string, number or boolean, not {}",
                            other.type_str()
                        ),
                    ))
                }
            };
            set.insert(pk.clone(), pv);
        }
        Ok(set)
    }

    /// `[[control]]` blocks: each names a target, settings or knobs and why;
    /// or one `none` says why no control exists.
    fn controls(
        &self,
        raw: &[toml::Spanned<file::ControlFile>],
    ) -> Result<(Vec<Control>, Option<String>), SuiteError> {
        use crate::target::knobs::{Knob, Knobs, Value};
        let mut controls = Vec::new();
        let mut none: Option<String> = None;
        for c in raw {
            let span = c.span();
            let c = c.get_ref();
            if let Some(n) = &c.none {
                let others = [
                    ("target", c.target.as_ref().map(|t| t.span())),
                    ("set", c.set.as_ref().map(|t| t.span())),
                    ("knobs", c.knobs.as_ref().map(|t| t.span())),
                    ("why", c.why.as_ref().map(|t| t.span())),
                ];
                if let Some((key, Some(at))) = others.into_iter().find(|(_, s)| s.is_some()) {
                    return Err(self.error(
                        at,
                        format!(
                            "`{key}` in a [[control]] with `none`: `none` says no control exists, so it stands alone; move `{key}` to a [[control]] of its own or drop `none`"
                        ),
                    ));
                }
                if n.get_ref().trim().is_empty() {
                    return Err(self.error(
                        n.span(),
                        "`none` needs the reason no setting of any target breaks the rule",
                    ));
                }
                if none.is_some() {
                    return Err(self.error(n.span(), "more than one [[control]] with `none`"));
                }
                none = Some(n.get_ref().trim().to_string());
                continue;
            }
            let names = crate::target::FUTURE_NAMES.join(", ");
            let Some(target) = &c.target else {
                return Err(self.error(
                    span,
                    format!(
                        "a [[control]] needs `target` (one of {names}), `set` or `knobs`, and `why`; or `none = \"why no control exists\"`"
                    ),
                ));
            };
            if !crate::target::FUTURE_NAMES.contains(&target.get_ref().as_str()) {
                return Err(self.error(
                    target.span(),
                    format!("unknown target `{}`: use one of {names}", target.get_ref()),
                ));
            }
            let set = match &c.set {
                Some(t) => self.settings(t.get_ref(), t.span())?,
                None => BTreeMap::new(),
            };
            let mut knobs = Knobs::new();
            if let Some(t) = &c.knobs {
                for (k, v) in t.get_ref() {
                    let knob = Knob::from_name(k).ok_or_else(|| {
                        self.error(
                            t.span(),
                            format!("unknown knob `{k}`: use one of {}", Knob::names()),
                        )
                    })?;
                    let v = Value::parse(knob, v).map_err(|m| self.error(t.span(), m))?;
                    knobs.insert(knob, v);
                }
            }
            if set.is_empty() && knobs.is_empty() {
                return Err(self.error(
                    span,
                    "a [[control]] needs `set = { ... }` (the target's own settings) or `knobs = { ... }` that break the rule",
                ));
            }
            let why = match &c.why {
                Some(w) if !w.get_ref().trim().is_empty() => w.get_ref().trim().to_string(),
                _ => return Err(self.error(
                    span,
                    "a [[control]] needs `why`: how the settings make the target break the rule",
                )),
            };
            controls.push(Control {
                target: target.get_ref().clone(),
                knobs,
                set,
                why,
                line: self.line(span.start),
            });
        }
        if let (Some(_), Some(first)) = (&none, raw.first()) {
            if !controls.is_empty() {
                return Err(self.error(
                    first.span(),
                    "a scenario with `[[control]] none = ...` has no other [[control]]: either a control breaks the rule or none does",
                ));
            }
        }
        Ok((controls, none))
    }

    fn line(&self, at: usize) -> usize {
        self.text[..at.min(self.text.len())].matches('\n').count() + 1
    }

    fn error(&self, span: Range<usize>, message: impl Into<String>) -> SuiteError {
        let upto = &self.text[..span.start.min(self.text.len())];
        let line = upto.matches('\n').count() + 1;
        let column = upto.len() - upto.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
        SuiteError::Invalid {
            path: self.path.to_path_buf(),
            line,
            column,
            message: message.into(),
        }
    }

    fn scenario(&self, raw: ScenarioFile) -> Result<Scenario, SuiteError> {
        let stem = self
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let suite = self
            .path
            .parent()
            .and_then(|p| p.file_name())
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "default".into());
        let strength: Strength =
            raw.strength
                .get_ref()
                .parse()
                .map_err(|e: crate::rfc::ParseStrengthError| {
                    self.error(raw.strength.span(), e.to_string())
                })?;
        for (field, value) in [
            ("title", &raw.title),
            ("rule", &raw.rule),
            ("rfc", &raw.rfc),
        ] {
            if value.get_ref().trim().is_empty() {
                return Err(self.error(value.span(), format!("`{field}` must not be empty")));
            }
        }
        let duration = |d: &Option<toml::Spanned<String>>, default| match d {
            None => Ok(default),
            Some(s) => humantime::parse_duration(s.get_ref()).map_err(|e| {
                self.error(
                    s.span(),
                    format!("bad duration `{}`: {e} (write e.g. \"20s\")", s.get_ref()),
                )
            }),
        };
        let deadline = duration(&raw.deadline, DEFAULT_DEADLINE)?;
        let settle = duration(&raw.settle, DEFAULT_SETTLE)?;

        let mut records = Vec::new();
        for r in &raw.dns.records {
            records.push(parse_record(r.get_ref()).map_err(|m| self.error(r.span(), m))?);
        }
        let mut faults = Vec::new();
        for f in &raw.dns.faults {
            faults.push(parse_fault(f.get_ref()).map_err(|m| self.error(f.span(), m))?);
        }
        for name in records
            .iter()
            .map(|r| &r.name)
            .chain(faults.iter().map(|f| &f.name))
        {
            check_name(name).map_err(|m| self.error(0..0, m))?;
        }

        let mut hosts = Vec::new();
        for (key, h) in &raw.hosts {
            let span = h.span();
            let h = h.get_ref();
            if let Some(n) = &h.name {
                check_name(n)
                    .map_err(|m| self.error(span.clone(), format!("host `{key}`: {m}")))?;
            }
            let mut attempts = Vec::new();
            for a in &h.attempts {
                attempts.push(
                    attempt(a)
                        .map_err(|m| self.error(span.clone(), format!("host `{key}`: {m}")))?,
                );
            }
            if attempts.is_empty() {
                attempts.push(Attempt::default());
            }
            if let Some(i) = attempts.iter().position(|a| a.connect == Connect::Refuse) {
                if attempts[i..].iter().any(|a| a.connect != Connect::Refuse) {
                    return Err(self.error(
                        span,
                        format!(
                            "host `{key}`: connect = \"refuse\" may only end a script: a refused \
                             connection never reaches the host, so later attempts could not be \
                             counted; use connect = \"reset\" for a connection that fails after it opens"
                        ),
                    ));
                }
            }
            hosts.push(HostSpec {
                key: key.clone(),
                name: h.name.clone(),
                address_record: h.address,
                attempts,
            });
        }

        if raw.messages.is_empty() && raw.sessions.is_empty() {
            return Err(self.error(
                0..0,
                "no [[message]] or [[session]]: a scenario injects at least one message or runs one session",
            ));
        }
        let mut messages = Vec::new();
        for m in &raw.messages {
            let span = m.span();
            let m = m.get_ref();
            for addr in std::iter::once(&m.from)
                .chain(&m.to)
                .chain(m.header_from.as_ref())
            {
                if addr.is_empty() && std::ptr::eq(addr, &m.from) {
                    continue; // null reverse-path
                }
                let domain = addr.rsplit_once('@').map(|(_, d)| d).ok_or_else(|| {
                    self.error(
                        span.clone(),
                        format!("`{addr}` is not an address (local@domain)"),
                    )
                })?;
                check_name(domain).map_err(|e| self.error(span.clone(), e))?;
            }
            if m.to.is_empty() {
                return Err(self.error(span, "message has no recipient in `to`"));
            }
            messages.push(file_message(m));
        }

        // The sender domain's MX catches DSNs; add one unless the scenario did.
        let sender_domains: BTreeSet<String> = messages
            .iter()
            .filter_map(|m| {
                let from = if m.from.is_empty() {
                    m.header_from.as_deref()?
                } else {
                    &m.from
                };
                from.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase())
            })
            .collect();
        for d in sender_domains {
            let has_mx = records.iter().any(|r| {
                r.name.eq_ignore_ascii_case(&d) && matches!(r.data, RecordData::Mx { .. })
            });
            if !has_mx && !hosts.iter().any(|h| h.key == SENDER_MX) {
                let name = format!("mx.{d}");
                records.push(DnsRecord {
                    name: d.clone(),
                    data: RecordData::Mx {
                        preference: 10,
                        exchange: name.clone(),
                    },
                });
                hosts.push(HostSpec {
                    key: SENDER_MX.into(),
                    name: Some(name),
                    address_record: true,
                    attempts: vec![Attempt::default()],
                });
            }
        }

        let host_keys: BTreeSet<&str> = hosts.iter().map(|h| h.key.as_str()).collect();
        let mut expects = Vec::new();
        let mut expect_lines = Vec::new();
        for e in &raw.expects {
            let span = e.span();
            let known = |h: &String| -> Result<(), SuiteError> {
                if host_keys.contains(h.as_str()) {
                    Ok(())
                } else {
                    Err(self.error(
                        span.clone(),
                        format!(
                            "unknown host `{h}`: declare it as [hosts.{h}] (known: {})",
                            host_keys.iter().copied().collect::<Vec<_>>().join(", ")
                        ),
                    ))
                }
            };
            // Expectations about the injected message need one.
            let first = || {
                messages.first().ok_or_else(|| {
                    self.error(
                        span.clone(),
                        "this expectation is about an injected message: add a [[message]]",
                    )
                })
            };
            let x = match e.get_ref() {
                ExpectFile::Delivered(d) => {
                    known(&d.host)?;
                    if d.rcpt.as_ref().is_some_and(Vec::is_empty) {
                        return Err(self.error(
                            span,
                            "`rcpt = []` names no recipient, so the delivery could never be checked: \
                             list the recipients, or leave `rcpt` out to mean the first message's `to`",
                        ));
                    }
                    if let Some(r) = d.rcpt.iter().flatten().find(|r| !r.contains('@')) {
                        return Err(
                            self.error(span, format!("`{r}` is not an address (local@domain)"))
                        );
                    }
                    Expect::Delivered {
                        host: d.host.clone(),
                        rcpt: match &d.rcpt {
                            Some(r) => r.clone(),
                            None => first()?.to.clone(),
                        },
                    }
                }
                ExpectFile::Order(h) => {
                    if h.len() < 2 {
                        return Err(self.error(span, "`order` lists at least two hosts"));
                    }
                    h.iter().try_for_each(known)?;
                    Expect::Order(h.clone())
                }
                ExpectFile::Contacted(h) => {
                    known(h)?;
                    Expect::Contacted(h.clone())
                }
                ExpectFile::NotContacted(h) => {
                    known(h)?;
                    Expect::NotContacted(h.clone())
                }
                ExpectFile::Accepted(b) => Expect::Accepted(*b),
                ExpectFile::Dsn(d) => {
                    let bad = |m: String| self.error(span.clone(), m);
                    if let Some(s) = &d.status {
                        check_status_pattern(s).map_err(bad)?;
                    }
                    if let Some(h) = &d.remote_mta {
                        known(h)?;
                        if !hosts.iter().any(|x| x.key == *h && x.name.is_some()) {
                            return Err(bad(format!(
                                "`remote_mta = \"{h}\"`: host `{h}` has no `name`, so no Remote-MTA can name it"
                            )));
                        }
                    }
                    for (flag, field) in [
                        (d.reporting_mta, "reporting_mta"),
                        (d.multipart_report, "multipart_report"),
                        (d.will_retry_until, "will_retry_until"),
                        (d.auto_submitted, "auto_submitted"),
                    ] {
                        if flag == Some(false) {
                            return Err(bad(format!(
                                "`{field} = false` checks nothing: remove it or set it to true"
                            )));
                        }
                    }
                    let returned = match d.returned.as_deref() {
                        None => None,
                        Some("headers") => Some(Returned::Headers),
                        Some("full") => Some(Returned::Full),
                        Some("none") => Some(Returned::Nothing),
                        Some(other) => {
                            return Err(bad(format!(
                                "unknown `returned = \"{other}\"`: use \"headers\", \"full\" or \"none\""
                            )))
                        }
                    };
                    if let Some(a) = &d.action {
                        let a = a.to_ascii_lowercase();
                        if !["failed", "delayed", "delivered", "relayed", "expanded"]
                            .contains(&a.as_str())
                        {
                            return Err(bad(format!(
                                "unknown action `{a}`: RFC 3464 §2.3.3 allows failed, delayed, delivered, relayed, expanded"
                            )));
                        }
                    }
                    for r in d.rcpt.iter().chain(&d.to) {
                        if !r.contains('@') {
                            return Err(bad(format!("`{r}` is not an address (local@domain)")));
                        }
                    }
                    let reason = match d.reason.as_deref() {
                        None => None,
                        Some(r) => Some(
                            r.parse::<crate::dsn::Reason>()
                                .map_err(|e| bad(e.to_string()))?
                                .as_str()
                                .to_string(),
                        ),
                    };
                    for g in &d.no_findings {
                        globset::Glob::new(g)
                            .map_err(|e| bad(format!("bad finding pattern `{g}`: {e}")))?;
                    }
                    Expect::Dsn(Box::new(DsnExpect {
                        to: match &d.to {
                            Some(t) => t.clone(),
                            None => first()?.from.clone(),
                        },
                        status: d.status.clone(),
                        action: d.action.as_ref().map(|a| a.to_ascii_lowercase()),
                        rcpt: d.rcpt.clone(),
                        reporting_mta: d.reporting_mta == Some(true),
                        remote_mta: d.remote_mta.clone(),
                        diagnostic: d.diagnostic.clone(),
                        multipart_report: d.multipart_report == Some(true),
                        returned,
                        not_rcpt: d.not_rcpt.clone(),
                        not_before: d
                            .not_before
                            .as_deref()
                            .map(parse_timer)
                            .transpose()
                            .map_err(|m| self.error(span.clone(), m))?,
                        envid: d.envid.clone(),
                        orcpt: d.orcpt.clone(),
                        will_retry_until: d.will_retry_until == Some(true),
                        auto_submitted: d.auto_submitted == Some(true),
                        no_findings: d.no_findings.clone(),
                        reason,
                    }))
                }
                ExpectFile::NotDelivered(n) => {
                    if let Some(h) = &n.host {
                        known(h)?;
                    }
                    let within = humantime::parse_duration(&n.within).map_err(|e| {
                        self.error(
                            span.clone(),
                            format!("bad duration `{}`: {e} (write e.g. \"5s\")", n.within),
                        )
                    })?;
                    if within >= deadline {
                        return Err(self.error(
                            span,
                            format!(
                                "`within = \"{}\"` must end before the scenario's deadline ({}): raise `deadline`",
                                n.within,
                                humantime::format_duration(deadline)
                            ),
                        ));
                    }
                    Expect::NotDelivered {
                        within,
                        host: n.host.clone(),
                    }
                }
                ExpectFile::Deliveries(d) => {
                    known(&d.host)?;
                    Expect::Deliveries {
                        host: d.host.clone(),
                        count: d.count,
                        rcpt: d.rcpt.clone(),
                    }
                }
                ExpectFile::Attempts(a) => {
                    known(&a.host)?;
                    match (a.at_least, a.at_most) {
                        (None, None) => {
                            return Err(
                                self.error(span, "`attempts` needs `at_least`, `at_most` or both")
                            )
                        }
                        (Some(l), Some(m)) if l > m => {
                            return Err(self.error(
                                span,
                                format!("`at_least = {l}` is more than `at_most = {m}`"),
                            ))
                        }
                        _ => {}
                    }
                    Expect::Attempts {
                        host: a.host.clone(),
                        at_least: a.at_least,
                        at_most: a.at_most,
                    }
                }
                ExpectFile::RetryAfter(r) => {
                    known(&r.host)?;
                    let timer = |v: &Option<String>| -> Result<Option<Timer>, SuiteError> {
                        match v {
                            None => Ok(None),
                            Some(t) => parse_timer(t)
                                .map(Some)
                                .map_err(|m| self.error(span.clone(), m)),
                        }
                    };
                    let (min, max) = (timer(&r.min)?, timer(&r.max)?);
                    if min.is_none() && max.is_none() {
                        return Err(self.error(span, "`retry_after` needs `min`, `max` or both"));
                    }
                    Expect::RetryAfter {
                        host: r.host.clone(),
                        min,
                        max,
                    }
                }
                ExpectFile::RefusedOrDsn(r) => {
                    first()?;
                    check_status_pattern(&r.status).map_err(|m| self.error(span.clone(), m))?;
                    Expect::RefusedOrDsn {
                        status: r.status.clone(),
                    }
                }
                ExpectFile::Queried(q) | ExpectFile::NotQueried(q) => {
                    let (name, qtype) = parse_query(q).map_err(|m| self.error(span.clone(), m))?;
                    if matches!(e.get_ref(), ExpectFile::Queried(_)) {
                        Expect::Queried { name, qtype }
                    } else {
                        Expect::NotQueried { name, qtype }
                    }
                }
                ExpectFile::Relayed(r) => {
                    known(&r.host)?;
                    let x = session::relayed(r).map_err(|m| self.error(span.clone(), m))?;
                    for a in x.from.iter().chain(&x.smuggled_from) {
                        check_name(a.rsplit_once('@').map(|(_, d)| d).unwrap_or(a))
                            .map_err(|m| self.error(span.clone(), m))?;
                    }
                    Expect::Session(session::SessionExpect::Relayed(x))
                }
                ExpectFile::NoDsn(file::NoDsnFile::Any(true)) => Expect::NoDsn { action: None },
                ExpectFile::NoDsn(file::NoDsnFile::Action { action }) => Expect::NoDsn {
                    action: Some(action.to_ascii_lowercase()),
                },
                ExpectFile::Queued(true) => Expect::Queued,
                ExpectFile::Queued(false) => {
                    return Err(self.error(
                        span,
                        "`queued = false` checks nothing: expect a delivery or a DSN instead",
                    ))
                }
                ExpectFile::NoDsn(file::NoDsnFile::Any(false)) => {
                    return Err(self.error(
                        span,
                        "`no_dsn = false` checks nothing: remove it or expect a `dsn`",
                    ))
                }
            };
            expects.push(x);
            expect_lines.push(
                self.text[..span.start.min(self.text.len())]
                    .matches('\n')
                    .count()
                    + 1,
            );
        }
        let sessions = self.sessions(&raw.sessions)?;
        // Every session is judged on its replies.
        expects.extend(
            (0..sessions.len()).map(|n| Expect::Session(session::SessionExpect::Replies(n))),
        );
        if expects.is_empty() {
            return Err(self.error(0..0, "no [[expect]]: a scenario checks at least one thing"));
        }

        let (knobs, target_sets) = self.target(&raw.target)?;
        let (controls, no_control) = self.controls(&raw.controls)?;

        Ok(Scenario {
            id: format!("{suite}/{stem}"),
            suite,
            path: self.path.to_path_buf(),
            title: raw.title.into_inner(),
            rule: raw.rule.into_inner(),
            rfc: raw.rfc.into_inner(),
            strength,
            deadline,
            settle,
            knobs,
            target_sets,
            records,
            faults,
            hosts,
            messages,
            expects,
            expect_lines,
            controls,
            no_control,
            sessions,
        })
    }

    /// Validate `[[session]]` scripts; errors name the script's line in the file.
    fn sessions(
        &self,
        raw: &[toml::Spanned<session::SessionFile>],
    ) -> Result<Vec<session::SessionSpec>, SuiteError> {
        let mut out = Vec::new();
        for s in raw {
            let f = s.get_ref();
            let from =
                session::client_from(f.from.as_deref()).map_err(|m| self.error(s.span(), m))?;
            let lines = ScriptLines::new(self.text, f.script.span().start);
            let mut steps =
                session::parse_script(f.script.get_ref()).map_err(|e| SuiteError::Invalid {
                    path: self.path.to_path_buf(),
                    line: lines.file_line(e.line),
                    column: 1,
                    message: if lines.exact {
                        format!("session script: {}", e.message)
                    } else {
                        format!(
                            "session script line {}: {} (write the script as a `'''` literal string so errors name the file line)",
                            e.line, e.message
                        )
                    },
                })?;
            // Reports name the scenario file's lines.
            for st in &mut steps {
                st.line = lines.file_line(st.line);
            }
            out.push(session::SessionSpec { from, steps });
        }
        Ok(out)
    }
}

/// Maps a script's lines to the file's. Exact for a `'''` literal string
/// (TOML drops the newline right after the opening quotes); for other strings
/// escapes may stand for line ends, so every line maps to the string's start.
struct ScriptLines {
    first: usize,
    exact: bool,
}

impl ScriptLines {
    fn new(text: &str, start: usize) -> ScriptLines {
        let start = start.min(text.len());
        let line = text[..start].matches('\n').count() + 1;
        let rest = &text[start..];
        let opens_on_own_line = ["'''\n", "'''\r\n"].iter().any(|p| rest.starts_with(p));
        ScriptLines {
            first: line + usize::from(opens_on_own_line),
            exact: rest.starts_with("'''"),
        }
    }

    /// The file line of script line `n` (1-based).
    fn file_line(&self, n: usize) -> usize {
        if self.exact {
            self.first + n.max(1) - 1
        } else {
            self.first
        }
    }
}

fn file_message(m: &file::MessageFile) -> MessageSpec {
    MessageSpec {
        from: m.from.clone(),
        header_from: m.header_from.clone(),
        to: m.to.clone(),
        subject: m
            .subject
            .clone()
            .unwrap_or_else(|| "mtaspec test message".into()),
        body: m
            .body
            .clone()
            .unwrap_or_else(|| "This message was sent by mtaspec.\n".into()),
        headers: m.headers.clone(),
        received: m.received,
        mail_params: m.mail_params.clone(),
        rcpt_params: m.rcpt_params.clone(),
    }
}

/// A duration ("2s") or the name of a neutral knob ("retry_min").
fn parse_timer(t: &str) -> Result<Timer, String> {
    use crate::target::knobs::Knob;
    if t.starts_with(|c: char| c.is_ascii_digit()) {
        humantime::parse_duration(t)
            .map(Timer::Fixed)
            .map_err(|e| format!("bad duration `{t}`: {e} (write e.g. \"2s\" or a knob name)"))
    } else {
        match Knob::from_name(t) {
            Some(k) if !k.is_count() => Ok(Timer::Knob(k)),
            _ => Err(format!(
                "bad time `{t}`: write a duration (\"2s\") or a time knob ({})",
                Knob::ALL
                    .into_iter()
                    .filter(|k| !k.is_count())
                    .map(Knob::name)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
}

/// Scenario names live under the reserved `.test` TLD (RFC 2606), so nothing
/// a scenario says can name a real host.
fn check_name(name: &str) -> Result<(), String> {
    let n = name.trim_end_matches('.').to_ascii_lowercase();
    if n.is_empty() {
        return Err("empty name".into());
    }
    if !(n == "test" || n.ends_with(".test")) {
        return Err(format!(
            "name `{name}` must end in .test (the reserved test TLD, RFC 2606), e.g. `{n}.test`"
        ));
    }
    if n.split('.').any(|l| l.is_empty() || l.len() > 63) {
        return Err(format!("name `{name}` has an empty or over-long label"));
    }
    Ok(())
}

fn check_status_pattern(s: &str) -> Result<(), String> {
    let parts: Vec<&str> = s.split('.').collect();
    let ok = matches!(parts.first(), Some(&("2" | "4" | "5")))
        && parts.len() <= 3
        && parts[1..]
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "bad status `{s}`: write a class (\"5\") or an RFC 3463 code (\"5.1.10\")"
        ))
    }
}

/// Parse a query expectation: `NAME TYPE`.
fn parse_query(q: &str) -> Result<(String, String), String> {
    let w: Vec<&str> = q.split_whitespace().collect();
    let [name, qtype] = w.as_slice() else {
        return Err(format!(
            "bad query `{q}`: write `NAME TYPE`, e.g. `dest.test MX`"
        ));
    };
    check_name(name)?;
    let qtype = qtype.to_ascii_uppercase();
    if !["A", "AAAA", "MX", "CNAME", "TXT", "PTR"].contains(&qtype.as_str()) {
        return Err(format!(
            "unknown record type `{qtype}` in `{q}`: use A, AAAA, MX, CNAME, TXT or PTR"
        ));
    }
    Ok((name.to_ascii_lowercase(), qtype))
}

/// Parse `NAME TYPE DATA`.
fn parse_record(line: &str) -> Result<DnsRecord, String> {
    let mut w = line.split_whitespace();
    let (Some(name), Some(kind)) = (w.next(), w.next()) else {
        return Err(format!(
            "bad record `{line}`: write `NAME TYPE DATA`, e.g. `dest.test MX 10 mx1.dest.test`"
        ));
    };
    let rest: Vec<&str> = w.collect();
    let one = |what: &str| -> Result<String, String> {
        match rest.as_slice() {
            [x] => Ok(x.to_string()),
            _ => Err(format!(
                "bad {kind} record `{line}`: expected {what} after the type"
            )),
        }
    };
    let data = match kind.to_ascii_uppercase().as_str() {
        "A" if rest == ["target"] => RecordData::TargetA,
        "A" => RecordData::A(
            one("an IPv4 address or `target`")?
                .parse()
                .map_err(|_| {
                    format!("bad A record `{line}`: write an IPv4 address or `target` (the target's own address)")
                })?,
        ),
        "AAAA" => RecordData::Aaaa(
            one("an IPv6 address")?
                .parse()
                .map_err(|_| format!("bad AAAA record `{line}`: not an IPv6 address"))?,
        ),
        "MX" => match rest.as_slice() {
            [p, x] => {
                let preference = p
                    .parse()
                    .map_err(|_| format!("bad MX record `{line}`: preference `{p}` is not 0-65535"))?;
                if *x != "." {
                    check_name(x)?;
                }
                RecordData::Mx {
                    preference,
                    exchange: x.to_string(),
                }
            }
            _ => {
                return Err(format!(
                    "bad MX record `{line}`: write `NAME MX PREFERENCE EXCHANGE` (null MX: `NAME MX 0 .`)"
                ))
            }
        },
        "CNAME" => {
            let t = one("a target name")?;
            check_name(&t)?;
            RecordData::Cname(t)
        }
        "TXT" => RecordData::Txt(rest.join(" ").trim_matches('"').to_string()),
        other => {
            return Err(format!(
                "unsupported record type `{other}` in `{line}`: use A, AAAA, MX, CNAME or TXT"
            ))
        }
    };
    Ok(DnsRecord {
        name: name.to_string(),
        data,
    })
}

/// Parse `NAME [TYPE] FAULT`.
fn parse_fault(line: &str) -> Result<DnsFault, String> {
    let w: Vec<&str> = line.split_whitespace().collect();
    let (name, qtype, fault) = match w.as_slice() {
        [n, f] => (n, None, f),
        [n, t, f] => (n, Some(t.to_ascii_uppercase()), f),
        _ => {
            return Err(format!(
                "bad fault `{line}`: write `NAME [TYPE] FAULT`, e.g. `dest.test MX servfail`"
            ))
        }
    };
    let fault = match fault.to_ascii_lowercase().as_str() {
        "nxdomain" => fake_dns::Fault::NxDomain,
        "servfail" => fake_dns::Fault::ServFail,
        "refused" => fake_dns::Fault::Refused,
        "timeout" => fake_dns::Fault::Timeout,
        "truncate" => fake_dns::Fault::Truncate,
        other => {
            return Err(format!(
                "unknown fault `{other}` in `{line}`: use nxdomain, servfail, refused, timeout or truncate"
            ))
        }
    };
    if let Some(t) = &qtype {
        if !["A", "AAAA", "MX", "CNAME", "TXT", "PTR"].contains(&t.as_str()) {
            return Err(format!("unknown record type `{t}` in fault `{line}`"));
        }
    }
    Ok(DnsFault {
        name: name.to_string(),
        qtype,
        fault,
    })
}

fn step(s: &str) -> Result<Step, String> {
    match s.trim() {
        "drop" => Ok(Step::Drop),
        "stall" => Ok(Step::Stall),
        text => {
            let lines: Vec<String> = text.lines().map(|l| l.trim_end().to_string()).collect();
            let last = lines.len().saturating_sub(1);
            for (i, l) in lines.iter().enumerate() {
                let b = l.as_bytes();
                let code_ok = b.len() >= 3
                    && b[..3].iter().all(u8::is_ascii_digit)
                    && (b'2'..=b'5').contains(&b[0]);
                let sep_ok = match b.get(3) {
                    None => b.len() == 3,
                    Some(b' ') => i == last,
                    Some(b'-') => i < last,
                    Some(_) => false,
                };
                if !code_ok || !sep_ok {
                    return Err(format!(
                        "bad reply `{text}`: write `NNN text` (multi-line: `250-first\\n250 last`), `drop` or `stall`"
                    ));
                }
            }
            if lines.is_empty() {
                return Err("empty reply: write `NNN text`, `drop` or `stall`".into());
            }
            Ok(Step::Reply(lines))
        }
    }
}

fn attempt(a: &AttemptFile) -> Result<Attempt, String> {
    let mut out = Attempt::default();
    if let Some(c) = &a.connect {
        out.connect = match c.as_str() {
            "accept" => Connect::Accept,
            "refuse" => Connect::Refuse,
            "reset" => Connect::Reset,
            "drop" => Connect::Drop,
            "stall" => Connect::Stall,
            other => {
                return Err(format!(
                    "unknown connect `{other}`: use accept, refuse, reset, drop or stall"
                ))
            }
        };
    }
    let single = |f: &Option<StepFile>, slot: &mut Step, key: &str| -> Result<(), String> {
        match f {
            None => Ok(()),
            Some(StepFile::One(s)) => {
                *slot = step(s)?;
                Ok(())
            }
            Some(StepFile::Many(_)) | Some(StepFile::ByAddress(_)) => {
                Err(format!("`{key}` takes one reply, not a list or table"))
            }
        }
    };
    single(&a.greeting, &mut out.greeting, "greeting")?;
    single(&a.ehlo, &mut out.ehlo, "ehlo")?;
    single(&a.helo, &mut out.helo, "helo")?;
    single(&a.mail, &mut out.mail, "mail")?;
    single(&a.data, &mut out.data, "data")?;
    single(&a.eod, &mut out.eod, "eod")?;
    single(&a.rset, &mut out.rset, "rset")?;
    single(&a.quit, &mut out.quit, "quit")?;
    match &a.rcpt {
        None => {}
        Some(StepFile::One(s)) => out.rcpt = vec![step(s)?],
        Some(StepFile::Many(v)) if v.is_empty() => return Err("`rcpt` list is empty".into()),
        Some(StepFile::Many(v)) => {
            out.rcpt = v.iter().map(|s| step(s)).collect::<Result<_, _>>()?
        }
        Some(StepFile::ByAddress(m)) if m.is_empty() => return Err("`rcpt` table is empty".into()),
        Some(StepFile::ByAddress(m)) => {
            for (addr, reply) in m {
                let domain = addr.rsplit_once('@').map(|(_, d)| d).ok_or_else(|| {
                    format!("`rcpt` key `{addr}` is not an address (local@domain)")
                })?;
                check_name(domain)?;
                out.rcpt_by.insert(addr.to_ascii_lowercase(), step(reply)?);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
