//! End-to-end: `mtaspec run` against the lab Postfix — verdicts, JUnit, exit status, teardown.
//!
//! These tests need root and Debian's postfix (scripts/setup installs it).
//! Without them they fail with that message; set MTASPEC_SKIP_LAB_TESTS=1 to
//! skip them explicitly.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const SCENARIO: &str = "suites/mx-fallback/0001-refused-connection.toml";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `false` when the lab tests are explicitly skipped; panics when they cannot run.
fn lab_available() -> bool {
    if std::env::var_os("MTASPEC_SKIP_LAB_TESTS").is_some() {
        eprintln!("skipped: MTASPEC_SKIP_LAB_TESTS is set");
        return false;
    }
    assert!(
        nix::unistd::geteuid().is_root(),
        "the lab tests need root (namespaces, ports 25/53); run as root or set MTASPEC_SKIP_LAB_TESTS=1"
    );
    assert!(
        Path::new("/usr/sbin/postfix").exists(),
        "the lab tests need Debian's postfix: run scripts/setup as root, or set MTASPEC_SKIP_LAB_TESTS=1"
    );
    true
}

fn mtaspec(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mtaspec"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run mtaspec")
}

/// Processes whose command line mentions an mtaspec lab folder (Postfix started by a run).
fn lab_processes() -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains("mtaspec-lab-") {
                found.push(format!("{}: {cmd}", e.file_name().to_string_lossy()));
            }
        }
    }
    found
}

fn lab_dirs() -> Vec<PathBuf> {
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("mtaspec-lab-"))
        })
        .collect()
}

// The lab tests run one at a time: they compare what is left on the machine.
pub(crate) static LAB: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The lab, held for one test; `None` when the lab tests are skipped.
pub(crate) fn lab() -> Option<std::sync::MutexGuard<'static, ()>> {
    lab_available().then(|| LAB.lock().unwrap_or_else(|p| p.into_inner()))
}

