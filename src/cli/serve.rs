//! Long-running commands: `standalone`, `scheduler`, `worker`, `web`, and `db migrate`.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;

use crate::config::Config;
use crate::jobs::Registry;
use crate::runtime::{shutdown_channel, termination_signal, Components};
use crate::web::{self, AppState};

async fn open(config: Config) -> anyhow::Result<Components> {
    let url = redact(&config.database_url());
    Components::open(config, Registry::builtin())
        .await
        .with_context(|| format!("opening database {url}"))
}

/// Hides the password of a database URL for display.
pub(super) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => {
                    format!("{}{}:***{}", &url[..scheme + 3], &userinfo[..colon], &url[at..])
                }
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Prints a status line; a closed stdout must not bring a server down.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{line}");
}

fn web_state(c: &Components) -> AppState {
    AppState { store: c.store.clone(), scheduler_timeout: c.config.scheduler.heartbeat_timeout }
}

pub async fn standalone(config: Config) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let c = open(config).await?;
    let listener = tokio::net::TcpListener::bind(&c.config.web.bind)
        .await
        .with_context(|| format!("listening on {}", c.config.web.bind))?;
    let address = listener.local_addr()?;
    let (stop, shutdown) = shutdown_channel();
    let listen = c.store.listen();
    let scheduler = tokio::spawn(c.scheduler().run(shutdown.clone()));
    let worker = tokio::spawn(c.worker().run(shutdown.clone()));
    let server = tokio::spawn(web::serve(listener, web_state(&c), shutdown));
    say(&format!(
        "lakeward standalone ready in {} ms: UI on http://{address}/ (DAGs from {}, database {})",
        started.elapsed().as_millis(),
        c.config.dags_folder.display(),
        redact(&c.config.database_url()),
    ));
    termination_signal().await;
    say("shutting down");
    stop.trigger();
    let _ = tokio::join!(scheduler, worker, server);
    if let Some(listen) = listen {
        listen.abort();
    }
    c.store.close().await;
    Ok(ExitCode::SUCCESS)
}

pub async fn scheduler(config: Config) -> anyhow::Result<ExitCode> {
    let c = open(config).await?;
    let (stop, shutdown) = shutdown_channel();
    let listen = c.store.listen();
    let scheduler = tokio::spawn(c.scheduler().run(shutdown));
    termination_signal().await;
    stop.trigger();
    let _ = scheduler.await;
    if let Some(listen) = listen {
        listen.abort();
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn worker(
    mut config: Config,
    queues: Option<Vec<String>>,
    slots: Option<usize>,
) -> anyhow::Result<ExitCode> {
    if let Some(queues) = queues {
        config.worker.queues = queues;
    }
    if let Some(slots) = slots {
        config.worker.slots = slots;
    }
    let c = open(config).await?;
    let (stop, shutdown) = shutdown_channel();
    let listen = c.store.listen();
    let worker = tokio::spawn(c.worker().run(shutdown));
    termination_signal().await;
    stop.trigger();
    let _ = worker.await;
    if let Some(listen) = listen {
        listen.abort();
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn web(config: Config) -> anyhow::Result<ExitCode> {
    let c = open(config).await?;
    let listener = tokio::net::TcpListener::bind(&c.config.web.bind)
        .await
        .with_context(|| format!("listening on {}", c.config.web.bind))?;
    say(&format!("lakeward web on http://{}/", listener.local_addr()?));
    let (stop, shutdown) = shutdown_channel();
    let server = tokio::spawn(web::serve(listener, web_state(&c), shutdown));
    termination_signal().await;
    stop.trigger();
    let _ = server.await;
    Ok(ExitCode::SUCCESS)
}

pub async fn migrate(config: Config) -> anyhow::Result<ExitCode> {
    let c = open(config).await?;
    println!("database {} is up to date", redact(&c.config.database_url()));
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords_only() {
        assert_eq!(super::redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(super::redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(super::redact("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
    }
}
