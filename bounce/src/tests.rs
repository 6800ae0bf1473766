use super::*;
use crate::Strength;

const DSN: &str = "From: Mail Delivery System <MAILER-DAEMON@mx.example.org>\r\n\
To: sender@example.com\r\n\
Subject: Undelivered Mail Returned to Sender\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status;\r\n\
\tboundary=\"B1\"\r\n\
\r\n\
--B1\r\n\
Content-Type: text/plain\r\n\
\r\n\
Your message could not be delivered.\r\n\
\r\n\
--B1\r\n\
Content-Type: message/delivery-status\r\n\
\r\n\
Reporting-MTA: dns; mx.example.org\r\n\
Original-Envelope-Id: ENV1\r\n\
Arrival-Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n\
\r\n\
Original-Recipient: rfc822;a@example.net\r\n\
Final-Recipient: rfc822; a@example.net\r\n\
Action: failed\r\n\
Status: 5.1.1\r\n\
Remote-MTA: dns; mx.example.net\r\n\
Diagnostic-Code: smtp; 550-5.1.1 no such\r\n\
\x20   550 5.1.1 user\r\n\
\r\n\
--B1\r\n\
Content-Type: text/rfc822-headers\r\n\
\r\n\
Message-ID: <m1@example.com>\r\n\
Subject: hello\r\n\
\r\n\
--B1--\r\n";

#[test]
fn parses_a_well_formed_report() {
    let d = parse(DSN.as_bytes()).unwrap();
    assert_eq!(d.content_type, "multipart/report");
    assert_eq!(d.report_type.as_deref(), Some("delivery-status"));
    assert!(!d.legacy);
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    let pm = d.per_message().unwrap();
    assert_eq!(pm.reporting_mta.as_ref().unwrap().value, "mx.example.org");
    assert_eq!(pm.original_envelope_id.as_deref(), Some("ENV1"));
    let r: Vec<_> = d.recipients().collect();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].address().as_deref(), Some("a@example.net"));
    assert_eq!(r[0].class(), Some(5));
    let reply = r[0].reply().unwrap();
    assert_eq!(reply.lines, ["5.1.1 no such", "5.1.1 user"]);
    let ret = d.returned.as_ref().unwrap();
    assert_eq!(ret.kind, ReturnedKind::HeadersOnly);
    assert_eq!(ret.subject.as_deref(), Some("hello"));
    assert!(check(&d).is_empty(), "{:?}", check(&d));
    let text = render_text(&d);
    assert!(text.contains("Recipient 1: a@example.net"), "{text}");
    let json = serde_json::to_string(&d).unwrap();
    assert!(json.contains("\"report_type\":\"delivery-status\""));
}

#[test]
fn line_ending_twins_agree() {
    let lf = DSN.replace("\r\n", "\n");
    let cr = DSN.replace("\r\n", "\r");
    let a = parse(DSN.as_bytes()).unwrap();
    let b = parse(lf.as_bytes()).unwrap();
    let c = parse(cr.as_bytes()).unwrap();
    assert_eq!(a.reports, b.reports);
    assert_eq!(a.reports, c.reports);
    assert!(c.has_warning(WarningKind::LineEndings));
}

#[test]
fn findings_cite_sections() {
    let bad = DSN
        .replace("Action: failed", "Action: bounced")
        .replace("Status: 5.1.1", "Status: 5.01.1")
        .replace("Reporting-MTA: dns; mx.example.org\r\n", "")
        .replace("report-type=delivery-status;", "");
    let d = parse(bad.as_bytes()).unwrap();
    let fs = check(&d);
    let has = |rule: &str, section: &str, s: Strength| {
        fs.iter()
            .any(|f| f.rule == rule && f.section == section && f.strength == s)
    };
    assert!(
        has("dsn.report-type.missing", "RFC 6522 §3", Strength::Must),
        "{fs:?}"
    );
    assert!(has(
        "dsn.reporting-mta.missing",
        "RFC 3464 §2.2.2",
        Strength::Must
    ));
    assert!(has("dsn.action.invalid", "RFC 3464 §2.3.3", Strength::Must));
    assert!(has(
        "dsn.status.malformed",
        "RFC 3464 §2.3.4",
        Strength::Must
    ));

    let delayed = DSN.replace("Action: failed", "Action: delayed");
    let fs = check(&parse(delayed.as_bytes()).unwrap());
    assert!(fs.iter().any(|f| f.rule == "dsn.status.class-vs-action"));

    // A delayed 4.x.x report without Will-Retry-Until is fine.
    let delayed = DSN
        .replace("Action: failed", "Action: delayed")
        .replace("Status: 5.1.1", "Status: 4.4.1")
        .replace("550-5.1.1 no such", "450-4.4.1 no such")
        .replace("550 5.1.1 user", "450 4.4.1 user");
    let fs = check(&parse(delayed.as_bytes()).unwrap());
    assert!(fs.is_empty(), "{fs:?}");

    let pipe = DSN.replace("smtp; 550-5.1.1 no such", "smtp; mailbox unavailable");
    let fs = check(&parse(pipe.as_bytes()).unwrap());
    assert!(fs.iter().any(|f| f.rule == "dsn.diagnostic-code.smtp-reply"
        && f.section == "RFC 3464 §2.3.6"
        && f.strength == Strength::Should));

    let queued = DSN.replace(
        "Your message could not be delivered.",
        "Your message is delayed; we will keep trying.",
    );
    let fs = check(&parse(queued.as_bytes()).unwrap());
    assert!(fs
        .iter()
        .any(|f| f.rule == "dsn.action.failed-but-queued" && f.strength == Strength::Should));
}

