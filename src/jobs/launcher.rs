//! A small helper process that starts shell commands' supervisors for a worker, so starting a
//! command costs the fork of a small process instead of a new run of this large executable.
//!
//! Every start of the `lakeward` executable pays its dynamic loader to relocate tens of
//! megabytes of tables before `main`, and its exit to unmap them: with a new `lakeward
//! __supervise` per command, a `perf record` of 8,000 shell tasks found three quarters of the
//! machine's CPU there. The launcher (`lakeward __launch <worker pid>`, see [`serve`]) is that
//! start paid once per worker process. It is single-threaded and small, with a socket to the
//! worker as its stdin. For each request (program, arguments, environment, directory, and the
//! two output pipes as descriptors) it clones itself with `CLONE_PARENT`, so the copy is the
//! worker's own child, exactly as a supervisor the worker spawned would be. The copy leads a new
//! process group, takes the pipes as its output and becomes the command's supervisor (see
//! `supervise`); the worker waits for it through a pidfd. When the worker dies the socket
//! closes and the launcher exits; the supervisors see their parent gone and kill their groups.
//!
//! The launcher only forks: it never runs a command itself, holds no state but its socket, and
//! must not outlive its worker. A worker whose launcher cannot start or has died, and a command
//! the launcher cannot take, fall back to starting the supervisor as a program (see
//! `supervise::start`).

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Mutex;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::net::unix::pipe;

/// The first argument that makes the binary a launcher: `lakeward __launch <worker pid>`.
pub const LAUNCH_ARG: &str = "__launch";

/// Largest request (the command line and environment) the launcher reads. The kernel's limit
/// on one socket message (the send buffer, about 200 KB by default) is usually lower: a larger
/// request then fails with `EMSGSIZE`, and the command falls back like a too-long one.
const MAX_REQUEST: usize = 1 << 20;

/// Descriptors a request carries: the command's stdout and stderr.
const PASSED_FDS: usize = 2;

/// A command for the launcher: stdin is `/dev/null`, stdout and stderr are new pipes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// `argv`, the program first (searched in `PATH` when it has no slash).
    pub argv: Vec<OsString>,
    /// The whole environment, as `NAME=value`.
    pub env: Vec<OsString>,
    pub cwd: Option<PathBuf>,
}

impl Request {
    /// `[argument count][environment count][cwd][argv…][env…]`, each string length-prefixed.
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut put = |bytes: &[u8]| {
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(bytes);
        };
        put(&(self.argv.len() as u32).to_le_bytes());
        put(&(self.env.len() as u32).to_le_bytes());
        put(self.cwd.as_deref().map_or(&[][..], |c| c.as_os_str().as_bytes()));
        for item in self.argv.iter().chain(&self.env) {
            put(item.as_bytes());
        }
        out
    }

    fn decode(mut bytes: &[u8]) -> Option<Request> {
        let mut take = || -> Option<&[u8]> {
            let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
            let item = bytes.get(4..4 + len)?;
            bytes = &bytes[4 + len..];
            Some(item)
        };
        let count = |b: &[u8]| Some(u32::from_le_bytes(b.try_into().ok()?) as usize);
        let argc = count(take()?)?;
        let envc = count(take()?)?;
        let cwd = take()?;
        let cwd = (!cwd.is_empty()).then(|| PathBuf::from(OsStr::from_bytes(cwd)));
        let mut strings = Vec::with_capacity(argc + envc);
        for _ in 0..argc + envc {
            strings.push(OsString::from_vec(take()?.to_vec()));
        }
        let env = strings.split_off(argc);
        (!strings.is_empty()).then_some(Request { argv: strings, env, cwd })
    }
}

/// The worker's side: the socket to its launcher process.
pub struct Launcher {
    socket: Mutex<OwnedFd>,
    /// The launcher process, reaped once it is found gone (see [`Launcher::reap`]).
    process: Mutex<std::process::Child>,
}

