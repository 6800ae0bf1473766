//! DSN parsing: MIME structure of a report (RFC 6522 §3, RFC 6533) via mail-parser.

use std::borrow::Cow;

use std::sync::OnceLock;

use mail_parser::decoders::charsets::map::charset_decoder;
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

/// The mail-parser instance used for bounces: only Content-Type is parsed
/// as the message is read. The few other fields the reader needs
/// (Subject, From, To, Cc, Message-ID, ...) are parsed when asked for, by
/// [`field`], with mail-parser's parser for their form: most bounces never
/// need most of them, and a returned message's header need not be parsed
/// at all.
///
/// Of the MIME fields only Content-Type is parsed: Content-Transfer-Encoding
/// left unparsed, mail-parser keeps every body as it is written. The few
/// parts the reader uses are decoded afterwards by [`body`], with
/// mail-parser's own decoders; the HTML alternatives, attachments and
/// returned messages that most bounces carry are never decoded. (The other
/// MIME fields tell mail-parser only which parts are attachments, which
/// the reader does not ask.)
pub(crate) fn parser() -> &'static MessageParser {
    static P: OnceLock<MessageParser> = OnceLock::new();
    P.get_or_init(|| {
        MessageParser::new()
            .header_content_type(HeaderName::ContentType)
            .default_header_ignore()
    })
}

/// mail-parser decoding every body as it parses: for a bounce whose
/// returned message is itself base64 or quoted-printable, which only a
/// decoded body shows the parts of.
fn decoding_parser() -> &'static MessageParser {
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
    let bytes = raw_value(msg, msg.parts.first()?, &name)?;
    let mut stream = MessageStream::new(bytes);
    Some(match form {
        HeaderForm::Text => stream.parse_unstructured(),
        HeaderForm::Addresses => stream.parse_address(),
        HeaderForm::MessageIds => stream.parse_id(),
        _ => stream.parse_raw(),
    })
}

/// The raw value of the `name` field in the header of `part` (a part of
/// `msg`); of several, the last, as mail-parser's own accessors read them.
pub(crate) fn raw_value<'m>(
    msg: &'m Message<'_>,
    part: &MessagePart<'_>,
    name: &HeaderName<'_>,
) -> Option<&'m [u8]> {
    let h = part.headers.iter().rev().find(|h| h.name == *name)?;
    msg.raw_message
        .get(h.offset_start as usize..h.offset_end as usize)
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