/// A qmail bounce for `user@example.net` (550 5.1.1 user unknown).
const QMAIL_BOUNCE: &str = "From: MAILER-DAEMON@mx.example.jp\n\
To: sender@example.jp\n\
Subject: failure notice\n\
\n\
Hi. This is the qmail-send program at mx.example.jp.\n\
I'm afraid I wasn't able to deliver your message to the following addresses.\n\
This is a permanent error; I've given up. Sorry it didn't work out.\n\
\n\
<user@example.net>:\n\
192.0.2.1 does not like recipient.\n\
Remote host said: 550 5.1.1 <user@example.net>... User unknown\n\
Giving up on 192.0.2.1.\n\
\n\
--- Below this line is a copy of the message.\n\
\n\
Return-Path: <sender@example.jp>\n\
To: user@example.net\n\
\n\
hello\n";

#[test]
fn legacy_qmail() {
    let d = parse(QMAIL_BOUNCE.as_bytes()).unwrap();
    assert!(d.legacy);
    assert_eq!(d.legacy_format.as_deref(), Some("qmail"));
    let r: Vec<_> = d.recipients().collect();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].address().as_deref(), Some("user@example.net"));
    assert_eq!(r[0].reply().unwrap().code, 550);
    assert_eq!(r[0].class(), Some(5));
    let ret = d.returned.as_ref().unwrap();
    assert_eq!(ret.kind, ReturnedKind::FullMessage);
    assert_eq!(ret.content_type, "inline");
}

#[test]
fn limits_and_garbage() {
    let lim = DsnLimits {
        max_size: 100,
        ..DsnLimits::default()
    };
    assert_eq!(
        parse_with(&[b'a'; 101], &lim),
        Err(DsnError::TooLarge {
            size: 101,
            limit: 100
        })
    );
    assert_eq!(parse(b""), Err(DsnError::Unreadable));
}

#[test]
fn legacy_exim() {
    let msg = "From: Mail Delivery System <Mailer-Daemon@mx.example.org>\n\
To: sender@example.org\n\
Subject: Mail delivery failed: returning message to sender\n\
Auto-Submitted: auto-replied\n\
\n\
This message was created automatically by mail delivery software.\n\
\n\
A message that you sent could not be delivered to one or more of its\n\
recipients. This is a permanent error. The following address(es) failed:\n\
\n\
  alice@example.net\n\
    SMTP error from remote mail server after RCPT TO:<alice@example.net>:\n\
    host mx.example.net [192.0.2.7]: 550 5.1.1 <alice@example.net>: Recipient address rejected\n\
  bob@example.net\n\
    SMTP error from remote mail server after RCPT TO:<bob@example.net>:\n\
    host mx.example.net [192.0.2.7]: 452 4.2.2 Mailbox full\n\
\n\
------ This is a copy of the message, including all the headers. ------\n\
\n\
From: sender@example.org\n\
To: alice@example.net, bob@example.net, carol@example.net\n\
Subject: hi\n\
\n\
hello\n";
    let d = parse(msg.as_bytes()).unwrap();
    assert!(d.legacy);
    assert_eq!(d.legacy_format.as_deref(), Some("exim"));
    let r: Vec<_> = d.recipients().collect();
    assert_eq!(r.len(), 2, "{r:?}");
    assert_eq!(r[0].address().as_deref(), Some("alice@example.net"));
    assert_eq!(r[0].reply().unwrap().code, 550);
    assert_eq!(r[0].class(), Some(5));
    assert_eq!(r[1].address().as_deref(), Some("bob@example.net"));
    assert_eq!(r[1].class(), Some(4));
}

