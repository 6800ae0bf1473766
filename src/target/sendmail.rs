//! Target stage: a private Sendmail 8.17 instance (own sendmail.cf, queue and syslog socket) in the lab.
//!
//! Debian's sendmail packages are extracted (not registered) under
//! `$MTASPEC_MTA_ROOT/sendmail` by `scripts/install-sendmail`. mtaspec builds
//! the instance's sendmail.cf from an .mc with m4, appends the knobs and the
//! user's settings as `O` lines, and runs `sendmail -bD -qN` itself.
//!
//! Sendmail logs only through syslog(3), i.e. to `/dev/log`. Each instance
//! gets its own mount namespace in which an overlay of `/dev` carries the
//! instance's own datagram socket as `/dev/log`; a thread records what
//! arrives. Each instance also runs in its own PID namespace (util-linux
//! `unshare --pid --fork --kill-child`), so stopping it takes down every
//! queue runner and delivery process it forked, whatever their process group.
//!
//! Sendmail has no back-off: a deferred message is retried at every queue
//! run (`-qN`) once `MinQueueAge` has passed since its last attempt, so the
//! longest gap between attempts is `MinQueueAge` plus the queue-run interval.

use super::knobs::{Knob, Knobs, Value};
use super::{Instance, Mta, Queued, Spec, Support, TargetError};
use crate::lab;
use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

const MC: &str = include_str!("sendmail/mta.mc");
const INSTALL: &str = "scripts/install-sendmail";
const M4: &str = "/usr/bin/m4";
const UNSHARE: &str = "/usr/bin/unshare";
/// The log file stops growing here: a hostile peer must not fill the disk.
const LOG_CAP: u64 = 64 << 20;

/// Where `scripts/install-sendmail` extracted the packages.
fn root() -> PathBuf {
    std::env::var_os("MTASPEC_MTA_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/mtaspec"))
        .join("sendmail")
}

fn binary() -> PathBuf {
    root().join("usr/libexec/sendmail/sendmail")
}

fn cf_dir() -> PathBuf {
    root().join("usr/share/sendmail/cf")
}

/// Options the lab owns: a user may not set them (names compare without case, as Sendmail does).
const LAB_OWNED: &[(&str, &str)] = &[
    ("DaemonPortOptions", "the target must listen on the lab address mtaspec gives each instance (127.0.0.1, 127.0.2.1, ...)"),
    ("ClientPortOptions", "the target must connect from the lab's loopback"),
    ("QueueDirectory", "the instance keeps its queue in the lab's private folder"),
    ("StatusFile", "the instance keeps its files in the lab's private folder"),
    ("PidFile", "the instance keeps its files in the lab's private folder"),
    ("AliasFile", "the instance keeps its files in the lab's private folder"),
    ("HelpFile", "the instance keeps its files in the lab's private folder"),
    ("ServiceSwitchFile", "the target must resolve MX hosts through the lab's fake DNS"),
    ("HostsFile", "the target must resolve MX hosts through the lab's fake DNS"),
    ("FallbackMXhost", "a fallback relay would hide the MX fallback under test"),
    ("FallbackSmartHost", "a fallback relay would hide the MX fallback under test"),
    ("HostStatusDirectory", "the instance keeps its files in the lab's private folder"),
    ("DataFileBufferSize", "the instance keeps its files in the lab's private folder"),
];

/// The `O` option behind each neutral knob (the queue-run interval is `-qN`
/// on the command line, not an option).
fn option(knob: Knob) -> Option<&'static str> {
    match knob {
        Knob::QueueLifetime => Some("Timeout.queuereturn"),
        Knob::BounceLifetime => Some("Timeout.queuereturn.dsn"),
        Knob::DelayWarning => Some("Timeout.queuewarn"),
        Knob::RetryMin => Some("MinQueueAge"),
        Knob::ConnectTimeout => Some("Timeout.connect"),
        Knob::HopLimit => Some("MaxHopCount"),
        Knob::RetryMax | Knob::QueueRun => None,
    }
}

