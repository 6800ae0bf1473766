//! Report stage: negative controls — progress, "controls caught N/M" with every control not caught, and JUnit (one testcase per control).

use super::{console::failure_text, observations_text, Event};
use crate::run::controls::{Outcome, Plan, Planned};
use crate::run::judge::Decision;
use crate::run::ScenarioResult;
use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Prints one line per finished control to standard error.
pub struct Progress {
    total: usize,
    done: AtomicUsize,
    verbose: bool,
}

impl Progress {
    pub fn new(total: usize, verbose: bool) -> Progress {
        Progress {
            total,
            done: AtomicUsize::new(0),
            verbose,
        }
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
                let o = Outcome::of(r);
                let _ = writeln!(
                    err,
                    "[{n:>3}/{}] {:<9} {} ({:.1} s)",
                    self.total,
                    o.label(),
                    r.id,
                    r.duration.as_secs_f64()
                );
                if o != Outcome::Caught || self.verbose {
                    let _ = write!(err, "{}", failure_text(r));
                }
            }
        }
    }
}

/// A control and what it came to.
fn pairs<'a>(
    plan: &'a Plan,
    results: &'a [ScenarioResult],
) -> impl Iterator<Item = (&'a Planned, &'a ScenarioResult, Outcome)> {
    plan.planned
        .iter()
        .zip(results)
        .map(|(p, r)| (p, r, Outcome::of(r)))
}

/// How the scenario came out, in a phrase: "it passed", "unsupported: ...".
fn what_happened(r: &ScenarioResult) -> String {
    if let Some(e) = &r.error {
        format!("harness error: {e}")
    } else if let Some(u) = &r.unsupported {
        format!("unsupported: {u}")
    } else if r.passed() {
        "the scenario passed".into()
    } else {
        let fails: Vec<String> = r
            .verdicts
            .iter()
            .filter_map(|v| match &v.decision {
                Decision::Fail(why) => Some(why.clone()),
                Decision::Pending => Some(format!("{}: undecided", v.expect)),
                Decision::Pass(_) => None,
            })
            .collect();
        format!("the scenario failed: {}", fails.join("; "))
    }
}

/// The closing summary: "controls caught N/M (target)", every control not
/// caught, and the scenarios that declare no control.
pub fn summary(
    plan: &Plan,
    results: &[ScenarioResult],
    target: &str,
    wall: Duration,
    startup: Duration,
) -> String {
    let mut t = String::new();
    let caught = pairs(plan, results)
        .filter(|(_, _, o)| *o == Outcome::Caught)
        .count();
    let missed: Vec<_> = pairs(plan, results)
        .filter(|(_, _, o)| *o != Outcome::Caught)
        .collect();
    if !missed.is_empty() {
        t.push_str("\ncontrols NOT caught (the scenario did not fail under them):\n");
        for (p, r, o) in &missed {
            t.push_str(&format!(
                "  {} {} control {} ({}:{}): {} {}\n    why it should fail: {}\n    observed: {}\n",
                o.label(),
                p.scenario,
                p.number,
                p.file,
                p.control.line,
                p.control.target,
                p.control.describe(),
                p.control.why,
                what_happened(r)
            ));
        }
    }
    if !plan.none.is_empty() {
        t.push_str(&format!(
            "\n{} scenario(s) declare no control (none):\n",
            plan.none.len()
        ));
        for (id, why) in &plan.none {
            t.push_str(&format!("  {id}: {why}\n"));
        }
    }
    if !plan.undeclared.is_empty() {
        t.push_str(&format!(
            "\n{} scenario(s) have no [[control]] at all: {}\n",
            plan.undeclared.len(),
            plan.undeclared.join(", ")
        ));
    }
    if !plan.other_targets.is_empty() {
        let mut by: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, target) in &plan.other_targets {
            *by.entry(target).or_default() += 1;
        }
        let list: Vec<String> = by.iter().map(|(k, n)| format!("{n} for {k}")).collect();
        t.push_str(&format!(
            "\ncontrols for other targets, not run: {}\n",
            list.join(", ")
        ));
    }
    t.push_str(&format!(
        "\ncontrols caught {caught}/{} ({target}); {} not caught, {} scenario(s) with no control (none) (wall time {:.1} s, lab start-up {:.1} s)\n",
        plan.planned.len(),
        missed.len(),
        plan.none.len(),
        wall.as_secs_f64(),
        startup.as_secs_f64()
    ));
    t
}

/// JUnit: one testsuite per suite folder (`controls/<suite>`), one testcase
/// per control (a failure when not caught), and a skipped testcase with the
/// reason for every scenario that declares no control.
pub fn junit(plan: &Plan, results: &[ScenarioResult], target: &str, wall: Duration) -> Report {
    let mut suites: BTreeMap<String, TestSuite> = BTreeMap::new();
    fn suite<'s>(
        suites: &'s mut BTreeMap<String, TestSuite>,
        name: &str,
        target: &str,
    ) -> &'s mut TestSuite {
        suites
            .entry(format!("controls/{name}"))
            .or_insert_with_key(|k| {
                let mut s = TestSuite::new(k.clone());
                s.add_property(Property::new("target", target));
                s
            })
    }
    for (p, r, o) in pairs(plan, results) {
        let status = match o {
            Outcome::Caught => TestCaseStatus::success(),
            Outcome::Missed => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                s.set_message(format!(
                    "control not caught: {} under {}; it should fail because {}",
                    what_happened(r),
                    p.control.describe(),
                    p.control.why
                ));
                s.set_type("control not caught");
                s.set_description(failure_text(r));
                s
            }
            Outcome::Error => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
                s.set_message(what_happened(r));
                s.set_type("harness error");
                s
            }
        };
        let mut case = TestCase::new(r.id.clone(), status);
        case.set_classname(p.suite.clone());
        case.set_time(r.duration);
        case.add_property(Property::new("scenario", p.scenario.clone()));
        case.add_property(Property::new("control-target", p.control.target.clone()));
        case.add_property(Property::new("control", p.control.describe()));
        case.add_property(Property::new("control-why", p.control.why.clone()));
        case.add_property(Property::new(
            "scenario-file",
            format!("{}:{}", p.file, p.control.line),
        ));
        let mut out = format!("{}: {}\n", o.label(), what_happened(r));
        out.push_str(&observations_text(r));
        case.set_system_out_lossy(out);
        suite(&mut suites, &p.suite, target).add_test_case(case);
    }
    for (id, why) in &plan.none {
        let name = id.split('/').next().unwrap_or(id);
        let mut s = TestCaseStatus::skipped();
        s.set_message(format!("no control: {why}"));
        s.set_type("no control");
        let mut case = TestCase::new(format!("{id} [no control]"), s);
        case.set_classname(name.to_string());
        suite(&mut suites, name, target).add_test_case(case);
    }
    let mut report = Report::new("mtaspec controls");
    report.set_time(wall);
    report.add_test_suites(suites.into_values());
    report
}
