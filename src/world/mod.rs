//! World stage: a scenario's fake DNS zone and fake hosts, scoped so scenarios can run side by side.
//!
//! Every name a scenario writes (`dest.test`) is moved under the scenario's
//! own label (`dest.s3.test`), and every host gets its own loopback address,
//! so many scenarios share one target and one DNS server without meeting.

pub mod host;

use crate::suite::{RecordData, Scenario};
use fake_dns::{FaultRule, QType, Record, Zone};
use std::net::Ipv4Addr;

/// Names and addresses of one scenario inside the lab.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Scope {
    /// The scenario's position in the run (decides its addresses).
    pub index: usize,
    /// The DNS label inserted before `.test`.
    pub label: String,
}

impl Scope {
    pub fn new(index: usize) -> Scope {
        Scope::with_nonce(index, None)
    }

    /// A scope whose label also carries the run's `nonce` (`s3-1a2b3c4d`):
    /// mail an MTA kept queued from an earlier run names domains that no
    /// longer resolve, so it can never reach this run's hosts.
    pub fn with_nonce(index: usize, nonce: Option<&str>) -> Scope {
        Scope {
            index,
            label: match nonce {
                Some(n) => format!("s{index}-{n}"),
                None => format!("s{index}"),
            },
        }
    }

    /// The zone origin every scoped name lives under.
    pub fn origin(&self) -> String {
        format!("{}.test", self.label)
    }

    /// `dest.test` → `dest.s3.test`; `.` (null MX) stays.
    pub fn name(&self, name: &str) -> String {
        let n = name.trim_end_matches('.').to_ascii_lowercase();
        if name == "." {
            return ".".into();
        }
        match n.strip_suffix(".test") {
            Some(head) => format!("{head}.{}", self.origin()),
            None if n == "test" => self.origin(),
            None => n,
        }
    }

    /// `bob@dest.test` → `bob@dest.s3.test`.
    pub fn address(&self, addr: &str) -> String {
        match addr.rsplit_once('@') {
            Some((local, domain)) => format!("{local}@{}", self.name(domain)),
            None => addr.to_string(),
        }
    }

    /// Undo [`Scope::address`] / [`Scope::name`] for reports.
    pub fn unscope(&self, text: &str) -> String {
        text.replace(&format!(".{}", self.origin()), ".test")
    }

    /// The loopback address of the scenario's `n`-th host (127.10.0.0/16 onwards).
    pub fn host_addr(&self, n: usize) -> Ipv4Addr {
        let i = self.index;
        Ipv4Addr::new(127, 10 + (i / 250) as u8, (i % 250) as u8, (n + 1) as u8)
    }
}

/// Build the scenario's zone: its records, an A record for every host that
/// has a name, and its faults, all scoped. `target` is the address the
/// scenario's target instance listens on (for `NAME A target`).
pub fn zone(scenario: &Scenario, scope: &Scope, target: Ipv4Addr) -> Zone {
    let mut zone = Zone::new(scope.origin());
    for r in &scenario.records {
        let name = scope.name(&r.name);
        let data = match &r.data {
            RecordData::A(a) => fake_dns::RecordData::A(*a),
            RecordData::TargetA => fake_dns::RecordData::A(target),
            RecordData::Aaaa(a) => fake_dns::RecordData::Aaaa(*a),
            RecordData::Mx {
                preference,
                exchange,
            } => fake_dns::RecordData::Mx {
                preference: *preference,
                exchange: scope.name(exchange),
            },
            RecordData::Cname(t) => fake_dns::RecordData::Cname(scope.name(t)),
            RecordData::Txt(t) => fake_dns::RecordData::Txt(t.clone()),
        };
        zone = zone.with_record(Record::new(name, data));
    }
    for (i, h) in scenario.hosts.iter().enumerate() {
        if let (Some(name), true) = (&h.name, h.address_record) {
            zone = zone.with_record(Record::a(scope.name(name), scope.host_addr(i)));
        }
    }
    for f in &scenario.faults {
        let name = scope.name(&f.name);
        let rule = match f.qtype.as_deref() {
            None => FaultRule::all(name, f.fault),
            Some(t) => FaultRule::for_qtype(name, qtype(t), f.fault),
        };
        zone = zone.with_fault(rule);
    }
    zone
}

fn qtype(t: &str) -> QType {
    match t {
        "A" => QType::A,
        "AAAA" => QType::Aaaa,
        "MX" => QType::Mx,
        "CNAME" => QType::Cname,
        "TXT" => QType::Txt,
        _ => QType::Ptr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_nonce_keeps_names_of_other_runs_apart() {
        let a = Scope::with_nonce(3, Some("1a2b3c4d"));
        let b = Scope::with_nonce(3, Some("99887766"));
        assert_eq!(a.address("bob@dest.test"), "bob@dest.s3-1a2b3c4d.test");
        assert_ne!(a.name("dest.test"), b.name("dest.test"));
        assert_eq!(
            a.unscope("mx.dest.s3-1a2b3c4d.test said no"),
            "mx.dest.test said no"
        );
        // Another run's names are not this run's: they stay as they are.
        assert_eq!(b.unscope(&a.name("dest.test")), "dest.s3-1a2b3c4d.test");
        assert_eq!(Scope::with_nonce(3, None).label, Scope::new(3).label);
    }

    #[test]
    fn scoping_moves_names_under_the_scenario_label() {
        let s = Scope::new(3);
        assert_eq!(s.name("dest.test"), "dest.s3.test");
        assert_eq!(s.name("MX10.Dest.TEST."), "mx10.dest.s3.test");
        assert_eq!(s.name("."), ".");
        assert_eq!(s.address("bob@dest.test"), "bob@dest.s3.test");
        assert_eq!(s.unscope("bob@dest.s3.test"), "bob@dest.test");
        assert_eq!(s.host_addr(0), Ipv4Addr::new(127, 10, 3, 1));
        assert_eq!(Scope::new(251).host_addr(1), Ipv4Addr::new(127, 11, 1, 2));
    }

    #[test]
    fn zones_carry_records_hosts_and_faults() {
        let sc = crate::suite::parse_scenario(
            std::path::Path::new("x/0001-z.toml"),
            r#"
title = "t"
rule = "r"
rfc = "RFC 5321"
strength = "MUST"
[dns]
records = ["dest.test MX 10 mx1.dest.test"]
faults = ["bad.test MX servfail"]
[hosts.a]
name = "mx1.dest.test"
[[message]]
from = "a@src.test"
to = ["b@dest.test"]
[[expect]]
contacted = "a"
"#,
        )
        .unwrap();
        let z = zone(&sc, &Scope::new(0), Ipv4Addr::LOCALHOST);
        assert_eq!(z.origin, "s0.test");
        assert!(z.records.iter().any(|r| r.name == "dest.s0.test"
            && r.data
                == fake_dns::RecordData::Mx {
                    preference: 10,
                    exchange: "mx1.dest.s0.test".into()
                }));
        assert!(z.records.iter().any(|r| r.name == "mx1.dest.s0.test"
            && r.data == fake_dns::RecordData::A(Ipv4Addr::new(127, 10, 0, 1))));
        // The sender MX added by the loader gets the next address.
        assert!(z.records.iter().any(|r| r.name == "mx.src.s0.test"
            && r.data == fake_dns::RecordData::A(Ipv4Addr::new(127, 10, 0, 2))));
        assert_eq!(z.faults.len(), 1);
    }
}