impl Launcher {
    /// Starts `binary` as this process's launcher.
    pub fn start(binary: &Path) -> io::Result<Launcher> {
        let (ours, theirs) = seqpacket_pair()?;
        let process = std::process::Command::new(binary)
            .arg(LAUNCH_ARG)
            .arg(std::process::id().to_string())
            .stdin(theirs)
            // Its own group: a terminal's Ctrl-C goes to the worker, which ends it by exiting.
            .process_group(0)
            .spawn()?;
        Ok(Launcher { socket: Mutex::new(ours), process: Mutex::new(process) })
    }

    /// Collects the launcher's exit status once it has exited, so it leaves no zombie.
    pub fn reap(&self) {
        let _ = self.process.lock().unwrap_or_else(|e| e.into_inner()).try_wait();
    }

    /// Starts `request`'s command under a new supervisor; blocks for the launcher's fork (a
    /// fraction of a millisecond), so call it off the async threads. An error of kind
    /// `BrokenPipe`, `ConnectionReset` or `NotConnected` means the launcher is gone.
    pub fn launch(&self, request: &Request) -> io::Result<Launched> {
        let (stdout, stdout_w) = pipe_pair()?;
        let (stderr, stderr_w) = pipe_pair()?;
        let message = request.encode();
        if message.len() > MAX_REQUEST {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "command line too long"));
        }
        let reply = {
            let socket = self.socket.lock().unwrap_or_else(|e| e.into_inner());
            send_with_fds(
                socket.as_raw_fd(),
                &message,
                &[stdout_w.as_raw_fd(), stderr_w.as_raw_fd()],
            )?;
            let mut reply = [0u8; 4];
            // SAFETY: reads into a 4-byte buffer we own.
            let n = unsafe { libc::recv(socket.as_raw_fd(), reply.as_mut_ptr().cast(), 4, 0) };
            match n {
                4 => i32::from_le_bytes(reply),
                0 => return Err(io::ErrorKind::ConnectionReset.into()),
                _ => return Err(io::Error::last_os_error()),
            }
        };
        drop((stdout_w, stderr_w));
        if reply <= 0 {
            return Err(io::Error::from_raw_os_error(-reply));
        }
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, reply, 0) };
        if pidfd < 0 {
            let error = io::Error::last_os_error();
            // SAFETY: the supervisor is our child; kill its group and reap it.
            unsafe {
                libc::killpg(reply, libc::SIGKILL);
                libc::waitpid(reply, std::ptr::null_mut(), 0);
            }
            return Err(error);
        }
        // SAFETY: a descriptor pidfd_open just returned, owned by nothing else.
        let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) };
        // SAFETY: the AsyncFd owns the descriptor, which stays open as long as it does.
        let pidfd = unsafe { AsyncFd::register_with_interest(pidfd, Interest::READABLE) }?;
        Ok(Launched {
            pid: reply,
            pidfd: Some(pidfd),
            stdout: Some(pipe::Receiver::from_owned_fd(stdout)?),
            stderr: Some(pipe::Receiver::from_owned_fd(stderr)?),
        })
    }
}

/// A supervisor the launcher started: a child of this process, leading its own group.
pub struct Launched {
    pid: libc::pid_t,
    /// `None` once reaped.
    pidfd: Option<AsyncFd<OwnedFd>>,
    pub stdout: Option<pipe::Receiver>,
    pub stderr: Option<pipe::Receiver>,
}

impl Launched {
    pub fn id(&self) -> u32 {
        self.pid as u32
    }

    /// Waits for the supervisor to exit (with its command's status) and reaps it.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        let Some(pidfd) = &self.pidfd else {
            return Err(io::Error::other("the supervisor was already waited for"));
        };
        loop {
            let mut ready = pidfd.readable().await?;
            let mut status = 0;
            // SAFETY: waits for our own child without blocking.
            match unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) } {
                0 => ready.clear_ready(),
                -1 => return Err(io::Error::last_os_error()),
                _ => {
                    self.pidfd = None;
                    return Ok(ExitStatus::from_raw(status));
                }
            }
        }
    }
}

