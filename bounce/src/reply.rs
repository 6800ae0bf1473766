//! SMTP reply parsing: RFC 5321 §4.2 replies and RFC 3463 enhanced status codes.
//!
//! [`parse_reply`] is incremental and bounded: it reads a byte buffer that
//! may hold only part of a reply (it then asks for more), rejects hostile
//! input as early as possible (an overlong line is refused before its line
//! end arrives) and never panics.
//!
//! Accepted reply codes are `200..=599` (the first digit of RFC 5321's
//! `Reply-code` is `2`..`5`; other digits are accepted as any decimal digit).
//! Lines end in CRLF; a bare LF is accepted too and recorded in
//! [`Reply::bare_lf`] so that conformance checks can report it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A complete SMTP reply: one code and one or more lines of text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Reply {
    /// Three-digit reply code, `200..=599`.
    pub code: u16,
    /// Text of each line after `NNN-` / `NNN `, decoded as lossy UTF-8.
    /// A line with no text after the code yields an empty string.
    pub lines: Vec<String>,
    /// At least one line ended in a bare LF instead of CRLF (wire parsing
    /// only; [`Reply::from_str`] treats LF and CRLF alike and leaves this
    /// `false`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bare_lf: bool,
}

impl Reply {
    /// Builds a reply from a code and its text lines.
    pub fn new<S: Into<String>>(code: u16, lines: impl IntoIterator<Item = S>) -> Self {
        Reply {
            code,
            lines: lines.into_iter().map(Into::into).collect(),
            bare_lf: false,
        }
    }

    /// First digit of the code (2, 3, 4 or 5).
    pub fn class(&self) -> u8 {
        (self.code / 100) as u8
    }

    /// The RFC 3463 enhanced status code at the start of the first line, if
    /// present and if its class matches the reply code's first digit (RFC
    /// 2034 §4).
    pub fn enhanced(&self) -> Option<EnhancedStatus> {
        let first = self.lines.first()?;
        let (status, _) = EnhancedStatus::parse_prefix(first)?;
        (status.class == self.class()).then_some(status)
    }

    /// Text of all lines joined by `\n`.
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }

    /// The reply as sent on the wire: `250-a\r\n250 b\r\n`. A reply with no
    /// lines, or an empty last line, is written as `250\r\n`; an empty
    /// continuation line as `250-\r\n`.
    pub fn to_wire(&self) -> String {
        let mut out =
            String::with_capacity(self.lines.iter().map(|l| l.len() + 6).sum::<usize>().max(5));
        let code = self.code;
        if self.lines.is_empty() {
            out.push_str(&format!("{code}\r\n"));
            return out;
        }
        let last = self.lines.len() - 1;
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            if line.is_empty() {
                if i == last {
                    out.push_str(&format!("{code}\r\n"));
                } else {
                    out.push_str(&format!("{code}-\r\n"));
                }
            } else {
                out.push_str(&format!("{code}{sep}{line}\r\n"));
            }
        }
        out
    }

    /// Whether this is a multi-line reply.
    pub fn is_multiline(&self) -> bool {
        self.lines.len() > 1
    }
}

impl fmt::Display for Reply {
    /// The wire form without the final CRLF, lines separated by `\n`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let wire = self.to_wire();
        let mut first = true;
        for line in wire.split("\r\n").filter(|l| !l.is_empty()) {
            if !first {
                f.write_str("\n")?;
            }
            first = false;
            f.write_str(line)?;
        }
        Ok(())
    }
}

impl FromStr for Reply {
    type Err = ReplyError;

    /// Parses one whole reply written as text, e.g. `"550 5.1.1 no\n"` or a
    /// multi-line reply; lines may end in CRLF or LF and the final line end
    /// may be missing. Anything after the reply is an error.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes: std::borrow::Cow<'_, [u8]> = if s.ends_with('\n') {
            s.as_bytes().into()
        } else {
            format!("{s}\r\n").into_bytes().into()
        };
        let limits = ReplyLimits {
            max_line: usize::MAX / 4,
            max_lines: usize::MAX / 4,
        };
        match parse_reply(&bytes, &limits)? {
            Some((mut reply, used)) => {
                if used != bytes.len() {
                    return Err(ReplyError::TrailingData { offset: used });
                }
                reply.bare_lf = false;
                Ok(reply)
            }
            None => Err(ReplyError::Incomplete),
        }
    }
}

