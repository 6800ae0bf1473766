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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::controls::plan;
    use crate::run::Verdict;

    fn scenario(name: &str, strength: &str, controls: &str) -> crate::suite::Scenario {
        crate::suite::parse_scenario(
            std::path::Path::new(&format!("suites/s/{name}.toml")),
            &format!(
                "title = \"t\"\nrule = \"r\"\nrfc = \"RFC 5321 §5.1\"\nstrength = \"{strength}\"\n\
                 [[message]]\nfrom = \"a@src.test\"\nto = [\"b@dest.test\"]\n\
                 [[expect]]\naccepted = true\n{controls}"
            ),
        )
        .unwrap()
    }

    fn control(target: &str) -> String {
        format!(
            "[[control]]\ntarget = \"{target}\"\nset = {{ soft_bounce = \"yes\" }}\nwhy = \"w\"\n"
        )
    }

    /// A result for a variant: passed, failed, or with an error / unsupported knob.
    fn result(sc: &crate::suite::Scenario, pass: bool) -> ScenarioResult {
        let mut r = ScenarioResult::new(sc, &crate::world::Scope::new(0));
        r.verdicts.push(Verdict {
            expect: "target accepts".into(),
            decision: if pass {
                Decision::Pass("250".into())
            } else {
                Decision::Fail("it answered 554".into())
            },
        });
        r
    }

    #[test]
    fn controls_are_caught_only_by_a_failure_and_known_deviations_do_not_count() {
        let scenarios = vec![
            scenario("0001-must", "MUST", &control("postfix")),
            scenario("0002-should", "SHOULD", &control("postfix")),
            scenario(
                "0003-two",
                "MUST",
                &format!("{}{}", control("postfix"), control("exim")),
            ),
            scenario(
                "0004-none",
                "MUST",
                "[[control]]\nnone = \"no setting can\"\n",
            ),
            scenario("0005-bare", "MUST", ""),
        ];
        let p = plan(&scenarios, "postfix");
        assert_eq!(p.variants.len(), 3);
        assert_eq!(p.planned.len(), 3);
        assert_eq!(p.variants[2].id, "s/0003-two [control 1]");
        assert_eq!(
            p.none,
            vec![("s/0004-none".to_string(), "no setting can".to_string())]
        );
        assert_eq!(
            p.other_targets,
            vec![("s/0003-two".to_string(), "exim".to_string())]
        );
        assert_eq!(p.undeclared, vec!["s/0005-bare".to_string()]);

        // MUST failed: caught. SHOULD failed (a deviation) while listed as a
        // known deviation: still caught. The third passed: missed.
        let mut results = vec![
            result(&p.variants[0], false),
            result(&p.variants[1], false),
            result(&p.variants[2], true),
        ];
        results[1].known = Some("a known deviation".into());
        let outcomes: Vec<Outcome> = results.iter().map(Outcome::of).collect();
        assert_eq!(
            outcomes,
            vec![Outcome::Caught, Outcome::Caught, Outcome::Missed]
        );
        let text = summary(&p, &results, "postfix", Duration::ZERO, Duration::ZERO);
        assert!(
            text.contains(
                "controls caught 2/3 (postfix); 1 not caught, 1 scenario(s) with no control (none)"
            ),
            "{text}"
        );
        assert!(
            text.contains("MISSED s/0003-two control 1 (suites/s/0003-two.toml:10): postfix soft_bounce = yes"),
            "{text}"
        );
        assert!(text.contains("observed: the scenario passed"), "{text}");
        assert!(text.contains("s/0004-none: no setting can"), "{text}");
        assert!(text.contains("1 for exim"), "{text}");
        assert!(
            text.contains("no [[control]] at all: s/0005-bare"),
            "{text}"
        );

        // A pass of a known deviation, an unsupported knob and an error are never caught.
        let mut known_pass = result(&p.variants[0], true);
        known_pass.known = Some("why".into());
        assert_eq!(Outcome::of(&known_pass), Outcome::Missed);
        let mut unsupported = result(&p.variants[0], false);
        unsupported.unsupported = Some("cannot set queue_lifetime".into());
        assert_eq!(Outcome::of(&unsupported), Outcome::Missed);
        let mut error = result(&p.variants[0], false);
        error.error = Some("lab failure".into());
        assert_eq!(Outcome::of(&error), Outcome::Error);

        let xml = junit(&p, &results, "postfix", Duration::ZERO)
            .to_string()
            .unwrap();
        assert!(
            xml.contains(
                r#"<testsuite name="controls/s" tests="4" skipped="1" errors="0" failures="1">"#
            ),
            "{xml}"
        );
        assert!(
            xml.contains(r#"<testcase name="s/0003-two [control 1]""#),
            "{xml}"
        );
        assert!(
            xml.contains("control not caught: the scenario passed under soft_bounce = yes"),
            "{xml}"
        );
        assert!(xml.contains("no control: no setting can"), "{xml}");
    }
}
