//! Target stage: a private Postfix instance (own config, queue and data folders) in the lab.
//!
//! The instance is built from Debian's postfix package, unmodified: mtaspec
//! writes a main.cf and master.cf (or takes the user's), lays the user's
//! `--set` settings on top, adds only what the lab needs, and runs the
//! `master` daemon as its own child so that it can always reap and stop it.
//!
//! What Postfix is (main.cf parameters, the settings the lab owns, the
//! layering in [`layer`], `postqueue -j`) is kept apart from where it runs:
//! every program goes through a [`Runner`], so the same knowledge drives the
//! user's own image in a container ([`container`]).

mod container;

use super::knobs::{Knob, Knobs, Value};
use super::runner::{self, Local, Runner, COMMAND_LIMIT};
use super::{Instance, Mta, Queued, Spec, Support, TargetError, TlsFiles};
use crate::lab;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const POSTCONF: &str = "/usr/sbin/postconf";
const POSTFIX_BIN: &str = "/usr/sbin/postfix";

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
        runner::run(
            Command::new(POSTCONF).args(["-d", "-h", "mail_version"]),
            COMMAND_LIMIT,
        )
        .map(|v| v.trim().to_string())
    }

    fn support(&self, _knob: Knob) -> Support {
        Support::Yes
    }

    fn start(&self, spec: &Spec) -> Result<Box<dyn Instance>, TargetError> {
        match &spec.container {
            None => Postfix::start(spec),
            Some(c) => container::start(spec, c),
        }
        .map(|p| Box::new(p) as Box<dyn Instance>)
    }

    fn runs_in_containers(&self) -> bool {
        true
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

/// How the user's own configuration meets a setting the lab owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owned {
    /// Replace it and report the replacement (the user's image, which also
    /// serves elsewhere).
    Override,
    /// The user's own main.cf (`--postfix-config /etc/postfix`): replace and
    /// report what only concerns this host (listen address, queue, log,
    /// local domains); refuse what routes mail around the scenario.
    OverrideLocal,
}

/// Everything the instance's main.cf is made of, before it is written.
#[derive(Debug)]
pub(crate) struct Layers<'a> {
    /// The user's own explicit settings (`postconf -n` of their main.cf).
    pub user: &'a BTreeMap<String, String>,
    /// Whether [`DEFAULTS`] for a private instance apply.
    pub private_defaults: bool,
    pub spec: &'a Spec,
    /// What the lab needs; wins over everything.
    pub lab: &'a [(String, String)],
    pub owned: Owned,
}

/// The layered configuration: what to write, what replaced the user's own
/// settings (with the reason) and the knobs the instance will run with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layered {
    pub settings: BTreeMap<String, String>,
    pub overrides: Vec<(String, String)>,
    pub knobs: Knobs,
}

/// Lab-owned settings that send mail somewhere other than the scenario's MX
/// hosts: a user's main.cf that sets them is refused, never silently changed.
const ROUTING: &[&str] = &[
    "relayhost",
    "smtp_fallback_relay",
    "fallback_relay",
    "default_transport",
    "disable_dns_lookups",
    "smtp_host_lookup",
];

/// The value a setting the lab owns takes when the user set it and the lab
/// has no value of its own for it (containers: the image's queue stays).
fn neutral(key: &str) -> Option<&'static str> {
    match key {
        "relayhost" | "smtp_fallback_relay" | "fallback_relay" | "smtp_bind_address" => Some(""),
        "disable_dns_lookups" => Some("no"),
        "smtp_host_lookup" => Some("dns"),
        "default_transport" => Some("smtp"),
        _ => None,
    }
}

