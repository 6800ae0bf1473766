//! Fuzz stage: the outbound side — mutated fake-host replies (codes, multi-line shapes, enhanced codes, disconnects at each step) to the target's deliveries, judged by retry behaviour.
//!
//! A case is a first connection attempt's script for the fake host (the
//! suite's per-attempt script: greeting, EHLO, HELO, MAIL, RCPT, DATA, end
//! of data); the second attempt accepts. From the script alone the case
//! knows what a conforming client does: a 4xx or a dropped connection
//! before the message is accepted is a deferral and is retried (RFC 5321
//! §4.5.4.1), a 5xx is final and is not, a 250 at end of data is
//! delivered once. A case is run as an ordinary scenario, so a finding
//! *is* its scenario file.

use super::finding::toml_str;
use super::gen::Rng;
use super::oracle::{Invariant, Violation};
use rand::RngExt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

/// The steps of a fake host's attempt script that a case may change.
pub const FIELDS: [&str; 7] = ["greeting", "ehlo", "helo", "mail", "rcpt", "data", "eod"];

/// One outbound case: replaced steps of the first attempt (`drop` or reply lines).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OutCase {
    pub steps: Vec<(&'static str, String)>,
}

/// What a conforming target does with the message under a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// A deferral: a second attempt comes.
    Retried,
    /// A permanent failure: no second attempt.
    NotRetried,
    /// Accepted at the first attempt: one delivery.
    Delivered,
    /// Nothing the RFCs settle (a 5xx greeting, mixed codes, ...): only explored.
    Unsettled,
}

/// What running a case came to.
#[derive(Debug, Clone, Default)]
pub struct OutResult {
    /// The target's commands per attempt (its state signature) and our codes.
    pub signature: String,
    pub violation: Option<Violation>,
}

/// Runs outbound cases (the lab runs each as a scenario; tests bring their own).
pub trait Outbound: Sync {
    fn run<'a>(&'a self, case: &'a OutCase) -> Pin<Box<dyn Future<Output = OutResult> + 'a>>;
}

impl OutCase {
    fn get(&self, field: &str) -> Option<&str> {
        self.steps
            .iter()
            .rev()
            .find(|(f, _)| *f == field)
            .map(|(_, t)| t.as_str())
    }

    /// Follow the session a conforming client has with the first attempt.
    /// A client may greet with HELO instead of EHLO (Postfix does when the
    /// greeting does not say ESMTP): when the two paths disagree, the case
    /// is unsettled.
    pub fn expected(&self) -> Expected {
        let ehlo = self.follow(false);
        if self.get("greeting").is_some() && self.follow(true) != ehlo {
            return Expected::Unsettled;
        }
        ehlo
    }

    fn follow(&self, helo_first: bool) -> Expected {
        // The reply code of a step: `Ok(None)` for a dropped connection,
        // `Err` for mixed codes (no rule says which line counts).
        let code = |field: &str, default: u16| -> Result<Option<u16>, ()> {
            match self.get(field) {
                None => Ok(Some(default)),
                Some("drop") => Ok(None),
                Some(t) => {
                    let codes: Vec<&str> = t.lines().map(|l| l.get(..3).unwrap_or("")).collect();
                    if codes.windows(2).any(|w| w[0] != w[1]) {
                        return Err(());
                    }
                    codes
                        .last()
                        .and_then(|c| c.parse().ok())
                        .map(Some)
                        .ok_or(())
                }
            }
        };
        let mut path = vec![
            ("greeting", 220),
            (if helo_first { "helo" } else { "ehlo" }, 250),
        ];
        match code("ehlo", 250) {
            _ if helo_first => {}
            // A refused EHLO (command unknown) falls back to HELO (RFC 5321 §4.1.4).
            Ok(Some(500 | 502)) => path.push(("helo", 250)),
            Ok(Some(c)) if c / 100 == 5 => return Expected::Unsettled,
            Ok(Some(c)) if c / 100 == 4 && c != 421 => return Expected::Unsettled,
            _ => {}
        }
        path.extend([("mail", 250), ("rcpt", 250), ("data", 354), ("eod", 250)]);
        for (field, ok) in path {
            if field == "ehlo" && !helo_first && matches!(code("ehlo", 250), Ok(Some(500 | 502))) {
                continue;
            }
            match code(field, ok) {
                Err(()) => return Expected::Unsettled,
                // A dropped connection or a 421 (closing) is transient anywhere.
                Ok(None) | Ok(Some(421)) => return Expected::Retried,
                Ok(Some(c)) if c / 100 == ok / 100 => {}
                Ok(Some(c)) if c / 100 == 4 => return Expected::Retried,
                // A 5xx greeting or HELO: no rule settles what comes next.
                Ok(Some(c)) if c / 100 == 5 && !matches!(field, "greeting" | "helo") => {
                    return Expected::NotRetried
                }
                Ok(Some(_)) => return Expected::Unsettled,
            }
        }
        Expected::Delivered
    }
}

