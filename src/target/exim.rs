//! Target stage: a private Exim 4 instance (own configuration, spool and log folders) in the lab.
//!
//! The instance runs Debian's exim4-daemon-light, unmodified, unpacked under
//! `$MTASPEC_MTA_ROOT/exim` by `scripts/install-exim`. mtaspec writes the
//! whole configuration (`exim.conf`: main options, a relay ACL, one
//! `dnslookup` router, one `smtp` transport, the retry rules), lays the
//! user's `--set` main options on top, and runs `exim4 -bdf -q<queue_run>`
//! as its own child so that it can always reap and stop it.
//!
//! Knobs: the lifetimes are the cutoffs of the retry rules (one for bounces,
//! `senders=:`, one for everything else) plus `timeout_frozen_after` and
//! `ignore_bounce_errors_after` for frozen messages; the back-off is the
//! rules' first interval, doubled up to `retry_interval_max`; the queue run
//! is the daemon's `-q` interval; the connect timeout is the transport's.

use super::knobs::{Knob, Knobs, Value};
use super::{Instance, Mta, Queued, Spec, Support, TargetError};
use crate::lab;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const INSTALL: &str = "scripts/setup --targets exim";
const UNSHARE: &str = "/usr/bin/unshare";
const CONF_TEMPLATE: &str = include_str!("exim/exim.conf");
/// The user Debian's Exim is built to run as.
const EXIM_USER: &str = "Debian-exim";

/// Where the unpacked package lives: `$MTASPEC_MTA_ROOT/exim` (default /opt/mtaspec/exim).
fn root() -> PathBuf {
    std::env::var_os("MTASPEC_MTA_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/mtaspec"))
        .join("exim")
}

fn exim_bin() -> PathBuf {
    root().join("usr/sbin/exim4")
}

/// Main options the lab owns; a user may not set them.
const LAB_OWNED: &[(&str, &str)] = &[
    ("local_interfaces", "the target must listen on the lab address mtaspec gives each instance (127.0.0.1, 127.0.2.1, ...), never on the fake hosts' addresses"),
    ("daemon_smtp_ports", "the target must listen on port 25 of its lab address"),
    ("daemon_smtp_port", "the target must listen on port 25 of its lab address"),
    ("spool_directory", "the instance keeps its queue in the lab's private folder"),
    ("log_file_path", "mtaspec reads the instance's log from the lab's private folder"),
    ("pid_file_path", "the instance keeps its files in the lab's private folder"),
    ("exim_path", "Exim must re-execute the unpacked binary mtaspec starts"),
    ("primary_hostname", "the lab names the target mta.target.test; DSNs and Received: are judged by that name"),
    ("system_filter", "a system filter could deliver, redirect or drop mail around the router under test"),
    ("exim_user", "the instance's spool and log folders belong to Debian-exim"),
    ("exim_group", "the instance's spool and log folders belong to Debian-exim"),
];

/// Defaults for a private instance: taken unless `--set` says otherwise.
const DEFAULTS: &[(&str, &str)] = &[
    // The lab is IPv4 on loopback: no AAAA look-ups, no IPv6 sockets.
    ("disable_ipv6", "true"),
    // No reverse look-ups or ident queries of the injecting client.
    ("host_lookup", ""),
    ("rfc1413_hosts", ""),
    // Exim purges the environment and warns unless told what to keep.
    ("keep_environment", ""),
    // STARTTLS is offered to every client when the lab gives a certificate
    // (tls_certificate and tls_privatekey are then set by the lab).
    ("tls_advertise_hosts", ""),
    // Exim implements DSN (RFC 3461) but offers it only to hosts listed here;
    // the suites inject NOTIFY, RET and ENVID from the lab's loopback.
    ("dsn_advertise_hosts", "<; 127.0.0.0/8"),
    // Deliver as Debian-exim without re-executing the binary: a re-executed
    // Exim started by Debian-exim with -C would drop root anyway (and log
    // "exim user lost privilege for using -C option" each time).
    ("deliver_drop_privilege", "true"),
    // Every scenario injects at once, and each may keep a queue runner busy.
    ("smtp_accept_max", "500"),
    // A listen backlog for all of them: past Exim's 20 the kernel dropped
    // connections' final ACKs and some clients saw no greeting within 10 s.
    ("smtp_connect_backlog", "1024"),
    ("queue_run_max", "50"),
    ("remote_max_parallel", "4"),
    (
        "log_selector",
        "+smtp_protocol_error +smtp_syntax_error +deliver_time +queue_time +received_recipients +smtp_connection +outgoing_port -queue_run",
    ),
];

