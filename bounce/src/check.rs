//! DSN judging: conformance findings against RFC 3461 §6, RFC 3464 §2 and RFC 6522 §3.
//!
//! Each rule names the section it comes from and the strength of the
//! requirement. Will-Retry-Until is optional for delayed reports (RFC 3464
//! §2.3.9), so its absence yields no finding.

use serde::Serialize;

use super::{Action, Dsn, Recipient, Source, WarningKind};
use crate::Strength;

/// One deviation from the specifications (or from common practice).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable rule identifier, e.g. `dsn.action.missing`.
    pub rule: String,
    /// Where the requirement is written, e.g. `RFC 3464 §2.3.3`.
    pub section: String,
    pub strength: Strength,
    pub detail: String,
}

fn f(rule: &str, section: &str, strength: Strength, detail: impl Into<String>) -> Finding {
    Finding {
        rule: rule.to_string(),
        section: section.to_string(),
        strength,
        detail: detail.into(),
    }
}

/// Phrases that say a message is still queued for delivery.
const STILL_QUEUED: &[&str] = &[
    "will keep trying",
    "will continue trying",
    "will continue to try",
    "still in the queue",
    "still being retried",
    "will be retried",
    "will retry",
    "no action is required on your part",
    "this is a warning message only",
    "you do not need to resend",
];

fn who(r: &Recipient, i: usize) -> String {
    r.address()
        .map(|a| format!("recipient {a}"))
        .unwrap_or_else(|| format!("recipient group {}", i + 1))
}

/// Judges a parsed report. Findings come in a stable order: message
/// structure first, then per-message fields, then each recipient.
pub fn check(dsn: &Dsn) -> Vec<Finding> {
    use Strength::*;
    let mut out = Vec::new();

    if dsn.content_type != "multipart/report" {
        out.push(f(
            "dsn.content-type",
            "RFC 3461 §6",
            Must,
            format!(
                "top-level content type is {}, not multipart/report",
                dsn.content_type
            ),
        ));
    } else {
        match dsn.report_type.as_deref() {
            None => out.push(f(
                "dsn.report-type.missing",
                "RFC 6522 §3",
                Must,
                "multipart/report has no report-type parameter",
            )),
            Some("delivery-status") | Some("global-delivery-status") => {}
            Some(other) => out.push(f(
                "dsn.report-type.wrong",
                "RFC 3464 §2",
                Must,
                format!("report-type is {other:?}, not \"delivery-status\""),
            )),
        }
    }

    let primary: Vec<_> = dsn.primary_reports().collect();
    let machine = primary.iter().any(|r| {
        matches!(
            r.source,
            Source::DeliveryStatus | Source::GlobalDeliveryStatus
        )
    });
    if !machine {
        let how = if primary.iter().any(|r| r.source == Source::RecoveredFields) {
            "no message/delivery-status part could be found through the MIME structure (fields exist in the raw text)"
        } else {
            "no message/delivery-status part"
        };
        out.push(f("dsn.status-part.missing", "RFC 3464 §2", Must, how));
    }
    if dsn.has_warning(WarningKind::NestedStatusPart) && machine {
        out.push(f(
            "dsn.status-part.position",
            "RFC 6522 §3",
            Should,
            "the delivery-status part is not a direct part of the top-level multipart/report",
        ));
    }
    if dsn.has_warning(WarningKind::BrokenBoundary) {
        out.push(f(
            "mime.boundary",
            "RFC 2046 §5.1.1",
            Must,
            "MIME boundaries do not match the declared boundary parameter",
        ));
    }
    if dsn.has_warning(WarningKind::LineEndings) {
        out.push(f(
            "mime.line-endings",
            "RFC 5322 §2.3",
            Must,
            "bare CR line endings (CR and LF must only occur together as CRLF)",
        ));
    }
    if dsn.has_warning(WarningKind::MissingBlankLine) {
        out.push(f(
            "dsn.groups.blank-line",
            "RFC 3464 §2.1",
            Must,
            "field groups are not separated by a blank line",
        ));
    }
    if dsn.has_warning(WarningKind::UnindentedContinuation) {
        out.push(f(
            "dsn.fields.folding",
            "RFC 3464 §2.1.1",
            Must,
            "a field continues on a line that does not start with white space",
        ));
    }
    if machine && dsn.returned.is_none() {
        out.push(f(
            "dsn.returned-content.absent",
            "RFC 6522 §3",
            May,
            "no returned message or header part (the third part is optional; RFC 3461 §4.3 RET asks for it)",
        ));
    }

    if !machine && dsn.legacy {
        // Prose-only bounce: field rules do not apply.
        return out;
    }

    // A phrase of the human-readable part saying the message is still queued.
    let queued: Option<&str> = dsn.human_text.as_ref().and_then(|t| {
        let lower = t.to_ascii_lowercase();
        STILL_QUEUED.iter().find(|p| lower.contains(*p)).copied()
    });
    for rep in &primary {
        let pm = &rep.per_message;
        match &pm.reporting_mta {
            None => out.push(f(
                "dsn.reporting-mta.missing",
                "RFC 3464 §2.2.2",
                Must,
                "no Reporting-MTA field",
            )),
            Some(t) if t.kind.is_none() => out.push(f(
                "dsn.reporting-mta.type",
                "RFC 3464 §2.2.2",
                Must,
                format!("Reporting-MTA {:?} has no mta-name-type", t.raw),
            )),
            Some(_) => {}
        }
        if rep.recipients.iter().all(Recipient::from_text) {
            out.push(f(
                "dsn.recipients.missing",
                "RFC 3464 §2.1",
                Must,
                "no per-recipient field group",
            ));
        }
        for (i, r) in rep
            .recipients
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.from_text())
        {
            recipient_findings(queued, r, &who(r, i), &mut out);
        }
    }
    out
}

