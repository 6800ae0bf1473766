//! Load stage: `[[session]]` scripts — the raw client's sends, pauses, STARTTLS and expected replies.
//!
//! A script is one step per line (see suites/README.md, "Inbound sessions"):
//!
//! ```text
//! < 220                         # expect a reply: code, class (2xx), alternatives (500|502)
//! > EHLO client.test            # send the text and CRLF, in one write
//! send "DATA\r\n" "x\n.\n"      # send exactly these bytes, in one write
//! data "Subject: x\r\n\r\nhi\r\n.\r\n"   # message content: sent as is, kept for the body oracle
//! bdat "hello\r\n"              # BDAT <octets>\r\n + the chunk, in one write (bdat-last: BDAT n LAST)
//! < 250 2.1.0 /(?i)ok/          # code, enhanced status (prefix), text regex (!/re/: must not match)
//! < 250|554|closed              # a reply or the connection closing
//! < 421 within 10s              # wait up to 10 s (default 10 s)
//! < closed                      # the target closes the connection without another reply
//! < nothing 1s                  # no reply within 1 s
//! pause 200ms                   # wait before the next step
//! starttls                      # TLS handshake on the connection (after the 220 reply)
//! enhanced on                   # from here every reply must carry an RFC 3463 code of its class
//! repeat 100 ... end            # the lines between, 100 times; {i} is 1..100
//! ```
//!
//! Escapes in `>` text and quoted strings: `\r \n \t \0 \\ \" \xNN \{ \}`;
//! `{i}` is the repeat counter and `{TEXT*N}` is TEXT repeated N times;
//! in a `>` line, `{C*path=N}` repeats the character C as often as makes
//! the `<...>` path around it exactly N octets after the lab scopes its names
//! (`{C*line=N}`: the whole line, CRLF included).
//! Errors name the scenario file's line.

use regex::Regex;
use serde::Deserialize;
use std::time::Duration;

/// Longest a reply, a close or a TLS handshake is waited for unless `within` says otherwise.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(10);
/// Upper bound on any wait or pause in a script (a script cannot hang a run).
pub const MAX_WAIT: Duration = Duration::from_secs(120);
/// Upper bound on the bytes one script sends (templates and repeats included).
pub const MAX_SCRIPT_BYTES: usize = 4 * 1024 * 1024;
/// Upper bound on the steps of one script after repeats are expanded.
pub const MAX_STEPS: usize = 20_000;
/// Upper bound on script lines read, repeats counted (comments included).
pub const MAX_LINES_READ: usize = 200_000;

/// `[[session]]` as written in the scenario file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionFile {
    /// `outside` (default: an address outside the target's trusted networks) or `trusted`.
    pub from: Option<String>,
    /// The script, one step per line; write it as a `'''` literal string.
    pub script: toml::Spanned<String>,
}

/// `relayed = { ... }`: what reached a fake host after the sessions.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayedFile {
    /// The fake host the messages must reach.
    pub host: String,
    /// Exactly this many messages reach the host (at least one when left out).
    pub count: Option<usize>,
    /// Every message's envelope sender is one of these.
    #[serde(default)]
    pub from: Vec<String>,
    /// The sender of a smuggled transaction: a message from it makes the result "exploitable".
    pub smuggled_from: Option<String>,
    /// `"as-sent"`: each message's content equals what a `data`/`bdat` step sent (modulo normalisation).
    pub body: Option<String>,
    /// The recipients of all messages together number exactly this.
    pub rcpts: Option<usize>,
}

/// Where the raw client connects from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFrom {
    /// An address outside the target's trusted networks (Postfix: `$mynetworks`).
    Outside,
    /// An address inside them.
    Trusted,
}

/// One validated `[[session]]`.
#[derive(Debug, Clone)]
pub struct SessionSpec {
    pub from: ClientFrom,
    pub steps: Vec<Step>,
}

/// A script step and the scenario file line it came from.
#[derive(Debug, Clone)]
pub struct Step {
    pub line: usize,
    pub kind: StepKind,
}

#[derive(Debug, Clone)]
pub enum StepKind {
    /// Write these bytes in one write; `content` marks message content kept for the body oracle
    /// (for BDAT, `bytes` is the chunk: the `BDAT n` line is put in front when sending).
    Send {
        bytes: Vec<u8>,
        content: Option<Content>,
        /// A `{C*path=N}` template in the bytes (one `C` stands there).
        fit: Option<Fit>,
    },
    Pause(Duration),
    StartTls,
    /// Every reply from here on must (true) carry an enhanced status code.
    Enhanced(bool),
    Expect(ReplyExpect),
}

