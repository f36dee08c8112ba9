//! What a long-running lakeward process is: its identity (`host:pid:kind:nonce`), its host
//! name, how its loops learn that they must stop (Ctrl-C, SIGTERM, or a trigger), and how it
//! starts tasks: every task is owned ([`spawn_owned`], [`blocking`], [`blocking_producer`]), the
//! only places that spawn (`clippy.toml` forbids bare `tokio::spawn` elsewhere), and what it
//! uses of the machine ([`usage`]: memory, CPU time, threads, open files, from `/proc`;
//! [`release_free_memory`] to give freed memory and idle code pages back;
//! [`limit_c_heap`] for what C libraries allocate).
//! It builds nothing and knows no scheduler or worker: they depend on it.

use tokio::sync::watch;

/// Tells long-running loops to stop. Dropping the trigger counts as triggering it.
pub struct ShutdownTrigger(watch::Sender<bool>);

#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

pub fn shutdown_channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger(tx), Shutdown(rx))
}

impl ShutdownTrigger {
    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }
}

impl Shutdown {
    /// Returns once shutdown has been requested.
    pub async fn wait(&mut self) {
        while !*self.0.borrow_and_update() {
            if self.0.changed().await.is_err() {
                return;
            }
        }
    }

    pub fn is_requested(&self) -> bool {
        *self.0.borrow() || self.0.has_changed().is_err()
    }
}

/// The host this process runs on.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it on success.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    if ok && end > 0 {
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "localhost".to_string()
    }
}

/// What this process uses of the machine, as Prometheus' `process_*` metrics report it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    pub resident_memory_bytes: u64,
    pub virtual_memory_bytes: u64,
    /// User and system CPU time.
    pub cpu_seconds: f64,
    /// Since the Unix epoch.
    pub start_time_seconds: f64,
    pub threads: u64,
    pub open_fds: u64,
}

/// This process's [`Usage`], read from `/proc` (`None` where there is no `/proc`).
pub fn usage() -> Option<Usage> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces: the first is
    // field 3 of proc(5) (the state).
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    // SAFETY: sysconf only reads a system constant.
    let (ticks, page) =
        unsafe { (libc::sysconf(libc::_SC_CLK_TCK), libc::sysconf(libc::_SC_PAGESIZE)) };
    let ticks = if ticks > 0 { ticks as f64 } else { 100.0 };
    let page = if page > 0 { page as u64 } else { 4096 };
    let boot_time = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("btime ")?.trim().parse::<u64>().ok())?;
    Some(Usage {
        resident_memory_bytes: field(24)? * page,
        virtual_memory_bytes: field(23)?,
        cpu_seconds: (field(14)? + field(15)?) as f64 / ticks,
        start_time_seconds: boot_time as f64 + field(22)? as f64 / ticks,
        threads: field(20)?,
        open_fds: std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64),
    })
}

/// Bounds what glibc's malloc, which the C libraries use (librdkafka, SQLite, zstd), keeps of
/// the memory they free. librdkafka's threads decompress every fetch of a compressed topic
/// into large buffers:
/// - in a heap per thread, freed ones were kept, and a zstd stream's peak RSS was 439-493 MB
///   against 349-370 MB with one heap, with no loss of throughput
///   (`LAKEWARD_BENCH_COMPRESSION=zstd LAKEWARD_BENCH_EVENTS=5000000`, four runs each);
/// - in that one heap, glibc raises its threshold for mapping a block on its own each time
///   such a buffer is freed, so later ones came from the heap, whose pages stay resident when
///   freed: 100-120 MB of it during a zstd stream. A fixed threshold of 256 KiB maps every
///   larger block on its own and unmaps it when freed: 59-65 MB of heap, and a peak of
///   290-294 MB instead of 327 MB over 105M events
///   (`… LAKEWARD_BENCH_EVENTS=105000000 LAKEWARD_BENCH_COMPRESSION=zstd`).
///
/// Call it first thing in `main`, before any thread starts. Returns whether glibc took both
/// settings (always false elsewhere).
pub fn limit_c_heap() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets tunables of glibc's allocator; it takes no pointers.
        let (one_heap, fixed_threshold) = unsafe {
            (
                libc::mallopt(libc::M_ARENA_MAX, 1) == 1,
                libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024) == 1,
            )
        };
        one_heap && fixed_threshold
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Hands the memory freed since the last call back to the operating system. The allocator
/// (mimalloc, set by the binary) returns freed pages lazily, during later allocations, so a
/// process that goes idle after a large job would keep them for good. It walks the
/// allocator's arenas: call it when work has ended, not after every allocation.
pub fn release_free_memory() {
    // SAFETY: mi_collect takes no pointers and only touches mimalloc's own bookkeeping,
    // which is thread-safe; it is harmless when mimalloc is not the global allocator.
    unsafe { libmimalloc_sys::mi_collect(true) }
    page_out_executable();
}