impl Drop for Launched {
    fn drop(&mut self) {
        if self.pidfd.is_some() {
            // Dropped before its end (the task was dropped, and its group killed): reaped by
            // a thread, so no zombie is left behind.
            let pid = self.pid;
            std::thread::spawn(move || {
                // SAFETY: waits for our own child.
                unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
            });
        }
    }
}

/// The launcher process: serves requests on stdin until the worker closes it. Runs in a
/// process that has just started (one thread), so it may allocate and fork freely.
pub fn serve(worker: libc::pid_t) -> ! {
    name_this_process(c"lakeward-launch");
    let mut buffer = vec![0u8; MAX_REQUEST];
    loop {
        let (len, fds) = match receive_with_fds(0, &mut buffer) {
            Ok(Some(received)) => received,
            Ok(None) => std::process::exit(0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => std::process::exit(1),
        };
        let reply = match Request::decode(&buffer[..len]) {
            Some(request) if fds.len() == PASSED_FDS => start_supervisor(&request, &fds, worker),
            _ => -libc::EINVAL,
        };
        drop(fds);
        // SAFETY: sends 4 bytes we own; MSG_NOSIGNAL: a gone worker is an error, not SIGPIPE.
        let sent =
            unsafe { libc::send(0, reply.to_le_bytes().as_ptr().cast(), 4, libc::MSG_NOSIGNAL) };
        if sent != 4 {
            std::process::exit(1);
        }
    }
}

/// Clones this process as the worker's child, which becomes the supervisor of `request`'s
/// command; returns its pid once it leads its group, or a negative errno.
fn start_supervisor(request: &Request, fds: &[OwnedFd], worker: libc::pid_t) -> i32 {
    let cstring = |s: &OsStr| CString::new(s.as_bytes()).unwrap_or_default();
    let argv: Vec<CString> = request.argv.iter().map(|a| cstring(a)).collect();
    let env: Vec<CString> = request.env.iter().map(|e| cstring(e)).collect();
    let cwd = request.cwd.as_deref().map(|c| cstring(c.as_os_str()));
    let Ok((ready, ready_w)) = pipe_pair() else { return -libc::EMFILE };
    // SAFETY: a fork (no CLONE_VM: the child gets a copy of this single-threaded process) whose
    // parent is the worker; the child never returns from `become_supervisor`.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (libc::CLONE_PARENT | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    match pid {
        -1 => -io::Error::last_os_error().raw_os_error().unwrap_or(libc::EAGAIN),
        0 => {
            drop(ready);
            become_supervisor(worker, &argv, &env, cwd.as_ref(), fds, ready_w)
        }
        pid => {
            drop(ready_w);
            // The child writes nothing: the read returns (end of file) once it has made
            // itself a group leader and closed its end, or died, so a signal to the group
            // right after this reply reaches it.
            let mut byte = 0u8;
            // SAFETY: reads one byte into our own buffer.
            unsafe { libc::read(ready.as_raw_fd(), (&mut byte as *mut u8).cast(), 1) };
            pid as i32
        }
    }
}

fn become_supervisor(
    worker: libc::pid_t,
    argv: &[CString],
    env: &[CString],
    cwd: Option<&CString>,
    fds: &[OwnedFd],
    ready: OwnedFd,
) -> ! {
    name_this_process(c"lakeward-superv");
    // SAFETY: a single-threaded copy of the launcher, setting up its own descriptors.
    unsafe {
        libc::setpgid(0, 0);
        drop(ready);
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY);
        libc::dup2(null, 0);
        libc::dup2(fds[0].as_raw_fd(), 1);
        libc::dup2(fds[1].as_raw_fd(), 2);
        if let Some(cwd) = cwd {
            if libc::chdir(cwd.as_ptr()) != 0 {
                eprintln!("cannot change to directory {cwd:?}: {}", io::Error::last_os_error());
                libc::_exit(127);
            }
        }
    }
    super::supervise::fork_and_supervise(worker, argv, Some(env))
}

