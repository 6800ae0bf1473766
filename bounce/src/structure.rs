//! DSN parsing: MIME structure of a report (RFC 6522 §3, RFC 6533) via mail-parser.

use std::borrow::Cow;

use std::sync::OnceLock;

use mail_parser::parsers::MessageStream;
use mail_parser::{
    HeaderForm, HeaderName, HeaderValue, Message, MessageParser, MessagePart, MimeHeaders, PartType,
};

use super::fields::{find_status_block, parse_status_body};
use super::find_byte;
use super::{
    legacy, DeliveryStatus, Dsn, DsnError, DsnLimits, Returned, ReturnedKind, Source, Warning,
    WarningKind,
};

/// The mail-parser instance used for bounces: only the MIME fields are
/// parsed as the message is read. The few other fields the reader needs
/// (Subject, From, To, Cc, Message-ID, ...) are parsed when asked for, by
/// [`field`], with mail-parser's parser for their form: most bounces never
/// need most of them, and a returned message's header need not be parsed
/// at all.
pub(crate) fn parser() -> &'static MessageParser {
    static P: OnceLock<MessageParser> = OnceLock::new();
    P.get_or_init(|| {
        MessageParser::new()
            .with_mime_headers()
            .default_header_ignore()
    })
}

/// The `name` field of a message's header, parsed as `form` as mail-parser
/// would have parsed it with the message; of several, the last, as
/// mail-parser's own accessors (`Message::subject`, ...) read them.
pub(crate) fn field<'m>(
    msg: &'m Message<'_>,
    name: HeaderName<'static>,
    form: HeaderForm,
) -> Option<HeaderValue<'m>> {
    let h = msg
        .parts
        .first()?
        .headers
        .iter()
        .rev()
        .find(|h| h.name == name)?;
    let bytes = msg
        .raw_message
        .get(h.offset_start as usize..h.offset_end as usize)?;
    let mut stream = MessageStream::new(bytes);
    Some(match form {
        HeaderForm::Text => stream.parse_unstructured(),
        HeaderForm::Addresses => stream.parse_address(),
        HeaderForm::MessageIds => stream.parse_id(),
        _ => stream.parse_raw(),
    })
}

/// The values of every `name` field of a message's header, raw, as
/// mail-parser's raw form has them: bytes that are not UTF-8 replaced, not
/// the field dropped.
pub(crate) fn raw_fields<'m>(
    msg: &'m Message<'_>,
    name: &'m str,
) -> impl Iterator<Item = Cow<'m, str>> {
    msg.parts
        .first()
        .into_iter()
        .flat_map(|p| p.headers.iter())
        .filter(move |h| h.name.as_str().eq_ignore_ascii_case(name))
        .filter_map(move |h| {
            msg.raw_message
                .get(h.offset_start as usize..h.offset_end as usize)
        })
        .map(utf8)
}

/// The `name` field's text (Subject) or message id (Message-ID).
pub(crate) fn text_field(
    msg: &Message<'_>,
    name: HeaderName<'static>,
    form: HeaderForm,
) -> Option<String> {
    field(msg, name, form)
        .as_ref()
        .and_then(HeaderValue::as_text)
        .map(str::to_string)
}

/// The mailbox addresses of the `name` field (To, Cc, From).
pub(crate) fn address_field(msg: &Message<'_>, name: HeaderName<'static>) -> Vec<String> {
    field(msg, name, HeaderForm::Addresses)
        .as_ref()
        .and_then(HeaderValue::as_address)
        .into_iter()
        .flat_map(|a| a.iter())
        .filter_map(|a| a.address())
        .map(str::to_string)
        .collect()
}

/// Most bytes of prose handed to the legacy reader.
const MAX_LEGACY_TEXT: usize = 256 * 1024;

/// Whether a CR stands anywhere but before an LF.
fn has_bare_cr(bytes: &[u8]) -> bool {
    memchr::memchr_iter(b'\r', bytes).any(|k| bytes.get(k + 1) != Some(&b'\n'))
}

