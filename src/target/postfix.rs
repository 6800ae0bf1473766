//! Target stage: a private Postfix instance (own config, queue and data folders) in the lab.
//!
//! The instance is built from Debian's postfix package, unmodified: mtaspec
//! writes a main.cf and master.cf (or takes the user's), lays the user's
//! `--set` settings on top, adds only what the lab needs, and runs the
//! `master` daemon as its own child so that it can always reap and stop it.

use super::knobs::{Knob, Knobs, Value};
use super::{Instance, Mta, Queued, Spec, Support, TargetError};
use crate::lab;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const POSTCONF: &str = "/usr/sbin/postconf";
const POSTFIX_BIN: &str = "/usr/sbin/postfix";
const POSTQUEUE: &str = "/usr/sbin/postqueue";

/// Settings the lab needs; a user may not change them.
const LAB_OWNED: &[(&str, &str)] = &[
    ("relayhost", "mtaspec needs the target to deliver straight to the scenario's MX hosts; a relayhost would send all mail to one place"),
    ("inet_interfaces", "the target must listen on the lab address mtaspec gives each instance (127.0.0.1, 127.0.0.2, ...)"),
    ("inet_protocols", "the lab is IPv4 on loopback"),
    ("queue_directory", "the instance keeps its queue in the lab's private folder"),
    ("data_directory", "the instance keeps its data in the lab's private folder"),
    ("maillog_file", "mtaspec reads the instance's log from the lab's private folder"),
    ("smtp_fallback_relay", "a fallback relay would hide the MX fallback under test"),
    ("fallback_relay", "a fallback relay would hide the MX fallback under test"),
    ("smtp_bind_address", "the target must connect from the lab's loopback"),
    ("disable_dns_lookups", "the target must resolve MX hosts through the lab's fake DNS"),
    ("smtp_host_lookup", "the target must resolve MX hosts through the lab's fake DNS (dns)"),
    ("default_transport", "mail must leave through Postfix's smtp client"),
    ("mydestination", "the scenario domains are remote; a local domain would keep mail on the target"),
];

