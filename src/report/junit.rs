//! Report stage: JUnit XML (quick-junit) — one testsuite per suite folder, one testcase per scenario.
//!
//! A known deviation that was seen is written as `<skipped>` whose message
//! gives the reason and what failed (CI stays green, the reason stays
//! visible); a known deviation no longer seen is a success with the property
//! `known-deviation = "no longer seen: REASON"`.

use super::{observations_text, Status};
use crate::run::judge::Decision;
use crate::run::ScenarioResult;
use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// Add `props` to every testsuite of `report` (e.g. the image under test and
/// the settings the lab replaced in it).
pub fn add_suite_properties(report: &mut Report, props: &[(String, String)]) {
    for suite in &mut report.test_suites {
        for (k, v) in props {
            suite.add_property(Property::new(k.clone(), v.clone()));
        }
    }
}

/// Build the report. `target` names the MTA under test (a property of every case).
pub fn report(results: &[ScenarioResult], target: &str, wall: Duration) -> Report {
    let mut suites: BTreeMap<&str, TestSuite> = BTreeMap::new();
    for r in results {
        let suite = suites.entry(&r.suite).or_insert_with(|| {
            let mut s = TestSuite::new(r.suite.clone());
            s.add_property(Property::new("target", target));
            s
        });
        let status = match Status::of(r) {
            Status::Pass | Status::NoLongerSeen => TestCaseStatus::success(),
            Status::Known => {
                let mut s = TestCaseStatus::skipped();
                s.set_message(format!(
                    "known deviation: {}; {}",
                    r.known.clone().unwrap_or_default(),
                    failures(r).join("; ")
                ));
                s.set_type("known deviation");
                s.set_description(super::console::failure_text(r));
                s
            }
            Status::Unsupported => {
                let mut s = TestCaseStatus::skipped();
                s.set_message(format!(
                    "unsupported: {}",
                    r.unsupported.clone().unwrap_or_default()
                ));
                s.set_type("unsupported");
                s
            }
            Status::Error => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
                s.set_message(r.error.clone().unwrap_or_default());
                s.set_type("harness error");
                s
            }
            st @ (Status::Fail | Status::Deviation) => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                let fails = failures(r);
                s.set_message(format!("{} {}: {}", r.rfc, r.strength, fails.join("; ")));
                s.set_type(if st == Status::Fail {
                    "MUST violated"
                } else {
                    "deviation"
                });
                s.set_description(super::console::failure_text(r));
                s
            }
        };
        let mut case = TestCase::new(r.id.clone(), status);
        case.set_classname(r.suite.clone());
        case.set_time(r.duration);
        case.add_property(Property::new("rfc", r.rfc.clone()));
        case.add_property(Property::new("strength", r.strength.to_string()));
        case.add_property(Property::new("rule", r.rule.clone()));
        case.add_property(Property::new("target", target));
        case.add_property(Property::new("scenario-file", r.file.clone()));
        case.add_property(Property::new("target-instance", r.instance.clone()));
        if !r.observations.harness.is_empty() {
            case.add_property(Property::new(
                "harness-notes",
                r.observations.harness.join("; "),
            ));
        }
        if let Some(why) = &r.known {
            let v = if Status::of(r) == Status::NoLongerSeen {
                format!("no longer seen: {why}")
            } else {
                why.clone()
            };
            case.add_property(Property::new("known-deviation", v));
        }
        let mut out = String::new();
        for v in &r.verdicts {
            let (mark, text) = match &v.decision {
                Decision::Pass(t) => ("pass", t.as_str()),
                Decision::Fail(t) => ("fail", t.as_str()),
                Decision::Pending => ("undecided", ""),
            };
            out.push_str(&format!("[{mark}] {}: {text}\n", v.expect));
        }
        out.push_str(&observations_text(r));
        case.set_system_out_lossy(out);
        suite.add_test_case(case);
    }
    let mut report = Report::new("mtaspec");
    report.set_time(wall);
    report.add_test_suites(suites.into_values());
    report
}

fn failures(r: &ScenarioResult) -> Vec<String> {
    r.verdicts
        .iter()
        .filter_map(|v| match &v.decision {
            Decision::Fail(why) => Some(why.clone()),
            Decision::Pending => Some(format!("{}: undecided", v.expect)),
            Decision::Pass(_) => None,
        })
        .collect()
}

/// Write the report to `path`.
pub fn write(report: &Report, path: &Path) -> std::io::Result<()> {
    let xml = report
        .to_string()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    super::write_file(path, xml.as_bytes())
}