/// Layer the configuration, last wins: defaults and the lab's fast timers
/// (unless the user's main.cf set them), then `--set`, then the scenario's
/// knobs and raw settings, then what the lab needs. Pure: no file or program.
pub(crate) fn layer(l: &Layers) -> Result<Layered, TargetError> {
    let spec = l.spec;
    for (k, _) in spec.sets.iter().chain(&spec.set) {
        forbid(k)?;
    }
    let mut settings: BTreeMap<String, String> = BTreeMap::new();
    let mut overrides = Vec::new();
    for (k, v) in l.user {
        let Some((_, why)) = LAB_OWNED.iter().find(|(o, _)| o == k) else {
            continue;
        };
        let lab = l.lab.iter().find(|(o, _)| o == k).map(|(_, v)| v.as_str());
        match (l.owned, lab.or_else(|| neutral(k))) {
            // Already what the lab needs (e.g. Debian's `relayhost =`).
            (_, Some(new)) if new == v => {}
            // A user's own main.cf: what routes mail around the scenario is
            // refused (the run would test the relay, not this MTA), the rest
            // the lab replaces and reports.
            (Owned::OverrideLocal, _) if ROUTING.contains(&k.as_str()) => forbid(k)?,
            (Owned::OverrideLocal, Some(new)) => {
                overrides.push((k.clone(), format!("`{v}` -> `{new}`: {why}")));
                settings.insert(k.clone(), new.to_string());
            }
            (Owned::OverrideLocal, None) => {
                overrides.push((k.clone(), format!("`{v}` -> the lab's value: {why}")));
            }
            (Owned::Override, Some(new)) => {
                overrides.push((k.clone(), format!("`{v}` -> `{new}`: {why}")));
                settings.insert(k.clone(), new.to_string());
            }
            (Owned::Override, None) => {}
        }
    }
    let private = DEFAULTS
        .iter()
        .filter(|_| l.private_defaults)
        .map(|(k, v)| (k.to_string(), v.to_string()));
    let defaults = spec
        .defaults
        .iter()
        .map(|(k, v)| (parameter(*k).to_string(), main_cf_value(*k, *v)));
    for (k, v) in private.chain(defaults) {
        if !l.user.contains_key(&k) {
            settings.insert(k, v);
        }
    }
    // STARTTLS only with the lab's per-run certificate.
    if spec.tls.is_none() {
        settings.insert("smtpd_tls_security_level".into(), "none".into());
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
    for (k, v) in l.lab {
        settings.insert(k.clone(), v.clone());
    }
    let knobs = effective_knobs(l.user, &settings);
    Ok(Layered {
        settings,
        overrides,
        knobs,
    })
}

/// The knobs an instance runs with: from our layers, the user's main.cf, or
/// Postfix's own defaults.
fn effective_knobs(user: &BTreeMap<String, String>, settings: &BTreeMap<String, String>) -> Knobs {
    Knob::ALL
        .into_iter()
        .filter_map(|k| {
            let p = parameter(k);
            let v = settings
                .get(p)
                .or_else(|| user.get(p))
                .map(String::as_str)
                .or_else(|| {
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
        .collect()
}

/// `postconf -n` output → settings.
/// Files and tables a user's main.cf names must exist here, or Postfix stops
/// with a message only syslog would see: name the parameter instead. Settings
/// the lab replaces are not checked.
fn check_user_files(user: &BTreeMap<String, String>) -> Result<(), String> {
    let replaced = |k: &str| LAB_OWNED.iter().any(|(o, _)| *o == k) || k.starts_with("smtpd_tls_");
    for (k, v) in user.iter().filter(|(k, _)| !replaced(k)) {
        if v.contains('$') {
            continue; // built from other parameters at run time
        }
        for token in v.split(|c: char| c == ',' || c.is_whitespace()) {
            let path = match token.split_once(':') {
                Some((kind, path))
                    if path.starts_with('/') && kind.chars().all(|c| c.is_ascii_lowercase()) =>
                {
                    path
                }
                None if token.starts_with('/') => token,
                _ => continue,
            };
            let indexed = ["db", "lmdb", "cdb", "dir"]
                .iter()
                .any(|ext| Path::new(&format!("{path}.{ext}")).exists());
            if !Path::new(path).exists() && !indexed {
                return Err(format!(
                    "`{k} = {v}` names {path}, which does not exist on this machine: create it, or lay another value on it with --set {k}=..."
                ));
            }
        }
    }
    Ok(())
}

fn parse_postconf_n(out: &str) -> BTreeMap<String, String> {
    out.lines()
        .filter_map(|l| {
            l.split_once(" = ")
                .or_else(|| l.strip_suffix(" =").map(|k| (k, "")))
        })
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .collect()
}

/// Where the instance's log is.
#[derive(Debug)]
enum Log {
    /// Files on this machine.
    Files(Vec<PathBuf>),
    /// A file inside the runner's system.
    Inside(String),
}

/// A running Postfix instance: a private one on this machine, or the user's
/// image in a container.
#[derive(Debug)]
pub struct Postfix {
    runner: Box<dyn Runner>,
    /// Where the programs are (`/usr/sbin/` here; the image's PATH in a container).
    sbin: &'static str,
    /// `-c DIR` for every program, when the configuration is not the default one.
    conf: Option<PathBuf>,
    log: Log,
    listen: Ipv4Addr,
    hostname: String,
    settings: BTreeMap<String, String>,
    overrides: Vec<(String, String)>,
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
        add_listen_address(listen)?;
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

        let mut pf = Postfix {
            runner: Box::new(Local::default()),
            sbin: "/usr/sbin/",
            conf: Some(conf.clone()),
            log: Log::Files(vec![dir.join("maillog"), dir.join("master.out")]),
            listen,
            hostname: lab::TARGET_HOSTNAME.to_string(),
            settings: BTreeMap::new(),
            overrides: Vec::new(),
            knobs: Knobs::new(),
            started: Duration::ZERO,
        };
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
                user_keys = parse_postconf_n(&pf.postconf(&["-n"])?);
                check_user_files(&user_keys).map_err(|what| TargetError::UserConfig {
                    path: src.join("main.cf"),
                    what,
                })?;
            }
            None => {
                std::fs::write(conf.join("main.cf"), "# mtaspec private instance\n")
                    .map_err(|e| TargetError::io("write main.cf", e))?;
                std::fs::write(conf.join("master.cf"), MASTER_CF)
                    .map_err(|e| TargetError::io("write master.cf", e))?;
            }
        }
        let lab = lab_settings(&dir, listen, spec.tls.as_ref());
        let layered = layer(&Layers {
            user: &user_keys,
            private_defaults: true,
            spec,
            lab: &lab,
            owned: Owned::OverrideLocal,
        })
        .map_err(|e| match (e, &spec.config_dir) {
            (e @ TargetError::Forbidden { .. }, Some(src)) => TargetError::UserConfig {
                path: src.join("main.cf"),
                what: e.to_string(),
            },
            (e, _) => e,
        })?;
        pf.apply(&layered.settings)?;
        pf.overrides = layered.overrides.clone();
        // Every service runs outside a chroot (the queue is in the lab folder),
        // and postlogd writes maillog_file.
        pf.postconf(&["-F", "*/*/chroot = n"])?;
        pf.postconf(&[
            "-M",
            "postlog/unix-dgram=postlog unix-dgram n - n - 1 postlogd",
        ])?;
        // Postfix waits until a table file is a second old before it trusts
        // it (it may still be being written); these are complete, so say so.
        age_config(&conf)?;
        pf.check_unknown()?;
        pf.program("postfix")
            .arg("check")
            .output_ok()
            .map_err(|e| match e {
                // postfix check reports through the instance's log, not its output.
                TargetError::Command { command, output } => TargetError::Command {
                    command,
                    output: format!("{output}{}", pf.log_tail(5)),
                },
                e => e,
            })?;

        let daemon_dir = pf.postconf(&["-h", "daemon_directory"])?;
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
        let mut local = Local::default();
        local.supervise(master);
        pf.runner = Box::new(local);
        pf.hostname = layered
            .settings
            .get("myhostname")
            .cloned()
            .unwrap_or_else(|| lab::TARGET_HOSTNAME.to_string());
        pf.settings = layered.settings;
        pf.knobs = layered.knobs;
        pf.wait_ready(Duration::from_secs(15))?;
        pf.started = begin.elapsed();
        Ok(pf)
    }

    /// A Postfix program (`postconf`, `postqueue`, ...) with this instance's `-c`.
    fn program(&self, name: &str) -> Command {
        let mut cmd = self.runner.command(&format!("{}{name}", self.sbin));
        if let Some(conf) = &self.conf {
            cmd.arg("-c").arg(conf);
        }
        cmd
    }

    /// `postconf ARGS`: its output.
    fn postconf(&self, args: &[&str]) -> Result<String, TargetError> {
        self.program("postconf").args(args).output_ok()
    }

    /// Write `settings` into main.cf (`postconf -e`).
    fn apply(&self, settings: &BTreeMap<String, String>) -> Result<(), TargetError> {
        let mut cmd = self.program("postconf");
        cmd.arg("-e");
        for (k, v) in settings {
            cmd.arg(format!("{k}={v}"));
        }
        cmd.output_ok().map(|_| ())
    }

    /// Unknown or misspelled settings: Postfix only warns; refuse them.
    fn check_unknown(&self) -> Result<(), TargetError> {
        let check = runner::output(self.program("postconf").arg("-n"), COMMAND_LIMIT)?;
        unknown_parameter(&String::from_utf8_lossy(&check.stderr))
    }

    /// Wait until the instance greets; its log tail if it does not.
    fn wait_ready(&mut self, limit: Duration) -> Result<(), TargetError> {
        let addr = self.smtp_addr();
        let runner = &mut self.runner;
        let ready = super::wait_for_greeting(addr, limit, || runner.alive());
        if let Err(why) = ready {
            return Err(TargetError::NotReady {
                addr: addr.to_string(),
                secs: limit.as_secs(),
                log: format!("{why}\n{}", self.log_tail(30)),
            });
        }
        Ok(())
    }
}

/// An unknown or misspelled parameter in `postconf -n`'s warnings.
fn unknown_parameter(warnings: &str) -> Result<(), TargetError> {
    if let Some(w) = warnings.lines().find(|l| l.contains("unused parameter")) {
        let key = w.rsplit("unused parameter: ").next().unwrap_or(w);
        return Err(TargetError::BadSetting(format!(
            "{key} (Postfix does not know this parameter)"
        )));
    }
    Ok(())
}

/// Run a command to its end within [`COMMAND_LIMIT`]; its stdout or an error.
trait OutputOk {
    fn output_ok(&mut self) -> Result<String, TargetError>;
}

impl OutputOk for Command {
    fn output_ok(&mut self) -> Result<String, TargetError> {
        runner::run(self, COMMAND_LIMIT)
    }
}

/// Give the lab's loopback the instance's address (127.0.0.1 is there already).
fn add_listen_address(listen: Ipv4Addr) -> Result<(), TargetError> {
    // Postfix checks that inet_interfaces names an address of an interface:
    // the lab's loopback answers all of 127/8 but lists only 127.0.0.1.
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
    Ok(())
}

impl Instance for Postfix {
    fn mta(&self) -> &'static str {
        "postfix"
    }

    fn smtp_addr(&self) -> SocketAddr {
        SocketAddr::from((self.listen, 25))
    }

    fn hostname(&self) -> String {
        self.hostname.clone()
    }

    fn knobs(&self) -> &Knobs {
        &self.knobs
    }

    fn settings(&self) -> &BTreeMap<String, String> {
        &self.settings
    }

    fn overrides(&self) -> &[(String, String)] {
        &self.overrides
    }

    fn queue(&self) -> Result<Vec<Queued>, TargetError> {
        let out = self.program("postqueue").arg("-j").output_ok()?;
        Ok(out.lines().filter_map(parse_queue_line).collect())
    }

    fn flush(&self) -> Result<(), TargetError> {
        self.program("postqueue").arg("-f").output_ok().map(|_| ())
    }

    fn log_tail(&self, n: usize) -> String {
        match &self.log {
            Log::Files(files) => {
                let paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
                super::tail_files(&paths, n)
            }
            Log::Inside(path) => {
                let mut cmd = self.runner.command("tail");
                cmd.args(["-n", &n.to_string(), path]);
                match runner::output(&mut cmd, Duration::from_secs(10)) {
                    Ok(out) => format!(
                        "{}{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    ),
                    Err(e) => format!("(cannot read {path}: {e})"),
                }
            }
        }
    }

    fn log_files(&self) -> Vec<PathBuf> {
        match &self.log {
            Log::Files(files) => files.clone(),
            Log::Inside(_) => Vec::new(),
        }
    }

    fn startup_time(&self) -> Duration {
        self.started
    }

    fn stop(&mut self) {
        self.runner.stop(Duration::from_secs(5));
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
        self.runner.stop(Duration::from_secs(2));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::knobs::lab_defaults;

    fn spec() -> Spec {
        Spec {
            lab_dir: PathBuf::from("/lab"),
            instance: "postfix".into(),
            listen: Ipv4Addr::new(127, 0, 2, 1),
            defaults: lab_defaults(),
            knobs: Knobs::new(),
            sets: Vec::new(),
            set: Vec::new(),
            config_dir: None,
            tls: None,
            container: None,
        }
    }

    fn user(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn lab() -> Vec<(String, String)> {
        container::lab_settings(Ipv4Addr::new(127, 0, 2, 1))
    }

    #[test]
    fn image_settings_the_lab_owns_are_replaced_and_reported() {
        let user = user(&[
            ("inet_interfaces", "all"),
            ("relayhost", "[smtp.example.net]:587"),
            ("smtp_fallback_relay", "backup.example.net"),
            ("queue_directory", "/var/spool/postfix"),
            ("maximal_backoff_time", "300s"),
            ("myhostname", "mail.example.net"),
        ]);
        let spec = spec();
        let l = layer(&Layers {
            user: &user,
            private_defaults: false,
            spec: &spec,
            lab: &lab(),
            owned: Owned::Override,
        })
        .unwrap();
        let s = &l.settings;
        assert_eq!(s["inet_interfaces"], "127.0.2.1");
        assert_eq!(s["relayhost"], "");
        assert_eq!(s["smtp_fallback_relay"], "");
        // The image keeps its own queue and host name.
        assert!(!s.contains_key("queue_directory"));
        assert!(!s.contains_key("myhostname"));
        let keys: Vec<&str> = l.overrides.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            ["inet_interfaces", "relayhost", "smtp_fallback_relay"]
        );
        assert!(l.overrides[0].1.starts_with("`all` -> `127.0.2.1`: "));
        // A timer the image sets is its own (the lab's fast default does not win) ...
        assert!(!s.contains_key("maximal_backoff_time"));
        assert_eq!(
            l.knobs[&Knob::RetryMax],
            Value::Time(Duration::from_secs(300))
        );
        // ... and one it does not set takes the lab's default.
        assert_eq!(s["minimal_backoff_time"], "2s");
        // No private-instance defaults on a user's image.
        assert!(!s.contains_key("smtpd_relay_restrictions"));
    }

    #[test]
    fn an_image_setting_already_right_is_no_override() {
        let user = user(&[("inet_protocols", "ipv4"), ("relayhost", "")]);
        let spec = spec();
        let l = layer(&Layers {
            user: &user,
            private_defaults: false,
            spec: &spec,
            lab: &lab(),
            owned: Owned::Override,
        })
        .unwrap();
        assert!(l.overrides.is_empty(), "{:?}", l.overrides);
    }

    #[test]
    fn a_user_main_cf_has_local_settings_replaced_and_routing_refused() {
        let spec = spec();
        let local = lab_settings(Path::new("/lab/postfix"), spec.listen, None);
        let layered = |u: &BTreeMap<String, String>| {
            layer(&Layers {
                user: u,
                private_defaults: true,
                spec: &spec,
                lab: &local,
                owned: Owned::OverrideLocal,
            })
        };
        // Debian's stock values for what the lab owns locally: replaced, reported.
        let stock = user(&[
            ("inet_interfaces", "all"),
            ("mydestination", "$myhostname, localhost"),
        ]);
        let l = layered(&stock).unwrap();
        assert_eq!(l.settings["inet_interfaces"], spec.listen.to_string());
        assert_eq!(l.settings["mydestination"], "");
        let keys: Vec<&str> = l.overrides.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["inet_interfaces", "mydestination"]);
        assert!(
            l.overrides[0]
                .1
                .contains(&format!("`all` -> `{}`", spec.listen)),
            "{:?}",
            l.overrides
        );
        // What sends mail around the scenario is refused, naming the setting.
        let relay = user(&[("relayhost", "[smarthost.example]:587")]);
        let e = layered(&relay).unwrap_err();
        assert!(matches!(e, TargetError::Forbidden { ref key, .. } if key == "relayhost"));
        // A lab setting the user's main.cf already has right is fine.
        let same = user(&[("relayhost", ""), ("inet_protocols", "ipv4")]);
        assert!(layered(&same).unwrap().overrides.is_empty());
        // --set of a lab setting is refused for images too.
        let mut spec = spec;
        spec.sets = vec![("relayhost".into(), "[x]".into())];
        let e = layer(&Layers {
            user: &BTreeMap::new(),
            private_defaults: false,
            spec: &spec,
            lab: &lab(),
            owned: Owned::Override,
        })
        .unwrap_err();
        assert!(matches!(e, TargetError::Forbidden { ref key, .. } if key == "relayhost"));
    }

    #[test]
    fn scenario_knobs_win_over_the_image_and_set() {
        let mut spec = spec();
        spec.sets = vec![("maximal_queue_lifetime".into(), "1d".into())];
        spec.knobs = Knobs::from([(Knob::QueueLifetime, Value::Time(Duration::from_secs(5)))]);
        let user = user(&[("maximal_queue_lifetime", "5d")]);
        let l = layer(&Layers {
            user: &user,
            private_defaults: false,
            spec: &spec,
            lab: &lab(),
            owned: Owned::Override,
        })
        .unwrap();
        assert_eq!(l.settings["maximal_queue_lifetime"], "5s");
        assert_eq!(
            l.knobs[&Knob::QueueLifetime],
            Value::Time(Duration::from_secs(5))
        );
    }

    #[test]
    fn postconf_n_lines_parse_with_empty_values() {
        let s = parse_postconf_n(
            "relayhost =\ninet_interfaces = all\nmydestination = $myhostname, localhost\n",
        );
        assert_eq!(s["relayhost"], "");
        assert_eq!(s["inet_interfaces"], "all");
        assert_eq!(s["mydestination"], "$myhostname, localhost");
    }
}

#[cfg(test)]
mod file_tests {
    use super::*;

    #[test]
    fn files_a_user_main_cf_names_must_exist_and_the_parameter_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let there = dir.path().join("mailname");
        std::fs::write(&there, "mail.example.org\n").unwrap();
        let u = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
        assert!(check_user_files(&u("myorigin", there.to_str().unwrap())).is_ok());
        let why = check_user_files(&u("myorigin", "/nonexistent/mailname")).unwrap_err();
        assert!(why.contains("`myorigin = /nonexistent/mailname`"), "{why}");
        assert!(why.contains("--set myorigin="), "{why}");
        let why = check_user_files(&u("alias_maps", "hash:/nonexistent/aliases")).unwrap_err();
        assert!(why.contains("names /nonexistent/aliases"), "{why}");
        // Built from other parameters, or replaced by the lab: not checked.
        assert!(check_user_files(&u(
            "smtp_tls_session_cache_database",
            "btree:${data_directory}/x"
        ))
        .is_ok());
        assert!(check_user_files(&u("smtpd_tls_cert_file", "/nonexistent/cert.pem")).is_ok());
        assert!(check_user_files(&u("queue_directory", "/nonexistent/queue")).is_ok());
    }
}
