//! Inject stage: the scripted SMTP client that hands the scenario's messages to the target.
//!
//! Messages are composed with lettre (well-formed by construction); the SMTP
//! dialogue is our own, so that a 4xx/5xx from the target is recorded as an
//! observation rather than turned into an error. A target is a peer that may
//! be broken or hostile: connecting, each write and each reply have their own
//! timeout, the whole injection ends at the scenario's deadline, and replies
//! are read incrementally with bounds ([`ReplyReader`]).

use crate::run::observe::{Injection, Line, Recorder};
use crate::smtp::reply::{Reply, ReplyLimits, ReplyReader};
use crate::suite::MessageSpec;
use crate::target::Submission;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Longest the client waits for one whole reply (however it trickles in).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest the client waits for the target to take a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest one write may take (a command, or the whole message).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// The message as the envelope and the bytes to send (already scoped).
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub from: String,
    pub to: Vec<String>,
    pub mail_params: Vec<String>,
    pub rcpt_params: Vec<String>,
    pub data: Vec<u8>,
}

/// Compose the message: `received` Received: headers, the user's headers,
/// then lettre's From/To/Subject/Date/Message-ID and body.
pub fn compose(
    spec: &MessageSpec,
    from: &str,
    header_from: Option<&str>,
    to: &[String],
) -> Result<Outgoing, String> {
    use lettre::message::{header::ContentType, Mailbox, Message};
    let parse = |a: &str| -> Result<Mailbox, String> {
        a.parse().map_err(|e| format!("address `{a}`: {e}"))
    };
    let mut b = Message::builder()
        .subject(spec.subject.clone())
        .header(ContentType::TEXT_PLAIN);
    b = match header_from {
        Some(h) => b.from(parse(h)?),
        None if from.is_empty() => b.from(parse("mailer-daemon@client.test")?),
        None => b.from(parse(from)?),
    };
    for t in to {
        b = b.to(parse(t)?);
    }
    let msg = b.body(spec.body.clone()).map_err(|e| e.to_string())?;
    let mut data = Vec::new();
    for i in 0..spec.received {
        data.extend_from_slice(
            format!(
                "Received: from hop{i}.client.test (hop{i}.client.test [127.0.0.9])\r\n\tby hop{n}.client.test with ESMTP id H{i}; Mon, 23 Nov 2026 00:00:00 +0000\r\n",
                n = i + 1
            )
            .as_bytes(),
        );
    }
    for h in &spec.headers {
        data.extend_from_slice(h.trim_end().as_bytes());
        data.extend_from_slice(b"\r\n");
    }
    data.extend_from_slice(&msg.formatted());
    Ok(Outgoing {
        from: from.to_string(),
        to: to.to_vec(),
        mail_params: spec.mail_params.clone(),
        rcpt_params: spec.rcpt_params.clone(),
        data,
    })
}

/// SMTP connection with a bounded reply reader and a transcript.
struct Conn<'a> {
    stream: Stream,
    replies: ReplyReader,
    rec: &'a Recorder,
    transcript: Vec<Line>,
}

/// The connection, before and after STARTTLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Only while STARTTLS takes the plain stream over.
    Closed,
}

impl Stream {
    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf).await,
            Stream::Tls(s) => s.read(buf).await,
            Stream::Closed => Ok(0),
        }
    }

    async fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.write_all(buf).await,
            Stream::Tls(s) => {
                s.write_all(buf).await?;
                s.flush().await
            }
            Stream::Closed => Err(std::io::ErrorKind::NotConnected.into()),
        }
    }
}

impl Conn<'_> {
    fn log(&mut self, from_peer: bool, text: &str) {
        self.transcript.push(Line {
            at: self.rec.now(),
            from_peer,
            text: text.to_string(),
        });
    }

    async fn reply(&mut self) -> Result<Reply, String> {
        let limits = ReplyLimits::default();
        let until = tokio::time::Instant::now() + REPLY_TIMEOUT;
        loop {
            match self.replies.next(&limits) {
                Ok(Some(reply)) => {
                    for l in reply.to_wire().lines() {
                        self.log(true, l);
                    }
                    return Ok(reply);
                }
                Ok(None) => {}
                Err(e) => return Err(format!("bad reply from the target: {e}")),
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout_at(until, self.stream.read(&mut chunk))
                .await
                .map_err(|_| format!("no complete reply within {} s", REPLY_TIMEOUT.as_secs()))?
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("the target closed the connection".into());
            }
            self.replies.push(&chunk[..n]);
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        tokio::time::timeout(WRITE_TIMEOUT, self.stream.write_all(bytes))
            .await
            .map_err(|_| {
                format!(
                    "write: the target took nothing for {} s",
                    WRITE_TIMEOUT.as_secs()
                )
            })?
            .map_err(|e| format!("write: {e}"))
    }

    async fn send(&mut self, line: &str) -> Result<Reply, String> {
        self.send_shown(line, line).await
    }

    /// Send `line`, showing `shown` in the transcript (credentials stay out of it).
    async fn send_shown(&mut self, line: &str, shown: &str) -> Result<Reply, String> {
        self.log(false, shown);
        self.write(format!("{line}\r\n").as_bytes()).await?;
        self.reply().await
    }
}