/// Settings the lab sets after the user's configuration (the user cannot change them).
fn lab_settings(dir: &Path, listen: Ipv4Addr) -> Vec<(String, String)> {
    let d = dir.display();
    [
        ("queue_directory", format!("{d}/queue")),
        ("data_directory", format!("{d}/data")),
        ("maillog_file", format!("{d}/maillog")),
        ("maillog_file_prefixes", format!("{d}")),
        ("inet_interfaces", listen.to_string()),
        ("inet_protocols", "ipv4".into()),
        ("relayhost", String::new()),
        ("smtp_host_lookup", "dns".into()),
        ("mydestination", String::new()),
        ("myhostname", lab::TARGET_HOSTNAME.into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Defaults for a private instance: taken unless the user's config or `--set` says otherwise.
pub const DEFAULTS: &[(&str, &str)] = &[
    ("compatibility_level", "3.6"),
    ("local_recipient_maps", ""),
    ("alias_maps", ""),
    ("alias_database", ""),
    ("mynetworks", "127.0.0.0/8"),
    ("smtpd_relay_restrictions", "permit_mynetworks, reject"),
    ("smtp_dns_support_level", "enabled"),
    ("smtp_tls_security_level", "none"),
    ("smtpd_tls_security_level", "none"),
    ("smtp_address_preference", "ipv4"),
];

const MASTER_CF: &str = include_str!("postfix/master.cf");

/// The main.cf parameter behind each neutral knob.
fn parameter(knob: Knob) -> &'static str {
    match knob {
        Knob::QueueLifetime => "maximal_queue_lifetime",
        Knob::BounceLifetime => "bounce_queue_lifetime",
        Knob::DelayWarning => "delay_warning_time",
        Knob::RetryMin => "minimal_backoff_time",
        Knob::RetryMax => "maximal_backoff_time",
        Knob::QueueRun => "queue_run_delay",
        Knob::ConnectTimeout => "smtp_connect_timeout",
        Knob::HopLimit => "hopcount_limit",
    }
}

/// A knob's value in main.cf syntax (whole seconds; Postfix has no finer unit).
fn main_cf_value(knob: Knob, v: Value) -> String {
    match v {
        Value::Count(n) => n.to_string(),
        Value::Time(d) => {
            let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
            // queue_run_delay = 0 is fatal; 1s is Postfix's finest.
            let secs = if knob == Knob::QueueRun {
                secs.max(1)
            } else {
                secs
            };
            format!("{secs}s")
        }
    }
}

const INSTALL: &str = "scripts/setup (Debian's postfix package)";

/// Debian's Postfix, run as a private instance.
pub struct PostfixMta;

/// The Postfix target.
pub static POSTFIX: PostfixMta = PostfixMta;

impl Mta for PostfixMta {
    fn name(&self) -> &'static str {
        "postfix"
    }

    fn version(&self) -> Result<String, TargetError> {
        installed()?;
        run(Command::new(POSTCONF).args(["-d", "-h", "mail_version"])).map(|v| v.trim().to_string())
    }

    fn support(&self, _knob: Knob) -> Support {
        Support::Yes
    }

    fn start(&self, spec: &Spec) -> Result<Box<dyn Instance>, TargetError> {
        Postfix::start(spec).map(|p| Box::new(p) as Box<dyn Instance>)
    }
}

fn installed() -> Result<(), TargetError> {
    for (tool, path) in [("postconf", POSTCONF), ("postfix", POSTFIX_BIN)] {
        if !Path::new(path).exists() {
            return Err(TargetError::NotInstalled {
                tool,
                path: path.into(),
                fix: INSTALL,
            });
        }
    }
    Ok(())
}

/// A running private Postfix instance.
#[derive(Debug)]
pub struct Postfix {
    dir: PathBuf,
    conf: PathBuf,
    listen: Ipv4Addr,
    master: Option<Child>,
    settings: BTreeMap<String, String>,
    knobs: Knobs,
    started: Duration,
}

impl Postfix {
    /// Write the instance's files, start `master`, and wait until it greets on `listen`:25.
    ///
    /// `spec.instance` names the instance's folder under the lab (`postfix`,
    /// `postfix-1`, ...): every instance needs its own queue and address.
    pub fn start(spec: &Spec) -> Result<Postfix, TargetError> {
        let begin = Instant::now();
        let (lab_dir, instance, listen) = (&spec.lab_dir, &spec.instance, spec.listen);
        installed()?;
        for (k, _) in spec.sets.iter().chain(&spec.set) {
            forbid(k)?;
        }
        // Postfix checks that inet_interfaces names an address of an interface:
        // the lab's loopback answers all of 127/8 but lists only 127.0.0.1.
        if !listen.is_loopback() {
            return Err(TargetError::io(
                format!("listen on {listen}"),
                std::io::Error::other("instances listen on loopback addresses only"),
            ));
        }
        if listen != Ipv4Addr::LOCALHOST {
            let label = format!("lo:{}", listen.octets()[3]);
            lab::add_loopback_addr(&label, listen)
                .map_err(|e| TargetError::io(format!("add {listen} to the lab's loopback"), e))?;
        }
        let dir = lab_dir.join(instance);
        let conf = dir.join("conf");
        for sub in ["conf", "queue", "data"] {
            std::fs::create_dir_all(dir.join(sub))
                .map_err(|e| TargetError::io(format!("create {}", dir.join(sub).display()), e))?;
        }
        let owner = nix::unistd::User::from_name("postfix")
            .ok()
            .flatten()
            .ok_or(TargetError::NotInstalled {
                tool: "the postfix user",
                path: "/etc/passwd".into(),
                fix: INSTALL,
            })?;
        let data = dir.join("data");
        nix::unistd::chown(&data, Some(owner.uid), Some(owner.gid))
            .map_err(|e| TargetError::io("chown the data folder to postfix", e.into()))?;
        std::fs::set_permissions(&data, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .map_err(|e| TargetError::io("chmod the data folder", e))?;

        // Base configuration: the user's, or an empty main.cf and our master.cf.
        let mut user_keys = BTreeMap::new();
        match &spec.config_dir {
            Some(src) => {
                for f in ["main.cf", "master.cf"] {
                    let from = src.join(f);
                    std::fs::copy(&from, conf.join(f)).map_err(|e| TargetError::UserConfig {
                        path: src.clone(),
                        what: format!("cannot read {}: {e}", from.display()),
                    })?;
                }
                let out = run(Command::new(POSTCONF).arg("-c").arg(&conf).arg("-n"))?;
                for line in out.lines() {
                    if let Some((k, v)) = line.split_once(" = ") {
                        forbid(k.trim()).map_err(|e| TargetError::UserConfig {
                            path: src.join("main.cf"),
                            what: e.to_string(),
                        })?;
                        user_keys.insert(k.trim().to_string(), v.to_string());
                    }
                }
            }
            None => {
                std::fs::write(conf.join("main.cf"), "# mtaspec private instance\n")
                    .map_err(|e| TargetError::io("write main.cf", e))?;
                std::fs::write(conf.join("master.cf"), MASTER_CF)
                    .map_err(|e| TargetError::io("write master.cf", e))?;
            }
        }

        // Layers, last wins: defaults and the lab's fast timers (unless the
        // user's main.cf set them), then --set, then the scenario's knobs and
        // raw settings, then what the lab needs.
        let mut settings: BTreeMap<String, String> = BTreeMap::new();
        let defaults = spec
            .defaults
            .iter()
            .map(|(k, v)| (parameter(*k).to_string(), main_cf_value(*k, *v)));
        for (k, v) in DEFAULTS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain(defaults)
        {
            if !user_keys.contains_key(&k) {
                settings.insert(k, v);
            }
        }
        for (k, v) in &spec.sets {
            settings.insert(k.clone(), v.clone());
        }
        for (k, v) in &spec.knobs {
            settings.insert(parameter(*k).to_string(), main_cf_value(*k, *v));
        }
        for (k, v) in &spec.set {
            settings.insert(k.clone(), v.clone());
        }
        for (k, v) in lab_settings(&dir, listen) {
            settings.insert(k, v);
        }
        let mut cmd = Command::new(POSTCONF);
        cmd.arg("-c").arg(&conf).arg("-e");
        for (k, v) in &settings {
            cmd.arg(format!("{k}={v}"));
        }
        run(&mut cmd)?;
        // Every service runs outside a chroot (the queue is in the lab folder),
        // and postlogd writes maillog_file.
        run(Command::new(POSTCONF)
            .arg("-c")
            .arg(&conf)
            .arg("-F")
            .arg("*/*/chroot = n"))?;
        run(Command::new(POSTCONF)
            .arg("-c")
            .arg(&conf)
            .arg("-M")
            .arg("postlog/unix-dgram=postlog unix-dgram n - n - 1 postlogd"))?;
        // Postfix waits until a table file is a second old before it trusts
        // it (it may still be being written); these are complete, so say so.
        age_config(&conf)?;
        // Unknown or misspelled settings: Postfix only warns; show the user.
        let check = Command::new(POSTCONF)
            .arg("-c")
            .arg(&conf)
            .arg("-n")
            .output()
            .map_err(|e| TargetError::io("run postconf", e))?;
        let warnings = String::from_utf8_lossy(&check.stderr);
        if let Some(w) = warnings.lines().find(|l| l.contains("unused parameter")) {
            let key = w.rsplit("unused parameter: ").next().unwrap_or(w);
            return Err(TargetError::BadSetting(format!(
                "{key} (Postfix does not know this parameter)"
            )));
        }
        run(Command::new(POSTFIX_BIN).arg("-c").arg(&conf).arg("check")).map_err(|e| match e {
            // postfix check reports through the instance's log, not its output.
            TargetError::Command { command, output } => {
                let log = std::fs::read_to_string(dir.join("maillog")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                TargetError::Command {
                    command,
                    output: format!("{output}{}", tail.join("\n")),
                }
            }
            e => e,
        })?;

        let daemon_dir = run(Command::new(POSTCONF)
            .arg("-c")
            .arg(&conf)
            .arg("-h")
            .arg("daemon_directory"))?;
        let master_bin = PathBuf::from(daemon_dir.trim()).join("master");
        let log = std::fs::File::create(dir.join("master.out"))
            .map_err(|e| TargetError::io("create master.out", e))?;
        let mut cmd = Command::new(&master_bin);
        cmd.arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| TargetError::io("dup log", e))?)
            .stderr(log);
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to kill
        // master if mtaspec dies, so nothing outlives the harness.
        unsafe {
            cmd.pre_exec(|| {
                nix::libc::prctl(nix::libc::PR_SET_PDEATHSIG, nix::libc::SIGKILL);
                Ok(())
            });
        }
        let master = cmd
            .spawn()
            .map_err(|e| TargetError::io(format!("start {}", master_bin.display()), e))?;
        // The effective knobs: what the instance runs with, from the user's
        // main.cf, our layers, or Postfix's own defaults.
        let mut effective = user_keys.clone();
        effective.extend(settings.iter().map(|(k, v)| (k.clone(), v.clone())));
        let knobs = Knob::ALL
            .into_iter()
            .filter_map(|k| {
                let p = parameter(k);
                let v = effective.get(p).map(String::as_str).or_else(|| {
                    DEFAULT_VALUES
                        .iter()
                        .find(|(n, _)| *n == p)
                        .map(|(_, v)| *v)
                })?;
                if k.is_count() {
                    v.trim().parse().ok().map(|n| (k, Value::Count(n)))
                } else {
                    postfix_time(p, v).map(|d| (k, Value::Time(d)))
                }
            })
            .collect();
        let mut pf = Postfix {
            dir,
            conf,
            listen,
            master: Some(master),
            settings,
            knobs,
            started: Duration::ZERO,
        };
        let addr = pf.smtp_addr();
        let limit = Duration::from_secs(15);
        let ready = super::wait_for_greeting(addr, limit, || match pf.master.as_mut() {
            Some(m) => match m.try_wait() {
                Ok(Some(status)) => Err(format!("master exited ({status})")),
                _ => Ok(()),
            },
            None => Err("master is not running".into()),
        });
        if let Err(why) = ready {
            return Err(TargetError::NotReady {
                addr: addr.to_string(),
                secs: limit.as_secs(),
                log: format!("{why}\n{}", pf.log_tail(30)),
            });
        }
        pf.started = begin.elapsed();
        Ok(pf)
    }

    fn kill(&mut self, grace: Duration) {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        let Some(mut child) = self.master.take() else {
            return;
        };
        let pid = Pid::from_raw(child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let until = Instant::now() + grace;
        while Instant::now() < until {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // master leads its own process group: take down anything left in it.
        let _ = kill(Pid::from_raw(-pid.as_raw()), Signal::SIGKILL);
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Instance for Postfix {
    fn mta(&self) -> &'static str {
        "postfix"
    }

    fn smtp_addr(&self) -> SocketAddr {
        SocketAddr::from((self.listen, 25))
    }

    fn hostname(&self) -> String {
        self.settings
            .get("myhostname")
            .cloned()
            .unwrap_or_else(|| lab::TARGET_HOSTNAME.to_string())
    }

    fn knobs(&self) -> &Knobs {
        &self.knobs
    }

    fn settings(&self) -> &BTreeMap<String, String> {
        &self.settings
    }

    fn queue(&self) -> Result<Vec<Queued>, TargetError> {
        let out = run(Command::new(POSTQUEUE).arg("-c").arg(&self.conf).arg("-j"))?;
        Ok(out.lines().filter_map(parse_queue_line).collect())
    }

    fn flush(&self) -> Result<(), TargetError> {
        run(Command::new(POSTQUEUE).arg("-c").arg(&self.conf).arg("-f")).map(|_| ())
    }

    fn log_tail(&self, n: usize) -> String {
        super::tail_files(
            &[&self.dir.join("maillog"), &self.dir.join("master.out")],
            n,
        )
    }

    fn log_files(&self) -> Vec<PathBuf> {
        vec![self.dir.join("maillog"), self.dir.join("master.out")]
    }

    fn startup_time(&self) -> Duration {
        self.started
    }

    fn stop(&mut self) {
        self.kill(Duration::from_secs(5));
    }
}

/// One line of `postqueue -j` (one JSON object per queued message).
fn parse_queue_line(line: &str) -> Option<Queued> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let rcpts = v.get("recipients")?.as_array()?;
    Some(Queued {
        id: v.get("queue_id")?.as_str()?.to_string(),
        sender: v.get("sender")?.as_str().unwrap_or_default().to_string(),
        recipients: rcpts
            .iter()
            .filter_map(|r| r.get("address")?.as_str().map(str::to_string))
            .collect(),
        reason: rcpts
            .iter()
            .find_map(|r| r.get("delay_reason")?.as_str().map(str::to_string)),
    })
}

/// Postfix's defaults for the knob parameters the lab may leave unset.
const DEFAULT_VALUES: &[(&str, &str)] = &[
    ("delay_warning_time", "0h"),
    ("queue_run_delay", "300s"),
    ("minimal_backoff_time", "300s"),
    ("maximal_backoff_time", "4000s"),
    ("maximal_queue_lifetime", "5d"),
    ("bounce_queue_lifetime", "5d"),
    ("smtp_connect_timeout", "30s"),
    ("hopcount_limit", "50"),
];

/// A Postfix time value: a number with an optional unit (s, m, h, d, w); a bare
/// number takes the parameter's default unit (days for lifetimes, hours for
/// delay_warning_time, seconds otherwise).
pub fn postfix_time(key: &str, v: &str) -> Option<Duration> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let n: u64 = v[..split].parse().ok()?;
    let unit = match &v[split..] {
        "" if key.ends_with("_lifetime") => "d",
        "" if key == "delay_warning_time" => "h",
        "" => "s",
        u => u,
    };
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        "w" => 7 * 86400,
        _ => return None,
    };
    Some(Duration::from_secs(n * secs))
}

impl Drop for Postfix {
    fn drop(&mut self) {
        self.kill(Duration::from_secs(2));
    }
}

fn age_config(conf: &Path) -> Result<(), TargetError> {
    let past = std::time::SystemTime::now() - Duration::from_secs(60);
    for f in ["main.cf", "master.cf"] {
        let path = conf.join(f);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|file| file.set_modified(past))
            .map_err(|e| TargetError::io(format!("set the time of {}", path.display()), e))?;
    }
    Ok(())
}

fn forbid(key: &str) -> Result<(), TargetError> {
    match LAB_OWNED.iter().find(|(k, _)| *k == key) {
        Some((k, why)) => Err(TargetError::Forbidden {
            key: k.to_string(),
            why,
        }),
        None => Ok(()),
    }
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
