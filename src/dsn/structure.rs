//! DSN parsing: MIME structure of a report (RFC 6522 §3, RFC 6533) via mail-parser.

use std::borrow::Cow;

use mail_parser::{Message, MessageParser, MessagePart, MimeHeaders, PartType};

use super::fields::{find_status_block, parse_status_body};
use super::{
    legacy, DeliveryStatus, Dsn, DsnError, DsnLimits, Returned, ReturnedKind, Source, Warning,
    WarningKind,
};

/// Most bytes of prose handed to the legacy reader.
const MAX_LEGACY_TEXT: usize = 256 * 1024;

/// Replaces bare CR line ends with LF; `None` when there are none.
fn normalise_cr(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut bare = false;
    let mut i = 0;
    while let Some(p) = bytes[i..].iter().position(|&b| b == b'\r') {
        let at = i + p;
        if bytes.get(at + 1) != Some(&b'\n') {
            bare = true;
            break;
        }
        i = at + 1;
    }
    if !bare {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut k = 0;
    while k < bytes.len() {
        let b = bytes[k];
        if b == b'\r' {
            if bytes.get(k + 1) == Some(&b'\n') {
                out.extend_from_slice(b"\r\n");
                k += 2;
                continue;
            }
            out.push(b'\n');
        } else {
            out.push(b);
        }
        k += 1;
    }
    Some(out)
}

/// `type/subtype` lowercase, and the `report-type` parameter.
fn content_type(part: &MessagePart<'_>) -> (Option<String>, Option<String>) {
    match part.content_type() {
        Some(ct) => {
            let t = match ct.subtype() {
                Some(s) => format!("{}/{}", ct.ctype(), s),
                None => ct.ctype().to_string(),
            }
            .to_ascii_lowercase();
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

fn body_text<'a>(part: &'a MessagePart<'_>) -> Cow<'a, str> {
    match &part.body {
        PartType::Text(t) | PartType::Html(t) => Cow::Borrowed(t.as_ref()),
        PartType::Binary(b) | PartType::InlineBinary(b) => String::from_utf8_lossy(b),
        PartType::Message(m) => String::from_utf8_lossy(m.raw_message()),
        PartType::Multipart(_) => Cow::Borrowed(""),
    }
}

struct Walk<'m> {
    reports: Vec<DeliveryStatus>,
    warnings: Vec<Warning>,
    human: Option<String>,
    /// All top-level prose parts, for the legacy reader.
    prose: Vec<Cow<'m, str>>,
    prose_len: usize,
    returned: Option<Returned>,
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
                    message_id: nested.and_then(|m| m.message_id()).map(str::to_string),
                    subject: nested.and_then(|m| m.subject()).map(str::to_string),
                });
            }
            "text/rfc822-headers" | "message/global-headers"
                if depth == 0 && st.returned.is_none() =>
            {
                let raw = part.contents();
                let hdrs = MessageParser::default().parse_headers(raw);
                st.returned = Some(Returned {
                    kind: ReturnedKind::HeadersOnly,
                    content_type: ct_s.to_string(),
                    message_id: hdrs
                        .as_ref()
                        .and_then(|m| m.message_id())
                        .map(str::to_string),
                    subject: hdrs.as_ref().and_then(|m| m.subject()).map(str::to_string),
                });
            }
            _ if depth == 0 && part.is_text() => {
                let text: Cow<'m, str> = match &part.body {
                    PartType::Html(h) => Cow::Owned(mail_parser::decoders::html::html_to_text(h)),
                    PartType::Text(t) => Cow::Borrowed(t.as_ref()),
                    _ => Cow::Borrowed(""),
                };
                if st.human.is_none() && !text.trim().is_empty() && !part.is_text_html() {
                    st.human = Some(text.to_string());
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

pub(crate) fn parse_message(bytes: &[u8], limits: &DsnLimits) -> Result<Dsn, DsnError> {
    let mut warnings = Vec::new();
    let normalised = normalise_cr(bytes);
    if normalised.is_some() {
        warnings.push(Warning::new(
            WarningKind::LineEndings,
            "bare CR line ends normalised to LF",
        ));
    }
    let input: &[u8] = normalised.as_deref().unwrap_or(bytes);
    let msg = MessageParser::default()
        .parse(input)
        .ok_or(DsnError::Unreadable)?;
    let root = msg.parts.first().ok_or(DsnError::Unreadable)?;
    let (ct, report_type) = content_type(root);
    let mut st = Walk {
        reports: Vec::new(),
        warnings,
        human: None,
        prose: Vec::new(),
        prose_len: 0,
        returned: None,
    };
    walk(&msg, 0, &mut st, limits)?;

    if st.reports.iter().all(|r| r.depth > 0) {
        // No status part in the bounce itself: maybe the MIME structure is
        // broken and the fields sit in raw text.
        // Decoded prose first (fields inside a quoted-printable text part),
        // then the raw body (fields behind broken boundaries).
        let prose = st.prose.join("\n");
        let body = input.get(root.offset_body as usize..).unwrap_or(&[]);
        let raw = String::from_utf8_lossy(body);
        let text: Cow<'_, str> = if find_status_block(&prose).is_some() {
            Cow::Owned(prose)
        } else {
            raw
        };
        if let Some(start) = find_status_block(&text) {
            let mut w = Vec::new();
            let (per_message, recipients) = parse_status_body(&text[start..], limits, &mut w)?;
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
        let prose = st.prose.join("\n");
        let returned_to = returned_recipients(&msg);
        let found = legacy::extract(&prose, &returned_to, &msg);
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
        let prose: String = if st.prose.is_empty() {
            String::new()
        } else {
            st.prose.join("\n")
        };
        let returned_to = returned_recipients(&msg);
        let found = legacy::extract(&prose, &returned_to, &msg);
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

    Ok(Dsn {
        content_type: ct.unwrap_or_else(|| "text/plain".to_string()),
        report_type,
        subject: msg.subject().map(str::to_string),
        from: msg
            .from()
            .and_then(|a| a.first())
            .and_then(|a| a.address())
            .map(str::to_string),
        reports: st.reports,
        human_text: st.human,
        returned: st.returned,
        legacy: legacy_flag,
        legacy_format,
        warnings: st.warnings,
    })
}

/// Recipient addresses (To, Cc) of the first returned message, if any.
fn returned_recipients(msg: &Message<'_>) -> Vec<String> {
    let mut out = Vec::new();
    for part in msg.parts.iter().skip(1) {
        if let Some(m) = part.message() {
            for a in m.to().into_iter().chain(m.cc()) {
                for addr in a.iter() {
                    if let Some(s) = addr.address() {
                        out.push(s.to_string());
                    }
                }
            }
            break;
        }
    }
    out
}
