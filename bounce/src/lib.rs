//! Bounce reading: RFC 3464 delivery status notifications and legacy bounces, and why each recipient bounced.
//!
//! [`parse`] reads a whole bounce message. The MIME structure is read with
//! `mail-parser`; the `message/delivery-status` (or RFC 6533
//! `message/global-delivery-status`) body is then split into RFC 3464 field
//! groups. Messages without such a part are read as legacy plain-text
//! bounces (qmail, Exim, Postfix, Sendmail and similar prose). Every repair
//! made to damaged input is recorded as a [`Warning`]; [`check`] judges the
//! report against the RFCs; [`classify`] tells, per recipient, the
//! [`Reason`] it bounced, whether that is hard or soft, the SMTP
//! [`Command`] it failed at, its status and its [`Origin`].
//!
//! ```
//! let bounce = b"From: MAILER-DAEMON@mx.example\r\n\
//! Content-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n\
//! --B\r\nContent-Type: text/plain\r\n\r\nDelivery failed.\r\n\
//! --B\r\nContent-Type: message/delivery-status\r\n\r\n\
//! Reporting-MTA: dns; mx.example\r\n\r\n\
//! Final-Recipient: rfc822; bob@example.org\r\nAction: failed\r\nStatus: 5.2.2\r\n\
//! Remote-MTA: dns; mx.example.org\r\n\
//! Diagnostic-Code: smtp; 552 5.2.2 Mailbox full\r\n--B--\r\n";
//! let dsn = bounce::parse(bounce).unwrap();
//! // Only a MAY finding: no returned message.
//! assert!(bounce::check(&dsn).iter().all(|f| f.strength == bounce::Strength::May));
//! for c in bounce::classify(&dsn) {
//!     assert_eq!(c.recipient.as_deref(), Some("bob@example.org"));
//!     assert_eq!(c.reason, bounce::Reason::MailboxFull);
//!     assert!(!c.hard); // a full mailbox may take mail again later
//!     assert_eq!(c.origin, bounce::Origin::RemoteMta);
//!     assert_eq!(c.host.as_deref(), Some("mx.example.org"));
//! }
//! ```

mod check;
mod classify;
mod fields;
mod legacy;
mod phrases;
mod render;
pub mod reply;
mod strength;
mod structure;

use std::fmt;

use serde::Serialize;

use crate::reply::{EnhancedStatus, Reply};

pub use check::{check, Finding};
pub use classify::{
    classify, Classification, Command, Evidence, Origin, ParseReasonError, Reason, StatusSource,
};
pub use render::render_text;
pub use strength::{ParseStrengthError, Strength};

/// Bounds on the input [`parse_with`] accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DsnLimits {
    /// Largest message accepted, in bytes (default 10 MiB).
    pub max_size: usize,
    /// Most lines in one delivery-status body (default 100 000).
    pub max_field_lines: usize,
    /// Most recipient groups in one report (default 10 000).
    pub max_recipients: usize,
}

impl Default for DsnLimits {
    fn default() -> Self {
        DsnLimits {
            max_size: 10 * 1024 * 1024,
            max_field_lines: 100_000,
            max_recipients: 10_000,
        }
    }
}

/// Why a message could not be read at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DsnError {
    #[error("message is {size} bytes, over the {limit} byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("input is not an internet message (no header fields found)")]
    Unreadable,
    #[error("delivery-status part has more than {limit} lines")]
    TooManyFieldLines { limit: usize },
    #[error("report lists more than {limit} recipients")]
    TooManyRecipients { limit: usize },
    #[error("returned messages nest more than {limit} deep")]
    TooDeep { limit: usize },
}