#[test]
fn nested_and_global_status_parts() {
    let msg = "From: postmaster@mx.example.org\r\n\
Content-Type: multipart/mixed; boundary=\"OUT\"\r\n\
\r\n\
--OUT\r\n\
Content-Type: multipart/report; report-type=global-delivery-status; boundary=\"IN\"\r\n\
\r\n\
--IN\r\n\
Content-Type: text/plain\r\n\
\r\n\
Not delivered.\r\n\
--IN\r\n\
Content-Type: message/global-delivery-status\r\n\
\r\n\
Reporting-MTA: dns; mx.example.org\r\n\
\r\n\
Final-Recipient: utf-8; j\u{00f6}rg@b\u{00fc}cher.example\r\n\
Action: failed\r\n\
Status: 5.1.1\r\n\
\r\n\
--IN--\r\n\
--OUT--\r\n";
    let d = parse(msg.as_bytes()).unwrap();
    assert!(d.has_warning(WarningKind::NestedStatusPart));
    let rep = d.primary_reports().next().unwrap();
    assert_eq!(rep.source, Source::GlobalDeliveryStatus);
    let r = &rep.recipients[0];
    assert!(r.final_recipient.as_ref().unwrap().is_kind("utf-8"));
    assert_eq!(
        r.address().as_deref(),
        Some("j\u{00f6}rg@b\u{00fc}cher.example")
    );
    assert!(check(&d).iter().any(|f| f.rule == "dsn.content-type"));
}

#[test]
fn broken_boundary_is_recovered() {
    // The declared boundary never appears: the fields are found in the raw text.
    let msg = "From: MAILER-DAEMON@mx.example.org\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"XYZ\"\n\
\n\
--ABC\n\
Content-Type: text/plain\n\
\n\
The message could not be delivered.\n\
\n\
--ABC\n\
Content-Type: message/delivery-status\n\
\n\
Reporting-MTA: dns; mx.example.org\n\
\n\
Final-Recipient: rfc822; a@example.net\n\
Action: failed\n\
Status: 5.1.1\n\
\n\
--ABC--\n";
    let d = parse(msg.as_bytes()).unwrap();
    assert!(
        d.has_warning(WarningKind::BrokenBoundary),
        "{:?}",
        d.warnings
    );
    let r: Vec<_> = d.recipients().collect();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].address().as_deref(), Some("a@example.net"));
    assert!(!d.legacy);
}

#[test]
fn mbox_files_split_into_messages() {
    let mbox = b"From a@b Thu Apr 29 23:34:45 2015\nSubject: one\n\nbody 1\nFrom here is not a separator\n\nFrom c@d Thu Apr 29 23:34:46 2015\nSubject: two\n\nbody 2\n";
    let parts = super::split_mbox(mbox);
    assert_eq!(parts.len(), 2);
    assert!(parts[0].starts_with(b"Subject: one\n"));
    assert!(parts[0].ends_with(b"From here is not a separator\n\n"));
    assert_eq!(parts[1], b"Subject: two\n\nbody 2\n");
    let plain = b"Subject: x\n\nFrom me\n";
    assert_eq!(super::split_mbox(plain), vec![&plain[..]]);
}

#[test]
fn mbox_split_reads_cr_and_crlf_line_ends() {
    for eol in ["\r", "\r\n"] {
        let mbox = format!(
            "From a@b x{eol}Subject: one{eol}{eol}b{eol}{eol}From c@d y{eol}Subject: two{eol}"
        );
        let parts = super::split_mbox(mbox.as_bytes());
        assert_eq!(parts.len(), 2, "{eol:?}");
        assert_eq!(parts[1], format!("Subject: two{eol}").as_bytes());
    }
}

#[test]
fn warning_names_match_serde() {
    use WarningKind::*;
    for k in [
        LineEndings,
        MissingBlankLine,
        UnindentedContinuation,
        BrokenBoundary,
        NestedStatusPart,
        MalformedField,
        DuplicateField,
        MisplacedField,
        IgnoredGroup,
        Heuristic,
        Encoding,
    ] {
        assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
    }
}

#[test]
fn an_auto_reply_quoting_a_failure_subject_stays_an_auto_reply() {
    // A vacation reply to "Payment failed" is still a vacation reply; a
    // failure notice marked auto-replied is still a bounce.
    let reply = "From: Carol <carol@example.net>\n\
To: sender@example.org\n\
Subject: Re: Payment failed\n\
Auto-Submitted: auto-replied\n\
\n\
I am away until Monday.\n";
    let d = parse(reply.as_bytes()).unwrap();
    assert_eq!(d.legacy_format.as_deref(), Some("auto-reply"), "{d:?}");
    let notice = "From: mailer-daemon\n\
To: sender@example.org\n\
Subject: There was an error sending your mail\n\
Auto-Submitted: auto-replied\n\
\n\
SMTP Server <mx.example.net> rejected recipient <alice@example.net>. It responded: [550 5.1.1 User unknown]\n";
    let d = parse(notice.as_bytes()).unwrap();
    assert_ne!(d.legacy_format.as_deref(), Some("auto-reply"), "{d:?}");
    let r: Vec<_> = d.recipients().collect();
    assert_eq!(r[0].address().as_deref(), Some("alice@example.net"));
}