/// Options every instance starts with (`--set` and the scenario may change them).
/// Sendmail's load-average limits (QueueLA 8, RefuseLA 12 per CPU) count the
/// whole machine: on a busy host it stopped accepting mid-run ("rejecting
/// connections on daemon MTA: load average: 24") and every session waiting
/// for a greeting failed. The lab's verdicts must not depend on the host's load.
const LAB_DEFAULTS: &[(&str, &str)] = &[("QueueLA", "10000"), ("RefuseLA", "10000")];

/// Sendmail's values for the knob options when neither the stock .mc nor anything else sets them.
const STOCK: &[(&str, &str)] = &[
    ("Timeout.queuereturn", "5d"),
    ("Timeout.queuewarn", "4h"),
    ("MinQueueAge", "0"),
    ("Timeout.connect", "0"),
    ("MaxHopCount", "25"),
];

/// A time in Sendmail's syntax: whole seconds, rounded up (it has no finer unit).
fn sendmail_time(d: Duration) -> String {
    format!("{}s", ceil_secs(d))
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// A knob's value as the option's value. Sendmail bounces once more than
/// MaxHopCount hops are counted, its own Received: header included; the
/// knob counts the headers a message may carry, so a limit of N is MaxHopCount N-1.
fn option_value(v: Value) -> String {
    match v {
        Value::Count(n) => n.saturating_sub(1).max(1).to_string(),
        Value::Time(d) => sendmail_time(d),
    }
}

/// A Sendmail time (`convtime`): numbers with units s, m, h, d, w, summed
/// (`1h30m`); a bare number takes the option's default unit.
pub fn parse_time(v: &str, default_unit: char) -> Option<Duration> {
    let v = v.trim();
    if v.is_empty() {
        return None;
    }
    let mut total = 0u64;
    let mut digits = String::new();
    let unit = |c: char| -> Option<u64> {
        Some(match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            'w' => 7 * 86400,
            _ => return None,
        })
    };
    for c in v.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            let n: u64 = digits.parse().ok()?;
            total = total.checked_add(n.checked_mul(unit(c.to_ascii_lowercase())?)?)?;
            digits.clear();
        }
    }
    if !digits.is_empty() {
        let n: u64 = digits.parse().ok()?;
        total = total.checked_add(n.checked_mul(unit(default_unit)?)?)?;
    }
    Some(Duration::from_secs(total))
}

/// The unit Sendmail gives a bare number in each knob option.
fn default_unit(option: &str) -> char {
    match option {
        "Timeout.queuereturn" | "Timeout.queuereturn.dsn" => 'd',
        "Timeout.queuewarn" => 'h',
        "MinQueueAge" => 'm',
        _ => 's',
    }
}

/// Debian's Sendmail, run as a private instance.
pub struct SendmailMta;

/// The Sendmail target.
pub static SENDMAIL: SendmailMta = SendmailMta;

impl Mta for SendmailMta {
    fn name(&self) -> &'static str {
        "sendmail"
    }

    fn version(&self) -> Result<String, TargetError> {
        installed()?;
        // `-d0.1` prints the version first; Sendmail then looks up its own
        // host name, which can take a resolver timeout: read the line and stop it.
        let mut child = Command::new(binary())
            .args(["-d0.1", "-bt", "-C", "/dev/null"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| TargetError::io(format!("run {}", binary().display()), e))?;
        let found = child.stdout.take().and_then(|out| {
            use std::io::BufRead;
            std::io::BufReader::new(out)
                .lines()
                .take(5)
                .map_while(Result::ok)
                .find_map(|l| l.strip_prefix("Version ").map(|v| v.trim().to_string()))
        });
        let _ = child.kill();
        let _ = child.wait();
        found.ok_or_else(|| TargetError::Command {
            command: format!("{} -d0.1 -bt", binary().display()),
            output: "no `Version` line".into(),
        })
    }

    fn support(&self, _knob: Knob) -> Support {
        // Every knob maps onto an option or the queue-run interval; the
        // retry maximum is MinQueueAge plus the queue-run interval (no back-off).
        Support::Yes
    }

    fn start(&self, spec: &Spec) -> Result<Box<dyn Instance>, TargetError> {
        Sendmail::start(spec).map(|s| Box::new(s) as Box<dyn Instance>)
    }
}