/// Exim's own defaults for the knob options the lab may leave unset.
const DEFAULT_VALUES: &[(&str, &str)] = &[
    ("delay_warning", "24h"),
    ("received_headers_max", "30"),
    ("retry_interval_max", "24h"),
];

/// The main option behind a knob, for the knobs that are main options.
fn option(knob: Knob) -> Option<&'static str> {
    match knob {
        Knob::DelayWarning => Some("delay_warning"),
        Knob::RetryMax => Some("retry_interval_max"),
        Knob::HopLimit => Some("received_headers_max"),
        Knob::QueueLifetime => Some("timeout_frozen_after"),
        Knob::BounceLifetime => Some("ignore_bounce_errors_after"),
        // The retry rules, the -q interval and the transport carry these.
        Knob::RetryMin | Knob::QueueRun | Knob::ConnectTimeout => None,
    }
}

/// Whole seconds, rounded up (Exim's times have no finer unit).
fn secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// A knob's value in Exim's syntax.
fn exim_value(knob: Knob, v: Value) -> String {
    match v {
        Value::Count(n) => n.to_string(),
        // Exim repeats the last warning interval: one warning, then the next
        // only after a year (a message never stays queued that long here).
        // 0: no warnings at all.
        Value::Time(d) if knob == Knob::DelayWarning && d.is_zero() => "0s".into(),
        Value::Time(d) if knob == Knob::DelayWarning => format!("{}s:52w", secs(d)),
        // Zero means something else to Exim (a retry rule refuses a zero
        // cutoff; timeout_frozen_after and connect_timeout take 0 as "never" /
        // "the system's"; a zero interval would spin): one second is the
        // shortest it can do.
        Value::Time(d) => format!("{}s", secs(d).max(1)),
    }
}

/// An Exim time (`30s`, `1h30m`, `2d`; a bare number is seconds).
pub fn exim_time(v: &str) -> Option<Duration> {
    let v = v.trim();
    if v.is_empty() {
        return None;
    }
    let mut total = 0u64;
    let mut n: Option<u64> = None;
    for c in v.chars() {
        if let Some(d) = c.to_digit(10) {
            n = Some(n.unwrap_or(0).checked_mul(10)?.checked_add(u64::from(d))?);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            'w' => 7 * 86400,
            _ => return None,
        };
        total = total.checked_add(n.take()?.checked_mul(unit)?)?;
    }
    if let Some(n) = n {
        total = total.checked_add(n)?;
    }
    Some(Duration::from_secs(total))
}

/// The retry rules for the lifetimes and back-off: a fixed interval when
/// `retry_min` and `retry_max` agree, else doubling from `retry_min` (capped
/// by `retry_interval_max`). Bounces (`senders=:`) get their own cutoff.
fn retry_rules(queue_lifetime: &str, bounce_lifetime: &str, min: &str, doubling: bool) -> String {
    let rule = |cutoff: &str| {
        if doubling {
            format!("G,{cutoff},{min},2")
        } else {
            format!("F,{cutoff},{min}")
        }
    };
    format!(
        "*   *   senders=:   {}\n*   *   {}\n",
        rule(bounce_lifetime),
        rule(queue_lifetime)
    )
}

/// Debian's Exim, run as a private instance.
pub struct EximMta;

/// The Exim target.
pub static EXIM: EximMta = EximMta;

impl Mta for EximMta {
    fn name(&self) -> &'static str {
        "exim"
    }

    fn version(&self) -> Result<String, TargetError> {
        installed()?;
        // No configuration file is installed: ask with an empty one.
        let out = run(Command::new(exim_bin()).args(["-C", "/dev/null", "-bV"]))?;
        let version = out
            .lines()
            .find_map(|l| l.strip_prefix("Exim version "))
            .and_then(|l| l.split_whitespace().next())
            .ok_or_else(|| TargetError::Command {
                command: format!("{} -bV", exim_bin().display()),
                output: format!("no `Exim version` line in: {}", out.trim()),
            })?;
        // scripts/install-exim notes the package's revision beside it.
        Ok(
            match std::fs::read_to_string(root().join("DEBIAN-VERSION")) {
                Ok(deb) if !deb.trim().is_empty() => format!("{version} (Debian {})", deb.trim()),
                _ => version.to_string(),
            },
        )
    }

    fn support(&self, _knob: Knob) -> Support {
        Support::Yes
    }

    fn start(&self, spec: &Spec) -> Result<Box<dyn Instance>, TargetError> {
        Exim::start(spec).map(|e| Box::new(e) as Box<dyn Instance>)
    }
}

