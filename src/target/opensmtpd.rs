//! Target stage: a private OpenSMTPD instance (own config, spool and control socket) in the lab.
//!
//! OpenSMTPD 6.8 has its spool, its chroot folder and its control socket
//! compiled in (`/var/spool/smtpd`, `/var/lib/opensmtpd/empty`,
//! `/var/run/smtpd.sock`). Every instance gets a `var/` folder of its own
//! under the lab folder, and `smtpd` (and every `smtpctl` that talks to it)
//! runs in a mount namespace of its own where that folder lies over `/var`:
//! instances side by side never see each other's queue, and nothing is
//! written outside the lab folder. The namespaces go with the processes.
//!
//! OpenSMTPD's retry delay is compiled in (400 s × attempts²), so the
//! instance keeps a supervised thread that asks `smtpctl schedule` to retry
//! each deferred envelope once `retry_min` has passed since its last attempt.

use super::knobs::{Knob, Knobs, Value};
use super::{ClientGate, Instance, Mta, Queued, Spec, Support, TargetError};
use crate::lab;
use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const INSTALL: &str = "scripts/setup --targets opensmtpd";
const CONF_TEMPLATE: &str = include_str!("opensmtpd/smtpd.conf");

/// OpenSMTPD's own defaults for what the knobs set (smtpd.conf(5), smtpd.h).
const DEFAULT_TTL: Duration = Duration::from_secs(4 * 86400);
const DEFAULT_WARN: Duration = Duration::from_secs(4 * 3600);
/// `MAX_HOPS_COUNT`: a message with this many Received: headers is refused.
const MAX_HOPS: u32 = 100;

/// Settings the lab starts from; the user's and the scenario's win.
const LAB_DEFAULTS: &[(&str, &str)] = &[
    // OpenSMTPD holds its last connection to a host open for 10 s in case
    // more mail comes. With the lab's retries a second or two apart, every
    // retry would go down that one session (RSET, MAIL again), where the
    // real schedule (400 s and more) opens a new connection: keep the
    // keep-alive below the lab's retry_min, as the real one is below 400 s.
    ("mta limit session-keepalive", "0"),
    // Its pacing between connections to one host (5 s per route, 2 s per
    // relay, 3 s before reconnecting) is on the scale of real retries too:
    // at the lab's scale it would hold every retry back by seconds.
    ("mta limit conn-delay-route", "0"),
    ("mta limit conn-delay-relay", "0"),
    ("mta limit reconn-delay-route", "0"),
    // A delay warning goes out once an envelope's *next* try is later than
    // creation + interval, and the next try is 400 s × retries² away: the
    // lab's quick retries would bring the stock 4h warning within seconds.
    // The lab's default is "no delay warning" (as Postfix's).
    ("bounce warn-interval", NO_WARNING),
];

/// The longest warn-interval: in effect, no delay warning.
const NO_WARNING: &str = "365d";

/// How long past retry_min the retry thread waits for a destination's relay to go.
const RELAY_WAIT: Duration = Duration::from_secs(3);

/// How often the retry thread looks at the queue.
const POLL: Duration = Duration::from_millis(250);
/// Longest an `smtpctl` call may take before it is killed.
const CTL_LIMIT: Duration = Duration::from_secs(10);
/// The same for the retry thread's calls: a stuck one must not hold retries back.
const LOOP_CTL_LIMIT: Duration = Duration::from_secs(2);

/// Raw settings the lab needs for itself, by their first word(s).
const LAB_OWNED: &[(&str, &str)] = &[
    ("listen", "the target must listen on the lab address mtaspec gives each instance (127.0.0.1, 127.0.2.1, ...)"),
    ("action", "mail must leave through the instance's own relay action, straight to the scenario's MX hosts"),
    ("match", "the lab's rules relay mail from 127.0.0.0/8 to the scenario's MX hosts; other rules would take it elsewhere"),
    ("include", "a file outside the lab could carry listen, action or match lines"),
    ("hostname", "the target's host name is the lab's (mta.target.test)"),
];

/// The root of the unpacked package: `$MTASPEC_MTA_ROOT/opensmtpd`.
fn root() -> PathBuf {
    std::env::var_os("MTASPEC_MTA_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/mtaspec"))
        .join("opensmtpd")
}

fn smtpd_bin() -> PathBuf {
    root().join("usr/sbin/smtpd")
}

fn smtpctl_bin() -> PathBuf {
    root().join("usr/sbin/smtpctl")
}

/// Debian's OpenSMTPD, unpacked under /opt/mtaspec and run as a private instance.
pub struct OpenSmtpdMta;

/// The OpenSMTPD target.
pub static OPENSMTPD: OpenSmtpdMta = OpenSmtpdMta;

