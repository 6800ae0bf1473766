//! Observe stage: what the lab saw during a scenario, recorded as it happens.

use serde::Serialize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::Notify;

/// Everything observed in one scenario; times are since the scenario began.
#[derive(Debug, Default, Serialize)]
pub struct Observations {
    /// TCP connection attempts to the scenario's hosts (refused ones included).
    pub connects: Vec<ConnectSeen>,
    /// Sessions the fake hosts served.
    pub sessions: Vec<Session>,
    /// What the client saw while injecting each message.
    pub injections: Vec<Injection>,
    /// DNS queries for the scenario's names.
    pub dns: Vec<DnsQuery>,
    /// What the raw client saw in each `[[session]]` (inbound suites).
    pub raw_sessions: Vec<RawSession>,
}

/// One raw client session with the target.
#[derive(Debug, Clone, Serialize)]
pub struct RawSession {
    /// 0-based `[[session]]` index.
    pub session: usize,
    /// The client's address and port.
    pub client: String,
    pub at: Duration,
    /// One outcome per script step, in order.
    pub outcomes: Vec<StepOutcome>,
    /// Sent bytes (escaped) and replies, in order.
    pub transcript: Vec<Line>,
    /// Messages sent by `data` / `bdat` steps (scoped), in order.
    #[serde(skip)]
    pub messages: Vec<SentMessage>,
    /// Set when the session could not start (no connection).
    pub error: Option<String>,
}

/// A message the raw client sent.
#[derive(Debug, Clone)]
pub struct SentMessage {
    /// DATA content (dot-stuffed, cut before its `.<CRLF>`); `false` for BDAT chunks.
    pub dot_stuffed: bool,
    pub content: Vec<u8>,
}

/// What happened at one script step.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StepOutcome {
    Sent {
        octets: usize,
    },
    SendFailed {
        error: String,
    },
    Paused,
    Tls {
        error: Option<String>,
    },
    EnhancedMode,
    /// A complete reply, and how long it was waited for.
    Reply {
        code: u16,
        lines: Vec<String>,
        waited: Duration,
    },
    /// Bytes that did not parse as a reply (escaped).
    BadReply {
        error: String,
        bytes: String,
    },
    /// The target closed (or reset) the connection.
    Closed {
        waited: Duration,
    },
    /// Nothing came for the whole wait.
    Silent {
        waited: Duration,
    },
    ReadFailed {
        error: String,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct ConnectSeen {
    pub host: String,
    pub at: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct Session {
    pub host: String,
    /// 0-based connection attempt number at this host.
    pub attempt: usize,
    pub at: Duration,
    pub transcript: Vec<Line>,
    pub deliveries: Vec<Delivery>,
    pub closed: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Line {
    pub at: Duration,
    /// `true` for what the target (as client) sent, `false` for our replies.
    pub from_peer: bool,
    pub text: String,
}

/// A message a host accepted (250 after end of data).
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    pub host: String,
    pub attempt: usize,
    pub at: Duration,
    pub mail_from: String,
    pub mail_params: Vec<String>,
    /// Recipients the host accepted in that transaction.
    pub rcpts: Vec<String>,
    #[serde(skip)]
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Injection {
    pub message: usize,
    pub at: Duration,
    /// `true` when the target answered 250 at end of data.
    pub accepted: bool,
    pub transcript: Vec<Line>,
    /// Set when the client could not talk to the target at all.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DnsQuery {
    pub at: Duration,
    pub name: String,
    pub qtype: String,
    pub outcome: String,
}

/// Shared, append-only recorder; every change wakes the judge.
#[derive(Debug, Clone)]
pub struct Recorder {
    pub start: Instant,
    /// The wall-clock time of `start`, for events stamped with `SystemTime`.
    wall: SystemTime,
    obs: Arc<Mutex<Observations>>,
    changed: Arc<Notify>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            start: Instant::now(),
            wall: SystemTime::now(),
            obs: Arc::default(),
            changed: Arc::default(),
        }
    }
}

impl Recorder {
    pub fn since(&self, t: Instant) -> Duration {
        t.saturating_duration_since(self.start)
    }

    pub fn since_wall(&self, t: SystemTime) -> Duration {
        t.duration_since(self.wall).unwrap_or_default()
    }

    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Change the observations, then wake whoever waits on them.
    pub fn update<R>(&self, f: impl FnOnce(&mut Observations) -> R) -> R {
        let r = f(&mut self.lock());
        self.changed.notify_one();
        r
    }

    pub fn lock(&self) -> MutexGuard<'_, Observations> {
        self.obs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Resolves after the next change (or at once if one came since the last wait).
    pub async fn changed(&self) {
        self.changed.notified().await
    }
}
