//! Target stage: a private chasquid 1.11 instance (own config, certificate, users, data and logs) in the lab.
//!
//! Debian's chasquid package is extracted (not registered) under
//! `$MTASPEC_MTA_ROOT/chasquid` by `scripts/install-chasquid`. chasquid does
//! not relay by client address: mail to another domain needs STARTTLS and
//! AUTH as a user of one of its own domains. Each instance gets a
//! certificate for the lab's host name (signed by a CA made for it) and one
//! user; [`Instance::submission`] hands both to the client.
//!
//! chasquid's timers are compiled in (retries after 1, 5 and 10 minutes,
//! then every 20; give-up after 20 hours; no delay warnings; 1 minute
//! connect timeout), so scenarios that set those knobs are unsupported. The
//! Received: header limit is the binary's `-testing__max_received_headers` flag.

use super::knobs::{Knob, Knobs, Value};
use super::{Instance, Mta, Queued, Spec, Submission, Support, TargetError};
use crate::lab;
use std::collections::BTreeMap;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_rustls::rustls;

const INSTALL: &str = "scripts/install-chasquid";
/// The one user the client authenticates as.
const USER: &str = "mtaspec";
/// chasquid's default Received: limit (the flag's default).
const DEFAULT_MAX_RECEIVED: u32 = 50;
/// A queue file is read up to here (its message body follows the envelope).
const QUEUE_FILE_CAP: u64 = 1 << 20;

fn root() -> PathBuf {
    std::env::var_os("MTASPEC_MTA_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/mtaspec"))
        .join("chasquid")
}

fn binary() -> PathBuf {
    root().join("usr/bin/chasquid")
}

fn util() -> PathBuf {
    root().join("usr/bin/chasquid-util")
}

/// chasquid.conf keys the lab owns.
const LAB_OWNED: &[(&str, &str)] = &[
    (
        "smtp_address",
        "the target must listen on the lab address mtaspec gives each instance",
    ),
    (
        "submission_address",
        "the target must listen on the lab address mtaspec gives each instance",
    ),
    (
        "submission_over_tls_address",
        "the target must listen on the lab address mtaspec gives each instance",
    ),
    (
        "monitoring_address",
        "the target must listen only on the lab address mtaspec gives each instance",
    ),
    (
        "data_dir",
        "the instance keeps its data in the lab's private folder",
    ),
    (
        "mail_log_path",
        "mtaspec reads the instance's log from the lab's private folder",
    ),
    (
        "hostname",
        "the lab's host name is fixed (certificate, Received:, DSNs)",
    ),
];

/// Debian's chasquid, run as a private instance.
pub struct ChasquidMta;

/// The chasquid target.
pub static CHASQUID: ChasquidMta = ChasquidMta;

impl Mta for ChasquidMta {
    fn name(&self) -> &'static str {
        "chasquid"
    }

    fn version(&self) -> Result<String, TargetError> {
        installed()?;
        // "chasquid 1.11-2+b2 (source date: ...)"
        let out = run(Command::new(binary()).arg("-version"))?;
        out.split_whitespace()
            .nth(1)
            .map(str::to_string)
            .ok_or_else(|| TargetError::Command {
                command: format!("{} -version", binary().display()),
                output: out.clone(),
            })
    }

    fn support(&self, knob: Knob) -> Support {
        match knob {
            Knob::QueueLifetime | Knob::BounceLifetime => {
                Support::No("the give-up time is compiled in (20 hours)")
            }
            Knob::DelayWarning => Support::No("chasquid sends no delay warnings"),
            Knob::RetryMin | Knob::RetryMax => Support::No(
                "retry delays are compiled in (1, 5 and 10 minutes, then every 20 minutes)",
            ),
            Knob::QueueRun => Support::No(
                "there are no queue runs: each message has its own compiled-in retry timer",
            ),
            Knob::ConnectTimeout => Support::No("the connect timeout is compiled in (1 minute)"),
            Knob::HopLimit => Support::Yes,
        }
    }

    fn relays_unauthenticated(&self) -> Support {
        Support::No(
            "chasquid relays only for its own authenticated users: an unauthenticated \
             session's RCPT TO another domain gets `503 5.7.1 Relay not allowed`, and the \
             session client does not trust its own certificate",
        )
    }

    fn start(&self, spec: &Spec) -> Result<Box<dyn Instance>, TargetError> {
        Chasquid::start(spec).map(|c| Box::new(c) as Box<dyn Instance>)
    }
}

