//! End-to-end: `mtaspec run --target sendmail` passes a scenario and leaves no process, mount or file behind.
//!
//! Needs root and Sendmail extracted by scripts/install-sendmail; skipped
//! (with the reason) otherwise.

use std::path::PathBuf;
use std::process::Command;

const SCENARIO: &str = "suites/mx-fallback/0001-refused-connection.toml";

fn sendmail_bin() -> PathBuf {
    std::env::var_os("MTASPEC_MTA_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/mtaspec"))
        .join("sendmail/usr/libexec/sendmail/sendmail")
}

/// Why the test cannot run here, if it cannot.
fn skip_reason() -> Option<String> {
    if std::env::var_os("MTASPEC_SKIP_LAB_TESTS").is_some() {
        return Some("MTASPEC_SKIP_LAB_TESTS is set".into());
    }
    if !nix::unistd::geteuid().is_root() {
        return Some("the lab needs root".into());
    }
    let bin = sendmail_bin();
    if !bin.exists() {
        return Some(format!(
            "Sendmail is not installed ({} missing): run scripts/install-sendmail",
            bin.display()
        ));
    }
    None
}

/// Sendmail processes (it rewrites its command line, so match the binary)
/// and the `unshare` wrappers mtaspec starts them under.
fn sendmail_processes() -> Vec<String> {
    let bin = sendmail_bin();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let exe = std::fs::read_link(e.path().join("exe")).unwrap_or_default();
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if exe == bin || cmd.contains(&*bin.to_string_lossy()) {
            found.push(format!("{}: {cmd}", e.file_name().to_string_lossy()));
        }
    }
    found
}

fn mounts_mentioning(text: &str) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(text))
        .map(str::to_string)
        .collect()
}

fn dev_entries() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/dev")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn sendmail_passes_a_scenario_and_leaves_nothing_behind() {
    if let Some(why) = skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let _g = crate::lab::LAB.lock().unwrap_or_else(|p| p.into_inner());
    // The run's lab folder goes under a temporary folder of its own, so that
    // what is left can be told apart from other runs on the machine.
    let tmp = tempfile::tempdir().unwrap();
    let tmp_name = tmp.path().to_string_lossy().into_owned();
    let before = sendmail_processes();
    let dev_before = dev_entries();

    let out = Command::new(env!("CARGO_BIN_EXE_mtaspec"))
        .args(["run", "--target", "sendmail", "-v", SCENARIO])
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
    // The instance's syslog reached its own /dev/log and was recorded.
    assert!(
        stderr.contains("starting daemon (8.17"),
        "no Sendmail log lines in the output:\n{stderr}"
    );
    assert!(stderr.contains("stat=Sent"), "{stderr}");

    let left: Vec<String> = sendmail_processes()
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
    assert_eq!(
        mounts_mentioning(&tmp_name),
        Vec::<String>::new(),
        "mounts left behind"
    );
    assert_eq!(dev_entries(), dev_before, "/dev changed");
}