/// An RFC 3463 enhanced mail system status code, `class.subject.detail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EnhancedStatus {
    /// 2 (success), 4 (persistent transient failure) or 5 (permanent failure).
    pub class: u8,
    pub subject: u16,
    pub detail: u16,
}

impl EnhancedStatus {
    pub fn new(class: u8, subject: u16, detail: u16) -> Self {
        EnhancedStatus {
            class,
            subject,
            detail,
        }
    }

    /// Reads a status code at the very start of `s` that is followed by the
    /// end of the string, whitespace or one of `;,:)]'"`. Returns the status
    /// and the rest of the string after it (not trimmed).
    pub fn parse_prefix(s: &str) -> Option<(EnhancedStatus, &str)> {
        let b = s.as_bytes();
        let end = b
            .iter()
            .position(|&c| !(c.is_ascii_digit() || c == b'.'))
            .unwrap_or(b.len());
        if let Some(&next) = b.get(end) {
            if !(next.is_ascii_whitespace() || b";,:)]'\"".contains(&next)) {
                return None;
            }
        }
        // A sentence-ending dot after the code ("... 5.1.1." ) is not part of it.
        let mut tok_end = end;
        if tok_end > 0 && b[tok_end - 1] == b'.' {
            tok_end -= 1;
        }
        let status = s.get(..tok_end)?.parse().ok()?;
        Some((status, s.get(end..).unwrap_or("")))
    }
}

impl fmt::Display for EnhancedStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

impl Serialize for EnhancedStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EnhancedStatus {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Why a string is not an enhanced status code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid enhanced status code {0:?} (expected class.subject.detail, e.g. 5.1.1)")]
pub struct ParseStatusError(pub String);

/// One numeric sub-code: 1 to 3 digits, no leading zero (RFC 3463 §2).
fn sub_code(s: &str) -> Option<u16> {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 3 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if b.len() > 1 && b[0] == b'0' {
        return None;
    }
    s.parse().ok()
}

impl FromStr for EnhancedStatus {
    type Err = ParseStatusError;

    /// Strict RFC 3463 §2 grammar: `class "." subject "." detail`, class
    /// `2`/`4`/`5`, subject and detail 1–3 digits without leading zeros, no
    /// whitespace.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseStatusError(s.to_string());
        let mut parts = s.split('.');
        let class = parts.next().ok_or_else(err)?;
        let subject = parts.next().ok_or_else(err)?;
        let detail = parts.next().ok_or_else(err)?;
        if parts.next().is_some() {
            return Err(err());
        }
        let class = match class {
            "2" => 2,
            "4" => 4,
            "5" => 5,
            _ => return Err(err()),
        };
        Ok(EnhancedStatus {
            class,
            subject: sub_code(subject).ok_or_else(err)?,
            detail: sub_code(detail).ok_or_else(err)?,
        })
    }
}

/// Bounds applied while reading a reply from the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyLimits {
    /// Longest line accepted, in bytes, without its line end. RFC 5321
    /// §4.5.3.1.5 sets 512 as the minimum a receiver must accept; the
    /// default is generous.
    pub max_line: usize,
    /// Most lines accepted in one reply.
    pub max_lines: usize,
}

impl Default for ReplyLimits {
    fn default() -> Self {
        ReplyLimits {
            max_line: 4096,
            max_lines: 256,
        }
    }
}