/// Kinds of damage repaired while parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WarningKind {
    /// Lines ended in bare CR (or a mix of endings) and were normalised.
    LineEndings,
    /// No blank line between two field groups.
    MissingBlankLine,
    /// A line without a field name continued the previous field.
    UnindentedContinuation,
    /// A boundary line did not match the declared boundary, or the MIME
    /// structure had to be recovered from raw text.
    BrokenBoundary,
    /// The delivery-status part was not a direct part of the top-level
    /// report (nested deeper, or inside a returned message).
    NestedStatusPart,
    /// A field line could not be read.
    MalformedField,
    /// A field occurred twice in one group.
    DuplicateField,
    /// A per-message field appeared among per-recipient fields.
    MisplacedField,
    /// A field group with no recipient fields was skipped.
    IgnoredGroup,
    /// Recipients were taken from free text (legacy bounce).
    Heuristic,
    /// A part's transfer encoding or charset could not be decoded.
    Encoding,
}

impl WarningKind {
    /// The snake_case name, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            WarningKind::LineEndings => "line_endings",
            WarningKind::MissingBlankLine => "missing_blank_line",
            WarningKind::UnindentedContinuation => "unindented_continuation",
            WarningKind::BrokenBoundary => "broken_boundary",
            WarningKind::NestedStatusPart => "nested_status_part",
            WarningKind::MalformedField => "malformed_field",
            WarningKind::DuplicateField => "duplicate_field",
            WarningKind::MisplacedField => "misplaced_field",
            WarningKind::IgnoredGroup => "ignored_group",
            WarningKind::Heuristic => "heuristic",
            WarningKind::Encoding => "encoding",
        }
    }
}

/// One repair made while reading a damaged report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    pub kind: WarningKind,
    pub detail: String,
}

impl Warning {
    pub fn new(kind: WarningKind, detail: impl Into<String>) -> Self {
        Warning {
            kind,
            detail: detail.into(),
        }
    }
}

/// A `type; value` field such as `rfc822; user@example.com` or
/// `dns; mx.example.org` (RFC 3464 §2.1.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TypedValue {
    /// The field value as written (folds joined, trimmed).
    pub raw: String,
    /// The type before `;` (`rfc822`, `utf-8`, `dns`, `smtp`, `x-...`), as
    /// written; `None` when the value has no type prefix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The part after `;` (comments removed except for diagnostic text).
    pub value: String,
}

impl TypedValue {
    /// Whether the type prefix is `kind` (ASCII case-insensitive).
    pub fn is_kind(&self, kind: &str) -> bool {
        self.kind
            .as_deref()
            .is_some_and(|k| k.eq_ignore_ascii_case(kind))
    }

    /// The value as a bare address: angle brackets removed, for rfc822,
    /// utf-8 or untyped values.
    pub fn address(&self) -> String {
        let v = self.value.trim();
        let v = v.strip_prefix('<').unwrap_or(v);
        let v = v.strip_suffix('>').unwrap_or(v);
        v.trim().to_string()
    }
}

/// Whether `s` looks like `local@domain` (no spaces, both parts present,
/// domain made of letters, digits, dots and hyphens or an address literal).
pub(crate) fn is_mailbox(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && !local.starts_with(['/', '|'])
        && !local
            .chars()
            .any(|c| c.is_whitespace() || c == '<' || c == '>');
    let domain_ok = !domain.is_empty()
        && (domain.starts_with('[') && domain.ends_with(']')
            || domain
                .chars()
                .all(|c| c.is_alphanumeric() || c == '.' || c == '-'));
    local_ok && domain_ok
}

/// The `Action` field (RFC 3464 §2.3.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "value", content = "raw")]
pub enum Action {
    Failed(String),
    Delayed(String),
    Delivered(String),
    Relayed(String),
    Expanded(String),
    /// Anything else, as written.
    Other(String),
}

impl Action {
    pub(crate) fn parse(raw: &str) -> Action {
        let stripped;
        let v = if raw.contains('(') {
            stripped = fields::strip_comments(raw);
            stripped.as_str()
        } else {
            raw.trim()
        };
        let is = |name: &str| v.eq_ignore_ascii_case(name);
        let raw = raw.to_string();
        if is("failed") {
            Action::Failed(raw)
        } else if is("delayed") {
            Action::Delayed(raw)
        } else if is("delivered") {
            Action::Delivered(raw)
        } else if is("relayed") {
            Action::Relayed(raw)
        } else if is("expanded") {
            Action::Expanded(raw)
        } else {
            Action::Other(raw)
        }
    }

