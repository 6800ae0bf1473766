//! Fuzz stage: the inbound session runner — sends a [`Case`] to the target and judges each reply as it comes (reply accounting, syntax, closing, 354).
//!
//! The runner keeps its own model of the session: which sent octets are
//! command lines and which are message content (content starts only after
//! a 354 and ends at `<CRLF>.<CRLF>`), so it knows exactly which reply
//! answers which command, also under pipelining. Every read is bounded in
//! time and size, so a hostile target cannot hang or bloat the fuzzer.

use super::gen::{Case, Step};
use super::oracle::{check_reply_line, Invariant, Violation};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

/// Most octets of one reply line kept before the line counts as endless.
const MAX_LINE: usize = 64 * 1024;
/// Most lines of one reply.
const MAX_LINES: usize = 1000;

/// How long the runner waits.
#[derive(Debug, Clone, Copy)]
pub struct Waits {
    /// For each reply.
    pub reply: Duration,
    /// For the target to close after the case (and say anything more).
    pub drain: Duration,
    /// For the connection.
    pub connect: Duration,
}

impl Default for Waits {
    fn default() -> Self {
        Waits {
            reply: Duration::from_secs(5),
            drain: Duration::from_millis(500),
            connect: Duration::from_secs(5),
        }
    }
}

/// A message the session sent (content after a 354).
#[derive(Debug, Clone)]
pub struct Msg {
    /// Its `X-Fuzz-Id`, if the content starts with one.
    pub id: Option<String>,
    /// The reply code at end of data (0: no reply; the session ended inside DATA).
    pub code: u16,
    /// Recipients accepted with 2xx in its transaction.
    pub rcpts: Vec<String>,
    /// Recipients refused (4xx/5xx) in its transaction.
    pub refused: Vec<String>,
    /// The transaction needs SMTPUTF8 (asked for, or 8-bit octets in an
    /// address): a next hop without it may refuse the message (RFC 6531 §3.4),
    /// so it need not reach our fake hosts.
    pub utf8: bool,
    /// The content as sent (dot-stuffed, without the final `.CRLF`).
    pub content: Vec<u8>,
    /// The step whose write ended (or would have ended) the message.
    pub step: usize,
}

impl Msg {
    pub fn accepted(&self) -> bool {
        self.code / 100 == 2
    }
}

/// What one session came to.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    /// The reply codes in order (the greeting first): the session's state signature.
    pub codes: Vec<u16>,
    /// The reply codes each step's write drew (index 0: before the first step, the greeting).
    pub per_step: Vec<Vec<u16>>,
    /// How the session ended: `closed`, `timeout`, `done`.
    pub end: &'static str,
    pub violations: Vec<Violation>,
    pub messages: Vec<Msg>,
    /// The target could not be reached at all.
    pub unreachable: Option<String>,
    /// The runner lost track of the command boundaries (a reply missing
    /// after a line with a bare LF end, which a server may take as part of a
    /// longer line): later replies were not judged.
    pub desync: bool,
    /// Steps whose write started as message content (after a 354).
    pub content_steps: Vec<usize>,
}

impl Trace {
    /// A compact signature of the session's state sequence: the reply
    /// codes in order, a run of one code written once (`250+`), and how the
    /// session ended.
    pub fn signature(&self) -> String {
        let mut s: Vec<String> = Vec::new();
        let mut i = 0;
        while i < self.codes.len() && s.len() < 64 {
            let c = self.codes[i];
            let run = self.codes[i..].iter().take_while(|&&x| x == c).count();
            s.push(if run > 1 {
                format!("{c}+")
            } else {
                c.to_string()
            });
            i += run;
        }
        s.push(self.end.to_string());
        s.join(" ")
    }
}

#[derive(Debug)]
enum Unit {
    Greeting,
    Command { line: Vec<u8>, strict: bool },
    EndOfData,
}

struct Txn {
    mail: bool,
    rcpts: Vec<String>,
    refused: Vec<String>,
    utf8: bool,
}

struct Runner {
    stream: TcpStream,
    rbuf: Vec<u8>,
    eof: bool,
    waits: Waits,
    trace: Trace,
    /// Sent octets not yet assigned to a command or a message.
    input: Vec<u8>,
    data_mode: bool,
    data: Vec<u8>,
    txn: Txn,
    last_code: Option<u16>,
    /// A 221 or 421 came: the session is over.
    over: bool,
    /// A 220 to STARTTLS came: the rest would be TLS; stop here.
    tls: bool,
    step: usize,
}

