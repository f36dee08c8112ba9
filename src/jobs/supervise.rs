//! Ties a command's processes to the life of the worker that started them.
//!
//! A shell task runs in its own process group, whose leader is a small supervisor: it forks the
//! command, waits for it and exits with its status, and while it waits it watches its parent.
//! When the worker dies (even by `kill -9`, which runs no cleanup), the supervisor is re-parented
//! and kills the whole group at once, so no command of a dead worker runs on beside the retry of
//! its task. The worker still kills the group itself when a task stops (timeout, shutdown, taken
//! over).
//!
//! In the `lakeward` binary, the worker's launcher (see [`super::launcher`]) forks each
//! supervisor from a small process of its own. Without a launcher (it could not start, or
//! died), the binary starts the supervisor as a program (itself, with [`SUPERVISE_ARG`]),
//! which the standard library spawns without copying the worker: forking a large
//! multi-threaded process costs its page tables and then a copy-on-write fault for each page
//! it writes until the child execs. A process that is not the binary (tests, programs
//! embedding the library) forks the supervisor between `fork` and `exec` instead. That code
//! runs in a forked child of a multi-threaded process, so it may only make async-signal-safe
//! system calls: no allocation, no locks, no Rust I/O.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use tokio::io::AsyncRead;

use super::launcher::{Launched, Launcher, Request, LAUNCH_ARG};

/// How often the supervisor checks that its worker is alive.
const WATCH_INTERVAL_NANOS: libc::c_long = 50_000_000;

/// The first argument that makes the binary a supervisor:
/// `lakeward __supervise <worker pid> <program> <args…>`.
pub const SUPERVISE_ARG: &str = "__supervise";

/// The supervisor program, once the binary has named itself (see [`use_binary`]).
static SUPERVISOR: OnceLock<PathBuf> = OnceLock::new();

/// Makes `binary` (the running `lakeward` executable) the supervisor of this process's commands.
pub fn use_binary(binary: PathBuf) {
    let _ = SUPERVISOR.set(binary);
}

/// A command to run under a supervisor: stdin is `/dev/null`, stdout and stderr are pipes.
#[derive(Debug, Clone, Default)]
pub struct CommandSpec {
    pub program: OsString,
    pub args: Vec<OsString>,
    /// The command's whole environment.
    pub env: Vec<(OsString, OsString)>,
    pub cwd: Option<PathBuf>,
}

/// A supervised command that has started: its supervisor's pid (which is its process group),
/// its output, and how to wait for it.
pub struct Supervised {
    pid: u32,
    pub stdout: Option<Box<dyn AsyncRead + Send + Unpin>>,
    pub stderr: Option<Box<dyn AsyncRead + Send + Unpin>>,
    child: Child,
}

enum Child {
    Spawned(tokio::process::Child),
    Launched(Launched),
}

impl Supervised {
    /// The supervisor's pid, which is also the command's process group.
    pub fn id(&self) -> Option<u32> {
        (self.pid > 0).then_some(self.pid)
    }

    /// Waits for the command to end; its status is the supervisor's.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        match &mut self.child {
            Child::Spawned(child) => child.wait().await,
            Child::Launched(child) => child.wait().await,
        }
    }
}

