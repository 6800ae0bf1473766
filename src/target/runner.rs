//! Target stage: where an MTA's programs run — on this machine ([`Local`]) or in its container ([`InContainer`]).
//!
//! An MTA module knows which programs to run and what their output means;
//! a runner only knows how to start them there, whether the MTA still runs,
//! and how to stop everything it started.

#[cfg(test)]
mod tests;

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
    /// Run `cmds` one after another, each whatever the one before gave.
    /// `Err` only when they could not be run at all.
    fn batch(&self, cmds: &[Vec<String>]) -> Result<Vec<Ran>, super::TargetError> {
        cmds.iter()
            .map(|argv| {
                let mut cmd = self.command(&argv[0]);
                cmd.args(&argv[1..]);
                output(&mut cmd, COMMAND_LIMIT).map(|o| Ran {
                    status: o.status.code().unwrap_or(-1),
                    stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
                    stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
                })
            })
            .collect()
    }
}

/// What one command of a [`Runner::batch`] gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ran {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// Its stdout, or an error naming the command and what it said.
    pub fn ok(&self, argv: &[String]) -> Result<&str, super::TargetError> {
        if self.status == 0 {
            Ok(&self.stdout)
        } else {
            Err(super::TargetError::Command {
                command: argv.join(" "),
                output: format!("{}{}", self.stderr.trim(), self.stdout.trim()),
            })
        }
    }
}

const STATUS_MARK: &str = "\n@@mtaspec-status ";
const END_MARK: &str = "\n@@mtaspec-end\n";

/// A `sh` script that runs `cmds` in order and marks where each one's
/// output ends (with its exit status on stdout).
pub fn batch_script(cmds: &[Vec<String>]) -> String {
    let quote = |a: &String| format!("'{}'", a.replace('\'', "'\\''"));
    cmds.iter()
        .map(|argv| {
            let line: Vec<String> = argv.iter().map(quote).collect();
            format!(
                "{} </dev/null; printf '\\n@@mtaspec-status %s\\n' $?; printf '\\n@@mtaspec-end\\n' >&2\n",
                line.join(" ")
            )
        })
        .collect()
}

/// Split the output of [`batch_script`] back into one [`Ran`] per command.
pub fn split_batch(n: usize, stdout: &str, stderr: &str) -> Option<Vec<Ran>> {
    let mut outs = stdout.split(STATUS_MARK);
    let mut errs = stderr.split(END_MARK);
    let mut ran = Vec::new();
    let mut rest = outs.next()?.to_string();
    for _ in 0..n {
        let next = outs.next()?;
        let (status, after) = next.split_once('\n').unwrap_or((next, ""));
        ran.push(Ran {
            status: status.trim().parse().ok()?,
            stdout: std::mem::replace(&mut rest, after.to_string()),
            stderr: errs.next()?.to_string(),
        });
    }
    Some(ran)
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
        super::still_running(&mut self.daemon, "the daemon")
    }

    fn stop(&mut self, grace: Duration) {
        // The daemon leads its own process group: take down anything left in it.
        if let Some(child) = self.daemon.take() {
            super::stop_group(child, grace);
        }
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

    /// One `ENGINE exec` running `sh`: an exec costs far more than the
    /// commands (Postfix's own `postfix` command needs `sh` anyway).
    fn batch(&self, cmds: &[Vec<String>]) -> Result<Vec<Ran>, super::TargetError> {
        let mut cmd = self.container.exec("sh");
        cmd.arg("-c").arg(batch_script(cmds));
        let out = output(&mut cmd, COMMAND_LIMIT)?;
        let (so, se) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        split_batch(cmds.len(), &so, &se).ok_or_else(|| super::TargetError::Command {
            command: format!(
                "{} exec {} sh",
                self.container.engine.name(),
                self.container.name
            ),
            output: format!("{}{}", se.trim(), so.trim()),
        })
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
