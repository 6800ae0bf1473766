//! DSN parsing: RFC 3464 §2.1 field groups of a message/delivery-status body.
//!
//! The body is a sequence of RFC 822 style header fields: one group of
//! per-message fields, then one group per recipient, groups separated by a
//! blank line. Real reports break this in many ways; each repair made here
//! is reported as a [`Warning`].

use super::{
    Action, DiagnosticCode, DsnError, DsnLimits, PerMessage, Recipient, StatusField, TypedValue,
    Warning, WarningKind,
};
use std::borrow::Cow;

use crate::reply::{parse_diagnostic, EnhancedStatus};

/// Where a known field belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Message,
    Recipient,
    Other,
}

/// Per-message fields (RFC 3464 §2.2), then per-recipient fields (§2.3).
const MESSAGE_FIELDS: usize = 5;
const KNOWN: [&str; 14] = [
    "reporting-mta",
    "original-envelope-id",
    "arrival-date",
    "received-from-mta",
    "dsn-gateway",
    "original-recipient",
    "final-recipient",
    "action",
    "status",
    "remote-mta",
    "diagnostic-code",
    "last-attempt-date",
    "final-log-id",
    "will-retry-until",
];

fn known(name: &str) -> Option<usize> {
    KNOWN.iter().position(|k| k.eq_ignore_ascii_case(name))
}

/// One unfolded field: name as written and value with folds joined.
#[derive(Debug, Clone)]
struct RawField<'a> {
    name: &'a str,
    value: Cow<'a, str>,
    /// Its place in [`KNOWN`], looked up once.
    known: Option<usize>,
}

impl<'a> RawField<'a> {
    fn new(name: &'a str, value: Cow<'a, str>) -> Self {
        RawField {
            name,
            value,
            known: known(name),
        }
    }

    /// The lowercase name when it is a known DSN field, else `""`.
    fn canon(&self) -> &'static str {
        self.known.map_or("", |i| KNOWN[i])
    }

    fn scope(&self) -> Scope {
        match self.known {
            Some(i) if i < MESSAGE_FIELDS => Scope::Message,
            Some(_) => Scope::Recipient,
            None => Scope::Other,
        }
    }
}

/// Splits `text` into groups of unfolded fields.
///
/// Stops at a line that looks like a MIME boundary (`--...`), which happens
/// when a report's boundaries are damaged and the delivery-status part runs
/// into the next part.
fn split_groups<'a>(
    text: &'a str,
    limits: &DsnLimits,
    warnings: &mut Vec<Warning>,
) -> Result<Vec<Vec<RawField<'a>>>, DsnError> {
    let mut groups: Vec<Vec<RawField<'a>>> = Vec::new();
    let mut current: Vec<RawField<'a>> = Vec::new();
    for (n, line) in text.split('\n').enumerate() {
        if n >= limits.max_field_lines {
            return Err(DsnError::TooManyFieldLines {
                limit: limits.max_field_lines,
            });
        }
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            if !current.is_empty() {
                groups.push(std::mem::take(&mut current));
            }
            continue;
        }
        if line.starts_with("--") && !line.contains(':') {
            warnings.push(Warning::new(
                WarningKind::BrokenBoundary,
                format!(
                    "delivery-status fields end at a stray boundary line {:?}",
                    clip(line)
                ),
            ));
            break;
        }
        let first = line.as_bytes()[0];
        if first == b' ' || first == b'\t' {
            match current.last_mut() {
                Some(f) => append_fold(&mut f.value, line),
                None => match groups.last_mut().and_then(|g| g.last_mut()) {
                    // A folded line after a blank line: the blank line was stray.
                    Some(f) => {
                        warnings.push(Warning::new(
                            WarningKind::MalformedField,
                            format!("continuation line after a blank line: {:?}", clip(line)),
                        ));
                        append_fold(&mut f.value, line);
                    }
                    None => warnings.push(Warning::new(
                        WarningKind::MalformedField,
                        format!("continuation line with no field: {:?}", clip(line)),
                    )),
                },
            }
            continue;
        }
        match field_name(line) {
            Some((name, value)) => current.push(RawField::new(name, Cow::Borrowed(value.trim()))),
            None => match current.last_mut() {
                Some(f) => {
                    warnings.push(Warning::new(
                        WarningKind::UnindentedContinuation,
                        format!(
                            "line without a field name taken as continuation of {}: {:?}",
                            f.name,
                            clip(line)
                        ),
                    ));
                    append_fold(&mut f.value, line);
                }
                None => warnings.push(Warning::new(
                    WarningKind::MalformedField,
                    format!("line is not a field: {:?}", clip(line)),
                )),
            },
        }
    }
    if !current.is_empty() {
        groups.push(current);
    }
    Ok(groups)
}

