//! `kind = "shell"`: runs a command with `sh -c`, its output captured as the task log.
//!
//! The command runs in its own process group; if the task is stopped (timeout, shutdown) the
//! whole group is killed, so no grandchild outlives its task.

use std::path::PathBuf;
use std::process::Stdio;

use indexmap::IndexMap;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;

use super::{Job, JobContext, JobError, LogSink, Outputs, Stream};

/// Fields of a `shell` task. Every string is a template.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShellConfig {
    /// The command line, run by `sh -c`. A non-zero exit code fails the task.
    pub command: String,
    /// Extra environment variables for the command.
    #[serde(default)]
    pub env: IndexMap<String, String>,
    /// Working directory; defaults to the worker's.
    pub cwd: Option<PathBuf>,
}

pub struct Shell;

impl Job for Shell {
    const KIND: &'static str = "shell";
    type Config = ShellConfig;

    fn validate(&self, config: &ShellConfig) -> Vec<String> {
        if config.command.trim().is_empty() {
            vec!["`command` must not be empty".to_string()]
        } else {
            Vec::new()
        }
    }

    async fn run(&self, config: ShellConfig, ctx: JobContext) -> Result<Outputs, JobError> {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(&config.command)
            .envs(&config.env)
            .env("LAKEWARD_DAG_ID", &ctx.dag_id)
            .env("LAKEWARD_RUN_ID", &ctx.run_id)
            .env("LAKEWARD_TASK_ID", &ctx.task_id)
            .env("LAKEWARD_TRY_NUMBER", ctx.try_number.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        if let Some(cwd) = &config.cwd {
            command.current_dir(cwd);
        }
        let mut child = command.spawn().map_err(|e| {
            JobError::Failed(format!("cannot start `sh -c {}`: {e}", config.command))
        })?;
        let group = ProcessGroup(child.id());
        let stdout = pump(child.stdout.take(), ctx.log.clone(), Stream::Stdout);
        let stderr = pump(child.stderr.take(), ctx.log.clone(), Stream::Stderr);
        let wait = async {
            let status = child.wait().await;
            // Background processes the command left behind would keep the pipes open.
            group.kill();
            status
        };
        let (status, _, _) = tokio::join!(wait, stdout, stderr);
        let status =
            status.map_err(|e| JobError::Failed(format!("waiting for the command: {e}")))?;
        match status.code() {
            Some(0) => Ok(Outputs::new()),
            Some(code) => Err(JobError::Exit { code }),
            None => Err(JobError::Failed(format!("command was killed ({status})"))),
        }
    }
}

/// Copies a child's output stream into the log, line by line.
async fn pump(stream: Option<impl AsyncRead + Unpin>, log: LogSink, kind: Stream) {
    let Some(stream) = stream else { return };
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        log.write(kind, line);
    }
}

/// The command's process group, killed when the command ends or the task is dropped.
struct ProcessGroup(Option<u32>);

impl ProcessGroup {
    fn kill(&self) {
        if let Some(pid) = self.0 {
            // SAFETY: killpg has no memory-safety preconditions; the group id is the child's pid
            // because it was spawned with process_group(0). An empty group gives ESRCH, ignored.
            unsafe {
                libc::killpg(pid as libc::pid_t, libc::SIGKILL);
            }
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}
