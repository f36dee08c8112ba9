//! Ties a command's processes to the life of the worker that started them.
//!
//! A shell task runs in its own process group, whose leader is a small supervisor forked
//! between `fork` and `exec`: the supervisor forks the command, waits for it and exits with its
//! status, and while it waits it watches its parent. When the worker dies (even by `kill -9`,
//! which runs no cleanup), the supervisor is re-parented and kills the whole group at once, so
//! no command of a dead worker runs on beside the retry of its task. The worker still kills the
//! group itself when a task stops (timeout, shutdown, taken over).
//!
//! Everything here runs in a forked child of a multi-threaded process, so it may only make
//! async-signal-safe system calls: no allocation, no locks, no Rust I/O.

use std::io;

/// How often the supervisor checks that its worker is alive.
const WATCH_INTERVAL_NANOS: libc::c_long = 50_000_000;

/// Makes `command` run under a supervisor in a new process group, killed with its worker.
pub fn supervise(command: &mut tokio::process::Command) {
    let worker = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe calls (see `split_off_supervisor`).
    unsafe {
        command.pre_exec(move || split_off_supervisor(worker));
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
            libc::nanosleep(&pause, std::ptr::null_mut());
        }
    }
}