/// Whether a CR stands anywhere but before an LF. Each block of 64 bytes
/// is checked whole, without a branch per byte, which the compiler turns
/// into vector code: a text with a CR on every line is read as fast as one
/// without.
fn has_bare_cr(bytes: &[u8]) -> bool {
    // A message stored with LF line ends has no CR at all, which memchr
    // tells at its own speed.
    let Some(first) = find_byte(bytes, b'\r') else {
        return false;
    };
    let bytes = &bytes[first..];
    let Some((&last, body)) = bytes.split_last() else {
        return false;
    };
    // Byte k of `body` is followed by byte k of `next`.
    let next = &bytes[1..];
    let mut k = 0;
    while k < body.len() {
        let end = (k + 64).min(body.len());
        let bare = body[k..end]
            .iter()
            .zip(&next[k..end])
            .fold(false, |acc, (&a, &b)| acc | ((a == b'\r') & (b != b'\n')));
        if bare {
            return true;
        }
        k = end;
    }
    last == b'\r'
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

/// The types of part the walk reads for what they are (other than text),
/// as (type, subtype, both as [`content_type`] writes them).
const READ_TYPES: [(&str, &str, &str); 6] = [
    ("message", "delivery-status", "message/delivery-status"),
    (
        "message",
        "global-delivery-status",
        "message/global-delivery-status",
    ),
    ("message", "rfc822", "message/rfc822"),
    ("message", "global", "message/global"),
    ("text", "rfc822-headers", "text/rfc822-headers"),
    ("message", "global-headers", "message/global-headers"),
];

/// The part's `type/subtype` as [`content_type`] writes it, when it is one
/// of [`READ_TYPES`]; compared in place, without a lowercase copy.
fn read_type(part: &MessagePart<'_>) -> Option<&'static str> {
    let ct = part.content_type()?;
    let sub = ct.subtype()?;
    let ctype = ct.ctype();
    READ_TYPES
        .into_iter()
        .find(|(t, s, _)| sub.eq_ignore_ascii_case(s) && ctype.eq_ignore_ascii_case(t))
        .map(|(_, _, both)| both)
}

/// The bytes as text, invalid UTF-8 replaced; the check for valid UTF-8
/// comes first, as it is the faster.
fn utf8(b: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(b) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(b),
    }
}

/// As [`utf8`], for bytes owned: kept without a copy when they are UTF-8.
fn utf8_owned(b: Vec<u8>) -> String {
    String::from_utf8(b).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// A body transfer encoding that mail-parser decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TransferEncoding {
    Base64,
    QuotedPrintable,
}

/// The part's Content-Transfer-Encoding when it is one mail-parser
/// decodes: the last such field, read as text, as mail-parser's full parse
/// reads it.
fn transfer_encoding(msg: &Message<'_>, part: &MessagePart<'_>) -> Option<TransferEncoding> {
    let bytes = raw_value(msg, part, &HeaderName::ContentTransferEncoding)?;
    match MessageStream::new(bytes).parse_unstructured() {
        HeaderValue::Text(t) if t.eq_ignore_ascii_case("base64") => Some(TransferEncoding::Base64),
        HeaderValue::Text(t) if t.eq_ignore_ascii_case("quoted-printable") => {
            Some(TransferEncoding::QuotedPrintable)
        }
        _ => None,
    }
}

/// Most returned messages nested one in another that a bounce may hold.
/// Deeper nesting is refused: reading it, and dropping it, would recurse
/// once per level and could run out of stack.
const MAX_NESTED_MESSAGES: usize = 100;

/// How deeply messages nest in `msg` (0: no returned message), counted
/// without recursion.
fn nesting(msg: &Message<'_>) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(msg, 0usize)];
    while let Some((m, depth)) = stack.pop() {
        deepest = deepest.max(depth);
        for p in &m.parts {
            if let Some(nested) = p.message() {
                stack.push((nested, depth + 1));
            }
        }
    }
    deepest
}

/// Drops `msg` one nested message at a time: mail-parser's own drop
/// recurses once per level.
fn dismantle(msg: Message<'_>) {
    let mut stack = vec![msg];
    while let Some(mut m) = stack.pop() {
        for part in &mut m.parts {
            if part.is_message() {
                if let PartType::Message(nested) =
                    std::mem::replace(&mut part.body, PartType::Multipart(Vec::new()))
                {
                    stack.push(nested);
                }
            }
        }
    }
}

/// Whether mail-parser, reading bodies as written, may have read `msg`
/// otherwise than decoding them would: a `message/rfc822` or
/// `message/global` part, or a part without Content-Type (a digest's
/// message), whose body is base64 or quoted-printable is taken as written
/// for the returned message, its encoded text for that message's header;
/// what follows can then be lost or misplaced. Such a part shows itself,
/// or, when the damage swallowed it, the damage does: the message handed
/// back is not the one that starts at the first byte.
fn misread(msg: &Message<'_>) -> bool {
    msg.parts.first().is_none_or(|p| p.offset_header != 0) || encoded_message(msg)
}

/// Whether some `message/*` part of `msg`, at any depth, has a body
/// transfer encoding.
fn encoded_message(msg: &Message<'_>) -> bool {
    msg.parts.iter().any(|part| {
        let message_like = match part.content_type() {
            Some(ct) => {
                ct.ctype().eq_ignore_ascii_case("message")
                    && ct.subtype().is_some_and(|s| {
                        s.eq_ignore_ascii_case("rfc822") || s.eq_ignore_ascii_case("global")
                    })
            }
            None => true,
        };
        (message_like && transfer_encoding(msg, part).is_some())
            || part.message().is_some_and(encoded_message)
    })
}

/// The boundary that ends each part of `msg`: that of the multipart that
/// holds it, else `outer`, the one that ends `msg` itself. One pass over
/// the parts, however many there are.
fn enclosing_boundaries<'m>(
    msg: &'m Message<'m>,
    outer: Option<&'m [u8]>,
) -> Vec<Option<&'m [u8]>> {
    let mut ends = vec![outer; msg.parts.len()];
    for p in &msg.parts {
        if let Some(children) = p.sub_parts() {
            let boundary = p
                .content_type()
                .and_then(|ct| ct.attribute("boundary"))
                .map_or(&b""[..], str::as_bytes);
            for &c in children {
                if let Some(e) = ends.get_mut(c as usize) {
                    *e = Some(boundary);
                }
            }
        }
    }
    ends
}

