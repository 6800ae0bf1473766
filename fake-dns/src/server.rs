//! Network side: UDP and TCP listeners on one address, and the control handle.

use std::net::SocketAddr;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{broadcast, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{timeout, Instant};

use crate::error::DnsError;
use crate::handler::{Reply, Shared, HEADER_LEN, MAX_QUERY_LEN};
use crate::log::{QueryLogEntry, Transport};
use crate::names;
use crate::store::CompiledZone;
use crate::zone::Zone;

/// Concurrent TCP connections; further ones are closed on accept.
pub const MAX_TCP_CONNECTIONS: usize = 256;
/// A TCP connection idle for this long (between or inside messages) is closed.
pub const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a TCP connection hit by the `Timeout` fault is held open at most.
pub const TIMEOUT_FAULT_HOLD: Duration = Duration::from_secs(30);
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
        let tasks = vec![
            tokio::spawn(serve_udp(udp, Arc::clone(&shared))),
            tokio::spawn(serve_tcp(tcp, Arc::clone(&shared))),
        ];
        Ok(DnsHandle {
            shared,
            local_addr,
            tasks,
        })
    }
}

/// Controls a running server. Dropping it stops the server; so does
/// [`DnsHandle::shutdown`], which also waits for the listeners to close.
pub struct DnsHandle {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
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
        for task in std::mem::take(&mut self.tasks) {
            task.abort();
            // The only possible error is the cancellation just requested.
            let _ = task.await;
        }
    }
}

impl Drop for DnsHandle {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
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

async fn serve_udp(socket: UdpSocket, shared: Arc<Shared>) {
    // Large enough for any datagram, so oversized ones are seen whole and
    // rejected rather than silently cut.
    let mut buf = vec![0u8; 65_536];
    loop {
        let (len, peer) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(_) => {
                // ICMP errors from earlier sends surface here; back off a
                // little so a persistent error cannot spin the task.
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
        };
        let Some(datagram) = buf.get(..len) else {
            continue;
        };
        if let Reply::Send(bytes) = shared.handle(datagram, Transport::Udp, peer) {
            // A client that went away is not our problem.
            let _ = socket.send_to(&bytes, peer).await;
        }
    }
}

async fn serve_tcp(listener: TcpListener, shared: Arc<Shared>) {
    let slots = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
    // Dropping the set (when this task is aborted) aborts every connection.
    let mut connections = JoinSet::new();
    loop {
        let accepted = listener.accept().await;
        while connections.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(_) => {
                // Typically EMFILE; wait for descriptors to free up.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let shared = Arc::clone(&shared);
        connections.spawn(async move {
            serve_connection(stream, peer, &shared).await;
            drop(slot);
        });
    }
}

/// Serves length-prefixed messages until the peer closes, idles out, or
/// sends something unframeable.
async fn serve_connection(mut stream: TcpStream, peer: SocketAddr, shared: &Shared) {
    loop {
        let mut prefix = [0u8; 2];
        if !matches!(
            timeout(TCP_IDLE_TIMEOUT, stream.read_exact(&mut prefix)).await,
            Ok(Ok(_))
        ) {
            return;
        }
        let len = usize::from(u16::from_be_bytes(prefix));
        if !(HEADER_LEN..=MAX_QUERY_LEN).contains(&len) {
            shared.note_malformed(Transport::Tcp, peer);
            return;
        }
        let mut body = vec![0u8; len];
        if !matches!(
            timeout(TCP_IDLE_TIMEOUT, stream.read_exact(&mut body)).await,
            Ok(Ok(_))
        ) {
            return;
        }
        match shared.handle(&body, Transport::Tcp, peer) {
            Reply::Send(bytes) => {
                let Ok(len) = u16::try_from(bytes.len()) else {
                    return;
                };
                let mut framed = Vec::with_capacity(bytes.len() + 2);
                framed.extend_from_slice(&len.to_be_bytes());
                framed.extend_from_slice(&bytes);
                if !matches!(
                    timeout(TCP_IDLE_TIMEOUT, stream.write_all(&framed)).await,
                    Ok(Ok(()))
                ) {
                    return;
                }
            }
            Reply::Ignore => {}
            Reply::Silent => {
                hold_silently(&mut stream).await;
                return;
            }
        }
    }
}

/// Keeps the connection open without answering, discarding input, until the
/// peer closes it or [`TIMEOUT_FAULT_HOLD`] passes.
async fn hold_silently(stream: &mut TcpStream) {
    let mut sink = [0u8; 512];
    let _ = timeout(TIMEOUT_FAULT_HOLD, async {
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}