fn clip(s: &str) -> String {
    s.chars().take(80).collect()
}

fn append_fold(value: &mut Cow<'_, str>, line: &str) {
    let t = line.trim();
    if t.is_empty() {
        return;
    }
    let value = value.to_mut();
    let kept = value.trim_end().len();
    value.truncate(kept);
    if !value.is_empty() {
        value.push(' ');
    }
    value.push_str(t);
}

/// `Name: value` with an RFC 5322 field name (printable ASCII except colon).
fn field_name(line: &str) -> Option<(&str, &str)> {
    let colon = line.find(':')?;
    let name = &line[..colon];
    let name_t = name.trim_end();
    if name_t.is_empty() || !name_t.bytes().all(|b| (33..=126).contains(&b) && b != b':') {
        return None;
    }
    Some((name_t, &line[colon + 1..]))
}

/// Removes RFC 822 comments (nested parentheses, outside quoted strings)
/// and trims the result.
pub(crate) fn strip_comments(s: &str) -> String {
    if !s.contains('(') {
        return s.trim().to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut depth = 0usize;
    let mut in_quote = false;
    let mut escaped = false;
    for ch in s.chars() {
        if escaped {
            if depth == 0 {
                out.push(ch);
            }
            escaped = false;
            continue;
        }
        match ch {
            '\\' => {
                escaped = true;
                if depth == 0 {
                    out.push(ch);
                }
            }
            '"' if depth == 0 => {
                in_quote = !in_quote;
                out.push(ch);
            }
            '(' if !in_quote => depth += 1,
            ')' if !in_quote && depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(ch),
            _ => {}
        }
    }
    // Collapse the blanks a removed comment leaves behind.
    let mut t = String::with_capacity(out.len());
    for w in out.split_whitespace() {
        if !t.is_empty() {
            t.push(' ');
        }
        t.push_str(w);
    }
    t
}

/// `type ; value` as in `rfc822; user@example.com`. Comments are stripped
/// from the value when `strip` is set.
fn typed(raw: &str, strip: bool) -> TypedValue {
    let (kind, value) = match raw.split_once(';') {
        Some((k, v)) => {
            let k = strip_comments(k);
            let valid = !k.is_empty()
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
            if valid {
                (Some(k), v)
            } else {
                (None, raw)
            }
        }
        None => (None, raw),
    };
    let value = if strip {
        strip_comments(value)
    } else {
        value.trim().to_string()
    };
    TypedValue {
        raw: raw.to_string(),
        kind,
        value,
    }
}

fn status_field(raw: &str) -> StatusField {
    let clean = strip_comments(raw);
    let token = clean.split_whitespace().next().unwrap_or("");
    let code = token.parse::<EnhancedStatus>().ok();
    StatusField {
        raw: raw.to_string(),
        code,
    }
}

fn diagnostic(raw: &str) -> DiagnosticCode {
    let value = typed(raw, false);
    let reply = match value.kind.as_deref() {
        Some(k) if k.eq_ignore_ascii_case("smtp") => parse_diagnostic(&value.value),
        _ => None,
    };
    DiagnosticCode { value, reply }
}

fn set_once<T>(slot: &mut Option<T>, v: T, name: &str, warnings: &mut Vec<Warning>) {
    if slot.is_some() {
        warnings.push(Warning::new(
            WarningKind::DuplicateField,
            format!("{name} appears more than once in a group; the last one is kept"),
        ));
    }
    *slot = Some(v);
}

fn apply_message_field(pm: &mut PerMessage, f: RawField<'_>, warnings: &mut Vec<Warning>) {
    match f.canon() {
        "reporting-mta" => set_once(
            &mut pm.reporting_mta,
            typed(&f.value, true),
            f.name,
            warnings,
        ),
        "original-envelope-id" => set_once(
            &mut pm.original_envelope_id,
            f.value.to_string(),
            f.name,
            warnings,
        ),
        "arrival-date" => set_once(&mut pm.arrival_date, f.value.to_string(), f.name, warnings),
        "received-from-mta" => set_once(
            &mut pm.received_from_mta,
            typed(&f.value, true),
            f.name,
            warnings,
        ),
        "dsn-gateway" => set_once(&mut pm.dsn_gateway, typed(&f.value, true), f.name, warnings),
        _ => pm
            .extensions
            .push((f.name.to_string(), f.value.into_owned())),
    }
}

fn apply_recipient_field(r: &mut Recipient, f: RawField<'_>, warnings: &mut Vec<Warning>) {
    match f.canon() {
        "original-recipient" => set_once(
            &mut r.original_recipient,
            typed(&f.value, true),
            f.name,
            warnings,
        ),
        "final-recipient" => set_once(
            &mut r.final_recipient,
            typed(&f.value, true),
            f.name,
            warnings,
        ),
        "action" => {
            let raw = f.value.to_string();
            set_once(&mut r.action, Action::parse(&raw), f.name, warnings)
        }
        "status" => set_once(&mut r.status, status_field(&f.value), f.name, warnings),
        "remote-mta" => set_once(&mut r.remote_mta, typed(&f.value, true), f.name, warnings),
        "diagnostic-code" => set_once(
            &mut r.diagnostic_code,
            diagnostic(&f.value),
            f.name,
            warnings,
        ),
        "last-attempt-date" => set_once(
            &mut r.last_attempt_date,
            f.value.to_string(),
            f.name,
            warnings,
        ),
        "final-log-id" => set_once(&mut r.final_log_id, f.value.to_string(), f.name, warnings),
        "will-retry-until" => set_once(
            &mut r.will_retry_until,
            f.value.to_string(),
            f.name,
            warnings,
        ),
        _ => r
            .extensions
            .push((f.name.to_string(), f.value.into_owned())),
    }
}

/// Whether `f` must open a new recipient group given what `r` already has:
/// a recipient field that is already set, or an Original-Recipient that
/// does not directly follow the group's Final-Recipient while other fields
/// already describe the group (the next group's address comes first).
fn starts_new_recipient(r: &Recipient, canon: &str, last: &str) -> bool {
    match canon {
        "original-recipient" => {
            r.original_recipient.is_some()
                || (r.final_recipient.is_some() && !last.eq_ignore_ascii_case("final-recipient"))
        }
        "final-recipient" => r.final_recipient.is_some(),
        "action" => r.action.is_some(),
        "status" => r.status.is_some(),
        "remote-mta" => r.remote_mta.is_some(),
        "diagnostic-code" => r.diagnostic_code.is_some(),
        "last-attempt-date" => r.last_attempt_date.is_some(),
        "final-log-id" => r.final_log_id.is_some(),
        "will-retry-until" => r.will_retry_until.is_some(),
        _ => false,
    }
}

fn has_recipient_data(r: &Recipient) -> bool {
    r.final_recipient.is_some()
        || r.original_recipient.is_some()
        || r.action.is_some()
        || r.status.is_some()
}

/// Parses a delivery-status body into per-message fields and recipients.
pub(crate) fn parse_status_body(
    text: &str,
    limits: &DsnLimits,
    warnings: &mut Vec<Warning>,
) -> Result<(PerMessage, Vec<Recipient>), DsnError> {
    let groups = split_groups(text, limits, warnings)?;
    let mut pm = PerMessage::default();
    let mut recipients: Vec<Recipient> = Vec::new();
    let mut in_message = true;
    let mut cur: Option<Recipient> = None;
    // The name of the group's previous field.
    let mut last: &str = "";
    for (gi, group) in groups.into_iter().enumerate() {
        // A group made only of per-message fields after the first group.
        if gi > 0 {
            if let Some(r) = cur.take() {
                push_recipient(&mut recipients, r, warnings);
            }
            in_message = false;
            last = "";
        }
        for f in group {
            let sc = f.scope();
            if in_message {
                match sc {
                    Scope::Message | Scope::Other => {
                        apply_message_field(&mut pm, f, warnings);
                        continue;
                    }
                    Scope::Recipient => {
                        if gi == 0 && !pm.is_empty() {
                            warnings.push(Warning::new(
                                WarningKind::MissingBlankLine,
                                format!(
                                    "no blank line between the per-message fields and {}",
                                    f.name
                                ),
                            ));
                        }
                        in_message = false;
                    }
                }
            }
            let r = cur.get_or_insert_with(Recipient::default);
            if starts_new_recipient(r, f.canon(), last) {
                warnings.push(Warning::new(
                    WarningKind::MissingBlankLine,
                    format!("no blank line before {} of the next recipient", f.name),
                ));
                if let Some(done) = cur.take() {
                    push_recipient(&mut recipients, done, warnings);
                }
            }
            let r = cur.get_or_insert_with(Recipient::default);
            last = f.name;
            if sc == Scope::Message {
                if pm.get(f.name).is_none() {
                    warnings.push(Warning::new(
                        WarningKind::MisplacedField,
                        format!(
                            "per-message field {} found among per-recipient fields",
                            f.name
                        ),
                    ));
                    apply_message_field(&mut pm, f, warnings);
                } else {
                    r.extensions
                        .push((f.name.to_string(), f.value.into_owned()));
                }
                continue;
            }
            apply_recipient_field(r, f, warnings);
            if recipients.len() >= limits.max_recipients {
                return Err(DsnError::TooManyRecipients {
                    limit: limits.max_recipients,
                });
            }
        }
    }
    if let Some(r) = cur.take() {
        push_recipient(&mut recipients, r, warnings);
    }
    Ok((pm, recipients))
}

fn push_recipient(out: &mut Vec<Recipient>, r: Recipient, warnings: &mut Vec<Warning>) {
    if has_recipient_data(&r) {
        out.push(r);
    } else {
        let names: Vec<&str> = r.extensions.iter().map(|(n, _)| n.as_str()).collect();
        warnings.push(Warning::new(
            WarningKind::IgnoredGroup,
            format!(
                "group without recipient fields ignored ({})",
                clip(&names.join(", "))
            ),
        ));
    }
}

/// Finds the start of DSN fields in free text (a report whose MIME structure
/// is broken): the first line beginning with `Reporting-MTA:`,
/// `Final-Recipient:` or `Original-Recipient:`, if followed by an `Action:`
/// or `Status:` line soon after.
pub(crate) fn find_status_block(text: &[u8]) -> Option<usize> {
    let mut offset = 0usize;
    let mut candidate: Option<usize> = None;
    let mut lines_since = 0usize;
    while offset < text.len() {
        let start = offset;
        let rest = &text[start..];
        let line = &rest[..super::find_byte(rest, b'\n').unwrap_or(rest.len())];
        offset += line.len() + 1;
        // Only lines opening with Re, Fi, Or, Ac or St can matter.
        let lead = [
            line.first().map_or(0, u8::to_ascii_lowercase),
            line.get(1).map_or(0, u8::to_ascii_lowercase),
        ];
        if !matches!(&lead, b"re" | b"fi" | b"or" | b"ac" | b"st") {
            if candidate.is_some() {
                lines_since += 1;
                if lines_since > 12 {
                    candidate = None;
                }
            }
            continue;
        }
        let starts =
            |p: &str| line.len() >= p.len() && line[..p.len()].eq_ignore_ascii_case(p.as_bytes());
        if candidate.is_none() {
            if starts("reporting-mta:")
                || starts("final-recipient:")
                || starts("original-recipient:")
            {
                candidate = Some(start);
                lines_since = 0;
            }
            continue;
        }
        lines_since += 1;
        if starts("action:") || starts("status:") {
            return candidate;
        }
        if lines_since > 12 {
            candidate = None;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (PerMessage, Vec<Recipient>, Vec<Warning>) {
        let mut w = Vec::new();
        let (pm, r) = parse_status_body(text, &DsnLimits::default(), &mut w).unwrap();
        (pm, r, w)
    }

    #[test]
    fn well_formed() {
        let (pm, r, w) = parse(
            "Reporting-MTA: dns; mx.example.org\r\nArrival-Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\n\
             Original-Recipient: rfc822;a@example.com\r\nFinal-Recipient: rfc822; a@example.com\r\n\
             Action: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 no such\r\n user\r\n\r\n\
             Final-Recipient: rfc822; b@example.com\r\nAction: delayed\r\nStatus: 4.4.1 (timeout)\r\n\
             X-Queue: 12\r\n",
        );
        assert!(w.is_empty(), "{w:?}");
        let mta = pm.reporting_mta.unwrap();
        assert_eq!(mta.kind.as_deref(), Some("dns"));
        assert_eq!(mta.value, "mx.example.org");
        assert_eq!(r.len(), 2);
        assert_eq!(
            r[0].final_recipient.as_ref().unwrap().value,
            "a@example.com"
        );
        let d = r[0].diagnostic_code.as_ref().unwrap();
        assert_eq!(d.value.raw, "smtp; 550 5.1.1 no such user");
        assert_eq!(d.reply.as_ref().unwrap().code, 550);
        assert_eq!(
            r[1].status.as_ref().unwrap().code.unwrap().to_string(),
            "4.4.1"
        );
        assert_eq!(r[1].status.as_ref().unwrap().raw, "4.4.1 (timeout)");
        assert_eq!(r[1].extensions, [("X-Queue".to_string(), "12".to_string())]);
    }

    #[test]
    fn missing_blank_lines() {
        let (pm, r, w) = parse(
            "Reporting-MTA: dns; mx\nFinal-Recipient: rfc822; a@x\nAction: failed\nStatus: 5.0.0\n\
             Final-Recipient: rfc822; b@x\nAction: failed\nStatus: 5.0.0\n",
        );
        assert!(pm.reporting_mta.is_some());
        assert_eq!(r.len(), 2);
        assert_eq!(
            w.iter()
                .filter(|w| w.kind == WarningKind::MissingBlankLine)
                .count(),
            2
        );
    }

    #[test]
    fn unindented_continuation_and_boundary() {
        let (_, r, w) = parse(
            "Reporting-MTA: dns; mx\n\nFinal-Recipient: rfc822; a@x\nAction: failed\nStatus: 5.0.0\n\
             Diagnostic-Code: smtp; 550 first part\nsecond part\n--boundary\nContent-Type: text/plain\n",
        );
        assert_eq!(
            r[0].diagnostic_code.as_ref().unwrap().value.value,
            "550 first part second part"
        );
        assert!(w
            .iter()
            .any(|w| w.kind == WarningKind::UnindentedContinuation));
        assert!(w.iter().any(|w| w.kind == WarningKind::BrokenBoundary));
    }

    #[test]
    fn comments() {
        assert_eq!(
            strip_comments("5.0.0 (permanent (nested) failure)"),
            "5.0.0"
        );
        assert_eq!(strip_comments("\"a (b)\" c"), "\"a (b)\" c");
        assert_eq!(strip_comments("(x"), "");
        let t = typed("rfc822; a@example.com (Alice)", true);
        assert_eq!(t.value, "a@example.com");
        let t = typed("no type here", true);
        assert_eq!(t.kind, None);
    }

    #[test]
    fn block_finder() {
        let t = "Hello\nReporting-MTA: dns; x\n\nFinal-Recipient: rfc822; a@b\nAction: failed\n";
        assert_eq!(find_status_block(t.as_bytes()), Some(6));
        assert_eq!(find_status_block(b"Final-Recipient: x\n"), None);
    }
}