fn recipient_findings(queued: Option<&str>, r: &Recipient, who: &str, out: &mut Vec<Finding>) {
    use Strength::*;
    match &r.final_recipient {
        None => out.push(f(
            "dsn.final-recipient.missing",
            "RFC 3464 §2.3.2",
            Must,
            format!("{who}: no Final-Recipient field"),
        )),
        Some(t) if t.kind.is_none() => out.push(f(
            "dsn.final-recipient.type",
            "RFC 3464 §2.3.2",
            Must,
            format!("{who}: Final-Recipient {:?} has no address-type", t.raw),
        )),
        Some(_) => {}
    }
    if let Some(t) = &r.original_recipient {
        if t.kind.is_none() {
            out.push(f(
                "dsn.original-recipient.type",
                "RFC 3464 §2.3.1",
                Must,
                format!("{who}: Original-Recipient {:?} has no address-type", t.raw),
            ));
        }
    }
    match &r.action {
        None => out.push(f(
            "dsn.action.missing",
            "RFC 3464 §2.3.3",
            Must,
            format!("{who}: no Action field"),
        )),
        Some(Action::Other(raw)) => out.push(f(
            "dsn.action.invalid",
            "RFC 3464 §2.3.3",
            Must,
            format!("{who}: Action {raw:?} is not failed, delayed, delivered, relayed or expanded"),
        )),
        Some(_) => {}
    }
    let status = r.status.as_ref().and_then(|s| s.code);
    match &r.status {
        None => out.push(f(
            "dsn.status.missing",
            "RFC 3464 §2.3.4",
            Must,
            format!("{who}: no Status field"),
        )),
        Some(s) if s.code.is_none() => out.push(f(
            "dsn.status.malformed",
            "RFC 3464 §2.3.4",
            Must,
            format!("{who}: Status {:?} is not an RFC 3463 status code", s.raw),
        )),
        Some(_) => {}
    }
    if let (Some(action), Some(code)) = (&r.action, status) {
        let bad = match action {
            Action::Delayed(_) => code.class == 5,
            Action::Failed(_) => code.class == 2,
            Action::Delivered(_) | Action::Relayed(_) | Action::Expanded(_) => code.class != 2,
            Action::Other(_) => false,
        };
        if bad {
            out.push(f(
                "dsn.status.class-vs-action",
                "RFC 3464 §2.3.4",
                Should,
                format!(
                    "{who}: Action {} with Status {code} (class {} contradicts the action)",
                    action.raw(),
                    code.class
                ),
            ));
        }
    }
    if let Some(d) = &r.diagnostic_code {
        if d.value.is_kind("smtp") {
            match &d.reply {
                None => out.push(f(
                    "dsn.diagnostic-code.smtp-reply",
                    "RFC 3464 §2.3.6",
                    Should,
                    format!(
                        "{who}: Diagnostic-Code of type smtp does not start with a reply code: {:?}",
                        clip(&d.value.value)
                    ),
                )),
                Some(reply) => {
                    if let Some(code) = status {
                        if reply.class() != code.class {
                            out.push(f(
                                "dsn.diagnostic-code.class",
                                "RFC 3464 §2.3.6",
                                Practice,
                                format!(
                                    "{who}: reply {} and Status {code} are of different classes",
                                    reply.code
                                ),
                            ));
                        }
                    }
                }
            }
        } else if d.value.kind.is_none() {
            out.push(f(
                "dsn.diagnostic-code.type",
                "RFC 3464 §2.3.6",
                Must,
                format!("{who}: Diagnostic-Code has no diagnostic-type"),
            ));
        }
    }
    if matches!(r.action, Some(Action::Failed(_))) {
        if let Some(p) = queued {
            out.push(f(
                "dsn.action.failed-but-queued",
                "RFC 3464 §2.3.3",
                Should,
                format!(
                    "{who}: Action failed (delivery abandoned) but the human-readable part says {p:?}"
                ),
            ));
        }
    }
}

fn clip(s: &str) -> String {
    s.chars().take(80).collect()
}
