//! World stage: a scripted fake remote host, answering the target's deliveries per attempt and per command.
//!
//! Everything the target sends is read with bounds (line length, message
//! size, idle time) so a broken or hostile peer cannot make the host hang the
//! run or eat memory.

use crate::run::observe::{Delivery, Line, Recorder, Session};
use crate::smtp::command::{Command, MAX_COMMAND_LINE};
use crate::suite::{Connect, HostSpec, Step};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// Largest message a host takes (end-of-data gets 552 past it).
pub const MAX_MESSAGE: usize = 10 * 1024 * 1024;
/// A peer that says nothing for this long is disconnected.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A running fake host; dropping it stops its listener and sessions.
pub struct Host {
    pub key: String,
    pub addr: SocketAddr,
    tasks: JoinSet<()>,
}

impl Host {
    /// Bind the host's address (unless its script starts by refusing) and serve.
    pub async fn start(spec: HostSpec, addr: SocketAddr, rec: Recorder) -> std::io::Result<Host> {
        let mut tasks = JoinSet::new();
        let key = spec.key.clone();
        let mut addr = addr;
        if spec.refuses_from() != Some(0) {
            let listener = TcpListener::bind(addr).await?;
            addr = listener.local_addr()?;
            tasks.spawn(serve(listener, Arc::new(spec), rec));
        }
        Ok(Host { key, addr, tasks })
    }

    pub fn stop(mut self) {
        self.tasks.abort_all();
    }
}

async fn serve(listener: TcpListener, spec: Arc<HostSpec>, rec: Recorder) {
    let counter = AtomicUsize::new(0);
    let mut sessions = JoinSet::new();
    let stop_at = spec.refuses_from();
    let mut listener = Some(listener);
    loop {
        let Some(l) = listener.as_ref() else {
            // The script went on to refuse: keep serving the open sessions only.
            while sessions.join_next().await.is_some() {}
            return;
        };
        let Ok((stream, _)) = l.accept().await else {
            continue;
        };
        let n = counter.fetch_add(1, Ordering::SeqCst);
        if stop_at == Some(n + 1) {
            listener = None; // later attempts are refused by the kernel
        }
        let spec = spec.clone();
        let rec = rec.clone();
        sessions.spawn(async move {
            let idx = rec.update(|o| {
                o.sessions.push(Session {
                    host: spec.key.clone(),
                    attempt: n,
                    at: rec.now(),
                    transcript: Vec::new(),
                    deliveries: Vec::new(),
                    closed: false,
                });
                o.sessions.len() - 1
            });
            let log = SessionLog {
                rec: rec.clone(),
                idx,
            };
            let _ = session(stream, &spec, n, &log).await;
            rec.update(|o| {
                if let Some(s) = o.sessions.get_mut(idx) {
                    s.closed = true;
                }
            });
        });
    }
}

struct SessionLog {
    rec: Recorder,
    idx: usize,
}

impl SessionLog {
    fn line(&self, from_peer: bool, text: &str) {
        let mut text = text.trim_end_matches(['\r', '\n']).to_string();
        if text.len() > 1000 {
            let mut cut = 1000;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push('…');
        }
        let at = self.rec.now();
        self.rec.update(|o| {
            if let Some(s) = o.sessions.get_mut(self.idx) {
                s.transcript.push(Line {
                    at,
                    from_peer,
                    text,
                });
            }
        });
    }
}

enum Flow {
    Continue,
    Close,
}

/// Send a step; `Close` when the step ends the session.
async fn act(
    stream: &mut BufReader<TcpStream>,
    step: &Step,
    log: &SessionLog,
) -> std::io::Result<Flow> {
    match step {
        Step::Reply(lines) => {
            let mut wire = String::new();
            for l in lines {
                wire.push_str(l);
                wire.push_str("\r\n");
                log.line(false, l);
            }
            stream.get_mut().write_all(wire.as_bytes()).await?;
            Ok(Flow::Continue)
        }
        Step::Drop => {
            log.line(false, "[drop connection]");
            Ok(Flow::Close)
        }
        Step::Stall => {
            log.line(false, "[stall]");
            // Say nothing until the peer gives up (or the scenario ends).
            let mut sink = Vec::new();
            let _ =
                tokio::time::timeout(IDLE_TIMEOUT * 5, read_line(stream, &mut sink, usize::MAX))
                    .await;
            Ok(Flow::Close)
        }
    }
}

fn positive(step: &Step, first: u8) -> bool {
    matches!(step, Step::Reply(l) if l.last().and_then(|s| s.bytes().next()) == Some(first))
}