/// Replaces bare CR line ends with LF; `None` when there are none.
fn normalise_cr(bytes: &[u8]) -> Option<Vec<u8>> {
    if !has_bare_cr(bytes) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut k = 0;
    // The text between CRs is copied at once.
    while let Some(p) = find_byte(&bytes[k..], b'\r') {
        let cr = k + p;
        out.extend_from_slice(&bytes[k..cr]);
        if bytes.get(cr + 1) == Some(&b'\n') {
            out.extend_from_slice(b"\r\n");
            k = cr + 2;
        } else {
            out.push(b'\n');
            k = cr + 1;
        }
    }
    out.extend_from_slice(&bytes[k..]);
    Some(out)
}

/// `type/subtype` lowercase, and the `report-type` parameter.
fn content_type(part: &MessagePart<'_>) -> (Option<String>, Option<String>) {
    match part.content_type() {
        Some(ct) => {
            let mut t = String::with_capacity(40);
            t.push_str(ct.ctype());
            if let Some(s) = ct.subtype() {
                t.push('/');
                t.push_str(s);
            }
            t.make_ascii_lowercase();
            let rt = ct
                .attributes()
                .and_then(|a| {
                    a.iter()
                        .find(|a| a.name.eq_ignore_ascii_case("report-type"))
                })
                .map(|a| a.value.trim().to_ascii_lowercase());
            (Some(t), rt)
        }
        None => (None, None),
    }
}

/// The bytes as text, invalid UTF-8 replaced; the check for valid UTF-8
/// comes first, as it is the faster.
fn utf8(b: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(b) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(b),
    }
}

fn body_text<'a>(part: &'a MessagePart<'_>) -> Cow<'a, str> {
    match &part.body {
        PartType::Text(t) | PartType::Html(t) => Cow::Borrowed(t.as_ref()),
        PartType::Binary(b) | PartType::InlineBinary(b) => utf8(b),
        PartType::Message(m) => utf8(m.raw_message()),
        PartType::Multipart(_) => Cow::Borrowed(""),
    }
}

struct Walk<'m> {
    reports: Vec<DeliveryStatus>,
    warnings: Vec<Warning>,
    human: Option<Cow<'m, str>>,
    /// All top-level plain-text parts, for the legacy reader.
    prose: Vec<Cow<'m, str>>,
    /// Top-level HTML parts, converted only when there is no plain text.
    html: Vec<&'m str>,
    prose_len: usize,
    returned: Option<Returned>,
}

impl<'m> Walk<'m> {
    /// The prose of the bounce: plain-text parts, else HTML parts as text.
    fn prose(&self) -> Cow<'m, str> {
        if let [one] = &self.prose[..] {
            if !one.trim().is_empty() || self.html.is_empty() {
                return one.clone();
            }
        }
        let plain = self.prose.join("\n");
        if !plain.trim().is_empty() || self.html.is_empty() {
            return Cow::Owned(plain);
        }
        self.html
            .iter()
            .map(|h| mail_parser::decoders::html::html_to_text(h))
            .collect::<Vec<_>>()
            .join("\n")
            .into()
    }
}

