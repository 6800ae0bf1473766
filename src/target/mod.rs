//! Target stage: the MTA under test behind one interface ([`Mta`] → [`Instance`]), started inside the lab.
//!
//! "Which MTA" is an [`Mta`]: it knows its binaries, its configuration and
//! how the neutral [`knobs`] translate into it. [`Mta::start`] gives a running
//! [`Instance`] on a lab address. The run stage only ever sees these two
//! traits; no MTA's own setting names leave its module.

pub mod chasquid;
pub mod exim;
pub mod knobs;
pub mod opensmtpd;
pub mod postfix;
pub mod runner;
pub mod sendmail;

use knobs::{Knob, Knobs};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Every MTA mtaspec knows, in the order `mtaspec targets` lists them.
pub fn all() -> Vec<&'static dyn Mta> {
    vec![
        &postfix::POSTFIX,
        &exim::EXIM,
        &opensmtpd::OPENSMTPD,
        &sendmail::SENDMAIL,
        &chasquid::CHASQUID,
    ]
}

/// The MTA called `name`, or an error listing the names.
pub fn by_name(name: &str) -> Result<&'static dyn Mta, TargetError> {
    all()
        .into_iter()
        .find(|m| m.name() == name)
        .ok_or_else(|| TargetError::UnknownTarget {
            name: name.to_string(),
            known: all()
                .iter()
                .map(|m| m.name())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Every target name a scenario may write a `[target.NAME]` table for,
/// including MTAs this build does not drive yet.
pub const FUTURE_NAMES: &[&str] = &["postfix", "exim", "opensmtpd", "sendmail", "chasquid"];

/// Names of the targets this build drives.
pub fn names() -> Vec<&'static str> {
    all().iter().map(|m| m.name()).collect()
}

/// Whether an MTA can set a knob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    Yes,
    /// It cannot: why (e.g. "the retry delay is compiled in").
    No(&'static str),
}

/// Which MTA: its knowledge of binaries, configuration and knobs.
pub trait Mta: Sync {
    /// Short name, as in `--target NAME` and `[target.NAME]`.
    fn name(&self) -> &'static str;
    /// The installed version, or [`TargetError::NotInstalled`] naming the fix.
    fn version(&self) -> Result<String, TargetError>;
    /// Whether this MTA can set `knob`.
    fn support(&self, knob: Knob) -> Support;
    /// Write the instance's files and start it; returns once it greets on
    /// `spec.listen`:25. Blocking: call it off the async workers.
    fn start(&self, spec: &Spec) -> Result<Box<dyn Instance>, TargetError>;
    /// Whether [`Mta::start`] can run the user's image ([`Spec::container`]).
    fn runs_in_containers(&self) -> bool {
        false
    }
    /// Whether it relays for a client that has not authenticated (the raw
    /// `[[session]]` scripts connect as one); `No(why)` makes scenarios with
    /// sessions UNSUPPORTED on it.
    fn relays_unauthenticated(&self) -> Support {
        Support::Yes
    }
}

/// The user's image, run by a container engine inside the lab's network.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    pub engine: crate::lab::engine::Engine,
    pub image: String,
    /// The `--network` value that puts a container into the lab.
    pub network: String,
    /// The lab's resolv.conf (only the fake DNS).
    pub resolv_conf: PathBuf,
    /// Container names start with this (`mtaspec-<nonce>`).
    pub name_prefix: String,
    /// The image's own entrypoint and command (replaced: reported).
    pub image_command: Option<String>,
}

/// What one instance is started with.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The lab's private folder; the instance keeps its files in `lab_dir/instance`.
    pub lab_dir: PathBuf,
    /// The instance's folder name (`postfix`, `postfix-1`, ...).
    pub instance: String,
    /// The loopback address it listens on (port 25).
    pub listen: Ipv4Addr,
    /// The lab's default knobs (fast timers): a user's own configuration may
    /// override these.
    pub defaults: Knobs,
    /// The scenario's knobs: these win over everything but the lab's own settings.
    pub knobs: Knobs,
    /// The user's raw settings in the MTA's own terms (`--set`).
    pub sets: Vec<(String, String)>,
    /// The scenario's raw settings for this MTA (`[target.NAME] set`): they
    /// win over the user's and over the knobs.
    pub set: Vec<(String, String)>,
    /// The user's configuration folder (`--postfix-config`), if any.
    pub config_dir: Option<PathBuf>,
    /// The certificate the instance offers with STARTTLS (made by the lab per run).
    pub tls: Option<TlsFiles>,
    /// Run the user's image instead of the MTA installed here.
    pub container: Option<ContainerSpec>,
}

