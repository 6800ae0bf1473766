//! Loaded zones and the authoritative lookup algorithm (faults, CNAME chase, NODATA/NXDOMAIN).

use std::collections::{HashMap, HashSet};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, PTR, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record as WireRecord};

use crate::error::DnsError;
use crate::log::Transport;
use crate::names;
use crate::zone::{Fault, QType, RecordData, Zone};

/// Longest TXT text accepted, in bytes.
pub const MAX_TXT_LEN: usize = 16 * 1024;
/// CNAME hops followed inside our own data before giving up.
const MAX_CNAME_CHAIN: usize = 16;
/// TTL and MINIMUM of the synthesized SOA; zero keeps negative answers
/// uncached while zones change under a running lab.
const SOA_TTL: u32 = 0;

const CNAME_CODE: u16 = 5;
const SOA_CODE: u16 = 6;
const ANY_CODE: u16 = 255;

/// A validated zone in wire form.
pub(crate) struct CompiledZone {
    origin: Name,
    /// Owner name → records, in the order given.
    nodes: HashMap<Name, Vec<WireRecord>>,
    /// Every name that exists: owners, their ancestors down to the origin
    /// (empty non-terminals) and the origin itself.
    existing: HashSet<Name>,
    faults: Vec<(Name, Option<u16>, Fault)>,
    soa: WireRecord,
}

impl CompiledZone {
    /// Validates a scenario zone and converts it to wire records.
    pub(crate) fn compile(zone: &Zone) -> Result<Self, DnsError> {
        let origin = names::parse(&zone.origin)?;
        let in_zone = |text: &str| -> Result<Name, DnsError> {
            let name = names::parse(text)?;
            if origin.zone_of(&name) {
                Ok(name)
            } else {
                Err(DnsError::OutOfZone {
                    name: text.to_owned(),
                    origin: zone.origin.clone(),
                })
            }
        };

        let mut nodes: HashMap<Name, Vec<WireRecord>> = HashMap::new();
        let mut existing = HashSet::from([origin.clone()]);
        for record in &zone.records {
            let owner = in_zone(&record.name)?;
            let rdata = to_rdata(&record.name, &record.data)?;
            let mut ancestor = owner.clone();
            while ancestor != origin && ancestor.num_labels() > origin.num_labels() {
                existing.insert(ancestor.clone());
                ancestor = names::normalize(&ancestor.base_name());
            }
            nodes
                .entry(owner.clone())
                .or_default()
                .push(WireRecord::from_rdata(owner, record.ttl, rdata));
        }
        for (owner, records) in &nodes {
            let cnames = records
                .iter()
                .filter(|r| u16::from(r.record_type()) == CNAME_CODE)
                .count();
            if cnames > 0 && (records.len() > 1 || *owner == origin) {
                return Err(DnsError::CnameConflict(names::display(owner)));
            }
        }

        let mut faults = Vec::with_capacity(zone.faults.len());
        for rule in &zone.faults {
            let name = in_zone(&rule.name)?;
            faults.push((name, rule.qtype.map(QType::code), rule.fault));
        }

        let soa = synthesize_soa(&origin);
        Ok(Self {
            origin,
            nodes,
            existing,
            faults,
            soa,
        })
    }

    pub(crate) fn origin(&self) -> &Name {
        &self.origin
    }

    /// The rule deciding a query: a type-specific rule beats an all-types
    /// rule; among equals the first wins.
    fn fault_for(&self, qname: &Name, qtype: u16) -> Option<Fault> {
        let mut for_all = None;
        for (name, filter, fault) in &self.faults {
            if name != qname {
                continue;
            }
            match filter {
                Some(code) if *code == qtype => return Some(*fault),
                Some(_) => {}
                None => {
                    for_all.get_or_insert(*fault);
                }
            }
        }
        for_all
    }

    fn lookup(&self, name: &Name, qtype: u16) -> NodeLookup<'_> {
        let records: &[WireRecord] = self.nodes.get(name).map_or(&[], Vec::as_slice);
        let at_origin = *name == self.origin;
        let mut matching: Vec<&WireRecord> = records
            .iter()
            .filter(|r| qtype == ANY_CODE || u16::from(r.record_type()) == qtype)
            .collect();
        if at_origin && (qtype == SOA_CODE || qtype == ANY_CODE) {
            matching.insert(0, &self.soa);
        }
        if !matching.is_empty() {
            return NodeLookup::Records(matching);
        }
        if let Some(cname) = records
            .iter()
            .find(|r| u16::from(r.record_type()) == CNAME_CODE)
        {
            if let RData::CNAME(CNAME(target)) = &cname.data {
                return NodeLookup::Alias(cname, names::normalize(target));
            }
        }
        if self.existing.contains(name) {
            NodeLookup::NoData
        } else {
            NodeLookup::NxDomain
        }
    }
}