fn walk<'m>(
    msg: &'m Message<'m>,
    depth: usize,
    st: &mut Walk<'m>,
    limits: &DsnLimits,
) -> Result<(), DsnError> {
    let root_children: &[u32] = msg.parts.first().and_then(|p| p.sub_parts()).unwrap_or(&[]);
    let root_is_multipart = msg.parts.first().is_some_and(|p| p.is_multipart());
    for (i, part) in msg.parts.iter().enumerate() {
        if part.is_multipart() {
            continue;
        }
        // Inside returned messages only message/* parts can matter.
        if depth > 0
            && !part
                .content_type()
                .is_some_and(|c| c.ctype().eq_ignore_ascii_case("message"))
        {
            continue;
        }
        let (ct, _) = content_type(part);
        let ct_s = ct.as_deref().unwrap_or("text/plain");
        match ct_s {
            "message/delivery-status" | "message/global-delivery-status" => {
                let direct = i == 0 || root_children.contains(&(i as u32));
                if depth == 0 && !direct {
                    st.warnings.push(Warning::new(
                        WarningKind::NestedStatusPart,
                        format!("{ct_s} part is nested below the top-level multipart"),
                    ));
                }
                let text = body_text(part);
                let (per_message, recipients) = parse_status_body(&text, limits, &mut st.warnings)?;
                st.reports.push(DeliveryStatus {
                    source: if ct_s == "message/global-delivery-status" {
                        Source::GlobalDeliveryStatus
                    } else {
                        Source::DeliveryStatus
                    },
                    depth,
                    content_type: ct_s.to_string(),
                    per_message,
                    recipients,
                });
            }
            "message/rfc822" | "message/global"
                if depth == 0 && st.returned.is_none() && (i > 0 || root_is_multipart) =>
            {
                let nested = part.message();
                st.returned = Some(Returned {
                    kind: ReturnedKind::FullMessage,
                    content_type: ct_s.to_string(),
                    message_id: nested
                        .and_then(|m| text_field(m, HeaderName::MessageId, HeaderForm::MessageIds)),
                    subject: nested
                        .and_then(|m| text_field(m, HeaderName::Subject, HeaderForm::Text)),
                });
            }
            "text/rfc822-headers" | "message/global-headers"
                if depth == 0 && st.returned.is_none() =>
            {
                let raw = part.contents();
                st.returned = Some(Returned {
                    kind: ReturnedKind::HeadersOnly,
                    content_type: ct_s.to_string(),
                    message_id: header_field(raw, "message-id", true),
                    subject: header_field(raw, "subject", false),
                });
            }
            _ if depth == 0 && part.is_text() => {
                let text: Cow<'m, str> = match &part.body {
                    PartType::Html(h) => {
                        st.html.push(h.as_ref());
                        continue;
                    }
                    PartType::Text(t) => Cow::Borrowed(t.as_ref()),
                    _ => Cow::Borrowed(""),
                };
                if st.human.is_none() && !text.trim().is_empty() && !part.is_text_html() {
                    st.human = Some(text.clone());
                }
                if st.prose_len < MAX_LEGACY_TEXT {
                    st.prose_len += text.len();
                    st.prose.push(text);
                }
            }
            _ => {}
        }
        if let Some(nested) = part.message() {
            if i > 0 || depth > 0 {
                walk(nested, depth + 1, st, limits)?;
            }
        }
    }
    Ok(())
}

/// A `boundary=` parameter written on a line of its own, unfolded, after
/// a `Content-Type: multipart/...;` line (seen from Verizon's and Apache
/// James's gateways): folded back into that field, so that the parts can
/// be found. `None` when there is no such line.
fn refold_boundary(bytes: &[u8]) -> Option<Vec<u8>> {
    let starts = |s: &[u8], p: &[u8]| s.len() >= p.len() && s[..p.len()].eq_ignore_ascii_case(p);
    let mut out: Option<Vec<u8>> = None;
    let mut prev: &[u8] = &[];
    let mut at = 0;
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        let broken = starts(line, b"boundary=")
            && starts(prev, b"content-type:")
            && prev.trim_ascii_end().ends_with(b";")
            && contains_ci(prev, b"multipart/");
        if broken {
            let o = out.get_or_insert_with(|| bytes[..at].to_vec());
            o.push(b' ');
            o.extend_from_slice(line);
        } else if let Some(o) = out.as_mut() {
            o.extend_from_slice(line);
        }
        prev = line;
        at += line.len();
    }
    out
}

pub(crate) fn parse_message(bytes: &[u8], limits: &DsnLimits) -> Result<Dsn, DsnError> {
    parse_parts(bytes, limits, false)
}

