//! The CLI's output paths: a reader that goes away (closed pipe, `mtaspec list | head -1`) ends the program quietly.

use std::process::{Command, Stdio};

/// A pipe whose read end is already closed: writing to it fails with EPIPE.
fn closed_pipe() -> std::os::fd::OwnedFd {
    let (read, write) = nix::unistd::pipe().expect("pipe");
    drop(read);
    write
}

fn list(stdout: Stdio, stderr: Stdio) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mtaspec"))
        .args(["list", "suites"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(stdout)
        .stderr(stderr)
        .output()
        .expect("run mtaspec")
}

#[test]
fn list_into_a_closed_pipe_exits_quietly() {
    let out = list(Stdio::from(closed_pipe()), Stdio::piped());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(!err.contains("Broken pipe"), "{err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
}

#[test]
fn list_with_both_streams_into_a_closed_pipe_exits_quietly() {
    // `mtaspec list 2>&1 | head -1`: standard error is gone too.
    let out = list(Stdio::from(closed_pipe()), Stdio::from(closed_pipe()));
    assert_eq!(out.status.code(), Some(0), "a panic exits with 101");
}

#[test]
fn list_into_an_open_pipe_prints_every_scenario() {
    let out = list(Stdio::piped(), Stdio::piped());
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.lines().count() > 10, "{stdout}");
}