fn installed() -> Result<(), TargetError> {
    // Executing a set-group-id binary clears the parent-death signal that
    // ties the daemon's life to mtaspec's; scripts/install-sendmail clears the bit.
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(binary()) {
        if m.permissions().mode() & 0o6000 != 0 {
            return Err(TargetError::NotInstalled {
                tool: "sendmail without its set-group-id bit",
                path: binary(),
                fix: INSTALL,
            });
        }
    }
    let cf = cf_dir().join("m4/cf.m4");
    for (tool, path) in [
        ("sendmail", binary()),
        ("sendmail-cf (m4 macros)", cf),
        ("m4", PathBuf::from(M4)),
        ("unshare (util-linux)", PathBuf::from(UNSHARE)),
    ] {
        if !path.exists() {
            return Err(TargetError::NotInstalled {
                tool,
                path,
                fix: INSTALL,
            });
        }
    }
    Ok(())
}

/// Settings in order: the first spelling of a name is kept, later values replace earlier ones.
#[derive(Debug, Default, Clone)]
struct Options(Vec<(String, String)>);

impl Options {
    fn put(&mut self, k: &str, v: String) {
        match self.0.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(k)) {
            Some(slot) => slot.1 = v,
            None => self.0.push((k.to_string(), v)),
        }
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
    }
}

fn forbid(key: &str) -> Result<(), TargetError> {
    if let Some((k, why)) = LAB_OWNED.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)) {
        return Err(TargetError::Forbidden {
            key: k.to_string(),
            why,
        });
    }
    Ok(())
}

/// A setting must fit on one `O` line.
fn check_value(k: &str, v: &str) -> Result<(), TargetError> {
    if v.contains(['\n', '\r']) || k.is_empty() {
        return Err(TargetError::BadSetting(format!("{k}={v}")));
    }
    Ok(())
}

/// A running private Sendmail instance.
#[derive(Debug)]
pub struct Sendmail {
    dir: PathBuf,
    cf: PathBuf,
    listen: Ipv4Addr,
    /// `unshare`, whose child (PID 1 of the instance's PID namespace) is the daemon.
    daemon: Option<Child>,
    /// The thread that forked `daemon` (see [`spawn_kept`]).
    keeper: Option<Keeper>,
    /// Queue runs started by flush(), each in its own PID namespace.
    flushes: Mutex<Vec<Child>>,
    syslog: Option<Syslog>,
    settings: BTreeMap<String, String>,
    knobs: Knobs,
    started: Duration,
}