fn parse_parts(bytes: &[u8], limits: &DsnLimits, refolded: bool) -> Result<Dsn, DsnError> {
    let mut warnings = Vec::new();
    let normalised = normalise_cr(bytes);
    if normalised.is_some() {
        warnings.push(Warning::new(
            WarningKind::LineEndings,
            "bare CR line ends normalised to LF",
        ));
    }
    let input: &[u8] = normalised.as_deref().unwrap_or(bytes);
    let msg = parser().parse(input).ok_or(DsnError::Unreadable)?;
    // The bounce's own Subject and From, read once for the report and the
    // legacy reader.
    let subject = text_field(&msg, HeaderName::Subject, HeaderForm::Text);
    let from_field = field(&msg, HeaderName::From, HeaderForm::Addresses);
    let from = from_field.as_ref().and_then(HeaderValue::as_address);
    let root = msg.parts.first().ok_or(DsnError::Unreadable)?;
    let (ct, report_type) = content_type(root);
    let mut st = Walk {
        reports: Vec::new(),
        warnings,
        human: None,
        prose: Vec::new(),
        html: Vec::new(),
        prose_len: 0,
        returned: None,
    };
    walk(&msg, 0, &mut st, limits)?;
    let mut prose_cache: Option<Cow<'_, str>> = None;

    if st.reports.iter().all(|r| r.depth > 0) {
        // No status part in the bounce itself: maybe the MIME structure is
        // broken and the fields sit in raw text.
        // Decoded prose first (fields inside a quoted-printable text part),
        // then the raw body (fields behind broken boundaries).
        let prose = prose_cache.get_or_insert_with(|| st.prose());
        let body = input.get(root.offset_body as usize..).unwrap_or(&[]);
        // Raw bytes only when the message claims to be a delivery report.
        let claims_report = report_type.as_deref() == Some("delivery-status")
            || (root.is_multipart() && contains_ci(body, b"/delivery-status"));
        // Fields inside prose sit near its start; do not scan returned text.
        let head = &prose.as_bytes()[..prose.len().min(16 * 1024)];
        let text: Cow<'_, str> = if let Some(p) = find_status_block(head) {
            Cow::Owned(prose[p..].to_string())
        } else if claims_report && may_hold_fields(body) {
            match find_status_block(body) {
                Some(p) => String::from_utf8_lossy(&body[p..]),
                None => Cow::Borrowed(""),
            }
        } else {
            Cow::Borrowed("")
        };
        if !text.is_empty() {
            let mut w = Vec::new();
            let (per_message, recipients) = parse_status_body(&text, limits, &mut w)?;
            if !recipients.is_empty() || per_message.reporting_mta.is_some() {
                st.warnings.push(Warning::new(
                    WarningKind::BrokenBoundary,
                    "no delivery-status part found through MIME; DSN fields recovered from raw text",
                ));
                st.warnings.extend(w);
                st.reports.insert(
                    0,
                    DeliveryStatus {
                        source: Source::RecoveredFields,
                        depth: 0,
                        content_type: String::new(),
                        per_message,
                        recipients,
                    },
                );
            }
        }
    } else if st.reports.iter().any(|r| r.depth > 0) {
        st.warnings.push(Warning::new(
            WarningKind::NestedStatusPart,
            "a returned message carries its own delivery-status part",
        ));
    }

    // Recipients whose fields carry no mailbox: read the address from prose.
    let prose_needed = st
        .reports
        .iter()
        .filter(|r| r.depth == 0)
        .flat_map(|r| r.recipients.iter())
        .filter(|r| r.lacks_mailbox())
        .count();
    if prose_needed > 0 {
        let prose = prose_cache.get_or_insert_with(|| st.prose());
        let found = legacy::extract(prose, &msg, subject.as_deref(), from);
        if found.recipients.len() == prose_needed {
            let mut it = found.recipients.into_iter();
            for r in st
                .reports
                .iter_mut()
                .filter(|r| r.depth == 0)
                .flat_map(|r| r.recipients.iter_mut())
                .filter(|r| r.lacks_mailbox())
            {
                if let Some(f) = it.next() {
                    r.text_address = f.text_address;
                }
            }
            st.warnings.push(Warning::new(
                WarningKind::Heuristic,
                "recipient address read from the human-readable text (fields carry no mailbox)",
            ));
        }
    }

    let has_recipients = st
        .reports
        .iter()
        .filter(|r| r.depth == 0)
        .any(|r| !r.recipients.is_empty());
    let mut legacy_flag = false;
    let mut legacy_format = None;
    if !has_recipients {
        let prose = prose_cache.get_or_insert_with(|| st.prose());
        if prose.trim().is_empty() && st.reports.is_empty() && !refolded {
            // No text found through MIME: maybe a parameter broke it. The
            // repaired reading is taken only when it finds recipients.
            let repaired = refold_boundary(input).map(|fixed| parse_parts(&fixed, limits, true));
            if let Some(Ok(mut d)) =
                repaired.filter(|d| d.as_ref().is_ok_and(|d| d.recipients().next().is_some()))
            {
                let mut w = std::mem::take(&mut st.warnings);
                w.push(Warning::new(
                    WarningKind::BrokenBoundary,
                    "a `boundary=` parameter on a line of its own was folded back into its Content-Type field",
                ));
                w.append(&mut d.warnings);
                d.warnings = w;
                return Ok(d);
            }
        }
        let found = legacy::extract(prose, &msg, subject.as_deref(), from);
        if let Some(at) = found.returned_at {
            if st.returned.is_none() {
                st.returned = inline_returned(&prose[at..]);
            }
            // The quoted message is not part of the human-readable text.
            if let Some(h) = &st.human {
                if h.as_ptr() == prose.as_ptr() && at <= h.len() {
                    st.human = Some(Cow::Owned(h[..at].to_string()));
                }
            }
        }
        if !found.recipients.is_empty() {
            legacy_flag = true;
            legacy_format = found.format.map(str::to_string);
            st.warnings.push(Warning::new(
                WarningKind::Heuristic,
                format!(
                    "recipients read from the text of a {} bounce",
                    found.format.unwrap_or("non-RFC 3464")
                ),
            ));
            // Keep per-message fields of a report that listed no recipients.
            let pos = st.reports.iter().position(|r| r.depth == 0);
            match pos {
                Some(p) => {
                    st.reports[p].recipients = found.recipients;
                }
                None => st.reports.insert(
                    0,
                    DeliveryStatus {
                        source: Source::LegacyText,
                        depth: 0,
                        content_type: ct.clone().unwrap_or_else(|| "text/plain".into()),
                        per_message: Default::default(),
                        recipients: found.recipients,
                    },
                ),
            }
        }
    }

    // Recipients recovered from damaged fields or read from prose obey the
    // same limit as those read from a delivery-status part.
    if st
        .reports
        .iter()
        .any(|r| r.recipients.len() > limits.max_recipients)
    {
        return Err(DsnError::TooManyRecipients {
            limit: limits.max_recipients,
        });
    }
    Ok(Dsn {
        content_type: ct.unwrap_or_else(|| "text/plain".to_string()),
        report_type,
        from: from
            .and_then(|a| a.first())
            .and_then(|a| a.address())
            .map(str::to_string),
        subject,
        reports: st.reports,
        human_text: st.human.map(Cow::into_owned),
        returned: st.returned,
        legacy: legacy_flag,
        legacy_format,
        vendor: crate::phrases::vendor_of(root.headers.iter().map(|h| {
            let value = msg
                .raw_message
                .get(h.offset_start as usize..h.offset_end as usize)
                .unwrap_or_default();
            (&h.name, value)
        }))
        .map(str::to_string),
        warnings: st.warnings,
    })
}

