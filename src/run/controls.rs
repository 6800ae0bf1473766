//! Run stage: negative controls — every scenario again under each of its `[[control]]` settings, where it must fail.
//!
//! A control is caught when its scenario comes out FAIL or DEVIATION. A pass,
//! an unsupported knob or a harness error is not: the control did not show
//! that the scenario can fail. Known deviations never apply to controls.

use super::ScenarioResult;
use crate::suite::Scenario;

/// One control to run: which scenario, which of its controls.
#[derive(Debug, Clone)]
pub struct Planned {
    /// The scenario's own id.
    pub scenario: String,
    pub suite: String,
    pub file: String,
    /// 1-based number of the control in its scenario.
    pub number: usize,
    pub control: crate::suite::Control,
}

/// What `mtaspec run --controls` runs and what it only reports.
#[derive(Debug, Default)]
pub struct Plan {
    /// One scenario variant per control for the target, in the order of `planned`.
    pub variants: Vec<Scenario>,
    pub planned: Vec<Planned>,
    /// Scenarios that say no control exists: (id, reason).
    pub none: Vec<(String, String)>,
    /// Controls for other targets, not run: (scenario id, target).
    pub other_targets: Vec<(String, String)>,
    /// Scenarios with neither a control nor `none`.
    pub undeclared: Vec<String>,
}

/// The control variants of `scenarios` for the target called `target`.
pub fn plan(scenarios: &[Scenario], target: &str) -> Plan {
    let mut p = Plan::default();
    for sc in scenarios {
        if let Some(why) = &sc.no_control {
            p.none.push((sc.id.clone(), why.clone()));
        } else if sc.controls.is_empty() {
            p.undeclared.push(sc.id.clone());
        }
        for (n, c) in sc.controls.iter().enumerate() {
            if c.target != target {
                p.other_targets.push((sc.id.clone(), c.target.clone()));
                continue;
            }
            p.variants.push(sc.under_control(n));
            p.planned.push(Planned {
                scenario: sc.id.clone(),
                suite: sc.suite.clone(),
                file: sc.path.display().to_string(),
                number: n + 1,
                control: c.clone(),
            });
        }
    }
    p
}

/// What a control came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The scenario failed under the control (FAIL or DEVIATION).
    Caught,
    /// The scenario did not fail (it passed, or could not run on this target).
    Missed,
    /// The harness could not run the scenario.
    Error,
}

impl Outcome {
    /// The outcome of a control variant's result. Whether the scenario is a
    /// known deviation does not matter: a failure under a control is what the
    /// control must show, known or not.
    pub fn of(r: &ScenarioResult) -> Outcome {
        if r.error.is_some() {
            Outcome::Error
        } else if r.unsupported.is_some() || r.passed() {
            Outcome::Missed
        } else {
            // FAIL (a MUST) or DEVIATION (SHOULD, MAY, practice).
            Outcome::Caught
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Caught => "CAUGHT",
            Outcome::Missed => "MISSED",
            Outcome::Error => "ERROR",
        }
    }
}