    /// The value as written.
    pub fn raw(&self) -> &str {
        match self {
            Action::Failed(r)
            | Action::Delayed(r)
            | Action::Delivered(r)
            | Action::Relayed(r)
            | Action::Expanded(r)
            | Action::Other(r) => r,
        }
    }

    /// Canonical lowercase name, or `None` for an unknown action.
    pub fn name(&self) -> Option<&'static str> {
        match self {
            Action::Failed(_) => Some("failed"),
            Action::Delayed(_) => Some("delayed"),
            Action::Delivered(_) => Some("delivered"),
            Action::Relayed(_) => Some("relayed"),
            Action::Expanded(_) => Some("expanded"),
            Action::Other(_) => None,
        }
    }
}

/// The `Status` field: raw text and the parsed RFC 3463 code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusField {
    pub raw: String,
    /// `None` when the value (comments removed) is not a valid status code.
    pub code: Option<EnhancedStatus>,
}

/// The `Diagnostic-Code` field; for type `smtp`, the reply it carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiagnosticCode {
    #[serde(flatten)]
    pub value: TypedValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply: Option<Reply>,
}

/// Per-message fields (RFC 3464 §2.2).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PerMessage {
    pub reporting_mta: Option<TypedValue>,
    pub original_envelope_id: Option<String>,
    pub arrival_date: Option<String>,
    pub received_from_mta: Option<TypedValue>,
    pub dsn_gateway: Option<TypedValue>,
    /// Extension (`X-*`) and unknown fields, in order.
    pub extensions: Vec<(String, String)>,
}

impl PerMessage {
    pub fn is_empty(&self) -> bool {
        self.reporting_mta.is_none()
            && self.original_envelope_id.is_none()
            && self.arrival_date.is_none()
            && self.received_from_mta.is_none()
            && self.dsn_gateway.is_none()
            && self.extensions.is_empty()
    }

    /// Raw value of a per-message field by name (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        let l = name.to_ascii_lowercase();
        match l.as_str() {
            "reporting-mta" => self.reporting_mta.as_ref().map(|t| t.raw.as_str()),
            "original-envelope-id" => self.original_envelope_id.as_deref(),
            "arrival-date" => self.arrival_date.as_deref(),
            "received-from-mta" => self.received_from_mta.as_ref().map(|t| t.raw.as_str()),
            "dsn-gateway" => self.dsn_gateway.as_ref().map(|t| t.raw.as_str()),
            _ => self
                .extensions
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str()),
        }
    }
}

/// Per-recipient fields (RFC 3464 §2.3), or what a legacy bounce says about
/// one recipient.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Recipient {
    pub original_recipient: Option<TypedValue>,
    pub final_recipient: Option<TypedValue>,
    pub action: Option<Action>,
    pub status: Option<StatusField>,
    pub remote_mta: Option<TypedValue>,
    pub diagnostic_code: Option<DiagnosticCode>,
    pub last_attempt_date: Option<String>,
    pub final_log_id: Option<String>,
    pub will_retry_until: Option<String>,
    /// Extension (`X-*`) and unknown fields, in order.
    pub extensions: Vec<(String, String)>,
    /// The remote server's reply found in a legacy bounce's text (for RFC
    /// 3464 reports see `diagnostic_code.reply`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text_reply: Option<Reply>,
    /// The recipient address as read from the bounce's prose, when the
    /// fields carry no usable mailbox (legacy bounces, or a Final-Recipient
    /// such as a file path or `@domain`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text_address: Option<String>,
    /// An enhanced status code found in a legacy bounce's text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text_status: Option<EnhancedStatus>,
}