/// `{C*path=N}` in a `>` line: the character `C` repeated as often as it
/// takes for the mailbox path around it (from the `<` before it to the `>`
/// after it) to be exactly `N` octets once the lab has scoped the names in
/// it, whatever the length of the scenario's scope label.
/// `{C*line=N}` does the same for the whole line, CRLF included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fit {
    /// Where the one `C` the loaded bytes hold stands.
    pub at: usize,
    pub fill: u8,
    /// The length asked for.
    pub len: usize,
    /// The length is the line's (`line=`), not the path's (`path=`).
    pub line: bool,
}

/// What a send carries besides commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// DATA content up to and including the `\r\n.\r\n` that ends it.
    Data,
    /// A BDAT chunk; `last` ends the message.
    Bdat { last: bool },
}

/// An expected reply, or its absence.
#[derive(Debug, Clone)]
pub enum ReplyExpect {
    Reply {
        codes: Vec<CodePattern>,
        /// Prefix of the enhanced status code (`5.5`, `2.1.0`).
        enhanced: Option<String>,
        text: Option<TextPattern>,
        within: Duration,
        /// `within` was written: report the measured wait.
        timed: bool,
    },
    /// The target closes the connection without sending another reply.
    Closed { within: Duration },
    /// The target says nothing for this long.
    Nothing(Duration),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodePattern {
    Exact(u16),
    Class(u8),
    /// `closed` among alternatives (`250|554|closed`): the target may close instead.
    Closed,
}

impl CodePattern {
    pub fn matches(self, code: u16) -> bool {
        match self {
            CodePattern::Exact(c) => c == code,
            CodePattern::Class(c) => code / 100 == u16::from(c),
            CodePattern::Closed => false,
        }
    }
}

impl std::fmt::Display for CodePattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CodePattern::Exact(c) => write!(f, "{c}"),
            CodePattern::Class(c) => write!(f, "{c}xx"),
            CodePattern::Closed => f.write_str("closed"),
        }
    }
}

/// A regex the reply text must (or, negated, must not) match.
#[derive(Debug, Clone)]
pub struct TextPattern {
    pub re: Regex,
    pub negate: bool,
}

impl std::fmt::Display for ReplyExpect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplyExpect::Reply {
                codes,
                enhanced,
                text,
                ..
            } => {
                let c: Vec<String> = codes.iter().map(ToString::to_string).collect();
                write!(f, "{}", c.join("|"))?;
                if let Some(e) = enhanced {
                    write!(f, " {e}")?;
                }
                if let Some(t) = text {
                    write!(f, " {}/{}/", if t.negate { "!" } else { "" }, t.re.as_str())?;
                }
                Ok(())
            }
            ReplyExpect::Closed { .. } => f.write_str("connection closed"),
            ReplyExpect::Nothing(d) => {
                write!(f, "no reply within {}", humantime::format_duration(*d))
            }
        }
    }
}

/// The session expectations: one per `[[session]]` (its replies), and `relayed`.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionExpect {
    /// Session `n` (0-based) got the replies its script expects.
    Replies(usize),
    Relayed(Relayed),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Relayed {
    pub host: String,
    pub count: Option<usize>,
    pub from: Vec<String>,
    pub smuggled_from: Option<String>,
    pub body_as_sent: bool,
    pub rcpts: Option<usize>,
}

impl SessionExpect {
    pub fn describe(&self) -> String {
        match self {
            SessionExpect::Replies(n) => format!("session {} replies as scripted", n + 1),
            SessionExpect::Relayed(r) => {
                let mut s = match r.count {
                    Some(1) => format!("exactly 1 message relayed to {}", r.host),
                    Some(n) => format!("exactly {n} messages relayed to {}", r.host),
                    None => format!("messages relayed to {}", r.host),
                };
                if !r.from.is_empty() {
                    s.push_str(&format!(", senders {}", r.from.join(" or ")));
                }
                if let Some(m) = &r.smuggled_from {
                    s.push_str(&format!(", none from the smuggled sender {m}"));
                }
                if let Some(n) = r.rcpts {
                    s.push_str(&format!(", {n} recipients in all"));
                }
                if r.body_as_sent {
                    s.push_str(", content as sent");
                }
                s
            }
        }
    }
}

/// Validate a `relayed` table (`known` checks a host key).
pub fn relayed(f: &RelayedFile) -> Result<Relayed, String> {
    let body_as_sent = match f.body.as_deref() {
        None => false,
        Some("as-sent") => true,
        Some(other) => {
            return Err(format!(
                "unknown body `{other}`: write body = \"as-sent\" or leave it out"
            ))
        }
    };
    for a in f.from.iter().chain(&f.smuggled_from) {
        if !a.contains('@') {
            return Err(format!("`{a}` is not an address (local@domain)"));
        }
    }
    Ok(Relayed {
        host: f.host.clone(),
        count: f.count,
        from: f.from.clone(),
        smuggled_from: f.smuggled_from.clone(),
        body_as_sent,
        rcpts: f.rcpts,
    })
}

