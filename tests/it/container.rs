//! End-to-end: `mtaspec run --image` with podman and docker — verdicts, reported overrides, errors, cleanup.
//!
//! These need root, the engine and the test image (scripts/postfix-image
//! --engine ENGINE builds it; MTASPEC_TEST_IMAGE names another one). A test
//! whose engine is not installed or not answering (docker: no daemon; set
//! DOCKER_HOST for a private one) is skipped with the reason printed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const SCENARIO: &str = "suites/mx-fallback/0001-refused-connection.toml";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn image() -> String {
    std::env::var("MTASPEC_TEST_IMAGE").unwrap_or_else(|_| "mtaspec-postfix:bookworm".into())
}

/// `ENGINE ARGS` with the flags mtaspec itself uses for podman on these machines.
fn engine(name: &str) -> Command {
    let mut c = Command::new(name);
    if name == "podman" {
        c.args(["--cgroup-manager", "cgroupfs"]);
        if Path::new("/usr/sbin/runc").exists() || Path::new("/usr/bin/runc").exists() {
            c.args(["--runtime", "runc"]);
        }
    }
    c
}

/// `ENGINE run` with the limits mtaspec itself sets for podman.
fn engine_run(name: &str) -> Command {
    let mut c = engine(name);
    c.arg("run");
    if name == "podman" {
        c.args([
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=4096:4096",
        ]);
    }
    c
}

/// Whether the tests for `name` can run here; prints why not.
fn usable(name: &str) -> bool {
    if std::env::var_os("MTASPEC_SKIP_LAB_TESTS").is_some() {
        eprintln!("skipped: MTASPEC_SKIP_LAB_TESTS is set");
        return false;
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: the container tests need root");
        return false;
    }
    let probe = match name {
        "podman" => engine(name)
            .args(["info", "--format", "{{.Host.OCIRuntime.Name}}"])
            .output(),
        _ => engine(name)
            .args(["version", "--format", "{{.Server.Version}}"])
            .output(),
    };
    match probe {
        Err(e) => {
            eprintln!("skipped: {name} is not installed ({e})");
            return false;
        }
        Ok(o) if !o.status.success() => {
            eprintln!(
                "skipped: {name} does not answer: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            return false;
        }
        Ok(_) => {}
    }
    let has = engine(name)
        .args(["image", "inspect", &image()])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has {
        eprintln!(
            "skipped: {name} has no image {}; build it with scripts/postfix-image --engine {name}",
            image()
        );
    }
    has
}

/// The lab lock shared with the other lab tests (they compare what is left on the machine).
fn lab_lock() -> std::sync::MutexGuard<'static, ()> {
    super::lab::LAB.lock().unwrap_or_else(|p| p.into_inner())
}

fn mtaspec(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mtaspec"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run mtaspec")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Containers any mtaspec run started that still exist.
fn containers(name: &str) -> Vec<String> {
    let out = engine(name)
        .args([
            "ps",
            "-a",
            "--filter",
            "label=mtaspec.pid",
            "--format",
            "{{.Names}}",
        ])
        .output()
        .expect("list containers");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// This machine's mounts that belong to container storage or an mtaspec lab.
fn engine_mounts() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| {
            l.contains("/overlay") || l.contains("mtaspec-lab-") || l.contains("/containers/")
        })
        .map(|l| l.split_whitespace().nth(4).unwrap_or(l).to_string())
        .collect()
}

/// Every process's network namespace (inode), to see that a lab's is gone.
fn netns_in_use() -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path().join("ns/net")).ok())
        .map(|p| p.display().to_string())
        .collect()
}