impl Mta for OpenSmtpdMta {
    fn name(&self) -> &'static str {
        "opensmtpd"
    }

    fn version(&self) -> Result<String, TargetError> {
        installed()?;
        // `smtpd -h` prints the version and the usage, and exits 1.
        let out = Command::new(smtpd_bin())
            .arg("-h")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| TargetError::io(format!("run {} -h", smtpd_bin().display()), e))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        parse_version(&text).ok_or_else(|| TargetError::Command {
            command: format!("{} -h", smtpd_bin().display()),
            output: format!("no version line in: {}", text.trim()),
        })
    }

    fn support(&self, knob: Knob) -> Support {
        match knob {
            Knob::QueueLifetime | Knob::BounceLifetime | Knob::DelayWarning => Support::Yes,
            // The retry thread schedules each deferred envelope retry_min
            // after its last attempt, which keeps every gap within the bounds.
            Knob::RetryMin | Knob::RetryMax => Support::Yes,
            Knob::QueueRun => Support::No(
                "OpenSMTPD has no queue run: its scheduler wakes when an envelope is due, and the retry delay is compiled in",
            ),
            Knob::ConnectTimeout => Support::No("OpenSMTPD's connect timeout is compiled in"),
            Knob::HopLimit => Support::No(
                "OpenSMTPD's hop limit is compiled in (MAX_HOPS_COUNT = 100 Received: headers)",
            ),
        }
    }

    fn start(&self, spec: &Spec) -> Result<Box<dyn Instance>, TargetError> {
        OpenSmtpd::start(spec).map(|i| Box::new(i) as Box<dyn Instance>)
    }
}

/// `version: OpenSMTPD 6.8.0p2` → `6.8.0p2`.
fn parse_version(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("version: OpenSMTPD "))
        .map(|v| v.trim().to_string())
}

fn installed() -> Result<(), TargetError> {
    for (tool, path) in [("smtpd", smtpd_bin()), ("smtpctl", smtpctl_bin())] {
        if !path.exists() {
            return Err(TargetError::NotInstalled {
                tool,
                path,
                fix: INSTALL,
            });
        }
    }
    for user in ["opensmtpd", "opensmtpq"] {
        if nix::unistd::User::from_name(user).ok().flatten().is_none() {
            return Err(TargetError::NotInstalled {
                tool: if user == "opensmtpd" {
                    "the opensmtpd user"
                } else {
                    "the opensmtpq user"
                },
                path: "/etc/passwd".into(),
                fix: INSTALL,
            });
        }
    }
    Ok(())
}

/// A delay in smtpd.conf syntax: whole seconds (rounded up), at least 1.
fn delay(d: Duration) -> String {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    format!("{}s", secs.max(1))
}

/// An smtpd.conf delay (`20s`, `4h`, ...) back to a duration.
fn parse_delay(v: &str) -> Option<Duration> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit())?;
    let n: u64 = v[..split].parse().ok()?;
    let unit = match &v[split..] {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return None,
    };
    Some(Duration::from_secs(n * unit))
}

/// The smtpd.conf directive behind a knob, where it has one.
fn directive(knob: Knob) -> Option<&'static str> {
    match knob {
        Knob::QueueLifetime => Some("queue ttl"),
        Knob::DelayWarning => Some("bounce warn-interval"),
        _ => None,
    }
}

/// A raw setting that would take mail around the lab, refused with the reason.
fn forbid(key: &str, value: &str) -> Result<(), TargetError> {
    let key = &normal_key(key);
    let first = key.split_whitespace().next().unwrap_or_default();
    if let Some((k, why)) = LAB_OWNED.iter().find(|(k, _)| *k == first) {
        return Err(TargetError::Forbidden {
            key: k.to_string(),
            why,
        });
    }
    let words: Vec<&str> = key.split_whitespace().collect();
    if words == ["queue", "encryption"] && value.trim().is_empty() {
        return Err(TargetError::Forbidden {
            key: key.to_string(),
            why: "without a key smtpd asks for one on the terminal; give the key: queue encryption = \"<hex key>\"",
        });
    }
    if key.is_empty() || key.contains(['\n', '"', '{', '}']) || value.contains('\n') {
        return Err(TargetError::Command {
            command: format!("set `{key}` = `{value}`"),
            output: "write an smtpd.conf directive and its value on one line, e.g. `queue ttl` = \"10s\" (with --set: queue_ttl=10s)".into(),
        });
    }
    Ok(())
}

/// Everything an instance's configuration is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Config {
    /// Top-level directives (`queue ttl` → `20s`), last layer wins.
    settings: BTreeMap<String, String>,
    /// The ttl of the action that relays bounces (null sender).
    bounce_ttl: Option<String>,
    /// How long after an envelope's last attempt the retry thread schedules it.
    retry_min: Duration,
    retry_max: Duration,
}