/// A script error at a line of the script (1-based, relative to the script).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptError {
    pub line: usize,
    pub message: String,
}

fn err(line: usize, message: impl Into<String>) -> ScriptError {
    ScriptError {
        line,
        message: message.into(),
    }
}

/// Parse a `from` value.
pub fn client_from(s: Option<&str>) -> Result<ClientFrom, String> {
    match s {
        None | Some("outside") => Ok(ClientFrom::Outside),
        Some("trusted") => Ok(ClientFrom::Trusted),
        Some(other) => Err(format!(
            "unknown session `from = \"{other}\"`: use \"outside\" (an untrusted client, the default) or \"trusted\""
        )),
    }
}

/// Parse a script. Step lines are numbered from 1 (the script's first line);
/// the caller adds the line where the script starts in the file.
pub fn parse_script(script: &str) -> Result<Vec<Step>, ScriptError> {
    let lines: Vec<&str> = script.lines().collect();
    let mut out = Vec::new();
    let mut bytes = 0usize;
    let mut i = 0;
    let mut budget = MAX_LINES_READ;
    parse_block(&lines, &mut i, None, &mut out, &mut bytes, &mut budget, 0)?;
    if out.is_empty() {
        return Err(err(
            1,
            "empty script: write at least one step, e.g. `< 220`",
        ));
    }
    Ok(out)
}

/// Parse lines from `*i` until `end` (inside a repeat) or the end of the script.
fn parse_block(
    lines: &[&str],
    i: &mut usize,
    counter: Option<(usize, usize)>,
    out: &mut Vec<Step>,
    bytes: &mut usize,
    budget: &mut usize,
    depth: usize,
) -> Result<(), ScriptError> {
    while *i < lines.len() {
        let n = *i + 1;
        if *budget == 0 {
            return Err(err(
                n,
                format!("the script reads more than {MAX_LINES_READ} lines with its repeats: lower a repeat count"),
            ));
        }
        *budget -= 1;
        let raw = lines[*i];
        *i += 1;
        let line = raw.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (word, rest) = match line.find(char::is_whitespace) {
            Some(p) => (&line[..p], line[p..].trim_start()),
            None => (line, ""),
        };
        let idx = counter.map(|(c, _)| c);
        let push = |out: &mut Vec<Step>, kind| -> Result<(), ScriptError> {
            if out.len() >= MAX_STEPS {
                return Err(err(
                    n,
                    format!("the script has more than {MAX_STEPS} steps: lower a repeat count"),
                ));
            }
            out.push(Step { line: n, kind });
            Ok(())
        };
        let mut add_bytes = |b: &[u8]| -> Result<(), ScriptError> {
            *bytes += b.len();
            if *bytes > MAX_SCRIPT_BYTES {
                return Err(err(
                    n,
                    format!(
                        "the script sends more than {} MiB: shorten it",
                        MAX_SCRIPT_BYTES / (1024 * 1024)
                    ),
                ));
            }
            Ok(())
        };
        match word {
            ">" => {
                // `> text`: everything after the first space is the text.
                let text = raw.trim_start().strip_prefix('>').unwrap_or("");
                let text = text.strip_prefix(' ').unwrap_or(text);
                let mut fit = None;
                let mut b = unescape_fit(text, idx, Some(&mut fit)).map_err(|m| err(n, m))?;
                if let Some(f) = fit.filter(|f| !f.line) {
                    let opens = b[..f.at].contains(&b'<');
                    let closes = b[f.at..].contains(&b'>');
                    if !(opens && closes) {
                        return Err(err(
                            n,
                            "`{C*path=N}` fills a mailbox path: put it between the `<` and `>` of one, e.g. `RCPT TO:<{l*64}@{a*path=256}.dest.test>`",
                        ));
                    }
                }
                b.extend_from_slice(b"\r\n");
                add_bytes(&b)?;
                push(
                    out,
                    StepKind::Send {
                        bytes: b,
                        content: None,
                        fit,
                    },
                )?;
            }
            "send" | "data" | "bdat" | "bdat-last" => {
                let b = quoted(rest, idx).map_err(|m| err(n, format!("`{word}`: {m}")))?;
                // A BDAT step holds the chunk; its `BDAT n` line is made when it
                // is sent (after the names in it are scoped), see [`bdat_wire`].
                let (bytes_out, content) = match word {
                    "send" => (b, None),
                    "data" => (b, Some(Content::Data)),
                    _ => (
                        b,
                        Some(Content::Bdat {
                            last: word == "bdat-last",
                        }),
                    ),
                };
                add_bytes(&bytes_out)?;
                push(
                    out,
                    StepKind::Send {
                        bytes: bytes_out,
                        content,
                        fit: None,
                    },
                )?;
            }
            "<" => push(out, StepKind::Expect(expect(rest).map_err(|m| err(n, m))?))?,
            "pause" => {
                let d = duration(rest).map_err(|m| err(n, format!("`pause`: {m}")))?;
                push(out, StepKind::Pause(d))?;
            }
            "starttls" => {
                if !rest.is_empty() {
                    return Err(err(
                        n,
                        "`starttls` takes nothing: it upgrades the connection; send the command with `> STARTTLS` and expect its `< 220` first",
                    ));
                }
                push(out, StepKind::StartTls)?;
            }
            "enhanced" => {
                let on = match rest {
                    "on" => true,
                    "off" => false,
                    _ => return Err(err(n, "write `enhanced on` or `enhanced off`")),
                };
                push(out, StepKind::Enhanced(on))?;
            }
            "repeat" => {
                if depth > 0 {
                    return Err(err(n, "repeats do not nest: unroll the inner one"));
                }
                let count: usize = rest.parse().map_err(|_| {
                    err(n, format!("`repeat {rest}`: write `repeat N` with N a number from 1 to 10000"))
                })?;
                if !(1..=10_000).contains(&count) {
                    return Err(err(n, format!("`repeat {count}`: N must be 1 to 10000")));
                }
                let body_start = *i;
                for c in 1..=count {
                    *i = body_start;
                    parse_block(lines, i, Some((c, n)), out, bytes, budget, depth + 1)?;
                }
            }
            "end" => {
                if counter.is_none() {
                    return Err(err(n, "`end` without a `repeat`"));
                }
                if !rest.is_empty() {
                    return Err(err(n, "`end` takes nothing"));
                }
                return Ok(());
            }
            other => {
                return Err(err(
                    n,
                    format!(
                        "unknown step `{other}`: use `> TEXT`, `send \"...\"`, `data \"...\"`, `bdat \"...\"`, \
                         `bdat-last \"...\"`, `< REPLY`, `pause T`, `starttls`, `enhanced on|off`, `repeat N` ... `end`"
                    ),
                ))
            }
        }
    }
    if let Some((_, at)) = counter {
        return Err(err(at, "`repeat` without its `end`"));
    }
    Ok(())
}

