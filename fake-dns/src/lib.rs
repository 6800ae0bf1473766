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
//! The transports are [hickory-server]'s `Server`: its UDP and TCP loops
//! decode each message and hand every request to this crate's request
//! handler, which resolves it, applies faults, logs it and sends the
//! response.
//!
//! The server is authoritative only: it never recurses, answers REFUSED
//! outside its zones, synthesizes an SOA per origin for negative answers,
//! chases CNAMEs through its own data, and serves `MX 0 .` (RFC 7505) as the
//! root name. UDP answers larger than the client's EDNS size (512 bytes
//! without EDNS, at most the 1232 bytes the server advertises) go out empty
//! with the TC bit set.
//!
//! # Faults over UDP and TCP
//!
//! [`Fault::Timeout`] never answers. On UDP the datagram just goes
//! unanswered. On TCP the request is held for [`TIMEOUT_FAULT_HOLD`];
//! hickory-server reads a connection's messages one after the other, so the
//! connection stays open and silent that long. After the hold, messages the
//! client sent meanwhile are answered, and a connection with nothing pending
//! is closed at once, its [`TCP_IDLE_TIMEOUT`] having passed. Shutting the
//! server down closes held connections immediately. [`Fault::Truncate`]
//! answers UDP with the TC bit and no records, and TCP normally.
//!
//! # Malformed input
//!
//! Nothing a peer sends can panic or stop the server, but part of the
//! filtering happens inside hickory-server, before the handler and so before
//! the query log:
//!
//! * messages shorter than a DNS header are dropped without a trace (over
//!   TCP the connection stays open);
//! * messages whose header reads but whose body does not decode are answered
//!   FORMERR by hickory-server, unlogged;
//! * DNS responses sent to the server are dropped, unlogged;
//! * UDP datagrams longer than 4096 bytes are cut to that size by
//!   hickory-server.
//!
//! What reaches the handler is logged: a datagram that fills the 4096-byte
//! receive buffer (possibly cut) or a TCP message over 4096 bytes is dropped
//! as [`Outcome::Malformed`]; a query without exactly one question or with
//! more than eight records in a section gets FORMERR, also
//! [`Outcome::Malformed`]; an opcode other than QUERY gets NOTIMP,
//! [`Outcome::NotImplemented`].
//!
//! [hickory-server]: https://docs.rs/hickory-server
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
pub use server::{DnsHandle, FakeDns, TCP_IDLE_TIMEOUT, TIMEOUT_FAULT_HOLD};
pub use store::MAX_TXT_LEN;
pub use zone::{Fault, FaultRule, QType, Record, RecordData, Zone, DEFAULT_TTL};
