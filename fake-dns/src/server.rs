//! Network side: hickory-server's UDP and TCP transports on one address, and the control handle.

use std::net::SocketAddr;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use hickory_server::Server;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::error::DnsError;
use crate::handler::{FakeDnsHandler, Shared};
use crate::log::QueryLogEntry;
use crate::names;
use crate::store::CompiledZone;
use crate::zone::Zone;

/// A TCP connection that completes no message for this long is closed
/// (hickory-server's per-connection request timeout).
pub const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a TCP connection hit by the `Timeout` fault stays silent: the
/// request is held this long without an answer, and hickory-server reads no
/// further message from that connection meanwhile.
pub const TIMEOUT_FAULT_HOLD: Duration = Duration::from_secs(30);
/// Responses hickory-server may queue per TCP connection.
const TCP_RESPONSE_BUFFER: usize = 32;
/// Attempts to find a port free for both UDP and TCP when binding port 0.
const BIND_ATTEMPTS: usize = 16;

/// Entry point: starts a server. See [`DnsHandle`] for controlling it.
#[derive(Debug, Clone, Copy, Default)]
pub struct FakeDns;

impl FakeDns {
    /// Binds UDP and TCP on `udp_and_tcp_addr` and starts serving with no
    /// zones loaded (every query is REFUSED until zones are added).
    ///
    /// With port 0 an ephemeral port that is free for both protocols is
    /// chosen; [`DnsHandle::local_addr`] reports it. Must be called inside a
    /// Tokio runtime.
    pub async fn start(udp_and_tcp_addr: SocketAddr) -> Result<DnsHandle, DnsError> {
        let (udp, tcp) = bind_pair(udp_and_tcp_addr).await?;
        let local_addr = udp.local_addr()?;
        let shared = Arc::new(Shared::new());
        let mut server = Server::new(FakeDnsHandler::new(Arc::clone(&shared)));
        server.register_socket(udp);
        server.register_listener(tcp, TCP_IDLE_TIMEOUT, TCP_RESPONSE_BUFFER);
        Ok(DnsHandle {
            shared,
            local_addr,
            server: Some(server),
        })
    }
}

/// Controls a running server. Dropping it stops the server; so does
/// [`DnsHandle::shutdown`], which also waits for the listeners to close.
pub struct DnsHandle {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    /// `None` only once [`DnsHandle::shutdown`] has taken it.
    server: Option<Server<FakeDnsHandler>>,
}

impl std::fmt::Debug for DnsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsHandle")
            .field("local_addr", &self.local_addr)
            .field("zones", &self.zones())
            .finish_non_exhaustive()
    }
}

impl DnsHandle {
    /// The address both listeners are bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Validates and loads a zone; it is served from the next query on.
    ///
    /// Fails on invalid names, records or faults outside the origin, CNAME
    /// conflicts, and when a zone with the same origin is already loaded.
    pub fn add_zone(&self, zone: Zone) -> Result<(), DnsError> {
        let compiled = CompiledZone::compile(&zone)?;
        self.shared
            .zones
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(compiled)
    }

    /// Unloads the zone with this origin. Returns whether one was loaded.
    pub fn remove_zone(&self, origin: &str) -> bool {
        let Ok(origin) = names::parse(origin) else {
            return false;
        };
        self.shared
            .zones
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&origin)
    }

    /// Origins of the loaded zones, sorted, in log form.
    pub fn zones(&self) -> Vec<String> {
        self.shared
            .zones
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .origins()
    }

    /// Snapshot of the query log, oldest first.
    pub fn queries(&self) -> Vec<QueryLogEntry> {
        self.shared.log.snapshot()
    }

    /// Log entries whose query name is `origin_or_suffix` or lies below it
    /// (label-wise, case-insensitive). Empty when the suffix is not a valid
    /// name.
    pub fn queries_for(&self, origin_or_suffix: &str) -> Vec<QueryLogEntry> {
        let Ok(suffix) = names::parse(origin_or_suffix) else {
            return Vec::new();
        };
        self.shared
            .log
            .snapshot()
            .into_iter()
            .filter(|entry| entry.is_at_or_below(&suffix))
            .collect()
    }

    /// Empties the query log (subscribers are unaffected).
    pub fn clear_queries(&self) {
        self.shared.log.clear();
    }

    /// Live feed of log entries from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<QueryLogEntry> {
        self.shared.log.subscribe()
    }

    /// The first entry matching `pred`, looking at the log first and then at
    /// live events until `within` has passed. Race-free: an entry logged
    /// between the call and the subscription is still found.
    pub async fn wait_for_query<F>(&self, within: Duration, pred: F) -> Option<QueryLogEntry>
    where
        F: Fn(&QueryLogEntry) -> bool,
    {
        let deadline = Instant::now() + within;
        let mut rx = self.subscribe();
        let from_log = || self.queries().into_iter().find(|e| pred(e));
        if let Some(entry) = from_log() {
            return Some(entry);
        }
        loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Err(_) | Ok(Err(broadcast::error::RecvError::Closed)) => return None,
                Ok(Ok(entry)) if pred(&entry) => return Some(entry),
                Ok(Ok(_)) => {}
                Ok(Err(broadcast::error::RecvError::Lagged(_))) => {
                    if let Some(entry) = from_log() {
                        return Some(entry);
                    }
                }
            }
        }
    }

    /// Stops both listeners and every open connection, and waits until the
    /// listening sockets are closed.
    pub async fn shutdown(mut self) {
        if let Some(mut server) = self.server.take() {
            // An error only reports a transport task that had already
            // failed; every task has ended either way.
            let _ = server.shutdown_gracefully().await;
        }
    }
}

impl Drop for DnsHandle {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            // Cancelling tells the transport tasks to stop; dropping the
            // server aborts whatever is still running.
            server.shutdown_token().cancel();
        }
    }
}

/// Binds UDP first, then TCP on the port UDP got.
async fn bind_pair(addr: SocketAddr) -> Result<(UdpSocket, TcpListener), DnsError> {
    let attempts = if addr.port() == 0 { BIND_ATTEMPTS } else { 1 };
    let mut last_error = None;
    for _ in 0..attempts {
        let udp = UdpSocket::bind(addr)
            .await
            .map_err(|source| DnsError::Bind {
                transport: "udp",
                addr,
                source,
            })?;
        let bound = udp.local_addr()?;
        match TcpListener::bind(bound).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(source) => {
                last_error = Some(DnsError::Bind {
                    transport: "tcp",
                    addr: bound,
                    source,
                });
            }
        }
    }
    Err(last_error
        .unwrap_or_else(|| DnsError::Io(std::io::Error::other("no bind attempt was made"))))
}
