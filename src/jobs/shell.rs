//! `kind = "shell"`: runs a command with `sh -c`, its output captured as the task log.
//!
//! The command runs in its own process group under a supervisor (see `supervise`): if the task
//! is asked to stop (marked, timed out, worker shutting down) the group gets SIGTERM, and is
//! killed if it has not ended when the worker's grace period is over; if the worker dies the
//! supervisor kills it, so no grandchild outlives its task or its worker.
//!
//! Template values in `command` are shell-quoted (see `dag::template`). The command does not
//! inherit the worker's environment, which holds the database URL and storage credentials:
//! it sees [`BASE_ENV`], the names the task lists in `inherit_env`, its own `env` and the
//! `LAKEWARD_*` variables describing the try. A command publishes outputs (for downstream
//! templates, `for_each` lists) by writing a JSON object to the file `$LAKEWARD_OUTPUTS`.

use std::ffi::OsString;
use std::path::PathBuf;

use indexmap::IndexMap;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use super::log::{cap_line, MAX_LINE_BYTES};
use super::supervise::{self, CommandSpec};
use super::{Job, JobContext, JobError, LogSink, Quoting, Stage, Stream};

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
    /// Names of the worker's environment variables passed through, beyond [`BASE_ENV`].
    #[serde(default)]
    pub inherit_env: Vec<String>,
}

/// What every command inherits from the worker's environment: where programs are, who runs
/// them, locale and time zone. Never credentials.
pub const BASE_ENV: &[&str] =
    &["PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR"];

pub struct Shell;

impl Job for Shell {
    const KIND: &'static str = "shell";
    type Config = ShellConfig;
    type Output = super::Outputs;
    const QUOTED_FIELDS: &'static [(&'static str, Quoting)] = &[("command", Quoting::Shell)];

    fn validate(&self, config: &ShellConfig, _stage: Stage) -> Vec<String> {
        if config.command.trim().is_empty() {
            vec!["`command` must not be empty".to_string()]
        } else {
            Vec::new()
        }
    }

    async fn run(&self, config: ShellConfig, ctx: JobContext) -> Result<super::Outputs, JobError> {
        let outputs = OutputsFile::new();
        let inherited =
            BASE_ENV.iter().copied().chain(config.inherit_env.iter().map(String::as_str));
        let mut env: Vec<(OsString, OsString)> =
            inherited.filter_map(|name| Some((name.into(), std::env::var_os(name)?))).collect();
        env.extend(config.env.iter().map(|(k, v)| (k.into(), v.into())));
        for (name, value) in [
            ("LAKEWARD_DAG_ID", ctx.dag_id.as_str()),
            ("LAKEWARD_RUN_ID", &ctx.run_id),
            ("LAKEWARD_TASK_ID", &ctx.task_id),
            ("LAKEWARD_TRY_NUMBER", &ctx.try_number.to_string()),
        ] {
            env.push((name.into(), value.into()));
        }
        env.push(("LAKEWARD_OUTPUTS".into(), outputs.0.clone().into()));
        let spec = CommandSpec {
            program: "sh".into(),
            args: vec!["-c".into(), config.command.clone().into()],
            env: deduplicated(env),
            cwd: config.cwd.clone(),
        };
        let mut child = supervise::start(spec).await.map_err(|e| {
            JobError::Failed(format!("cannot start `sh -c {}`: {e}", config.command))
        })?;
        let group = ProcessGroup(child.id());
        let stdout = pump(child.stdout.take(), ctx.log.clone(), Stream::Stdout);
        let stderr = pump(child.stderr.take(), ctx.log.clone(), Stream::Stderr);
        let wait = async {
            let status = tokio::select! {
                status = child.wait() => status,
                // Asked to stop: SIGTERM lets the command clean up; if it does not end within
                // the worker's grace period, dropping this job kills the group.
                _ = ctx.cancelled() => {
                    group.signal(libc::SIGTERM);
                    child.wait().await
                }
            };
            // Background processes the command left behind would keep the pipes open.
            group.kill();
            status
        };
        let (status, _, _) = tokio::join!(wait, stdout, stderr);
        let status =
            status.map_err(|e| JobError::Failed(format!("waiting for the command: {e}")))?;
        if ctx.is_cancelled() {
            return Err(JobError::Cancelled(format!("the command was stopped ({status})")));
        }
        match status.code() {
            Some(0) => outputs.read(),
            Some(code) => Err(JobError::Exit { code }),
            None => Err(JobError::Failed(format!("command was killed ({status})"))),
        }
    }
}