const CODES: &[(&str, &[u16])] = &[
    ("greeting", &[220, 421, 554, 220]),
    ("ehlo", &[250, 421, 451, 500, 502, 550]),
    ("helo", &[250, 421, 451, 501, 550]),
    ("mail", &[250, 421, 451, 452, 501, 550, 552, 553, 555]),
    ("rcpt", &[250, 251, 421, 450, 451, 452, 550, 551, 552, 553]),
    ("data", &[354, 421, 451, 503, 554, 250]),
    ("eod", &[250, 421, 450, 451, 452, 550, 552, 554]),
];

fn reply(r: &mut Rng, field: &str) -> String {
    if r.random_range(0..8) == 0 {
        return "drop".into();
    }
    let codes = CODES
        .iter()
        .find(|(f, _)| *f == field)
        .map(|x| x.1)
        .unwrap_or(&[250]);
    let code = codes[r.random_range(0..codes.len())];
    let class = code / 100;
    let enh = match r.random_range(0..6) {
        0 => String::new(),
        // An enhanced code of another class than the reply's.
        1 => format!("{}.1.0 ", if class == 5 { 4 } else { 5 }),
        2 => format!("{class}.7.1 "),
        _ => format!("{}.0.0 ", if class == 3 { 2 } else { class }),
    };
    let text = ["fuzz", "", "try again later", "x"][r.random_range(0..4)];
    match r.random_range(0..6) {
        0 => format!("{code}-{enh}first\n{code}-\n{code} {enh}{text}"),
        1 if field == "ehlo" => {
            // (A SIZE below the message would make it refused for good.)
            format!("{code}-fake\n{code}-PIPELINING\n{code}-SIZE 10000000\n{code} 8BITMIME")
        }
        // Mixed codes across the lines of one reply.
        2 => format!(
            "{code}-{enh}first\n{} {text}",
            if class == 2 { 550 } else { 250 }
        ),
        3 => format!("{code}"),
        _ => format!("{code} {enh}{text}").trim_end().to_string(),
    }
}

/// A fresh case: one to three steps of the first attempt replaced.
pub fn mutate(r: &mut Rng) -> OutCase {
    let mut c = OutCase::default();
    for _ in 0..r.random_range(1..4) {
        let f = FIELDS[r.random_range(0..FIELDS.len())];
        c.steps.push((f, reply(r, f)));
    }
    c
}

