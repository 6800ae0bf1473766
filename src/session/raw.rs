//! Inject stage: the raw SMTP client — runs one `[[session]]` script byte for byte against the target.
//!
//! Every step is bounded: connecting, each write, each reply (parsed with
//! [`parse_reply`]'s limits, at most [`MAX_BUFFER`] octets held), the TLS
//! handshake and every pause have a timeout, so a silent or hostile target
//! cannot hang the run or fill memory. The client only records what
//! happened; `session::judge` compares it with the script.

use super::data_content;
use crate::run::observe::{Line, RawSession, Recorder, SentMessage, StepOutcome};
use crate::smtp::reply::{parse_reply, ReplyLimits};
use crate::suite::session::{
    bdat_wire, escape, Content, ReplyExpect, SessionSpec, StepKind, DEFAULT_WAIT,
};
use crate::world::Scope;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;
use tokio_rustls::rustls;

/// Most octets of unread replies the client holds.
pub const MAX_BUFFER: usize = 256 * 1024;
/// Longest a sent chunk is shown in a transcript line.
const SHOWN: usize = 400;
/// Longest the client waits for the target to close after the script.
pub const DRAIN: Duration = Duration::from_secs(3);

/// Where and how a session connects.
pub struct Ctx<'a> {
    pub target: SocketAddr,
    pub from: Ipv4Addr,
    /// TLS client config trusting the target's certificate (`None`: STARTTLS steps fail).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The name the target's certificate carries.
    pub server_name: String,
    pub scope: &'a Scope,
    pub rec: &'a Recorder,
    /// The instance's cap on connections not yet greeted.
    pub gate: &'a crate::target::ClientGate,
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    Gone,
}

impl Stream {
    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf).await,
            Stream::Tls(s) => s.read(buf).await,
            Stream::Gone => Ok(0),
        }
    }

    async fn write_all(&mut self, b: &[u8]) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.write_all(b).await,
            Stream::Tls(s) => {
                s.write_all(b).await?;
                s.flush().await
            }
            Stream::Gone => Err(std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                "the connection is gone",
            )),
        }
    }
}

struct Session<'a> {
    cx: &'a Ctx<'a>,
    stream: Stream,
    buf: Vec<u8>,
    eof: bool,
    transcript: Vec<Line>,
}