enum Got {
    Reply(u16, Vec<Vec<u8>>),
    Closed,
    Silent,
    /// Broken syntax (already recorded): the session stops.
    Bad,
}

/// Connect from `from` (any local address when `None`) and run `case`.
pub async fn run(case: &Case, target: SocketAddr, from: Option<Ipv4Addr>, waits: Waits) -> Trace {
    let stream = match connect(target, from, waits.connect).await {
        Ok(s) => s,
        Err(e) => {
            return Trace {
                unreachable: Some(e),
                end: "unreachable",
                ..Trace::default()
            }
        }
    };
    let mut r = Runner {
        stream,
        rbuf: Vec::new(),
        eof: false,
        waits,
        trace: Trace {
            per_step: vec![Vec::new(); case.steps.len() + 1],
            end: "done",
            ..Trace::default()
        },
        input: Vec::new(),
        data_mode: false,
        data: Vec::new(),
        txn: Txn {
            mail: false,
            rcpts: Vec::new(),
            refused: Vec::new(),
            utf8: false,
        },
        last_code: None,
        over: false,
        tls: false,
        step: 0,
    };
    r.go(case).await;
    r.trace
}

async fn connect(
    target: SocketAddr,
    from: Option<Ipv4Addr>,
    wait: Duration,
) -> Result<TcpStream, String> {
    let sock = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    if let Some(a) = from {
        sock.bind(SocketAddr::from((a, 0)))
            .map_err(|e| format!("bind {a}: {e}"))?;
    }
    match tokio::time::timeout(wait, sock.connect(target)).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            // Close with RST-free FIN, but never linger on a hostile peer.
            Ok(s)
        }
        Ok(Err(e)) => Err(format!("connect to {target}: {e}")),
        Err(_) => Err(format!(
            "connect to {target}: no answer within {} s",
            wait.as_secs()
        )),
    }
}

/// The command word of a line, as a server written in C reads it: white
/// space before it is skipped as C's `isspace` knows it (space, tab, CR,
/// vertical tab, form feed), and a NUL ends it. Postfix reads
/// ` MAIL FROM:<a>` and `\rMAIL FROM:<a>` as MAIL and `STARTTLS\0x` as
/// STARTTLS, and its reply says it did, so the session's state must follow.
fn verb(line: &[u8]) -> String {
    let space = |b: u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0x0b | 0x0c);
    let t: Vec<u8> = line
        .iter()
        .skip_while(|&&b| space(b) && b != b'\n')
        .take_while(|&&b| !space(b) && b != 0)
        .copied()
        .collect();
    String::from_utf8_lossy(&t).to_ascii_uppercase()
}

/// The address in `RCPT TO:<addr> ...` (as written, without brackets or spaces).
fn rcpt_addr(line: &[u8]) -> String {
    let s = String::from_utf8_lossy(line);
    let rest = s.split_once(':').map(|x| x.1).unwrap_or("");
    let rest = rest.trim_end_matches(['\r', '\n']).trim_start();
    match rest.strip_prefix('<') {
        // Inside brackets a space is no end (`<a @b.test>` is `a@b.test` to Postfix).
        Some(r) => r
            .split('>')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect(),
        None => rest.split([' ', '>']).next().unwrap_or("").to_string(),
    }
}

impl Runner {
    fn violate(&mut self, invariant: Invariant, detail: String) {
        self.violate_at(invariant, detail, false)
    }

    fn violate_at(&mut self, invariant: Invariant, detail: String, before: bool) {
        let step = (self.step > 0).then(|| self.step - 1);
        let reply = Some(self.trace.codes.len().saturating_sub(1));
        if !self
            .trace
            .violations
            .iter()
            .any(|v| v.invariant == invariant)
        {
            self.trace.violations.push(Violation {
                invariant,
                step,
                before,
                reply,
                detail,
            });
        }
    }

