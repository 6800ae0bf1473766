//! End-to-end: `mtaspec run --target chasquid` injects over STARTTLS + AUTH, passes a scenario and leaves nothing behind.
//!
//! Needs root and chasquid extracted by scripts/install-chasquid; skipped
//! (with the reason) otherwise.

use std::path::PathBuf;
use std::process::Command;

const SCENARIO: &str = "suites/mx-fallback/0001-refused-connection.toml";

fn chasquid_bin() -> PathBuf {
    std::env::var_os("MTASPEC_MTA_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/mtaspec"))
        .join("chasquid/usr/bin/chasquid")
}

/// Why the test cannot run here, if it cannot.
fn skip_reason() -> Option<String> {
    if std::env::var_os("MTASPEC_SKIP_LAB_TESTS").is_some() {
        return Some("MTASPEC_SKIP_LAB_TESTS is set".into());
    }
    if !nix::unistd::geteuid().is_root() {
        return Some("the lab needs root".into());
    }
    let bin = chasquid_bin();
    if !bin.exists() {
        return Some(format!(
            "chasquid is not installed ({} missing): run scripts/install-chasquid",
            bin.display()
        ));
    }
    None
}

/// Processes running the chasquid binary.
fn chasquid_processes() -> Vec<String> {
    let bin = chasquid_bin();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if std::fs::read_link(e.path().join("exe")).unwrap_or_default() == bin {
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            found.push(format!("{}: {cmd}", e.file_name().to_string_lossy()));
        }
    }
    found
}

#[test]
fn chasquid_passes_a_scenario_after_starttls_and_auth_and_leaves_nothing_behind() {
    if let Some(why) = skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let _g = crate::lab::LAB.lock().unwrap_or_else(|p| p.into_inner());
    // The run's lab folder goes under a temporary folder of its own.
    let tmp = tempfile::tempdir().unwrap();
    let tmp_name = tmp.path().to_string_lossy().into_owned();
    let before = chasquid_processes();
    let junit = tmp.path().join("junit.xml");

    let out = Command::new(env!("CARGO_BIN_EXE_mtaspec"))
        .args(["run", "--target", "chasquid", "-v", SCENARIO, "--junit"])
        .arg(&junit)
        .env("TMPDIR", tmp.path())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run mtaspec");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stderr.contains("PASS      mx-fallback/0001-refused-connection"),
        "{stderr}"
    );
    // The message went in after AUTH (chasquid refuses AUTH without TLS).
    assert!(
        stderr.contains("auth succeeded for mtaspec@mta.target.test"),
        "{stderr}"
    );

    // The client's transcript shows STARTTLS and AUTH, never the credentials.
    let xml = std::fs::read_to_string(&junit).unwrap();
    std::fs::remove_file(&junit).unwrap();
    assert!(xml.contains("C: STARTTLS"), "{xml}");
    assert!(xml.contains("[TLS established]"), "{xml}");
    assert!(
        xml.contains("C: AUTH PLAIN [credentials of mtaspec@mta.target.test]"),
        "{xml}"
    );
    assert_eq!(xml.matches("C: AUTH").count(), 1, "{xml}");

    let left: Vec<String> = chasquid_processes()
        .into_iter()
        .filter(|p| !before.contains(p) || p.contains(&tmp_name))
        .collect();
    assert_eq!(left, Vec::<String>::new(), "processes left behind");
    let files: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(files, Vec::<PathBuf>::new(), "files left behind");
}