/// Why bytes are not a valid SMTP reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("reply line {line} is longer than {limit} bytes")]
    LineTooLong { line: usize, limit: usize },
    #[error("reply has more than {limit} lines")]
    TooManyLines { limit: usize },
    #[error("reply line {line} does not start with a three-digit code")]
    BadCode { line: usize },
    #[error("reply code {code} on line {line} is outside 200..=599")]
    CodeOutOfRange { line: usize, code: u16 },
    #[error("reply line {line} has {found:?} after the code instead of '-', ' ' or the line end")]
    BadSeparator { line: usize, found: char },
    #[error("reply line {line} has code {found} but the reply started with {first}")]
    CodeMismatch { line: usize, first: u16, found: u16 },
    #[error("reply is incomplete")]
    Incomplete,
    #[error("unexpected data after the reply at byte {offset}")]
    TrailingData { offset: usize },
}

/// Position of the first LF in `hay`, eight bytes at a time.
#[inline]
fn find_lf(hay: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const LF: u64 = LO * b'\n' as u64;
    let mut i = 0;
    while i + 8 <= hay.len() {
        let mut w = [0u8; 8];
        w.copy_from_slice(&hay[i..i + 8]);
        let x = u64::from_le_bytes(w) ^ LF;
        let found = x.wrapping_sub(LO) & !x & HI;
        if found != 0 {
            return Some(i + (found.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    hay[i..].iter().position(|&b| b == b'\n').map(|p| i + p)
}

/// Checks the start of a line (complete or not) as far as it goes.
/// Returns the code once three digits are present.
fn check_head(head: &[u8], line: usize) -> Result<Option<u16>, ReplyError> {
    for (i, &c) in head.iter().take(3).enumerate() {
        if !c.is_ascii_digit() {
            return Err(ReplyError::BadCode { line });
        }
        if i == 0 && !(b'2'..=b'5').contains(&c) {
            // Report the full code when we have it, else a representative.
            let code = if head.len() >= 3 && head[1].is_ascii_digit() && head[2].is_ascii_digit() {
                u16::from(c - b'0') * 100
                    + u16::from(head[1] - b'0') * 10
                    + u16::from(head[2] - b'0')
            } else {
                u16::from(c - b'0') * 100
            };
            return Err(ReplyError::CodeOutOfRange { line, code });
        }
    }
    if head.len() < 3 {
        return Ok(None);
    }
    let code = u16::from(head[0] - b'0') * 100
        + u16::from(head[1] - b'0') * 10
        + u16::from(head[2] - b'0');
    if let Some(&sep) = head.get(3) {
        if sep != b'-' && sep != b' ' && sep != b'\r' && sep != b'\n' {
            return Err(ReplyError::BadSeparator {
                line,
                found: char::from(sep),
            });
        }
    }
    Ok(Some(code))
}

/// Reads one complete reply from the start of `buf`.
///
/// Returns `Ok(None)` when `buf` holds only a prefix of a valid reply (read
/// more and call again with the longer buffer), or the reply and the number
/// of bytes it used. Errors are final: the peer sent something that is not a
/// reply within `limits`.
pub fn parse_reply(buf: &[u8], limits: &ReplyLimits) -> Result<Option<(Reply, usize)>, ReplyError> {
    let mut pos = 0usize;
    let mut first_code: Option<u16> = None;
    let mut lines: Vec<String> = Vec::with_capacity(4);
    let mut bare_lf = false;
    loop {
        let line_no = lines.len() + 1;
        if lines.len() >= limits.max_lines {
            return Err(ReplyError::TooManyLines {
                limit: limits.max_lines,
            });
        }
        let rest = &buf[pos..];
        // Look for the line end no further than the limit allows.
        let window = limits.max_line.saturating_add(2).min(rest.len());
        let Some(nl) = find_lf(&rest[..window]) else {
            // Incomplete line: validate what is there, then enforce length.
            check_head(rest, line_no)?;
            let too_long = rest.len() > limits.max_line.saturating_add(1)
                || (rest.len() == limits.max_line.saturating_add(1) && rest.last() != Some(&b'\r'));
            if too_long {
                return Err(ReplyError::LineTooLong {
                    line: line_no,
                    limit: limits.max_line,
                });
            }
            return Ok(None);
        };
        let mut line = &rest[..nl];
        if let Some(stripped) = line.strip_suffix(b"\r") {
            line = stripped;
        } else {
            bare_lf = true;
        }
        if line.len() > limits.max_line {
            return Err(ReplyError::LineTooLong {
                line: line_no,
                limit: limits.max_line,
            });
        }
        let code = match check_head(line, line_no)? {
            Some(code) => code,
            None => return Err(ReplyError::BadCode { line: line_no }),
        };
        match first_code {
            None => first_code = Some(code),
            Some(first) if first != code => {
                return Err(ReplyError::CodeMismatch {
                    line: line_no,
                    first,
                    found: code,
                })
            }
            Some(_) => {}
        }
        let last = line.get(3) != Some(&b'-');
        let text = line.get(4..).unwrap_or(&[]);
        lines.push(match std::str::from_utf8(text) {
            Ok(t) => t.to_owned(),
            Err(_) => String::from_utf8_lossy(text).into_owned(),
        });
        pos += nl + 1;
        if last {
            return Ok(Some((
                Reply {
                    code,
                    lines,
                    bare_lf,
                },
                pos,
            )));
        }
    }
}

/// Reads replies from a byte stream as it arrives, looking at each byte a
/// bounded number of times: the search for a line end resumes where it
/// stopped, each complete line is checked once, and the whole reply is
/// parsed once more when its last line arrives (so the work is linear in
/// the bytes read, however they are split). Errors are those of
/// [`parse_reply`], as early as it gives them.
#[derive(Debug, Default)]
pub struct ReplyReader {
    buf: Vec<u8>,
    /// Start of the line not yet complete.
    line_start: usize,
    /// Where the search for its line end goes on.
    scanned: usize,
    /// Complete lines of the reply in progress.
    lines: usize,
    /// The code of its first line.
    first: Option<u16>,
}

impl ReplyReader {
    /// Append bytes read from the peer.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Octets held (the reply in progress and anything after it).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete reply, `Ok(None)` if more bytes are needed.
    pub fn next(&mut self, limits: &ReplyLimits) -> Result<Option<Reply>, ReplyError> {
        loop {
            if self.lines >= limits.max_lines {
                return Err(ReplyError::TooManyLines {
                    limit: limits.max_lines,
                });
            }
            let line_no = self.lines + 1;
            let Some(nl) = find_lf(&self.buf[self.scanned..]).map(|i| self.scanned + i) else {
                self.scanned = self.buf.len();
                let part = &self.buf[self.line_start..];
                check_head(&part[..part.len().min(4)], line_no)?;
                let max = limits.max_line.saturating_add(1);
                if part.len() > max || (part.len() == max && part.last() != Some(&b'\r')) {
                    return Err(ReplyError::LineTooLong {
                        line: line_no,
                        limit: limits.max_line,
                    });
                }
                return Ok(None);
            };
            let line = &self.buf[self.line_start..=nl];
            let last = parse_reply(line, limits).map_err(|e| renumber(e, self.lines))?;
            if let Some(found) = check_head(&line[..line.len().min(4)], line_no)? {
                match self.first {
                    Some(first) if first != found => {
                        return Err(ReplyError::CodeMismatch {
                            line: line_no,
                            first,
                            found,
                        })
                    }
                    _ => self.first = Some(found),
                }
            }
            self.line_start = nl + 1;
            self.scanned = nl + 1;
            self.lines += 1;
            if last.is_some() {
                let whole = parse_reply(&self.buf[..=nl], limits);
                self.buf.drain(..=nl);
                self.line_start = 0;
                self.scanned = 0;
                self.lines = 0;
                self.first = None;
                return match whole? {
                    Some((reply, _)) => Ok(Some(reply)),
                    None => Err(ReplyError::Incomplete),
                };
            }
        }
    }
}

/// An error found in a line read on its own, numbered within its reply.
fn renumber(e: ReplyError, before: usize) -> ReplyError {
    use ReplyError::*;
    match e {
        LineTooLong { line, limit } => LineTooLong {
            line: line + before,
            limit,
        },
        BadCode { line } => BadCode {
            line: line + before,
        },
        CodeOutOfRange { line, code } => CodeOutOfRange {
            line: line + before,
            code,
        },
        BadSeparator { line, found } => BadSeparator {
            line: line + before,
            found,
        },
        CodeMismatch { line, first, found } => CodeMismatch {
            line: line + before,
            first,
            found,
        },
        e => e,
    }
}

/// Reads the three-digit code at the start of `s` if it is followed by
/// `-`, space or the end; returns code, separator and rest.
fn lead_code(s: &str) -> Option<(u16, Option<u8>, &str)> {
    let b = s.as_bytes();
    if b.len() < 3 || !b[..3].iter().all(u8::is_ascii_digit) || !(b'2'..=b'5').contains(&b[0]) {
        return None;
    }
    let code = u16::from(b[0] - b'0') * 100 + u16::from(b[1] - b'0') * 10 + u16::from(b[2] - b'0');
    match b.get(3) {
        None => Some((code, None, "")),
        Some(&c) if c == b'-' || c == b' ' || c == b'\t' => Some((code, Some(c), s.get(4..)?)),
        _ => None,
    }
}

/// Leniently reads an SMTP reply from diagnostic text as found in a DSN's
/// `Diagnostic-Code: smtp; ...` field or in a bounce's prose.
///
/// The text must start (after whitespace and an optional opening quote) with
/// a reply code `200..=599`. Continuation lines may be on separate lines or
/// folded into one (`550-5.1.1 a 550 5.1.1 b`): a new line starts wherever
/// the same code followed by `-` or space follows whitespace, as long as the
/// previous line was a continuation. Returns `None` when there is no
/// leading reply code.
pub fn parse_diagnostic(text: &str) -> Option<Reply> {
    let t = text.trim_start();
    let t = t.strip_prefix(['"', '\'', '<', '(']).unwrap_or(t);
    let (code, mut sep, mut rest) = lead_code(t)?;
    let mut lines = Vec::new();
    loop {
        if sep != Some(b'-') {
            // Final line: the rest, line ends folded into spaces.
            lines.push(collapse_ws(rest));
            break;
        }
        // Continuation: find the next "<ws>CODE-" or "<ws>CODE " (or CODE at end).
        let b = rest.as_bytes();
        let mut split = None;
        let mut i = 0;
        while i < b.len() {
            if b[i].is_ascii_whitespace() {
                let j = i + 1;
                if let Some(cand) = rest.get(j..) {
                    if let Some((c2, s2, r2)) = lead_code(cand) {
                        if c2 == code {
                            split = Some((i, s2, r2));
                            break;
                        }
                    }
                }
            }
            i += 1;
        }
        match split {
            Some((at, s2, r2)) => {
                lines.push(collapse_ws(rest.get(..at).unwrap_or("")));
                sep = s2;
                rest = r2;
            }
            None => {
                lines.push(collapse_ws(rest));
                break;
            }
        }
        if lines.len() > 4096 {
            break;
        }
    }
    Some(Reply {
        code,
        lines,
        bare_lf: false,
    })
}

/// Trims and turns every run of whitespace containing a line end into one
/// space (folded header text).
fn collapse_ws(s: &str) -> String {
    let s = s.trim();
    if !s.contains(['\r', '\n']) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut pending_ws = false;
    for ch in s.chars() {
        if ch == '\r' || ch == '\n' {
            pending_ws = true;
            continue;
        }
        if pending_ws {
            if !ch.is_whitespace() {
                out.push(' ');
                pending_ws = false;
                out.push(ch);
            }
            continue;
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lim() -> ReplyLimits {
        ReplyLimits::default()
    }

    #[test]
    fn single_line() {
        let (r, n) = parse_reply(b"250 OK\r\n", &lim()).unwrap().unwrap();
        assert_eq!(n, 8);
        assert_eq!(r, Reply::new(250, ["OK"]));
        assert_eq!(r.class(), 2);
        assert_eq!(r.enhanced(), None);
    }

    #[test]
    fn multi_line_and_consumed() {
        let buf = b"250-mx.example\r\n250-PIPELINING\r\n250 SIZE 100\r\n220 next";
        let (r, n) = parse_reply(buf, &lim()).unwrap().unwrap();
        assert_eq!(r.lines, ["mx.example", "PIPELINING", "SIZE 100"]);
        assert_eq!(&buf[n..], b"220 next");
        assert!(r.is_multiline());
    }

    #[test]
    fn incremental() {
        let buf = b"550-5.1.1 first\r\n550 5.1.1 second\r\n";
        for cut in 0..buf.len() {
            assert_eq!(parse_reply(&buf[..cut], &lim()), Ok(None), "cut {cut}");
        }
        let (r, _) = parse_reply(buf, &lim()).unwrap().unwrap();
        assert_eq!(r.enhanced(), Some(EnhancedStatus::new(5, 1, 1)));
        assert_eq!(r.text(), "5.1.1 first\n5.1.1 second");
    }

    #[test]
    fn bare_code_and_bare_lf() {
        let (r, _) = parse_reply(b"250\r\n", &lim()).unwrap().unwrap();
        assert_eq!(r.lines, [""]);
        assert!(!r.bare_lf);
        let (r, _) = parse_reply(b"250-a\n250 b\r\n", &lim()).unwrap().unwrap();
        assert!(r.bare_lf);
        assert_eq!(r.lines, ["a", "b"]);
    }

    #[test]
    fn errors() {
        let l = lim();
        assert_eq!(
            parse_reply(b"25x OK\r\n", &l),
            Err(ReplyError::BadCode { line: 1 })
        );
        assert_eq!(parse_reply(b"x", &l), Err(ReplyError::BadCode { line: 1 }));
        assert_eq!(
            parse_reply(b"150 OK\r\n", &l),
            Err(ReplyError::CodeOutOfRange { line: 1, code: 150 })
        );
        assert_eq!(
            parse_reply(b"6", &l),
            Err(ReplyError::CodeOutOfRange { line: 1, code: 600 })
        );
        assert_eq!(
            parse_reply(b"250_OK\r\n", &l),
            Err(ReplyError::BadSeparator {
                line: 1,
                found: '_'
            })
        );
        assert_eq!(
            parse_reply(b"250-a\r\n251 b\r\n", &l),
            Err(ReplyError::CodeMismatch {
                line: 2,
                first: 250,
                found: 251
            })
        );
        assert_eq!(
            parse_reply(b"25\r\n", &l),
            Err(ReplyError::BadCode { line: 1 })
        );
    }

    #[test]
    fn limits() {
        let l = ReplyLimits {
            max_line: 10,
            max_lines: 2,
        };
        // Exactly at the limit is fine, with or without CR yet.
        assert!(parse_reply(b"250 123456\r\n", &l).unwrap().is_some());
        assert_eq!(parse_reply(b"250 123456\r", &l), Ok(None));
        assert_eq!(parse_reply(b"250 123456", &l), Ok(None));
        // One more byte without a line end is already too long.
        assert_eq!(
            parse_reply(b"250 1234567", &l),
            Err(ReplyError::LineTooLong { line: 1, limit: 10 })
        );
        assert_eq!(
            parse_reply(b"250 1234567\r\n", &l),
            Err(ReplyError::LineTooLong { line: 1, limit: 10 })
        );
        assert_eq!(
            parse_reply(b"250-a\r\n250-b\r\n250 c\r\n", &l),
            Err(ReplyError::TooManyLines { limit: 2 })
        );
    }

    #[test]
    fn from_str_and_wire() {
        let r: Reply = "550-5.1.1 a\n550 5.1.1 b".parse().unwrap();
        assert_eq!(r.lines, ["5.1.1 a", "5.1.1 b"]);
        assert!(!r.bare_lf);
        assert_eq!(r.to_wire(), "550-5.1.1 a\r\n550 5.1.1 b\r\n");
        assert_eq!(r.to_string(), "550-5.1.1 a\n550 5.1.1 b");
        assert_eq!(Reply::new(250, Vec::<String>::new()).to_wire(), "250\r\n");
        assert_eq!(Reply::new(250, ["", ""]).to_wire(), "250-\r\n250\r\n");
        assert!("250 a\n250 b\n".parse::<Reply>().is_err());
        assert!("".parse::<Reply>().is_err());
        assert!("250-a\n".parse::<Reply>().is_err());
    }

    #[test]
    fn enhanced_status_grammar() {
        let ok = ["2.0.0", "5.1.1", "4.7.999", "5.10.0", "5.0.0"];
        for s in ok {
            assert_eq!(s.parse::<EnhancedStatus>().unwrap().to_string(), s);
        }
        let bad = [
            "", "5", "5.1", "5.1.1.1", "3.1.1", "5.01.1", "5.1.01", "5.1000.1", "5.1.1 ", " 5.1.1",
            "5..1", "5.a.1", "05.1.1", "+5.1.1", "5.-1.1",
        ];
        for s in bad {
            assert!(s.parse::<EnhancedStatus>().is_err(), "{s:?}");
        }
        // Class must match the reply code.
        assert_eq!(Reply::new(250, ["5.1.1 x"]).enhanced(), None);
        assert_eq!(
            Reply::new(550, ["5.1.1"]).enhanced(),
            Some(EnhancedStatus::new(5, 1, 1))
        );
        assert_eq!(Reply::new(550, ["5.1.1x"]).enhanced(), None);
    }

    #[test]
    fn diagnostics() {
        let r = parse_diagnostic("550 5.1.1 <x@example.com>... User unknown").unwrap();
        assert_eq!(r.code, 550);
        assert_eq!(r.enhanced(), Some(EnhancedStatus::new(5, 1, 1)));
        assert_eq!(r.lines, ["5.1.1 <x@example.com>... User unknown"]);

        let r = parse_diagnostic("550-5.1.1 a b 550 5.1.1 c").unwrap();
        assert_eq!(r.lines, ["5.1.1 a b", "5.1.1 c"]);

        let r = parse_diagnostic("550-5.7.1 one\r\n 550-5.7.1 two\n    550 5.7.1 three").unwrap();
        assert_eq!(r.lines, ["5.7.1 one", "5.7.1 two", "5.7.1 three"]);

        // A count after the final line is not a new line.
        let r = parse_diagnostic("452 4.2.2 box holds 550 messages").unwrap();
        assert_eq!(r.lines, ["4.2.2 box holds 550 messages"]);

        assert!(parse_diagnostic("5.1.0 - Unknown address error 550-'x'").is_none());
        assert!(parse_diagnostic("").is_none());
        assert!(parse_diagnostic("55").is_none());
        assert_eq!(parse_diagnostic("554").unwrap().lines, [""]);
        assert_eq!(parse_diagnostic("'550 no such user'").unwrap().code, 550);
    }

    fn arb_line() -> impl Strategy<Value = String> {
        // Any text without line-end characters.
        proptest::string::string_regex("[^\r\n]{0,40}").unwrap()
    }

    fn arb_reply() -> impl Strategy<Value = Reply> {
        (200u16..600, proptest::collection::vec(arb_line(), 1..8))
            .prop_map(|(code, lines)| Reply::new(code, lines))
    }

    proptest! {
        #[test]
        fn lf_search_agrees(buf in proptest::collection::vec(prop_oneof![Just(b'\n'), any::<u8>()], 0..64)) {
            prop_assert_eq!(find_lf(&buf), buf.iter().position(|&b| b == b'\n'));
        }

        #[test]
        fn wire_round_trip(r in arb_reply(), tail in proptest::collection::vec(any::<u8>(), 0..8)) {
            let wire = r.to_wire();
            let mut buf = wire.clone().into_bytes();
            buf.extend_from_slice(&tail);
            let (back, used) = parse_reply(&buf, &ReplyLimits::default()).unwrap().unwrap();
            prop_assert_eq!(used, wire.len());
            prop_assert_eq!(&back, &r);
            // Line order is kept.
            prop_assert_eq!(back.lines, r.lines.clone());
            let parsed: Reply = wire.parse().unwrap();
            prop_assert_eq!(parsed, r);
        }

        #[test]
        fn reader_agrees_with_parse_reply_however_bytes_arrive(
            tokens in proptest::collection::vec(prop_oneof![
                Just(b"250-a\r\n".to_vec()), Just(b"250 b\r\n".to_vec()), Just(b"550-c\n".to_vec()),
                Just(b"550 d\r\n".to_vec()), Just(b"250".to_vec()), Just(b"\r\n".to_vec()),
                Just(b"xxxxxx".to_vec()), proptest::collection::vec(any::<u8>(), 0..4),
            ], 0..12),
            cuts in proptest::collection::vec(1usize..9, 1..40),
        ) {
            let stream = tokens.concat();
            let mut parts = Vec::new();
            let mut at = 0;
            for c in cuts.iter().cycle() {
                if at >= stream.len() {
                    break;
                }
                let end = (at + c).min(stream.len());
                parts.push(&stream[at..end]);
                at = end;
            }
            let l = ReplyLimits { max_line: 8, max_lines: 3 };
            let (mut reader, mut model) = (ReplyReader::default(), Vec::new());
            'feed: for p in parts {
                reader.push(p);
                model.extend_from_slice(p);
                loop {
                    let want = parse_reply(&model, &l);
                    let got = reader.next(&l);
                    match (want, got) {
                        (Ok(Some((w, used))), Ok(Some(g))) => {
                            prop_assert_eq!(w, g);
                            model.drain(..used);
                        }
                        (Ok(None), Ok(None)) => break,
                        (Err(w), Err(g)) => { prop_assert_eq!(w, g); break 'feed; }
                        (w, g) => prop_assert!(false, "parse_reply {:?} but reader {:?} on {:?}", w, g, model),
                    }
                }
                prop_assert_eq!(reader.buffered(), model.len());
            }
        }

        #[test]
        fn never_panics(buf in proptest::collection::vec(any::<u8>(), 0..600)) {
            let l = ReplyLimits { max_line: 64, max_lines: 4 };
            if let Ok(Some((r, used))) = parse_reply(&buf, &l) {
                prop_assert!(used <= buf.len());
                prop_assert!((200..600).contains(&r.code));
                prop_assert!(r.lines.len() <= 4);
            }
            let s = String::from_utf8_lossy(&buf);
            let _ = s.parse::<Reply>();
            let _ = parse_diagnostic(&s);
        }

        #[test]
        fn never_panics_on_reply_like(s in "([2-5][0-9][0-9][- ]?[ -~]{0,12}(\r?\n)?){0,6}") {
            let _ = parse_reply(s.as_bytes(), &ReplyLimits::default());
            let _ = s.parse::<Reply>();
            if let Some(r) = parse_diagnostic(&s) {
                prop_assert!((200..600).contains(&r.code));
            }
        }

        #[test]
        fn enhanced_class_matches_code(code in 200u16..600, c in 0u8..10, s in 0u16..1200, d in 0u16..1200, rest in arb_line()) {
            let r = Reply::new(code, [format!("{c}.{s}.{d}{rest}")]);
            if let Some(st) = r.enhanced() {
                prop_assert_eq!(u16::from(st.class), code / 100);
                prop_assert!(st.subject <= 999 && st.detail <= 999);
            }
            if let Some(d) = parse_diagnostic(&r.to_wire()) {
                if let Some(st) = d.enhanced() {
                    prop_assert_eq!(st.class, d.class());
                }
            }
        }

        #[test]
        fn oversized_line_is_refused(extra in 1usize..100, crlf in any::<bool>()) {
            let l = ReplyLimits { max_line: 32, max_lines: 4 };
            let mut buf = b"250 ".to_vec();
            buf.resize(4 + 28 + extra, b'a');
            if crlf {
                buf.extend_from_slice(b"\r\n");
            }
            prop_assert_eq!(parse_reply(&buf, &l), Err(ReplyError::LineTooLong { line: 1, limit: 32 }));
        }

        #[test]
        fn too_many_lines_is_refused(n in 5usize..40) {
            let l = ReplyLimits { max_line: 32, max_lines: 4 };
            let r = Reply::new(250, (0..n).map(|i| format!("line {i}")));
            prop_assert_eq!(parse_reply(r.to_wire().as_bytes(), &l), Err(ReplyError::TooManyLines { limit: 4 }));
        }
    }
}
