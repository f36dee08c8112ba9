//! Processes a test starts (lakeward, chromedriver): each runs in its own process group, and
//! the group is killed when the handle is dropped, which happens when the test ends, passes or
//! panics. If the test binary itself dies, the kernel kills the group leader (parent-death
//! signal), so a crashed test run leaves nothing behind either.

use std::ops::{Deref, DerefMut};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

pub struct ChildProcess(Child);

impl ChildProcess {
    pub fn spawn(command: &mut Command) -> ChildProcess {
        command.process_group(0);
        // SAFETY: prctl is async-signal-safe and only changes this (forked) process.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        ChildProcess(command.spawn().unwrap_or_else(|e| panic!("cannot start {command:?}: {e}")))
    }

    /// Sends `signal` to the process's whole group.
    pub fn signal_group(&self, signal: libc::c_int) {
        // SAFETY: killpg on the group this process leads (it was spawned with process_group(0)).
        unsafe {
            libc::killpg(self.0.id() as libc::pid_t, signal);
        }
    }

    /// Kills the group with SIGKILL and reaps the leader.
    pub fn kill_now(&mut self) {
        self.signal_group(libc::SIGKILL);
        let _ = self.0.wait();
    }

    /// Sends SIGTERM to the leader and waits up to `limit` for it to exit; panics (and kills
    /// the group) if it does not.
    pub fn terminate(mut self, limit: Duration) -> ExitStatus {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{} did not stop on SIGTERM within {limit:?}", self.0.id());
    }
}

impl Deref for ChildProcess {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl DerefMut for ChildProcess {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.kill_now();
    }
}

/// A local TCP port free right now, for a child process to listen on.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
