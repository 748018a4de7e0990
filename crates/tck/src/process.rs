//! Processes the runner starts: the user function and the proxy, each from a shell command,
//! in a process group of its own (so that a wrapper script's children stop too), with its
//! output in a log file.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::Error;

/// How to start a process: a shell command (run with `sh -c`) and its environment.
#[derive(Debug, Clone)]
pub struct Launch {
    /// A name for logs and messages.
    pub name: String,
    /// The shell command.
    pub command: String,
    /// Environment variables to set.
    pub env: Vec<(String, String)>,
}

impl Launch {
    /// Starts the process, its output going to `<log_dir>/<name>.log` (appended to, so that
    /// a restarted process keeps one log).
    pub fn spawn(&self, log_dir: &Path) -> Result<Process, Error> {
        let log = log_dir.join(format!("{}.log", self.name));
        let output = File::options().create(true).append(true).open(&log)?;
        let child = Command::new("sh")
            .arg("-c")
            .arg(&self.command)
            .envs(self.env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output)
            .process_group(0)
            .spawn()
            .map_err(|error| {
                Error::Setup(format!(
                    "starting {} ({}): {error}",
                    self.name, self.command
                ))
            })?;
        Ok(Process {
            name: self.name.clone(),
            child,
            log,
            exited: None,
        })
    }
}

/// A process the runner started; killed (with its whole group) when dropped.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Child,
    log: PathBuf,
    exited: Option<ExitStatus>,
}

impl Process {
    /// The exit status, if the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Asks the process group to stop (SIGTERM) and waits until every process of it has
    /// exited (the shell may exit before the program it started); kills the group (SIGKILL) if
    /// it is still there after `grace`.
    pub async fn stop(&mut self, grace: Duration) {
        if !self.group_alive() {
            self.exited();
            return;
        }
        self.signal("TERM");
        if !self.wait_group_gone(grace).await {
            self.signal("KILL");
            self.wait_group_gone(Duration::from_secs(5)).await;
        }
        self.wait_exit(Duration::from_secs(1)).await;
    }

    /// Whether any process of the group is still running (or not yet reaped).
    fn group_alive(&mut self) -> bool {
        // The leader is reaped here, so that only live processes answer the probe.
        self.exited();
        Command::new("kill")
            .args(["-0", "--", &format!("-{}", self.child.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }

    async fn wait_group_gone(&mut self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.group_alive() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// The last `lines` lines of the process's output.
    pub fn output_tail(&self, lines: usize) -> String {
        let output = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<_> = output.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The process's log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// The process's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sends `signal` to the process's group (its id is the group's: it leads it).
    fn signal(&self, signal: &str) {
        // The `kill` program rather than a libc binding: this runs a few times per run.
        let _ = Command::new("kill")
            .args([
                &format!("-{signal}"),
                "--",
                &format!("-{}", self.child.id()),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.group_alive() {
            self.signal("KILL");
        }
        if self.exited().is_none() {
            let _ = self.child.wait();
        }
    }
}