impl Config {
    /// Layers, last wins: the lab's defaults, the user's `--set`, the
    /// scenario's knobs, the scenario's raw settings.
    fn layer(spec: &Spec) -> Result<Config, TargetError> {
        for (k, v) in spec.sets.iter().chain(&spec.set) {
            forbid(k, v)?;
        }
        let all = super::knobs::layered(&spec.defaults, &spec.knobs);
        let mut settings = BTreeMap::new();
        let knob_lines = |knobs: &Knobs, settings: &mut BTreeMap<String, String>| {
            for (k, v) in knobs {
                if let (Some(d), Some(t)) = (directive(*k), v.as_time()) {
                    if *k == Knob::DelayWarning && t.is_zero() {
                        // 0 means "never": OpenSMTPD cannot switch warnings off.
                        settings.insert(d.to_string(), NO_WARNING.into());
                        continue;
                    }
                    settings.insert(d.to_string(), delay(t));
                }
            }
        };
        for (k, v) in LAB_DEFAULTS {
            settings.insert(k.to_string(), v.to_string());
        }
        knob_lines(&spec.defaults, &mut settings);
        for (k, v) in &spec.sets {
            settings.insert(normal_key(k), v.trim().to_string());
        }
        knob_lines(&spec.knobs, &mut settings);
        for (k, v) in &spec.set {
            settings.insert(normal_key(k), v.trim().to_string());
        }
        let time =
            |k: Knob, fallback: Duration| all.get(&k).and_then(|v| v.as_time()).unwrap_or(fallback);
        let retry_min = time(Knob::RetryMin, Duration::from_secs(1)).max(POLL);
        let retry_max = time(Knob::RetryMax, retry_min).max(retry_min);
        Ok(Config {
            settings,
            bounce_ttl: all
                .get(&Knob::BounceLifetime)
                .and_then(|v| v.as_time())
                .map(delay),
            retry_min,
            retry_max,
        })
    }

    /// The smtpd.conf text.
    fn render(&self, listen: Ipv4Addr) -> String {
        let lines: Vec<String> = self
            .settings
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let ttl = |t: &Option<String>| t.as_ref().map(|t| format!(" ttl {t}")).unwrap_or_default();
        CONF_TEMPLATE
            .replace("{settings}", &lines.join("\n"))
            .replace("{listen}", &listen.to_string())
            .replace("{hostname}", lab::TARGET_HOSTNAME)
            .replace("{relay_ttl}", "")
            .replace("{bounce_ttl}", &ttl(&self.bounce_ttl))
    }

    /// The neutral knobs this configuration really gives.
    fn effective(&self) -> Knobs {
        let t = Value::Time;
        let ttl = self
            .settings
            .get("queue ttl")
            .and_then(|v| parse_delay(v))
            .unwrap_or(DEFAULT_TTL);
        let warn = self
            .settings
            .get("bounce warn-interval")
            .and_then(|v| v.split(',').next().and_then(parse_delay))
            .unwrap_or(DEFAULT_WARN);
        let bounce = self
            .bounce_ttl
            .as_deref()
            .and_then(parse_delay)
            .unwrap_or(ttl);
        Knobs::from([
            (Knob::QueueLifetime, t(ttl)),
            (Knob::BounceLifetime, t(bounce)),
            (Knob::DelayWarning, t(warn)),
            (Knob::RetryMin, t(self.retry_min)),
            (Knob::RetryMax, t(self.retry_max)),
            (Knob::HopLimit, Value::Count(MAX_HOPS)),
        ])
    }

    /// Every setting, for reports.
    fn report(&self) -> BTreeMap<String, String> {
        let mut r = self.settings.clone();
        if let Some(b) = &self.bounce_ttl {
            r.insert("action \"bounce\" ttl".into(), b.clone());
        }
        r.insert(
            "retry (smtpctl schedule after)".into(),
            super::knobs::Value::Time(self.retry_min).to_string(),
        );
        r
    }
}