/// Starts `spec` under a supervisor in a new process group, killed with its worker: through
/// this process's launcher when it has one and it can (see [`super::launcher`]), else as a
/// program of its own ([`SUPERVISE_ARG`]), else forked (a process that is not the binary).
pub async fn start(spec: CommandSpec) -> io::Result<Supervised> {
    if let Some(launcher) = launcher() {
        let request = Request {
            argv: std::iter::once(spec.program.clone()).chain(spec.args.iter().cloned()).collect(),
            env: spec.env.iter().map(|(name, value)| assignment(name, value)).collect(),
            cwd: spec.cwd.clone(),
        };
        match crate::process::blocking(move || launcher.launch(&request)).await {
            Ok(Ok(mut launched)) => {
                let stdout = launched.stdout.take().map(|s| Box::new(s) as Box<_>);
                let stderr = launched.stderr.take().map(|s| Box::new(s) as Box<_>);
                let pid = launched.id();
                return Ok(Supervised { pid, stdout, stderr, child: Child::Launched(launched) });
            }
            // Too large for one socket message, or refused: this command only goes the
            // slower way.
            Ok(Err(e)) if !is_gone(&e) => {
                tracing::debug!("the launcher could not start a command ({e}): started alone");
            }
            Ok(Err(e)) => {
                LAUNCHER_GONE.store(true, Ordering::Relaxed);
                launcher.reap();
                tracing::warn!(
                    "the launcher of shell commands is gone ({e}): each command now starts its \
                     supervisor as a program"
                );
            }
            Err(e) => return Err(io::Error::other(e)),
        }
    }
    let mut command = supervised(&spec.program, &spec.args);
    command
        .env_clear()
        .envs(spec.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(cwd) = &spec.cwd {
        command.current_dir(cwd);
    }
    let mut child = command.spawn()?;
    let stdout = child.stdout.take().map(|s| Box::new(s) as Box<_>);
    let stderr = child.stderr.take().map(|s| Box::new(s) as Box<_>);
    let pid = child.id().unwrap_or_default();
    Ok(Supervised { pid, stdout, stderr, child: Child::Spawned(child) })
}

/// `NAME=value`.
fn assignment(name: &OsStr, value: &OsStr) -> OsString {
    let mut out = OsString::with_capacity(name.len() + 1 + value.len());
    out.push(name);
    out.push("=");
    out.push(value);
    out
}

/// Whether a launch failed because the launcher process is gone.
fn is_gone(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset | io::ErrorKind::NotConnected
    )
}

/// This process's launcher: started on first use, when the binary has named itself (see
/// [`use_binary`]); `None` without one, if it could not start, or once it is gone.
fn launcher() -> Option<&'static Launcher> {
    static LAUNCHER: OnceLock<Option<Launcher>> = OnceLock::new();
    if LAUNCHER_GONE.load(Ordering::Relaxed) {
        return None;
    }
    let binary = SUPERVISOR.get()?;
    LAUNCHER
        .get_or_init(|| match Launcher::start(binary) {
            Ok(launcher) => Some(launcher),
            Err(e) => {
                tracing::warn!(
                    "cannot start the launcher of shell commands ({e}): each command starts \
                     its supervisor as a program"
                );
                None
            }
        })
        .as_ref()
}

/// Set when the launcher died: commands then start their supervisors as programs.
static LAUNCHER_GONE: AtomicBool = AtomicBool::new(false);

/// `program` with `args`, to run under a supervisor in a new process group, killed with its
/// worker.
fn supervised(program: &OsStr, args: &[OsString]) -> tokio::process::Command {
    let worker = std::process::id() as libc::pid_t;
    match SUPERVISOR.get() {
        Some(binary) => {
            let mut command = tokio::process::Command::new(binary);
            command.arg(SUPERVISE_ARG).arg(worker.to_string()).arg(program).args(args);
            command.process_group(0);
            command
        }
        None => {
            let mut command = tokio::process::Command::new(program);
            command.args(args);
            // SAFETY: the closure runs in the forked child before exec and only makes
            // async-signal-safe calls (see `split_off_supervisor`).
            unsafe {
                command.pre_exec(move || split_off_supervisor(worker));
            }
            command
        }
    }
}

/// If this process was started as a supervisor (`args` after the program name begin with
/// [`SUPERVISE_ARG`]) or as a launcher ([`LAUNCH_ARG`]), does that job and exits; otherwise
/// returns. Must run before the process starts any thread.
pub fn run_if_asked(args: &[OsString]) {
    let first = args.first().map(OsString::as_os_str);
    if first == Some(OsStr::new(LAUNCH_ARG)) {
        let worker = args.get(1).and_then(|w| w.to_str()?.parse().ok()).unwrap_or(-1);
        super::launcher::serve(worker);
    }
    if first != Some(OsStr::new(SUPERVISE_ARG)) {
        return;
    }
    let (Some(worker), Some(_)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: lakeward {SUPERVISE_ARG} <worker pid> <program> [args…]");
        std::process::exit(2);
    };
    let worker: libc::pid_t = worker.to_str().and_then(|w| w.parse().ok()).unwrap_or(-1);
    let argv: Vec<CString> =
        args[2..].iter().map(|a| CString::new(a.as_bytes()).unwrap_or_default()).collect();
    fork_and_supervise(worker, &argv, None)
}

