//! Bounce classification: why each recipient bounced, from status codes, reply codes and phrase tables.
//!
//! Evidence is weighed in this order:
//!
//! 1. the outcome itself: `Action: delivered` (or a 2.x.x status) is
//!    [`Reason::Delivered`], an RFC 3834 auto-reply is [`Reason::Vacation`];
//! 2. the diagnostic type `x-unix` (a local delivery program failed), and a
//!    4.x.x status in a final report (the queue lifetime ran out), unless
//!    the text names a more specific reason;
//! 3. a phrase of the diagnostic text, from the tables in
//!    `data/phrases.txt` (the recipient's own diagnostic first, then the
//!    human-readable text about it); "no such user" said after DATA is
//!    [`Reason::Filtered`] (a filter refused the message, not RCPT TO), and
//!    an unknown host under a 4.x.x status is a [`Reason::NetworkError`]
//!    (a name lookup that failed for now);
//! 4. an RFC 3463 status code whose meaning is specific (`5.1.1`,
//!    `5.2.2`, `4.4.7`, `5.7.26`, ...): the remote server's code first,
//!    then the `Status` field;
//! 5. `Action: delayed`, a status code of vague meaning (`5.7.1`,
//!    `5.2.1`, `5.5.0`, ...), then the reply code (`552`, `556`, ...).
//!
//! [`Classification::evidence`] says which of these decided.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

use crate::phrases::{Entry, Key, TABLE};
use crate::reply::EnhancedStatus;
use crate::{Action, Dsn, Recipient};

macro_rules! reasons {
    ($($(#[doc = $doc:literal])* $v:ident = $name:literal, $sisimai:literal;)*) => {
        /// Why a recipient bounced: a fixed vocabulary.
        ///
        /// The names (`user-unknown`, ...) are what [`fmt::Display`],
        /// [`FromStr`] and serde use; [`Reason::sisimai`] gives the name
        /// the sisimai library uses for the same reason, and [`FromStr`]
        /// accepts those too.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Reason {
            $($(#[doc = $doc])* $v,)*
        }

        impl Reason {
            /// Every reason, most specific first: when phrases for several
            /// reasons match one text, the one listed first wins.
            pub const ALL: &'static [Reason] = &[$(Reason::$v,)*];

            /// The name, e.g. `user-unknown`.
            pub fn as_str(self) -> &'static str {
                match self { $(Reason::$v => $name,)* }
            }

            /// sisimai's name for the same reason, e.g. `userunknown`.
            pub fn sisimai(self) -> &'static str {
                match self { $(Reason::$v => $sisimai,)* }
            }
        }
    };
}

reasons! {
    /// An RFC 3834 auto-reply (out of office), not a failure.
    Vacation = "vacation", "vacation";
    /// A virus or other malware was found in the message.
    VirusDetected = "virus-detected", "virusdetected";
    /// The sending domain failed SPF, DKIM or DMARC checks.
    AuthFailure = "auth-failure", "authfailure";
    /// The sending IP address has no (matching) reverse DNS name.
    RequirePtr = "require-ptr", "requireptr";
    /// The sender's IP address or domain has a poor reputation.
    BadReputation = "bad-reputation", "badreputation";
    /// The message was refused as not RFC 5322 compliant.
    NotCompliantRfc = "not-compliant-rfc", "notcompliantrfc";
    /// The message's envelope sender was refused (MAIL FROM).
    Rejected = "rejected", "rejected";
    /// The receiving server refuses to relay for the sender.
    NoRelaying = "no-relaying", "norelaying";
    /// Too many connections from the sender at once.
    TooManyConnections = "too-many-connections", "toomanyconn";
    /// The sender sends too fast (rate limit).
    RateLimited = "rate-limited", "speeding";
    /// The mailbox exists but has been disabled or suspended.
    Suspend = "suspend", "suspend";
    /// The mailbox is full (quota).
    MailboxFull = "mailbox-full", "mailboxfull";
    /// The message is larger than the receiver accepts.
    MessageTooBig = "message-too-big", "mesgtoobig";
    /// The message exceeds some other administrative limit (length,
    /// recipients).
    ExceedLimit = "exceed-limit", "exceedlimit";
    /// The address has moved; the reply names the new one.
    HasMoved = "has-moved", "hasmoved";
    /// The recipient's mailbox does not exist.
    UserUnknown = "user-unknown", "userunknown";
    /// The recipient's domain does not exist or has no mail host.
    HostUnknown = "host-unknown", "hostunknown";
    /// The recipient's domain accepts no mail (null MX, RFC 7505).
    NotAccept = "not-accept", "notaccept";
    /// The sender's IP address, host or network is on a block list.
    Blocked = "blocked", "blocked";
    /// The message was judged to be spam.
    SpamDetected = "spam-detected", "spamdetected";
    /// The recipient (or a filter on their behalf) refused the message.
    Filtered = "filtered", "filtered";
    /// The message broke a local policy (attachments, mailing list rules).
    PolicyViolation = "policy-violation", "policyviolation";
    /// TLS or SMTP authentication was required or failed.
    SecurityError = "security-error", "securityerror";
    /// The message's content or headers were refused.
    ContentError = "content-error", "contenterror";
    /// The receiving system is out of storage.
    SystemFull = "system-full", "systemfull";
    /// Connection failures, timeouts, DNS failures, mail loops.
    NetworkError = "network-error", "networkerror";
    /// A local delivery program (pipe, procmail) failed.
    MailerError = "mailer-error", "mailererror";
    /// The SMTP dialogue had a syntax error.
    SyntaxError = "syntax-error", "syntaxerror";
    /// An error of the receiving system.
    SystemError = "system-error", "systemerror";
    /// The message stayed queued too long; delivery was given up (or is
    /// still delayed). Bounces add this to the last error they met, so
    /// any other reason found in the text comes first.
    Expired = "expired", "expired";
    /// The message was delivered after all (a success notification).
    Delivered = "delivered", "delivered";
    /// A feedback report (RFC 5965), not a bounce.
    Feedback = "feedback", "feedback";
    /// The bounce says something, but nothing recognisable.
    OnHold = "on-hold", "onhold";
    /// Nothing to go on.
    Undefined = "undefined", "undefined";
}

impl Reason {
    /// Whether retrying the same address can never succeed: the mailbox or
    /// its domain does not exist, has moved, or the domain accepts no mail
    /// (permanently, i.e. with status class 5). Every other reason depends
    /// on the sender, the message or the moment, so it is soft. This is
    /// sisimai's `is_hardbounce` rule, a function of the reason alone (and
    /// of the class for `not-accept`), so hard/soft agrees with sisimai
    /// wherever the reason does.
    pub fn is_hard(self, class: Option<u8>) -> bool {
        match self {
            Reason::UserUnknown | Reason::HostUnknown | Reason::HasMoved => true,
            Reason::NotAccept => class != Some(4),
            _ => false,
        }
    }

    /// The status code that stands for this reason, of the given class.
    fn status(self, class: u8) -> EnhancedStatus {
        let (s, d) = match self {
            Reason::UserUnknown => (1, 1),
            Reason::HostUnknown => (1, 2),
            Reason::HasMoved => (1, 6),
            Reason::NotAccept => (1, 10),
            Reason::Rejected => (1, 8),
            Reason::Suspend => (2, 1),
            Reason::MailboxFull => (2, 2),
            Reason::ExceedLimit => (2, 3),
            Reason::Filtered => (2, 0),
            Reason::SystemFull => (3, 1),
            Reason::MessageTooBig => (3, 4),
            Reason::SystemError | Reason::MailerError => (3, 0),
            Reason::NetworkError => (4, 0),
            Reason::TooManyConnections | Reason::RateLimited => (4, 5),
            Reason::Expired => (4, 7),
            Reason::SyntaxError => (5, 2),
            Reason::ContentError | Reason::NotCompliantRfc => (6, 0),
            Reason::SecurityError => (7, 0),
            Reason::RequirePtr => (7, 25),
            Reason::AuthFailure => (7, 26),
            Reason::Blocked
            | Reason::NoRelaying
            | Reason::SpamDetected
            | Reason::VirusDetected
            | Reason::PolicyViolation
            | Reason::BadReputation => (7, 1),
            Reason::Vacation | Reason::Delivered | Reason::Feedback => (0, 0),
            Reason::OnHold | Reason::Undefined => (0, 0),
        };
        EnhancedStatus::new(class, s, d)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not in the vocabulary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown bounce reason {0:?} (known: {names})", names = Reason::ALL.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", "))]
pub struct ParseReasonError(pub String);

impl FromStr for Reason {
    type Err = ParseReasonError;

    /// Accepts the names of [`Reason::as_str`] and [`Reason::sisimai`],
    /// ASCII case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        Reason::ALL
            .iter()
            .copied()
            .find(|r| t.eq_ignore_ascii_case(r.as_str()) || t.eq_ignore_ascii_case(r.sisimai()))
            .ok_or_else(|| ParseReasonError(s.to_string()))
    }
}

impl Serialize for Reason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The point of the SMTP dialogue where a failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Command {
    /// Connecting, or the server's greeting.
    Connect,
    /// EHLO or HELO.
    Helo,
    StartTls,
    Auth,
    /// MAIL FROM.
    Mail,
    /// RCPT TO.
    Rcpt,
    /// The DATA command itself.
    Data,
    /// The reply after the message content (end of data).
    EndOfData,
}

impl Command {
    /// The name, e.g. `rcpt` or `end-of-data`.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Connect => "connect",
            Command::Helo => "helo",
            Command::StartTls => "starttls",
            Command::Auth => "auth",
            Command::Mail => "mail",
            Command::Rcpt => "rcpt",
            Command::Data => "data",
            Command::EndOfData => "end-of-data",
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Command {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        [
            Command::Connect,
            Command::Helo,
            Command::StartTls,
            Command::Auth,
            Command::Mail,
            Command::Rcpt,
            Command::Data,
            Command::EndOfData,
        ]
        .into_iter()
        .find(|c| c.as_str().eq_ignore_ascii_case(s.trim()))
        .ok_or(())
    }
}

/// Which server decided the failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// The MTA that wrote the bounce (queue expiry, DNS failure, local
    /// delivery): nothing from the remote server is quoted.
    ReportingMta,
    /// A remote server answered with the quoted SMTP reply.
    RemoteMta,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::ReportingMta => "reporting-mta",
            Origin::RemoteMta => "remote-mta",
        }
    }
}

