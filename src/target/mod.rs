//! Target stage: the MTA under test, started inside the lab.

pub mod postfix;

use std::path::PathBuf;

/// Why the target could not be prepared, started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("{tool} was not found ({path}); install Debian's postfix package: `apt-get install postfix` (see README)")]
    NotInstalled { tool: &'static str, path: PathBuf },
    #[error("setting `{key}` would break the lab: {why}")]
    Forbidden { key: String, why: &'static str },
    #[error(
        "bad --set `{0}`: write KEY=VALUE in main.cf syntax, e.g. --set maximal_queue_lifetime=10s"
    )]
    BadSetting(String),
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
}

/// A PEM certificate and private key for the target's SMTP server.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
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
                if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(TargetError::BadSetting(s.clone()));
                }
                Ok((k.to_string(), v.trim().to_string()))
            })
            .collect()
    }
}