/// Forks the command `argv` (with `env`, else this process's environment) and supervises it
/// until it ends, then exits with its status. Only for a process with one thread.
pub(super) fn fork_and_supervise(
    worker: libc::pid_t,
    argv: &[CString],
    env: Option<&[CString]>,
) -> ! {
    let pointers = |strings: &[CString]| {
        let mut pointers: Vec<*const libc::c_char> = strings.iter().map(|a| a.as_ptr()).collect();
        pointers.push(std::ptr::null());
        pointers
    };
    let args = pointers(argv);
    let env = env.map(pointers);
    // SAFETY: this process has one thread, so the child may do anything before exec; the
    // parent only supervises.
    let command = unsafe { libc::fork() };
    match command {
        -1 => {
            eprintln!("lakeward supervisor: cannot fork: {}", io::Error::last_os_error());
            std::process::exit(126);
        }
        0 => {
            // SAFETY: NUL-terminated arrays of C strings that outlive the call. SIGPIPE back
            // to its default: Rust ignores it in this process, and the command would inherit
            // that (a `yes | head` would then fail on a broken pipe instead of ending).
            unsafe {
                libc::signal(libc::SIGPIPE, libc::SIG_DFL);
                match &env {
                    Some(env) => libc::execvpe(args[0], args.as_ptr(), env.as_ptr()),
                    None => libc::execvp(args[0], args.as_ptr()),
                };
            }
            eprintln!(
                "lakeward supervisor: cannot run {:?}: {}",
                argv[0],
                io::Error::last_os_error()
            );
            std::process::exit(127);
        }
        command => supervise_until_exit(worker, command),
    }
}

/// Runs in the forked child: makes it a group leader, forks the command's process (which
/// returns to exec the command) and turns this one into its supervisor (which never returns).
fn split_off_supervisor(worker: libc::pid_t) -> io::Result<()> {
    // SAFETY: setpgid/fork on our own process.
    if unsafe { libc::setpgid(0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fork in a single-threaded child (only the forking thread survives a fork).
    let command = unsafe { libc::fork() };
    match command {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(()),
        command => supervise_until_exit(worker, command),
    }
}

fn supervise_until_exit(worker: libc::pid_t, command: libc::pid_t) -> ! {
    // SAFETY: every call below is async-signal-safe and touches only this process, its
    // child and its own process group.
    unsafe {
        // Close the pipe on which the worker learns whether exec succeeded (and every other
        // inherited descriptor but the standard ones), so the worker sees the command started.
        if libc::syscall(libc::SYS_close_range, 3 as libc::c_uint, libc::c_uint::MAX, 0) != 0 {
            for fd in 3..1024 {
                libc::close(fd);
            }
        }
        // The command's end is awaited as a signal (SIGCHLD, held pending while blocked), so
        // the supervisor ends as soon as its command does; the worker is checked between waits.
        // Blocked only here: the command's own process keeps its mask unchanged. A command that
        // ended before the block is found by the `waitpid` that starts each round.
        let mut child_ended: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut child_ended);
        libc::sigaddset(&mut child_ended, libc::SIGCHLD);
        libc::sigprocmask(libc::SIG_BLOCK, &child_ended, std::ptr::null_mut());
        let pause = libc::timespec { tv_sec: 0, tv_nsec: WATCH_INTERVAL_NANOS };
        loop {
            let mut status = 0;
            if libc::waitpid(command, &mut status, libc::WNOHANG) == command {
                if libc::WIFEXITED(status) {
                    libc::_exit(libc::WEXITSTATUS(status));
                }
                // Killed by a signal: end the same way, so the worker reports it.
                let signal = libc::WTERMSIG(status);
                libc::signal(signal, libc::SIG_DFL);
                libc::kill(libc::getpid(), signal);
                libc::_exit(128 + signal);
            }
            if libc::getppid() != worker {
                // The worker is gone: end the command and everything it started, and this.
                libc::killpg(0, libc::SIGKILL);
                libc::_exit(137);
            }
            libc::sigtimedwait(&child_ended, std::ptr::null_mut(), &pause);
        }
    }
}