/// Where [`Classification::status`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StatusSource {
    /// The `Status` field.
    Field,
    /// The enhanced code of the quoted SMTP reply, or a code in the text.
    Text,
    /// Inferred: class from the reply code, the action or the wording,
    /// subject and detail from the reason.
    Inferred,
}

/// What decided the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Evidence {
    /// An RFC 3463 status code.
    Status { code: EnhancedStatus },
    /// A phrase of the diagnostic text.
    Phrase {
        phrase: &'static str,
        /// The MTA or vendor whose wording it is.
        source: &'static str,
    },
    /// The `Action` field (`delivered`, `delayed`).
    Action { action: String },
    /// The SMTP reply code.
    ReplyCode { code: u16 },
    /// The `Diagnostic-Code` type (`x-unix`: a local program's exit status).
    DiagnosticType { diagnostic_type: String },
    /// The SMTP command the server refused at (the greeting or EHLO).
    Command { command: Command },
    /// The bounce is an auto-reply.
    AutoReply,
    /// The bounce is a feedback report: ARF (RFC 5965), or a feedback
    /// loop's own complaint format ([`Dsn::legacy_format`] `complaint`).
    FeedbackReport,
    /// Nothing decided; the reason is `on-hold` or `undefined`.
    None,
}

impl fmt::Display for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Evidence::Status { code } => write!(f, "status {code}"),
            Evidence::Phrase { phrase, source } => write!(f, "phrase {phrase:?} ({source})"),
            Evidence::Action { action } => write!(f, "action {action}"),
            Evidence::ReplyCode { code } => write!(f, "reply code {code}"),
            Evidence::DiagnosticType { diagnostic_type } => {
                write!(f, "diagnostic type {diagnostic_type}")
            }
            Evidence::Command { command } => write!(f, "refused at {command}"),
            Evidence::AutoReply => f.write_str("auto-reply"),
            Evidence::FeedbackReport => f.write_str("feedback report"),
            Evidence::None => f.write_str("none"),
        }
    }
}