    async fn go(&mut self, case: &Case) {
        // The greeting.
        if !self.answer(Unit::Greeting).await {
            return self.finish_early();
        }
        for (i, s) in case.steps.iter().enumerate() {
            self.step = i + 1;
            if self.over || self.tls {
                break;
            }
            let bytes = match s {
                Step::Pause(d) => {
                    tokio::time::sleep(*d).await;
                    continue;
                }
                Step::Send(b) | Step::Data(b) => b,
            };
            if !self.unprompted().await {
                return self.finish_early();
            }
            if self.eof {
                break;
            }
            if self.data_mode {
                self.trace.content_steps.push(i);
            }
            if let Err(e) = self.stream.write_all(bytes).await {
                // The target went away: judged by what it said before.
                self.closed_check(&format!("while commands were sent ({e})"), true);
                self.trace.end = "closed";
                return;
            }
            self.input.extend_from_slice(bytes);
            while let Some(u) = self.next_unit() {
                if !self.answer(u).await {
                    return self.finish_early();
                }
            }
        }
        self.step = case.steps.len() + 1;
        self.finish().await;
    }

    fn finish_early(&mut self) {
        if self.data_mode {
            self.abort_message();
        }
    }

    /// Take the next command line or end of data out of what was sent.
    fn next_unit(&mut self) -> Option<Unit> {
        if self.data_mode {
            let mut all = std::mem::take(&mut self.data);
            all.extend_from_slice(&self.input);
            let end = if all.starts_with(b".\r\n") {
                Some(0)
            } else {
                all.windows(5)
                    .position(|w| w == b"\r\n.\r\n")
                    .map(|p| p + 2)
            };
            match end {
                Some(p) => {
                    self.input = all[p + 3..].to_vec();
                    self.data = all[..p].to_vec();
                    Some(Unit::EndOfData)
                }
                None => {
                    self.data = all;
                    self.input.clear();
                    None
                }
            }
        } else {
            let p = self.input.iter().position(|&b| b == b'\n')?;
            let line: Vec<u8> = self.input.drain(..=p).collect();
            let strict = line.ends_with(b"\r\n");
            Some(Unit::Command { line, strict })
        }
    }