/// A message still in the target's queue.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Queued {
    pub id: String,
    pub sender: String,
    pub recipients: Vec<String>,
    /// Why the last delivery attempt failed, if the queue says.
    pub reason: Option<String>,
}

/// A running instance of an MTA.
pub trait Instance: Send + Sync + std::fmt::Debug {
    /// Which MTA this is.
    fn mta(&self) -> &'static str;
    /// Where it accepts mail.
    fn smtp_addr(&self) -> SocketAddr;
    /// The host name it uses (HELO, Reporting-MTA, Received:).
    fn hostname(&self) -> String;
    /// The effective neutral knobs, read back from its configuration.
    fn knobs(&self) -> &Knobs;
    /// Its effective own settings, for reports.
    fn settings(&self) -> &BTreeMap<String, String>;
    /// The lab's settings that replaced the user's own, with the reason (for reports).
    fn overrides(&self) -> &[(String, String)] {
        &[]
    }
    /// The messages still queued.
    fn queue(&self) -> Result<Vec<Queued>, TargetError>;
    /// Ask it to retry every queued message now.
    fn flush(&self) -> Result<(), TargetError>;
    /// The last `n` lines of its log.
    fn log_tail(&self, n: usize) -> String;
    /// The files its log is written to, for readers that follow them as
    /// they grow (`mtaspec fuzz` watches them for crash reports).
    fn log_files(&self) -> Vec<PathBuf> {
        Vec::new()
    }
    /// How long start-up took.
    fn startup_time(&self) -> Duration;
    /// Stop it and everything it started, and reap them. Blocking; idempotent.
    fn stop(&mut self);
    /// What the client must do before this instance relays (STARTTLS and
    /// AUTH PLAIN as one of its users), if it does not relay by address.
    fn submission(&self) -> Option<Submission> {
        None
    }
    /// The cap on the harness's client connections to this instance that
    /// have not been greeted yet (default: none). An MTA with a small
    /// compiled-in listen backlog drops the handshake's last ACK when many
    /// clients connect at once; the client then waits seconds (SYN-ACK
    /// retransmits at 1, 3, 7 s) for a greeting that says nothing about SMTP.
    fn client_gate(&self) -> ClientGate {
        ClientGate::open()
    }
}

/// Caps how many client connections to one instance may be between
/// `connect` and the target's first reply at once. Clones share the cap.
#[derive(Clone, Debug, Default)]
pub struct ClientGate(Option<std::sync::Arc<tokio::sync::Semaphore>>);

impl ClientGate {
    /// No cap.
    pub fn open() -> ClientGate {
        ClientGate(None)
    }

    /// At most `n` (at least 1) connections waiting for their greeting at once.
    pub fn capped(n: usize) -> ClientGate {
        ClientGate(Some(std::sync::Arc::new(tokio::sync::Semaphore::new(
            n.max(1),
        ))))
    }

    /// Wait for a place; hold the permit until the first reply came (or the
    /// connection failed). `None` when there is no cap.
    pub async fn enter(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        match &self.0 {
            None => None,
            Some(s) => s.clone().acquire_owned().await.ok(),
        }
    }
}

/// STARTTLS with a client configuration that trusts the instance's
/// certificate, then AUTH PLAIN with these credentials.
#[derive(Clone)]
pub struct Submission {
    pub user: String,
    pub password: String,
    /// The name the instance's certificate is for.
    pub server_name: String,
    pub tls: std::sync::Arc<tokio_rustls::rustls::ClientConfig>,
}

