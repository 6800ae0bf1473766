//! World stage: a scripted fake remote host, answering the target's deliveries per attempt and per command.
//!
//! Everything the target sends is read with bounds (line length, message
//! size, idle time) and what is kept is capped per scenario (sessions,
//! transcript lines, commands, messages: [`limits`]), so a broken or hostile
//! peer cannot make the host hang the run or eat memory. A cap reached is
//! recorded in the observations and said with the verdicts.

use crate::run::observe::{limits, Delivery, Line, Recorder, Session};
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
/// First and longest pause after a failing `accept` (e.g. out of descriptors).
pub const ACCEPT_BACKOFF: (Duration, Duration) =
    (Duration::from_millis(10), Duration::from_secs(1));

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
    let mut backoff = ACCEPT_BACKOFF.0;
    loop {
        let Some(l) = listener.as_ref() else {
            // The script went on to refuse: keep serving the open sessions only.
            while sessions.join_next().await.is_some() {}
            return;
        };
        // Finished sessions leave the set, so a long run does not pile them up.
        while sessions.try_join_next().is_some() {}
        let stream = match l.accept().await {
            Ok((stream, _)) => {
                backoff = ACCEPT_BACKOFF.0;
                stream
            }
            Err(e) => {
                // The pending connection stays queued: retrying at once would
                // spin. Pause, longer each time, and say so with the verdicts.
                rec.update(|o| {
                    o.note(format!(
                        "fake host `{}` could not accept a connection ({e}); it paused and retried",
                        spec.key
                    ))
                });
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF.1);
                continue;
            }
        };
        let n = counter.fetch_add(1, Ordering::SeqCst);
        if stop_at == Some(n + 1) {
            listener = None; // later attempts are refused by the kernel
        }
        let at = rec.now();
        let admitted = rec.update(|o| {
            if o.sessions.len() >= limits::SESSIONS {
                o.lose(format!(
                    "the target opened more than {} sessions to the fake hosts: later ones were closed at once and not recorded",
                    limits::SESSIONS
                ));
                return None;
            }
            o.sessions.push(Session::opened(&spec.key, n, at));
            Some(o.sessions.len() - 1)
        });
        let Some(idx) = admitted else {
            drop(stream);
            continue;
        };
        let spec = spec.clone();
        let rec = rec.clone();
        sessions.spawn(async move {
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
            let Some(s) = o.sessions.get_mut(self.idx) else {
                return;
            };
            if s.transcript.len() < limits::TRANSCRIPT_LINES {
                s.transcript.push(Line {
                    at,
                    from_peer,
                    text,
                });
            } else {
                let host = s.host.clone();
                o.note(format!(
                    "a session with fake host `{host}` passed {} transcript lines: later lines were not kept",
                    limits::TRANSCRIPT_LINES
                ));
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
            // Say nothing until the peer gives up (or the scenario ends);
            // what it sends meanwhile is read and thrown away, never kept.
            if let Ok(Ok(n)) = tokio::time::timeout(IDLE_TIMEOUT * 5, discard(stream)).await {
                log.line(true, &format!("[closed after {n} octets ignored]"));
            }
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
    // After a 4yz/5yz greeting the session takes no mail (RFC 5321 §3.1,
    // §4.3.2): only QUIT is answered; anything else the target sends is
    // recorded, since a client that ignores the greeting must be seen to.
    let refused_greeting = positive(&script.greeting, b'4') || positive(&script.greeting, b'5');
    let mut mail_from: Option<(String, Vec<String>)> = None;
    let mut rcpts: Vec<String> = Vec::new();
    let mut rcpt_n = 0;
    let mut line = Vec::new();
    let mut commands = 0usize;
    loop {
        line.clear();
        if commands == limits::COMMANDS {
            log.rec.update(|o| {
                o.note(format!(
                    "the target sent more than {} commands in one session with fake host `{}`: it was answered 421 and closed",
                    limits::COMMANDS, spec.key
                ))
            });
            let bye = Step::Reply(vec!["421 4.7.0 too many commands, closing".into()]);
            act(&mut s, &bye, log).await?;
            return Ok(());
        }
        commands += 1;
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
        if refused_greeting && !matches!(cmd, Command::Quit) {
            let text = String::from_utf8_lossy(&line).trim_end().to_string();
            log.rec.update(|o| {
                if let Some(x) = o.sessions.get_mut(log.idx) {
                    x.after_refusal.push(text);
                }
            });
            let reply = "503 5.5.1 this session was refused at the greeting; only QUIT";
            act(&mut s, &Step::Reply(vec![reply.into()]), log).await?;
            continue;
        }
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
                let step = script
                    .rcpt_by
                    .get(&path.to_ascii_lowercase())
                    .unwrap_or_else(|| script.rcpt(rcpt_n))
                    .clone();
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
                        log.rec.update(|o| keep(o, log.idx, d));
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

/// Store a delivery in session `idx`, within the scenario's message limits.
pub(crate) fn keep(o: &mut crate::run::observe::Observations, idx: usize, d: Delivery) {
    let all = o.sessions.iter().flat_map(|s| &s.deliveries);
    let (count, octets) = all.fold((0, 0), |(c, n), x| (c + 1, n + x.data.len()));
    if count >= limits::MESSAGES || octets + d.data.len() > limits::MESSAGE_OCTETS {
        o.lose(format!(
            "the fake hosts received more than {} messages or {} MiB: later messages were not kept",
            limits::MESSAGES,
            limits::MESSAGE_OCTETS >> 20
        ));
    } else if let Some(s) = o.sessions.get_mut(idx) {
        s.deliveries.push(d);
    }
}

/// Read and throw away everything until the end of the stream; returns the octets read.
async fn discard<R: AsyncBufRead + Unpin>(r: &mut R) -> std::io::Result<u64> {
    let mut n = 0u64;
    loop {
        let len = r.fill_buf().await?.len();
        if len == 0 {
            return Ok(n);
        }
        n += len as u64;
        r.consume(len);
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
