//! End-to-end: `mtaspec run --target exim` against a private Exim in the lab — verdicts and teardown.
//!
//! These need root and Exim unpacked by `scripts/setup --targets exim`
//! (scripts/install-exim); without either they are skipped with the reason.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn exim_bin() -> PathBuf {
    std::env::var_os("MTASPEC_MTA_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/mtaspec"))
        .join("exim/usr/sbin/exim4")
}

/// `false` (with the reason printed) when these tests cannot run here.
fn available() -> bool {
    if std::env::var_os("MTASPEC_SKIP_LAB_TESTS").is_some() {
        eprintln!("skipped: MTASPEC_SKIP_LAB_TESTS is set");
        return false;
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: the exim lab tests need root (namespaces, port 25)");
        return false;
    }
    if !exim_bin().exists() {
        eprintln!(
            "skipped: exim is not installed at {}; run scripts/setup --targets exim",
            exim_bin().display()
        );
        return false;
    }
    true
}

/// One lab test at a time, Postfix's included: each compares what is left on the machine.
fn hold_lab() -> std::sync::MutexGuard<'static, ()> {
    crate::lab::LAB.lock().unwrap_or_else(|p| p.into_inner())
}

/// Processes started from an Exim configuration in an mtaspec lab folder.
fn exim_processes() -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains("mtaspec-lab-") && cmd.contains("exim") {
                // Parent and state, to tell an orphan from a child being reaped.
                let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
                let state = stat.rsplit(')').next().unwrap_or("").trim();
                found.push(format!(
                    "{}: {cmd} [{state}]",
                    e.file_name().to_string_lossy()
                ));
            }
        }
    }
    found
}

/// Lab folders that hold an Exim instance (other targets' runs may be going on).
fn exim_lab_dirs() -> Vec<PathBuf> {
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("mtaspec-lab-"))
                && p.join("exim").exists()
        })
        .collect()
}

/// Mounts this namespace sees under a lab folder or over Exim's files.
fn lab_mounts() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .filter(|l| l.contains("mtaspec-lab-") || l.contains("exim"))
        .map(str::to_string)
        .collect()
}

fn assert_nothing_left(before: &[PathBuf]) {
    // Exim's children may take a moment to be reaped by init after SIGKILL.
    let until = Instant::now() + Duration::from_secs(3);
    while !exim_processes().is_empty() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        exim_processes(),
        Vec::<String>::new(),
        "exim processes left"
    );
    assert_eq!(lab_mounts(), Vec::<String>::new(), "mounts left");
    assert_eq!(exim_lab_dirs(), before, "lab folders left");
}

fn mtaspec(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mtaspec"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run mtaspec")
}

#[test]
fn exim_passes_scenarios_and_leaves_nothing_behind() {
    if !available() {
        return;
    }
    let _g = hold_lab();
    let before = exim_lab_dirs();
    // MX fallback on the default instance, and a retry after 451 on an
    // instance of its own (the scenario states retry_min / retry_max).
    let out = mtaspec(&[
        "run",
        "--target",
        "exim",
        "suites/mx-fallback/0001-refused-connection.toml",
        "suites/retry-4xx/0003-rcpt-451.toml",
    ]);
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
    assert!(
        stderr.contains("PASS      retry-4xx/0003-rcpt-451"),
        "{stderr}"
    );
    assert!(stdout.contains("2 passed, 0 failed"), "{stdout}");
    assert!(stderr.contains("exim instance(s)"), "{stderr}");
    assert_nothing_left(&before);
}

#[test]
fn exim_known_deviation_is_reported_as_known() {
    if !available() {
        return;
    }
    let _g = hold_lab();
    let before = exim_lab_dirs();
    // Exim bounces with Status 5.0.0: listed in known-deviations/exim.toml.
    let out = mtaspec(&[
        "run",
        "--target",
        "exim",
        "suites/bounce-origin/0004-status-carries-remote-code.toml",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("KNOWN"), "{stderr}");
    assert!(stderr.contains("5.0.0"), "{stderr}");
    assert_nothing_left(&before);
}

#[test]
fn exim_refuses_settings_that_would_break_the_lab() {
    if !available() {
        return;
    }
    let _g = hold_lab();
    let before = exim_lab_dirs();
    let out = mtaspec(&[
        "run",
        "--target",
        "exim",
        "--set",
        "local_interfaces=0.0.0.0",
        "suites/mx-fallback/0001-refused-connection.toml",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("local_interfaces"), "{stderr}");
    // An option Exim does not know: its own -bV check names it.
    let out = mtaspec(&[
        "run",
        "--target",
        "exim",
        "--set",
        "no_such_option=1",
        "suites/mx-fallback/0001-refused-connection.toml",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no_such_option"), "{stderr}");
    assert_nothing_left(&before);
}

#[test]
fn interrupted_exim_run_tears_the_lab_down() {
    if !available() {
        return;
    }
    let _g = hold_lab();
    let before = exim_lab_dirs();
    // The message is frozen (its MX is the target): the run waits for its deadline.
    let mut child = Command::new(env!("CARGO_BIN_EXE_mtaspec"))
        .args([
            "run",
            "--target",
            "exim",
            "suites/loop-detection/0008-mx-points-at-target.toml",
        ])
        .current_dir(root())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    // Wait until the lab is up and the scenario runs, then interrupt.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.starts_with("lab ready") {
                let _ = tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    if rx.recv_timeout(Duration::from_secs(60)).is_err() {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = child.wait();
        panic!("the lab never became ready:\n{}", reader.join().unwrap());
    }
    let running = exim_processes();
    std::thread::sleep(Duration::from_millis(1500));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let status = child.wait().unwrap();
    let err = reader.join().unwrap();
    assert!(!running.is_empty(), "exim was not running: {err}");
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted: lab torn down"), "{err}");
    assert_nothing_left(&before);
}