/// What [`classify`] says about one recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Classification {
    /// The recipient's address, when known.
    pub recipient: Option<String>,
    pub reason: Reason,
    /// Retrying this address will never succeed (see [`Reason::is_hard`]).
    pub hard: bool,
    /// The SMTP command the failure happened at, when the bounce says.
    pub command: Option<Command>,
    /// The RFC 3463 status, given or inferred.
    pub status: Option<EnhancedStatus>,
    pub status_source: Option<StatusSource>,
    pub origin: Origin,
    /// The host named for the origin (Remote-MTA or Reporting-MTA value).
    pub host: Option<String>,
    pub evidence: Evidence,
}

/// Classifies every recipient of the bounce's primary reports, in order.
///
/// ```
/// let msg = b"From: MAILER-DAEMON@mx.example\r\n\
/// Subject: Undelivered Mail Returned to Sender\r\n\
/// Content-Type: text/plain\r\n\r\n\
/// This is the mail system at host mx.example.\r\n\r\n\
/// <bob@example.org>: host mx.example.org[192.0.2.1] said: 550 5.1.1\r\n\
///     <bob@example.org>: Recipient address rejected: User unknown in\r\n\
///     local recipient table (in reply to RCPT TO command)\r\n";
/// let dsn = bounce::parse(msg).unwrap();
/// let c = &bounce::classify(&dsn)[0];
/// assert_eq!(c.recipient.as_deref(), Some("bob@example.org"));
/// assert_eq!(c.reason, bounce::Reason::UserUnknown);
/// assert!(c.hard);
/// assert_eq!(c.command, Some(bounce::Command::Rcpt));
/// assert_eq!(c.origin, bounce::Origin::RemoteMta);
/// assert_eq!(c.status.unwrap().to_string(), "5.1.1");
/// ```
pub fn classify(dsn: &Dsn) -> Vec<Classification> {
    let mut addrs: Vec<Option<String>> = dsn.recipients().map(Recipient::address).collect();
    // Lowercase for the search; most addresses are already.
    let lower: Vec<Option<std::borrow::Cow<'_, str>>> = addrs
        .iter()
        .map(|a| {
            a.as_deref().map(|a| {
                if a.bytes().any(|b| b.is_ascii_uppercase()) {
                    a.to_ascii_lowercase().into()
                } else {
                    a.into()
                }
            })
        })
        .collect();
    // The human-readable text, normalized once for every recipient.
    let human = dsn.human_text.as_deref().unwrap_or("");
    let mut text = String::new();
    normalize(std::iter::once(cut(human, HUMAN_MAX)), &mut text);
    // The whole text is scanned only when a recipient needs it.
    let hits = std::cell::OnceCell::new();
    let single = addrs.len() == 1;
    let sections: Vec<std::ops::Range<usize>> = (0..lower.len())
        .map(|i| section(&text, &lower, i))
        .collect();
    drop(lower);
    dsn.recipients()
        .enumerate()
        .map(|(i, r)| {
            let ctx = Context {
                section: sections[i].clone(),
                text: &text,
                hits: &hits,
                single,
                vendor: dsn.vendor.as_deref(),
            };
            classify_one(dsn, r, addrs[i].take(), &ctx)
        })
        .collect()
}

/// Most reason phrases weighed in one text.
const MAX_REASON_HITS: usize = 256;

/// Most bytes of human-readable text read for one recipient.
const SECTION_MAX: usize = 2048;

/// Bytes before a recipient's address that still belong to its section.
const LEAD: usize = 14;

/// Most bytes of human-readable text read at all.
const HUMAN_MAX: usize = 2 * SECTION_MAX;

/// Where `needle` first stands in `hay`, as `str::find` tells. Needles of
/// a few bytes (reply codes, phrase pieces) are compared where their first
/// byte stands, which costs no set-up and at most a few bytes per byte of
/// text; longer ones (addresses) are found with memchr's substring search,
/// in linear time whatever the text.
pub(crate) fn find(hay: &str, needle: &str) -> Option<usize> {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    let Some((&first, rest)) = n.split_first() else {
        return Some(0);
    };
    if n.len() > SHORT_NEEDLE {
        return memchr::memmem::find(h, n);
    }
    let mut i = 0;
    while let Some(p) = memchr::memchr(first, &h[i..]) {
        let at = i + p;
        if h[at + 1..].starts_with(rest) {
            return Some(at);
        }
        i = at + 1;
    }
    None
}

/// Longest needle [`find`] compares byte by byte.
const SHORT_NEEDLE: usize = 8;

/// The first `max` bytes of `s` (on a character boundary).
fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The human-readable text (normalized) as far as one recipient goes.
struct Context<'a> {
    /// The part about this recipient (a range of `text`): from the first
    /// mention of its address to the mention of another one.
    section: std::ops::Range<usize>,
    text: &'a str,
    /// Every phrase found in `text`, once looked for: where it starts,
    /// where its last piece ends.
    hits: &'a std::cell::OnceCell<Vec<(usize, usize, &'static Entry)>>,
    /// The bounce is about this recipient only.
    single: bool,
    /// The vendor whose wording is read too ([`Dsn::vendor`]).
    vendor: Option<&'a str>,
}

impl Context<'_> {
    /// What the phrases in `range` of the text say, with the command
    /// placed around the first `anchor` (reply code) in that range.
    fn found(&self, range: std::ops::Range<usize>, anchor: Option<&str>) -> Found {
        let at = anchor.and_then(|a| {
            self.text
                .get(range.clone())
                .and_then(|t| find(t, a))
                .map(|p| p + range.start)
        });
        let v = self.vendor;
        if self.single && self.hits.get().is_none() && range != (0..self.text.len()) {
            // The one recipient's part of the text: scanned alone, the
            // whole text may never be needed.
            let part = self.text.get(range.clone()).unwrap_or("");
            let hits = TABLE.matches(part).map(|(s, _, e)| (s + range.start, e));
            return pick(hits, at, v);
        }
        // The whole text is scanned once, for all recipients; a range keeps
        // the phrases that lie wholly in it, which is what scanning the
        // range alone finds (a piece found past its end has no earlier
        // match inside it).
        let all = self.hits.get_or_init(|| TABLE.matches(self.text).collect());
        pick(
            all.iter()
                .filter(|&&(start, end, _)| range.start <= start && end <= range.end)
                .map(|&(start, _, e)| (start, e)),
            at,
            v,
        )
    }
}