impl Sendmail {
    /// Write the instance's files, start the daemon, and wait until it greets on `listen`:25.
    pub fn start(spec: &Spec) -> Result<Sendmail, TargetError> {
        let begin = Instant::now();
        installed()?;
        if let Some(dir) = &spec.config_dir {
            return Err(TargetError::UserConfig {
                path: dir.clone(),
                what: "sendmail takes no configuration folder; give its options with --set Option=value (e.g. --set MaxHopCount=30)".into(),
            });
        }
        for (k, v) in spec.sets.iter().chain(&spec.set) {
            forbid(k)?;
            check_value(k, v)?;
        }
        let listen = spec.listen;
        if !listen.is_loopback() {
            return Err(TargetError::io(
                format!("listen on {listen}"),
                std::io::Error::other("instances listen on loopback addresses only"),
            ));
        }
        let dir = spec.lab_dir.join(&spec.instance);
        for sub in ["queue", "dev/upper", "dev/work"] {
            std::fs::create_dir_all(dir.join(sub))
                .map_err(|e| TargetError::io(format!("create {}", dir.join(sub).display()), e))?;
        }
        let write = |name: &str, text: &str| {
            std::fs::write(dir.join(name), text)
                .map_err(|e| TargetError::io(format!("write {}", dir.join(name).display()), e))
        };
        // Double bounces go to postmaster: discard them rather than try a local mailbox.
        write(
            "aliases",
            "postmaster: /dev/null\nMAILER-DAEMON: postmaster\n",
        )?;
        write("service.switch", "hosts dns files\naliases files\n")?;
        write("relay-domains", "")?;
        // The mount point of /dev/log in the overlay; the socket is bound over it.
        write("dev/upper/log", "")?;
        let help = root().join("etc/mail/helpfile");
        std::fs::copy(&help, dir.join("helpfile"))
            .map_err(|e| TargetError::io(format!("copy {}", help.display()), e))?;

        let mc = MC
            .replace("@DIR@", &dir.display().to_string())
            .replace("@LISTEN@", &listen.to_string())
            .replace("@HOSTNAME@", lab::TARGET_HOSTNAME);
        write("sendmail.mc", &mc)?;
        let cf_text = run(Command::new(M4)
            .arg(format!("-D_CF_DIR_={}/", cf_dir().display()))
            .arg(cf_dir().join("m4/cf.m4"))
            .arg(dir.join("sendmail.mc")))?;

        // Layers, last wins: the lab's fast timers, --set, the scenario's
        // knobs, the scenario's raw settings.
        let mut opts = Options::default();
        for (k, v) in LAB_DEFAULTS {
            opts.put(k, v.to_string());
        }
        let mut queue_run = None;
        let knob_layer = |opts: &mut Options,
                          queue_run: &mut Option<Duration>,
                          k: &Knob,
                          v: &Value| {
            match option(*k) {
                Some(o) => opts.put(o, option_value(*v)),
                None if *k == Knob::QueueRun => *queue_run = v.as_time(),
                None => {}
            }
        };
        for (k, v) in &spec.defaults {
            knob_layer(&mut opts, &mut queue_run, k, v);
        }
        for (k, v) in &spec.sets {
            opts.put(k, v.clone());
        }
        for (k, v) in &spec.knobs {
            knob_layer(&mut opts, &mut queue_run, k, v);
        }
        for (k, v) in &spec.set {
            opts.put(k, v.clone());
        }
        // The queue-run interval bounds the longest gap between attempts
        // (MinQueueAge + interval): shorten it to meet a retry maximum
        // unless the scenario sets the interval itself.
        let stock = |o: &str| STOCK.iter().find(|(n, _)| *n == o).map(|(_, v)| *v);
        let time_of = |opts: &Options, o: &str| {
            opts.get(o)
                .or_else(|| stock(o))
                .and_then(|v| parse_time(v, default_unit(o)))
        };
        let retry_min = time_of(&opts, "MinQueueAge").unwrap_or_default();
        let mut interval = queue_run.unwrap_or(Duration::from_secs(1));
        let retry_max = spec
            .knobs
            .get(&Knob::RetryMax)
            .or(spec.defaults.get(&Knob::RetryMax))
            .and_then(|v| v.as_time());
        if let (Some(max), false) = (retry_max, spec.knobs.contains_key(&Knob::QueueRun)) {
            if retry_min + interval > max {
                interval = max.saturating_sub(retry_min);
            }
        }
        let interval = Duration::from_secs(ceil_secs(interval).max(1));

        // STARTTLS with the lab's per-run certificate (Sendmail wants its
        // key readable by its owner only, and refuses TLS without a CA path
        // and file: "STARTTLS: CACertPath missing"; it verifies no client).
        if let Some(tls) = &spec.tls {
            let tls_dir = dir.join("tls");
            std::fs::create_dir_all(&tls_dir)
                .map_err(|e| TargetError::io(format!("create {}", tls_dir.display()), e))?;
            for (src, name, option) in [
                (&tls.cert_file, "cert.pem", "ServerCertFile"),
                (&tls.key_file, "key.pem", "ServerKeyFile"),
                (&tls.cert_file, "cert.pem", "CACertFile"),
            ] {
                let to = tls_dir.join(name);
                std::fs::copy(src, &to)
                    .map_err(|e| TargetError::io(format!("copy {}", src.display()), e))?;
                std::fs::set_permissions(&to, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                    .map_err(|e| TargetError::io(format!("chmod {}", to.display()), e))?;
                if opts.get(option).is_none() {
                    opts.put(option, to.display().to_string());
                }
            }
            if opts.get("CACertPath").is_none() {
                opts.put("CACertPath", tls_dir.display().to_string());
            }
        }
        let mut cf = cf_text;
        cf.push_str("\n# mtaspec: knobs and settings (later lines win)\n");
        for (k, v) in &opts.0 {
            cf.push_str(&format!("O {k}={v}\n"));
        }
        let cf_path = dir.join("sendmail.cf");
        write("sendmail.cf", &cf)?;

        // Build the alias database; Sendmail also reports options it does not know here.
        let check = Command::new(binary())
            .arg("-C")
            .arg(&cf_path)
            .arg("-bi")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| TargetError::io("run sendmail -bi", e))?;
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        if let Some(line) = said
            .lines()
            .find(|l| l.contains("unknown option") || l.contains("bad option"))
        {
            return Err(TargetError::Rejected(format!(
                "{} (Sendmail: {})",
                line.rsplit(": ").next().unwrap_or(line).trim(),
                line.trim()
            )));
        }
        if !check.status.success() {
            return Err(TargetError::Command {
                command: format!("sendmail -C {} -bi", cf_path.display()),
                output: said,
            });
        }

        let syslog = Syslog::start(&dir)?;
        let mut settings: BTreeMap<String, String> = opts.0.iter().cloned().collect();
        settings.insert("-q".into(), sendmail_time(interval));
        settings.insert(
            "DaemonPortOptions".into(),
            format!("Addr={listen}, Port=25"),
        );

        // Effective knobs: what the instance runs with.
        let mut knobs = Knobs::new();
        for k in Knob::ALL {
            let v = match (k, option(k)) {
                (Knob::HopLimit, Some(o)) => opts
                    .get(o)
                    .or_else(|| stock(o))
                    .and_then(|v| v.trim().parse::<u32>().ok())
                    .map(|n| Value::Count(n + 1)),
                (Knob::BounceLifetime, Some(o)) => time_of(&opts, o)
                    .or_else(|| time_of(&opts, "Timeout.queuereturn"))
                    .map(Value::Time),
                (_, Some(o)) => time_of(&opts, o).map(Value::Time),
                (Knob::QueueRun, None) => Some(Value::Time(interval)),
                (Knob::RetryMax, None) => Some(Value::Time(retry_min + interval)),
                _ => None,
            };
            if let Some(v) = v {
                knobs.insert(k, v);
            }
        }

        let out = std::fs::File::create(dir.join("sendmail.out"))
            .map_err(|e| TargetError::io("create sendmail.out", e))?;
        let mut cmd = in_namespaces(&dir)?;
        cmd.arg(binary())
            .arg("-C")
            .arg(&cf_path)
            .arg("-bD")
            .arg(format!("-q{}", sendmail_time(interval)))
            .stdin(Stdio::null())
            .stdout(out.try_clone().map_err(|e| TargetError::io("dup log", e))?)
            .stderr(out);
        let (daemon, keeper) = spawn_kept(cmd)
            .map_err(|e| TargetError::io(format!("start {}", binary().display()), e))?;
        let mut sm = Sendmail {
            dir,
            cf: cf_path,
            listen,
            daemon: Some(daemon),
            keeper: Some(keeper),
            flushes: Mutex::new(Vec::new()),
            syslog: Some(syslog),
            settings,
            knobs,
            started: Duration::ZERO,
        };
        let addr = sm.smtp_addr();
        let limit = Duration::from_secs(15);
        let ready = super::wait_for_greeting(addr, limit, || {
            super::still_running(&mut sm.daemon, "sendmail")
        });
        if let Err(why) = ready {
            return Err(super::not_ready(addr, limit, &why, sm.log_tail(30)));
        }
        sm.started = begin.elapsed();
        Ok(sm)
    }

