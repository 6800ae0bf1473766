//! DSN reporting: human-readable summary of a parsed bounce.

use std::fmt::Write;

use super::{check, classify, Classification, Dsn, ReturnedKind, Source, TypedValue};

fn tv(t: &Option<TypedValue>) -> Option<&str> {
    t.as_ref().map(|t| t.raw.as_str())
}

/// One line: reason, hard/soft, command, origin, status and evidence.
fn reason_line(c: &Classification) -> String {
    let mut s = format!("{} ({})", c.reason, if c.hard { "hard" } else { "soft" });
    if let Some(cmd) = c.command {
        let _ = write!(s, " at {cmd}");
    }
    let _ = write!(s, ", from the {}", c.origin.as_str());
    if let Some(h) = &c.host {
        let _ = write!(s, " {h}");
    }
    if let Some(st) = c.status {
        let how = match c.status_source {
            Some(super::StatusSource::Inferred) => " (inferred)",
            Some(super::StatusSource::Text) => " (from text)",
            _ => "",
        };
        let _ = write!(s, ", status {st}{how}");
    }
    let _ = write!(s, "; by {}", c.evidence);
    s
}

/// A plain-text summary: structure, per-message fields, one block per
/// recipient with its bounce reason, repairs made while parsing and
/// conformance findings.
pub fn render_text(dsn: &Dsn) -> String {
    let mut s = String::new();
    let reasons = classify(dsn);
    let mut reasons = reasons.iter();
    let _ = write!(s, "Content-Type: {}", dsn.content_type);
    if let Some(rt) = &dsn.report_type {
        let _ = write!(s, "; report-type={rt}");
    }
    s.push('\n');
    if let Some(subj) = &dsn.subject {
        let _ = writeln!(s, "Subject: {subj}");
    }
    if let Some(from) = &dsn.from {
        let _ = writeln!(s, "From: {from}");
    }
    if let Some(v) = &dsn.vendor {
        let _ = writeln!(s, "Vendor: {v} (its own wording decides the reason)");
    }
    if dsn.legacy {
        let _ = writeln!(
            s,
            "Format: legacy text bounce ({})",
            dsn.legacy_format
                .as_deref()
                .unwrap_or("unrecognised layout")
        );
    }
    for rep in dsn.primary_reports() {
        let src = match rep.source {
            Source::DeliveryStatus => "message/delivery-status",
            Source::GlobalDeliveryStatus => "message/global-delivery-status",
            Source::RecoveredFields => "fields recovered from raw text",
            Source::LegacyText => "bounce text",
        };
        let _ = writeln!(s, "Report ({src}):");
        let pm = &rep.per_message;
        let mut line = |k: &str, v: Option<&str>| {
            if let Some(v) = v {
                let _ = writeln!(s, "  {k}: {v}");
            }
        };
        line("Reporting-MTA", tv(&pm.reporting_mta));
        line("Original-Envelope-Id", pm.original_envelope_id.as_deref());
        line("Received-From-MTA", tv(&pm.received_from_mta));
        line("DSN-Gateway", tv(&pm.dsn_gateway));
        line("Arrival-Date", pm.arrival_date.as_deref());
        for (i, r) in rep.recipients.iter().enumerate() {
            let _ = writeln!(
                s,
                "  Recipient {}: {}",
                i + 1,
                r.address().unwrap_or_else(|| "(none)".into())
            );
            let mut l = |k: &str, v: Option<&str>| {
                if let Some(v) = v {
                    let _ = writeln!(s, "    {k}: {v}");
                }
            };
            l("Original-Recipient", tv(&r.original_recipient));
            l("Action", r.action.as_ref().map(|a| a.raw()));
            l("Status", r.status.as_ref().map(|x| x.raw.as_str()));
            l("Remote-MTA", tv(&r.remote_mta));
            l(
                "Diagnostic-Code",
                r.diagnostic_code.as_ref().map(|d| d.value.raw.as_str()),
            );
            l("Last-Attempt-Date", r.last_attempt_date.as_deref());
            l("Will-Retry-Until", r.will_retry_until.as_deref());
            if let Some(c) = reasons.next() {
                let _ = writeln!(s, "    Reason: {}", reason_line(c));
            }
            if r.diagnostic_code.is_none() {
                if let Some(reply) = &r.text_reply {
                    let _ = writeln!(s, "    Reply: {}", reply.to_string().replace('\n', " / "));
                }
                if let Some(st) = r.text_status {
                    let _ = writeln!(s, "    Status (from text): {st}");
                }
            }
        }
    }
    if let Some(ret) = &dsn.returned {
        let what = match ret.kind {
            ReturnedKind::FullMessage => "full message",
            ReturnedKind::HeadersOnly => "headers only",
        };
        let _ = writeln!(s, "Returned: {what} ({})", ret.content_type);
    } else {
        s.push_str("Returned: nothing\n");
    }
    if !dsn.warnings.is_empty() {
        s.push_str("Repairs:\n");
        for w in &dsn.warnings {
            let _ = writeln!(s, "  - {}: {}", w.kind.as_str(), w.detail);
        }
    }
    let findings = check(dsn);
    if findings.is_empty() {
        s.push_str("Findings: none\n");
    } else {
        s.push_str("Findings:\n");
        for f in findings {
            let _ = writeln!(
                s,
                "  [{}] {} ({}): {}",
                f.strength, f.section, f.rule, f.detail
            );
        }
    }
    s
}