/// The part of the normalized text about recipient `i`: from the first
/// mention of its (lowercase) address to the mention of another recipient
/// (at most [`SECTION_MAX`] bytes). Empty when the address is not mentioned.
fn section(
    text: &str,
    addrs: &[Option<std::borrow::Cow<'_, str>>],
    i: usize,
) -> std::ops::Range<usize> {
    let Some(a) = addrs[i].as_deref().filter(|a| !a.is_empty()) else {
        return 0..0;
    };
    let Some(at) = find(text, a) else {
        return 0..0;
    };
    // A transcript names the address at the end of its command line
    // (`>>> rcpt to:<bob@...>`): the section starts that far before it.
    let mut start = at.saturating_sub(LEAD);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    let from = at + a.len();
    let mut end = (start + SECTION_MAX).min(text.len());
    for (j, other) in addrs.iter().enumerate() {
        if j == i {
            continue;
        }
        if let Some(o) = other.as_deref().filter(|o| !o.is_empty() && *o != a) {
            if let Some(p) = text.get(from..end).and_then(|t| find(t, o)) {
                end = from + p;
            }
        }
    }
    start..start + cut(&text[start..], end - start).len()
}

/// ASCII lowercase, runs of ASCII white space as one space (folded lines
/// joined), parts separated by a space. The phrases are ASCII, so other
/// characters are copied as they are.
fn normalize<'p>(parts: impl Iterator<Item = &'p str> + Clone, out: &mut String) {
    let mut v = std::mem::take(out).into_bytes();
    v.clear();
    v.reserve(parts.clone().map(|p| p.len() + 1).sum());
    // A space is owed before the next byte copied.
    let mut owed = false;
    for p in parts {
        owed |= v.last().is_some_and(|&c| c != b' ');
        let b = p.as_bytes();
        let mut i = 0;
        while i < b.len() {
            // Eight bytes at a time: those before the first that needs a
            // closer look (a control character or line end, the first of
            // two spaces) are copied lowercase at once; a space that would
            // follow a space is looked at alone.
            if i + 8 <= b.len() {
                let mut w = [0u8; 8];
                w.copy_from_slice(&b[i..i + 8]);
                let w = u64::from_le_bytes(w);
                let joins = b[i] != b' ' || (!owed && v.last().is_some_and(|&c| c != b' '));
                let k = if joins { plain_prefix(w) } else { 0 };
                if k > 0 {
                    if owed {
                        v.push(b' ');
                        owed = false;
                    }
                    v.extend_from_slice(&lower8(w).to_le_bytes()[..k]);
                    i += k;
                    if k == 8 {
                        continue;
                    }
                }
            }
            let c = b[i];
            if c.is_ascii_whitespace() {
                owed |= v.last().is_some_and(|&c| c != b' ');
            } else {
                if owed {
                    v.push(b' ');
                    owed = false;
                }
                v.push(c.to_ascii_lowercase());
            }
            i += 1;
        }
    }
    if v.last() == Some(&b' ') {
        v.pop();
    }
    // Only ASCII bytes were changed, each into an ASCII byte: the text is
    // still UTF-8.
    *out =
        String::from_utf8(v).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
}

/// How many of the eight bytes (in text order) come before the first that
/// is below 0x20 (line ends, tabs, other control characters) or is a space
/// with a space after it; 8 when there is none.
fn plain_prefix(x: u64) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // High bits of bytes under 0x20, and of spaces (a borrow carries only
    // to later bytes: the first flagged byte is a true one).
    let control = x.wrapping_sub(ONES * 0x20) & !x & HIGH;
    let spaces = x ^ (ONES * 0x20);
    let space = spaces.wrapping_sub(ONES) & !spaces & HIGH;
    // A space followed by one: the later flag moved onto the earlier byte.
    let pair = space & (space >> 8);
    ((control | pair).trailing_zeros() / 8) as usize
}

/// Eight bytes with ASCII capitals made small.
fn lower8(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let low7 = w & (0x7f * ONES);
    // High bit set where the low seven bits are at least `A`, above `Z`.
    let from_a = low7 + (0x80 - u64::from(b'A')) * ONES;
    let past_z = low7 + (0x7f - u64::from(b'Z')) * ONES;
    let upper = from_a & !past_z & !w & (0x80 * ONES);
    w | (upper >> 2)
}

/// What the phrase tables find in one text.
#[derive(Default, Clone, Copy)]
struct Found {
    reason: Option<&'static Entry>,
    command: Option<Command>,
    transient: bool,
}

/// Searches `text`; `anchor` is the reply code the failure was reported
/// with: the command named nearest before it (a transcript's `>>> RCPT`,
/// Exim's `after RCPT TO`), else the first after it (Postfix's `in reply
/// to RCPT TO command`), is the failing one.
fn search(text: &str, anchor: Option<&str>, vendor: Option<&str>) -> Found {
    let at = anchor.and_then(|a| find(text, a));
    pick(
        TABLE.matches(text).map(|(start, _, e)| (start, e)),
        at,
        vendor,
    )
}

