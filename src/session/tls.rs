//! Inject stage: the lab's TLS material — a per-run CA and target certificate (rcgen), and the raw client's rustls config.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::rustls;

/// Why the TLS material could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot make the lab's TLS certificate: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("cannot build the TLS client configuration: {0}")]
    Client(#[from] rustls::Error),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A certificate and key for the target (PEM files) and a client config that trusts it.
#[derive(Clone)]
pub struct TlsMaterial {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}

/// Make a throw-away CA and a certificate for `hostname` signed by it; write
/// the target's certificate and key under `dir` (key mode 0600).
pub fn generate(dir: &Path, hostname: &str) -> Result<TlsMaterial, TlsError> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "mtaspec lab CA (per run)");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);

    let mut leaf = CertificateParams::new(vec![hostname.to_string()])?;
    leaf.distinguished_name.push(DnType::CommonName, hostname);
    leaf.use_authority_key_identifier_extension = true;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_key = KeyPair::generate()?;
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer)?;

    let cert_file = dir.join("target-cert.pem");
    let key_file = dir.join("target-key.pem");
    let write = |path: &Path, text: &str, mode: u32| -> Result<(), TlsError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|source| TlsError::Write {
                path: path.to_path_buf(),
                source,
            })
    };
    write(&cert_file, &leaf_cert.pem(), 0o644)?;
    write(&key_file, &leaf_key.serialize_pem(), 0o600)?;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_cert.der().clone())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsMaterial {
        cert_file,
        key_file,
        client: Arc::new(client),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_certificate_and_a_private_key() {
        let dir = tempfile::tempdir().unwrap();
        let m = generate(dir.path(), "mta.target.test").unwrap();
        let cert = std::fs::read_to_string(&m.cert_file).unwrap();
        let key = std::fs::read_to_string(&m.key_file).unwrap();
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(key.contains("PRIVATE KEY"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&m.key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the key must not be readable by others");
    }
}