impl Recipient {
    /// The recipient's mailbox: Final-Recipient if it is a mailbox, else
    /// Original-Recipient, else a mailbox inside either value (a pipe or
    /// alias expansion), else the address read from prose, else the raw
    /// Final-Recipient value.
    pub fn address(&self) -> Option<String> {
        let fields = [&self.final_recipient, &self.original_recipient];
        for t in fields.iter().copied().flatten() {
            let a = t.address();
            if is_mailbox(&a) {
                return Some(a);
            }
        }
        for t in fields.iter().copied().flatten() {
            if let Some(a) = t.value.split_whitespace().find(|w| is_mailbox(w)) {
                return Some(a.to_string());
            }
        }
        if let Some(a) = &self.text_address {
            return Some(a.clone());
        }
        fields
            .iter()
            .copied()
            .flatten()
            .next()
            .map(TypedValue::address)
    }

    /// Every address known for this recipient: Final-Recipient,
    /// Original-Recipient and the one read from prose, deduplicated.
    pub fn addresses(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut push = |a: String| {
            if !a.is_empty() && !out.iter().any(|x| x.eq_ignore_ascii_case(&a)) {
                out.push(a);
            }
        };
        if let Some(a) = self.address() {
            push(a);
        }
        for t in [&self.final_recipient, &self.original_recipient]
            .into_iter()
            .flatten()
        {
            let a = t.address();
            if is_mailbox(&a) {
                push(a);
            }
        }
        if let Some(a) = &self.text_address {
            push(a.clone());
        }
        out
    }

    /// Whether this recipient was read from prose only (no DSN field).
    pub fn from_text(&self) -> bool {
        self.final_recipient.is_none()
            && self.original_recipient.is_none()
            && self.action.is_none()
            && self.status.is_none()
            && self.text_address.is_some()
    }

    /// Whether neither address field holds a mailbox.
    pub(crate) fn lacks_mailbox(&self) -> bool {
        !self.address().is_some_and(|a| is_mailbox(&a))
    }

    /// The remote reply: from an smtp Diagnostic-Code, else from the text.
    pub fn reply(&self) -> Option<&Reply> {
        self.diagnostic_code
            .as_ref()
            .and_then(|d| d.reply.as_ref())
            .or(self.text_reply.as_ref())
    }

    /// Status class 2, 4 or 5: from the Status field, else from a status
    /// code in the text, else from the reply's enhanced code or reply code.
    pub fn class(&self) -> Option<u8> {
        if let Some(c) = self.status.as_ref().and_then(|s| s.code) {
            return Some(c.class);
        }
        if let Some(c) = self.text_status {
            return Some(c.class);
        }
        let r = self.reply()?;
        Some(r.enhanced().map(|e| e.class).unwrap_or_else(|| r.class()))
    }
}

/// Where a report's fields were read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A `message/delivery-status` part.
    DeliveryStatus,
    /// A `message/global-delivery-status` part (RFC 6533, UTF-8).
    GlobalDeliveryStatus,
    /// DSN fields found in raw text because the MIME structure is broken.
    RecoveredFields,
    /// Prose of a legacy (non RFC 3464) bounce.
    LegacyText,
}

/// One machine-readable status report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryStatus {
    pub source: Source,
    /// Message nesting level: 0 for the bounce itself, 1 inside a
    /// returned message, and so on.
    pub depth: usize,
    /// Content type of the part, lowercase.
    pub content_type: String,
    pub per_message: PerMessage,
    pub recipients: Vec<Recipient>,
}

/// What came back of the original message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReturnedKind {
    /// The whole message (`message/rfc822`, `message/global`).
    FullMessage,
    /// Only its header (`text/rfc822-headers`, `message/global-headers`).
    HeadersOnly,
}

/// The returned-content part of a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Returned {
    pub kind: ReturnedKind,
    /// Content type of the part, lowercase; `inline` for a message quoted
    /// in the text of a legacy bounce.
    pub content_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

