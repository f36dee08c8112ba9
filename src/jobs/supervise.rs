//! Ties a command's processes to the life of the worker that started them.
//!
//! A shell task runs in its own process group, whose leader is a small supervisor: it forks the
//! command, waits for it and exits with its status, and while it waits it watches its parent.
//! When the worker dies (even by `kill -9`, which runs no cleanup), the supervisor is re-parented
//! and kills the whole group at once, so no command of a dead worker runs on beside the retry of
//! its task. The worker still kills the group itself when a task stops (timeout, shutdown, taken
//! over).
//!
//! The `lakeward` binary starts the supervisor as a program of its own (itself, with
//! [`SUPERVISE_ARG`]), which the standard library spawns without copying the worker: forking a
//! large multi-threaded process costs its page tables and then a copy-on-write fault for each
//! page it writes until the child execs, which was most of a busy worker's CPU with thousands of
//! short commands. A process that is not the binary (tests, programs embedding the library)
//! forks the supervisor between `fork` and `exec` instead. That code runs in a forked child of a
//! multi-threaded process, so it may only make async-signal-safe system calls: no allocation,
//! no locks, no Rust I/O.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::OnceLock;

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

/// `program` with `args`, to run under a supervisor in a new process group, killed with its
/// worker.
pub fn supervised(program: &str, args: &[&OsStr]) -> tokio::process::Command {
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
/// [`SUPERVISE_ARG`]), supervises the command they name and exits with its status; otherwise
/// returns. Must run before the process starts any thread.
pub fn run_if_asked(args: &[OsString]) {
    if args.first().map(OsString::as_os_str) != Some(OsStr::new(SUPERVISE_ARG)) {
        return;
    }
    let (Some(worker), Some(_)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: lakeward {SUPERVISE_ARG} <worker pid> <program> [args…]");
        std::process::exit(2);
    };
    let worker: libc::pid_t = worker.to_str().and_then(|w| w.parse().ok()).unwrap_or(-1);
    let argv: Vec<CString> =
        args[2..].iter().map(|a| CString::new(a.as_bytes()).unwrap_or_default()).collect();
    let mut pointers: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    pointers.push(std::ptr::null());
    // SAFETY: this process has one thread (nothing started yet), so the child may do anything
    // before exec; the parent only supervises.
    let command = unsafe { libc::fork() };
    match command {
        -1 => {
            eprintln!("lakeward supervisor: cannot fork: {}", io::Error::last_os_error());
            std::process::exit(126);
        }
        0 => {
            // SAFETY: a NUL-terminated argv of C strings that outlive the call.
            unsafe { libc::execvp(pointers[0], pointers.as_ptr()) };
            eprintln!(
                "lakeward supervisor: cannot run {:?}: {}",
                args[2],
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