/// What a text's phrase `hits` (start, entry) say; `at` is where the reply
/// code stands in that text. A vendor's own entries count only in that
/// vendor's bounces, and there they come first.
fn pick(
    hits: impl IntoIterator<Item = (usize, &'static Entry)>,
    at: Option<usize>,
    vendor: Option<&str>,
) -> Found {
    let mut before: Option<Command> = None;
    let mut after: Option<Command> = None;
    // `Reason::ALL` lists the reasons in the order they are declared.
    let rank = |r: Reason| r as usize;
    let mut f = Found::default();
    // Reason hits as (start, end of the first piece, entry).
    let mut reasons: Vec<(usize, usize, &'static Entry, Reason)> = Vec::new();
    for (start, e) in hits {
        if e.vendor && vendor != Some(e.source) {
            continue;
        }
        match e.key {
            Key::Reason(r) => {
                reasons.push((start, start + e.first_len, e, r));
            }
            Key::Command(c) => match at {
                Some(a) if start > a => {
                    after.get_or_insert(c);
                }
                _ => before = Some(c),
            },
            Key::Transient => f.transient = true,
        }
    }
    // A phrase inside a longer one that was found says less than it
    // ("host not found" inside "host not found, try again"). Hostile text
    // can repeat a phrase without end: past a few hundred hits the rest
    // say nothing new.
    reasons.truncate(MAX_REASON_HITS);
    let inside = |s: usize, end: usize, e: &Entry| {
        reasons
            .iter()
            .any(|&(s2, e2, o, _)| s2 <= s && end <= e2 && (e2 - s2) > (end - s) && o.key != e.key)
    };
    // The most specific reason; for one reason, a vendor's own wording over
    // generic wording, then the longest (most telling) phrase.
    let order = |e: &Entry, r| {
        (
            !e.vendor,
            rank(r),
            e.generic,
            std::cmp::Reverse(e.phrase.len()),
        )
    };
    f.reason = reasons
        .iter()
        .filter(|&&(s, end, e, _)| !inside(s, end, e))
        .min_by_key(|&&(_, _, e, r)| order(e, r))
        .map(|&(_, _, e, _)| e);
    f.command = before.or(after);
    f
}

/// The reason a status code names, and whether that meaning is specific
/// enough to decide before the text is read.
fn by_status(s: EnhancedStatus) -> Option<(Reason, bool)> {
    use Reason::*;
    let strong = |r| Some((r, true));
    let weak = |r| Some((r, false));
    match (s.class, s.subject, s.detail) {
        (2, _, _) => strong(Delivered),
        (_, 1, 1) => strong(UserUnknown),
        (_, 1, 2) => strong(HostUnknown),
        (_, 1, 6) => strong(HasMoved),
        (_, 1, 7) | (_, 1, 8) => strong(Rejected),
        (_, 1, 10) => weak(NotAccept),
        (_, 1, 3) | (_, 1, 0) => weak(UserUnknown),
        (_, 2, 1) => weak(Suspend),
        (_, 2, 2) => strong(MailboxFull),
        (_, 2, 3) => strong(ExceedLimit),
        (_, 2, 4) | (_, 2, 0) => weak(Filtered),
        (_, 3, 1) => strong(SystemFull),
        (_, 3, 2) => weak(NotAccept),
        (_, 3, 4) => strong(MessageTooBig),
        (_, 3, _) => weak(SystemError),
        (_, 4, 1) | (_, 4, 2) => weak(NetworkError),
        (_, 4, 4) => weak(HostUnknown),
        (_, 4, 6) => strong(NetworkError),
        (_, 4, 7) => strong(Expired),
        (_, 4, _) => weak(NetworkError),
        (_, 5, _) => weak(SyntaxError),
        (_, 6, _) => weak(ContentError),
        (_, 7, 13) => strong(Suspend),
        (_, 7, 17) | (_, 7, 18) => strong(HasMoved),
        (_, 7, 20..=24) | (_, 7, 26) => strong(AuthFailure),
        (_, 7, 25) => strong(RequirePtr),
        (_, 7, 27) => strong(Rejected),
        (_, 7, 8) | (_, 7, 10) | (_, 7, 11) => strong(SecurityError),
        (_, 7, _) => weak(SecurityError),
        _ => None,
    }
}

/// Whether the text's reason `phrase` says more than the status's reason
/// `status`: an x.1.1 status is given for refusals of other causes too
/// (relaying, block lists, full or moved mailboxes, refused senders, null
/// MX), as sisimai reads it.
fn overrides(status: Reason, phrase: Reason) -> bool {
    use Reason::*;
    match status {
        UserUnknown => matches!(
            phrase,
            NoRelaying | Blocked | MailboxFull | HasMoved | Rejected | NotAccept
        ),
        _ => true,
    }
}

/// The reason a bare reply code suggests.
fn by_reply_code(code: u16) -> Option<Reason> {
    match code {
        552 => Some(Reason::MailboxFull),
        556 => Some(Reason::NotAccept),
        551 => Some(Reason::HasMoved),
        553 => Some(Reason::UserUnknown),
        500..=504 => Some(Reason::SyntaxError),
        421 => Some(Reason::SystemError),
        _ => None,
    }
}

fn host_of(v: &crate::TypedValue) -> String {
    v.value.trim().trim_end_matches('.').to_string()
}

fn classify_one(
    dsn: &Dsn,
    r: &Recipient,
    recipient: Option<String>,
    ctx: &Context<'_>,
) -> Classification {
    let reply = r.reply();
    let field_status = r.status.as_ref().and_then(|s| s.code);
    let text_status = r.text_status.or_else(|| reply.and_then(|x| x.enhanced()));
    let given = field_status
        .map(|s| (s, StatusSource::Field))
        .or(text_status.map(|s| (s, StatusSource::Text)));
    // A 5.0.0 or 4.0.0 says only the class.
    let vague = |s: &EnhancedStatus| s.subject == 0 && s.detail == 0;
    // What the remote server said is more telling than the reporting
    // MTA's summary of it.
    let specific = reply
        .and_then(|x| x.enhanced())
        .filter(|s| !vague(s))
        .or(field_status.filter(|s| !vague(s)))
        .or(text_status.filter(|s| !vague(s)));

    let mut buf = String::new();
    let diag = r
        .diagnostic_code
        .as_ref()
        .map(|d| d.value.value.as_str())
        .unwrap_or("");
    let reply_text = r.text_reply.as_ref().map(|x| x.text()).unwrap_or_default();
    // Vendors' own per-recipient fields (`X-PowerMTA-BounceCategory: ...`)
    // are read as text too.
    let vendor_fields: Vec<String> = r
        .extensions
        .iter()
        .filter(|(n, _)| TABLE.fields.iter().any(|f| f.eq_ignore_ascii_case(n)))
        .map(|(n, v)| format!("{n}: {}", cut(v, SECTION_MAX)))
        .collect();
    let texts = [cut(diag, HUMAN_MAX), cut(&reply_text, HUMAN_MAX)];
    normalize(
        texts
            .into_iter()
            .chain(vendor_fields.iter().map(String::as_str)),
        &mut buf,
    );
    let code = reply.map(|x| x.code.to_string());
    let mut found = search(&buf, code.as_deref(), ctx.vendor);
    let in_ctx = ctx.found(ctx.section.clone(), code.as_deref());
    let vendor_says_same =
        |e: &Entry| e.generic && in_ctx.reason.is_some_and(|c| !c.generic && c.key == e.key);
    let vendor_wording = |f: &Found| f.reason.is_some_and(|e| e.vendor);
    if found.reason.is_none_or(vendor_says_same)
        || (vendor_wording(&in_ctx) && !vendor_wording(&found))
    {
        // Nothing in the diagnostic, or only wording many MTAs use where
        // the text around has the vendor's own code or wording for it.
        found.reason = in_ctx.reason;
    }
    found.command = found.command.or(in_ctx.command);
    if found.command.is_none() && (diag.contains("RCPT") || reply_text.contains("RCPT")) {
        // The command's name in capitals in the server's reply
        // (`SMTP:RCPT host ...`, `[RCPT_TO]`).
        found.command = Some(Command::Rcpt);
    }
    found.transient |= in_ctx.transient;
    if (found.reason.is_none() || (ctx.vendor.is_some() && !vendor_wording(&found)))
        && (ctx.section.is_empty() || ctx.single)
    {
        // A bounce about one recipient, or one that does not repeat the
        // address near its reason: the whole human-readable text (for a
        // vendor's own wording, or when nothing else was found).
        let w = ctx.found(0..ctx.text.len(), code.as_deref());
        if found.reason.is_none() || vendor_wording(&w) {
            found.reason = w.reason;
            found.command = found.command.or(w.command);
            found.transient |= w.transient;
        }
    }

    let action = r.action.as_ref();
    let delayed = matches!(action, Some(Action::Delayed(_)));
    let success = matches!(
        action,
        Some(Action::Delivered(_) | Action::Relayed(_) | Action::Expanded(_))
    );

    let phrase = found.reason.map(|e| {
        let Key::Reason(mut reason) = e.key else {
            unreachable!("only reason entries are kept")
        };
        if reason == Reason::HostUnknown && given.is_some_and(|(s, _)| s.class == 4) {
            // A name lookup that failed for now (4.x.x) is a DNS failure,
            // not a domain known not to exist.
            reason = Reason::NetworkError;
        }
        (
            reason,
            Evidence::Phrase {
                phrase: e.phrase,
                source: e.source,
            },
        )
    });
    // A temporary name-lookup failure stays a DNS failure, even in a final
    // report.
    let dns_failure = found
        .reason
        .is_some_and(|e| e.key == Key::Reason(Reason::HostUnknown))
        && phrase
            .as_ref()
            .is_some_and(|(r, _)| *r == Reason::NetworkError);
    let status_says = specific.and_then(|s| by_status(s).map(|(r, strong)| (r, strong, s)));
    let (reason, evidence) = if success {
        (
            Reason::Delivered,
            Evidence::Action {
                action: action.map(|a| a.raw().to_string()).unwrap_or_default(),
            },
        )
    } else if given.is_some_and(|(s, _)| s.class == 2) {
        let code = given
            .map(|(s, _)| s)
            .unwrap_or(EnhancedStatus::new(2, 0, 0));
        (Reason::Delivered, Evidence::Status { code })
    } else if dsn.legacy_format.as_deref() == Some("auto-reply") && reply.is_none() {
        (Reason::Vacation, Evidence::AutoReply)
    } else if dsn.report_type.as_deref() == Some("feedback-report")
        || dsn.legacy_format.as_deref() == Some("complaint")
    {
        (Reason::Feedback, Evidence::FeedbackReport)
    } else if let Some(p) = phrase
        .clone()
        .filter(|_| found.reason.is_some_and(|e| e.vendor))
    {
        // The vendor's own wording, in the vendor's bounce.
        p
    } else if let Some(kind) = r
        .diagnostic_code
        .as_ref()
        .and_then(|d| d.value.kind.clone())
        .filter(|k| {
            k.eq_ignore_ascii_case("x-unix")
                && !matches!(
                    phrase,
                    Some((
                        Reason::MailboxFull | Reason::SystemFull | Reason::SystemError,
                        _
                    ))
                )
        })
    {
        // A local delivery program's exit status (unless the text says the
        // mailbox or the system is full, or the system failed).
        (
            Reason::MailerError,
            Evidence::DiagnosticType {
                diagnostic_type: kind,
            },
        )
    } else if given.is_some_and(|(s, _)| s.class == 4)
        && matches!(action, Some(Action::Failed(_) | Action::Delayed(_)))
        && phrase
            .as_ref()
            .is_none_or(|(r, _)| *r == Reason::NetworkError && !dns_failure)
    {
        // A temporary failure in a final report: the queue lifetime ran out.
        let code = given.map_or(EnhancedStatus::new(4, 0, 0), |(s, _)| s);
        (Reason::Expired, Evidence::Status { code })
    } else if let Some((reason @ (Reason::HasMoved | Reason::Rejected), true, code)) = status_says {
        // x.1.6 (moved) and x.1.7 / x.1.8 (the sender's address) name the
        // reason exactly; their text often reads like an unknown user or
        // domain ("not our user", "no such domain").
        (reason, Evidence::Status { code })
    } else if let Some((Reason::ExceedLimit, true, code)) =
        status_says.filter(|_| matches!(phrase, Some((Reason::MessageTooBig, _))))
    {
        // x.2.3: the message is over the recipient's limit, whatever the
        // text calls its size.
        (Reason::ExceedLimit, Evidence::Status { code })
    } else if let Some((Reason::UserUnknown, ev)) = phrase.clone().filter(|_| {
        found.reason.is_some_and(|e| e.generic)
            && !matches!(found.command, Some(Command::Rcpt | Command::Mail))
            && !matches!(status_says, Some((Reason::UserUnknown, _, _)))
    }) {
        // "No such user" neither said to RCPT TO nor backed by an x.1.1
        // status: a filter refused the message (sisimai's rule), the
        // mailbox itself may well exist.
        (Reason::Filtered, ev)
    } else if let Some((reason, true, code)) = status_says.filter(|(r, _, _)| {
        found.reason.is_some_and(|e| e.generic)
            && phrase
                .as_ref()
                .is_some_and(|(p, _)| p != r && !overrides(*r, *p))
    }) {
        // A specific status against wording many MTAs use for several
        // causes: the status says what the server meant.
        (reason, Evidence::Status { code })
    } else if let Some(p) = phrase {
        match (p.0, found.command) {
            // Access refused before any mail was offered: the receiving
            // server does not talk to the sending one.
            (Reason::SecurityError, Some(Command::Connect | Command::Helo)) => {
                (Reason::Blocked, p.1)
            }
            _ => p,
        }
    } else if let Some((reason, true, code)) = status_says {
        (reason, Evidence::Status { code })
    } else if delayed {
        (
            Reason::Expired,
            Evidence::Action {
                action: action.map(|a| a.raw().to_string()).unwrap_or_default(),
            },
        )
    } else if let Some(command @ (Command::Connect | Command::Helo)) = found.command {
        // Refused at the greeting or at EHLO, and nothing says why: the
        // receiving server does not talk to the sending one.
        (Reason::Blocked, Evidence::Command { command })
    } else if let Some((reason, _, code)) = status_says {
        (reason, Evidence::Status { code })
    } else if let Some(reason) = reply.and_then(|x| by_reply_code(x.code)) {
        (
            reason,
            Evidence::ReplyCode {
                code: reply.map_or(0, |x| x.code),
            },
        )
    } else if !buf.is_empty() {
        (Reason::OnHold, Evidence::None)
    } else {
        (Reason::Undefined, Evidence::None)
    };

    // The class: given, else from the reply, the action or the wording.
    let class = given.map(|(s, _)| s.class).or_else(|| {
        let c = reply.map(|x| x.class()).filter(|c| matches!(c, 2 | 4 | 5));
        c.or(match action {
            Some(Action::Delayed(_)) => Some(4),
            Some(Action::Failed(_)) => Some(5),
            _ => None,
        })
        .or(match reason {
            Reason::Vacation | Reason::Feedback | Reason::Delivered => None,
            _ if found.transient => Some(4),
            _ => Some(5),
        })
    });
    let (status, status_source) = match (given, class) {
        (Some((s, src)), _) if !vague(&s) => (Some(s), Some(src)),
        (_, Some(c)) if !matches!(reason, Reason::OnHold | Reason::Undefined) => {
            let s = reason.status(c);
            if s.subject == 0 && s.detail == 0 {
                (given.map(|g| g.0), given.map(|g| g.1))
            } else {
                (Some(s), Some(StatusSource::Inferred))
            }
        }
        _ => (given.map(|g| g.0), given.map(|g| g.1)),
    };

    let remote = r.remote_mta.is_some()
        || r.text_reply.is_some()
        || r.diagnostic_code
            .as_ref()
            .is_some_and(|d| d.reply.is_some() && !d.value.is_kind("x-unix"));
    let origin = if remote {
        Origin::RemoteMta
    } else {
        Origin::ReportingMta
    };
    let host = match origin {
        Origin::RemoteMta => r.remote_mta.as_ref().map(host_of),
        Origin::ReportingMta => None,
    }
    .or_else(|| {
        (origin == Origin::ReportingMta)
            .then(|| {
                dsn.per_message()
                    .and_then(|p| p.reporting_mta.as_ref())
                    .map(host_of)
            })
            .flatten()
    });

    Classification {
        recipient,
        reason,
        hard: reason.is_hard(status.map(|s| s.class).or(class)),
        command: found.command,
        status,
        status_source,
        origin,
        host,
        evidence,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What `normalize` must give: lowercase, white space runs as one space.
    fn normalized_slowly(parts: &[&str]) -> String {
        let words: Vec<String> = parts
            .iter()
            .flat_map(|p| p.split_ascii_whitespace())
            .map(str::to_ascii_lowercase)
            .collect();
        words.join(" ")
    }

    proptest! {
        #[test]
        fn normalize_agrees_with_the_plain_rule(
            a in "[ a-zA-Z\t\r\n\x0b\x0c\x1b\x01\x00\x7f\\[@`é日]{0,80}",
            b in "[ aZ\n]{0,20}",
        ) {
            let mut out = String::from("left over");
            normalize([a.as_str(), &b].into_iter(), &mut out);
            prop_assert_eq!(&out, &normalized_slowly(&[&a, &b]));
            // Long runs of words, spaces and capitals take the eight-byte path.
            let long = format!("{a}{a} {b}ABCDEFGH XYZ@[\\]^_` {a}");
            normalize([long.as_str(), &b, "", " ", &a].into_iter(), &mut out);
            prop_assert_eq!(out, normalized_slowly(&[&long, &b, "", " ", &a]));
        }
    }

    #[test]
    fn names_round_trip() {
        for r in Reason::ALL {
            assert_eq!(r.as_str().parse::<Reason>(), Ok(*r));
            assert_eq!(r.sisimai().parse::<Reason>(), Ok(*r));
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
        let e = "nonsense".parse::<Reason>().unwrap_err().to_string();
        assert!(e.contains("user-unknown"), "{e}");
    }

    fn one(dsn: &str) -> Classification {
        let d = crate::parse(dsn.as_bytes()).unwrap();
        classify(&d).remove(0)
    }

    const HEAD: &str = "From: MAILER-DAEMON@mx.test\r\nTo: a@src.test\r\n\
        Content-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n\
        --B\r\nContent-Type: text/plain\r\n\r\nSee below.\r\n\r\n\
        --B\r\nContent-Type: message/delivery-status\r\n\r\n\
        Reporting-MTA: dns; mx.src.test\r\n\r\nFinal-Recipient: rfc822; b@dest.test\r\n";

    #[test]
    fn status_code_decides_without_a_phrase() {
        let c = one(&format!(
            "{HEAD}Action: failed\r\nStatus: 5.2.2\r\n\
             Diagnostic-Code: smtp; 552 5.2.2 <b@dest.test>\r\n--B--\r\n"
        ));
        assert_eq!(c.reason, Reason::MailboxFull);
        assert!(!c.hard);
        assert_eq!(
            c.evidence,
            Evidence::Status {
                code: EnhancedStatus::new(5, 2, 2)
            }
        );
        assert_eq!(c.status_source, Some(StatusSource::Field));
        assert_eq!(c.origin, Origin::RemoteMta);
    }

    #[test]
    fn vendor_fields_named_by_the_table_are_read_and_no_others() {
        // PowerMTA's category field decides; an address in another X- field
        // ("antivirus@...") is not wording.
        let c = one(&format!(
            "{HEAD}Action: failed\r\nStatus: 5.0.0\r\n\
             X-PowerMTA-BounceCategory: quota-issues\r\n\
             X-Actual-Recipient: rfc822; antivirus@dest.test\r\n--B--\r\n"
        ));
        assert_eq!(c.reason, Reason::MailboxFull, "{c:?}");
        let c = one(&format!(
            "{HEAD}Action: failed\r\nStatus: 5.1.1\r\n\
             X-Actual-Recipient: rfc822; antivirus@dest.test\r\n--B--\r\n"
        ));
        assert_eq!(c.reason, Reason::UserUnknown, "{c:?}");
    }

    #[test]
    fn a_diagnostic_repeating_a_phrase_without_end_is_read_in_bounded_time() {
        let spam = "spam ".repeat(200_000);
        let c = one(&format!(
            "{HEAD}Action: failed\r\nStatus: 5.7.1\r\n\
             Diagnostic-Code: smtp; 554 {spam}\r\n--B--\r\n"
        ));
        assert_eq!(c.reason, Reason::SpamDetected, "{:?}", c.evidence);
    }

    /// Ten thousand recipients whose addresses start like the text around
    /// them: every recipient's part of the text is looked for among all
    /// the others'. Each is still classified by its status.
    #[test]
    fn many_recipients_in_a_text_of_look_alikes_are_all_classified() {
        for len in [1, 10, 40] {
            let addrs: Vec<String> = (0..10_000)
                .map(|i| format!("{}{i}@x.test", "a".repeat(len)))
                .collect();
            let filler = "a".repeat(1990);
            let mut m = format!(
                "From: MAILER-DAEMON@mx.test\r\n\
                 Content-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n\
                 --B\r\nContent-Type: text/plain\r\n\r\n{} {filler} {} {filler} {}\r\n\r\n\
                 --B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.test\r\n",
                addrs[0], addrs[1], addrs[2]
            );
            for a in &addrs {
                m.push_str(&format!(
                    "\r\nFinal-Recipient: rfc822; {a}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
                ));
            }
            m.push_str("--B--\r\n");
            let cs = classify(&crate::parse(m.as_bytes()).unwrap());
            assert_eq!(cs.len(), 10_000);
            assert!(cs.iter().all(|c| c.reason == Reason::UserUnknown));
        }
    }

    /// A recipient's reason comes from its own section of the text, whatever
    /// the order of the recipients: a phrase that starts in one section and
    /// ends in the next does not count for the first, though the phrases of
    /// all sections are read from one scan of the whole text.
    #[test]
    fn a_phrase_running_past_a_section_does_not_count_for_it_in_any_order() {
        let report = |order: [&str; 3]| {
            let mut raw = String::from(
                "From: MAILER-DAEMON@mx.test\r\nTo: a@src.test\r\n\
                 Content-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n\
                 --B\r\nContent-Type: text/plain\r\n\r\n\
                 <b@dest.test>: conversation with mx.dest.test <c@dest.test>: timed out\r\n\r\n\
                 --B\r\nContent-Type: message/delivery-status\r\n\r\n\
                 Reporting-MTA: dns; mx.src.test\r\n",
            );
            for r in order {
                raw.push_str(&format!(
                    "\r\nFinal-Recipient: rfc822; {r}\r\nAction: failed\r\nStatus: 5.0.0\r\n"
                ));
            }
            raw.push_str("\r\n--B--\r\n");
            let d = crate::parse(raw.as_bytes()).unwrap();
            classify(&d)
                .into_iter()
                .map(|c| (c.recipient.unwrap(), c.reason))
                .collect::<std::collections::HashMap<_, _>>()
        };
        // `a` is not named in the text: its reason is read from the whole
        // text, where the phrase is whole.
        let first = report(["a@dest.test", "b@dest.test", "c@dest.test"]);
        let last = report(["b@dest.test", "c@dest.test", "a@dest.test"]);
        assert_eq!(first["a@dest.test"], Reason::NetworkError);
        assert_eq!(first, last);
        assert_ne!(first["b@dest.test"], Reason::NetworkError);
    }

    #[test]
    fn phrase_decides_a_vague_status() {
        let c = one(&format!(
            "{HEAD}Action: failed\r\nStatus: 5.7.1\r\n\
             Diagnostic-Code: smtp; 554 5.7.1 Service unavailable; Client host\r\n [192.0.2.1] blocked using zen.spamhaus.org\r\n--B--\r\n"
        ));
        assert_eq!(c.reason, Reason::Blocked);
        assert!(matches!(c.evidence, Evidence::Phrase { .. }));
        let c = one(&format!(
            "{HEAD}Action: failed\r\nStatus: 5.0.0\r\n\
             Diagnostic-Code: smtp; 550 Sorry, no mailbox here by that name\r\n--B--\r\n"
        ));
        assert_eq!(c.reason, Reason::UserUnknown);
        assert!(c.hard);
        assert_eq!(c.status, Some(EnhancedStatus::new(5, 1, 1)));
        assert_eq!(c.status_source, Some(StatusSource::Inferred));
    }

    #[test]
    fn expired_in_the_queue_is_the_reporting_mta() {
        let c = one(&format!(
            "{HEAD}Action: delayed\r\nStatus: 4.4.7\r\n--B--\r\n"
        ));
        assert_eq!(c.reason, Reason::Expired);
        assert_eq!(c.origin, Origin::ReportingMta);
        assert_eq!(c.host.as_deref(), Some("mx.src.test"));
        let c = one(&format!(
            "{HEAD}Action: delivered\r\nStatus: 2.0.0\r\n--B--\r\n"
        ));
        assert_eq!(c.reason, Reason::Delivered);
    }

    #[test]
    fn nothing_to_go_on() {
        let c = one(&format!(
            "{HEAD}Action: failed\r\nStatus: 5.0.0\r\n--B--\r\n"
        ));
        assert_eq!(c.reason, Reason::Undefined);
        assert_eq!(c.evidence, Evidence::None);
        assert_eq!(c.status, Some(EnhancedStatus::new(5, 0, 0)));
    }
}
