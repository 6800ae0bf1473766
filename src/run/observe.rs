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
    /// The target's queue, read once when the scenario ends (if it asks).
    pub queue: Option<Result<Vec<crate::target::Queued>, String>>,
    /// What the harness had to cut or could not do (a limit reached, a
    /// failing `accept`): said with every verdict of the scenario.
    pub harness: Vec<String>,
    /// Observations lost (an observer fell behind, a limit dropped them):
    /// the verdicts cannot be trusted, so the scenario is a harness error.
    pub lost: Vec<String>,
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
    /// Commands (other than QUIT) the target sent after this host refused
    /// the session in its greeting.
    pub after_refusal: Vec<String>,
}

impl Session {
    /// A session the target opened to `host` (attempt `attempt`) at `at`,
    /// with nothing said yet.
    pub fn opened(host: &str, attempt: usize, at: Duration) -> Self {
        Session {
            host: host.to_string(),
            attempt,
            at,
            transcript: Vec::new(),
            deliveries: Vec::new(),
            closed: false,
            after_refusal: Vec::new(),
        }
    }
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

/// What one scenario keeps at most, so that a hostile or broken target
/// cannot make the harness eat memory. Each limit is far above what any
/// scenario needs; reaching one is reported with the scenario's verdicts.
pub mod limits {
    /// Sessions the fake hosts of one scenario serve; later connections are
    /// closed at once (and the scenario becomes a harness error).
    pub const SESSIONS: usize = 1000;
    /// Transcript lines kept per session (later lines are not kept).
    pub const TRANSCRIPT_LINES: usize = 2000;
    /// Commands a fake host answers in one session; then `421` and close.
    pub const COMMANDS: usize = 1000;
    /// Messages the fake hosts of one scenario keep.
    pub const MESSAGES: usize = 200;
    /// Octets of message data the fake hosts of one scenario keep.
    pub const MESSAGE_OCTETS: usize = 64 * 1024 * 1024;
    /// Connection attempts (SYNs) and DNS queries kept per scenario.
    pub const EVENTS: usize = 10_000;
    /// Distinct harness notes kept per scenario.
    pub const NOTES: usize = 32;
}

impl Observations {
    /// Note something the harness had to cut or could not do (once per text).
    pub fn note(&mut self, text: impl Into<String>) {
        let text = text.into();
        if self.harness.len() < limits::NOTES && !self.harness.contains(&text) {
            self.harness.push(text);
        }
    }

    /// Note that observations were lost (once per text); see [`Observations::lost`].
    pub fn lose(&mut self, text: impl Into<String>) {
        let text = text.into();
        if self.lost.len() < limits::NOTES && !self.lost.contains(&text) {
            self.lost.push(text);
        }
    }

    /// Record a connection attempt, within [`limits::EVENTS`].
    pub fn connect(&mut self, c: ConnectSeen) {
        if self.connects.len() < limits::EVENTS {
            self.connects.push(c);
        } else {
            self.lose(format!(
                "more than {} connection attempts: later ones were not kept",
                limits::EVENTS
            ));
        }
    }

    /// Record a DNS query, within [`limits::EVENTS`].
    pub fn query(&mut self, q: DnsQuery) {
        if self.dns.len() < limits::EVENTS {
            self.dns.push(q);
        } else {
            self.lose(format!(
                "more than {} DNS queries: later ones were not kept",
                limits::EVENTS
            ));
        }
    }
}