fn passes_and_reports_overrides(name: &str) {
    if !usable(name) {
        return;
    }
    let _g = lab_lock();
    // The image's own main.cf listens on every address: the lab must replace it.
    let own = engine_run(name)
        .args(["--rm", "--network", "none", "--entrypoint", "postconf"])
        .args([&image(), "-h", "inet_interfaces"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&own.stdout).trim(),
        "all",
        "the test image should say inet_interfaces = all: {}",
        text(&own)
    );
    let mounts_before = engine_mounts();
    let junit = tempfile::NamedTempFile::new().unwrap();
    let out = mtaspec(&[
        "run",
        SCENARIO,
        "--image",
        &image(),
        "--engine",
        name,
        "--junit",
        junit.path().to_str().unwrap(),
    ]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(all.contains("1 passed"), "{all}");
    assert!(
        all.contains("override inet_interfaces: `all` -> `127.0.0.1`"),
        "{all}"
    );
    let xml = std::fs::read_to_string(junit.path()).unwrap();
    assert!(
        xml.contains("name=\"override.inet_interfaces\"")
            && xml.contains(&format!("value=\"{name}\"")),
        "{xml}"
    );
    assert_eq!(containers(name), Vec::<String>::new(), "containers left");
    let new: Vec<String> = engine_mounts()
        .into_iter()
        .filter(|m| !mounts_before.contains(m))
        .collect();
    assert_eq!(new, Vec::<String>::new(), "mounts left");
}

#[test]
fn podman_image_passes_and_reports_overrides() {
    passes_and_reports_overrides("podman");
}

#[test]
fn docker_image_passes_and_reports_overrides() {
    passes_and_reports_overrides("docker");
}

/// SIGTERM in the middle of a scenario: no container, namespace or mount is left.
fn terminated_run_leaves_nothing(name: &str) {
    if !usable(name) {
        return;
    }
    let _g = lab_lock();
    let mounts_before = engine_mounts();
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
        .args([
            "run",
            file.to_str().unwrap(),
            "--image",
            &image(),
            "--engine",
            name,
        ])
        .current_dir(root())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
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
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the lab never became ready");
    let lab_net = std::fs::read_link(format!("/proc/{}/ns/net", child.id()))
        .unwrap()
        .display()
        .to_string();
    let running = containers(name);
    assert!(
        running.iter().any(|c| c.starts_with("mtaspec-")),
        "no container runs: {running:?}"
    );
    std::thread::sleep(Duration::from_millis(300));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    let err = reader.join().unwrap();
    assert_eq!(status.code(), Some(143), "{err}");
    assert_eq!(
        containers(name),
        Vec::<String>::new(),
        "containers left: {err}"
    );
    assert!(
        !netns_in_use().contains(&lab_net),
        "a process still uses the lab's network namespace {lab_net}"
    );
    let new: Vec<String> = engine_mounts()
        .into_iter()
        .filter(|m| !mounts_before.contains(m))
        .collect();
    assert_eq!(new, Vec::<String>::new(), "mounts left");
}

#[test]
fn podman_terminated_run_leaves_nothing() {
    terminated_run_leaves_nothing("podman");
}

#[test]
fn docker_terminated_run_leaves_nothing() {
    terminated_run_leaves_nothing("docker");
}

/// A run killed with SIGKILL cannot clean up: the next run removes what it left.
fn killed_run_is_cleaned_up_by_the_next(name: &str) {
    if !usable(name) {
        return;
    }
    let _g = lab_lock();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mtaspec"))
        .args(["run", SCENARIO, "--image", &image(), "--engine", name])
        .current_dir(root())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let until = std::time::Instant::now() + Duration::from_secs(60);
    while containers(name).is_empty() && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    child.kill().unwrap();
    child.wait().unwrap();
    let left = containers(name);
    assert!(!left.is_empty(), "the killed run left nothing to clean up");
    let out = mtaspec(&["run", SCENARIO, "--image", &image(), "--engine", name]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    for c in &left {
        assert!(
            all.contains(&format!("removed container {c} left by")),
            "{c}: {all}"
        );
    }
    assert_eq!(containers(name), Vec::<String>::new(), "containers left");
}

#[test]
fn podman_killed_run_is_cleaned_up_by_the_next() {
    killed_run_is_cleaned_up_by_the_next("podman");
}

#[test]
fn docker_killed_run_is_cleaned_up_by_the_next() {
    killed_run_is_cleaned_up_by_the_next("docker");
}

/// An image from the test image with one change made inside it; removed on drop.
struct Derived {
    engine: &'static str,
    name: String,
}

impl Derived {
    fn make(engine_name: &'static str, tag: &str, change: &[&str]) -> Derived {
        let work = format!("mtaspec-test-derive-{tag}");
        let _ = engine(engine_name).args(["rm", "-f", &work]).output();
        let run = engine_run(engine_name)
            .args(["-d", "--name", &work, "--network", "none"])
            .args(["--entrypoint", "sleep", &image(), "600"])
            .output()
            .unwrap();
        assert!(run.status.success(), "{}", text(&run));
        let ch = engine(engine_name)
            .args(["exec", &work])
            .args(change)
            .output()
            .unwrap();
        assert!(ch.status.success(), "{}", text(&ch));
        let name = format!("mtaspec-test-{tag}:latest");
        let commit = engine(engine_name)
            .args(["commit", &work, &name])
            .output()
            .unwrap();
        let _ = engine(engine_name).args(["rm", "-f", &work]).output();
        assert!(commit.status.success(), "{}", text(&commit));
        Derived {
            engine: engine_name,
            name,
        }
    }
}

impl Drop for Derived {
    fn drop(&mut self) {
        let _ = engine(self.engine).args(["rmi", "-f", &self.name]).output();
    }
}

/// Clear errors with exit 2 and the fix: image missing, engine missing, no
/// postconf in the image, Postfix that does not start, not root.
fn errors_name_the_fix(name: &'static str) {
    if !usable(name) {
        return;
    }
    let _g = lab_lock();
    let out = mtaspec(&[
        "run",
        SCENARIO,
        "--image",
        "mtaspec-no-such-image:1",
        "--engine",
        name,
    ]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(
        all.contains("is not in") && all.contains("image store"),
        "{all}"
    );

    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mtaspec"))
        .args(["run", SCENARIO, "--image", &image(), "--engine", name])
        .env("PATH", empty.path())
        .current_dir(root())
        .output()
        .unwrap();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(
        all.contains(&format!("{name} was not found in PATH; install it")),
        "{all}"
    );

    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_mtaspec"))
        .args(["run", SCENARIO, "--image", &image(), "--engine", name])
        .current_dir(root())
        .output()
        .expect("setpriv (util-linux)");
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(all.contains("mtaspec run needs root"), "{all}");

    let bare = Derived::make(name, "no-postconf", &["rm", "/usr/sbin/postconf"]);
    let out = mtaspec(&["run", SCENARIO, "--image", &bare.name, "--engine", name]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(all.contains("`postconf` cannot be run in it"), "{all}");

    let broken = Derived::make(
        name,
        "no-start",
        &["postconf", "-e", "daemon_directory=/nonexistent"],
    );
    let out = mtaspec(&["run", SCENARIO, "--image", &broken.name, "--engine", name]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(all.contains("/nonexistent"), "{all}");
    assert_eq!(containers(name), Vec::<String>::new(), "containers left");
}

#[test]
fn podman_errors_name_the_fix() {
    errors_name_the_fix("podman");
}

#[test]
fn docker_errors_name_the_fix() {
    errors_name_the_fix("docker");
}

/// docker installed but no daemon at DOCKER_HOST: exit 2 naming the fix, before any lab exists.
#[test]
fn docker_without_a_daemon_names_the_fix() {
    if !nix::unistd::geteuid().is_root()
        || Command::new("docker").arg("--version").output().is_err()
    {
        eprintln!("skipped: needs root and the docker command");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mtaspec"))
        .args(["run", SCENARIO, "--image", &image(), "--engine", "docker"])
        .env(
            "DOCKER_HOST",
            format!("unix://{}/no-daemon.sock", dir.path().display()),
        )
        .current_dir(root())
        .output()
        .unwrap();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(
        all.contains("docker does not answer") && all.contains("start the docker daemon"),
        "{all}"
    );
}