/// `2s`, `200ms`: a duration up to [`MAX_WAIT`].
fn duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("bad duration `{s}`: {e} (write e.g. \"2s\" or \"200ms\")"))?;
    if d > MAX_WAIT {
        return Err(format!(
            "{s} is longer than the {} s a step may wait",
            MAX_WAIT.as_secs()
        ));
    }
    Ok(d)
}

/// Parse what follows `<`.
fn expect(rest: &str) -> Result<ReplyExpect, String> {
    let (head, text) = match rest.find('/') {
        Some(p) => {
            let (h, t) = rest.split_at(p);
            let (h, negate) = match h.trim_end().strip_suffix('!') {
                Some(h) => (h, true),
                None => (h, false),
            };
            let body = t[1..]
                .strip_suffix('/')
                .ok_or_else(|| format!("text pattern `{t}` must end with `/`, e.g. `/ok/`"))?;
            let re = Regex::new(body).map_err(|e| format!("bad text pattern /{body}/: {e}"))?;
            (h, Some(TextPattern { re, negate }))
        }
        None => (rest, None),
    };
    let words: Vec<&str> = head.split_whitespace().collect();
    let usage = "write `< CODE [ENHANCED] [within T] [/regex/]` (CODE: 250, 2xx or 500|502), `< closed [within T]` or `< nothing T`";
    let (within, rest_words, timed) = match words.iter().position(|w| *w == "within") {
        Some(p) => {
            let t = words
                .get(p + 1)
                .ok_or_else(|| format!("`within` needs a time: {usage}"))?;
            if p + 2 != words.len() {
                return Err(format!(
                    "`within T` comes last, before any /regex/: {usage}"
                ));
            }
            (duration(t)?, &words[..p], true)
        }
        None => (DEFAULT_WAIT, &words[..], false),
    };
    match rest_words {
        [] => Err(format!("nothing expected: {usage}")),
        ["closed"] if text.is_none() => Ok(ReplyExpect::Closed { within }),
        ["nothing", t] if text.is_none() && !timed => Ok(ReplyExpect::Nothing(duration(t)?)),
        ["nothing"] => Err("`< nothing` needs a time, e.g. `< nothing 1s`".to_string()),
        [codes, more @ ..] => {
            let codes = codes
                .split('|')
                .map(code_pattern)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|m| format!("{m}: {usage}"))?;
            let enhanced = match more {
                [] => None,
                [e] => Some(enhanced_pattern(e)?),
                _ => return Err(format!("too many words after the code: {usage}")),
            };
            Ok(ReplyExpect::Reply {
                codes,
                enhanced,
                text,
                within,
                timed,
            })
        }
    }
}