/// The case as a scenario file: the expectation is what a conforming target does.
pub fn scenario_text(c: &OutCase, comment: &str) -> String {
    let exp = c.expected();
    let (inv, expect) = match exp {
        Expected::Retried => (
            Invariant::DeferralRetried,
            "attempts = { host = \"mx\", at_least = 2 }",
        ),
        Expected::NotRetried => (
            Invariant::PermanentNotRetried,
            "attempts = { host = \"mx\", at_most = 1 }",
        ),
        Expected::Delivered => (
            Invariant::AcceptedIsDelivered,
            "deliveries = { host = \"mx\", count = 1 }",
        ),
        Expected::Unsettled => (
            Invariant::TargetAlive,
            "attempts = { host = \"mx\", at_least = 1 }",
        ),
    };
    let mut fields: Vec<String> = Vec::new();
    for f in FIELDS {
        if let Some(t) = c.get(f) {
            fields.push(format!("{f} = {}", toml_str(t)));
        }
    }
    let mut s = String::new();
    for l in comment.lines() {
        s.push_str(&format!("# {l}\n"));
    }
    s.push_str(&format!(
        "title = {}\nrule = {}\nrfc = {}\nstrength = \"{}\"\ndeadline = \"20s\"\n\n",
        toml_str(&format!("fuzz outbound: {}", inv.name())),
        toml_str(inv.rule()),
        toml_str(inv.rfc()),
        inv.strength()
    ));
    s.push_str("[dns]\nrecords = [\"dest.test MX 10 mx.dest.test\"]\n\n[hosts.mx]\nname = \"mx.dest.test\"\n");
    s.push_str(&format!(
        "attempt = [\n  {{ {} }},\n  {{}},\n]\n\n",
        fields.join(", ")
    ));
    s.push_str("[[message]]\nfrom = \"alice@src.test\"\nto = [\"bob@dest.test\"]\n\n");
    s.push_str(&format!("[[expect]]\n{expect}\n\n"));
    s.push_str(
        "[[control]]\nnone = \"a fuzz finding: the fake host's script above is the evidence\"\n",
    );
    s
}

/// Judge a case by the number of sessions the fake host saw (each session
/// carries the one message): what is wrong, if anything. The lab judges the
/// same through the case's scenario expectation instead.
pub fn judge_attempts(c: &OutCase, sessions: usize) -> Option<String> {
    match c.expected() {
        Expected::Retried if sessions < 2 => Some(format!(
            "the first attempt deferred the message, but the target made {sessions} attempt(s) in all"
        )),
        Expected::NotRetried if sessions > 1 => Some(format!(
            "the first attempt refused the message for good, but the target made {sessions} attempts"
        )),
        Expected::Delivered if sessions > 1 => Some(format!(
            "the first attempt took the message, but the target came back {} more time(s)",
            sessions - 1
        )),
        _ => None,
    }
}

/// The invariant a case's scenario checks.
pub fn invariant(c: &OutCase) -> Invariant {
    match c.expected() {
        Expected::Retried => Invariant::DeferralRetried,
        Expected::NotRetried => Invariant::PermanentNotRetried,
        Expected::Delivered => Invariant::AcceptedIsDelivered,
        Expected::Unsettled => Invariant::TargetAlive,
    }
}

/// The violation of the case's invariant that `detail` describes.
pub fn violation(c: &OutCase, detail: String) -> Violation {
    Violation {
        invariant: invariant(c),
        step: None,
        before: false,
        reply: None,
        detail,
    }
}

/// Shrink a failing case: drop replaced steps while it still fails the same way.
pub async fn shrink(
    ob: &dyn Outbound,
    c: OutCase,
    res: OutResult,
    budget: usize,
) -> (OutCase, OutResult) {
    let Some(inv) = res.violation.as_ref().map(|v| v.invariant) else {
        return (c, res);
    };
    let last: std::sync::Mutex<Option<(OutCase, OutResult)>> = std::sync::Mutex::new(None);
    let test = |steps: Vec<(&'static str, String)>| {
        let last = &last;
        async move {
            let cand = OutCase { steps };
            if invariant(&cand) != inv {
                return false;
            }
            let r = ob.run(&cand).await;
            let fails = r.violation.as_ref().is_some_and(|v| v.invariant == inv);
            if fails {
                *last.lock().unwrap_or_else(|p| p.into_inner()) = Some((cand, r));
            }
            fails
        }
    };
    let (steps, _) = super::shrink::ddmin(c.steps.clone(), budget, test).await;
    match last.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some((lc, lr)) if lc.steps == steps => (lc, lr),
        _ => (c, res),
    }
}

