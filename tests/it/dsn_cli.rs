//! `mtaspec dsn`: text and JSON output, and one bad file not stopping the others.

use std::process::Command;

const DSN: &str = "From: MAILER-DAEMON@mta.example.test\r\n\
To: alice@src.example.test\r\n\
Subject: Undelivered Mail Returned to Sender\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"b1\"\r\n\
\r\n\
--b1\r\n\
Content-Type: text/plain\r\n\
\r\n\
Your message could not be delivered.\r\n\
--b1\r\n\
Content-Type: message/delivery-status\r\n\
\r\n\
Reporting-MTA: dns; mta.example.test\r\n\
\r\n\
Final-Recipient: rfc822; bob@dest.example.test\r\n\
Action: failed\r\n\
Status: 5.1.1\r\n\
Remote-MTA: dns; mx10.dest.example.test\r\n\
Diagnostic-Code: smtp; 550 5.1.1 <bob@dest.example.test>: no such user\r\n\
--b1\r\n\
Content-Type: text/rfc822-headers\r\n\
\r\n\
Subject: hello\r\n\
--b1--\r\n";

#[test]
fn dsn_reads_good_files_and_reports_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.eml");
    std::fs::write(&good, DSN).unwrap();
    let missing = dir.path().join("missing.eml");
    let out = Command::new(env!("CARGO_BIN_EXE_mtaspec"))
        .args(["dsn", "--json"])
        .arg(&missing)
        .arg(&good)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a bad file makes exit 2: {stderr}"
    );
    assert!(
        stderr.contains("cannot read") && stderr.contains("missing.eml"),
        "{stderr}"
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert!(v["file"].as_str().unwrap().ends_with("good.eml"));
    assert_eq!(v["dsn"]["legacy"], false);
    let text = v.to_string();
    assert!(text.contains("bob@dest.example.test"), "{text}");
    assert!(text.contains("5.1.1"), "{text}");
    assert!(v["findings"].is_array());
    let r = &v["reasons"][0];
    assert_eq!(r["recipient"], "bob@dest.example.test", "{text}");
    assert_eq!(r["reason"], "user-unknown", "{text}");
    assert_eq!(r["hard"], true, "{text}");
    assert_eq!(r["origin"], "remote-mta", "{text}");
    assert_eq!(r["host"], "mx10.dest.example.test", "{text}");
    assert_eq!(r["status"], "5.1.1", "{text}");
    assert_eq!(r["evidence"]["kind"], "phrase", "{text}");
    assert_eq!(r["evidence"]["phrase"], "no such user", "{text}");

    let out = Command::new(env!("CARGO_BIN_EXE_mtaspec"))
        .arg("dsn")
        .arg(&good)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("bob@dest.example.test"), "{stdout}");
    assert!(
        stdout.contains(
            "Reason: user-unknown (hard), from the remote-mta mx10.dest.example.test, status 5.1.1; by phrase \"no such user\""
        ),
        "{stdout}"
    );
}
