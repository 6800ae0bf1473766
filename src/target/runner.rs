//! Target stage: where an MTA's programs run — on this machine ([`Local`]) or in its container ([`InContainer`]).
//!
//! An MTA module knows which programs to run and what their output means;
//! a runner only knows how to start them there, whether the MTA still runs,
//! and how to stop everything it started.

use crate::lab::engine::Container;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// How long one administrative command (postconf, postqueue, ...) may take.
pub const COMMAND_LIMIT: Duration = Duration::from_secs(60);

/// Where the MTA's programs run.
pub trait Runner: Send + Sync + std::fmt::Debug {
    /// A command that runs `program` (a name or path as the MTA's system
    /// sees it); add its arguments.
    fn command(&self, program: &str) -> Command;
    /// `Err(why)` once the MTA's supervised process is known to have ended.
    fn alive(&mut self) -> Result<(), String>;
    /// Stop the MTA and everything it started; reap. Blocking, idempotent.
    fn stop(&mut self, grace: Duration);
}

/// Programs run on this machine; the MTA's daemon is our supervised child.
#[derive(Debug, Default)]
pub struct Local {
    daemon: Option<Child>,
}

impl Local {
    /// Supervise `child` (the MTA's daemon, leading its own process group).
    pub fn supervise(&mut self, child: Child) {
        self.daemon = Some(child);
    }
}

impl Runner for Local {
    fn command(&self, program: &str) -> Command {
        Command::new(program)
    }

    fn alive(&mut self) -> Result<(), String> {
        match self.daemon.as_mut() {
            Some(m) => match m.try_wait() {
                Ok(Some(status)) => Err(format!("the daemon exited ({status})")),
                _ => Ok(()),
            },
            None => Err("the daemon is not running".into()),
        }
    }

    fn stop(&mut self, grace: Duration) {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        let Some(mut child) = self.daemon.take() else {
            return;
        };
        let pid = Pid::from_raw(child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let until = std::time::Instant::now() + grace;
        while std::time::Instant::now() < until {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // The daemon leads its own process group: take down anything left in it.
        let _ = kill(Pid::from_raw(-pid.as_raw()), Signal::SIGKILL);
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(2));
    }
}

/// Programs run with `ENGINE exec` in a container mtaspec started; stopping
/// removes the container.
#[derive(Debug)]
pub struct InContainer {
    pub container: Container,
}

impl Runner for InContainer {
    fn command(&self, program: &str) -> Command {
        self.container.exec(program)
    }

    fn alive(&mut self) -> Result<(), String> {
        Ok(())
    }

    fn stop(&mut self, _grace: Duration) {
        self.container.remove();
    }
}

/// Run `cmd` to its end (killed after `limit`); stdout, or an error with its output.
pub fn run(cmd: &mut Command, limit: Duration) -> Result<String, super::TargetError> {
    let out = output(cmd, limit)?;
    if !out.status.success() {
        return Err(super::TargetError::Command {
            command: shown(cmd),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Run `cmd` to its end (killed after `limit`), whatever its status.
pub fn output(cmd: &mut Command, limit: Duration) -> Result<Output, super::TargetError> {
    let shown = shown(cmd);
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| super::TargetError::io(format!("run {shown}"), e))?;
    crate::lab::engine::wait_output(child, limit)
        .map_err(|e| super::TargetError::io(format!("run {shown}"), e))
}

/// A command as a person would type it (for errors).
pub fn shown(cmd: &Command) -> String {
    format!("{cmd:?}").replace('"', "")
}