/// A parsed bounce message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dsn {
    /// Top-level content type, lowercase (`multipart/report`).
    pub content_type: String,
    /// `report-type` parameter of the top-level type, lowercase.
    pub report_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Machine-readable reports in document order (including any found
    /// inside returned messages, with `depth > 0`).
    pub reports: Vec<DeliveryStatus>,
    /// The human-readable part (first text part), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub human_text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub returned: Option<Returned>,
    /// No RFC 3464 fields were found; recipients come from prose.
    pub legacy: bool,
    /// Which legacy layout was recognised (`qmail`, `exim`, ...), or what
    /// the message is instead of a bounce: `auto-reply` (RFC 3834), or
    /// `complaint` (a feedback loop's report in its own format).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub legacy_format: Option<String>,
    /// The vendor whose bounce this is, recognised by its header fields
    /// (the `[vendor]` sections of `data/phrases.txt`): its own wording
    /// then decides the reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    pub warnings: Vec<Warning>,
}

impl Dsn {
    /// Reports that describe this bounce (the least nested ones).
    pub fn primary_reports(&self) -> impl Iterator<Item = &DeliveryStatus> {
        let min = self.reports.iter().map(|r| r.depth).min().unwrap_or(0);
        self.reports.iter().filter(move |r| r.depth == min)
    }

    /// Recipients of the primary reports.
    pub fn recipients(&self) -> impl Iterator<Item = &Recipient> {
        self.primary_reports().flat_map(|r| r.recipients.iter())
    }

    /// Per-message fields of the first primary report.
    pub fn per_message(&self) -> Option<&PerMessage> {
        self.primary_reports().next().map(|r| &r.per_message)
    }

    /// Whether a warning of this kind was recorded.
    pub fn has_warning(&self, kind: WarningKind) -> bool {
        self.warnings.iter().any(|w| w.kind == kind)
    }
}

/// Split a file that may be an mbox (messages each opened by a `From ` line)
/// into its messages, without the `From ` lines. Anything else is one message.
pub fn split_mbox(bytes: &[u8]) -> Vec<&[u8]> {
    if !bytes.starts_with(b"From ") {
        return vec![bytes];
    }
    let mut starts = Vec::new();
    let mut at = 0;
    let mut prev_blank = true;
    while at < bytes.len() {
        // Lines end in LF, CRLF or a lone CR.
        let end = match bytes[at..].iter().position(|&b| b == b'\n' || b == b'\r') {
            None => bytes.len(),
            Some(i) if bytes[at + i] == b'\r' && bytes.get(at + i + 1) == Some(&b'\n') => {
                at + i + 2
            }
            Some(i) => at + i + 1,
        };
        let line = &bytes[at..end];
        if prev_blank && line.starts_with(b"From ") {
            starts.push((at, end));
        }
        prev_blank = matches!(line, b"\n" | b"\r\n" | b"\r");
        at = end;
    }
    starts
        .iter()
        .enumerate()
        .map(|(i, &(_, body))| {
            let stop = starts.get(i + 1).map_or(bytes.len(), |&(next, _)| next);
            &bytes[body..stop.max(body)]
        })
        .collect()
}

impl fmt::Display for Dsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&render_text(self))
    }
}

/// Position of the first `needle` byte in `hay`.
pub(crate) fn find_byte(hay: &[u8], needle: u8) -> Option<usize> {
    memchr::memchr(needle, hay)
}

/// Parses a bounce message with the default [`DsnLimits`].
pub fn parse(bytes: &[u8]) -> Result<Dsn, DsnError> {
    parse_with(bytes, &DsnLimits::default())
}

/// Parses a bounce message.
///
/// Fails only when the input is over a limit or holds no header at all;
/// everything else yields a [`Dsn`], with warnings for the damage found.
pub fn parse_with(bytes: &[u8], limits: &DsnLimits) -> Result<Dsn, DsnError> {
    if bytes.len() > limits.max_size {
        return Err(DsnError::TooLarge {
            size: bytes.len(),
            limit: limits.max_size,
        });
    }
    structure::parse_message(bytes, limits)
}

/// The mail-parser configuration [`parse`] reads a message with (the
/// header fields it never reads are skipped, bodies are left as written
/// until a part is read). For benchmarks that split
/// `parse`'s time into mail-parser's part and the crate's own.
#[doc(hidden)]
pub fn mail_parser() -> &'static mail_parser::MessageParser {
    structure::parser()
}

#[cfg(test)]
mod tests;