/// Inject one message, giving up at `deadline` (the scenario's); the
/// outcome is an observation, never an error.
pub async fn inject(
    target: SocketAddr,
    msg: &Outgoing,
    index: usize,
    rec: &Recorder,
    deadline: tokio::time::Instant,
    submission: Option<&Submission>,
) -> Injection {
    let at = rec.now();
    let mut accepted = false;
    let mut transcript = Vec::new();
    let connect = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target));
    let error = match tokio::time::timeout_at(deadline, connect).await {
        Err(_) => Some("the scenario's deadline passed while connecting to the target".into()),
        Ok(Err(_)) => Some(format!(
            "cannot connect to the target at {target}: no answer within {} s",
            CONNECT_TIMEOUT.as_secs()
        )),
        Ok(Ok(Err(e))) => Some(format!("cannot connect to the target at {target}: {e}")),
        Ok(Ok(Ok(stream))) => {
            let mut c = Conn {
                stream: Stream::Plain(stream),
                replies: ReplyReader::default(),
                rec,
                transcript: Vec::new(),
            };
            let r = tokio::time::timeout_at(deadline, dialogue(&mut c, msg, submission)).await;
            transcript = std::mem::take(&mut c.transcript);
            match r {
                Ok(Ok(ok)) => {
                    accepted = ok;
                    None
                }
                Ok(Err(e)) => Some(e),
                Err(_) => Some("the dialogue had not ended at the scenario's deadline".into()),
            }
        }
    };
    Injection {
        message: index,
        at,
        accepted,
        transcript,
        error,
    }
}

/// STARTTLS, EHLO again, then AUTH PLAIN; `false` when the target says no.
async fn submit(c: &mut Conn<'_>, sub: &Submission) -> Result<bool, String> {
    use lettre::transport::smtp::authentication::{Credentials, Mechanism};
    use lettre::transport::smtp::commands::Auth;
    if c.send("STARTTLS").await?.class() != 2 {
        return Ok(false);
    }
    if c.replies.buffered() > 0 {
        return Err("the target sent data after its STARTTLS reply (possible injection)".into());
    }
    let Stream::Plain(tcp) = std::mem::replace(&mut c.stream, Stream::Closed) else {
        return Err("STARTTLS twice".into());
    };
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from(sub.server_name.clone())
        .map_err(|e| format!("bad TLS server name `{}`: {e}", sub.server_name))?;
    let tls = tokio::time::timeout(
        REPLY_TIMEOUT,
        tokio_rustls::TlsConnector::from(sub.tls.clone()).connect(name, tcp),
    )
    .await
    .map_err(|_| {
        format!(
            "TLS handshake not done within {} s",
            REPLY_TIMEOUT.as_secs()
        )
    })?
    .map_err(|e| format!("TLS handshake: {e}"))?;
    c.stream = Stream::Tls(Box::new(tls));
    c.log(false, "[TLS established]");
    if c.send("EHLO client.test").await?.class() != 2 {
        return Ok(false);
    }
    let auth = Auth::new(
        Mechanism::Plain,
        Credentials::new(sub.user.clone(), sub.password.clone()),
        None,
    )
    .map_err(|e| format!("AUTH PLAIN: {e}"))?
    .to_string();
    let shown = format!("AUTH PLAIN [credentials of {}]", sub.user);
    Ok(c.send_shown(auth.trim_end(), &shown).await?.class() == 2)
}

async fn dialogue(
    c: &mut Conn<'_>,
    msg: &Outgoing,
    submission: Option<&Submission>,
) -> Result<bool, String> {
    if c.reply().await?.class() != 2 {
        return Ok(false);
    }
    if c.send("EHLO client.test").await?.class() != 2 {
        return Ok(false);
    }
    if let Some(sub) = submission {
        if !submit(c, sub).await? {
            let _ = c.send("QUIT").await;
            return Ok(false);
        }
    }
    let with = |head: String, params: &[String]| {
        std::iter::once(head)
            .chain(params.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ")
    };
    if c.send(&with(format!("MAIL FROM:<{}>", msg.from), &msg.mail_params))
        .await?
        .class()
        != 2
    {
        let _ = c.send("QUIT").await;
        return Ok(false);
    }
    let mut any = false;
    for t in &msg.to {
        any |= c
            .send(&with(format!("RCPT TO:<{t}>"), &msg.rcpt_params))
            .await?
            .class()
            == 2;
    }
    if !any {
        let _ = c.send("QUIT").await;
        return Ok(false);
    }
    if c.send("DATA").await?.class() != 3 {
        let _ = c.send("QUIT").await;
        return Ok(false);
    }
    let mut wire = Vec::with_capacity(msg.data.len() + 16);
    for line in msg.data.split_inclusive(|&b| b == b'\n') {
        if line.first() == Some(&b'.') {
            wire.push(b'.');
        }
        wire.extend_from_slice(line);
    }
    if !wire.ends_with(b"\r\n") {
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b".\r\n");
    c.log(false, &format!("[message: {} octets]", msg.data.len()));
    c.write(&wire).await?;
    let ok = c.reply().await?.class() == 2;
    let _ = c.send("QUIT").await;
    Ok(ok)
}
