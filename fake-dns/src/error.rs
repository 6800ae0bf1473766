//! Error type shared by zone validation and server start-up.

use std::io;
use std::net::SocketAddr;

/// Everything that can go wrong when starting the server or loading zone data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DnsError {
    /// A socket could not be bound.
    #[error("cannot bind {transport} socket on {addr}: {source}")]
    Bind {
        /// `"udp"` or `"tcp"`.
        transport: &'static str,
        /// The address that was asked for.
        addr: SocketAddr,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
    /// Any other socket-level failure during start-up.
    #[error("socket error: {0}")]
    Io(#[from] io::Error),
    /// A domain name does not parse or breaks DNS length limits.
    #[error("invalid domain name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A record owner or fault name lies outside the zone origin.
    #[error("name {name:?} is outside zone {origin:?}")]
    OutOfZone {
        /// The offending name.
        name: String,
        /// The zone origin.
        origin: String,
    },
    /// A zone with the same origin is already loaded.
    #[error("zone {0:?} is already loaded")]
    DuplicateZone(String),
    /// A CNAME shares its owner name with other data, or sits at the origin.
    #[error("cname at {0:?} conflicts with other data at that name")]
    CnameConflict(String),
    /// Record data that cannot be served (for example an oversized TXT string).
    #[error("invalid record at {name:?}: {reason}")]
    InvalidRecord {
        /// The record owner name.
        name: String,
        /// Why it was rejected.
        reason: String,
    },
}