impl Session<'_> {
    fn log(&mut self, from_peer: bool, text: String) {
        self.transcript.push(Line {
            at: self.cx.rec.now(),
            from_peer,
            text,
        });
    }

    async fn send(&mut self, bytes: &[u8]) -> StepOutcome {
        let mut shown = escape(&bytes[..bytes.len().min(SHOWN)]);
        if bytes.len() > SHOWN {
            shown.push_str(&format!("… ({} octets)", bytes.len()));
        }
        self.log(false, shown);
        match tokio::time::timeout(DEFAULT_WAIT, self.stream.write_all(bytes)).await {
            Ok(Ok(())) => StepOutcome::Sent {
                octets: bytes.len(),
            },
            Ok(Err(e)) => StepOutcome::SendFailed {
                error: e.to_string(),
            },
            Err(_) => StepOutcome::SendFailed {
                error: format!("the target took no data for {} s", DEFAULT_WAIT.as_secs()),
            },
        }
    }

    /// Read until one complete reply, the end of the connection, or `within`.
    async fn reply(&mut self, within: Duration) -> StepOutcome {
        let start = Instant::now();
        let until = start + within;
        let limits = ReplyLimits::default();
        loop {
            match parse_reply(&self.buf, &limits) {
                Ok(Some((r, used))) => {
                    self.buf.drain(..used);
                    for l in r.to_wire().lines() {
                        self.log(true, l.to_string());
                    }
                    return StepOutcome::Reply {
                        code: r.code,
                        lines: r.lines,
                        waited: start.elapsed(),
                    };
                }
                Ok(None) => {}
                Err(e) => return self.bad(e.to_string()),
            }
            if self.eof {
                if !self.buf.is_empty() {
                    return self.bad("the connection closed inside a reply".into());
                }
                self.log(true, "[connection closed]".into());
                return StepOutcome::Closed {
                    waited: start.elapsed(),
                };
            }
            if self.buf.len() > MAX_BUFFER {
                return self.bad(format!("more than {MAX_BUFFER} octets without a reply end"));
            }
            let mut chunk = [0u8; 8192];
            match tokio::time::timeout_at(until, self.stream.read(&mut chunk)).await {
                Err(_) => {
                    return StepOutcome::Silent {
                        waited: start.elapsed(),
                    }
                }
                Ok(Ok(0)) => self.eof = true,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Ok(Err(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                    ) =>
                {
                    self.eof = true
                }
                Ok(Err(e)) => {
                    return StepOutcome::ReadFailed {
                        error: e.to_string(),
                    }
                }
            }
        }
    }

    fn bad(&mut self, error: String) -> StepOutcome {
        let bytes = escape(&self.buf[..self.buf.len().min(SHOWN)]);
        self.log(true, format!("[unreadable: {bytes}]"));
        self.buf.clear();
        StepOutcome::BadReply { error, bytes }
    }

    /// End the session without a reset: close our side, then read what the
    /// target still says until it closes (at most [`DRAIN`]). Closing with
    /// unread replies would reset the connection, and the target could lose
    /// commands it has not read yet.
    async fn finish(&mut self) {
        match &mut self.stream {
            Stream::Plain(s) => {
                let _ = s.shutdown().await;
            }
            Stream::Tls(s) => {
                let _ = tokio::time::timeout(DRAIN, s.shutdown()).await;
            }
            Stream::Gone => return,
        }
        let until = Instant::now() + DRAIN;
        let mut seen = 0usize;
        let mut chunk = [0u8; 8192];
        while !self.eof {
            match tokio::time::timeout_at(until, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                Ok(Ok(n)) => {
                    // Keep what fits for the transcript; drop the rest.
                    if seen < MAX_BUFFER {
                        self.buf.extend_from_slice(&chunk[..n]);
                    }
                    seen += n;
                }
            }
        }
        if !self.buf.is_empty() {
            let text = escape(&self.buf[..self.buf.len().min(SHOWN)]);
            self.log(true, format!("[after the script: {text}]"));
        }
    }

    async fn starttls(&mut self) -> StepOutcome {
        let Some(config) = self.cx.tls.clone() else {
            return StepOutcome::Tls {
                error: Some("the lab has no TLS material".into()),
            };
        };
        let mut early = None;
        if !self.buf.is_empty() {
            // The target answered something after its reply to STARTTLS, in
            // plain text: commands pipelined behind STARTTLS were executed.
            early = Some(format!(
                "the target sent {} octets in plain text after its reply to STARTTLS: {}",
                self.buf.len(),
                escape(&self.buf[..self.buf.len().min(SHOWN)])
            ));
            self.buf.clear();
        }
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            return StepOutcome::Tls {
                error: Some("TLS is already active".into()),
            };
        };
        let name = match rustls::pki_types::ServerName::try_from(self.cx.server_name.clone()) {
            Ok(n) => n,
            Err(e) => {
                return StepOutcome::Tls {
                    error: Some(format!("bad server name: {e}")),
                }
            }
        };
        let connector = tokio_rustls::TlsConnector::from(config);
        self.log(false, "[TLS handshake]".into());
        match tokio::time::timeout(DEFAULT_WAIT, connector.connect(name, tcp)).await {
            Ok(Ok(tls)) => {
                let version = tls
                    .get_ref()
                    .1
                    .protocol_version()
                    .map(|v| format!("{v:?}"))
                    .unwrap_or_default();
                self.stream = Stream::Tls(Box::new(tls));
                self.log(true, format!("[TLS established: {version}]"));
                StepOutcome::Tls { error: early }
            }
            Ok(Err(e)) => {
                self.eof = true;
                StepOutcome::Tls {
                    error: Some(format!("TLS handshake failed: {e}")),
                }
            }
            Err(_) => {
                self.eof = true;
                StepOutcome::Tls {
                    error: Some(format!(
                        "no TLS handshake within {} s",
                        DEFAULT_WAIT.as_secs()
                    )),
                }
            }
        }
    }
}