#[test]
fn complaints_in_a_feedback_loops_own_format_are_feedback() {
    let feedback = |text: &str| {
        let d = parse(text.as_bytes()).unwrap();
        let c = crate::classify(&d);
        (d.legacy_format.clone(), c.first().map(|c| c.reason))
    };
    let complaint = (Some("complaint".to_string()), Some(crate::Reason::Feedback));
    // Microsoft JMRP: the complained-of message comes back attached.
    let jmrp = "From: staff@hotmail.com\n\
Subject: complaint about message from 192.0.2.1\n\
To: abuse@example.org\n\
MIME-Version: 1.0\n\
Content-Type: multipart/mixed; boundary=\"b\"\n\
\n\
--b\n\
Content-Type: message/rfc822\n\
\n\
From: sender@example.org\n\
To: carol@example.net\n\
Subject: offer\n\
\n\
hello\n\
--b--\n";
    assert_eq!(feedback(jmrp), complaint);
    // The same subject from anyone else is not a feedback loop's report.
    assert_ne!(
        feedback(&jmrp.replace("staff@hotmail.com", "carol@example.net")).1,
        Some(crate::Reason::Feedback)
    );
    // Amazon SES notices in JSON.
    let ses = "From: no-reply@sns.amazonaws.com\n\
Subject: AWS Notification Message\n\
\n\
{\"notificationType\":\"Complaint\",\"complaint\":{\"complainedRecipients\":[{\"emailAddress\":\"carol@example.net\"}]}}\n";
    assert_eq!(feedback(ses), complaint);
    // Apple Mail's unsubscribe request, from the recipient itself.
    let apple = "From: carol@example.net\n\
To: opt-out@example.org\n\
Subject: unsubscribe\n\
Auto-Submitted: auto-replied\n\
X-Apple-Unsubscribe: true\n\
\n\
Apple Mail sent this email to unsubscribe.\n";
    assert_eq!(feedback(apple), complaint);
    assert_eq!(
        feedback(&apple.replace("X-Apple-Unsubscribe: true\n", "")),
        (
            Some("auto-reply".to_string()),
            Some(crate::Reason::Vacation)
        )
    );
}

#[test]
fn a_boundary_on_a_line_of_its_own_is_folded_back() {
    let text = "From: post_master@vtext.example\n\
To: sender@example.org\n\
Subject: Re: hello\n\
MIME-Version: 1.0\n\
Content-Type: multipart/mixed; boundary=\"outer\"\n\
\n\
--outer\n\
Content-Type: multipart/alternative;\n\
boundary=\"inner\"\n\
\n\
--inner\n\
Content-Type: text/plain; charset=us-ascii\n\
\n\
Error: Invalid user address\n\
Error message below:\n\
550 - Requested action not taken: no such user here\n\
\n\
  RCPT TO: carol@vtext.example\n\
--inner--\n\
--outer--\n";
    let d = parse(text.as_bytes()).unwrap();
    let r: Vec<_> = d.recipients().collect();
    assert_eq!(r.len(), 1, "{d:?}");
    assert_eq!(r[0].address().as_deref(), Some("carol@vtext.example"));
    assert!(d
        .warnings
        .iter()
        .any(|w| w.kind == WarningKind::BrokenBoundary && w.detail.contains("boundary=")));
    // An `Auto reply:` subject is an auto-reply too.
    let d = parse(b"From: carol@example.net\nTo: sender@example.org\nSubject: Auto reply: hello\n\nI'm away.\n").unwrap();
    assert_eq!(d.legacy_format.as_deref(), Some("auto-reply"));
}

#[test]
fn a_bounce_quoting_a_complaint_notice_stays_a_bounce() {
    let text = QMAIL_BOUNCE.replace(
        "Giving up on 192.0.2.1.\n",
        "{\"notificationType\":\"Complaint\"}\n",
    );
    assert!(text.contains("notificationType"), "the notice is quoted");
    let d = parse(text.as_bytes()).unwrap();
    assert_ne!(d.legacy_format.as_deref(), Some("complaint"), "{d:?}");
    let c = crate::classify(&d);
    assert_eq!(c[0].reason, crate::Reason::UserUnknown, "{c:?}");
}