fn installed() -> Result<(), TargetError> {
    for (tool, path) in [("chasquid", binary()), ("chasquid-util", util())] {
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

/// The knob as chasquid's limit: it accepts a message with at most that
/// many Received: headers and adds its own when it relays; the knob (as on
/// Postfix) counts the target's own header too, so a limit of N is N-2 incoming.
fn max_received(hop_limit: u32) -> u32 {
    hop_limit.saturating_sub(2).max(1)
}

/// A running private chasquid instance.
#[derive(Debug)]
pub struct Chasquid {
    dir: PathBuf,
    listen: Ipv4Addr,
    daemon: Option<Child>,
    settings: BTreeMap<String, String>,
    knobs: Knobs,
    submission: Submission,
    started: Duration,
}

impl Chasquid {
    /// Write the instance's files, start chasquid, and wait until it greets on `listen`:25.
    pub fn start(spec: &Spec) -> Result<Chasquid, TargetError> {
        let begin = Instant::now();
        installed()?;
        if let Some(dir) = &spec.config_dir {
            return Err(TargetError::UserConfig {
                path: dir.clone(),
                what: "chasquid takes no configuration folder; give chasquid.conf settings with --set key=value".into(),
            });
        }
        let listen = spec.listen;
        if !listen.is_loopback() {
            return Err(TargetError::io(
                format!("listen on {listen}"),
                std::io::Error::other("instances listen on loopback addresses only"),
            ));
        }
        for (k, v) in spec.sets.iter().chain(&spec.set) {
            if let Some((key, why)) = LAB_OWNED.iter().find(|(n, _)| n == k) {
                return Err(TargetError::Forbidden {
                    key: key.to_string(),
                    why,
                });
            }
            if v.contains(['\n', '\r']) {
                return Err(TargetError::BadSetting(format!("{k}={v}")));
            }
        }
        let host = lab::TARGET_HOSTNAME;
        let dir = spec.lab_dir.join(&spec.instance);
        let conf = dir.join("conf");
        let certs = conf.join("certs").join(host);
        for d in [&certs, &conf.join("domains").join(host), &dir.join("data")] {
            std::fs::create_dir_all(d)
                .map_err(|e| TargetError::io(format!("create {}", d.display()), e))?;
        }
        let tls = certificate(&certs, host)?;

        // chasquid.conf (protobuf text): the user's settings, then the lab's.
        let mut settings = BTreeMap::new();
        for (k, v) in spec.sets.iter().chain(&spec.set) {
            settings.insert(k.clone(), v.clone());
        }
        let quote = |s: &str| format!("{s:?}");
        for (k, v) in [
            ("hostname", quote(host)),
            ("smtp_address", quote(&format!("{listen}:25"))),
            ("submission_address", quote(&format!("{listen}:587"))),
            (
                "submission_over_tls_address",
                quote(&format!("{listen}:465")),
            ),
            ("monitoring_address", quote("")),
            ("data_dir", quote(&dir.join("data").display().to_string())),
            (
                "mail_log_path",
                quote(&dir.join("mail.log").display().to_string()),
            ),
        ] {
            settings.insert(k.to_string(), v);
        }
        let text: String = settings
            .iter()
            .map(|(k, v)| format!("{k}: {v}\n"))
            .collect();
        let conf_file = conf.join("chasquid.conf");
        std::fs::write(&conf_file, text)
            .map_err(|e| TargetError::io(format!("write {}", conf_file.display()), e))?;

        let password = random_password()?;
        run(Command::new(util())
            .arg(format!("-C={}", conf.display()))
            .arg("user-add")
            .arg(format!("{USER}@{host}"))
            .arg(format!("--password={password}")))?;
        // Unknown or malformed settings: chasquid-util reads the file as chasquid will.
        run(Command::new(util())
            .arg(format!("-C={}", conf.display()))
            .arg("print-config"))
        .map_err(|e| match e {
            TargetError::Command { output, .. } => {
                TargetError::Rejected(format!("chasquid.conf: {output}"))
            }
            e => e,
        })?;

        let hop_limit = spec
            .knobs
            .get(&Knob::HopLimit)
            .and_then(|v| v.as_count())
            .map(max_received);
        let max = hop_limit.unwrap_or(DEFAULT_MAX_RECEIVED);
        let mut knobs = Knobs::new();
        let t = |s| Value::Time(Duration::from_secs(s));
        knobs.insert(Knob::HopLimit, Value::Count(max + 2));
        knobs.insert(Knob::RetryMin, t(60));
        knobs.insert(Knob::RetryMax, t(20 * 60 + 59));
        knobs.insert(Knob::QueueLifetime, t(20 * 3600));
        knobs.insert(Knob::BounceLifetime, t(20 * 3600));
        knobs.insert(Knob::DelayWarning, t(0));
        knobs.insert(Knob::ConnectTimeout, t(60));
        if let Some(m) = hop_limit {
            settings.insert("-testing__max_received_headers".into(), m.to_string());
        }

        let out = std::fs::File::create(dir.join("chasquid.out"))
            .map_err(|e| TargetError::io("create chasquid.out", e))?;
        let mut cmd = Command::new(binary());
        cmd.arg("-config_dir")
            .arg(&conf)
            .arg("-logfile")
            .arg(dir.join("chasquid.log"))
            .args(["-v", "1"]);
        if let Some(m) = hop_limit {
            cmd.arg(format!("-testing__max_received_headers={m}"));
        }
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone().map_err(|e| TargetError::io("dup log", e))?)
            .stderr(out)
            .process_group(0);
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to kill
        // chasquid if mtaspec dies.
        unsafe {
            cmd.pre_exec(|| {
                nix::libc::prctl(nix::libc::PR_SET_PDEATHSIG, nix::libc::SIGKILL);
                Ok(())
            });
        }
        let daemon = cmd
            .spawn()
            .map_err(|e| TargetError::io(format!("start {}", binary().display()), e))?;
        let mut cq = Chasquid {
            dir,
            listen,
            daemon: Some(daemon),
            settings,
            knobs,
            submission: Submission {
                user: format!("{USER}@{host}"),
                password,
                server_name: host.to_string(),
                tls,
            },
            started: Duration::ZERO,
        };
        let addr = cq.smtp_addr();
        let limit = Duration::from_secs(15);
        let ready = super::wait_for_greeting(addr, limit, || {
            super::still_running(&mut cq.daemon, "chasquid")
        });
        if let Err(why) = ready {
            return Err(super::not_ready(addr, limit, &why, cq.log_tail(30)));
        }
        cq.started = begin.elapsed();
        Ok(cq)
    }

    fn kill(&mut self, grace: Duration) {
        if let Some(child) = self.daemon.take() {
            super::stop_group(child, grace);
        }
    }
}

impl Instance for Chasquid {
    fn mta(&self) -> &'static str {
        "chasquid"
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
        let qdir = self.dir.join("data/queue");
        let entries = match std::fs::read_dir(&qdir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(TargetError::io(format!("list {}", qdir.display()), e)),
        };
        let mut out = Vec::new();
        for e in entries.flatten() {
            if !e.file_name().to_string_lossy().starts_with("m:") {
                continue;
            }
            let mut text = String::new();
            if let Ok(f) = std::fs::File::open(e.path()) {
                let _ = f.take(QUEUE_FILE_CAP).read_to_string(&mut text);
            }
            if let Some(q) = parse_queue_file(&text) {
                out.push(q);
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    fn flush(&self) -> Result<(), TargetError> {
        Err(TargetError::Command {
            command: "chasquid flush".into(),
            output: "chasquid has no command to retry its queue now".into(),
        })
    }

    fn log_tail(&self, n: usize) -> String {
        super::tail_files(
            &[
                &self.dir.join("mail.log"),
                &self.dir.join("chasquid.log"),
                &self.dir.join("chasquid.out"),
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

    fn submission(&self) -> Option<Submission> {
        Some(self.submission.clone())
    }
}

impl Drop for Chasquid {
    fn drop(&mut self) {
        self.kill(Duration::from_secs(2));
    }
}

/// The envelope of a queue file (protobuf text): `ID`, `from`, and per
/// recipient `address` and `last_failure_message`, before the message data.
pub fn parse_queue_file(text: &str) -> Option<Queued> {
    let value = |line: &str, key: &str| -> Option<String> {
        let rest = line.trim().strip_prefix(key)?.strip_prefix(':')?.trim();
        let inner = rest.strip_prefix('"')?.strip_suffix('"')?;
        Some(inner.replace("\\\"", "\"").replace("\\\\", "\\"))
    };
    let mut q = Queued {
        id: String::new(),
        sender: String::new(),
        recipients: Vec::new(),
        reason: None,
    };
    for line in text.lines() {
        if line.starts_with("data:") {
            break;
        }
        if let Some(v) = value(line, "ID") {
            q.id = v;
        } else if let Some(v) = value(line, "from") {
            q.sender = v;
        } else if let Some(v) = value(line, "address") {
            q.recipients.push(v);
        } else if let Some(v) = value(line, "last_failure_message") {
            q.reason = Some(v);
        }
    }
    (!q.id.is_empty()).then_some(q)
}

/// A throw-away CA and a certificate for `host` signed by it: the
/// certificate and key go to chasquid's `certs/<host>/`, the CA into the
/// client configuration that trusts it.
fn certificate(dir: &Path, host: &str) -> Result<Arc<rustls::ClientConfig>, TargetError> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let cert_err = |e: rcgen::Error| {
        TargetError::io("make the instance's certificate", std::io::Error::other(e))
    };
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "mtaspec chasquid instance CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().map_err(cert_err)?;
    let ca_cert = ca.self_signed(&ca_key).map_err(cert_err)?;
    let issuer = Issuer::new(ca, ca_key);
    let mut leaf = CertificateParams::new(vec![host.to_string()]).map_err(cert_err)?;
    leaf.distinguished_name.push(DnType::CommonName, host);
    leaf.use_authority_key_identifier_extension = true;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_key = KeyPair::generate().map_err(cert_err)?;
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).map_err(cert_err)?;
    let write = |name: &str, text: &str, mode: u32| {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = dir.join(name);
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| TargetError::io(format!("write {}", path.display()), e))
    };
    write("fullchain.pem", &leaf_cert.pem(), 0o644)?;
    write("privkey.pem", &leaf_key.serialize_pem(), 0o600)?;
    let tls_err = |e: rustls::Error| {
        TargetError::io(
            "build the client's TLS configuration",
            std::io::Error::other(e),
        )
    };
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_cert.der().clone()).map_err(tls_err)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(client))
}

/// A password for the instance's one user: 24 hex digits from the kernel's random source.
fn random_password() -> Result<String, TargetError> {
    let mut bytes = [0u8; 12];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| TargetError::io("read /dev/urandom", e))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn run(cmd: &mut Command) -> Result<String, TargetError> {
    let shown = format!("{cmd:?}").replace('"', "");
    let out = cmd
        .stdin(Stdio::null())
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
    fn queue_file_envelope_parses() {
        let text = "ID: \"gpgC237ARCE\"\nfrom: \"alice@src.test\"\nTo: \"bob@dest.test\"\n\
rcpt: {\n  address: \"bob@dest.test\"\n  last_failure_message: \"Could not find mail server\"\n  original_address: \"bob@dest.test\"\n}\n\
data: \"Received: from x\\naddress: \\\"evil@x\\\"\\n\"\n";
        let q = parse_queue_file(text).unwrap();
        assert_eq!(q.id, "gpgC237ARCE");
        assert_eq!(q.sender, "alice@src.test");
        assert_eq!(q.recipients, ["bob@dest.test"]);
        assert_eq!(q.reason.as_deref(), Some("Could not find mail server"));
        assert!(parse_queue_file("data: \"x\"\n").is_none());
    }

    #[test]
    fn hop_limit_leaves_room_for_the_targets_own_header() {
        assert_eq!(max_received(101), 99);
        assert_eq!(max_received(2), 1);
    }

    #[test]
    fn timers_are_unsupported_and_say_why() {
        for k in Knob::ALL {
            match (k, CHASQUID.support(k)) {
                (Knob::HopLimit, s) => assert_eq!(s, Support::Yes),
                (_, Support::No(why)) => assert!(!why.is_empty()),
                (k, s) => panic!("{k}: {s:?}"),
            }
        }
    }

    #[test]
    fn certificate_is_trusted_by_the_client_config() {
        let dir = tempfile::tempdir().unwrap();
        let _client = certificate(dir.path(), "mta.target.test").unwrap();
        let cert = std::fs::read_to_string(dir.path().join("fullchain.pem")).unwrap();
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
        let key = dir.path().join("privkey.pem");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