async fn session(
    stream: TcpStream,
    spec: &HostSpec,
    attempt: usize,
    log: &SessionLog,
) -> std::io::Result<()> {
    let script = spec.attempt(attempt);
    match script.connect {
        Connect::Reset => {
            log.line(false, "[reset connection]");
            stream.set_zero_linger()?;
            return Ok(());
        }
        Connect::Drop => {
            log.line(false, "[close without greeting]");
            return Ok(());
        }
        Connect::Stall => {
            let mut s = BufReader::new(stream);
            act(&mut s, &Step::Stall, log).await?;
            return Ok(());
        }
        Connect::Accept | Connect::Refuse => {}
    }
    let mut s = BufReader::new(stream);
    if let Flow::Close = act(&mut s, &script.greeting, log).await? {
        return Ok(());
    }
    let mut mail_from: Option<(String, Vec<String>)> = None;
    let mut rcpts: Vec<String> = Vec::new();
    let mut rcpt_n = 0;
    let mut line = Vec::new();
    loop {
        line.clear();
        match tokio::time::timeout(IDLE_TIMEOUT, read_line(&mut s, &mut line, MAX_COMMAND_LINE))
            .await
        {
            Err(_) => {
                log.line(false, "[idle timeout]");
                return Ok(());
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                log.line(true, &String::from_utf8_lossy(&line));
                act(
                    &mut s,
                    &Step::Reply(vec!["500 5.5.2 line too long".into()]),
                    log,
                )
                .await?;
                return Ok(());
            }
            Ok(Err(e)) => return Err(e),
            Ok(Ok(0)) => {
                log.line(true, "[connection closed]");
                return Ok(());
            }
            Ok(Ok(_)) => {}
        }
        log.line(true, &String::from_utf8_lossy(&line));
        let cmd = match Command::parse(&line) {
            Ok(c) => c,
            Err(e) => {
                let reply = format!("500 5.5.2 {e}");
                act(&mut s, &Step::Reply(vec![reply]), log).await?;
                continue;
            }
        };
        let step = match &cmd {
            Command::Ehlo(_) => script.ehlo.clone(),
            Command::Helo(_) => script.helo.clone(),
            Command::Mail { path, params } => {
                rcpts.clear();
                rcpt_n = 0;
                if positive(&script.mail, b'2') {
                    mail_from = Some((path.clone(), params.clone()));
                }
                script.mail.clone()
            }
            Command::Rcpt { path, .. } => {
                let step = script.rcpt_to(rcpt_n, path).clone();
                rcpt_n += 1;
                if mail_from.is_none() {
                    Step::Reply(vec!["503 5.5.1 need MAIL first".into()])
                } else {
                    if positive(&step, b'2') {
                        rcpts.push(path.clone());
                    }
                    step
                }
            }
            Command::Data if mail_from.is_none() || rcpts.is_empty() => {
                // Postfix pipelines DATA even after every RCPT failed.
                Step::Reply(vec!["554 5.5.1 no valid recipients".into()])
            }
            Command::Data => {
                let step = script.data.clone();
                if !positive(&step, b'3') {
                    step
                } else {
                    if let Flow::Close = act(&mut s, &step, log).await? {
                        return Ok(());
                    }
                    let data = match read_data(&mut s).await {
                        Ok(d) => d,
                        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                            log.line(true, "[message over the size limit]");
                            act(
                                &mut s,
                                &Step::Reply(vec!["552 5.3.4 message too big".into()]),
                                log,
                            )
                            .await?;
                            return Ok(());
                        }
                        Err(e) => return Err(e),
                    };
                    log.line(true, &format!("[message: {} octets]", data.len()));
                    let eod = script.eod.clone();
                    if positive(&eod, b'2') {
                        let (from, params) = mail_from.clone().unwrap_or_default();
                        let d = Delivery {
                            host: spec.key.clone(),
                            attempt,
                            at: log.rec.now(),
                            mail_from: from,
                            mail_params: params,
                            rcpts: rcpts.clone(),
                            data,
                        };
                        log.rec.update(|o| {
                            if let Some(s) = o.sessions.get_mut(log.idx) {
                                s.deliveries.push(d);
                            }
                        });
                    }
                    mail_from = None;
                    rcpts.clear();
                    eod
                }
            }
            Command::Rset => {
                mail_from = None;
                rcpts.clear();
                script.rset.clone()
            }
            Command::Noop => Step::Reply(vec!["250 2.0.0 ok".into()]),
            Command::Quit => {
                act(&mut s, &script.quit, log).await?;
                return Ok(());
            }
            _ => Step::Reply(vec!["502 5.5.2 command not implemented".into()]),
        };
        if let Flow::Close = act(&mut s, &step, log).await? {
            return Ok(());
        }
        // A 421 closes the session (RFC 5321 §3.8).
        if matches!(&step, Step::Reply(l) if l.last().is_some_and(|x| x.starts_with("421"))) {
            return Ok(());
        }
    }
}

/// Read one line (through `\n`) of at most `max` octets into `buf`.
/// Returns the octets read (0 at end of stream); `InvalidData` past `max`.
pub async fn read_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<usize> {
    let start = buf.len();
    loop {
        let chunk = r.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(buf.len() - start);
        }
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        if buf.len() - start + take > max {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "line too long",
            ));
        }
        buf.extend_from_slice(&chunk[..take]);
        r.consume(take);
        if done {
            return Ok(buf.len() - start);
        }
    }
}

/// Read a message up to `<CRLF>.<CRLF>`, undoing dot-stuffing (RFC 5321 §4.5.2).
async fn read_data<R: AsyncBufRead + Unpin>(r: &mut R) -> std::io::Result<Vec<u8>> {
    let mut data = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = tokio::time::timeout(IDLE_TIMEOUT, read_line(r, &mut line, 64 * 1024))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "idle in DATA"))??;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed in DATA",
            ));
        }
        if line == b".\r\n" {
            return Ok(data);
        }
        let body = line.strip_prefix(b".").unwrap_or(&line);
        if data.len() + body.len() > MAX_MESSAGE {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "message too big",
            ));
        }
        data.extend_from_slice(body);
    }
}

#[cfg(test)]
mod tests;