impl std::fmt::Debug for Submission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Submission")
            .field("user", &self.user)
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// Wait until `addr` greets with 220, while `alive` says the daemon still runs.
pub(crate) fn wait_for_greeting(
    addr: SocketAddr,
    limit: Duration,
    mut alive: impl FnMut() -> Result<(), String>,
) -> Result<(), String> {
    use std::io::Read;
    let until = std::time::Instant::now() + limit;
    while std::time::Instant::now() < until {
        alive()?;
        if let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 3];
            if s.read_exact(&mut buf).is_ok() && &buf == b"220" {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(String::new())
}

/// For [`wait_for_greeting`]: `Err(why)` once the daemon `child` has exited.
pub(crate) fn still_running(
    child: &mut Option<std::process::Child>,
    name: &str,
) -> Result<(), String> {
    match child.as_mut() {
        Some(c) => match c.try_wait() {
            Ok(Some(status)) => Err(format!("{name} exited ({status})")),
            _ => Ok(()),
        },
        None => Err(format!("{name} is not running")),
    }
}

/// The error for an instance that did not greet within `limit`.
pub(crate) fn not_ready(addr: SocketAddr, limit: Duration, why: &str, log: String) -> TargetError {
    TargetError::NotReady {
        addr: addr.to_string(),
        secs: limit.as_secs(),
        log: format!("{why}\n{log}"),
    }
}

/// Stop a daemon that leads its own process group: SIGTERM, up to `grace`
/// to exit, then SIGKILL to the whole group, and reap it.
pub(crate) fn stop_group(mut child: std::process::Child, grace: Duration) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let pid = Pid::from_raw(child.id() as i32);
    let _ = kill(pid, Signal::SIGTERM);
    let until = std::time::Instant::now() + grace;
    while std::time::Instant::now() < until {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = kill(Pid::from_raw(-pid.as_raw()), Signal::SIGKILL);
    let _ = child.kill();
    let _ = child.wait();
}

/// The last `n` lines of the files in `paths`, concatenated.
pub(crate) fn tail_files(paths: &[&Path], n: usize) -> String {
    let mut text = String::new();
    for p in paths {
        text.push_str(&std::fs::read_to_string(p).unwrap_or_default());
    }
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Why the target could not be prepared, started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("{tool} was not found ({path}); install it with `{fix}` (see README)")]
    NotInstalled {
        tool: &'static str,
        path: PathBuf,
        fix: &'static str,
    },
    #[error("unknown target `{name}`; the targets are: {known}")]
    UnknownTarget { name: String, known: String },
    #[error("setting `{key}` would break the lab: {why}")]
    Forbidden { key: String, why: &'static str },
    #[error(
        "bad --set `{0}`: write KEY=VALUE in main.cf syntax, e.g. --set maximal_queue_lifetime=10s"
    )]
    BadSetting(String),
    /// The MTA itself rejected a setting (unknown name, bad value): what it said.
    #[error("the target does not accept the setting: {0}")]
    Rejected(String),
    #[error("--postfix-config {path}: {what}")]
    UserConfig { path: PathBuf, what: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed: {output}")]
    Command { command: String, output: String },
    #[error("image {image}: {what}")]
    Image { image: String, what: String },
    #[error("{0}")]
    Engine(#[from] crate::lab::engine::EngineError),
    #[error("the target did not start listening on {addr} within {secs} s; its log:\n{log}")]
    NotReady {
        addr: String,
        secs: u64,
        log: String,
    },
}

impl TargetError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        TargetError::Io {
            what: what.into(),
            source,
        }
    }
}

/// How the user configures the target.
#[derive(Debug, Clone, Default)]
pub struct TargetOptions {
    /// `--set KEY=VALUE` pairs, in order.
    pub sets: Vec<(String, String)>,
    /// `--postfix-config DIR`: the user's main.cf / master.cf.
    pub config_dir: Option<PathBuf>,
    /// The certificate the target offers with STARTTLS (made by the lab per run).
    pub tls: Option<TlsFiles>,
    /// `--image IMAGE --engine ENGINE`: the user's image instead of the MTA installed here.
    pub image: Option<ImageOptions>,
}

/// A PEM certificate and private key for the target's SMTP server.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// The user's image and the engine that runs it.
#[derive(Debug, Clone)]
pub struct ImageOptions {
    pub engine: crate::lab::engine::Engine,
    pub image: String,
    /// The image's own entrypoint and command.
    pub command: Option<String>,
}

impl TargetOptions {
    /// Parse `KEY=VALUE` strings.
    pub fn parse_sets(raw: &[String]) -> Result<Vec<(String, String)>, TargetError> {
        raw.iter()
            .map(|s| {
                let (k, v) = s
                    .split_once('=')
                    .ok_or_else(|| TargetError::BadSetting(s.clone()))?;
                let k = k.trim();
                if k.is_empty()
                    || !k
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
                {
                    return Err(TargetError::BadSetting(s.clone()));
                }
                Ok((k.to_string(), v.trim().to_string()))
            })
            .collect()
    }
}

#[cfg(test)]
mod gate_tests {
    use super::ClientGate;
    use std::time::Duration;

    #[tokio::test]
    async fn a_capped_gate_holds_clients_back_until_a_place_is_free() {
        let gate = ClientGate::capped(1);
        let first = gate.enter().await;
        assert!(first.is_some());
        let waiting = tokio::time::timeout(Duration::from_millis(50), gate.enter());
        assert!(
            waiting.await.is_err(),
            "a second client got past a cap of 1"
        );
        drop(first);
        let later = tokio::time::timeout(Duration::from_millis(50), gate.enter()).await;
        assert!(matches!(later, Ok(Some(_))));
        assert!(ClientGate::open().enter().await.is_none());
    }
}