/// Hands back the pages of this executable's own file that work brought in: the code and
/// read-only data of the data engines (Polars, Parquet, Iceberg) a job ran, about 70 MB after
/// the e-commerce DAG, which the kernel would otherwise count as this process's for good.
/// They are clean copies of the file, so nothing is lost: the next job reads back the pages it
/// runs. Linux only (`MADV_PAGEOUT`, 5.4 and later); elsewhere, or when refused, nothing
/// happens.
fn page_out_executable() {
    #[cfg(target_os = "linux")]
    {
        let Ok(exe) = std::fs::read_link("/proc/self/exe") else { return };
        let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else { return };
        for (start, end) in file_mappings(&maps, &exe.to_string_lossy()) {
            // SAFETY: the range is a whole mapping of this process, backed by a file it does
            // not write; paging it out only drops clean pages, which fault back in from the
            // file when touched. An error (an old kernel) leaves the pages where they are.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_PAGEOUT);
            }
        }
    }
}

/// The address ranges of `/proc/self/maps` lines that map `path` without write access.
fn file_mappings(maps: &str, path: &str) -> Vec<(usize, usize)> {
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let range = fields.next()?;
            let permissions = fields.next()?;
            // offset, device, inode, then the path (which may contain spaces).
            let mapped = fields.skip(3).collect::<Vec<_>>().join(" ");
            if mapped != path || permissions.contains('w') {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            Some((usize::from_str_radix(start, 16).ok()?, usize::from_str_radix(end, 16).ok()?))
        })
        .collect()
}

/// A unique id for a scheduler or worker process: `host:pid:kind:nonce`.
pub fn process_id(kind: &str) -> String {
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{}:{}:{kind}:{nonce:08x}", hostname(), std::process::id())
}

/// Listens for Ctrl-C and SIGTERM from this call on (so a signal that arrives before the
/// future is first awaited is not lost, nor left to kill the process); the future completes at
/// the first of them.
pub fn termination_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt()).ok();
    let mut terminate = signal(SignalKind::terminate()).ok();
    async move {
        tokio::select! {
            _ = next_signal(interrupt.as_mut()) => {}
            _ = next_signal(terminate.as_mut()) => {}
        }
    }
}

/// The next delivery of `signal`; never, without one.
async fn next_signal(signal: Option<&mut tokio::signal::unix::Signal>) {
    match signal {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// A task spawned on the runtime and owned by whoever holds this handle: dropping the handle
/// aborts the task, so no task outlives the code that started it. Await it for its result.
/// This and [`blocking`] are the only places that spawn (`clippy.toml` forbids the rest).
pub struct Owned<T>(tokio::task::JoinHandle<T>);

/// Spawns `future` as a task owned by the returned handle.
pub fn spawn_owned<F>(future: F) -> Owned<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    #[allow(clippy::disallowed_methods)]
    Owned(tokio::spawn(future))
}

impl<T> Owned<T> {
    /// Stops the task now (it is also stopped when the handle is dropped).
    pub fn abort(&self) {
        self.0.abort();
    }

    /// A handle that can stop the task from elsewhere.
    pub fn abort_handle(&self) -> tokio::task::AbortHandle {
        self.0.abort_handle()
    }
}

impl<T> std::future::Future for Owned<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs blocking work (file systems, Polars, hashing, locks) on the runtime's blocking pool
/// and waits for it. Blocking work cannot be interrupted: it runs to its end even if the
/// caller stops waiting.
pub async fn blocking<T, F>(work: F) -> Result<T, tokio::task::JoinError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    #[allow(clippy::disallowed_methods)]
    tokio::task::spawn_blocking(work).await
}

