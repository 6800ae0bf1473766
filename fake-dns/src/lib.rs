//! fake-dns: a scriptable authoritative DNS server for the mtaspec test lab.

mod error;
mod names;
mod zone;

pub use error::DnsError;
pub use zone::{Fault, FaultRule, QType, Record, RecordData, Zone, DEFAULT_TTL};