fn code_pattern(c: &str) -> Result<CodePattern, String> {
    if c == "closed" {
        return Ok(CodePattern::Closed);
    }
    let b = c.as_bytes();
    if b.len() == 3 && (b'2'..=b'5').contains(&b[0]) {
        if b[1..].eq_ignore_ascii_case(b"xx") {
            return Ok(CodePattern::Class(b[0] - b'0'));
        }
        if b[1..].iter().all(u8::is_ascii_digit) {
            return Ok(CodePattern::Exact(c.parse().unwrap_or(0)));
        }
    }
    Err(format!("bad reply code `{c}`"))
}

fn enhanced_pattern(e: &str) -> Result<String, String> {
    let parts: Vec<&str> = e.split('.').collect();
    let ok = parts.len() >= 2
        && parts.len() <= 3
        && matches!(parts[0], "2" | "4" | "5")
        && parts[1..]
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()));
    if ok {
        Ok(e.to_string())
    } else {
        Err(format!(
            "bad enhanced status `{e}`: write e.g. `2.1.0` or a prefix such as `5.5`"
        ))
    }
}

/// The wire form of a BDAT step: `BDAT <octets>[ LAST]\r\n` and the chunk, one write.
pub fn bdat_wire(chunk: &[u8], last: bool) -> Vec<u8> {
    let mut w = format!(
        "BDAT {}{}\r\n",
        chunk.len(),
        if last { " LAST" } else { "" }
    )
    .into_bytes();
    w.extend_from_slice(chunk);
    w
}

/// Whether an enhanced status `got` (e.g. `5.5.2`) matches a pattern (`5.5` or `5.5.2`).
pub fn enhanced_matches(pattern: &str, got: &str) -> bool {
    got == pattern || got.starts_with(&format!("{pattern}."))
}

/// One or more double-quoted strings, concatenated.
fn quoted(s: &str, idx: Option<usize>) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err("needs a quoted string, e.g. \"MAIL FROM:<a@src.test>\\r\\n\"".into());
    }
    while !rest.is_empty() {
        let Some(body) = rest.strip_prefix('"') else {
            return Err(format!(
                "expected a double-quoted string at `{rest}` (several strings are joined)"
            ));
        };
        // Find the closing quote, skipping escaped characters.
        let mut end = None;
        let mut esc = false;
        for (p, c) in body.char_indices() {
            match c {
                _ if esc => esc = false,
                '\\' => esc = true,
                '"' => {
                    end = Some(p);
                    break;
                }
                _ => {}
            }
        }
        let end = end.ok_or("unterminated string: add the closing `\"`")?;
        out.extend(unescape(&body[..end], idx)?);
        rest = body[end + 1..].trim_start();
        if rest.starts_with('#') {
            break;
        }
    }
    Ok(out)
}

/// Decode escapes and templates: `\r \n \t \0 \\ \" \xNN \{ \}`, `{i}`, `{TEXT*N}`.
pub fn unescape(s: &str, idx: Option<usize>) -> Result<Vec<u8>, String> {
    unescape_fit(s, idx, None)
}

