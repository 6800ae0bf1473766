//! Scenario-facing zone description: records, query types and fault rules.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// TTL given to records built with the convenience constructors.
pub const DEFAULT_TTL: u32 = 300;

/// A query or record type, as far as scenarios need to name one.
///
/// Types without a dedicated variant are expressed as [`QType::Other`] with
/// their numeric code. Two values are equal when their codes are equal, so
/// `QType::Other(15) == QType::Mx`.
#[derive(Debug, Clone, Copy, Eq)]
pub enum QType {
    /// IPv4 address (1).
    A,
    /// Authoritative name server (2).
    Ns,
    /// Canonical name (5).
    Cname,
    /// Start of authority (6).
    Soa,
    /// Domain name pointer (12).
    Ptr,
    /// Mail exchange (15).
    Mx,
    /// Text strings (16).
    Txt,
    /// IPv6 address (28).
    Aaaa,
    /// Any type (255).
    Any,
    /// Any other type, by numeric code.
    Other(u16),
}

impl QType {
    /// The numeric RR type code.
    pub fn code(self) -> u16 {
        match self {
            Self::A => 1,
            Self::Ns => 2,
            Self::Cname => 5,
            Self::Soa => 6,
            Self::Ptr => 12,
            Self::Mx => 15,
            Self::Txt => 16,
            Self::Aaaa => 28,
            Self::Any => 255,
            Self::Other(code) => code,
        }
    }
}

impl From<u16> for QType {
    fn from(code: u16) -> Self {
        match code {
            1 => Self::A,
            2 => Self::Ns,
            5 => Self::Cname,
            6 => Self::Soa,
            12 => Self::Ptr,
            15 => Self::Mx,
            16 => Self::Txt,
            28 => Self::Aaaa,
            255 => Self::Any,
            other => Self::Other(other),
        }
    }
}

impl PartialEq for QType {
    fn eq(&self, other: &Self) -> bool {
        self.code() == other.code()
    }
}

impl std::hash::Hash for QType {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.code().hash(state);
    }
}

impl fmt::Display for QType {
    /// Mnemonic for the named variants, `TYPE<n>` (RFC 3597) otherwise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match QType::from(self.code()) {
            Self::A => f.write_str("A"),
            Self::Ns => f.write_str("NS"),
            Self::Cname => f.write_str("CNAME"),
            Self::Soa => f.write_str("SOA"),
            Self::Ptr => f.write_str("PTR"),
            Self::Mx => f.write_str("MX"),
            Self::Txt => f.write_str("TXT"),
            Self::Aaaa => f.write_str("AAAA"),
            Self::Any => f.write_str("ANY"),
            Self::Other(code) => write!(f, "TYPE{code}"),
        }
    }
}

/// The data part of a resource record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordData {
    /// IPv4 address.
    A(Ipv4Addr),
    /// IPv6 address.
    Aaaa(Ipv6Addr),
    /// Mail exchange. An `exchange` of `"."` is the RFC 7505 null MX and is
    /// sent as the root name.
    Mx {
        /// Lower is preferred.
        preference: u16,
        /// Host name of the exchange, or `"."`.
        exchange: String,
    },
    /// Alias to another name.
    Cname(String),
    /// A text record; split into 255-byte character strings on the wire.
    Txt(String),
    /// Reverse-mapping pointer.
    Ptr(String),
}

impl RecordData {
    /// The RR type this data is served under.
    pub fn qtype(&self) -> QType {
        match self {
            Self::A(_) => QType::A,
            Self::Aaaa(_) => QType::Aaaa,
            Self::Mx { .. } => QType::Mx,
            Self::Cname(_) => QType::Cname,
            Self::Txt(_) => QType::Txt,
            Self::Ptr(_) => QType::Ptr,
        }
    }
}

/// One resource record. `name` is an absolute domain name, with or without
/// the trailing dot, compared case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Owner name; must be at or below the zone origin.
    pub name: String,
    /// Time to live in seconds.
    pub ttl: u32,
    /// Type-specific data.
    pub data: RecordData,
}

impl Record {
    /// A record with [`DEFAULT_TTL`].
    pub fn new(name: impl Into<String>, data: RecordData) -> Self {
        Self {
            name: name.into(),
            ttl: DEFAULT_TTL,
            data,
        }
    }

    /// The same record with another TTL.
    pub fn with_ttl(mut self, ttl: u32) -> Self {
        self.ttl = ttl;
        self
    }

    /// An `A` record.
    pub fn a(name: impl Into<String>, addr: Ipv4Addr) -> Self {
        Self::new(name, RecordData::A(addr))
    }

    /// An `AAAA` record.
    pub fn aaaa(name: impl Into<String>, addr: Ipv6Addr) -> Self {
        Self::new(name, RecordData::Aaaa(addr))
    }

