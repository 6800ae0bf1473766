//! Report stage: readable console output — progress while scenarios run, a summary table at the end.

use super::{Event, Status};
use crate::run::judge::Decision;
use crate::run::ScenarioResult;
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Prints progress lines to standard error as events arrive.
pub struct Progress {
    total: usize,
    done: AtomicUsize,
    verbose: bool,
    /// Name the target on every line (several MTAs run at once).
    targets: bool,
}

impl Progress {
    pub fn new(total: usize, verbose: bool) -> Progress {
        Progress {
            total,
            done: AtomicUsize::new(0),
            verbose,
            targets: false,
        }
    }

    /// Name the target of each scenario on its line.
    pub fn with_targets(mut self) -> Progress {
        self.targets = true;
        self
    }

    pub fn on(&self, e: Event) {
        let mut err = std::io::stderr().lock();
        match e {
            Event::Started { id } => {
                if self.verbose {
                    let _ = writeln!(err, "         start {id}");
                }
            }
            Event::Finished(r) => {
                let n = self.done.fetch_add(1, Ordering::SeqCst) + 1;
                let st = Status::of(r);
                let _ = writeln!(
                    err,
                    "[{n:>3}/{}] {:<9} {}{} ({:.1} s)",
                    self.total,
                    st.label(),
                    r.id,
                    if self.targets {
                        format!(" [{}]", r.target)
                    } else {
                        String::new()
                    },
                    r.duration.as_secs_f64()
                );
                if st != Status::Pass {
                    let _ = write!(err, "{}", failure_text(r));
                } else {
                    let _ = write!(err, "{}", notes_text(r));
                }
            }
        }
    }
}

/// What the harness noted about a scenario (a limit reached, accept failing).
pub fn notes_text(r: &ScenarioResult) -> String {
    r.observations
        .harness
        .iter()
        .map(|n| format!("          harness: {n}\n"))
        .collect()
}

/// The rule, each verdict that did not pass, and the fix hint.
pub fn failure_text(r: &ScenarioResult) -> String {
    let mut t = String::new();
    t.push_str(&format!("          {}\n", r.title));
    t.push_str(&format!(
        "          rule ({} {}): {}\n",
        r.rfc, r.strength, r.rule
    ));
    if let Some(e) = &r.error {
        t.push_str(&format!("          error: {e}\n"));
    }
    if let Some(why) = &r.unsupported {
        t.push_str(&format!("          unsupported: {why}\n"));
    }
    t.push_str(&notes_text(r));
    match (Status::of(r), &r.known) {
        (Status::Known, Some(why)) => {
            t.push_str(&format!("          known deviation of the target: {why}\n"))
        }
        (Status::NoLongerSeen, Some(why)) => t.push_str(&format!(
            "          known deviation no longer seen (remove it from the known-deviations file): {why}\n"
        )),
        _ => {}
    }
    for v in &r.verdicts {
        match &v.decision {
            Decision::Fail(why) => t.push_str(&format!("          ✗ {}: {why}\n", v.expect)),
            Decision::Pending => t.push_str(&format!("          ? {}: undecided\n", v.expect)),
            Decision::Pass(_) => t.push_str(&format!("          ✓ {}\n", v.expect)),
        }
    }
    t
}

/// The summary table: per suite pass / fail / deviation / error and wall time.
pub fn summary(results: &[ScenarioResult], wall: Duration, startup: Duration) -> String {
    #[derive(Default)]
    struct Row {
        pass: usize,
        fail: usize,
        dev: usize,
        err: usize,
        known: usize,
        gone: usize,
        unsup: usize,
        longest: Duration,
    }
    let mut rows: BTreeMap<&str, Row> = BTreeMap::new();
    for r in results {
        let row = rows.entry(&r.suite).or_default();
        match Status::of(r) {
            Status::Pass => row.pass += 1,
            Status::Fail => row.fail += 1,
            Status::Deviation => row.dev += 1,
            Status::Error => row.err += 1,
            Status::Known => row.known += 1,
            Status::NoLongerSeen => {
                row.pass += 1;
                row.gone += 1
            }
            Status::Unsupported => row.unsup += 1,
        }
        row.longest = row.longest.max(r.duration);
    }
    let mut t = format!(
        "\n{:<20} {:>5} {:>5} {:>9} {:>5} {:>11} {:>5} {:>12}\n",
        "suite", "pass", "fail", "deviation", "known", "unsupported", "error", "longest (s)"
    );
    let mut tot = Row::default();
    for (suite, r) in &rows {
        t.push_str(&format!(
            "{:<20} {:>5} {:>5} {:>9} {:>5} {:>11} {:>5} {:>12.1}\n",
            suite,
            r.pass,
            r.fail,
            r.dev,
            r.known,
            r.unsup,
            r.err,
            r.longest.as_secs_f64()
        ));
        tot.pass += r.pass;
        tot.fail += r.fail;
        tot.dev += r.dev;
        tot.err += r.err;
        tot.known += r.known;
        tot.gone += r.gone;
        tot.unsup += r.unsup;
        tot.longest = tot.longest.max(r.longest);
    }
    t.push_str(&format!(
        "{:<20} {:>5} {:>5} {:>9} {:>5} {:>11} {:>5} {:>12.1}\n",
        "total",
        tot.pass,
        tot.fail,
        tot.dev,
        tot.known,
        tot.unsup,
        tot.err,
        tot.longest.as_secs_f64()
    ));
    let noted = results
        .iter()
        .filter(|r| !r.observations.harness.is_empty())
        .count();
    if noted > 0 {
        t.push_str(&format!(
            "\n{noted} scenario(s) carry harness notes (a limit reached, a connection not accepted): see their verdicts\n"
        ));
    }
    if tot.gone > 0 {
        t.push_str(&format!(
            "\n{} known deviation(s) no longer seen (PASS*): update the known-deviations file\n",
            tot.gone
        ));
    }
    t.push_str(&format!(
        "\n{} passed, {} failed ({} MUST, {} deviations, {} errors), {} known deviations, {} unsupported ({} scenarios; wall time {:.1} s, lab start-up {:.1} s)\n",
        tot.pass,
        tot.fail + tot.dev + tot.err,
        tot.fail,
        tot.dev,
        tot.err,
        tot.known,
        tot.unsup,
        results.len(),
        wall.as_secs_f64(),
        startup.as_secs_f64()
    ));
    t
}
