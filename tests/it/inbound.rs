//! End-to-end: the inbound suites against the lab Postfix — SMTP smuggling on stock settings and with the fix, STARTTLS, the client's address.
//!
//! Needs root and Debian's postfix, like the other lab tests (they share one
//! guard, so lab runs never overlap).

use super::lab::{lab, run_files};

const SMUGGLING: &str = "suites/inbound-smuggling";
/// The end-of-data variants stock Postfix 3.7.11 takes as the end of DATA.
const SPLIT_ON_STOCK: [&str; 4] = [
    "inbound-smuggling/0001-lf-dot-lf",
    "inbound-smuggling/0002-lf-dot-crlf",
    "inbound-smuggling/0007-crlf-dot-lf",
    "inbound-smuggling/0010-lf-dot-lf-two-writes",
];
const FIX: [&str; 4] = [
    "--set",
    "smtpd_forbid_bare_newline=normalize",
    "--set",
    "smtpd_forbid_unauth_pipelining=yes",
];

/// Stock settings: the bare-LF variants let a second, smuggled message
/// through (labelled EXPLOITABLE, with what arrived); the others pass.
/// With the documented fix every variant passes.
#[test]
fn smuggling_fails_on_stock_settings_and_passes_with_the_fix() {
    let Some(_g) = lab() else { return };
    let (code, text) = run_files(&[], &[SMUGGLING]);
    assert_eq!(code, Some(1), "{text}");
    for id in SPLIT_ON_STOCK {
        assert!(
            text.contains(&format!("FAIL      {id}")),
            "{id} should fail:\n{text}"
        );
    }
    assert!(
        text.matches(
            "EXPLOITABLE: a message from the smuggled sender <mallory@src.test> reached mx"
        )
        .count()
            >= SPLIT_ON_STOCK.len(),
        "each split variant names the smuggled message that arrived:\n{text}"
    );
    assert!(text.contains("6 passed, 4 failed"), "{text}");

    let (code, text) = run_files(&FIX, &[SMUGGLING]);
    assert_eq!(code, Some(0), "with the fix every variant passes:\n{text}");
    assert!(text.contains("10 passed, 0 failed"), "{text}");
}

/// Postfix exempts `$mynetworks` from `smtpd_forbid_bare_newline`: with
/// that fix alone, the scenario passes from the default (untrusted) address
/// and is exploitable from a trusted one — which is why inbound sessions
/// come from outside the lab's trusted network by default.
#[test]
fn a_trusted_client_is_exempt_from_the_bare_newline_fix() {
    let Some(_g) = lab() else { return };
    let original = format!(
        "{}/{SMUGGLING}/0001-lf-dot-lf.toml",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&original).unwrap();
    let trusted = text.replace("[[session]]\n", "[[session]]\nfrom = \"trusted\"\n");
    assert_ne!(text, trusted);
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("inbound-smuggling");
    std::fs::create_dir(&suite).unwrap();
    let file = suite.join("0001-trusted.toml");
    std::fs::write(&file, trusted).unwrap();
    let normalize = ["--set", "smtpd_forbid_bare_newline=normalize"];

    let (code, out) = run_files(&normalize, &[&original]);
    assert_eq!(
        code,
        Some(0),
        "from outside $mynetworks the fix works:\n{out}"
    );

    let (code, out) = run_files(&normalize, &[file.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("EXPLOITABLE"), "{out}");
    assert!(
        out.contains("client 127.0.0.1:"),
        "the session came from the trusted address:\n{out}"
    );
}

/// STARTTLS is a real handshake with the lab's per-run certificate: the
/// suite passes, and without TLS on the target the upgrade scenario fails
/// on the missing STARTTLS offer.
#[test]
fn starttls_runs_a_real_handshake() {
    let Some(_g) = lab() else { return };
    let (code, text) = run_files(&[], &["suites/inbound-starttls"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("6 passed, 0 failed"), "{text}");
    let (code, text) = run_files(
        &["--set", "smtpd_tls_security_level=none"],
        &["suites/inbound-starttls/0001-upgrade-and-no-second-offer.toml"],
    );
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("expected 250 /STARTTLS/"), "{text}");
}
