//! Inject stage: raw SMTP sessions — the target judged as an SMTP server, byte for byte.
//!
//! [`raw`] runs a scenario's `[[session]]` scripts (see `suite::session`)
//! from an address the scenario chooses, [`tls`] makes the lab's per-run
//! certificate, and [`judge`] decides the session expectations from what the
//! client saw and what reached the fake hosts.

pub mod judge;
pub mod raw;
pub mod tls;

use crate::run::observe::Recorder;
use crate::suite::session::ClientFrom;
use crate::suite::Scenario;
use crate::world::Scope;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use tokio_rustls::rustls;

/// The address an untrusted client connects from: 127.0.9.0/24, outside the
/// target's trusted networks (Postfix: `mynetworks = 127.0.0.0/24` in the lab).
pub fn client_addr(scope: &Scope, from: ClientFrom) -> Ipv4Addr {
    match from {
        ClientFrom::Outside => Ipv4Addr::new(127, 0, 9, 1 + (scope.index % 250) as u8),
        ClientFrom::Trusted => Ipv4Addr::LOCALHOST,
    }
}

/// Run the scenario's sessions one after the other, recording each.
pub async fn run_all(
    sc: &Scenario,
    scope: &Scope,
    target: SocketAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
    server_name: &str,
    rec: &Recorder,
) {
    for (n, spec) in sc.sessions.iter().enumerate() {
        let cx = raw::Ctx {
            target,
            from: client_addr(scope, spec.from),
            tls: tls.clone(),
            server_name: server_name.to_string(),
            scope,
            rec,
        };
        let r = raw::run(n, spec, &cx).await;
        rec.update(|o| o.raw_sessions.push(r));
    }
}

/// The content a `data` step carries: up to and including the CRLF before
/// the first `<CRLF>.<CRLF>` (still dot-stuffed).
pub fn data_content(sent: &[u8]) -> Vec<u8> {
    let end = if sent.starts_with(b".\r\n") {
        Some(0)
    } else {
        sent.windows(5)
            .position(|w| w == b"\r\n.\r\n")
            .map(|p| p + 2)
    };
    sent[..end.unwrap_or(sent.len())].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_content_ends_at_the_first_crlf_dot_crlf() {
        assert_eq!(
            data_content(b"a\r\n..b\r\nc\n.\nd\r\n.\r\nMAIL FROM:<x>\r\n.\r\n"),
            b"a\r\n..b\r\nc\n.\nd\r\n".to_vec()
        );
        assert_eq!(data_content(b".\r\n"), b"".to_vec());
        assert_eq!(data_content(b"x\r\n.\r"), b"x\r\n.\r".to_vec());
    }

    #[test]
    fn untrusted_clients_come_from_outside_the_trusted_network() {
        let a = client_addr(&Scope::new(3), ClientFrom::Outside);
        assert_eq!(a, Ipv4Addr::new(127, 0, 9, 4));
        assert_ne!(a.octets()[..3], [127, 0, 0]);
        assert_eq!(
            client_addr(&Scope::new(3), ClientFrom::Trusted),
            Ipv4Addr::LOCALHOST
        );
    }
}
