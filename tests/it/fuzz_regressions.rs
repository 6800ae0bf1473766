//! Inputs found by the fuzz targets (fuzz/), fed back byte for byte, and the
//! properties of the DSN parser that the unit tests do not cover.
//!
//! Each test names the target that found its input.

use std::path::Path;

use mtaspec::dsn::{self, DsnError, DsnLimits, Source, WarningKind};
use mtaspec::smtp::command::{Command, CommandError};
use mtaspec::suite::{parse_scenario, SuiteError};
use proptest::prelude::*;

/// host_command: a line feed before the line end made `Other` keep a line
/// end in its argument, so the formatted command parsed to another value.
#[test]
fn host_command_stray_line_feed() {
    let input = b"BDAEHLO T x0XCLIENT NAME=x ADDR=192.0.2.1\r\r\n\n";
    assert_eq!(Command::parse(input), Err(CommandError::StrayLineFeed));
    assert_eq!(
        Command::parse(b"FOO a\n\n"),
        Err(CommandError::StrayLineFeed)
    );
    assert_eq!(
        Command::parse(b"QUIT\nRSET\r\n"),
        Err(CommandError::StrayLineFeed)
    );
    // One line end, CRLF or LF, is still the terminator.
    assert_eq!(Command::parse(b"QUIT\r\n"), Ok(Command::Quit));
    assert_eq!(Command::parse(b"QUIT\n"), Ok(Command::Quit));
}

/// dsn: a legacy text bounce, read with `max_recipients = 1`, found by the
/// `dsn` target (mode byte 0xca, token-mapped). Recipients read from prose
/// are not bounded by `DsnLimits::max_recipients` (only RFC 3464 field
/// groups are); the prose itself is bounded by its length.
const DSN_LEGACY_TWO_RECIPIENTS: &str = concat!(
    "Original-Envelope-Id: ENV1\r\n",
    "This message was created automatically by mail delivery software.\r\n",
    "MIME-Version: 1.0\r\n",
    "\t(=\r\n",
    "\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\nDiagnostic-Code: smtp; @B1 ,UmVwb3J0aW5nLU1UQTogZG5zOyBteC50ZXN0Message-ID: <m1@src.test>\r\n",
    "--B1\r\n",
    "<UmVwb3J0aW5nLU1UQTogZG5zOyBteC50ZXN0Last-Attempt-Date: 5.01.1Action: ; charset=utf-8\r\n",
    "\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n:--B1\r\n",
    "B1Subject: Undelivered Mail Returned to Sender\r\n",
    "=B1Subject: Undelivered Mail Returned to Sender\r\n",
    "UmVwb3J0aW5nLU1UQTogZG5zOyBteC50ZXN0Subject: Undelivered Mail Returned to Sender\r\n",
    "; report-type=delivery-status--B1--\r\n",
    "=Action: ; charset=utf-8--=To: a@src.test\r\n",
    "To: a@src.test\r\n",
    " <=Reporting-MTA: dns; mx.test\r\n",
    "From: MAILER-DAEMON@mx.test\r\n",
    "\":smtpOriginal-Recipient: rfc822;b@dest.test\r\n",
    "Original-Recipient: rfc822;b@dest.test\r\n",
    "\t(=<\r\n",
    "\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n550-5.1.1 no such\r\n",
    "    550 5.1.1 user\r\n",
    "\r\n\r\n",
);

fn one_recipient() -> DsnLimits {
    DsnLimits {
        max_size: 1 << 20,
        max_field_lines: 11,
        max_recipients: 1,
    }
}

#[test]
fn dsn_legacy_recipients_parse_without_panic() {
    // Over the limit: the limit error, not a panic and not a silent excess.
    assert!(matches!(
        dsn::parse_with(DSN_LEGACY_TWO_RECIPIENTS.as_bytes(), &one_recipient()),
        Err(DsnError::TooManyRecipients { limit: 1 })
    ));
    let d = dsn::parse_with(
        DSN_LEGACY_TWO_RECIPIENTS.as_bytes(),
        &DsnLimits {
            max_recipients: 2,
            ..one_recipient()
        },
    )
    .unwrap();
    assert!(d.legacy);
    let _ = dsn::check(&d);
    let _ = dsn::render_text(&d);
    assert!(d.reports.iter().all(|r| r.source == Source::LegacyText));
}

/// dsn: fields recovered from raw text (no MIME structure), read with
/// `max_recipients = 2`, minimised by `cargo fuzz tmin` (input `da 00 8c df
/// b2 2e 73 4c 52 40`, token-mapped). The recovered report gets three
/// recipients: the qmail-style prose heuristics added them to the report
/// without the limit check (now refused with the limit error).
const DSN_RECOVERED_THREE_RECIPIENTS: &[u8] = b"\r\nReporting-MTA: dns; mx.test\r\n\xdf  b@dest.test\r\n=?utf-8?q?caf=C3=A9?=To: a@src.test\r\nMessage-ID: <m1@src.test>\r\n--- Below this line is a copy of the message.\r\nStatus: ";

fn two_recipients() -> DsnLimits {
    DsnLimits {
        max_recipients: 2,
        ..one_recipient()
    }
}

#[test]
fn dsn_recovered_fields_parse_without_panic() {
    assert!(matches!(
        dsn::parse_with(DSN_RECOVERED_THREE_RECIPIENTS, &two_recipients()),
        Err(DsnError::TooManyRecipients { limit: 2 })
    ));
    let d = dsn::parse_with(
        DSN_RECOVERED_THREE_RECIPIENTS,
        &DsnLimits {
            max_recipients: 3,
            ..one_recipient()
        },
    )
    .unwrap();
    assert_eq!(d.reports.len(), 1);
    assert_eq!(d.reports[0].source, Source::RecoveredFields);
    assert!(d.has_warning(WarningKind::Heuristic));
    let _ = dsn::check(&d);
    let _ = dsn::render_text(&d);
}

