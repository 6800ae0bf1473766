//! Report stage: one event stream feeding the console and the JUnit writer.

pub mod console;
pub mod controls;
pub mod junit;
pub mod matrix;

use crate::run::ScenarioResult;

pub use crate::run::Event;

/// Write a report file (JUnit, the matrix table), creating its folder
/// first: a long run's results are not lost to a folder that does not
/// exist yet.
pub fn write_file(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, bytes)
}

/// How a scenario's outcome is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pass,
    /// A MUST-level rule was broken.
    Fail,
    /// A SHOULD, MAY or practice-level rule was not followed.
    Deviation,
    /// The harness could not run the scenario.
    Error,
    /// Failed, but listed as a known deviation of the target (does not fail the run).
    Known,
    /// Passed although listed as a known deviation: the list is out of date.
    NoLongerSeen,
    /// Not run: the target cannot honour a knob the scenario needs.
    Unsupported,
}

impl Status {
    pub fn of(r: &ScenarioResult) -> Status {
        if r.unsupported.is_some() {
            Status::Unsupported
        } else if r.error.is_some() {
            Status::Error
        } else if r.passed() {
            if r.known.is_some() {
                Status::NoLongerSeen
            } else {
                Status::Pass
            }
        } else if r.known.is_some() {
            Status::Known
        } else if r.strength == crate::rfc::Strength::Must {
            Status::Fail
        } else {
            Status::Deviation
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Deviation => "DEVIATION",
            Status::Error => "ERROR",
            Status::Known => "KNOWN",
            Status::NoLongerSeen => "PASS*",
            Status::Unsupported => "UNSUPPORTED",
        }
    }
}

/// Transcripts, DNS queries and client dialogue of a scenario, as text.
pub fn observations_text(r: &ScenarioResult) -> String {
    use std::fmt::Write;
    let o = &r.observations;
    let unscope = |s: &str| r.scope.unscope(s);
    let mut t = String::new();
    for i in &o.injections {
        let _ = writeln!(
            t,
            "== client → target, message {} at {:.3} s",
            i.message + 1,
            i.at.as_secs_f64()
        );
        for l in &i.transcript {
            let _ = writeln!(
                t,
                "{:8.3} {} {}",
                l.at.as_secs_f64(),
                if l.from_peer { "S:" } else { "C:" },
                unscope(&l.text)
            );
        }
        if let Some(e) = &i.error {
            let _ = writeln!(t, "         error: {e}");
        }
    }
    // Inbound: raw client sessions, sent bytes escaped as in the script.
    for rs in &o.raw_sessions {
        let _ = writeln!(
            t,
            "== raw session {} from {} at {:.3} s",
            rs.session + 1,
            rs.client,
            rs.at.as_secs_f64()
        );
        for l in &rs.transcript {
            let _ = writeln!(
                t,
                "{:8.3} {} {}",
                l.at.as_secs_f64(),
                if l.from_peer { "S:" } else { "C:" },
                unscope(&l.text)
            );
        }
        if let Some(e) = &rs.error {
            let _ = writeln!(t, "         error: {e}");
        }
    }
    if !o.connects.is_empty() {
        let _ = writeln!(t, "== connection attempts (SYN)");
        for c in &o.connects {
            let _ = writeln!(t, "{:8.3} → {}", c.at.as_secs_f64(), c.host);
        }
    }
    for s in &o.sessions {
        let _ = writeln!(
            t,
            "== {} attempt {} at {:.3} s",
            s.host,
            s.attempt + 1,
            s.at.as_secs_f64()
        );
        for l in &s.transcript {
            let _ = writeln!(
                t,
                "{:8.3} {} {}",
                l.at.as_secs_f64(),
                if l.from_peer { "C:" } else { "S:" },
                unscope(&l.text)
            );
        }
    }
    if !o.dns.is_empty() {
        let _ = writeln!(t, "== DNS queries");
        for q in &o.dns {
            let _ = writeln!(
                t,
                "{:8.3} {} {} → {}",
                q.at.as_secs_f64(),
                unscope(&q.name),
                q.qtype,
                q.outcome
            );
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rfc::Strength;
    use crate::run::judge::Decision;
    use crate::run::Verdict;

    fn result(strength: Strength, pass: bool, known: Option<&str>) -> ScenarioResult {
        let sc = crate::suite::parse_scenario(
            std::path::Path::new("suites/loop-detection/0007-x.toml"),
            "title = \"t\"\nrule = \"r\"\nrfc = \"RFC 5321 §6.3\"\nstrength = \"SHOULD\"\n[[message]]\nfrom = \"a@src.test\"\nto = [\"b@dest.test\"]\n[[expect]]\naccepted = false\n",
        )
        .unwrap();
        let mut r = ScenarioResult::new(&sc, &crate::world::Scope::new(0));
        r.strength = strength;
        r.known = known.map(str::to_string);
        r.verdicts.push(Verdict {
            expect: "target refuses the message".into(),
            decision: if pass {
                Decision::Pass("554 5.4.0".into())
            } else {
                Decision::Fail("it answered 250".into())
            },
        });
        r
    }

    #[test]
    fn statuses_follow_strength_and_known_deviations() {
        assert_eq!(
            Status::of(&result(Strength::Must, true, None)),
            Status::Pass
        );
        assert_eq!(
            Status::of(&result(Strength::Must, false, None)),
            Status::Fail
        );
        assert_eq!(
            Status::of(&result(Strength::Should, false, None)),
            Status::Deviation
        );
        assert_eq!(
            Status::of(&result(Strength::Practice, false, None)),
            Status::Deviation
        );
        assert_eq!(
            Status::of(&result(Strength::Must, false, Some("why"))),
            Status::Known
        );
        assert_eq!(
            Status::of(&result(Strength::Should, true, Some("why"))),
            Status::NoLongerSeen
        );
    }

    #[test]
    fn junit_skips_known_deviations_with_the_reason_and_flags_stale_ones() {
        let results = [
            result(Strength::Should, false, Some("Postfix says 5.4.0")),
            result(Strength::Should, true, Some("Postfix says 5.4.0")),
            result(Strength::Must, false, None),
        ];
        let xml = junit::report(&results, "postfix", std::time::Duration::from_secs(1))
            .to_string()
            .unwrap();
        assert!(
            xml.contains(
                "<skipped message=\"known deviation: Postfix says 5.4.0; it answered 250\""
            ),
            "{xml}"
        );
        assert!(
            xml.contains("value=\"no longer seen: Postfix says 5.4.0\""),
            "{xml}"
        );
        assert!(xml.contains("type=\"MUST violated\""), "{xml}");
        let table = console::summary(
            &results,
            std::time::Duration::from_secs(1),
            Default::default(),
        );
        assert!(
            table.contains("1 known deviation(s) no longer seen"),
            "{table}"
        );
        assert!(
            table.contains(
                "1 passed, 1 failed (1 MUST, 0 deviations, 0 errors), 1 known deviations"
            ),
            "{table}"
        );
    }

    #[test]
    fn a_report_file_gets_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new/deeper/matrix.md");
        super::write_file(&path, b"| table |").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"| table |");
    }
}
