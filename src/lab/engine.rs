//! Lab stage: container engines (podman, docker) that run the user's MTA image inside the lab's network.
//!
//! Every engine command runs in the namespaces mtaspec was started in (the
//! host's network and mounts), not in the lab: a remote docker daemon stays
//! reachable and no engine mount lands in the lab. Containers are named
//! `mtaspec-<nonce>-...` and labelled `mtaspec.pid=<pid>`, and are removed
//! when their handle is dropped.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// A long sleep every image can run as its first process (GNU or busybox `sleep`).
pub const HOLD: &[&str] = &["sleep", "2147483647"];

/// The namespaces mtaspec started in, kept open while the process lives in the lab.
struct HostNs {
    net: OwnedFd,
    mnt: OwnedFd,
}

static HOST_NS: OnceLock<HostNs> = OnceLock::new();

/// Remember the current network and mount namespaces; engine commands run in
/// them. Call before the process leaves them.
pub(crate) fn remember_host_namespaces() -> std::io::Result<()> {
    if HOST_NS.get().is_some() {
        return Ok(());
    }
    let open = |p: &str| std::fs::File::open(p).map(OwnedFd::from);
    let ns = HostNs {
        net: open("/proc/self/ns/net")?,
        mnt: open("/proc/self/ns/mnt")?,
    };
    let _ = HOST_NS.set(ns);
    Ok(())
}

/// podman or docker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Podman,
    Docker,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Podman => "podman",
            Kind::Docker => "docker",
        }
    }

    fn install(self) -> &'static str {
        match self {
            Kind::Podman => "apt-get install podman runc (Debian/Ubuntu)",
            Kind::Docker => "apt-get install docker.io (Debian/Ubuntu), then start dockerd",
        }
    }
}