/// Write a failing case as `DIR/NNNN-<invariant>.toml`.
pub fn write(
    c: &OutCase,
    res: &OutResult,
    dir: &Path,
    n: usize,
    seed: u64,
) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let inv = res
        .violation
        .as_ref()
        .map(|v| v.invariant)
        .unwrap_or(Invariant::TargetAlive);
    let path = dir.join(format!("{n:04}-outbound-{}.toml", inv.name()));
    let detail = res
        .violation
        .as_ref()
        .map(|v| v.detail.as_str())
        .unwrap_or("");
    let comment = format!(
        "Found by `mtaspec fuzz --side outbound --seed {seed}`.\nInvariant `{}` broke: {}\nThe target's commands per attempt: {}",
        inv.name(),
        super::unscope(detail).replace('\n', " "),
        super::unscope(&res.signature)
    );
    std::fs::write(&path, scenario_text(c, &comment))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(steps: &[(&'static str, &str)]) -> OutCase {
        OutCase {
            steps: steps.iter().map(|(f, t)| (*f, t.to_string())).collect(),
        }
    }

    #[test]
    fn the_script_says_what_a_conforming_client_does() {
        assert_eq!(case(&[]).expected(), Expected::Delivered);
        assert_eq!(
            case(&[("rcpt", "451 4.3.0 later")]).expected(),
            Expected::Retried
        );
        assert_eq!(case(&[("eod", "drop")]).expected(), Expected::Retried);
        assert_eq!(
            case(&[("mail", "550 5.7.1 no")]).expected(),
            Expected::NotRetried
        );
        assert_eq!(
            case(&[("ehlo", "502 no"), ("helo", "250 ok")]).expected(),
            Expected::Delivered
        );
        assert_eq!(
            case(&[("ehlo", "502 no"), ("helo", "451 later")]).expected(),
            Expected::Retried
        );
        assert_eq!(
            case(&[("greeting", "554 go away")]).expected(),
            Expected::Unsettled
        );
        assert_eq!(
            case(&[("rcpt", "250-a\n550 b")]).expected(),
            Expected::Unsettled
        );
        assert_eq!(case(&[("data", "250 odd")]).expected(), Expected::Unsettled);
        assert_eq!(
            case(&[("ehlo", "421 4.7.1 later"), ("data", "554 x")]).expected(),
            Expected::Retried
        );
        assert_eq!(
            case(&[("ehlo", "451 later")]).expected(),
            Expected::Unsettled
        );
        assert_eq!(case(&[("ehlo", "550 no")]).expected(), Expected::Unsettled);
        assert_eq!(
            case(&[("greeting", "421 busy")]).expected(),
            Expected::Retried
        );
        assert_eq!(
            case(&[("rcpt", "421 closing")]).expected(),
            Expected::Retried
        );
        // EHLO or HELO after a replaced greeting: when the paths disagree, unsettled.
        let c = case(&[("greeting", "220"), ("helo", "550 no"), ("rcpt", "451 x")]);
        assert_eq!(c.expected(), Expected::Unsettled);
        let c = case(&[("greeting", "220"), ("helo", "250 ok"), ("rcpt", "451 x")]);
        assert_eq!(c.expected(), Expected::Retried);
        let c = case(&[("greeting", "220"), ("ehlo", "421 x")]);
        assert_eq!(c.expected(), Expected::Unsettled);
    }

    #[test]
    fn cases_load_as_scenarios() {
        let mut r = super::super::gen::rng(3);
        for _ in 0..200 {
            let c = mutate(&mut r);
            let text = scenario_text(&c, "test");
            let sc = crate::suite::parse_scenario(Path::new("fuzz/0001-x.toml"), &text)
                .unwrap_or_else(|e| panic!("{e}\n{text}"));
            assert_eq!(sc.hosts[0].attempts.len(), 2);
        }
    }
}