/// A part's body, decoded.
enum Body<'m> {
    Text(Cow<'m, str>),
    Html(Cow<'m, str>),
    Bytes(Cow<'m, [u8]>),
}

impl<'m> Body<'m> {
    fn bytes(self) -> Cow<'m, [u8]> {
        match self {
            Body::Text(Cow::Borrowed(t)) | Body::Html(Cow::Borrowed(t)) => {
                Cow::Borrowed(t.as_bytes())
            }
            Body::Text(Cow::Owned(t)) | Body::Html(Cow::Owned(t)) => Cow::Owned(t.into_bytes()),
            Body::Bytes(b) => b,
        }
    }

    fn text(self) -> Cow<'m, str> {
        match self {
            Body::Text(t) | Body::Html(t) => t,
            Body::Bytes(Cow::Borrowed(b)) => utf8(b),
            Body::Bytes(Cow::Owned(b)) => Cow::Owned(utf8_owned(b)),
        }
    }
}

/// The body as mail-parser stored it.
fn as_stored<'m>(part: &'m MessagePart<'m>) -> Body<'m> {
    match &part.body {
        PartType::Text(t) => Body::Text(Cow::Borrowed(t.as_ref())),
        PartType::Html(t) => Body::Html(Cow::Borrowed(t.as_ref())),
        PartType::Binary(b) | PartType::InlineBinary(b) => Body::Bytes(Cow::Borrowed(b.as_ref())),
        PartType::Message(m) => Body::Bytes(Cow::Borrowed(m.raw_message())),
        PartType::Multipart(_) => Body::Text(Cow::Borrowed("")),
    }
}

/// Where a part sits: its message, its index there, and the boundary that
/// ends it.
#[derive(Clone, Copy)]
struct Place<'m> {
    msg: &'m Message<'m>,
    index: usize,
    boundary: Option<&'m [u8]>,
}

/// The body of the part at `at`, as mail-parser's full parse gives it:
/// undone from its transfer encoding by mail-parser's decoder, reading
/// from where the body starts to the boundary that ends it, then from its
/// charset. A body that does not decode is read as it is written (where
/// mail-parser would read it as plain text whatever its type). `decode`
/// is false when the message was parsed by [`decoding_parser`].
fn body<'m>(at: Place<'m>, decode: bool) -> Body<'m> {
    let part = &at.msg.parts[at.index];
    let stored = as_stored(part);
    if !decode || part.is_encoding_problem || part.is_message() {
        return stored;
    }
    let Some(encoding) = transfer_encoding(at.msg, part) else {
        return stored;
    };
    let Some(from) = at.msg.raw_message.get(part.offset_body as usize..) else {
        return stored;
    };
    let boundary = at.boundary.unwrap_or(b"");
    let mut stream = MessageStream::new(from);
    let (end, bytes) = match encoding {
        TransferEncoding::Base64 => stream.decode_base64_mime(boundary),
        TransferEncoding::QuotedPrintable => stream.decode_quoted_printable_mime(boundary),
    };
    if end == usize::MAX {
        return stored;
    }
    let text = |bytes: Cow<'_, [u8]>| -> Cow<'m, str> {
        let charset = part
            .content_type()
            .and_then(|ct| ct.attribute("charset"))
            .and_then(|c| charset_decoder(c.as_bytes()));
        Cow::Owned(match charset {
            Some(decode) => decode(&bytes),
            None => utf8_owned(bytes.into_owned()),
        })
    };
    match stored {
        Body::Text(_) => Body::Text(text(bytes)),
        Body::Html(_) => Body::Html(text(bytes)),
        Body::Bytes(_) => Body::Bytes(bytes),
    }
}