/// [`unescape`], and `{C*path=N}` where `fit` has room for it (`>` lines).
fn unescape_fit(
    s: &str,
    idx: Option<usize>,
    mut fit: Option<&mut Option<Fit>>,
) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len());
    let mut chars = s.char_indices().peekable();
    while let Some((p, c)) = chars.next() {
        match c {
            '\\' => {
                let Some((_, e)) = chars.next() else {
                    return Err("a lone `\\` ends the text: write `\\\\` for a backslash".into());
                };
                match e {
                    'r' => out.push(b'\r'),
                    'n' => out.push(b'\n'),
                    't' => out.push(b'\t'),
                    '0' => out.push(0),
                    '\\' => out.push(b'\\'),
                    '"' => out.push(b'"'),
                    '{' => out.push(b'{'),
                    '}' => out.push(b'}'),
                    'x' => {
                        let hex: String = (0..2)
                            .filter_map(|_| chars.next().map(|(_, h)| h))
                            .collect();
                        let b = u8::from_str_radix(&hex, 16)
                            .ok()
                            .filter(|_| hex.len() == 2)
                            .ok_or_else(|| {
                                format!("bad escape `\\x{hex}`: write two hex digits, e.g. `\\x00`")
                            })?;
                        out.push(b);
                    }
                    other => {
                        return Err(format!(
                        "unknown escape `\\{other}`: use \\r \\n \\t \\0 \\\\ \\\" \\xNN \\{{ \\}}"
                    ))
                    }
                }
            }
            '{' => {
                let close = s[p..]
                    .find('}')
                    .ok_or("unclosed `{`: write `{i}`, `{TEXT*N}`, or `\\{` for a brace")?;
                let inner = &s[p + 1..p + close];
                // Skip the template's characters.
                while chars.peek().is_some_and(|(q, _)| *q <= p + close) {
                    chars.next();
                }
                if inner == "i" {
                    let i = idx
                        .ok_or("`{i}` is the repeat counter: use it inside `repeat N` ... `end`")?;
                    out.extend_from_slice(i.to_string().as_bytes());
                } else if let Some((text, line, len)) = inner.rsplit_once('*').and_then(|(t, n)| {
                    let n = n.trim();
                    n.strip_prefix("path=")
                        .map(|v| (t, false, v))
                        .or_else(|| n.strip_prefix("line=").map(|v| (t, true, v)))
                }) {
                    let len: usize = len
                        .parse()
                        .ok()
                        .filter(|p| (3..=4096).contains(p))
                        .ok_or_else(|| {
                            format!("bad template `{{{inner}}}`: write `{{C*path=N}}` or `{{C*line=N}}` with N an octet count (3 to 4096)")
                        })?;
                    let fill = match text.as_bytes() {
                        [c] if c.is_ascii_alphanumeric() || *c == b'-' => *c,
                        _ => {
                            return Err(format!(
                                "bad template `{{{inner}}}`: the filler is one letter, digit or `-`"
                            ))
                        }
                    };
                    let slot = fit.as_deref_mut().ok_or_else(|| {
                        format!("`{{{inner}}}` fills a mailbox path: use it in a `>` line")
                    })?;
                    if slot.is_some() {
                        return Err(format!(
                            "`{{{inner}}}`: one `{{C*path=N}}` or `{{C*line=N}}` a line"
                        ));
                    }
                    *slot = Some(Fit {
                        at: out.len(),
                        fill,
                        len,
                        line,
                    });
                    out.push(fill);
                } else if let Some((text, n)) = inner.rsplit_once('*') {
                    let n: usize = n.trim().parse().map_err(|_| {
                        format!("bad template `{{{inner}}}`: write `{{TEXT*N}}` with N a number")
                    })?;
                    if n > MAX_SCRIPT_BYTES {
                        return Err(format!("`{{{inner}}}` is too long"));
                    }
                    let piece = unescape(text, idx)?;
                    if piece.len().saturating_mul(n) > MAX_SCRIPT_BYTES {
                        return Err(format!("`{{{inner}}}` is too long"));
                    }
                    out.extend_from_slice(&piece.repeat(n));
                } else {
                    return Err(format!(
                        "unknown template `{{{inner}}}`: write `{{i}}`, `{{TEXT*N}}`, or `\\{{` for a brace"
                    ));
                }
            }
            c => {
                let mut b = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
    }
    Ok(out)
}

/// Show bytes with the script's escapes (for transcripts and reports).
pub fn escape(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len());
    for chunk in b.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\r' => s.push_str("\\r"),
                '\n' => s.push_str("\\n"),
                '\t' => s.push_str("\\t"),
                '\0' => s.push_str("\\0"),
                '\\' => s.push_str("\\\\"),
                c if c.is_control() => s.push_str(&format!("\\x{:02x}", c as u32)),
                c => s.push(c),
            }
        }
        for x in chunk.invalid() {
            s.push_str(&format!("\\x{x:02x}"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(s: &str) -> Vec<Step> {
        parse_script(s).unwrap()
    }

    fn sent(st: &Step) -> &[u8] {
        match &st.kind {
            StepKind::Send { bytes, .. } => bytes,
            other => panic!("not a send: {other:?}"),
        }
    }

    #[test]
    fn escapes_decode_to_exact_bytes() {
        assert_eq!(
            unescape(r"a\r\nb\0c\x41\x7f\\\t\{\}", None).unwrap(),
            b"a\r\nb\0cA\x7f\\\t{}".to_vec()
        );
        assert_eq!(unescape("é", None).unwrap(), "é".as_bytes().to_vec());
        assert_eq!(
            unescape("{x*3}-{ab*2}", None).unwrap(),
            b"xxx-abab".to_vec()
        );
        assert_eq!(unescape(r"{\r\n*2}", None).unwrap(), b"\r\n\r\n".to_vec());
        assert_eq!(unescape("r{i}@d", Some(7)).unwrap(), b"r7@d".to_vec());
        // `{C*path=N}`: only in `>` lines, inside a path, one character, once.
        assert!(unescape("{c*path=256}", None)
            .unwrap_err()
            .contains("use it in a `>` line"));
        assert!(parse_script("> RCPT TO:<a@{c*path=256}.test>\n").is_ok());
        for (bad, says) in [
            ("> RCPT TO:a@{c*path=256}.test\n", "between the `<` and `>`"),
            (
                "> RCPT TO:<a@{cd*path=256}.test>\n",
                "one letter, digit or `-`",
            ),
            ("> RCPT TO:<a@{c*path=x}.test>\n", "an octet count"),
            (
                "> RCPT TO:<{a*path=99}@{c*path=256}.test>\n",
                "one `{C*path=N}` or",
            ),
        ] {
            let e = parse_script(bad).unwrap_err().message;
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn bad_escapes_say_what_to_write() {
        assert!(unescape(r"\q", None)
            .unwrap_err()
            .contains("unknown escape `\\q`"));
        assert!(unescape(r"\x4", None)
            .unwrap_err()
            .contains("two hex digits"));
        assert!(unescape(r"\xzz", None)
            .unwrap_err()
            .contains("two hex digits"));
        assert!(unescape("a\\", None).unwrap_err().contains("lone"));
        assert!(unescape("{i}", None)
            .unwrap_err()
            .contains("repeat counter"));
        assert!(unescape("{oops}", None)
            .unwrap_err()
            .contains("unknown template"));
        assert!(unescape("{x*", None).unwrap_err().contains("unclosed"));
        assert!(unescape("{x*99999999}", None)
            .unwrap_err()
            .contains("too long"));
    }

    #[test]
    fn escape_round_trips_through_unescape() {
        let raw = b"MAIL FROM:<a@b>\r\n\x00.\n\xff\xfe\\x";
        assert_eq!(unescape(&escape(raw), None).unwrap(), raw.to_vec());
    }

    #[test]
    fn line_sends_add_crlf_and_quoted_sends_do_not() {
        let s = steps("> EHLO client.test\nsend \"a\\n.\\n\" \"MAIL\"\ndata \"x\\r\\n.\\r\\n\"\n");
        assert_eq!(sent(&s[0]), b"EHLO client.test\r\n");
        assert_eq!(sent(&s[1]), b"a\n.\nMAIL");
        assert!(matches!(
            s[2].kind,
            StepKind::Send {
                content: Some(Content::Data),
                ..
            }
        ));
        assert_eq!((s[0].line, s[1].line, s[2].line), (1, 2, 3));
    }

    #[test]
    fn bdat_prefixes_the_exact_octet_count() {
        let s = steps("bdat \"hello\\r\\n\"\nbdat-last \"\"\n");
        assert_eq!(sent(&s[0]), b"hello\r\n");
        assert_eq!(bdat_wire(sent(&s[0]), false), b"BDAT 7\r\nhello\r\n");
        assert!(matches!(
            s[1].kind,
            StepKind::Send {
                content: Some(Content::Bdat { last: true }),
                ..
            }
        ));
        assert_eq!(bdat_wire(sent(&s[1]), true), b"BDAT 0 LAST\r\n");
    }

    #[test]
    fn expectations_parse_codes_status_text_and_times() {
        let s = steps(
            "< 250\n< 2xx 2.1\n< 500|502 /(?i)command/\n< 250 !/STARTTLS/\n< 421 within 5s\n< closed\n< nothing 1s\n",
        );
        let e: Vec<&ReplyExpect> = s
            .iter()
            .map(|x| match &x.kind {
                StepKind::Expect(e) => e,
                _ => panic!(),
            })
            .collect();
        assert!(
            matches!(e[0], ReplyExpect::Reply { codes, .. } if codes == &[CodePattern::Exact(250)])
        );
        assert!(
            matches!(e[1], ReplyExpect::Reply { codes, enhanced: Some(x), .. } if codes == &[CodePattern::Class(2)] && x == "2.1")
        );
        assert!(
            matches!(e[2], ReplyExpect::Reply { codes, text: Some(t), .. } if codes.len() == 2 && !t.negate)
        );
        let s = steps("< 250|closed\n");
        assert!(
            matches!(&s[0].kind, StepKind::Expect(ReplyExpect::Reply { codes, .. }) if codes == &[CodePattern::Exact(250), CodePattern::Closed])
        );
        assert!(
            matches!(e[3], ReplyExpect::Reply { text: Some(t), .. } if t.negate && t.re.as_str() == "STARTTLS")
        );
        assert!(
            matches!(e[4], ReplyExpect::Reply { within, timed: true, .. } if *within == Duration::from_secs(5))
        );
        assert!(matches!(e[5], ReplyExpect::Closed { within } if *within == DEFAULT_WAIT));
        assert!(matches!(e[6], ReplyExpect::Nothing(d) if *d == Duration::from_secs(1)));
        assert!(enhanced_matches("5.5", "5.5.2"));
        assert!(!enhanced_matches("5.5", "5.55.2"));
        assert!(enhanced_matches("2.1.0", "2.1.0"));
    }

    #[test]
    fn repeat_expands_with_the_counter_and_keeps_lines() {
        let s = steps("< 220\nrepeat 3\n> RCPT TO:<r{i}@dest.test>\n< 250\nend\n> DATA\n");
        assert_eq!(s.len(), 8);
        assert_eq!(sent(&s[5]), b"RCPT TO:<r3@dest.test>\r\n");
        assert_eq!(s[5].line, 3);
        assert_eq!(s[7].line, 6);
    }

    #[test]
    fn errors_name_the_script_line() {
        let e = parse_script("< 220\n\n> EHLO x\nsend \"abc\n").unwrap_err();
        assert_eq!(e.line, 4);
        assert!(e.message.contains("unterminated"), "{}", e.message);
        let e = parse_script("< 220\nfrobnicate\n").unwrap_err();
        assert_eq!(
            (e.line, e.message.contains("unknown step `frobnicate`")),
            (2, true)
        );
        let e = parse_script("< 2x5\n").unwrap_err();
        assert!(e.message.contains("bad reply code `2x5`"), "{}", e.message);
        let e = parse_script("< 250 /unclosed\n").unwrap_err();
        assert!(e.message.contains("must end with `/`"), "{}", e.message);
        let e = parse_script("< 250 /(/\n").unwrap_err();
        assert!(e.message.contains("bad text pattern"), "{}", e.message);
        let e = parse_script("pause 10h\n").unwrap_err();
        assert!(e.message.contains("longer than"), "{}", e.message);
        let e = parse_script("repeat 2\n> NOOP\n").unwrap_err();
        assert_eq!((e.line, e.message.contains("without its `end`")), (1, true));
        let e = parse_script("> NOOP\nend\n").unwrap_err();
        assert_eq!(e.line, 2);
        let e = parse_script("repeat 2\nrepeat 2\nend\nend\n").unwrap_err();
        assert!(e.message.contains("do not nest"));
        let e = parse_script("< 250 9.9.9\n").unwrap_err();
        assert!(e.message.contains("bad enhanced status"));
        let e = parse_script("# only a comment\n").unwrap_err();
        assert!(e.message.contains("empty script"));
        let e = parse_script("starttls now\n").unwrap_err();
        assert!(e.message.contains("takes nothing"));
        // Repeats cannot make a script too big to run or to read.
        let e = parse_script("repeat 10000\n> NOOP\n< 250\n> NOOP\nend\n").unwrap_err();
        assert!(e.message.contains("more than 20000 steps"), "{}", e.message);
        let comments = "# c\n".repeat(100);
        let e = parse_script(&format!("repeat 10000\n{comments}end\n")).unwrap_err();
        assert!(
            e.message.contains("lines with its repeats"),
            "{}",
            e.message
        );
        let e = parse_script("repeat 10000\nsend \"{x*1000}\"\nend\n").unwrap_err();
        assert!(e.message.contains("MiB"), "{}", e.message);
    }

    proptest::proptest! {
        /// Any script text gives steps or an error on one of its lines, never a panic.
        #[test]
        fn any_script_parses_or_names_a_line(
            pieces in proptest::collection::vec(
                proptest::sample::select(vec![
                    "< 220\n", "< 2xx 2.1 /ok/\n", "< 5xx !/x/ within 1s\n", "< closed\n",
                    "< nothing 1s\n", "> EHLO {i}\\r\\x0\n", "send \"a\\\"b\" \"\\x41\"\n",
                    "data \"{z*3}\"\n", "bdat \"\"\n", "repeat 2\n", "end\n", "pause 1ms\n",
                    "starttls\n", "enhanced on\n", "{", "}", "\\", "\"", "/", "|", "é", "\r", "\n", " ",
                ]),
                0..40,
            ),
            raw in "\\PC{0,40}",
        ) {
            let text: String = pieces.concat() + &raw;
            match parse_script(&text) {
                Ok(steps) => {
                    for st in steps {
                        proptest::prop_assert!(st.line >= 1 && st.line <= text.lines().count().max(1));
                    }
                }
                Err(e) => proptest::prop_assert!(e.line >= 1 && e.line <= text.lines().count().max(1), "{e:?}"),
            }
        }
    }

    #[test]
    fn relayed_body_must_be_as_sent() {
        let f = RelayedFile {
            host: "mx".into(),
            count: Some(1),
            from: vec![],
            smuggled_from: None,
            body: Some("exact".into()),
            rcpts: None,
        };
        assert!(relayed(&f).unwrap_err().contains("as-sent"));
    }
}
