//! What a long-running lakeward process is: its identity (`host:pid:kind:nonce`), its host
//! name, how its loops learn that they must stop (Ctrl-C, SIGTERM, or a trigger), and how it
//! starts tasks: every task is owned ([`spawn_owned`], [`blocking`], [`blocking_producer`]), the
//! only places that spawn (`clippy.toml` forbids bare `tokio::spawn` elsewhere).
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

/// A unique id for a scheduler or worker process: `host:pid:kind:nonce`.
pub fn process_id(kind: &str) -> String {
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{}:{}:{kind}:{nonce:08x}", hostname(), std::process::id())
}

/// Waits for Ctrl-C or SIGTERM.
pub async fn termination_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = ctrl_c => {}
        _ = async { match term.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {}
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