fn installed() -> Result<(), TargetError> {
    for (tool, path) in [
        ("exim4", exim_bin()),
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

/// A running private Exim instance.
#[derive(Debug)]
pub struct Exim {
    dir: PathBuf,
    conf: PathBuf,
    listen: Ipv4Addr,
    daemon: Option<Child>,
    /// Queue runs started by [`Instance::flush`], reaped on stop.
    flushes: Mutex<Vec<Child>>,
    settings: BTreeMap<String, String>,
    knobs: Knobs,
    started: Duration,
}

/// Refuse a raw setting that would break the lab or the configuration file.
fn check_setting(key: &str, value: &str) -> Result<(), TargetError> {
    if let Some((k, why)) = LAB_OWNED.iter().find(|(k, _)| *k == key) {
        return Err(TargetError::Forbidden {
            key: k.to_string(),
            why,
        });
    }
    if key.is_empty()
        || !key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(TargetError::BadSetting(format!(
            "{key}={value} (an Exim main option name is lowercase letters, digits and _, e.g. delay_warning)"
        )));
    }
    if value.contains(['\n', '\r']) {
        return Err(TargetError::Forbidden {
            key: key.to_string(),
            why: "a value may not span lines: it could add routers or transports around the lab's",
        });
    }
    Ok(())
}

impl Exim {
    /// Write the instance's files, start the daemon, and wait until it greets on `listen`:25.
    pub fn start(spec: &Spec) -> Result<Exim, TargetError> {
        let begin = Instant::now();
        let mut ex = Exim::prepare(spec)?;
        let out = std::fs::File::create(ex.dir.join("daemon.out"))
            .map_err(|e| TargetError::io("create daemon.out", e))?;
        // The daemon is PID 1 of a PID namespace of its own: when it dies,
        // the kernel kills every receiver, queue runner and delivery it
        // started, whatever their process group. `--kill-child` ties it to
        // `unshare`, which is our child (and dies with us: PDEATHSIG).
        let mut cmd = Command::new(UNSHARE);
        cmd.args(["--pid", "--fork", "--kill-child", "--"])
            .arg(exim_bin())
            .arg("-C")
            .arg(&ex.conf)
            .arg("-bdf")
            .arg(format!("-q{}", ex.settings["daemon: -q"]))
            .stdin(Stdio::null())
            .stdout(out.try_clone().map_err(|e| TargetError::io("dup log", e))?)
            .stderr(out)
            // Its own process group: stop() takes down every process in it.
            .process_group(0);
        pdeathsig(&mut cmd);
        ex.daemon = Some(
            cmd.spawn()
                .map_err(|e| TargetError::io(format!("start {}", exim_bin().display()), e))?,
        );
        let addr = ex.smtp_addr();
        let limit = Duration::from_secs(15);
        let conf = ex.conf.clone();
        let ready = super::wait_for_greeting(addr, limit, || {
            // A run interrupted while this instance starts removes the lab
            // folder: give up at once, before Exim logs into (and so
            // re-creates) a folder that is gone.
            if !conf.exists() {
                return Err("the lab folder was removed".into());
            }
            super::still_running(&mut ex.daemon, "exim")
        });
        if let Err(why) = ready {
            return Err(super::not_ready(addr, limit, &why, ex.log_tail(30)));
        }
        ex.started = begin.elapsed();
        Ok(ex)
    }

    /// Check the settings and write the instance's folders and configuration;
    /// nothing runs yet.
    fn prepare(spec: &Spec) -> Result<Exim, TargetError> {
        installed()?;
        if let Some(dir) = &spec.config_dir {
            return Err(TargetError::UserConfig {
                path: dir.clone(),
                what: "a Postfix configuration folder does not apply to exim; give Exim main options with --set NAME=VALUE".into(),
            });
        }
        for (k, v) in spec.sets.iter().chain(&spec.set) {
            check_setting(k, v)?;
        }
        let listen = spec.listen;
        if !listen.is_loopback() {
            return Err(TargetError::io(
                format!("listen on {listen}"),
                std::io::Error::other("instances listen on loopback addresses only"),
            ));
        }
        let owner = nix::unistd::User::from_name(EXIM_USER)
            .ok()
            .flatten()
            .ok_or(TargetError::NotInstalled {
                tool: "the Debian-exim user",
                path: "/etc/passwd".into(),
                fix: INSTALL,
            })?;
        // Exim's receiving and delivering processes run as Debian-exim: they
        // must pass through the lab folder (not list it) to their own.
        allow_traverse(&spec.lab_dir)?;
        let dir = spec.lab_dir.join(&spec.instance);
        for sub in ["", "spool", "log"] {
            let d = dir.join(sub);
            std::fs::create_dir_all(&d)
                .map_err(|e| TargetError::io(format!("create {}", d.display()), e))?;
        }
        allow_traverse(&dir)?;
        for sub in ["spool", "log"] {
            let d = dir.join(sub);
            nix::unistd::chown(&d, Some(owner.uid), Some(owner.gid)).map_err(|e| {
                TargetError::io(format!("chown {} to {EXIM_USER}", d.display()), e.into())
            })?;
            std::fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o750))
                .map_err(|e| TargetError::io(format!("chmod {}", d.display()), e))?;
        }

        // Layers, last wins: defaults and the lab's fast timers, then --set,
        // then the scenario's knobs and raw settings, then what the lab needs.
        let knobs = super::knobs::layered(&spec.defaults, &spec.knobs);
        let mut settings: BTreeMap<String, String> = DEFAULTS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for (k, v) in &spec.defaults {
            if let Some(o) = option(*k) {
                settings.insert(o.into(), exim_value(*k, *v));
            }
        }
        settings.extend(spec.sets.iter().cloned());
        for (k, v) in &spec.knobs {
            if let Some(o) = option(*k) {
                settings.insert(o.into(), exim_value(*k, *v));
            }
        }
        settings.extend(spec.set.iter().cloned());
        let d = dir.display();
        for (k, v) in [
            ("exim_path", exim_bin().display().to_string()),
            ("spool_directory", format!("{d}/spool")),
            ("log_file_path", format!("{d}/log/%slog")),
            ("pid_file_path", format!("{d}/exim.pid")),
            ("primary_hostname", lab::TARGET_HOSTNAME.to_string()),
            ("local_interfaces", format!("<; {listen}")),
            ("daemon_smtp_ports", "25".into()),
        ] {
            settings.insert(k.into(), v);
        }
        // The lab's per-run certificate: a copy Debian-exim may read (Exim
        // reads it in the receiving process, which runs as Debian-exim).
        if let Some(tls) = &spec.tls {
            let tls_dir = dir.join("tls");
            std::fs::create_dir_all(&tls_dir)
                .map_err(|e| TargetError::io(format!("create {}", tls_dir.display()), e))?;
            for (src, name, option) in [
                (&tls.cert_file, "cert.pem", "tls_certificate"),
                (&tls.key_file, "key.pem", "tls_privatekey"),
            ] {
                let to = tls_dir.join(name);
                std::fs::copy(src, &to)
                    .map_err(|e| TargetError::io(format!("copy {}", src.display()), e))?;
                nix::unistd::chown(&to, Some(owner.uid), Some(owner.gid)).map_err(|e| {
                    TargetError::io(format!("chown {} to {EXIM_USER}", to.display()), e.into())
                })?;
                settings.insert(option.into(), to.display().to_string());
            }
            if !spec
                .set
                .iter()
                .chain(&spec.sets)
                .any(|(k, _)| k == "tls_advertise_hosts")
            {
                settings.insert("tls_advertise_hosts".into(), "*".into());
            }
        }

        // The knobs that are not main options: retry rules, -q, the transport.
        let time = |k: Knob| {
            knobs
                .get(&k)
                .map(|v| exim_value(k, *v))
                .unwrap_or_else(|| "30s".into())
        };
        let retry_min = time(Knob::RetryMin);
        let retry_max = settings
            .get("retry_interval_max")
            .cloned()
            .unwrap_or_else(|| "24h".into());
        let doubling = exim_time(&retry_max) != exim_time(&retry_min);
        let queue_lifetime = time(Knob::QueueLifetime);
        let bounce_lifetime = time(Knob::BounceLifetime);
        let queue_run = time(Knob::QueueRun);
        let connect_timeout = time(Knob::ConnectTimeout);
        let main: String = settings
            .iter()
            .map(|(k, v)| format!("{k} = {v}\n"))
            .collect();
        let text = CONF_TEMPLATE
            .replace("@MAIN@", main.trim_end())
            .replace("@CONNECT_TIMEOUT@", &connect_timeout)
            .replace(
                "@RETRY@",
                retry_rules(&queue_lifetime, &bounce_lifetime, &retry_min, doubling).trim_end(),
            );
        let conf = dir.join("exim.conf");
        std::fs::write(&conf, text).map_err(|e| TargetError::io("write exim.conf", e))?;
        // Exim reads its configuration as root only if no one else may write it.
        std::fs::set_permissions(&conf, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .map_err(|e| TargetError::io("chmod exim.conf", e))?;
        // Unknown options and bad values: Exim says which line, before it runs.
        run(Command::new(exim_bin()).arg("-C").arg(&conf).arg("-bV"))?;

        let effective = effective_knobs(
            &settings,
            &retry_min,
            &queue_lifetime,
            &bounce_lifetime,
            &queue_run,
            &connect_timeout,
        );
        settings.insert(
            "retry rules".into(),
            retry_rules(&queue_lifetime, &bounce_lifetime, &retry_min, doubling)
                .trim_end()
                .replace('\n', "; "),
        );
        settings.insert(
            "remote_smtp: connect_timeout".into(),
            connect_timeout.clone(),
        );
        settings.insert("daemon: -q".into(), queue_run.clone());
        Ok(Exim {
            dir,
            conf,
            listen,
            daemon: None,
            flushes: Mutex::new(Vec::new()),
            settings,
            knobs: effective,
            started: Duration::ZERO,
        })
    }

    fn exim(&self) -> Command {
        let mut cmd = Command::new(exim_bin());
        cmd.arg("-C").arg(&self.conf);
        cmd
    }

    fn kill(&mut self, grace: Duration) {
        let flushes = std::mem::take(&mut *self.flushes.lock().unwrap_or_else(|p| p.into_inner()));
        let Some(child) = self.daemon.take() else {
            return;
        };
        // Once `unshare` has gone, its child, the daemon (PID 1 of the
        // instance's PID namespace), and with it every process of that
        // namespace are dead. The process group holds them and any flush:
        // it is killed too, in case one was still being forked.
        super::stop_group(child, grace);
        for mut f in flushes {
            let _ = f.kill();
            let _ = f.wait();
        }
        // A process that left the group (or was being forked while it was
        // killed) still names our configuration: kill until none is left.
        let until = Instant::now() + grace;
        while kill_strays(&self.conf) > 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The effective neutral knobs of an instance with these main options and
/// these values of the knobs that are not main options.
fn effective_knobs(
    settings: &BTreeMap<String, String>,
    retry_min: &str,
    queue_lifetime: &str,
    bounce_lifetime: &str,
    queue_run: &str,
    connect_timeout: &str,
) -> Knobs {
    let get = |o: &str| {
        settings.get(o).map(String::as_str).or_else(|| {
            DEFAULT_VALUES
                .iter()
                .find(|(n, _)| *n == o)
                .map(|(_, v)| *v)
        })
    };
    let t = |v: Option<&str>| v.and_then(exim_time).map(Value::Time);
    let mut k = Knobs::new();
    let mut put = |knob: Knob, v: Option<Value>| {
        if let Some(v) = v {
            k.insert(knob, v);
        }
    };
    let min = exim_time(retry_min);
    let max = t(get("retry_interval_max")).and_then(Value::as_time);
    put(
        Knob::RetryMin,
        min.zip(max).map(|(a, b)| Value::Time(a.min(b))),
    );
    // A retry that is due waits for the next queue run (-q): the longest
    // gap between attempts is the retry interval plus the queue-run interval.
    let run = exim_time(queue_run).unwrap_or_default();
    put(Knob::RetryMax, max.map(|m| Value::Time(m + run)));
    put(Knob::QueueRun, t(Some(queue_run)));
    put(Knob::ConnectTimeout, t(Some(connect_timeout)));
    // A list of times: the first warning comes after the first.
    put(
        Knob::DelayWarning,
        t(get("delay_warning").map(|v| v.split(':').next().unwrap_or(v))),
    );
    put(
        Knob::HopLimit,
        get("received_headers_max")
            .and_then(|v| v.trim().parse().ok())
            .map(Value::Count),
    );
    // A message gives up at the retry cutoff, or sooner when it is frozen
    // and timeout_frozen_after is shorter; bounces likewise.
    let shorter = |cutoff: &str, frozen: Option<&str>| {
        let c = exim_time(cutoff)?;
        Some(Value::Time(match frozen.and_then(exim_time) {
            Some(f) if !f.is_zero() => c.min(f),
            _ => c,
        }))
    };
    put(
        Knob::QueueLifetime,
        shorter(queue_lifetime, get("timeout_frozen_after")),
    );
    put(
        Knob::BounceLifetime,
        shorter(bounce_lifetime, get("timeout_frozen_after")),
    );
    k
}

/// Let others pass through `dir` (not list it): mode | 0o111.
fn allow_traverse(dir: &Path) -> Result<(), TargetError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(dir)
        .map_err(|e| TargetError::io(format!("stat {}", dir.display()), e))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o011 != 0o011 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o011))
            .map_err(|e| TargetError::io(format!("chmod {}", dir.display()), e))?;
    }
    Ok(())
}