/// Starts blocking work that feeds a channel and stops by itself once the receiving side is
/// dropped (its next send fails): the receiver owns it.
pub fn blocking_producer<F>(work: F)
where
    F: FnOnce() + Send + 'static,
{
    #[allow(clippy::disallowed_methods)]
    drop(tokio::task::spawn_blocking(work));
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_executable_s_read_only_mappings_are_found() {
        let maps = "\
55d0c0000000-55d0c1000000 r--p 00000000 fd:01 42 /opt/lake ward/bin/lakeward
55d0c1000000-55d0c9000000 r-xp 01000000 fd:01 42 /opt/lake ward/bin/lakeward
55d0c9000000-55d0c9100000 rw-p 09000000 fd:01 42 /opt/lake ward/bin/lakeward
55d0c9100000-55d0c9200000 rw-p 00000000 00:00 0 [heap]
7f0000000000-7f0000100000 r-xp 00000000 fd:01 7 /usr/lib/libc.so.6
";
        let found = super::file_mappings(maps, "/opt/lake ward/bin/lakeward");
        assert_eq!(found, vec![(0x55d0c0000000, 0x55d0c1000000), (0x55d0c1000000, 0x55d0c9000000)]);
    }

    /// Resident pages of files mapped by this process, from `/proc/self/status`.
    fn resident_file_kb() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("RssFile:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// Run alone in a process of its own (the test starts its own binary for it): glibc may serve
    /// a large request from a free chunk of its heap, and other tests running beside it shape
    /// that heap.
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_keeps_mapping_large_blocks_on_their_own_once_limited() {
        const ALONE: &str = "LAKEWARD_TEST_GLIBC_ALONE";
        let name = "process::tests::glibc_keeps_mapping_large_blocks_on_their_own_once_limited";
        if std::env::var_os(ALONE).is_none() {
            let alone = std::process::Command::new(std::env::current_exe().unwrap())
                .args([name, "--exact", "--test-threads=1"])
                .env(ALONE, "1")
                .output()
                .unwrap();
            let said = String::from_utf8_lossy(&alone.stdout);
            assert!(alone.status.success(), "in a process of its own:\n{said}");
            assert!(said.contains("1 passed"), "the test did not run alone:\n{said}");
            return;
        }
        assert!(super::limit_c_heap());
        // By default glibc would raise its threshold to this block's size when the first one
        // is freed, and serve the next ones from its heap.
        for _ in 0..3 {
            // SAFETY: a block allocated and freed here, never read or written.
            let mapped = unsafe {
                let block = libc::malloc(1 << 20);
                assert!(!block.is_null());
                let mapped = libc::mallinfo2().hblkhd;
                libc::free(block);
                mapped
            };
            assert!(mapped >= 1 << 20, "a 1 MiB block came from the heap");
        }
    }

    #[test]
    fn released_memory_includes_the_executable_s_pages() {
        let before = resident_file_kb();
        super::release_free_memory();
        let after = resident_file_kb();
        // What is left is the pages touched since, and the shared libraries'.
        assert!(after < before, "resident file pages {before} kB before, {after} kB after");
    }

    #[test]
    fn usage_reads_this_process() {
        let before = super::usage().expect("/proc is there on Linux");
        assert!(before.resident_memory_bytes > 1 << 20, "{before:?}");
        assert!(before.virtual_memory_bytes >= before.resident_memory_bytes);
        assert!(before.threads >= 1 && before.open_fds >= 3, "{before:?}");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        let age = now.as_secs_f64() - before.start_time_seconds;
        assert!((0.0..3600.0).contains(&age), "started {age} s ago?");
        // Burn some CPU: the counter moves.
        let mut x = 0u64;
        let spin = std::time::Instant::now();
        while spin.elapsed() < std::time::Duration::from_millis(150) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let after = super::usage().unwrap();
        assert!(after.cpu_seconds > before.cpu_seconds, "{before:?} → {after:?}");
    }
}
