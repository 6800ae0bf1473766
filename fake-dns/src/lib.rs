//! fake-dns: a scriptable authoritative DNS server for the mtaspec test lab.
//!
//! [`FakeDns::start`] binds UDP and TCP on one address and returns a
//! [`DnsHandle`]. Scenarios describe their data as a [`Zone`] (an origin,
//! [`Record`]s carrying [`RecordData`], and [`FaultRule`]s that inject a
//! [`Fault`] per name and optionally per [`QType`]) and load or unload zones
//! while the server runs. Every query lands in a log of [`QueryLogEntry`]
//! values, readable as a snapshot or as a live broadcast feed so a runner can
//! wait for events instead of sleeping.
//!
//! The server is authoritative only: it never recurses, answers REFUSED
//! outside its zones, synthesizes an SOA per origin for negative answers,
//! chases CNAMEs through its own data, and serves `MX 0 .` (RFC 7505) as the
//! root name. Malformed or oversized input is logged and dropped or answered
//! with FORMERR; nothing a peer sends can panic the server.
//!
//! ```
//! use std::net::Ipv4Addr;
//! use fake_dns::{FakeDns, Fault, FaultRule, QType, Record, Zone};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), fake_dns::DnsError> {
//! let dns = FakeDns::start("127.0.0.1:0".parse().expect("address")).await?;
//! dns.add_zone(
//!     Zone::new("example.test")
//!         .with_record(Record::mx("example.test", 10, "mx1.example.test"))
//!         .with_record(Record::a("mx1.example.test", Ipv4Addr::new(192, 0, 2, 25)))
//!         .with_fault(FaultRule::for_qtype("slow.example.test", QType::Mx, Fault::Timeout)),
//! )?;
//! assert_eq!(dns.zones(), vec!["example.test".to_owned()]);
//! dns.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod error;
mod handler;
mod log;
mod names;
mod server;
mod store;
mod zone;

pub use error::DnsError;
pub use log::{Outcome, QueryLogEntry, Transport, LOG_CAPACITY};
#[allow(deprecated)]
pub use server::MAX_TCP_CONNECTIONS;
pub use server::{DnsHandle, FakeDns, TCP_IDLE_TIMEOUT, TIMEOUT_FAULT_HOLD};
pub use store::MAX_TXT_LEN;
pub use zone::{Fault, FaultRule, QType, Record, RecordData, Zone, DEFAULT_TTL};