#[test]
fn passing_scenario_gives_exit_0_and_junit() {
    let Some(_g) = lab() else { return };
    let dirs_before = lab_dirs();
    let junit = tempfile::NamedTempFile::new().unwrap();
    let out = mtaspec(&["run", SCENARIO, "--junit", junit.path().to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stderr
            .lines()
            .any(|l| l.contains(" PASS ") && l.contains("mx-fallback/0001-refused-connection")),
        "{stderr}"
    );
    assert!(stdout.contains("1 passed, 0 failed"), "{stdout}");

    let xml = std::fs::read_to_string(junit.path()).unwrap();
    assert!(xml.starts_with("<?xml"), "{xml}");
    assert!(
        xml.contains(
            r#"<testsuite name="mx-fallback" tests="1" skipped="0" errors="0" failures="0">"#
        ),
        "{xml}"
    );
    assert!(
        xml.contains(r#"<testcase name="mx-fallback/0001-refused-connection""#),
        "{xml}"
    );
    assert!(
        xml.contains(r#"<property name="rfc" value="RFC 5321 §5.1"/>"#),
        "{xml}"
    );
    // Transcripts and the connection attempts are in system-out.
    assert!(xml.contains("== connection attempts (SYN)"), "{xml}");
    assert!(xml.contains("S: 250 2.0.0 queued"), "{xml}");

    assert_eq!(
        lab_processes(),
        Vec::<String>::new(),
        "processes left behind"
    );
    assert_eq!(lab_dirs(), dirs_before, "lab folders left behind");
}

#[test]
fn wrong_expectation_gives_a_failing_verdict_and_exit_1() {
    let Some(_g) = lab() else { return };
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("mx-fallback");
    std::fs::create_dir(&suite).unwrap();
    let text = std::fs::read_to_string(root().join(SCENARIO)).unwrap();
    assert!(text.contains(r#"delivered = { host = "mx20" }"#));
    let file = suite.join("0001-refused-connection.toml");
    std::fs::write(
        &file,
        text.replace(
            r#"delivered = { host = "mx20" }"#,
            r#"delivered = { host = "mx10" }"#,
        ),
    )
    .unwrap();
    let junit = dir.path().join("out.xml");
    let begin = Instant::now();
    let out = mtaspec(&[
        "run",
        file.to_str().unwrap(),
        "--junit",
        junit.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("expected delivery via mx10 for bob@dest.test; observed: mx10: 1 connection attempt(s), nothing accepted; mx20: 1 connection attempt(s), accepted a message for bob@dest.test"),
        "{stderr}"
    );
    // Decided as soon as the message went elsewhere, not at the deadline.
    assert!(
        begin.elapsed() < Duration::from_secs(15),
        "took {:?}",
        begin.elapsed()
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains(r#"failures="1""#), "{xml}");
    assert!(xml.contains(r#"type="MUST violated""#), "{xml}");
    assert_eq!(
        lab_processes(),
        Vec::<String>::new(),
        "processes left behind"
    );
}

#[test]
fn interrupted_run_tears_the_lab_down() {
    interrupt_with(
        nix::sys::signal::Signal::SIGINT,
        130,
        "interrupted: lab torn down",
    );
}

#[test]
fn terminated_run_tears_the_lab_down() {
    interrupt_with(
        nix::sys::signal::Signal::SIGTERM,
        143,
        "terminated: lab torn down",
    );
}

fn interrupt_with(signal: nix::sys::signal::Signal, code: i32, said: &str) {
    let Some(_g) = lab() else { return };
    let dir = tempfile::tempdir().unwrap();
    // A scenario that would wait for its whole deadline: a host that stalls.
    let text = std::fs::read_to_string(root().join(SCENARIO))
        .unwrap()
        .replace("deadline = \"20s\"", "deadline = \"60s\"")
        .replace(
            "[hosts.mx20]\nname = \"mx20.dest.test\"",
            "[hosts.mx20]\nname = \"mx20.dest.test\"\nattempt = [{ connect = \"stall\" }]",
        );
    assert!(
        text.contains("deadline = \"60s\"") && text.contains("connect = \"stall\""),
        "the scenario no longer has the lines this test rewrites"
    );
    let file = dir.path().join("0001-stall.toml");
    std::fs::write(&file, text).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mtaspec"))
        .args(["run", file.to_str().unwrap()])
        .current_dir(root())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
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
    if let Err(e) = rx.recv_timeout(Duration::from_secs(30)) {
        let _ = child.kill();
        let _ = child.wait();
        let err = reader.join().unwrap_or_default();
        panic!("the lab never became ready ({e}); stderr:\n{err}");
    }
    assert!(!lab_processes().is_empty(), "postfix is not running");
    std::thread::sleep(Duration::from_millis(300));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
    let status = child.wait().unwrap();
    let err = reader.join().unwrap();
    assert_eq!(status.code(), Some(code), "{err}");
    assert!(err.contains(said), "{err}");
    assert_eq!(
        lab_processes(),
        Vec::<String>::new(),
        "processes left behind"
    );
}

#[test]
fn bad_settings_and_files_are_harness_errors() {
    let Some(_g) = lab() else { return };
    let out = mtaspec(&["run", SCENARIO, "--set", "relayhost=[127.0.0.9]"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("setting `relayhost` would break the lab"),
        "{err}"
    );

    let out = mtaspec(&["run", SCENARIO, "--set", "no_such_parameter_x=1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no_such_parameter_x"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("0001-bad.toml");
    std::fs::write(
        &bad,
        "title = \"t\"\nrule = \"r\"\nrfc = \"x\"\nstrength = \"OFTEN\"\n",
    )
    .unwrap();
    let out = mtaspec(&["run", bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("0001-bad.toml:4:12: unknown requirement strength"),
        "{err}"
    );
}

#[test]
fn without_root_the_run_stops_at_once_and_says_why() {
    let Some(_g) = lab() else { return };
    // Drop to the nobody user for this one run.
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            env!("CARGO_BIN_EXE_mtaspec"),
            "run",
            SCENARIO,
        ])
        .current_dir(root())
        .output()
        .expect("setpriv (util-linux)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("mtaspec run needs root"), "{err}");
}

#[test]
fn list_shows_the_scenarios() {
    let out = mtaspec(&["list"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stdout.contains("mx-fallback/0001-refused-connection"),
        "{stdout}"
    );
    assert!(stdout.contains("RFC 5321 §5.1"), "{stdout}");
}

#[test]
fn user_postfix_config_is_used_and_checked() {
    let Some(_g) = lab() else { return };
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("conf");
    std::fs::create_dir(&conf).unwrap();
    // A production-like master.cf (chrooted services) and main.cf.
    let master = std::fs::read_to_string(root().join("src/target/postfix/master.cf"))
        .unwrap()
        .replace(" n       -       n ", " n       -       y ");
    std::fs::write(conf.join("master.cf"), master).unwrap();
    std::fs::write(
        conf.join("main.cf"),
        "compatibility_level = 3.6\nsmtpd_banner = $myhostname ESMTP production-banner\n\
         mynetworks = 127.0.0.0/8\nsmtpd_relay_restrictions = permit_mynetworks, reject\n",
    )
    .unwrap();
    let junit = dir.path().join("out.xml");
    let out = mtaspec(&[
        "run",
        SCENARIO,
        "--postfix-config",
        conf.to_str().unwrap(),
        "--junit",
        junit.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("S: 220 mta.target.test ESMTP production-banner"),
        "{xml}"
    );

    // A setting that would take mail around the scenario is refused, naming the file.
    let mut main = std::fs::read_to_string(conf.join("main.cf")).unwrap();
    main.push_str("relayhost = [127.0.0.9]:25\n");
    std::fs::write(conf.join("main.cf"), main).unwrap();
    let out = mtaspec(&["run", SCENARIO, "--postfix-config", conf.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("main.cf: setting `relayhost` would break the lab"),
        "{err}"
    );
    assert_eq!(
        lab_processes(),
        Vec::<String>::new(),
        "processes left behind"
    );
}

/// Debian's stock /etc/postfix (the "Internet Site" main.cf and the
/// package's master.cf): the lab replaces what only concerns this host,
/// reports each replacement (console and JUnit), and the MX fallback suite
/// passes; a file the main.cf names that is missing is one clear error.
#[test]
fn debian_stock_postfix_config_passes_mx_fallback_with_overrides_reported() {
    let Some(_g) = lab() else { return };
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("postfix");
    std::fs::create_dir(&conf).unwrap();
    std::fs::copy("/usr/share/postfix/master.cf.dist", conf.join("master.cf")).unwrap();
    let stock =
        std::fs::read_to_string(root().join("tests/fixtures/debian-postfix/main.cf")).unwrap();
    // A Debian machine has /etc/mailname; give this one its own when it has none.
    let main = if std::path::Path::new("/etc/mailname").exists() {
        stock.clone()
    } else {
        let name = dir.path().join("mailname");
        std::fs::write(&name, "mail.example.org\n").unwrap();
        stock.replace("/etc/mailname", name.to_str().unwrap())
    };
    std::fs::write(conf.join("main.cf"), &main).unwrap();
    let junit = dir.path().join("out.xml");
    let (code, text) = run_files(
        &[
            "--postfix-config",
            conf.to_str().unwrap(),
            "--junit",
            junit.to_str().unwrap(),
        ],
        &["suites/mx-fallback"],
    );
    // (run_files ignores the known deviations: null MX's status is a SHOULD.)
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("(0 MUST, ") && text.contains(", 0 errors)"),
        "the stock config should pass the MX fallback suite:\n{text}"
    );
    for key in ["inet_interfaces", "inet_protocols", "mydestination"] {
        assert!(
            text.contains(&format!("override {key}: ")),
            "{key} not reported:\n{text}"
        );
    }
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("name=\"override.inet_interfaces\""), "{xml}");

    // The file a stock main.cf names, missing: one message naming the parameter.
    if !std::path::Path::new("/etc/mailname").exists() {
        std::fs::write(conf.join("main.cf"), &stock).unwrap();
        let (code, text) = run_files(&["--postfix-config", conf.to_str().unwrap()], &[SCENARIO]);
        assert_eq!(code, Some(2), "{text}");
        assert!(
            text.contains("`myorigin = /etc/mailname` names /etc/mailname"),
            "{text}"
        );
    }
    assert_eq!(
        lab_processes(),
        Vec::<String>::new(),
        "processes left behind"
    );
}

/// Run scenario files with extra arguments; (exit code, stdout + stderr).
pub(crate) fn run_files(extra: &[&str], files: &[&str]) -> (Option<i32>, String) {
    let mut args = vec!["run", "--no-known"];
    args.extend_from_slice(extra);
    args.extend_from_slice(files);
    let out = mtaspec(&args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

const BROKEN_BY_SETTINGS: [&str; 3] = [
    "suites/bounce-origin/0001-rcpt-550-dsn.toml",
    "suites/mx-fallback/0001-refused-connection.toml",
    "suites/retry-4xx/0003-rcpt-451.toml",
];

/// Three settings that break a MUST each: the scenario fails, the run exits
/// 1, and the output states the rule (section, strength) and what was
/// observed instead.
#[test]
fn nonconformant_settings_fail_the_scenarios_they_break() {
    let Some(_g) = lab() else { return };
    let cases = [
        // 5xx turned into 4xx: the target never bounces.
        (
            "soft_bounce=yes",
            BROKEN_BY_SETTINGS[0],
            "RFC 5321 §4.5.5, §6.1; RFC 3461 §6.1 MUST",
            "observed: no DSN",
        ),
        // Only one MX address is tried: no fallback to MX 20.
        (
            "smtp_mx_address_limit=1",
            BROKEN_BY_SETTINGS[1],
            "RFC 5321 §5.1 MUST",
            "expected delivery via mx20",
        ),
        // Queue lifetime 0: one try, then bounce — no retry after a 4xx.
        (
            "maximal_queue_lifetime=0",
            BROKEN_BY_SETTINGS[2],
            "RFC 5321 §4.2.1, §4.5.4.1 MUST",
            "returned bob@dest.test as failed in a DSN",
        ),
    ];
    for (set, file, rule, observed) in cases {
        let (code, text) = run_files(&["--set", set], &[file]);
        assert_eq!(
            code,
            Some(1),
            "--set {set} on {file} should fail the run:\n{text}"
        );
        assert!(text.contains("FAIL "), "--set {set}: no FAIL line:\n{text}");
        assert!(
            text.contains(&format!("rule ({rule})")),
            "--set {set}: the rule is not explained:\n{text}"
        );
        assert!(
            text.contains(observed),
            "--set {set}: the observation is not reported:\n{text}"
        );
    }
    assert_eq!(
        lab_processes(),
        Vec::<String>::new(),
        "processes left behind"
    );
}

/// The same scenarios pass on the lab's stock settings, so the failures
/// above come from the settings, not from the scenarios.
#[test]
fn the_same_scenarios_pass_on_stock_settings() {
    let Some(_g) = lab() else { return };
    let (code, text) = run_files(&[], &BROKEN_BY_SETTINGS);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("3 passed, 0 failed"), "{text}");
}

/// `run --controls`: every scenario runs again under each of its
/// `[[control]]` settings, where it must fail. Three real controls are
/// caught; a control that changes nothing the scenario looks at is reported
/// as not caught and fails the run; a `none` scenario is counted.
#[test]
fn controls_are_caught_and_a_useless_control_is_reported() {
    let Some(_g) = lab() else { return };
    let dir = tempfile::tempdir().unwrap();
    let copy = |from: &str, folder: &str, extra: &str| {
        let text = std::fs::read_to_string(root().join(from)).unwrap();
        assert!(text.contains("\n[[control]]"), "{from} has no control");
        let suite = dir.path().join(folder);
        std::fs::create_dir_all(&suite).unwrap();
        let file = suite.join(Path::new(from).file_name().unwrap());
        std::fs::write(&file, format!("{text}{extra}")).unwrap();
        file
    };
    // Caught: a DNS reply filter (MX 10 dropped), a hop limit knob, a header check.
    let caught = [
        copy(
            "suites/mx-fallback/0002-preference-order.toml",
            "mx-fallback",
            "",
        ),
        copy(
            "suites/loop-detection/0001-few-hops-delivered.toml",
            "loop-detection",
            "",
        ),
        copy(
            "suites/bounce-origin/0014-auto-submitted.toml",
            "bounce-origin",
            "",
        ),
    ];
    // A second control that has nothing to do with the rule: the scenario still passes.
    let useless = copy(
        "suites/loop-detection/0002-45-hops-delivered.toml",
        "loop-detection",
        "\n[[control]]\ntarget = \"postfix\"\nset = { delay_warning_time = \"1h\" }\nwhy = \"a delay warning time changes nothing here\"\n",
    );
    // A scenario that says no control exists: counted, not run.
    let text = std::fs::read_to_string(root().join("suites/mx-fallback/0009-null-mx-status.toml"))
        .unwrap();
    let text = &text[..text.find("\n[[control]]").unwrap()];
    let none = dir.path().join("mx-fallback/0009-null-mx-status.toml");
    std::fs::write(
        &none,
        format!("{text}\n[[control]]\nnone = \"for this test\"\n"),
    )
    .unwrap();

    let junit = dir.path().join("controls.xml");
    let mut args = vec!["--controls", "--junit", junit.to_str().unwrap()];
    let files: Vec<String> = caught
        .iter()
        .chain([&useless, &none])
        .map(|f| f.display().to_string())
        .collect();
    args.extend(files.iter().map(String::as_str));
    let out = mtaspec(&[&["run"], args.as_slice()].concat());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let all = format!("{stdout}\n{stderr}");
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        stdout.contains(
            "controls caught 4/5 (postfix); 1 not caught, 1 scenario(s) with no control (none)"
        ),
        "{all}"
    );
    assert!(
        stdout.contains("MISSED loop-detection/0002-45-hops-delivered control 2"),
        "{all}"
    );
    assert!(stdout.contains("postfix delay_warning_time = 1h"), "{all}");
    assert!(stdout.contains("observed: the scenario passed"), "{all}");
    assert!(
        stdout.contains("mx-fallback/0009-null-mx-status: for this test"),
        "{all}"
    );
    for id in [
        "mx-fallback/0002-preference-order",
        "loop-detection/0001-few-hops-delivered",
        "bounce-origin/0014-auto-submitted",
        "loop-detection/0002-45-hops-delivered",
    ] {
        assert!(
            stderr.contains(&format!("CAUGHT    {id} [control 1]")),
            "{id}: {all}"
        );
    }
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains(
            r#"<testsuites name="mtaspec controls" tests="6" skipped="1" failures="1" errors="0""#
        ),
        "{xml}"
    );
    assert!(
        xml.contains(r#"<testcase name="loop-detection/0002-45-hops-delivered [control 2]""#),
        "{xml}"
    );

    // Without the useless control every control is caught: exit 0.
    let mut args = vec!["run", "--controls"];
    args.extend(files[..3].iter().map(String::as_str));
    let out = mtaspec(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("controls caught 3/3 (postfix); 0 not caught"),
        "{stdout}"
    );
    assert_eq!(
        lab_processes(),
        Vec::<String>::new(),
        "processes left behind"
    );
}

/// `dsn = { reason = ... }` is judged from the bounce Postfix writes: the
/// scenario passes, and the same scenario expecting another reason fails
/// with the reason found and its evidence.
#[test]
fn dsn_reason_expectation_is_judged() {
    let Some(_g) = lab() else { return };
    let file = "suites/bounce-origin/0015-reason-from-text.toml";
    let (code, text) = run_files(&[], &[file]);
    assert_eq!(code, Some(0), "{text}");
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("bounce-origin");
    std::fs::create_dir(&suite).unwrap();
    let wrong = suite.join("0015-reason-from-text.toml");
    let body = std::fs::read_to_string(root().join(file)).unwrap();
    std::fs::write(
        &wrong,
        body.replace("reason = \"user-unknown\"", "reason = \"mailbox-full\""),
    )
    .unwrap();
    let (code, text) = run_files(&["--strict"], &[wrong.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("reason user-unknown by phrase") && text.contains("(wanted mailbox-full)"),
        "{text}"
    );
}
