//! DSN parser on whole messages: never panics, and whatever it reads can be
//! judged, classified, rendered and serialised.
#![no_main]

use libfuzzer_sys::fuzz_target;
use bounce::{self as dsn, DsnError, DsnLimits};

/// Pieces of RFC 822 / MIME / RFC 3464 text and of legacy bounce prose, so
/// the fuzzer builds messages from them instead of from single bytes.
#[rustfmt::skip]
const TOKENS: &[&[u8]] = &[
    b"\r\n", b"\n", b"\r", b"\r\n\r\n", b" ", b"\t", b":", b";", b"=", b"\"", b"<", b">",
    b"@", b"(", b")", b",", b"--", b"B1", b"--B1\r\n", b"--B1--\r\n", b"--B2\r\n",
    b"From: MAILER-DAEMON@mx.test\r\n", b"To: a@src.test\r\n",
    b"Subject: Undelivered Mail Returned to Sender\r\n", b"MIME-Version: 1.0\r\n",
    b"Content-Type: ", b"multipart/report", b"multipart/mixed", b"; report-type=delivery-status",
    b"; report-type=\"global-delivery-status\"", b"; boundary=\"B1\"", b"; boundary=B2",
    b"; charset=utf-8", b"message/delivery-status", b"message/global-delivery-status",
    b"text/plain", b"text/rfc822-headers", b"message/rfc822", b"message/global",
    b"Content-Transfer-Encoding: ", b"base64", b"quoted-printable", b"7bit", b"=3D", b"=\r\n",
    b"UmVwb3J0aW5nLU1UQTogZG5zOyBteC50ZXN0", b"=?utf-8?q?caf=C3=A9?=",
    b"Reporting-MTA: dns; mx.test\r\n", b"Original-Envelope-Id: ENV1\r\n",
    b"Arrival-Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n",
    b"Original-Recipient: rfc822;b@dest.test\r\n", b"Final-Recipient: rfc822; b@dest.test\r\n",
    b"Final-Recipient: ", b"rfc822", b"utf-8", b"dns", b"smtp", b"x-unix",
    b"Action: ", b"failed", b"delayed", b"delivered", b"relayed", b"expanded",
    b"Status: ", b"5.1.1", b"4.4.7", b"2.0.0", b"5.01.1", b"Remote-MTA: dns; mx.dest.test\r\n",
    b"Diagnostic-Code: smtp; ", b"550-5.1.1 no such\r\n    550 5.1.1 user", b"550 5.1.1 unknown",
    b"Last-Attempt-Date: ", b"Will-Retry-Until: ", b"X-Postfix-Queue-ID: 1A2B\r\n",
    b"Message-ID: <m1@src.test>\r\n",
    b"Hi. This is the qmail-send program at mx.test.\r\n",
    b"I'm afraid I wasn't able to deliver your message to the following addresses.\r\n",
    b"<b@dest.test>:\r\n", b"Remote host said: ", b"Giving up on 192.0.2.1.\r\n",
    b"--- Below this line is a copy of the message.\r\n",
    b"This message was created automatically by mail delivery software.\r\n",
    b"A message that you sent could not be delivered to one or more of its recipients.\r\n",
    b"  b@dest.test\r\n", b"    SMTP error from remote mail server after RCPT TO:<b@dest.test>:\r\n",
    b"----- The following addresses had permanent fatal errors -----\r\n",
    b"   ----- Transcript of session follows -----\r\n", b"... User unknown\r\n",
    b"\xc3\xa9", b"\xff", b"\x00",
];

fn input(data: &[u8]) -> (DsnLimits, Vec<u8>) {
    let Some((&mode, rest)) = data.split_first() else {
        return (DsnLimits::default(), Vec::new());
    };
    let limits = if mode & 0x80 != 0 {
        DsnLimits {
            max_size: 1 << 20,
            max_field_lines: usize::from(mode & 0x0f) + 1,
            max_recipients: usize::from(mode >> 4 & 3) + 1,
        }
    } else {
        DsnLimits::default()
    };
    if mode & 0x40 == 0 {
        return (limits, rest.to_vec());
    }
    let mut out = Vec::new();
    for &b in rest {
        let t = TOKENS[usize::from(b) % TOKENS.len()];
        if usize::from(b) < TOKENS.len() * 2 {
            out.extend_from_slice(t);
        } else {
            out.push(b);
        }
    }
    (limits, out)
}

fuzz_target!(|data: &[u8]| {
    let (limits, msg) = input(data);
    match dsn::parse_with(&msg, &limits) {
        Ok(d) => {
            for r in d.recipients() {
                if let Some(c) = r.class() {
                    assert!((2..=5).contains(&c), "class {c} for {r:?}");
                }
                let _ = r.addresses();
            }
            // Every report obeys the recipient limit, however its
            // recipients were read (fields, recovered fields or prose).
            assert!(d
                .reports
                .iter()
                .all(|r| r.recipients.len() <= limits.max_recipients));
            // One classification per recipient, hard only for the reasons
            // that say the address cannot exist.
            let cs = dsn::classify(&d);
            assert_eq!(cs.len(), d.recipients().count());
            for c in &cs {
                assert!(!c.hard || c.reason.is_hard(c.status.map(|s| s.class)), "{c:?}");
            }
            let _ = serde_json::to_string(&cs).expect("a classification serialises");
            let _ = dsn::check(&d);
            let _ = dsn::render_text(&d);
            let _ = serde_json::to_string(&d).expect("a parsed DSN serialises");
        }
        Err(DsnError::TooLarge { size, limit }) => assert!(size > limit),
        Err(_) => {}
    }
});