    fn kill(&mut self, grace: Duration) {
        if let Some(d) = self.daemon.take() {
            stop_namespace(d, grace);
        }
        if let Some(k) = self.keeper.take() {
            k.release();
        }
        let flushes = std::mem::take(&mut *self.flushes.lock().unwrap_or_else(|p| p.into_inner()));
        for f in flushes {
            stop_namespace(f, Duration::ZERO);
        }
        if let Some(s) = self.syslog.take() {
            s.stop();
        }
    }
}

/// The thread that forked a child and lives until [`Keeper::release`]:
/// PR_SET_PDEATHSIG fires when the forking *thread* ends, and the async
/// runtime's blocking threads end after 10 s idle. Started from one of them,
/// the daemon was killed ~10 s into every run (retries stopped after 3-6
/// attempts, nothing in Sendmail's log).
#[derive(Debug)]
struct Keeper {
    stop: mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Keeper {
    /// Let the thread end (after the child is gone).
    fn release(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}

/// Spawn `cmd` from a thread of its own that lives until the keeper is released.
fn spawn_kept(mut cmd: Command) -> std::io::Result<(Child, Keeper)> {
    let (child_tx, child_rx) = mpsc::channel();
    let (stop, stop_rx) = mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("sendmail-daemon".into())
        .spawn(move || {
            let spawned = cmd.spawn();
            let ok = spawned.is_ok();
            let _ = child_tx.send(spawned);
            if ok {
                // Returns when the sender is dropped.
                let _ = stop_rx.recv();
            }
        })?;
    let child = child_rx
        .recv()
        .map_err(|_| std::io::Error::other("the spawning thread ended"))??;
    Ok((child, Keeper { stop, thread }))
}

/// `unshare --pid --fork --kill-child`, started in a new mount namespace in
/// which `dir/dev/log.sock` is `/dev/log`; the caller appends the command.
///
/// The PID namespace's first process is the command: when it exits the
/// kernel kills everything else in the namespace, and when `unshare` dies
/// (SIGKILL from stop(), or the death of mtaspec through PDEATHSIG) so does it.
fn in_namespaces(dir: &Path) -> Result<Command, TargetError> {
    let c = |s: String| {
        CString::new(s)
            .map_err(|e| TargetError::io("path with a NUL byte", std::io::Error::other(e)))
    };
    let overlay_opts = c(format!(
        "lowerdir=/dev,upperdir={},workdir={}",
        dir.join("dev/upper").display(),
        dir.join("dev/work").display()
    ))?;
    let sock = c(dir.join("dev/log.sock").display().to_string())?;
    let mut cmd = Command::new(UNSHARE);
    cmd.args(["--pid", "--fork", "--kill-child", "--"]);
    // SAFETY: only async-signal-safe system calls (prctl, unshare, mount) on
    // strings prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            use nix::mount::{mount, MsFlags};
            nix::libc::prctl(nix::libc::PR_SET_PDEATHSIG, nix::libc::SIGKILL);
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)?;
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            )?;
            mount(
                Some("overlay"),
                "/dev",
                Some("overlay"),
                MsFlags::empty(),
                Some(overlay_opts.as_c_str()),
            )?;
            mount(
                Some(sock.as_c_str()),
                "/dev/log",
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )?;
            Ok(())
        });
    }
    Ok(cmd)
}