async fn connect(cx: &Ctx<'_>) -> Result<TcpStream, String> {
    let sock = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    sock.bind(SocketAddr::from((cx.from, 0)))
        .map_err(|e| format!("cannot bind the client to {}: {e}", cx.from))?;
    let s = tokio::time::timeout(DEFAULT_WAIT, sock.connect(cx.target))
        .await
        .map_err(|_| {
            format!(
                "no connection to {} within {} s",
                cx.target,
                DEFAULT_WAIT.as_secs()
            )
        })?
        .map_err(|e| format!("cannot connect to the target at {}: {e}", cx.target))?;
    // Each send step is one write; do not hold small writes back.
    let _ = s.set_nodelay(true);
    Ok(s)
}

/// Run session `n`'s script; the outcome is an observation, never an error.
pub async fn run(n: usize, spec: &SessionSpec, cx: &Ctx<'_>) -> RawSession {
    let at = cx.rec.now();
    let mut out = RawSession {
        session: n,
        client: cx.from.to_string(),
        at,
        outcomes: Vec::new(),
        transcript: Vec::new(),
        messages: Vec::new(),
        error: None,
    };
    // Held until the first expected reply (the greeting) has been read.
    let mut permit = cx.gate.enter().await;
    let tcp = match connect(cx).await {
        Ok(s) => s,
        Err(e) => {
            out.error = Some(e);
            return out;
        }
    };
    if let Ok(a) = tcp.local_addr() {
        out.client = a.to_string();
    }
    let mut s = Session {
        cx,
        stream: Stream::Plain(tcp),
        buf: Vec::new(),
        eof: false,
        transcript: Vec::new(),
    };
    let mut bdat: Option<Vec<u8>> = None;
    // `data` steps make one message until the content holds its end.
    let mut data: Option<Vec<u8>> = None;
    for step in &spec.steps {
        let outcome = match &step.kind {
            StepKind::Send {
                bytes,
                content,
                fit,
            } => {
                let bytes = match fit {
                    None => scope_names(cx.scope, bytes),
                    Some(f) => match fit_path(cx.scope, bytes, f) {
                        Ok(b) => b,
                        Err(error) => {
                            out.outcomes.push(StepOutcome::SendFailed { error });
                            break;
                        }
                    },
                };
                match content {
                    None => {}
                    Some(Content::Data) => {
                        let msg = data.get_or_insert_with(Vec::new);
                        msg.extend_from_slice(&bytes);
                        if msg.starts_with(b".\r\n") || msg.windows(5).any(|w| w == b"\r\n.\r\n") {
                            out.messages.push(SentMessage {
                                dot_stuffed: true,
                                content: data_content(msg),
                            });
                            data = None;
                        }
                    }
                    Some(Content::Bdat { last }) => {
                        let msg = bdat.get_or_insert_with(Vec::new);
                        msg.extend_from_slice(&bytes);
                        if *last {
                            out.messages.push(SentMessage {
                                dot_stuffed: false,
                                content: bdat.take().unwrap_or_default(),
                            });
                        }
                    }
                }
                match content {
                    // The count is taken after scoping changed the chunk's names.
                    Some(Content::Bdat { last }) => s.send(&bdat_wire(&bytes, *last)).await,
                    _ => s.send(&bytes).await,
                }
            }
            StepKind::Pause(d) => {
                tokio::time::sleep(*d).await;
                StepOutcome::Paused
            }
            StepKind::StartTls => s.starttls().await,
            StepKind::Enhanced(_) => StepOutcome::EnhancedMode,
            StepKind::Expect(ReplyExpect::Reply { within, .. })
            | StepKind::Expect(ReplyExpect::Closed { within }) => s.reply(*within).await,
            StepKind::Expect(ReplyExpect::Nothing(d)) => {
                let r = s.reply(*d).await;
                if matches!(r, StepOutcome::Silent { .. }) && !s.buf.is_empty() {
                    // Part of a reply came: that is not silence.
                    s.bad("a partial reply".into())
                } else {
                    r
                }
            }
        };
        if matches!(step.kind, StepKind::Expect(_)) {
            permit = None;
        }
        out.outcomes.push(outcome);
    }
    drop(permit);
    s.finish().await;
    if let Some(msg) = data {
        out.messages.push(SentMessage {
            dot_stuffed: true,
            content: data_content(&msg),
        });
    }
    out.transcript = s.transcript;
    out
}