/// `smtp_max-message-size` or `smtp  max-message-size` → `smtp max-message-size`:
/// `--set` keys cannot hold spaces, so `_` stands for one.
fn normal_key(k: &str) -> String {
    k.replace('_', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The instance's folders, in its own mount namespace, over `/var`.
#[derive(Debug, Clone)]
struct Mounts {
    var: CString,
}

impl Mounts {
    fn new(var: &Path) -> Result<Mounts, TargetError> {
        Ok(Mounts {
            var: CString::new(var.as_os_str().as_bytes()).map_err(|_| {
                TargetError::io(
                    format!("use {}", var.display()),
                    std::io::Error::other("the lab folder has a NUL byte"),
                )
            })?,
        })
    }

    /// Run `cmd` in a mount namespace of its own where the instance's
    /// folder lies over `/var`; with `supervised`, also in its own process
    /// group and killed if its parent thread dies.
    fn apply(&self, cmd: &mut Command, supervised: bool) {
        let var = self.var.clone();
        if supervised {
            cmd.process_group(0);
        }
        // SAFETY: only async-signal-safe system calls on memory prepared
        // before the fork (the CString is moved in, not allocated).
        unsafe {
            cmd.pre_exec(move || {
                use nix::libc;
                if supervised {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                }
                if libc::unshare(libc::CLONE_NEWNS) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let root = c"/";
                if libc::mount(
                    std::ptr::null(),
                    root.as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                let target = c"/var";
                if libc::mount(
                    var.as_ptr(),
                    target.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}

/// How many harness clients may wait for OpenSMTPD's greeting at once.
/// smtpd listens with a small compiled-in backlog (`SMTPD_BACKLOG`); with
/// ~100 clients connecting together the kernel dropped handshakes and some
/// greetings came 10 s late (SYN-ACK retransmits at 1, 3, 7 s).
const CLIENTS_AT_ONCE: usize = 4;

/// A running private OpenSMTPD instance.
#[derive(Debug)]
pub struct OpenSmtpd {
    dir: PathBuf,
    listen: Ipv4Addr,
    mounts: Mounts,
    smtpd: Option<Child>,
    /// Dropping it stops the retry thread.
    retry_stop: Option<mpsc::Sender<()>>,
    retry_thread: Option<std::thread::JoinHandle<()>>,
    settings: BTreeMap<String, String>,
    knobs: Knobs,
    started: Duration,
    /// Shared by every client connection the harness opens to this instance.
    gate: ClientGate,
}

impl OpenSmtpd {
    /// Write the instance's files, start `smtpd -d` and wait until it greets on `listen`:25.
    pub fn start(spec: &Spec) -> Result<OpenSmtpd, TargetError> {
        let begin = Instant::now();
        installed()?;
        if spec.config_dir.is_some() {
            return Err(TargetError::UserConfig {
                path: spec.config_dir.clone().unwrap_or_default(),
                what: "a configuration folder is for Postfix; give OpenSMTPD settings with --set 'DIRECTIVE=VALUE'".into(),
            });
        }
        let listen = spec.listen;
        if !listen.is_loopback() {
            return Err(TargetError::io(
                format!("listen on {listen}"),
                std::io::Error::other("instances listen on loopback addresses only"),
            ));
        }
        if listen != Ipv4Addr::LOCALHOST {
            lab::add_loopback_addr(&lab::loopback_label(listen), listen)
                .map_err(|e| TargetError::io(format!("add {listen} to the lab's loopback"), e))?;
        }
        // OpenSMTPD looks up no A records of MX hosts while 127.0.0.1 is the
        // only IPv4 address: give the fake DNS's address to the loopback too.
        lab::add_loopback_addr("lo:dns", lab::DNS_ADDR).map_err(|e| {
            TargetError::io(format!("add {} to the lab's loopback", lab::DNS_ADDR), e)
        })?;

        let config = Config::layer(spec)?;
        let dir = spec.lab_dir.join(&spec.instance);
        let var = dir.join("var");
        for sub in ["var/spool/smtpd", "var/lib/opensmtpd/empty", "var/run"] {
            let p = dir.join(sub);
            std::fs::create_dir_all(&p)
                .map_err(|e| TargetError::io(format!("create {}", p.display()), e))?;
        }
        // smtpd checks its spool: owned by root, mode 711.
        let mode = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(m))
                .map_err(|e| TargetError::io(format!("chmod {}", p.display()), e))
        };
        mode(&var.join("spool/smtpd"), 0o711)?;
        for p in [
            &dir,
            &var,
            &var.join("spool"),
            &var.join("lib"),
            &var.join("run"),
        ] {
            mode(p, 0o755)?;
        }
        let conf = dir.join("smtpd.conf");
        std::fs::write(&conf, config.render(listen))
            .map_err(|e| TargetError::io(format!("write {}", conf.display()), e))?;
        let mounts = Mounts::new(&var)?;

        // A settings mistake shows here, with smtpd's own words.
        let mut check = Command::new(smtpd_bin());
        check.arg("-n").arg("-f").arg(&conf);
        mounts.apply(&mut check, false);
        let out = output_within(&mut check, CTL_LIMIT)?;
        if !out.status.success() {
            let text = std::fs::read_to_string(&conf).unwrap_or_default();
            return Err(TargetError::Command {
                command: format!("{} -n -f {}", smtpd_bin().display(), conf.display()),
                output: config_error(
                    &String::from_utf8_lossy(&out.stderr),
                    &text,
                    &describe_sets(spec),
                ),
            });
        }

        // smtpd is started by the retry thread, which lives as long as the
        // instance: PR_SET_PDEATHSIG follows the thread that forked.
        let log = dir.join("smtpd.log");
        let (child_tx, child_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let thread = {
            let mounts = mounts.clone();
            let conf = conf.clone();
            let retry_min = config.retry_min;
            let retry_log = log.clone();
            std::thread::Builder::new()
                .name(format!("{}-retry", spec.instance))
                .spawn(move || {
                    let spawned = spawn_smtpd(&mounts, &conf, &log);
                    let ok = spawned.is_ok();
                    if child_tx.send(spawned).is_err() || !ok {
                        return;
                    }
                    retry_loop(&mounts, retry_min, &stop_rx, &retry_log);
                })
                .map_err(|e| TargetError::io("start the retry thread", e))?
        };
        let child = child_rx
            .recv()
            .map_err(|_| {
                TargetError::io(
                    "start smtpd",
                    std::io::Error::other("the retry thread died"),
                )
            })
            .and_then(|r| r);
        let child = match child {
            Ok(c) => c,
            Err(e) => {
                let _ = thread.join();
                return Err(e);
            }
        };
        let mut inst = OpenSmtpd {
            gate: ClientGate::capped(CLIENTS_AT_ONCE),
            dir,
            listen,
            mounts,
            smtpd: Some(child),
            retry_stop: Some(stop_tx),
            retry_thread: Some(thread),
            settings: config.report(),
            knobs: config.effective(),
            started: Duration::ZERO,
        };
        let addr = inst.smtp_addr();
        let limit = Duration::from_secs(15);
        let ready = super::wait_for_greeting(addr, limit, || {
            super::still_running(&mut inst.smtpd, "smtpd")
        });
        if let Err(why) = ready {
            let log = inst.log_tail(30);
            inst.stop();
            return Err(super::not_ready(addr, limit, &why, log));
        }
        inst.started = begin.elapsed();
        Ok(inst)
    }

    fn smtpctl(&self, args: &[&str]) -> Result<String, TargetError> {
        smtpctl(&self.mounts, args)
    }

    fn kill(&mut self, grace: Duration) {
        if let Some(child) = self.smtpd.take() {
            // 6.8 has no `smtpctl stop`: SIGTERM makes the parent take its
            // processes down and exit; smtpd leads its own process group.
            super::stop_group(child, grace);
        }
        drop(self.retry_stop.take());
        if let Some(t) = self.retry_thread.take() {
            let _ = t.join();
        }
    }
}

/// smtpd's complaint (`CONF:6: syntax error`), with the line it is about
/// and the settings that made the configuration.
fn config_error(stderr: &str, conf: &str, sets: &str) -> String {
    let stderr = stderr.trim();
    let line = stderr
        .lines()
        .find_map(|l| l.split(':').nth(1)?.trim().parse::<usize>().ok())
        .and_then(|n| conf.lines().nth(n.checked_sub(1)?).map(|t| (n, t)));
    match line {
        Some((n, t)) => format!("{stderr}; line {n} is `{t}` (settings: {sets})"),
        None => format!("{stderr} (settings: {sets})"),
    }
}

fn describe_sets(spec: &Spec) -> String {
    let all: Vec<String> = spec
        .sets
        .iter()
        .chain(&spec.set)
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if all.is_empty() {
        "the lab's configuration".into()
    } else {
        all.join(", ")
    }
}

fn spawn_smtpd(mounts: &Mounts, conf: &Path, log: &Path) -> Result<Child, TargetError> {
    // Append mode: the retry thread adds its own lines to the same log.
    let out = std::fs::File::options()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| TargetError::io(format!("create {}", log.display()), e))?;
    let err = out
        .try_clone()
        .map_err(|e| TargetError::io("dup the log file", e))?;
    let mut cmd = Command::new(smtpd_bin());
    // -d: stay in the foreground and log to stderr.
    cmd.arg("-d")
        .arg("-f")
        .arg(conf)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    mounts.apply(&mut cmd, true);
    cmd.spawn()
        .map_err(|e| TargetError::io(format!("start {}", smtpd_bin().display()), e))
}

/// Run `smtpctl ARGS` next to the instance's socket; killed after [`CTL_LIMIT`].
fn smtpctl(mounts: &Mounts, args: &[&str]) -> Result<String, TargetError> {
    smtpctl_within(mounts, args, CTL_LIMIT)
}

fn smtpctl_within(mounts: &Mounts, args: &[&str], limit: Duration) -> Result<String, TargetError> {
    let mut cmd = Command::new(smtpctl_bin());
    cmd.args(args);
    mounts.apply(&mut cmd, false);
    let out = output_within(&mut cmd, limit)?;
    if !out.status.success() {
        return Err(TargetError::Command {
            command: format!("smtpctl {}", args.join(" ")),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Like [`Command::output`], but the command is killed after `limit`.
fn output_within(cmd: &mut Command, limit: Duration) -> Result<std::process::Output, TargetError> {
    use std::io::Read;
    let shown = format!("{cmd:?}").replace('"', "");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| TargetError::io(format!("run {shown}"), e))?;
    // Read both pipes on their own threads so a chatty child cannot block.
    let read = |p: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(p) = p {
                // At most 4 MiB of a command's output is kept.
                let _ = p.take(4 << 20).read_to_end(&mut buf);
            }
            buf
        })
    };
    let out_t = read(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err_t = read(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let until = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(TargetError::Command {
                    command: shown,
                    output: format!("no answer within {} s; killed", limit.as_secs()),
                });
            }
        }
    };
    Ok(std::process::Output {
        status,
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
    })
}

/// One line of `smtpctl show queue`:
/// `evpid|src|agent|flags|sender|rcpt|dest|ctime|expire|lasttry|retry|state|n|error`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Envelope {
    id: String,
    sender: String,
    rcpt: String,
    /// The domain it is relayed to.
    domain: String,
    retry: u32,
    state: String,
    error: String,
}

fn parse_envelope(line: &str) -> Option<Envelope> {
    let f: Vec<&str> = line.splitn(14, '|').collect();
    if f.len() < 13 || f[0].len() != 16 || !f[0].chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let addr = |a: &str| {
        if a == "@" {
            String::new()
        } else {
            a.to_string()
        }
    };
    Some(Envelope {
        id: f[0].to_string(),
        sender: addr(f[4]),
        rcpt: addr(f[5]),
        domain: f[6]
            .rsplit_once('@')
            .map(|(_, d)| d.to_ascii_lowercase())
            .unwrap_or_default(),
        retry: f[10].parse().ok()?,
        state: f[11].to_string(),
        error: f.get(13).map(|s| s.to_string()).unwrap_or_default(),
    })
}

/// Whether `smtpctl show relays` lists a relay to `domain`
/// (`[relay:dest.test,smtp,heloname=...] refcount=1 ...`).
fn relay_alive(relays: &str, domain: &str) -> bool {
    relays.lines().any(|l| {
        l.strip_prefix("[relay:")
            .and_then(|r| r.split([',', ']']).next())
            .is_some_and(|d| d.eq_ignore_ascii_case(domain))
    })
}

/// Group envelopes into messages (an envelope id is the message id and 8 hex digits more).
fn messages(envelopes: &[Envelope]) -> Vec<Queued> {
    let mut out: Vec<Queued> = Vec::new();
    for e in envelopes {
        let msg = &e.id[..8];
        match out.iter_mut().find(|q| q.id == msg) {
            Some(q) => {
                q.recipients.push(e.rcpt.clone());
                if q.reason.is_none() && !e.error.is_empty() {
                    q.reason = Some(e.error.clone());
                }
            }
            None => out.push(Queued {
                id: msg.to_string(),
                sender: e.sender.clone(),
                recipients: vec![e.rcpt.clone()],
                reason: (!e.error.is_empty()).then(|| e.error.clone()),
            }),
        }
    }
    out
}

/// Until `stop` is dropped: schedule each deferred envelope once `retry_min`
/// has passed since its failed attempt was first seen in the queue. What it
/// does goes to `log` (smtpd's own log, opened for appending).
fn retry_loop(mounts: &Mounts, retry_min: Duration, stop: &mpsc::Receiver<()>, log: &Path) {
    use std::io::Write;
    let begin = Instant::now();
    let mut out = std::fs::File::options().append(true).open(log).ok();
    let mut note = |what: String| {
        if let Some(f) = out.as_mut() {
            let _ = writeln!(f, "{:9.3} retry: {what}", begin.elapsed().as_secs_f64());
        }
    };
    // evpid → (retry count, when that count was first seen, scheduled yet).
    let mut seen: HashMap<String, (u32, Instant, bool)> = HashMap::new();
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(POLL) {
        let list = match smtpctl_within(mounts, &["show", "queue"], LOOP_CTL_LIMIT) {
            Ok(l) => l,
            Err(e) => {
                note(e.to_string());
                continue;
            }
        };
        let now = Instant::now();
        let envs: Vec<Envelope> = list.lines().filter_map(parse_envelope).collect();
        seen.retain(|id, _| envs.iter().any(|e| &e.id == id));
        // `smtpctl show relays`, asked for at most once a round.
        let mut relays: Option<String> = None;
        let empty = String::new();
        for e in envs {
            let entry = seen.entry(e.id.clone()).or_insert((e.retry, now, false));
            if entry.0 != e.retry {
                *entry = (e.retry, now, false);
            }
            let due = e.retry > 0
                && e.state == "pending"
                && !entry.2
                && now.duration_since(entry.1) >= retry_min;
            if !due {
                continue;
            }
            // OpenSMTPD keeps a destination's relay in memory for a second or
            // two after a delivery attempt; a task that reaches it then waits
            // until 10 s after the relay's last route search
            // (DELAY_CHECK_SOURCE_SLOW, compiled in). Schedule once that relay
            // is gone, so the retry starts afresh: or after RELAY_WAIT at most.
            let waited = now.duration_since(entry.1);
            if waited < retry_min + RELAY_WAIT {
                let relays = match &relays {
                    Some(r) => r,
                    None => {
                        relays = smtpctl_within(mounts, &["show", "relays"], LOOP_CTL_LIMIT).ok();
                        relays.as_ref().map_or(&empty, |r| r)
                    }
                };
                if relay_alive(relays, &e.domain) {
                    continue;
                }
            }
            match smtpctl_within(mounts, &["schedule", &e.id], LOOP_CTL_LIMIT) {
                Ok(_) => {
                    entry.2 = true;
                    note(format!(
                        "scheduled {} (after {} failed attempt(s))",
                        e.id, e.retry
                    ));
                }
                Err(err) => note(err.to_string()),
            }
        }
    }
}

impl Instance for OpenSmtpd {
    fn client_gate(&self) -> ClientGate {
        self.gate.clone()
    }

    fn mta(&self) -> &'static str {
        "opensmtpd"
    }

    fn smtp_addr(&self) -> SocketAddr {
        SocketAddr::from((self.listen, 25))
    }

    fn hostname(&self) -> String {
        lab::TARGET_HOSTNAME.to_string()
    }

    fn knobs(&self) -> &Knobs {
        &self.knobs
    }

    fn settings(&self) -> &BTreeMap<String, String> {
        &self.settings
    }

    fn queue(&self) -> Result<Vec<Queued>, TargetError> {
        let out = self.smtpctl(&["show", "queue"])?;
        let envs: Vec<Envelope> = out.lines().filter_map(parse_envelope).collect();
        Ok(messages(&envs))
    }

    fn flush(&self) -> Result<(), TargetError> {
        self.smtpctl(&["schedule", "all"]).map(|_| ())
    }

    fn log_tail(&self, n: usize) -> String {
        super::tail_files(
            &[&self.dir.join("smtpd.log"), &self.dir.join("retry.log")],
            n,
        )
    }

    fn startup_time(&self) -> Duration {
        self.started
    }

    fn stop(&mut self) {
        self.kill(Duration::from_secs(5));
    }
}

impl Drop for OpenSmtpd {
    fn drop(&mut self) {
        self.kill(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(knobs: Knobs, sets: &[(&str, &str)], set: &[(&str, &str)]) -> Spec {
        let pairs = |p: &[(&str, &str)]| {
            p.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        Spec {
            lab_dir: "/nonexistent".into(),
            instance: "opensmtpd".into(),
            listen: Ipv4Addr::LOCALHOST,
            defaults: super::super::knobs::lab_defaults(),
            knobs,
            sets: pairs(sets),
            set: pairs(set),
            config_dir: None,
            tls: None,
            container: None,
        }
    }

    fn secs(s: u64) -> Value {
        Value::Time(Duration::from_secs(s))
    }

    #[test]
    fn knobs_become_directives_and_read_back() {
        let knobs = Knobs::from([
            (Knob::QueueLifetime, secs(5)),
            (Knob::BounceLifetime, secs(7)),
            (Knob::DelayWarning, Value::Time(Duration::from_millis(2500))),
        ]);
        let c = Config::layer(&spec(knobs, &[], &[])).unwrap();
        let text = c.render(Ipv4Addr::new(127, 0, 2, 3));
        assert!(text.contains("\nqueue ttl 5s\n"), "{text}");
        assert!(text.contains("\nbounce warn-interval 3s\n"), "{text}");
        assert!(
            text.contains("action \"bounce\" relay helo mta.target.test ttl 7s\n"),
            "{text}"
        );
        assert!(text.contains("listen on 127.0.2.3 port 25 hostname mta.target.test"));
        let k = c.effective();
        assert_eq!(k[&Knob::QueueLifetime], secs(5));
        assert_eq!(k[&Knob::BounceLifetime], secs(7));
        assert_eq!(k[&Knob::DelayWarning], secs(3));
        // The lab's defaults: retries 2 s apart.
        assert_eq!(k[&Knob::RetryMin], secs(2));
        assert_eq!(k[&Knob::RetryMax], secs(2));
        assert_eq!(k[&Knob::HopLimit], Value::Count(100));
    }

    #[test]
    fn raw_settings_layer_over_knobs_and_the_lab_is_guarded() {
        let knobs = Knobs::from([(Knob::QueueLifetime, secs(5))]);
        let c = Config::layer(&spec(
            knobs,
            &[("smtp_max-message-size", "10M")],
            &[("queue ttl", "9s")],
        ))
        .unwrap();
        assert_eq!(c.settings["queue ttl"], "9s");
        assert_eq!(c.settings["smtp max-message-size"], "10M");
        assert_eq!(c.effective()[&Knob::QueueLifetime], secs(9));
        for (k, v) in [
            ("listen on", "0.0.0.0"),
            ("match from any", "x"),
            ("action relay", "host smtp://x"),
        ] {
            let e = Config::layer(&spec(Knobs::new(), &[(k, v)], &[])).unwrap_err();
            assert!(matches!(e, TargetError::Forbidden { .. }), "{k}: {e}");
        }
        let e = Config::layer(&spec(Knobs::new(), &[("listen_on", "0.0.0.0")], &[])).unwrap_err();
        assert!(matches!(e, TargetError::Forbidden { .. }), "{e}");
        let e = Config::layer(&spec(Knobs::new(), &[], &[("queue encryption", "")])).unwrap_err();
        assert!(e.to_string().contains("terminal"), "{e}");
    }

    #[test]
    fn no_delay_warning_unless_asked() {
        let none = Config::layer(&spec(Knobs::new(), &[], &[])).unwrap();
        let zero = Config::layer(&spec(
            Knobs::from([(Knob::DelayWarning, secs(0))]),
            &[],
            &[],
        ))
        .unwrap();
        for c in [none, zero] {
            assert_eq!(c.settings["bounce warn-interval"], "365d");
            assert_eq!(c.effective()[&Knob::DelayWarning], secs(365 * 86400));
            assert_eq!(c.settings["mta limit session-keepalive"], "0");
        }
    }

    #[test]
    fn queue_lines_parse_into_messages() {
        let out = "\
1a2b3c4d00000001|inet4|mta||alice@src.test|bob@dest.test|bob@dest.test|1700000000|1700000020|1700000003|2|pending|1|Temporary failure: 451 4.3.0 try later
1a2b3c4d00000002|inet4|mta||alice@src.test|carol@dest.test|carol@dest.test|1700000000|1700000020|0|0|inflight|0|
99999999aaaaaaaa|local|mta|bounce|@|alice@src.test|alice@src.test|1700000000|1700000020|0|0|invalid||
garbage line";
        let envs: Vec<Envelope> = out.lines().filter_map(parse_envelope).collect();
        assert_eq!(envs.len(), 3);
        assert_eq!(envs[0].retry, 2);
        assert_eq!(envs[0].state, "pending");
        let q = messages(&envs);
        assert_eq!(q.len(), 2);
        assert_eq!(q[0].id, "1a2b3c4d");
        assert_eq!(q[0].recipients, ["bob@dest.test", "carol@dest.test"]);
        assert_eq!(
            q[0].reason.as_deref(),
            Some("Temporary failure: 451 4.3.0 try later")
        );
        assert_eq!(q[1].sender, "");
        assert_eq!(q[1].reason, None);
    }

    #[test]
    fn relays_are_found_by_domain() {
        let out = "[relay:dest.s3.test,smtp,heloname=mta.target.test] refcount=1 ntask=0 nconn=0 lastconn=1s timeout=1s wait=\n";
        assert!(relay_alive(out, "dest.s3.test"));
        assert!(!relay_alive(out, "dest.s3"));
        assert!(!relay_alive(out, "src.s3.test"));
        assert!(!relay_alive("", "dest.s3.test"));
    }

    #[test]
    fn config_errors_show_the_line() {
        let conf = "# c\nqueue ttl 5s\nbogus directive 1\n";
        let e = config_error("/x/smtpd.conf:3: syntax error\n", conf, "bogus_directive=1");
        assert_eq!(
            e,
            "/x/smtpd.conf:3: syntax error; line 3 is `bogus directive 1` (settings: bogus_directive=1)"
        );
        assert_eq!(config_error("oops", conf, "x"), "oops (settings: x)");
    }

    #[test]
    fn versions_and_delays_parse() {
        assert_eq!(
            parse_version("version: OpenSMTPD 6.8.0p2\nusage: smtpd [-dFhnv]").as_deref(),
            Some("6.8.0p2")
        );
        assert_eq!(parse_version("usage: smtpd"), None);
        assert_eq!(parse_delay("4h"), Some(Duration::from_secs(4 * 3600)));
        assert_eq!(parse_delay("20"), None);
        assert_eq!(delay(Duration::from_millis(200)), "1s");
        assert_eq!(normal_key("smtp_max-message-size"), "smtp max-message-size");
    }
}