/// One field of a header block, decoded by mail-parser's field parsers
/// (`id` for a message id, unstructured text otherwise).
fn header_field(raw: &[u8], name: &str, id: bool) -> Option<String> {
    let mut pos = 0;
    while pos < raw.len() {
        let end = find_byte(&raw[pos..], b'\n').map_or(raw.len(), |e| pos + e + 1);
        let line = &raw[pos..end];
        if line == b"\n" || line == b"\r\n" {
            return None;
        }
        if line.len() > name.len()
            && line[..name.len()].eq_ignore_ascii_case(name.as_bytes())
            && line[name.len()] == b':'
        {
            let mut stream = mail_parser::parsers::MessageStream::new(&raw[pos + name.len() + 1..]);
            let v = if id {
                stream.parse_id()
            } else {
                stream.parse_unstructured()
            };
            return v.as_text().map(str::to_string);
        }
        pos = end;
    }
    None
}

/// A returned message quoted inline after a legacy bounce's prose: headers
/// only when nothing but blank lines follows the header block.
fn inline_returned(rest: &str) -> Option<Returned> {
    let start = legacy::inline_header_start(rest)?;
    let block = &rest[start..];
    let bytes = block.as_bytes();
    let body_at = blank_line(bytes);
    let has_body = body_at.is_some_and(|p| !block[p..].trim().is_empty());
    Some(Returned {
        kind: if has_body {
            ReturnedKind::FullMessage
        } else {
            ReturnedKind::HeadersOnly
        },
        content_type: "inline".to_string(),
        message_id: header_field(bytes, "message-id", true),
        subject: header_field(bytes, "subject", false),
    })
}