#[test]
fn dsn_prose_recipients_respect_the_limit() {
    for (msg, limits) in [
        (DSN_LEGACY_TWO_RECIPIENTS.as_bytes(), one_recipient()),
        (DSN_RECOVERED_THREE_RECIPIENTS, two_recipients()),
    ] {
        match dsn::parse_with(msg, &limits) {
            Err(DsnError::TooManyRecipients { limit }) => {
                assert_eq!(limit, limits.max_recipients)
            }
            Ok(d) => assert!(
                d.reports
                    .iter()
                    .all(|r| r.recipients.len() <= limits.max_recipients),
                "{:?}",
                d.reports
                    .iter()
                    .map(|r| r.recipients.len())
                    .collect::<Vec<_>>()
            ),
            Err(e) => panic!("{e}"),
        }
    }
}

const SCENARIO_HEAD: &str =
    "title = \"t\"\nrule = \"r\"\nrfc = \"RFC 5321\"\nstrength = \"MUST\"\n";
const SCENARIO_TAIL: &str = "[[message]]\nfrom = \"a@src.test\"\nto = [\"b@dest.test\"]\n\n[[expect]]\ncontacted = \"mx\"\n";

/// suite_file: a scripted reply shorter than four octets (`"x"`, `"25"`,
/// an empty line of a multi-line reply) panics in `step()` of
/// src/suite/mod.rs, which reads `b[3]` before checking the length.
#[test]
fn suite_short_reply_is_an_error() {
    for reply in ["x", "25", "2", "250-a\\n\\n250 b"] {
        let text = format!(
            "{SCENARIO_HEAD}\n[hosts.mx]\nname = \"mx.dest.test\"\nattempt = [{{ greeting = \"{reply}\" }}]\n\n{SCENARIO_TAIL}"
        );
        let r = parse_scenario(Path::new("suites/fuzz/0001-input.toml"), &text);
        match r {
            Err(SuiteError::Invalid { line, message, .. }) => {
                assert!((6..=8).contains(&line), "line {line}: {message}");
                assert!(message.contains("bad reply"), "{message}");
            }
            other => panic!("{reply:?}: {other:?}"),
        }
    }
}

/// The same scenario with a well-formed three-digit reply loads.
#[test]
fn suite_three_digit_reply_loads() {
    let text = format!(
        "{SCENARIO_HEAD}\n[hosts.mx]\nname = \"mx.dest.test\"\nattempt = [{{ greeting = \"250\" }}]\n\n{SCENARIO_TAIL}"
    );
    let s = parse_scenario(Path::new("suites/fuzz/0001-input.toml"), &text).unwrap();
    assert_eq!(s.hosts.len(), 2);
}

proptest! {
    /// The DSN parser is total: any bytes give a report or an error, and a
    /// report can be judged and rendered.
    #[test]
    fn dsn_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        if let Ok(d) = dsn::parse(&bytes) {
            let _ = dsn::check(&d);
            let _ = dsn::render_text(&d);
        }
    }

    /// Same on text built from header and DSN field lines.
    #[test]
    fn dsn_never_panics_on_field_soup(lines in proptest::collection::vec(prop_oneof![
        Just("Content-Type: multipart/report; report-type=delivery-status; boundary=B".to_string()),
        Just("Content-Type: message/delivery-status".to_string()),
        Just("--B".to_string()),
        Just("--B--".to_string()),
        Just(String::new()),
        "(Final-Recipient|Original-Recipient|Action|Status|Diagnostic-Code|Reporting-MTA|Remote-MTA): [ -~]{0,30}",
        "[ \t][ -~]{0,20}",
        "[2-5][0-9]{2}[ -][0-9. a-z]{0,20}",
    ], 0..40), crlf in any::<bool>()) {
        let sep = if crlf { "\r\n" } else { "\n" };
        let msg = format!("From: a@src.test{sep}{}", lines.join(sep));
        if let Ok(d) = dsn::parse(msg.as_bytes()) {
            for r in d.recipients() {
                if let Some(c) = r.class() {
                    prop_assert!((2..=5).contains(&c));
                }
            }
            let _ = dsn::check(&d);
            let _ = dsn::render_text(&d);
        }
    }

    /// The recipient limit holds for RFC 3464 field groups.
    #[test]
    fn dsn_recipient_limit_holds_for_field_groups(n in 1usize..12, limit in 1usize..6) {
        let mut body = String::from("Reporting-MTA: dns; mx.test\r\n");
        for i in 0..n {
            body.push_str(&format!("\r\nFinal-Recipient: rfc822; r{i}@dest.test\r\nAction: failed\r\nStatus: 5.1.1\r\n"));
        }
        let msg = format!("From: m@mx.test\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n--B\r\nContent-Type: message/delivery-status\r\n\r\n{body}\r\n--B--\r\n");
        let lim = DsnLimits { max_recipients: limit, ..DsnLimits::default() };
        match dsn::parse_with(msg.as_bytes(), &lim) {
            Ok(d) => {
                prop_assert!(n <= limit);
                prop_assert_eq!(d.recipients().count(), n);
            }
            Err(e) => {
                prop_assert!(n > limit);
                prop_assert_eq!(e, DsnError::TooManyRecipients { limit });
            }
        }
    }
}
