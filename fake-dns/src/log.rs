//! Query log: a bounded in-memory record of every query plus a live broadcast feed.

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use hickory_proto::rr::Name;
use tokio::sync::broadcast;

use crate::names;
use crate::zone::Fault;

/// Oldest entries are discarded beyond this many.
pub const LOG_CAPACITY: usize = 100_000;
/// Events a slow subscriber may fall behind before it sees `Lagged`.
const BROADCAST_CAPACITY: usize = 4096;

/// How a query reached the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// A UDP datagram.
    Udp,
    /// A length-prefixed message on a TCP connection.
    Tcp,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
        })
    }
}

/// What the server did with a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// NOERROR with `count` answer records (CNAME chain included).
    Answered {
        /// Records in the answer section.
        count: usize,
    },
    /// NOERROR, no records of that type (SOA in authority).
    NoData,
    /// NXDOMAIN.
    NxDomain,
    /// SERVFAIL.
    ServFail,
    /// REFUSED: outside every zone, unsupported class, or an injected fault.
    Refused,
    /// Nothing was sent (the `Timeout` fault).
    Dropped,
    /// A UDP answer with the TC bit set and no records.
    Truncated,
    /// A decoded message that is not a usable single-question query:
    /// answered FORMERR, or dropped when oversized. Messages hickory-server
    /// rejects before decoding them never reach the log.
    Malformed,
    /// An opcode other than QUERY: answered NOTIMP.
    NotImplemented,
}

/// One query as seen by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryLogEntry {
    /// Wall-clock arrival time.
    pub at: SystemTime,
    /// Arrival time relative to server start.
    pub elapsed: Duration,
    /// UDP or TCP.
    pub transport: Transport,
    /// Client address.
    pub peer: SocketAddr,
    /// Query name, lowercase, without trailing dot (`"."` for the root,
    /// empty for malformed messages).
    pub name: String,
    /// Query type mnemonic such as `"MX"` (empty for malformed messages).
    pub qtype: String,
    /// What was done.
    pub outcome: Outcome,
    /// The injected fault that decided the outcome, if any.
    pub fault: Option<Fault>,
}

impl QueryLogEntry {
    /// True when the query name is `suffix` or lies below it.
    pub fn is_at_or_below(&self, suffix: &Name) -> bool {
        !self.name.is_empty() && names::display_is_at_or_below(&self.name, suffix)
    }
}

/// Shared log storage. Cheap to append to from the network tasks.
pub(crate) struct QueryLog {
    start: Instant,
    entries: Mutex<VecDeque<QueryLogEntry>>,
    tx: broadcast::Sender<QueryLogEntry>,
}

/// The parts of an entry the network layer knows.
pub(crate) struct Event {
    pub transport: Transport,
    pub peer: SocketAddr,
    pub name: String,
    pub qtype: String,
    pub outcome: Outcome,
    pub fault: Option<Fault>,
}

impl QueryLog {
    pub(crate) fn new() -> Self {
        let (tx, _) = broadcast::channel(BROADCAST_CAPACITY);
        Self {
            start: Instant::now(),
            entries: Mutex::new(VecDeque::new()),
            tx,
        }
    }

    pub(crate) fn record(&self, event: Event) -> QueryLogEntry {
        let entry = QueryLogEntry {
            at: SystemTime::now(),
            elapsed: self.start.elapsed(),
            transport: event.transport,
            peer: event.peer,
            name: event.name,
            qtype: event.qtype,
            outcome: event.outcome,
            fault: event.fault,
        };
        {
            let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            if entries.len() >= LOG_CAPACITY {
                entries.pop_front();
            }
            entries.push_back(entry.clone());
        }
        // No subscribers is fine.
        let _ = self.tx.send(entry.clone());
        entry
    }

    pub(crate) fn snapshot(&self) -> Vec<QueryLogEntry> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.iter().cloned().collect()
    }

    pub(crate) fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<QueryLogEntry> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str) -> Event {
        Event {
            transport: Transport::Udp,
            peer: SocketAddr::from(([127, 0, 0, 1], 5353)),
            name: name.into(),
            qtype: "A".into(),
            outcome: Outcome::NoData,
            fault: None,
        }
    }

    #[test]
    fn records_snapshots_and_broadcasts() {
        let log = QueryLog::new();
        let mut rx = log.subscribe();
        let first = log.record(event("a.example.test"));
        let second = log.record(event("b.example.test"));
        assert!(second.elapsed >= first.elapsed);
        assert_eq!(log.snapshot(), vec![first.clone(), second]);
        assert_eq!(rx.try_recv().ok(), Some(first));
        log.clear();
        assert!(log.snapshot().is_empty());
    }

    #[test]
    fn suffix_match_is_label_wise() {
        let log = QueryLog::new();
        let below = log.record(event("mx.example.test"));
        let lookalike = log.record(event("badexample.test"));
        let escaped = log.record(event("a\\.example.test"));
        let malformed = log.record(event(""));
        let suffix = names::parse("Example.Test.").expect("valid");
        assert!(below.is_at_or_below(&suffix));
        assert!(!lookalike.is_at_or_below(&suffix));
        assert!(!escaped.is_at_or_below(&suffix));
        assert!(!malformed.is_at_or_below(&suffix));
    }
}