/// Scope the names in `bytes` with the filler of `fit` grown so that the
/// `<...>` path around it (or the whole line) is exactly `fit.len` octets.
pub fn fit_path(
    scope: &Scope,
    bytes: &[u8],
    fit: &crate::suite::session::Fit,
) -> Result<Vec<u8>, String> {
    let with_one = if fit.line {
        scope_names(scope, bytes).len()
    } else {
        // `<` and `>` are never part of a name: the path scopes alone.
        let lt = bytes[..fit.at].iter().rposition(|&b| b == b'<');
        let gt = bytes[fit.at..]
            .iter()
            .position(|&b| b == b'>')
            .map(|g| fit.at + g);
        let (Some(lt), Some(gt)) = (lt, gt) else {
            return Err("`{C*path=N}` stands outside a `<...>` path".into());
        };
        scope_names(scope, &bytes[lt..=gt]).len()
    };
    let n = (fit.len + 1)
        .checked_sub(with_one)
        .filter(|n| *n >= 1)
        .ok_or_else(|| {
            format!(
                "the {} is {with_one} octets with one `{}` after scoping: more than the {} asked for",
                if fit.line { "line" } else { "path" },
                fit.fill as char,
                fit.len
            )
        })?;
    let mut b = bytes[..fit.at].to_vec();
    b.extend(std::iter::repeat_n(fit.fill, n));
    b.extend_from_slice(&bytes[fit.at + 1..]);
    Ok(scope_names(scope, &b))
}