    /// Before sending: anything the target said although nothing was asked.
    async fn unprompted(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.try_read(&mut chunk) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => {
                    if self.rbuf.len() < MAX_LINE {
                        self.rbuf.extend_from_slice(&chunk[..n]);
                    }
                }
                Err(_) => break,
            }
        }
        if self.rbuf.is_empty() {
            if self.eof {
                self.closed_check("between commands", true);
                self.trace.end = "closed";
                return false;
            }
            return true;
        }
        let shown = super::escape(&self.rbuf[..self.rbuf.len().min(120)]);
        // A 421 may come at any time (the server shuts down, RFC 5321 §3.8).
        if self.rbuf.starts_with(b"421") {
            self.over = true;
            return true;
        }
        if self.bare_lf_end() {
            self.trace.desync = true;
            return false;
        }
        self.violate_at(
            Invariant::OneReplyPerCommand,
            format!("the target sent `{shown}` although every command had its reply"),
            true,
        );
        false
    }

    /// Whether the content sent so far has an end of data with a bare LF
    /// (`\n.\r\n`, `\n.\n`): a server may take it as the end (RFC 5321
    /// §2.3.8 forbids sending it; the inbound-smuggling suite judges it), so
    /// a reply to it is no proof of anything.
    fn bare_lf_end(&self) -> bool {
        if !self.data_mode {
            return false;
        }
        let d = [self.data.as_slice(), self.input.as_slice()].concat();
        (0..d.len().saturating_sub(2)).any(|i| {
            d[i] == b'\n'
                && d[i + 1] == b'.'
                && matches!(d[i + 2], b'\r' | b'\n')
                && (i == 0 || d[i - 1] != b'\r' || d[i + 2] == b'\n')
        })
    }

    fn closed_check(&mut self, when: &str, before: bool) {
        if !matches!(self.last_code, Some(221 | 421)) {
            let last = self
                .last_code
                .map(|c| c.to_string())
                .unwrap_or_else(|| "none".into());
            self.violate_at(
                Invariant::CloseAnnounced,
                format!("the target closed the connection {when} without 221 or 421 (last reply: {last})"),
                before,
            );
        }
    }

    /// Read the reply to `u` and judge it; `false` when the session cannot go on.
    async fn answer(&mut self, u: Unit) -> bool {
        let what = match &u {
            Unit::Greeting => "the greeting".to_string(),
            Unit::Command { line, .. } => {
                format!("`{}`", super::escape(&line[..line.len().min(80)]))
            }
            Unit::EndOfData => "the end of data".to_string(),
        };
        let got = self.reply().await;
        let (code, lines) = match got {
            Got::Reply(c, l) => (c, l),
            Got::Bad => return false,
            Got::Closed => {
                self.closed_check(&format!("instead of replying to {what}"), false);
                self.trace.end = "closed";
                return false;
            }
            Got::Silent => {
                match &u {
                    Unit::Command { strict: false, .. } => self.trace.desync = true,
                    _ => self.violate(
                        Invariant::OneReplyPerCommand,
                        format!(
                            "no reply to {what} within {} ms",
                            self.waits.reply.as_millis()
                        ),
                    ),
                }
                self.trace.end = "timeout";
                return false;
            }
        };
        self.last_code = Some(code);
        self.trace.codes.push(code);
        let k = self.step.min(self.trace.per_step.len() - 1);
        self.trace.per_step[k].push(code);
        let ok = code / 100 == 2;
        match u {
            Unit::Greeting => {}
            Unit::EndOfData => {
                let content = std::mem::take(&mut self.data);
                self.record_message(content, code);
                self.data_mode = false;
            }
            Unit::Command { line, .. } => match verb(&line).as_str() {
                "MAIL" if ok => {
                    self.txn.mail = true;
                    self.txn.rcpts.clear();
                    self.txn.refused.clear();
                    self.txn.utf8 = !line.is_ascii()
                        || String::from_utf8_lossy(&line)
                            .to_ascii_uppercase()
                            .contains("SMTPUTF8");
                }
                "RCPT" if ok && self.txn.mail => {
                    self.txn.utf8 |= !line.is_ascii();
                    self.txn.rcpts.push(rcpt_addr(&line))
                }
                "RCPT" if code >= 400 => self.txn.refused.push(rcpt_addr(&line)),
                "RSET" | "EHLO" | "HELO" if ok => {
                    self.txn.mail = false;
                    self.txn.rcpts.clear();
                    self.txn.refused.clear();
                }
                "STARTTLS" if code == 220 => self.tls = true,
                _ => {}
            },
        }
        if code == 354 {
            if !self.txn.mail || self.txn.rcpts.is_empty() {
                self.violate(
                    Invariant::DataNeedsRecipient,
                    format!("354 to {what} although no recipient of the transaction was accepted"),
                );
            }
            self.data_mode = true;
            self.data.clear();
        }
        let _ = lines;
        if code == 221 || code == 421 {
            self.over = true;
        }
        // After 220 to STARTTLS the rest is a TLS handshake, which the fuzzer
        // does not do; what was pipelined behind it is discarded by the
        // server (RFC 3207 §4.2). The session ends here.
        !self.tls
    }

    fn record_message(&mut self, content: Vec<u8>, code: u16) {
        let id = content
            .strip_prefix(b"X-Fuzz-Id: ")
            .map(|r| {
                r.iter()
                    .take_while(|b| b.is_ascii_alphanumeric() || **b == b'-')
                    .copied()
                    .collect::<Vec<u8>>()
            })
            .map(|v| String::from_utf8_lossy(&v).to_string());
        self.trace.messages.push(Msg {
            id,
            code,
            rcpts: std::mem::take(&mut self.txn.rcpts),
            refused: std::mem::take(&mut self.txn.refused),
            utf8: self.txn.utf8,
            content,
            step: self.step.saturating_sub(1),
        });
        self.txn.mail = false;
    }

    fn abort_message(&mut self) {
        let mut content = std::mem::take(&mut self.data);
        content.extend_from_slice(&std::mem::take(&mut self.input));
        self.record_message(content, 0);
        self.data_mode = false;
    }

    /// Read one complete reply, checking every line.
    async fn reply(&mut self) -> Got {
        let until = Instant::now() + self.waits.reply;
        let mut first: Option<u16> = None;
        let mut lines = Vec::new();
        loop {
            if let Some(p) = self.rbuf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.rbuf.drain(..=p).collect();
                match check_reply_line(&line, first) {
                    Ok((code, more)) => {
                        first = Some(code);
                        lines.push(line);
                        if !more {
                            return Got::Reply(code, lines);
                        }
                        if lines.len() >= MAX_LINES {
                            self.violate(
                                Invariant::ReplySyntax,
                                format!("a reply of more than {MAX_LINES} lines"),
                            );
                            return Got::Bad;
                        }
                        continue;
                    }
                    Err(e) => {
                        self.violate(Invariant::ReplySyntax, e);
                        return Got::Bad;
                    }
                }
            }
            if self.rbuf.len() > MAX_LINE {
                self.violate(
                    Invariant::ReplySyntax,
                    format!("a reply line longer than {MAX_LINE} octets"),
                );
                return Got::Bad;
            }
            if self.eof {
                if !self.rbuf.is_empty() || !lines.is_empty() {
                    let shown = super::escape(&self.rbuf[..self.rbuf.len().min(80)]);
                    self.violate(
                        Invariant::ReplySyntax,
                        format!("the connection closed inside a reply (`{shown}`)"),
                    );
                    return Got::Bad;
                }
                return Got::Closed;
            }
            let mut chunk = [0u8; 8192];
            match tokio::time::timeout_at(until, self.stream.read(&mut chunk)).await {
                Err(_) => return Got::Silent,
                Ok(Ok(0)) | Ok(Err(_)) => self.eof = true,
                Ok(Ok(n)) => self.rbuf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// After the case: close our side and read what the target still says.
    async fn finish(&mut self) {
        let ambiguous = self.bare_lf_end();
        // A last line without its line end: a server may take the end of
        // the connection as its end and answer it once.
        let partial = !self.data_mode && !self.input.is_empty();
        if self.data_mode {
            self.abort_message();
        }
        if self.tls {
            return;
        }
        let _ = self.stream.shutdown().await;
        let until = Instant::now() + self.waits.drain;
        let mut chunk = [0u8; 4096];
        while !self.eof && self.rbuf.len() < MAX_LINE {
            match tokio::time::timeout_at(until, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                Ok(Ok(n)) => self.rbuf.extend_from_slice(&chunk[..n]),
            }
        }
        if partial {
            // One complete reply to it (all its lines).
            while let Some(p) = self.rbuf.windows(2).position(|w| w == b"\r\n") {
                let more = self.rbuf.get(3) == Some(&b'-');
                self.rbuf.drain(..p + 2);
                if !more {
                    break;
                }
            }
        }
        if !self.rbuf.is_empty() && ambiguous {
            self.trace.desync = true;
        } else if !self.rbuf.is_empty() && !self.rbuf.starts_with(b"421") {
            let shown = super::escape(&self.rbuf[..self.rbuf.len().min(120)]);
            self.violate_at(
                Invariant::OneReplyPerCommand,
                format!(
                    "after the last reply the target sent `{shown}`, although nothing was asked"
                ),
                true,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_collapse_runs_of_one_code() {
        let t = Trace {
            codes: vec![220, 250, 250, 250, 354, 250, 221],
            end: "closed",
            ..Trace::default()
        };
        assert_eq!(t.signature(), "220 250+ 354 250 221 closed");
    }

    #[test]
    fn recipients_are_read_from_rcpt_lines() {
        assert_eq!(
            rcpt_addr(b"RCPT TO:<a@b.test> NOTIFY=NEVER\r\n"),
            "a@b.test"
        );
        assert_eq!(rcpt_addr(b"RCPT TO: a@b.test\r\n"), "a@b.test");
        assert_eq!(rcpt_addr(b"RCPT TO: a@b.test>\r\n"), "a@b.test");
        assert_eq!(rcpt_addr(b"RCPT TO:< a@b.test> X\r\n"), "a@b.test");
        assert_eq!(rcpt_addr(b"RCPT TO:<a @b.test>\r\n"), "a@b.test");
        assert_eq!(verb(b"rcpt TO:<x>\r\n"), "RCPT");
        assert_eq!(verb(b"DATA\r\n"), "DATA");
        assert_eq!(verb(b" MAIL FROM:<a@b.test>\r\n"), "MAIL");
        assert_eq!(verb(b"\t rcpt TO:<x>\r\n"), "RCPT");
        assert_eq!(verb(b"\rMAIL FROM:<a@b.test>\r\n"), "MAIL");
        assert_eq!(verb(b"\x0b\x0cDATA\x0c\r\n"), "DATA");
        assert_eq!(verb(b"\nMAIL FROM:<a@b.test>\r\n"), "");
        assert_eq!(verb(b"STARTTLS\0x\r\n"), "STARTTLS");
        assert_eq!(verb(b"\0MAIL FROM:<a@b.test>\r\n"), "");
    }
}