fn pdeathsig(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe; it only asks the kernel to kill the
    // child if mtaspec dies, so nothing outlives the harness.
    unsafe {
        cmd.pre_exec(|| {
            nix::libc::prctl(nix::libc::PR_SET_PDEATHSIG, nix::libc::SIGKILL);
            Ok(())
        });
    }
}

/// SIGKILL every live process whose command line names `conf`; how many there were.
fn kill_strays(conf: &Path) -> usize {
    let needle = conf.as_os_str().as_encoded_bytes();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut found = 0;
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        // A zombie has an empty command line: only live processes match.
        if cmdline.split(|b| *b == 0).any(|arg| arg == needle) {
            found += 1;
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    found
}

impl Instance for Exim {
    fn mta(&self) -> &'static str {
        "exim"
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
        let out = run(self.exim().arg("-bp"))?;
        let mut queued = parse_queue(&out);
        for q in &mut queued {
            if q.reason.is_none() {
                // The message's own log says why the last attempt failed.
                let log = run(self.exim().arg("-Mvl").arg(&q.id)).unwrap_or_default();
                q.reason = last_deferral(&log);
            }
        }
        Ok(queued)
    }

    fn flush(&self) -> Result<(), TargetError> {
        // A forced queue run (frozen messages too) delivers one message after
        // another: run it beside the daemon, in its process group, reaped on stop.
        let mut cmd = self.exim();
        cmd.arg("-qff")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(d) = &self.daemon {
            cmd.process_group(d.id() as i32);
        }
        pdeathsig(&mut cmd);
        let child = cmd
            .spawn()
            .map_err(|e| TargetError::io("start exim -qff", e))?;
        let mut flushes = self.flushes.lock().unwrap_or_else(|p| p.into_inner());
        flushes.retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_))));
        flushes.push(child);
        Ok(())
    }

    fn log_tail(&self, n: usize) -> String {
        super::tail_files(
            &[
                &self.dir.join("log/mainlog"),
                &self.dir.join("log/paniclog"),
                &self.dir.join("daemon.out"),
            ],
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

impl Drop for Exim {
    fn drop(&mut self) {
        self.kill(Duration::from_secs(2));
    }
}

/// `exim -bp`: a line `age size id <sender> [*** frozen ***]`, then one
/// line per recipient (`D ` before those already delivered), then a blank line.
fn parse_queue(out: &str) -> Vec<Queued> {
    let mut queued: Vec<Queued> = Vec::new();
    for line in out.lines() {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let is_header = fields.len() >= 4 && fields[3].starts_with('<');
        if is_header {
            let sender = fields[3]
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string();
            queued.push(Queued {
                id: fields[2].to_string(),
                sender,
                recipients: Vec::new(),
                reason: line
                    .contains("*** frozen ***")
                    .then(|| "frozen".to_string()),
            });
        } else if let Some(q) = queued.last_mut() {
            match fields.as_slice() {
                ["D", ..] => {}
                [rcpt, ..] => q.recipients.push(rcpt.to_string()),
                [] => {}
            }
        }
    }
    queued
}

/// The reason of the last deferral or failure in a message log (`exim -Mvl`).
fn last_deferral(log: &str) -> Option<String> {
    log.lines()
        .rev()
        .find(|l| l.contains(" defer (") || l.contains(" == ") || l.contains(" ** "))
        .map(|l| {
            l.split_once(": ")
                .map(|(_, why)| why)
                .unwrap_or(l)
                .trim()
                .to_string()
        })
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
    fn times_parse_like_exim() {
        assert_eq!(exim_time("30s"), Some(Duration::from_secs(30)));
        assert_eq!(exim_time("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(exim_time("2d"), Some(Duration::from_secs(172800)));
        assert_eq!(exim_time("45"), Some(Duration::from_secs(45)));
        assert_eq!(exim_time("0s"), Some(Duration::ZERO));
        assert_eq!(exim_time("soon"), None);
        assert_eq!(exim_time("m"), None);
        assert_eq!(exim_time(""), None);
    }

    #[test]
    fn knob_values_round_up_and_intervals_stay_positive() {
        let t = |ms| Value::Time(Duration::from_millis(ms));
        assert_eq!(exim_value(Knob::QueueLifetime, t(1500)), "2s");
        assert_eq!(exim_value(Knob::QueueLifetime, t(0)), "1s");
        assert_eq!(exim_value(Knob::BounceLifetime, t(0)), "1s");
        assert_eq!(exim_value(Knob::ConnectTimeout, t(0)), "1s");
        assert_eq!(exim_value(Knob::QueueRun, t(0)), "1s");
        assert_eq!(exim_value(Knob::RetryMin, t(200)), "1s");
        assert_eq!(exim_value(Knob::HopLimit, Value::Count(101)), "101");
        assert_eq!(exim_value(Knob::DelayWarning, t(2000)), "2s:52w");
        assert_eq!(exim_value(Knob::DelayWarning, t(0)), "0s");
    }

    #[test]
    fn retry_rules_fixed_or_doubling_with_a_bounce_rule_first() {
        assert_eq!(
            retry_rules("30s", "10s", "1s", false),
            "*   *   senders=:   F,10s,1s\n*   *   F,30s,1s\n"
        );
        assert_eq!(
            retry_rules("5s", "5s", "1s", true),
            "*   *   senders=:   G,5s,1s,2\n*   *   G,5s,1s,2\n"
        );
    }

    #[test]
    fn effective_knobs_read_back_options_and_defaults() {
        let mut s = BTreeMap::new();
        s.insert("retry_interval_max".to_string(), "2s".to_string());
        s.insert("timeout_frozen_after".to_string(), "5s".to_string());
        s.insert("delay_warning".to_string(), "3s:52w".to_string());
        let k = effective_knobs(&s, "1s", "30s", "8s", "1s", "2s");
        let secs = |n| Some(Value::Time(Duration::from_secs(n)));
        assert_eq!(k.get(&Knob::RetryMin).copied(), secs(1));
        // The 2 s retry interval, then up to one 1 s queue-run interval.
        assert_eq!(k.get(&Knob::RetryMax).copied(), secs(3));
        // Frozen messages go after 5 s, before the 30 s cutoff.
        assert_eq!(k.get(&Knob::QueueLifetime).copied(), secs(5));
        assert_eq!(k.get(&Knob::BounceLifetime).copied(), secs(5));
        assert_eq!(k.get(&Knob::DelayWarning).copied(), secs(3));
        // Unset: Exim's defaults.
        s.remove("delay_warning");
        let k = effective_knobs(&s, "1s", "30s", "8s", "1s", "2s");
        assert_eq!(k.get(&Knob::DelayWarning).copied(), secs(86400));
        assert_eq!(k.get(&Knob::HopLimit).copied(), Some(Value::Count(30)));
        // retry_min above the cap: the cap wins.
        s.insert("retry_interval_max".to_string(), "1s".to_string());
        let k = effective_knobs(&s, "3s", "30s", "30s", "1s", "2s");
        assert_eq!(k.get(&Knob::RetryMin).copied(), secs(1));
    }

    #[test]
    fn settings_that_break_the_lab_are_refused() {
        assert!(matches!(
            check_setting("local_interfaces", "0.0.0.0"),
            Err(TargetError::Forbidden { .. })
        ));
        assert!(matches!(
            check_setting("system_filter", "/etc/filter"),
            Err(TargetError::Forbidden { .. })
        ));
        assert!(matches!(
            check_setting("delay_warning", "1s\nbegin routers"),
            Err(TargetError::Forbidden { .. })
        ));
        assert!(matches!(
            check_setting("Delay-Warning", "1s"),
            Err(TargetError::BadSetting(_))
        ));
        assert!(check_setting("delay_warning", "10s").is_ok());
    }

    #[test]
    fn queue_listing_parses_senders_recipients_and_frozen() {
        let out = "\
 0m   1.2K 1tUqYB-000abc-Xy <alice@src.test>
          bob@dest.test
        D carol@dest.test

 3m    301 1tUqYC-000abd-Zz <> *** frozen ***
          alice@src.test

";
        let q = parse_queue(out);
        assert_eq!(q.len(), 2);
        assert_eq!(q[0].id, "1tUqYB-000abc-Xy");
        assert_eq!(q[0].sender, "alice@src.test");
        assert_eq!(q[0].recipients, vec!["bob@dest.test"]);
        assert_eq!(q[0].reason, None);
        assert_eq!(q[1].sender, "");
        assert_eq!(q[1].recipients, vec!["alice@src.test"]);
        assert_eq!(q[1].reason.as_deref(), Some("frozen"));
    }

    #[test]
    fn message_log_gives_the_last_deferral() {
        let log = "\
2026-12-02 10:00:00 Received from <alice@src.test>
2026-12-02 10:00:01 bob@dest.test R=dnslookup T=remote_smtp defer (-44) H=mx10.dest.test [127.0.1.1]: SMTP error from remote mail server after RCPT TO:<bob@dest.test>: 451 4.3.0 try later
";
        assert_eq!(
            last_deferral(log).as_deref(),
            Some("SMTP error from remote mail server after RCPT TO:<bob@dest.test>: 451 4.3.0 try later")
        );
        assert_eq!(last_deferral("2026-12-02 10:00:00 Received"), None);
    }

    /// Root and the unpacked package, or `None` (skipped, with the reason).
    fn exim_here() -> Option<()> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root (Exim reads a -C configuration as root)");
            return None;
        }
        if installed().is_err() {
            eprintln!("skipped: exim is not installed; run {INSTALL}");
            return None;
        }
        Some(())
    }

    fn spec(lab: &Path) -> Spec {
        Spec {
            lab_dir: lab.to_path_buf(),
            instance: "exim".into(),
            listen: Ipv4Addr::LOCALHOST,
            defaults: super::super::knobs::lab_defaults(),
            knobs: Knobs::from([(Knob::QueueLifetime, Value::Time(Duration::from_secs(5)))]),
            sets: vec![("delay_warning".into(), "7s".into())],
            set: Vec::new(),
            config_dir: None,
            tls: None,
            container: None,
        }
    }

    #[test]
    fn queue_lists_a_spooled_message_and_says_when_it_is_frozen() {
        if exim_here().is_none() {
            return;
        }
        let lab = tempfile::tempdir().unwrap();
        let ex = Exim::prepare(&spec(lab.path())).unwrap();
        let conf = std::fs::read_to_string(&ex.conf).unwrap();
        // retry_min 2s, retry_max 2s (the lab's): a fixed interval.
        assert!(conf.contains("*   *   F,5s,2s"), "{conf}");
        assert!(conf.contains("retry_interval_max = 2s"), "{conf}");
        assert!(conf.contains("delay_warning = 7s"), "{conf}");
        assert_eq!(
            ex.knobs().get(&Knob::DelayWarning).copied(),
            Some(Value::Time(Duration::from_secs(7)))
        );
        // Queue only (-odq): the message stays in the spool; nothing is sent anywhere.
        let mut child = ex
            .exim()
            .args(["-odq", "-bs", "-oMa", "127.0.0.1"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            stdin
                .write_all(
                    b"EHLO client.test\r\nMAIL FROM:<alice@src.test>\r\nRCPT TO:<bob@dest.test>\r\n\
                      DATA\r\nSubject: t\r\n\r\nhi\r\n.\r\nQUIT\r\n",
                )
                .unwrap();
        }
        let out = child.wait_with_output().unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.contains("250 OK id="), "{said}");

        let q = ex.queue().unwrap();
        assert_eq!(q.len(), 1, "{q:?}");
        assert_eq!(q[0].sender, "alice@src.test");
        assert_eq!(q[0].recipients, vec!["bob@dest.test"]);
        assert_eq!(q[0].reason, None);
        run(ex.exim().arg("-Mf").arg(&q[0].id)).unwrap();
        let q = ex.queue().unwrap();
        assert_eq!(q[0].reason.as_deref(), Some("frozen"));
    }

    #[test]
    fn an_option_exim_does_not_know_is_named_before_it_runs() {
        if exim_here().is_none() {
            return;
        }
        let lab = tempfile::tempdir().unwrap();
        let mut spec = spec(lab.path());
        spec.set = vec![("no_such_option".into(), "1".into())];
        let err = Exim::prepare(&spec).unwrap_err().to_string();
        assert!(err.contains("no_such_option"), "{err}");
    }
}
