//! Target stage: a private Postfix instance (own config, queue and data folders) in the lab.
//!
//! The instance is built from Debian's postfix package, unmodified: mtaspec
//! writes a main.cf and master.cf (or takes the user's), lays the user's
//! `--set` settings on top, adds only what the lab needs, and runs the
//! `master` daemon as its own child so that it can always reap and stop it.

use super::{TargetError, TargetOptions, TlsFiles};
use crate::lab;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const POSTCONF: &str = "/usr/sbin/postconf";
const POSTFIX: &str = "/usr/sbin/postfix";

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
fn lab_settings(dir: &Path, listen: Ipv4Addr, tls: Option<&TlsFiles>) -> Vec<(String, String)> {
    let d = dir.display();
    let tls = tls.into_iter().flat_map(|t| {
        [
            ("smtpd_tls_cert_file", t.cert_file.display().to_string()),
            ("smtpd_tls_key_file", t.key_file.display().to_string()),
        ]
    });
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
    .chain(tls)
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Defaults for a private instance: taken unless the user's config or `--set` says otherwise.
pub const DEFAULTS: &[(&str, &str)] = &[
    ("compatibility_level", "3.6"),
    ("local_recipient_maps", ""),
    ("alias_maps", ""),
    ("alias_database", ""),
    // Trusted: the lab's own clients (127.0.0.1). Inbound sessions connect
    // from 127.0.9.x, outside it, so defences exempt for $mynetworks apply;
    // the scenario domains (*.test) are relay domains, accepted from anyone.
    ("mynetworks", "127.0.0.0/24"),
    ("relay_domains", "test, .test"),
    (
        "smtpd_relay_restrictions",
        "permit_mynetworks, permit_auth_destination, reject",
    ),
    ("smtp_dns_support_level", "enabled"),
    ("smtp_tls_security_level", "none"),
    // Offered with the lab's per-run certificate (`none` when there is none).
    ("smtpd_tls_security_level", "may"),
    ("smtp_address_preference", "ipv4"),
];

/// Fast timers, so that retries and expiries happen in seconds.
pub const TIMERS: &[(&str, &str)] = &[
    ("queue_run_delay", "1s"),
    ("minimal_backoff_time", "1s"),
    ("maximal_backoff_time", "2s"),
    ("smtp_connect_timeout", "2s"),
    ("maximal_queue_lifetime", "30s"),
    ("bounce_queue_lifetime", "30s"),
];

const MASTER_CF: &str = include_str!("postfix/master.cf");

/// A running private Postfix instance.
#[derive(Debug)]
pub struct Postfix {
    dir: PathBuf,
    listen: Ipv4Addr,
    master: Option<Child>,
    settings: BTreeMap<String, String>,
    started: Duration,
}

impl Postfix {
    /// Write the instance's files, start `master`, and wait until it greets on `listen`:25.
    ///
    /// `instance` names the instance's folder under the lab (`postfix`,
    /// `postfix-1`, ...): every instance needs its own queue and address.
    pub async fn start(
        lab_dir: &Path,
        opts: &TargetOptions,
        instance: &str,
        listen: Ipv4Addr,
    ) -> Result<Postfix, TargetError> {
        let begin = Instant::now();
        for (tool, path) in [("postconf", POSTCONF), ("postfix", POSTFIX)] {
            if !Path::new(path).exists() {
                return Err(TargetError::NotInstalled {
                    tool,
                    path: path.into(),
                });
            }
        }
        for (k, _) in &opts.sets {
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
            })?;
        let data = dir.join("data");
        nix::unistd::chown(&data, Some(owner.uid), Some(owner.gid))
            .map_err(|e| TargetError::io("chown the data folder to postfix", e.into()))?;
        std::fs::set_permissions(&data, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .map_err(|e| TargetError::io("chmod the data folder", e))?;

        // Base configuration: the user's, or an empty main.cf and our master.cf.
        let mut user_keys = BTreeMap::new();
        match &opts.config_dir {
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

        // Layers, last wins: defaults and timers (unless the user's main.cf set
        // them), then --set, then what the lab needs.
        let mut settings: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in DEFAULTS.iter().chain(TIMERS) {
            if !user_keys.contains_key(*k) {
                settings.insert(k.to_string(), v.to_string());
            }
        }
        if opts.tls.is_none() {
            settings.insert("smtpd_tls_security_level".into(), "none".into());
        }
        for (k, v) in &opts.sets {
            settings.insert(k.clone(), v.clone());
        }
        for (k, v) in lab_settings(&dir, listen, opts.tls.as_ref()) {
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
        run(Command::new(POSTFIX).arg("-c").arg(&conf).arg("check")).map_err(|e| match e {
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
        let mut pf = Postfix {
            dir,
            listen,
            master: Some(master),
            settings,
            started: Duration::ZERO,
        };
        pf.wait_ready(Duration::from_secs(15)).await?;
        pf.started = begin.elapsed();
        Ok(pf)
    }

    async fn wait_ready(&mut self, limit: Duration) -> Result<(), TargetError> {
        use tokio::io::AsyncReadExt;
        let until = Instant::now() + limit;
        let addr = self.smtp_addr();
        while Instant::now() < until {
            if let Some(m) = self.master.as_mut() {
                if let Ok(Some(status)) = m.try_wait() {
                    return Err(TargetError::NotReady {
                        addr: addr.to_string(),
                        secs: limit.as_secs(),
                        log: format!("master exited ({status})\n{}", self.log_tail(30)),
                    });
                }
            }
            if let Ok(Ok(mut s)) = tokio::time::timeout(
                Duration::from_millis(500),
                tokio::net::TcpStream::connect(addr),
            )
            .await
            {
                let mut buf = [0u8; 3];
                if let Ok(Ok(_)) =
                    tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut buf)).await
                {
                    if &buf == b"220" {
                        return Ok(());
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(TargetError::NotReady {
            addr: addr.to_string(),
            secs: limit.as_secs(),
            log: self.log_tail(30),
        })
    }

    pub fn name(&self) -> &str {
        "postfix"
    }

    /// Where the target accepts mail.
    pub fn smtp_addr(&self) -> SocketAddr {
        SocketAddr::from((self.listen, 25))
    }

    /// The effective settings mtaspec applied (for reports).
    pub fn settings(&self) -> &BTreeMap<String, String> {
        &self.settings
    }

    /// How long start-up took (files, check, master ready).
    pub fn startup_time(&self) -> Duration {
        self.started
    }

    /// The last `n` lines of the instance's log.
    pub fn log_tail(&self, n: usize) -> String {
        let mut text = std::fs::read_to_string(self.dir.join("maillog")).unwrap_or_default();
        text.push_str(&std::fs::read_to_string(self.dir.join("master.out")).unwrap_or_default());
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Stop master and every process of its group; reap them.
    pub async fn stop(mut self) {
        // Waiting for master to exit blocks: keep it off the async workers.
        let _ = tokio::task::spawn_blocking(move || self.kill(Duration::from_secs(5))).await;
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