/// SIGTERM the namespace's first process, wait up to `grace`, then SIGKILL
/// it (the kernel then kills the rest of the namespace) and `unshare`, and reap.
fn stop_namespace(mut child: Child, grace: Duration) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let pid = child.id();
    let inits = children_of(pid);
    let signal_all = |sig| {
        for c in &inits {
            let _ = kill(Pid::from_raw(*c), sig);
        }
    };
    if !grace.is_zero() {
        signal_all(Signal::SIGTERM);
        let until = Instant::now() + grace;
        while Instant::now() < until {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    signal_all(Signal::SIGKILL);
    let _ = child.kill();
    let _ = child.wait();
}

/// The processes whose parent is `pid` (from /proc/N/stat: not every kernel
/// has /proc/N/task/N/children).
fn children_of(pid: u32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let n: i32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            // "N (comm) S PPID ...": comm may hold spaces and parentheses.
            let after = &stat[stat.rfind(')')? + 1..];
            let ppid: u32 = after.split_whitespace().nth(1)?.parse().ok()?;
            (ppid == pid).then_some(n)
        })
        .collect()
}

impl Instance for Sendmail {
    fn mta(&self) -> &'static str {
        "sendmail"
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
        let out = run(Command::new(binary())
            .arg("-C")
            .arg(&self.cf)
            .arg("-bp")
            .stdin(Stdio::null()))?;
        Ok(parse_mailq(&out))
    }

    fn flush(&self) -> Result<(), TargetError> {
        // One queue run now, ignoring MinQueueAge; it runs on its own while
        // the caller goes on, and stop() ends it if it is still running.
        let mut flushes = self.flushes.lock().unwrap_or_else(|p| p.into_inner());
        flushes.retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_))));
        let mut cmd = in_namespaces(&self.dir)?;
        cmd.arg(binary())
            .arg("-C")
            .arg(&self.cf)
            .args(["-qf", "-OMinQueueAge=0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd
            .spawn()
            .map_err(|e| TargetError::io("start a sendmail queue run", e))?;
        flushes.push(child);
        Ok(())
    }

    fn log_tail(&self, n: usize) -> String {
        super::tail_files(
            &[&self.dir.join("maillog"), &self.dir.join("sendmail.out")],
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

impl Drop for Sendmail {
    fn drop(&mut self) {
        self.kill(Duration::from_secs(2));
    }
}

/// `sendmail -bp` (mailq) output: an id line with size, time and sender,
/// then an optional `(reason)` line and one line per recipient.
pub fn parse_mailq(text: &str) -> Vec<Queued> {
    let mut out: Vec<Queued> = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with("-----") || t.contains("Total requests") {
            continue;
        }
        if !line.starts_with([' ', '\t']) {
            let mut words = t.split_whitespace();
            let Some(id) = words.next() else { continue };
            // Size follows the id; a header line ("/queue (1 request)") has none.
            let rest: Vec<&str> = words.collect();
            if rest.first().is_none_or(|s| s.parse::<u64>().is_err()) {
                continue;
            }
            let sender = rest
                .last()
                .map(|s| s.trim_matches(['<', '>']).to_string())
                .unwrap_or_default();
            out.push(Queued {
                id: id.trim_end_matches(['*', 'X', '-']).to_string(),
                sender,
                recipients: Vec::new(),
                reason: None,
            });
        } else if let Some(q) = out.last_mut() {
            if let Some(r) = t.strip_prefix('(').and_then(|r| r.strip_suffix(')')) {
                q.reason = Some(r.to_string());
            } else {
                q.recipients.push(t.trim_matches(['<', '>']).to_string());
            }
        }
    }
    out
}

/// The instance's `/dev/log`: a datagram socket whose messages a thread
/// appends to `maillog` (without the syslog priority), up to [`LOG_CAP`].
#[derive(Debug)]
struct Syslog {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Syslog {
    fn start(dir: &Path) -> Result<Syslog, TargetError> {
        let path = dir.join("dev/log.sock");
        let _ = std::fs::remove_file(&path);
        let sock = UnixDatagram::bind(&path)
            .map_err(|e| TargetError::io(format!("bind {}", path.display()), e))?;
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .map_err(|e| TargetError::io("set the syslog socket's timeout", e))?;
        let log_path = dir.join("maillog");
        let mut log = std::fs::File::create(&log_path)
            .map_err(|e| TargetError::io(format!("create {}", log_path.display()), e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("sendmail-syslog".into())
            .spawn(move || {
                let mut buf = vec![0u8; 16 * 1024];
                let mut written = 0u64;
                while !flag.load(Ordering::Relaxed) {
                    let Ok(n) = sock.recv(&mut buf) else { continue };
                    let line = syslog_line(&buf[..n]);
                    if written + line.len() as u64 + 1 > LOG_CAP {
                        continue;
                    }
                    written += line.len() as u64 + 1;
                    let _ = writeln!(log, "{line}");
                }
            })
            .map_err(|e| TargetError::io("start the syslog thread", e))?;
        Ok(Syslog {
            stop,
            thread: Some(thread),
        })
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One syslog datagram as a log line: `<PRI>` dropped, control characters escaped.
fn syslog_line(d: &[u8]) -> String {
    let text = String::from_utf8_lossy(d);
    let text = text.trim_end_matches(['\n', '\0']);
    let text = match text.strip_prefix('<').and_then(|r| r.split_once('>')) {
        Some((pri, rest)) if pri.chars().all(|c| c.is_ascii_digit()) => rest,
        _ => text,
    };
    text.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

fn run(cmd: &mut Command) -> Result<String, TargetError> {
    let shown = format!("{cmd:?}").replace('"', "");
    let out = cmd
        .output()
        .map_err(|e| TargetError::io(format!("run {shown}"), e))?;
    if !out.status.success() {
        return Err(TargetError::Command {
            command: shown,
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_like_convtime() {
        assert_eq!(parse_time("5d", 'd'), Some(Duration::from_secs(5 * 86400)));
        assert_eq!(parse_time("1h30m", 's'), Some(Duration::from_secs(5400)));
        assert_eq!(parse_time("4", 'h'), Some(Duration::from_secs(4 * 3600)));
        assert_eq!(parse_time("20s", 'd'), Some(Duration::from_secs(20)));
        assert_eq!(parse_time("soon", 's'), None);
        assert_eq!(sendmail_time(Duration::from_millis(1500)), "2s");
    }

    #[test]
    fn hop_limit_counts_the_targets_own_header() {
        assert_eq!(option_value(Value::Count(101)), "100");
        assert_eq!(option_value(Value::Count(1)), "1");
    }

    #[test]
    fn lab_owned_options_are_refused_whatever_their_case() {
        assert!(matches!(
            forbid("daemonportoptions"),
            Err(TargetError::Forbidden { .. })
        ));
        assert!(forbid("MaxHopCount").is_ok());
    }

    #[test]
    fn mailq_output_parses() {
        // As printed by `sendmail -bp` (tabs and spaces as they are).
        let text = concat!(
            "\t\t/tmp/x/queue (1 request)\n",
            "-----Q-ID----- --Size-- -----Q-Time----- ------------Sender/Recipient-----------\n",
            "5B29XYZ1000001*      5 Wed Dec  2 09:33 <alice@src.test>\n",
            "                 (Deferred: 451 4.3.0 try later)\n",
            "\t\t\t\t\t <bob@dest.test>\n",
            "\t\t\t\t\t carol@dest.test\n",
            "\t\tTotal requests: 1\n",
        );
        let q = parse_mailq(text);
        assert_eq!(q.len(), 1, "{q:?}");
        assert_eq!(q[0].id, "5B29XYZ1000001");
        assert_eq!(q[0].sender, "alice@src.test");
        assert_eq!(q[0].recipients, ["bob@dest.test", "carol@dest.test"]);
        assert_eq!(
            q[0].reason.as_deref(),
            Some("Deferred: 451 4.3.0 try later")
        );
        assert!(parse_mailq("/tmp/x/queue is empty\n\t\tTotal requests: 0\n").is_empty());
    }

    #[test]
    fn syslog_priority_is_dropped_and_controls_escaped() {
        assert_eq!(
            syslog_line(b"<22>Dec  2 09:34:04 sm-mta[7]: x\x1b\n"),
            "Dec  2 09:34:04 sm-mta[7]: x\\u{1b}"
        );
    }
}