/// Names this process as `ps` and `top` show it (its command line stays the binary's).
fn name_this_process(name: &std::ffi::CStr) {
    // SAFETY: PR_SET_NAME copies at most 16 bytes of a NUL-terminated string.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
}

/// A connected pair of `SOCK_SEQPACKET` sockets (messages keep their boundaries).
fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: writes two descriptors into our array.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    } != 0
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both were just created and are owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A pipe: (read end, write end), both close-on-exec.
fn pipe_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: writes two descriptors into our array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both were just created and are owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Sends `data` with `fds` attached (`SCM_RIGHTS`).
fn send_with_fds(socket: RawFd, data: &[u8], fds: &[RawFd]) -> io::Result<()> {
    let fd_bytes = std::mem::size_of_val(fds) as u32;
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(fd_bytes) } as usize;
    let mut control = vec![0u8; space];
    let mut iov = libc::iovec { iov_base: data.as_ptr() as *mut _, iov_len: data.len() };
    // SAFETY: zeroed msghdr, then pointed at buffers that outlive the call.
    unsafe {
        let mut header: libc::msghdr = std::mem::zeroed();
        header.msg_iov = &mut iov;
        header.msg_iovlen = 1;
        header.msg_control = control.as_mut_ptr().cast();
        header.msg_controllen = space as _;
        let cmsg = libc::CMSG_FIRSTHDR(&header);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(fd_bytes) as _;
        std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(cmsg).cast(), fds.len());
        if libc::sendmsg(socket, &header, libc::MSG_NOSIGNAL) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Receives one message into `buffer` and the descriptors attached to it (close-on-exec);
/// `None` when the peer closed the socket.
fn receive_with_fds(socket: RawFd, buffer: &mut [u8]) -> io::Result<Option<(usize, Vec<OwnedFd>)>> {
    // SAFETY: CMSG_SPACE only computes a size.
    let space =
        unsafe { libc::CMSG_SPACE((PASSED_FDS * std::mem::size_of::<RawFd>()) as u32) } as usize;
    let mut control = vec![0u8; space];
    let mut iov = libc::iovec { iov_base: buffer.as_mut_ptr().cast(), iov_len: buffer.len() };
    let mut fds = Vec::new();
    // SAFETY: zeroed msghdr pointed at buffers that outlive the call; the descriptors read
    // from the control message are new ones the kernel gave us.
    let n = unsafe {
        let mut header: libc::msghdr = std::mem::zeroed();
        header.msg_iov = &mut iov;
        header.msg_iovlen = 1;
        header.msg_control = control.as_mut_ptr().cast();
        header.msg_controllen = space as _;
        let n = libc::recvmsg(socket, &mut header, libc::MSG_CMSG_CLOEXEC);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut cmsg = libc::CMSG_FIRSTHDR(&header);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                let count = ((*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize)
                    / std::mem::size_of::<RawFd>();
                for i in 0..count {
                    fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&header, cmsg);
        }
        if header.msg_flags & libc::MSG_TRUNC != 0 {
            return Ok(Some((0, fds)));
        }
        n as usize
    };
    Ok((n > 0).then_some((n, fds)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_survive_encoding() {
        let request = Request {
            argv: vec!["sh".into(), "-c".into(), "echo 'é' \0x".into()],
            env: vec!["PATH=/bin".into(), "EMPTY=".into()],
            cwd: Some("/tmp/some dir".into()),
        };
        assert_eq!(Request::decode(&request.encode()), Some(request));
        let no_cwd = Request { argv: vec!["true".into()], env: vec![], cwd: None };
        assert_eq!(Request::decode(&no_cwd.encode()), Some(no_cwd));
        assert_eq!(Request::decode(&[1, 0, 0]), None, "cut short");
        let no_program = Request::default();
        assert_eq!(Request::decode(&no_program.encode()), None);
    }
}