/// Where the body starts after the first empty line (`\n\n`, else
/// `\n\r\n`), found in one pass over the line ends.
fn blank_line(b: &[u8]) -> Option<usize> {
    let mut crlf = None;
    let mut i = 0;
    while let Some(p) = find_byte(&b[i..], b'\n') {
        let nl = i + p;
        match b.get(nl + 1) {
            Some(b'\n') => return Some(nl + 1),
            Some(b'\r') if crlf.is_none() && b.get(nl + 2) == Some(&b'\n') => crlf = Some(nl + 1),
            _ => {}
        }
        i = nl + 1;
    }
    crlf
}

/// Whether `hay` contains `needle` (lowercase ASCII), ignoring ASCII case.
fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    let Some(&first) = needle.first() else {
        return true;
    };
    let upper = first.to_ascii_uppercase();
    let mut i = 0;
    while i < hay.len() {
        let found = if first == upper {
            find_byte(&hay[i..], first)
        } else {
            hay[i..].iter().position(|&b| b == first || b == upper)
        };
        let Some(p) = found else {
            return false;
        };
        let at = i + p;
        if hay.len() - at >= needle.len() && hay[at..at + needle.len()].eq_ignore_ascii_case(needle)
        {
            return true;
        }
        i = at + 1;
    }
    false
}

/// Cheap test before looking for DSN fields in raw bytes: a colon right
/// after `...recipient` or `-MTA`, in any case.
fn may_hold_fields(body: &[u8]) -> bool {
    let mut i = 0;
    while let Some(p) = find_byte(&body[i..], b':') {
        let c = i + p;
        i = c + 1;
        let before = &body[..c];
        let ends = |s: &[u8]| {
            before.len() >= s.len() && before[before.len() - s.len()..].eq_ignore_ascii_case(s)
        };
        if ends(b"recipient") || ends(b"-mta") {
            return true;
        }
    }
    false
}