/// Move every `.test` name in sent bytes under the scenario's label.
pub fn scope_names(scope: &Scope, bytes: &[u8]) -> Vec<u8> {
    static NAME: std::sync::OnceLock<regex::bytes::Regex> = std::sync::OnceLock::new();
    let re = NAME.get_or_init(|| {
        regex::bytes::Regex::new(r"(?i-u)\b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.test\b")
            .expect("the name pattern compiles")
    });
    re.replace_all(bytes, |c: &regex::bytes::Captures| {
        let name = String::from_utf8_lossy(&c[0]).into_owned();
        scope.name(&name).into_bytes()
    })
    .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::session::{parse_script, ClientFrom};
    use tokio::net::TcpListener;

    /// Run `script` against a local peer driven by `peer`.
    async fn against(
        script: &str,
        peer: impl FnOnce(TcpStream) -> tokio::task::JoinHandle<()> + Send + 'static,
    ) -> RawSession {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            peer(s).await.unwrap();
        });
        let spec = SessionSpec {
            from: ClientFrom::Trusted,
            steps: parse_script(script).unwrap(),
        };
        let scope = Scope::new(0);
        let rec = Recorder::default();
        let gate = crate::target::ClientGate::capped(1);
        let cx = Ctx {
            target,
            from: Ipv4Addr::LOCALHOST,
            tls: None,
            server_name: "mta.target.test".into(),
            scope: &scope,
            rec: &rec,
            gate: &gate,
        };
        let r = run(0, &spec, &cx).await;
        server.abort();
        // The session gave its place at the gate back.
        assert!(gate.enter().await.is_some());
        r
    }

    #[tokio::test]
    async fn records_replies_silence_and_close_in_order() {
        let r = against(
            "< 220\n> EHLO client.test\n< 250\n< nothing 200ms\n< closed\n",
            |mut s| {
                tokio::spawn(async move {
                    s.write_all(b"220 hi\r\n").await.unwrap();
                    let mut b = [0u8; 64];
                    let n = s.read(&mut b).await.unwrap();
                    assert_eq!(
                        &b[..n],
                        b"EHLO client.s0.test\r\n",
                        "names are scoped, CRLF added"
                    );
                    s.write_all(b"250-a\r\n250 b\r\n").await.unwrap();
                    tokio::time::sleep(Duration::from_millis(400)).await;
                })
            },
        )
        .await;
        assert!(r.error.is_none());
        assert!(matches!(
            &r.outcomes[0],
            StepOutcome::Reply { code: 220, .. }
        ));
        assert!(matches!(&r.outcomes[1], StepOutcome::Sent { octets: 21 }));
        assert!(
            matches!(&r.outcomes[2], StepOutcome::Reply { code: 250, lines, .. } if lines.len() == 2)
        );
        assert!(matches!(&r.outcomes[3], StepOutcome::Silent { .. }));
        assert!(matches!(&r.outcomes[4], StepOutcome::Closed { .. }));
    }

    #[tokio::test]
    async fn an_endless_reply_line_is_cut_off_not_buffered() {
        let r = against("< 220 within 5s\n", |mut s| {
            tokio::spawn(async move {
                let junk = vec![b'2'; 64 * 1024];
                for _ in 0..64 {
                    if s.write_all(&junk).await.is_err() {
                        return;
                    }
                }
            })
        })
        .await;
        assert!(
            matches!(&r.outcomes[0], StepOutcome::BadReply { .. }),
            "{:?}",
            r.outcomes
        );
    }

    #[tokio::test]
    async fn a_silent_peer_times_out_the_step() {
        let started = std::time::Instant::now();
        let r = against("< 220 within 300ms\n", |s| {
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(30)).await;
                drop(s);
            })
        })
        .await;
        assert!(matches!(&r.outcomes[0], StepOutcome::Silent { .. }));
        // The wait was bounded (the close after the script is bounded too).
        assert!(started.elapsed() < DRAIN + Duration::from_secs(4));
    }

    /// The one `>` line of `script`, filled for `scope`.
    fn fitted(script: &str, scope: &Scope) -> Result<String, String> {
        let steps = parse_script(script).unwrap();
        let StepKind::Send {
            bytes,
            fit: Some(fit),
            ..
        } = &steps[0].kind
        else {
            panic!("{steps:?}")
        };
        fit_path(scope, bytes, fit).map(|b| String::from_utf8(b).unwrap())
    }

    /// Octets from the first `<` to the first `>`, both included.
    fn path_len(text: &str) -> usize {
        text.find('>').unwrap() - text.find('<').unwrap() + 1
    }

    #[test]
    fn a_fitted_path_has_the_asked_length_whatever_the_label() {
        for scope in [
            Scope::new(0),
            Scope::new(23),
            Scope::new(353),
            Scope::with_nonce(4012, Some("1a2b3c4d")),
        ] {
            let text =
                fitted("> RCPT TO:<{l*64}@{a*63}.{c*path=256}.dest.test>\n", &scope).unwrap();
            assert_eq!(path_len(&text), 256, "{text}");
            assert!(
                text.contains(&format!(".dest.{}.test>", scope.label)),
                "{text}"
            );
        }
        // A path already too long with one filler is an error, not a longer path.
        let e = fitted("> RCPT TO:<{l*64}@{c*path=20}.dest.test>\n", &Scope::new(1)).unwrap_err();
        assert!(e.contains("more than the 20 asked for"), "{e}");
        // A filler that extends a `.test` name is measured in the whole name.
        for scope in [Scope::new(0), Scope::new(353)] {
            let text = fitted("> RCPT TO:<a@b.test{c*path=40}>\n", &scope).unwrap();
            assert_eq!(path_len(&text), 40, "{text}");
        }
        // `line=`: the whole line, CRLF included.
        for scope in [Scope::new(7), Scope::with_nonce(4012, Some("1a2b3c4d"))] {
            let text = fitted(
                "> RCPT TO:<bob@dest.test> ORCPT=rfc822;{x*line=512}@example.org\n",
                &scope,
            )
            .unwrap();
            assert_eq!(text.len(), 512);
            assert!(text.ends_with("@example.org\r\n"));
        }
    }

    #[test]
    fn names_under_test_are_scoped_and_nothing_else_changes() {
        let s = Scope::new(4);
        assert_eq!(
            scope_names(&s, b"MAIL FROM:<alice@src.test> SIZE=10\r\n\x00x.test.\n"),
            b"MAIL FROM:<alice@src.s4.test> SIZE=10\r\n\x00x.s4.test.\n".to_vec()
        );
        assert_eq!(
            scope_names(&s, b"a.testing b.example"),
            b"a.testing b.example".to_vec()
        );
    }
}