struct Walk<'m> {
    reports: Vec<DeliveryStatus>,
    warnings: Vec<Warning>,
    human: Option<Cow<'m, str>>,
    /// All top-level plain-text parts, for the legacy reader.
    prose: Vec<Cow<'m, str>>,
    /// Top-level HTML parts, decoded and converted only when there is no
    /// plain text.
    html: Vec<Place<'m>>,
    /// Whether bodies are still as written (see [`parser`]).
    decode: bool,
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
            .map(|&at| mail_parser::decoders::html::html_to_text(&body(at, self.decode).text()))
            .collect::<Vec<_>>()
            .join("\n")
            .into()
    }
}

/// Reads the parts of `msg` into `st`; `outer` is the boundary that ends
/// `msg` (see [`enclosing_boundaries`]).
fn walk<'m>(
    msg: &'m Message<'m>,
    outer: Option<&'m [u8]>,
    depth: usize,
    st: &mut Walk<'m>,
    limits: &DsnLimits,
) -> Result<(), DsnError> {
    let root_children: &[u32] = msg.parts.first().and_then(|p| p.sub_parts()).unwrap_or(&[]);
    let root_is_multipart = msg.parts.first().is_some_and(|p| p.is_multipart());
    let ends = enclosing_boundaries(msg, outer);
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
        let ct_s = read_type(part).unwrap_or("");
        let at = Place {
            msg,
            index: i,
            boundary: ends[i],
        };
        match ct_s {
            "message/delivery-status" | "message/global-delivery-status" => {
                let direct = i == 0 || root_children.contains(&(i as u32));
                if depth == 0 && !direct {
                    st.warnings.push(Warning::new(
                        WarningKind::NestedStatusPart,
                        format!("{ct_s} part is nested below the top-level multipart"),
                    ));
                }
                let text = body(at, st.decode).text();
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
                let raw = body(at, st.decode).bytes();
                let (message_id, subject) = id_and_subject(&raw);
                st.returned = Some(Returned {
                    kind: ReturnedKind::HeadersOnly,
                    content_type: ct_s.to_string(),
                    message_id,
                    subject,
                });
            }
            _ if depth == 0 && part.is_text() => {
                if part.is_text_html() {
                    st.html.push(at);
                    continue;
                }
                if st.human.is_some() && st.prose_len >= MAX_LEGACY_TEXT {
                    continue;
                }
                let text = body(at, st.decode).text();
                if st.human.is_none() && !text.trim().is_empty() {
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
                walk(nested, ends[i], depth + 1, st, limits)?;
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
    parse_parts(bytes, limits, false, Bodies::AsNeeded)
}

/// When bodies are decoded from their transfer encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bodies {
    /// The parts that are read, when they are read (see [`parser`]).
    AsNeeded,
    /// All of them, by mail-parser as it parses: the reading the first
    /// must agree with.
    #[cfg_attr(not(test), allow(dead_code))]
    All,
}

fn parse_parts(
    bytes: &[u8],
    limits: &DsnLimits,
    refolded: bool,
    bodies: Bodies,
) -> Result<Dsn, DsnError> {
    let mut warnings = Vec::new();
    let normalised = normalise_cr(bytes);
    if normalised.is_some() {
        warnings.push(Warning::new(
            WarningKind::LineEndings,
            "bare CR line ends normalised to LF",
        ));
    }
    let input: &[u8] = normalised.as_deref().unwrap_or(bytes);
    let read = |p: &MessageParser| -> Result<Message<'_>, DsnError> {
        let msg = p.parse(input).ok_or(DsnError::Unreadable)?;
        if nesting(&msg) > MAX_NESTED_MESSAGES {
            dismantle(msg);
            return Err(DsnError::TooDeep {
                limit: MAX_NESTED_MESSAGES,
            });
        }
        Ok(msg)
    };
    let (msg, decode) = match bodies {
        Bodies::AsNeeded => match read(parser()) {
            Ok(msg) if !misread(&msg) => (msg, true),
            // Misread, or nested too deep, which a misread can cause: the
            // encoded text of one returned message taken for the header of
            // the next, again and again.
            Ok(_) | Err(DsnError::TooDeep { .. }) => (read(decoding_parser())?, false),
            Err(e) => return Err(e),
        },
        Bodies::All => (read(decoding_parser())?, false),
    };
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
        decode,
        prose_len: 0,
        returned: None,
    };
    walk(&msg, None, 0, &mut st, limits)?;
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
            let repaired =
                refold_boundary(input).map(|fixed| parse_parts(&fixed, limits, true, bodies));
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
            // The quoted message is not part of the human-readable text
            // when that text is the whole prose (a single text part, which
            // a decoded body holds in a copy of its own).
            if let Some(h) = &st.human {
                if h.as_ref() == prose.as_ref() && at <= h.len() {
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

/// The Message-ID and Subject of a header block (the first of each),
/// decoded by mail-parser's field parsers (a message id, unstructured
/// text), read in one pass over its lines.
fn id_and_subject(raw: &[u8]) -> (Option<String>, Option<String>) {
    let (mut id, mut subject) = (None, None);
    let mut pos = 0;
    while pos < raw.len() && (id.is_none() || subject.is_none()) {
        let end = find_byte(&raw[pos..], b'\n').map_or(raw.len(), |e| pos + e + 1);
        let line = &raw[pos..end];
        if line == b"\n" || line == b"\r\n" {
            break;
        }
        let named = |name: &str| {
            line.len() > name.len()
                && line[..name.len()].eq_ignore_ascii_case(name.as_bytes())
                && line[name.len()] == b':'
        };
        let value = |name: &str| MessageStream::new(&raw[pos + name.len() + 1..]);
        if id.is_none() && named("message-id") {
            id = Some(value("message-id").parse_id().as_text().map(str::to_string));
        } else if subject.is_none() && named("subject") {
            subject = Some(
                value("subject")
                    .parse_unstructured()
                    .as_text()
                    .map(str::to_string),
            );
        }
        pos = end;
    }
    (id.flatten(), subject.flatten())
}

/// A returned message quoted inline after a legacy bounce's prose: headers
/// only when nothing but blank lines follows the header block.
fn inline_returned(rest: &str) -> Option<Returned> {
    let start = legacy::inline_header_start(rest)?;
    let block = &rest[start..];
    let bytes = block.as_bytes();
    let body_at = blank_line(bytes);
    let has_body = body_at.is_some_and(|p| !block[p..].trim().is_empty());
    let (message_id, subject) = id_and_subject(bytes);
    Some(Returned {
        kind: if has_body {
            ReturnedKind::FullMessage
        } else {
            ReturnedKind::HeadersOnly
        },
        content_type: "inline".to_string(),
        message_id,
        subject,
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

    /// A body written as `how` says (0 as is, 1 base64, 2 quoted-printable,
    /// 3 as is but labelled quoted-printable): its Content-Transfer-Encoding
    /// and its bytes.
    fn encoded(how: u8, body: &[u8]) -> (&'static str, Vec<u8>) {
        match how {
            1 => {
                let mut b64 = String::new();
                email_encoding::body::base64::encode(body, &mut b64).unwrap();
                ("base64", b64.into_bytes())
            }
            2 => ("quoted-printable", quoted_printable::encode(body)),
            3 => ("Quoted-Printable", body.to_vec()),
            _ => ("7bit", body.to_vec()),
        }
    }

    /// One part: its Content-Type, how its body is written (see
    /// [`encoded`]), and its body.
    fn part(ct: &str, how: u8, body: &[u8]) -> Vec<u8> {
        let (cte, data) = encoded(how, body);
        let mut out =
            format!("Content-Type: {ct}\r\nContent-Transfer-Encoding: {cte}\r\n\r\n").into_bytes();
        out.extend_from_slice(&data);
        out
    }

    fn multipart(boundary: &str, parts: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in parts {
            out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
            out.extend_from_slice(p);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        out
    }

    /// A returned message that is a report of its own: a text part written
    /// as `text_how` says, a delivery-status part as `status_how` says.
    fn returned(text_how: u8, status_how: u8, text: &[u8], status: &[u8]) -> Vec<u8> {
        let mut m = b"Subject: returned\r\nMIME-Version: 1.0\r\n\
            Content-Type: multipart/report; boundary=\"in\"\r\n\r\n"
            .to_vec();
        m.extend(multipart(
            "in",
            &[
                part("text/plain", text_how, text),
                part("message/delivery-status", status_how, status),
            ],
        ));
        m
    }

    /// Text for bodies: prose, DSN fields, header fields, a boundary-like
    /// line, `=` and bytes that are not ASCII.
    fn body_text() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            prop_oneof![
                Just(&b"Final-Recipient: rfc822; bob@example.org\r\n"[..]),
                Just(&b"Action: failed\r\nStatus: 5.1.1\r\n"[..]),
                Just(&b"\r\n"[..]),
                Just(&b"Subject: hello\r\nMessage-ID: <m.1@example.org>\r\n"[..]),
                Just(&b"550 5.1.1 <bob@example.org>: user unknown \r\n"[..]),
                Just(&b"--not-the-boundary\r\n"[..]),
                Just(&b"caf\xc3\xa9 = 100% \xe9t\xe9\t \r\n"[..]),
                Just(&b"<p>mailbox <b>full</b></p>\r\n"[..]),
                Just(&b"=41=\r\n=ZZ =\r\n"[..]),
            ],
            0..8,
        )
        .prop_map(|v| v.concat())
    }

    /// A bounce made of the parts chosen, in the order chosen; a part may
    /// be a returned message that is multipart itself, or a single part
    /// whose body ends at the bounce's boundary.
    fn bounce() -> impl Strategy<Value = Vec<u8>> {
        let one = (0..10u8, 0..4u8, body_text(), body_text(), 0..4u8);
        (proptest::collection::vec(one, 0..5), any::<bool>(), 0..4u8).prop_map(
            |(parts, single, root_how)| {
                let mut head = b"From: MAILER-DAEMON@mx.test\r\nSubject: Undelivered\r\n\
                    MIME-Version: 1.0\r\n"
                    .to_vec();
                if single || parts.is_empty() {
                    let body = parts.first().map(|p| p.2.clone()).unwrap_or_default();
                    head.extend(part("text/plain; charset=iso-8859-1", root_how, &body));
                    return head;
                }
                let rendered: Vec<Vec<u8>> = parts
                    .iter()
                    .map(|(kind, how, a, b, inner_how)| match kind {
                        0 => part("text/plain; charset=utf-8", *how, a),
                        1 => part("text/html; charset=windows-1252", *how, a),
                        2 => part("message/delivery-status", *how, a),
                        3 => part("text/rfc822-headers", *how, a),
                        4 => {
                            // A returned message of one part, which ends
                            // where the bounce's part does.
                            let mut m = b"Content-Type: message/rfc822\r\n\r\n\
                                Subject: returned\r\n"
                                .to_vec();
                            m.extend(part("message/delivery-status", *inner_how, b));
                            m
                        }
                        5 => {
                            // A returned message with parts of its own.
                            let mut m = b"Content-Type: message/rfc822\r\n\r\n".to_vec();
                            m.extend(returned(*inner_how, *how, a, b));
                            m
                        }
                        6 | 7 => {
                            // A returned message that is itself encoded,
                            // in the bounce or inside a returned message.
                            let m = returned(0, 0, a, b);
                            let ct = ["message/rfc822", "Message/RFC822", "message/global"]
                                [usize::from(*how % 3)];
                            let encoded = part(ct, *inner_how, &m);
                            if *kind == 6 {
                                return encoded;
                            }
                            let mut outer = b"Content-Type: message/rfc822\r\n\r\n\
                                Subject: outer\r\nMIME-Version: 1.0\r\n\
                                Content-Type: multipart/mixed; boundary=\"mid\"\r\n\r\n"
                                .to_vec();
                            outer.extend(multipart(
                                "mid",
                                &[encoded, part("message/delivery-status", 0, a)],
                            ));
                            outer
                        }
                        8 => {
                            // A digest, whose parts are messages unless
                            // they say otherwise.
                            let mut m = b"Subject: returned\r\n\r\n".to_vec();
                            m.extend_from_slice(a);
                            let (cte, body) = encoded(*inner_how, &m);
                            let mut child =
                                format!("Content-Transfer-Encoding: {cte}\r\n\r\n").into_bytes();
                            child.extend(body);
                            let mut d = b"Content-Type: multipart/digest; boundary=\"dig\"\r\n\r\n"
                                .to_vec();
                            d.extend(multipart("dig", &[child, part("text/plain", *how, b)]));
                            d
                        }
                        _ => part("image/png", *how, a),
                    })
                    .collect();
                head.extend_from_slice(
                    b"Content-Type: multipart/report; report-type=delivery-status;\r\n \
                      boundary=\"outer\"\r\n\r\n",
                );
                head.extend(multipart("outer", &rendered));
                head
            },
        )
    }

    /// A base64 returned message first in the bounce: read as written, its
    /// encoded text would be taken for its header and the parts after it
    /// lost (mail-parser then gives back a message that does not start at
    /// the first byte); the bounce is read again, decoding.
    #[test]
    fn an_encoded_returned_message_is_read_decoded() {
        let inner = b"Subject: returned\r\nMIME-Version: 1.0\r\n\
            Content-Type: multipart/report; boundary=\"in\"\r\n\r\n\
            --in\r\nContent-Type: message/delivery-status\r\n\r\n\
            Final-Recipient: rfc822; inner@example.org\r\nAction: failed\r\n\
            Status: 5.1.1\r\n\r\n--in--\r\n";
        let mut raw = b"From: MAILER-DAEMON@mx.test\r\nSubject: Undelivered\r\n\
            Content-Type: multipart/report; report-type=delivery-status;\r\n boundary=\"o\"\r\n\r\n\
            --o\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            .to_vec();
        raw.extend(encoded(1, inner).1);
        raw.extend_from_slice(
            b"\r\n--o\r\nContent-Type: message/delivery-status\r\n\r\n\
            Final-Recipient: rfc822; bob@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n\
            \r\n--o--\r\n",
        );
        let as_written = parser().parse(&raw[..]).unwrap();
        assert!(misread(&as_written));
        let limits = DsnLimits::default();
        let dsn = parse_parts(&raw, &limits, false, Bodies::AsNeeded).unwrap();
        let all = parse_parts(&raw, &limits, false, Bodies::All).unwrap();
        assert_eq!(format!("{dsn:?}"), format!("{all:?}"));
        let mut addresses: Vec<_> = dsn
            .reports
            .iter()
            .flat_map(|r| &r.recipients)
            .filter_map(|r| r.final_recipient.as_ref())
            .map(|f| f.value.as_str())
            .collect();
        addresses.sort();
        assert_eq!(addresses, ["bob@example.org", "inner@example.org"]);
    }

    /// A body that does not decode keeps its type: an attachment stays out
    /// of the prose (mail-parser's full parse would read it as plain text).
    #[test]
    fn a_body_that_does_not_decode_keeps_its_type() {
        let raw = b"From: MAILER-DAEMON@mx.test\r\nSubject: Undelivered\r\n\
            Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
            --b\r\nContent-Type: text/plain\r\n\r\n\
            <bob@example.org>: user unknown\r\n\
            --b\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\n\
            iVBO-!-Rw0K\r\n--b--\r\n";
        let full = decoding_parser().parse(&raw[..]).unwrap();
        assert!(undecodable(&full) && full.parts[2].is_text());
        let limits = DsnLimits::default();
        let lazy = parse_parts(raw, &limits, false, Bodies::AsNeeded).unwrap();
        let all = parse_parts(raw, &limits, false, Bodies::All).unwrap();
        assert_eq!(lazy.human_text.as_deref(), all.human_text.as_deref());
        assert_eq!(lazy.recipients().count(), 1);
        let msg = parser().parse(&raw[..]).unwrap();
        let mut st = Walk {
            reports: Vec::new(),
            warnings: Vec::new(),
            human: None,
            prose: Vec::new(),
            html: Vec::new(),
            decode: true,
            prose_len: 0,
            returned: None,
        };
        walk(&msg, None, 0, &mut st, &limits).unwrap();
        assert_eq!(st.prose.len(), 1, "{:?}", st.prose);
    }

    /// A bounce of 20,000 quoted-printable text parts: each part's boundary
    /// is found in one pass over the parts, not a search of them all per
    /// part, and parts past the prose limit are not decoded. (With a search
    /// per part this took seconds in release.)
    #[test]
    fn many_encoded_parts_are_read_in_one_pass() {
        let mut raw = b"From: MAILER-DAEMON@mx.test\r\nSubject: Undelivered\r\n\
            Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n"
            .to_vec();
        for k in 0..20_000 {
            raw.extend_from_slice(
                format!(
                    "--b\r\nContent-Type: text/plain\r\n\
                     Content-Transfer-Encoding: quoted-printable\r\n\r\n\
                     <u{k}@example.org>: user unknown =3D\r\n"
                )
                .as_bytes(),
            );
        }
        raw.extend_from_slice(b"--b--\r\n");
        let dsn = parse_parts(&raw, &DsnLimits::default(), false, Bodies::AsNeeded).unwrap();
        let human = dsn.human_text.unwrap();
        assert_eq!(human.trim_end(), "<u0@example.org>: user unknown =");
    }

    /// Returned messages nested deeper than the limit are refused, not
    /// read by a recursion per level; base64 returned messages side by
    /// side, which read as written nest one in the next, are read by
    /// decoding, as before.
    #[test]
    fn deep_nesting_is_refused_and_encoded_neighbours_are_not_nesting() {
        let mut deep =
            b"From: a@b.test\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n".to_vec();
        for _ in 0..20_000 {
            deep.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\n");
        }
        deep.extend_from_slice(b"Subject: x\r\n\r\nhi\r\n--b--\r\n");
        let limits = DsnLimits::default();
        let limit = MAX_NESTED_MESSAGES;
        for bodies in [Bodies::AsNeeded, Bodies::All] {
            assert_eq!(
                parse_parts(&deep, &limits, false, bodies).unwrap_err(),
                DsnError::TooDeep { limit }
            );
        }
        let mut side =
            b"From: a@b.test\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n".to_vec();
        for _ in 0..20_000 {
            side.extend_from_slice(
                b"--b\r\nContent-Type:message/rfc822\r\nContent-Transfer-Encoding:base64\r\n\r\n",
            );
        }
        side.extend_from_slice(b"--b--\r\n");
        let lazy = parse_parts(&side, &limits, false, Bodies::AsNeeded).unwrap();
        let all = parse_parts(&side, &limits, false, Bodies::All).unwrap();
        assert_eq!(format!("{lazy:?}"), format!("{all:?}"));
    }

    /// Whether mail-parser's full parse met a body it could not decode.
    fn undecodable(msg: &Message<'_>) -> bool {
        msg.parts
            .iter()
            .any(|p| p.is_encoding_problem || p.message().is_some_and(undecodable))
    }

    proptest! {
        /// Decoding only the parts read, when they are read, gives what
        /// decoding every part as mail-parser parses gives, for every
        /// body that decodes.
        #[test]
        fn bodies_decoded_when_read_are_those_a_full_decode_gives(raw in bounce()) {
            // As parse_parts reads it: bare CRs made line ends.
            let input = normalise_cr(&raw).unwrap_or_else(|| raw.clone());
            let full = decoding_parser().parse(&input[..]).unwrap();
            prop_assume!(!undecodable(&full));
            let limits = DsnLimits::default();
            let lazy = parse_parts(&raw, &limits, false, Bodies::AsNeeded);
            let all = parse_parts(&raw, &limits, false, Bodies::All);
            prop_assert_eq!(format!("{lazy:?}"), format!("{all:?}"));
        }
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