    /// An `MX` record.
    pub fn mx(name: impl Into<String>, preference: u16, exchange: impl Into<String>) -> Self {
        Self::new(
            name,
            RecordData::Mx {
                preference,
                exchange: exchange.into(),
            },
        )
    }

    /// The RFC 7505 null MX: `MX 0 .`.
    pub fn null_mx(name: impl Into<String>) -> Self {
        Self::mx(name, 0, ".")
    }

    /// A `CNAME` record.
    pub fn cname(name: impl Into<String>, target: impl Into<String>) -> Self {
        Self::new(name, RecordData::Cname(target.into()))
    }

    /// A `TXT` record.
    pub fn txt(name: impl Into<String>, text: impl Into<String>) -> Self {
        Self::new(name, RecordData::Txt(text.into()))
    }

    /// A `PTR` record.
    pub fn ptr(name: impl Into<String>, target: impl Into<String>) -> Self {
        Self::new(name, RecordData::Ptr(target.into()))
    }
}

/// A misbehaviour injected for one name, before any data lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// Answer NXDOMAIN even if data exists.
    NxDomain,
    /// Answer SERVFAIL.
    ServFail,
    /// Never answer. On TCP the connection is held open silently until the
    /// client closes it or a server-side cap expires.
    Timeout,
    /// Answer REFUSED.
    Refused,
    /// Over UDP answer with the TC bit and no records; over TCP answer
    /// normally.
    Truncate,
}

/// Applies a [`Fault`] to queries for exactly `name` (not its descendants),
/// either for every query type or only for `qtype`.
///
/// When several rules match a query, a rule naming the query type wins over
/// a rule for all types; among equals the first listed wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultRule {
    /// The query name the rule applies to; at or below the zone origin.
    pub name: String,
    /// `None` for every query type, `Some(t)` for queries of type `t` only.
    pub qtype: Option<QType>,
    /// What to do.
    pub fault: Fault,
}

impl FaultRule {
    /// A fault for every query type at `name`.
    pub fn all(name: impl Into<String>, fault: Fault) -> Self {
        Self {
            name: name.into(),
            qtype: None,
            fault,
        }
    }

    /// A fault for queries of `qtype` at `name` only.
    pub fn for_qtype(name: impl Into<String>, qtype: QType, fault: Fault) -> Self {
        Self {
            name: name.into(),
            qtype: Some(qtype),
            fault,
        }
    }
}

/// An authoritative zone: the origin, its records and its fault rules.
///
/// The server synthesizes the SOA record for the origin. Names are taken
/// literally: there is no wildcard (`*`) expansion.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Zone {
    /// Zone apex, e.g. `"example.test"`.
    pub origin: String,
    /// Records at or below the origin.
    pub records: Vec<Record>,
    /// Injected faults.
    pub faults: Vec<FaultRule>,
}

impl Zone {
    /// An empty zone.
    pub fn new(origin: impl Into<String>) -> Self {
        Self {
            origin: origin.into(),
            records: Vec::new(),
            faults: Vec::new(),
        }
    }

    /// Adds a record.
    pub fn with_record(mut self, record: Record) -> Self {
        self.records.push(record);
        self
    }

    /// Adds a fault rule.
    pub fn with_fault(mut self, rule: FaultRule) -> Self {
        self.faults.push(rule);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qtype_round_trips_codes_and_mnemonics() {
        for code in [1u16, 2, 5, 6, 12, 15, 16, 28, 255, 99] {
            assert_eq!(QType::from(code).code(), code);
        }
        assert_eq!(QType::Other(15), QType::Mx);
        assert_eq!(QType::Mx.to_string(), "MX");
        assert_eq!(QType::Other(28).to_string(), "AAAA");
        assert_eq!(QType::Other(65000).to_string(), "TYPE65000");
    }

    #[test]
    fn constructors_fill_defaults() {
        let r = Record::null_mx("example.test").with_ttl(60);
        assert_eq!(r.ttl, 60);
        assert_eq!(
            r.data,
            RecordData::Mx {
                preference: 0,
                exchange: ".".into()
            }
        );
        assert_eq!(r.data.qtype(), QType::Mx);
        assert_eq!(Record::a("a.test", Ipv4Addr::LOCALHOST).ttl, DEFAULT_TTL);
        let z = Zone::new("example.test")
            .with_record(Record::txt("example.test", "v=spf1 -all"))
            .with_fault(FaultRule::for_qtype(
                "example.test",
                QType::Mx,
                Fault::ServFail,
            ));
        assert_eq!(z.records.len(), 1);
        assert_eq!(z.faults[0].qtype, Some(QType::Mx));
    }
}