/// Why an engine could not be used.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{engine} was not found in PATH; install it: {fix}")]
    Missing {
        engine: &'static str,
        fix: &'static str,
    },
    #[error("{engine} does not answer (`{engine} {probe}` failed: {output}); {fix}")]
    NotRunning {
        engine: &'static str,
        probe: &'static str,
        output: String,
        fix: String,
    },
    #[error("image `{image}` is not in {engine}'s image store: build or pull it first (e.g. `{engine} build -t {image} .`, or scripts/postfix-image --engine {engine} for a Debian Postfix image)")]
    NoImage { engine: &'static str, image: String },
    #[error("`{command}` failed: {output}")]
    Command { command: String, output: String },
    #[error("cannot run {engine}: {source}")]
    Spawn {
        engine: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// One container engine, ready to use.
#[derive(Debug, Clone)]
pub struct Engine {
    pub kind: Kind,
    program: PathBuf,
    /// Flags before the subcommand (podman: runtime and cgroup manager).
    global: Vec<String>,
    /// Flags for `run` (podman: resource limits the runtime can set here).
    run_flags: Vec<String>,
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

impl Engine {
    /// Find the engine and check that it answers.
    pub fn detect(kind: Kind) -> Result<Engine, EngineError> {
        let program = find_in_path(kind.name()).ok_or(EngineError::Missing {
            engine: kind.name(),
            fix: kind.install(),
        })?;
        let (global, run_flags) = match kind {
            // crun cannot set the default rlimits on some hosts and does not
            // take hybrid cgroups: runc with cgroupfs and modest limits works
            // wherever podman runs rootful.
            Kind::Podman => {
                let mut g = vec!["--cgroup-manager".into(), "cgroupfs".into()];
                if find_in_path("runc").is_some() {
                    g.extend(["--runtime".into(), "runc".into()]);
                }
                let r = [
                    "--ulimit",
                    "nofile=1024:1024",
                    "--ulimit",
                    "nproc=4096:4096",
                ]
                .map(String::from)
                .to_vec();
                (g, r)
            }
            Kind::Docker => (Vec::new(), Vec::new()),
        };
        let engine = Engine {
            kind,
            program,
            global,
            run_flags,
        };
        let probe: &[&str] = match kind {
            Kind::Podman => &["info", "--format", "{{.Host.OCIRuntime.Name}}"],
            Kind::Docker => &["version", "--format", "{{.Server.Version}}"],
        };
        let out = engine.output(engine.command().args(probe), Duration::from_secs(30))?;
        if !out.status.success() {
            let fix = match kind {
                Kind::Podman => "check `podman info` as root".to_string(),
                Kind::Docker => "start the docker daemon (`systemctl start docker`, or `dockerd &`), or point DOCKER_HOST at one".to_string(),
            };
            return Err(EngineError::NotRunning {
                engine: kind.name(),
                probe: probe[0],
                output: text(&out),
                fix,
            });
        }
        Ok(engine)
    }

    pub fn name(&self) -> &'static str {
        self.kind.name()
    }

    /// `ENGINE GLOBAL-FLAGS`, to run in the host's namespaces.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.global).stdin(Stdio::null());
        if let Some(ns) = HOST_NS.get() {
            let (net, mnt) = (ns.net.as_raw_fd(), ns.mnt.as_raw_fd());
            // SAFETY: setns is async-signal-safe; the forked child is
            // single-threaded, so it may change its mount namespace.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                    if nix::libc::setns(net, nix::libc::CLONE_NEWNET) != 0
                        || nix::libc::setns(mnt, nix::libc::CLONE_NEWNS) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        cmd
    }

    /// Run `cmd` to its end, killing it after `limit`.
    pub fn output(&self, cmd: &mut Command, limit: Duration) -> Result<Output, EngineError> {
        let child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| EngineError::Spawn {
                engine: self.name(),
                source,
            })?;
        wait_output(child, limit).map_err(|source| EngineError::Spawn {
            engine: self.name(),
            source,
        })
    }

    /// Run `cmd`; its stdout, or an error with its output.
    pub fn run(&self, cmd: &mut Command, limit: Duration) -> Result<String, EngineError> {
        let shown = shown(cmd);
        let out = self.output(cmd, limit)?;
        if !out.status.success() {
            return Err(EngineError::Command {
                command: shown,
                output: text(&out),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Check that `image` is in the engine's store.
    pub fn has_image(&self, image: &str) -> Result<(), EngineError> {
        let out = self.output(
            self.command()
                .args(["image", "inspect", "--format", "{{.Id}}", image]),
            Duration::from_secs(30),
        )?;
        if out.status.success() {
            Ok(())
        } else {
            Err(EngineError::NoImage {
                engine: self.name(),
                image: image.to_string(),
            })
        }
    }

    /// The image's own entrypoint and command, as one line (empty if none).
    pub fn image_command(&self, image: &str) -> Result<String, EngineError> {
        let out = self.run(
            self.command().args([
                "image",
                "inspect",
                "--format",
                "{{json .Config.Entrypoint}} {{json .Config.Cmd}}",
                image,
            ]),
            Duration::from_secs(30),
        )?;
        let words: Vec<String> = out
            .split_whitespace()
            .filter(|w| *w != "null")
            .filter_map(|w| serde_json::from_str::<Vec<String>>(w).ok())
            .flatten()
            .collect();
        Ok(words.join(" "))
    }

    /// Start `image` detached, running [`HOLD`] instead of its own command.
    pub fn start(
        &self,
        image: &str,
        name: &str,
        extra: &[String],
    ) -> Result<Container, EngineError> {
        let mut cmd = self.command();
        cmd.args(["run", "-d", "--name", name])
            .arg("--label")
            .arg(format!("mtaspec.pid={}", std::process::id()))
            .args(&self.run_flags)
            .args(extra)
            .args(["--stop-signal", "KILL", "--entrypoint", HOLD[0], image])
            .args(&HOLD[1..]);
        // From here on the container may exist, even if `run` fails.
        let container = Container {
            engine: self.clone(),
            name: name.to_string(),
            removed: false,
        };
        self.run(&mut cmd, Duration::from_secs(120))?;
        Ok(container)
    }
}

/// A container mtaspec started; removed (with everything in it) on drop.
#[derive(Debug)]
pub struct Container {
    pub engine: Engine,
    pub name: String,
    removed: bool,
}

impl Container {
    /// `ENGINE exec NAME PROGRAM`: add the program's arguments to it.
    pub fn exec(&self, program: &str) -> Command {
        let mut cmd = self.engine.command();
        cmd.args(["exec", &self.name, program]);
        cmd
    }

    /// The container's first process, as the host sees it.
    pub fn pid(&self) -> Result<i32, EngineError> {
        let out = self.engine.run(
            self.engine
                .command()
                .args(["inspect", "--format", "{{.State.Pid}}", &self.name]),
            Duration::from_secs(30),
        )?;
        out.trim()
            .parse()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| EngineError::Command {
                command: format!("{} inspect {}", self.engine.name(), self.name),
                output: format!(
                    "no process id in `{}`: the container is not running",
                    out.trim()
                ),
            })
    }

    /// Copy a local file into the container.
    pub fn copy_in(&self, from: &Path, to: &str) -> Result<(), EngineError> {
        self.engine
            .run(
                self.engine
                    .command()
                    .arg("cp")
                    .arg(from)
                    .arg(format!("{}:{to}", self.name)),
                Duration::from_secs(30),
            )
            .map(|_| ())
    }

    /// Remove the container, killing what runs in it. Idempotent.
    pub fn remove(&mut self) {
        if self.removed {
            return;
        }
        self.removed = true;
        let _ = self.engine.output(
            self.engine.command().args(["rm", "-f", &self.name]),
            Duration::from_secs(60),
        );
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        self.remove();
    }
}

/// The names of containers a run of mtaspec left behind (its label), with the pid.
pub fn leftovers(engine: &Engine) -> Vec<(String, String)> {
    // podman's template has a map of labels, docker's a method.
    let format = match engine.kind {
        Kind::Podman => "{{.Names}} {{index .Labels \"mtaspec.pid\"}}",
        Kind::Docker => "{{.Names}} {{.Label \"mtaspec.pid\"}}",
    };
    let out = engine.output(
        engine.command().args([
            "ps",
            "-a",
            "--filter",
            "label=mtaspec.pid",
            "--format",
            format,
        ]),
        Duration::from_secs(30),
    );
    let Ok(out) = out else { return Vec::new() };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(n, p)| (n.to_string(), p.to_string()))
        .collect()
}

/// Remove containers left by runs of mtaspec that no longer exist (killed with SIGKILL).
pub fn remove_orphans(engine: &Engine) -> Vec<String> {
    let mut removed = Vec::new();
    for (name, pid) in leftovers(engine) {
        let alive = pid
            .parse::<u32>()
            .is_ok_and(|p| Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            Container {
                engine: engine.clone(),
                name: name.clone(),
                removed: false,
            }
            .remove();
            removed.push(name);
        }
    }
    removed
}

pub(crate) fn wait_output(
    mut child: std::process::Child,
    limit: Duration,
) -> std::io::Result<Output> {
    use std::io::Read;
    // Read both pipes on threads so a chatty command cannot block on a full pipe.
    let mut so = child.stdout.take();
    let mut se = child.stderr.take();
    let t_out = std::thread::spawn(move || {
        let mut b = Vec::new();
        if let Some(s) = so.as_mut() {
            let _ = s.take(16 << 20).read_to_end(&mut b);
        }
        b
    });
    let t_err = std::thread::spawn(move || {
        let mut b = Vec::new();
        if let Some(s) = se.as_mut() {
            let _ = s.take(1 << 20).read_to_end(&mut b);
        }
        b
    });
    let until = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if std::time::Instant::now() > until {
            let _ = child.kill();
            break child.wait()?;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(Output {
        status,
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
    })
}

fn shown(cmd: &Command) -> String {
    format!("{cmd:?}").replace('"', "")
}

/// stderr then stdout of a finished command, trimmed.
pub fn text(out: &Output) -> String {
    let e = String::from_utf8_lossy(&out.stderr);
    let o = String::from_utf8_lossy(&out.stdout);
    format!(
        "{}{}{}",
        e.trim(),
        if e.trim().is_empty() { "" } else { " " },
        o.trim()
    )
    .trim()
    .to_string()
}