enum NodeLookup<'a> {
    Records(Vec<&'a WireRecord>),
    Alias(&'a WireRecord, Name),
    NoData,
    NxDomain,
}

/// Result of resolving one question against the loaded zones.
#[derive(Debug)]
pub(crate) enum Resolution {
    /// No zone covers the name.
    NotAuthoritative,
    /// A fault rule fired; no data was consulted.
    Fault(Fault),
    /// An authoritative answer.
    Data {
        rcode: ResponseCode,
        answers: Vec<WireRecord>,
        authorities: Vec<WireRecord>,
        /// A fault rule that matched but does not change the answer on this
        /// transport (`Truncate` over TCP).
        fault: Option<Fault>,
    },
}

/// All loaded zones, keyed by origin.
#[derive(Default)]
pub(crate) struct ZoneSet {
    zones: HashMap<Name, CompiledZone>,
}

impl ZoneSet {
    pub(crate) fn insert(&mut self, zone: CompiledZone) -> Result<(), DnsError> {
        if self.zones.contains_key(zone.origin()) {
            return Err(DnsError::DuplicateZone(names::display(zone.origin())));
        }
        self.zones.insert(zone.origin().clone(), zone);
        Ok(())
    }

    pub(crate) fn remove(&mut self, origin: &Name) -> bool {
        self.zones.remove(origin).is_some()
    }

    pub(crate) fn origins(&self) -> Vec<String> {
        let mut origins: Vec<String> = self.zones.keys().map(names::display).collect();
        origins.sort();
        origins
    }

    /// The most specific zone containing `name`.
    fn find(&self, name: &Name) -> Option<&CompiledZone> {
        self.zones
            .values()
            .filter(|z| z.origin.zone_of(name))
            .max_by_key(|z| z.origin.num_labels())
    }

    /// Answers `qname`/`qtype` (`qname` already normalized).
    pub(crate) fn resolve(&self, qname: &Name, qtype: u16, transport: Transport) -> Resolution {
        let Some(mut zone) = self.find(qname) else {
            return Resolution::NotAuthoritative;
        };
        let mut passive_fault = None;
        match zone.fault_for(qname, qtype) {
            Some(Fault::Truncate) if transport == Transport::Tcp => {
                passive_fault = Some(Fault::Truncate);
            }
            Some(fault) => return Resolution::Fault(fault),
            None => {}
        }

        let data = |rcode, answers, authorities| Resolution::Data {
            rcode,
            answers,
            authorities,
            fault: passive_fault,
        };
        let mut answers: Vec<WireRecord> = Vec::new();
        let mut visited: HashSet<Name> = HashSet::new();
        let mut current = qname.clone();
        for _ in 0..MAX_CNAME_CHAIN {
            visited.insert(current.clone());
            match zone.lookup(&current, qtype) {
                NodeLookup::Records(records) => {
                    answers.extend(records.into_iter().cloned());
                    return data(ResponseCode::NoError, answers, Vec::new());
                }
                NodeLookup::NoData => {
                    return data(ResponseCode::NoError, answers, vec![zone.soa.clone()]);
                }
                NodeLookup::NxDomain => {
                    return data(ResponseCode::NXDomain, answers, vec![zone.soa.clone()]);
                }
                NodeLookup::Alias(cname, target) => {
                    answers.push(cname.clone());
                    if visited.contains(&target) {
                        break;
                    }
                    match self.find(&target) {
                        Some(next) => {
                            zone = next;
                            current = target;
                        }
                        // Target outside our authority: the client follows it.
                        None => break,
                    }
                }
            }
        }
        data(ResponseCode::NoError, answers, Vec::new())
    }
}

fn to_rdata(owner: &str, data: &RecordData) -> Result<RData, DnsError> {
    Ok(match data {
        RecordData::A(addr) => RData::A(A(*addr)),
        RecordData::Aaaa(addr) => RData::AAAA(AAAA(*addr)),
        RecordData::Mx {
            preference,
            exchange,
        } => RData::MX(MX::new(*preference, names::parse(exchange)?)),
        RecordData::Cname(target) => RData::CNAME(CNAME(names::parse(target)?)),
        RecordData::Ptr(target) => RData::PTR(PTR(names::parse(target)?)),
        RecordData::Txt(text) => {
            if text.len() > MAX_TXT_LEN {
                return Err(DnsError::InvalidRecord {
                    name: owner.to_owned(),
                    reason: format!("txt longer than {MAX_TXT_LEN} bytes"),
                });
            }
            let mut chunks: Vec<&[u8]> = text.as_bytes().chunks(255).collect();
            if chunks.is_empty() {
                chunks.push(b"");
            }
            RData::TXT(TXT::from_bytes(chunks))
        }
    })
}

/// `ns.<origin> hostmaster.<origin> 1 3600 600 86400 0`, falling back to the
/// origin itself when the prefixed name would be too long.
fn synthesize_soa(origin: &Name) -> WireRecord {
    let prefixed = |label: &str| {
        origin
            .prepend_label(label)
            .map(|n| names::normalize(&n))
            .unwrap_or_else(|_| origin.clone())
    };
    let soa = SOA::new(
        prefixed("ns"),
        prefixed("hostmaster"),
        1,
        3600,
        600,
        86400,
        SOA_TTL,
    );
    WireRecord::from_rdata(origin.clone(), SOA_TTL, RData::SOA(soa))
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::zone::{FaultRule, Record};

    const A_CODE: u16 = 1;
    const MX_CODE: u16 = 15;
    const TXT_CODE: u16 = 16;

    fn set(zones: Vec<Zone>) -> ZoneSet {
        let mut set = ZoneSet::default();
        for zone in zones {
            set.insert(CompiledZone::compile(&zone).expect("valid zone"))
                .expect("unique");
        }
        set
    }

    fn name(text: &str) -> Name {
        names::parse(text).expect("valid name")
    }

    fn example() -> Zone {
        Zone::new("example.test")
            .with_record(Record::a("host.example.test", Ipv4Addr::new(192, 0, 2, 1)))
            .with_record(Record::a(
                "deep.a.b.example.test",
                Ipv4Addr::new(192, 0, 2, 2),
            ))
            .with_record(Record::cname("alias.example.test", "host.example.test"))
            .with_record(Record::cname("loop1.example.test", "loop2.example.test"))
            .with_record(Record::cname("loop2.example.test", "loop1.example.test"))
            .with_record(Record::cname("dangling.example.test", "gone.example.test"))
            .with_record(Record::cname("away.example.test", "mail.elsewhere.invalid"))
    }

    fn rcode_and_count(r: &Resolution) -> (ResponseCode, usize, usize) {
        match r {
            Resolution::Data {
                rcode,
                answers,
                authorities,
                ..
            } => (*rcode, answers.len(), authorities.len()),
            other => panic!("expected data, got {other:?}"),
        }
    }

    #[test]
    fn answers_nodata_nxdomain_and_empty_non_terminals() {
        let zones = set(vec![example()]);
        let r = |n: &str, t| rcode_and_count(&zones.resolve(&name(n), t, Transport::Udp));
        assert_eq!(
            r("HOST.example.test.", A_CODE),
            (ResponseCode::NoError, 1, 0)
        );
        assert_eq!(
            r("host.example.test", MX_CODE),
            (ResponseCode::NoError, 0, 1)
        );
        assert_eq!(r("a.b.example.test", A_CODE), (ResponseCode::NoError, 0, 1));
        assert_eq!(r("b.example.test", A_CODE), (ResponseCode::NoError, 0, 1));
        assert_eq!(
            r("nope.example.test", A_CODE),
            (ResponseCode::NXDomain, 0, 1)
        );
        assert_eq!(r("example.test", SOA_CODE), (ResponseCode::NoError, 1, 0));
        assert_eq!(r("example.test", TXT_CODE), (ResponseCode::NoError, 0, 1));
        assert!(matches!(
            zones.resolve(&name("example.org"), A_CODE, Transport::Udp),
            Resolution::NotAuthoritative
        ));
    }

    #[test]
    fn cname_chase_stops_on_loops_and_foreign_targets() {
        let zones = set(vec![example()]);
        let r = |n: &str| rcode_and_count(&zones.resolve(&name(n), A_CODE, Transport::Udp));
        assert_eq!(r("alias.example.test"), (ResponseCode::NoError, 2, 0));
        assert_eq!(r("loop1.example.test"), (ResponseCode::NoError, 2, 0));
        assert_eq!(r("dangling.example.test"), (ResponseCode::NXDomain, 1, 1));
        assert_eq!(r("away.example.test"), (ResponseCode::NoError, 1, 0));
        let cname_query = zones.resolve(&name("alias.example.test"), CNAME_CODE, Transport::Udp);
        assert_eq!(rcode_and_count(&cname_query), (ResponseCode::NoError, 1, 0));
    }

    #[test]
    fn most_specific_zone_wins() {
        let child = Zone::new("sub.example.test").with_record(Record::a(
            "sub.example.test",
            Ipv4Addr::new(198, 51, 100, 7),
        ));
        let zones = set(vec![example(), child]);
        match zones.resolve(&name("sub.example.test"), A_CODE, Transport::Udp) {
            Resolution::Data { answers, .. } => {
                assert_eq!(answers[0].data, RData::A(A(Ipv4Addr::new(198, 51, 100, 7))));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn fault_precedence_and_truncate_over_tcp() {
        let zone = example()
            .with_fault(FaultRule::all("host.example.test", Fault::ServFail))
            .with_fault(FaultRule::for_qtype(
                "host.example.test",
                QType::Mx,
                Fault::Refused,
            ))
            .with_fault(FaultRule::all("alias.example.test", Fault::Truncate));
        let zones = set(vec![zone]);
        let host = name("host.example.test");
        assert!(matches!(
            zones.resolve(&host, MX_CODE, Transport::Udp),
            Resolution::Fault(Fault::Refused)
        ));
        assert!(matches!(
            zones.resolve(&host, A_CODE, Transport::Tcp),
            Resolution::Fault(Fault::ServFail)
        ));
        let alias = name("alias.example.test");
        assert!(matches!(
            zones.resolve(&alias, A_CODE, Transport::Udp),
            Resolution::Fault(Fault::Truncate)
        ));
        assert!(matches!(
            zones.resolve(&alias, A_CODE, Transport::Tcp),
            Resolution::Data {
                fault: Some(Fault::Truncate),
                ..
            }
        ));
    }

    #[test]
    fn compile_rejects_bad_zones() {
        let out_of_zone = Zone::new("example.test")
            .with_record(Record::a("host.example.org", Ipv4Addr::LOCALHOST));
        assert!(matches!(
            CompiledZone::compile(&out_of_zone),
            Err(DnsError::OutOfZone { .. })
        ));
        let lookalike = Zone::new("example.test")
            .with_record(Record::a("badexample.test", Ipv4Addr::LOCALHOST));
        assert!(CompiledZone::compile(&lookalike).is_err());
        let conflict = Zone::new("example.test")
            .with_record(Record::cname("x.example.test", "y.example.test"))
            .with_record(Record::txt("x.example.test", "hi"));
        assert!(matches!(
            CompiledZone::compile(&conflict),
            Err(DnsError::CnameConflict(_))
        ));
        let apex_cname =
            Zone::new("example.test").with_record(Record::cname("example.test", "other.test"));
        assert!(CompiledZone::compile(&apex_cname).is_err());
        let bad_target =
            Zone::new("example.test").with_record(Record::mx("example.test", 10, "a..b"));
        assert!(matches!(
            CompiledZone::compile(&bad_target),
            Err(DnsError::InvalidName { .. })
        ));
        let huge_txt = Zone::new("example.test")
            .with_record(Record::txt("example.test", "x".repeat(MAX_TXT_LEN + 1)));
        assert!(matches!(
            CompiledZone::compile(&huge_txt),
            Err(DnsError::InvalidRecord { .. })
        ));
        let bad_fault =
            Zone::new("example.test").with_fault(FaultRule::all("example.org", Fault::ServFail));
        assert!(CompiledZone::compile(&bad_fault).is_err());
    }

    #[test]
    fn duplicate_origins_are_rejected_case_insensitively() {
        let mut zones = set(vec![example()]);
        let again = CompiledZone::compile(&Zone::new("EXAMPLE.test.")).expect("valid");
        assert!(matches!(
            zones.insert(again),
            Err(DnsError::DuplicateZone(_))
        ));
        assert_eq!(zones.origins(), vec!["example.test".to_owned()]);
        assert!(zones.remove(&name("Example.Test")));
        assert!(zones.origins().is_empty());
    }

    #[test]
    fn txt_is_split_into_character_strings() {
        let text = "v".repeat(600);
        let zones = set(vec![
            Zone::new("example.test").with_record(Record::txt("example.test", text.clone()))
        ]);
        match zones.resolve(&name("example.test"), TXT_CODE, Transport::Udp) {
            Resolution::Data { answers, .. } => match &answers[0].data {
                RData::TXT(txt) => {
                    let parts: Vec<usize> = txt.txt_data.iter().map(|p| p.len()).collect();
                    assert_eq!(parts, vec![255, 255, 90]);
                }
                other => panic!("unexpected {other:?}"),
            },
            other => panic!("unexpected {other:?}"),
        }
    }
}
