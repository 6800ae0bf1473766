//! fake-dns: a scriptable authoritative DNS server for the mtaspec test lab.

mod error;
mod handler;
mod log;
mod names;
mod store;
mod zone;

pub use error::DnsError;
pub use log::{Outcome, QueryLogEntry, Transport, LOG_CAPACITY};
pub use store::MAX_TXT_LEN;
pub use zone::{Fault, FaultRule, QType, Record, RecordData, Zone, DEFAULT_TTL};