/// `env` with each name once, its last value winning (as setting it twice on a command does).
fn deduplicated(env: Vec<(OsString, OsString)>) -> Vec<(OsString, OsString)> {
    let mut seen = std::collections::HashSet::new();
    let mut out: Vec<(OsString, OsString)> =
        env.into_iter().rev().filter(|(name, _)| seen.insert(name.clone())).collect();
    out.reverse();
    out
}

/// Copies a child's output stream into the log, line by line, holding at most
/// [`MAX_LINE_BYTES`] of a line in memory however long it is.
async fn pump(stream: Option<impl AsyncRead + Unpin>, log: LogSink, kind: Stream) {
    let Some(stream) = stream else { return };
    let mut reader = BufReader::new(stream);
    let mut line: Vec<u8> = Vec::new();
    let mut dropped = 0;
    loop {
        let chunk = match reader.fill_buf().await {
            Ok([]) | Err(_) => break,
            Ok(chunk) => chunk,
        };
        let (part, ends) = match chunk.iter().position(|b| *b == b'\n') {
            Some(at) => (&chunk[..at], true),
            None => (chunk, false),
        };
        let room = MAX_LINE_BYTES.saturating_sub(line.len()).min(part.len());
        line.extend_from_slice(&part[..room]);
        dropped += part.len() - room;
        let used = part.len() + usize::from(ends);
        reader.consume(used);
        if ends {
            write_line(&log, kind, &mut line, &mut dropped);
        }
    }
    if !line.is_empty() || dropped > 0 {
        write_line(&log, kind, &mut line, &mut dropped);
    }
}

fn write_line(log: &LogSink, kind: Stream, line: &mut Vec<u8>, dropped: &mut usize) {
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    let text = String::from_utf8_lossy(line).into_owned();
    log.write(kind, cap_line(text, *dropped));
    line.clear();
    *dropped = 0;
}

/// Largest outputs file read.
const MAX_OUTPUTS_BYTES: u64 = 1024 * 1024;

/// The file a command writes its outputs to (`$LAKEWARD_OUTPUTS`); removed when dropped.
struct OutputsFile(PathBuf);

impl OutputsFile {
    fn new() -> OutputsFile {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("lakeward-outputs-{}-{n}.json", std::process::id());
        OutputsFile(std::env::temp_dir().join(name))
    }

    /// The JSON object the command wrote, or no outputs if it wrote nothing.
    fn read(&self) -> Result<super::Outputs, JobError> {
        let size = std::fs::metadata(&self.0).map(|m| m.len()).unwrap_or(0);
        if size == 0 {
            return Ok(super::Outputs::new());
        }
        if size > MAX_OUTPUTS_BYTES {
            return Err(JobError::Failed(format!(
                "$LAKEWARD_OUTPUTS holds {size} bytes, more than {MAX_OUTPUTS_BYTES}"
            )));
        }
        let text = std::fs::read_to_string(&self.0)
            .map_err(|e| JobError::Failed(format!("reading $LAKEWARD_OUTPUTS: {e}")))?;
        match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(serde_json::Value::Object(outputs)) => Ok(outputs),
            Ok(_) => Err(JobError::Failed("$LAKEWARD_OUTPUTS must hold a JSON object".into())),
            Err(e) => Err(JobError::Failed(format!("$LAKEWARD_OUTPUTS is not JSON: {e}"))),
        }
    }
}

impl Drop for OutputsFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The command's process group, killed when the command ends or the task is dropped.
struct ProcessGroup(Option<u32>);

impl ProcessGroup {
    fn kill(&self) {
        self.signal(libc::SIGKILL);
    }

    fn signal(&self, signal: libc::c_int) {
        if let Some(pid) = self.0 {
            // SAFETY: killpg has no memory-safety preconditions; the group id is the child's pid
            // because the child (the supervisor) made itself the group leader. An empty group
            // gives ESRCH, ignored.
            unsafe {
                libc::killpg(pid as libc::pid_t, signal);
            }
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}