/// Recipient addresses (To, Cc) of the first returned message, if any.
pub(crate) fn returned_recipients(msg: &Message<'_>) -> Vec<String> {
    let mut out = Vec::new();
    for part in msg.parts.iter().skip(1) {
        if let Some(m) = part.message() {
            out = address_field(m, HeaderName::To);
            out.extend(address_field(m, HeaderName::Cc));
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Fields read on demand come out as mail-parser's full parse has
    /// them: encoded words decoded, the last of repeated fields, address
    /// lists, message ids; fields that are not there are `None`.
    #[test]
    fn fields_read_on_demand_are_what_a_full_parse_gives() {
        let raw = b"Subject: first\r\nFrom: \"Mail Delivery\" <MAILER-DAEMON@mx.test>\r\n\
            To: a@b.test, \"C\" <c@d.test>\r\nCc: e@f.test\r\n\
            Message-ID: <id.1@mx.test>\r\nSubject: =?utf-8?q?Unzustellbar=3A_r=C3=BCck?=\r\n\
            X-Failed-Recipients: x@y.test\r\n\r\nbody\r\n";
        let ours = parser().parse(&raw[..]).unwrap();
        let full = MessageParser::default().parse(&raw[..]).unwrap();
        let subject = text_field(&ours, HeaderName::Subject, HeaderForm::Text);
        assert_eq!(subject.as_deref(), full.subject());
        assert_eq!(subject.as_deref(), Some("Unzustellbar: rück"));
        assert_eq!(
            text_field(&ours, HeaderName::MessageId, HeaderForm::MessageIds).as_deref(),
            full.message_id()
        );
        let addrs = |a: Option<&mail_parser::Address<'_>>| -> Vec<String> {
            a.into_iter()
                .flat_map(|a| a.iter())
                .filter_map(|a| a.address())
                .map(str::to_string)
                .collect()
        };
        assert_eq!(address_field(&ours, HeaderName::To), addrs(full.to()));
        assert_eq!(address_field(&ours, HeaderName::To).len(), 2);
        assert_eq!(address_field(&ours, HeaderName::Cc), addrs(full.cc()));
        let from = field(&ours, HeaderName::From, HeaderForm::Addresses);
        let name = from
            .as_ref()
            .and_then(HeaderValue::as_address)
            .and_then(|a| a.first());
        assert_eq!(name.and_then(|a| a.name()), Some("Mail Delivery"));
        let raw: Vec<String> = raw_fields(&ours, "x-failed-recipients")
            .map(|v| v.trim().to_string())
            .collect();
        assert_eq!(raw, ["x@y.test"]);
        // A value that is not UTF-8 is read with the bad bytes replaced.
        let latin = parser()
            .parse(&b"X-Failed-Recipients: bob@x.test (M\xfcller)\r\n\r\nbody\r\n"[..])
            .unwrap();
        let raw: Vec<String> = raw_fields(&latin, "X-Failed-Recipients")
            .map(|v| v.trim().to_string())
            .collect();
        assert_eq!(raw, ["bob@x.test (M\u{fffd}ller)"]);
        assert!(address_field(&ours, HeaderName::Bcc).is_empty());
        assert!(text_field(&ours, HeaderName::Comments, HeaderForm::Text).is_none());
    }

    proptest! {
        #[test]
        fn bare_cr_detection_agrees(buf in proptest::collection::vec(
            prop_oneof![Just(b'\r'), Just(b'\n'), any::<u8>()], 0..80)
        ) {
            let naive = (0..buf.len()).any(|k| buf[k] == b'\r' && buf.get(k + 1) != Some(&b'\n'));
            prop_assert_eq!(has_bare_cr(&buf), naive);
            if let Some(out) = normalise_cr(&buf) {
                prop_assert!(naive);
                prop_assert!(!has_bare_cr(&out));
                prop_assert_eq!(out.len(), buf.len());
                // A bare CR becomes LF; every other byte is kept.
                for (k, (&a, &b)) in buf.iter().zip(&out).enumerate() {
                    let bare = a == b'\r' && buf.get(k + 1) != Some(&b'\n');
                    prop_assert_eq!(b, if bare { b'\n' } else { a });
                }
            }
        }

        #[test]
        fn the_first_empty_line_is_found_as_by_two_searches(buf in proptest::collection::vec(
            prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'x')], 0..40)
        ) {
            let text = String::from_utf8(buf).unwrap();
            let slow = text.find("\n\n").or_else(|| text.find("\n\r\n")).map(|p| p + 1);
            prop_assert_eq!(blank_line(text.as_bytes()), slow);
        }

        #[test]
        fn byte_search_agrees(buf in proptest::collection::vec(any::<u8>(), 0..64), b in any::<u8>()) {
            prop_assert_eq!(find_byte(&buf, b), buf.iter().position(|&x| x == b));
        }
    }
}
