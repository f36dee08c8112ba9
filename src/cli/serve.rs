//! Long-running commands: `standalone`, `scheduler`, `worker`, `web`, and `db migrate`.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;

use crate::config::Config;
use crate::lake::query::Console;
use crate::process::spawn_owned;
use crate::runtime::{shutdown_channel, termination_signal, Components};
use crate::store::mask_password;
use crate::users::ensure_first_admin;
use crate::web::{self, AppState};

/// Prints a status line; a closed stdout must not bring a server down.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{line}");
}

fn web_state(c: &Components) -> AppState {
    let console = Console::new(c.warehouse.clone(), c.tables(), c.config.sql.limits());
    let state = AppState::new(c.store.clone(), c.versions.clone(), &c.config).with_console(console);
    // The embedded catalog is served to other engines; a REST catalog serves itself.
    match c.config.catalog.uri {
        None => state.with_tables(c.tables()),
        Some(_) => state,
    }
}

/// Binds the web server's address; without authentication, only a loopback one.
async fn bind(c: &Components) -> anyhow::Result<tokio::net::TcpListener> {
    let bind = &c.config.web.bind;
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("listening on {bind}"))?;
    web::check_bind(listener.local_addr()?, c.config.web.auth).map_err(anyhow::Error::msg)?;
    Ok(listener)
}

/// On first start (no users yet), creates `admin` and prints its password, once.
async fn first_admin(c: &Components) -> anyhow::Result<()> {
    if !c.config.web.auth {
        return Ok(());
    }
    if let Some(password) = ensure_first_admin(&c.store).await? {
        say(&format!(
            "created user `admin` with password: {password}\n\
             (shown only this once; change it with `lakeward users create admin --role admin --password ...`)"
        ));
    }
    Ok(())
}

/// The parts of lakeward one process runs.
struct Parts {
    scheduler: bool,
    worker: bool,
    web: Option<tokio::net::TcpListener>,
}

/// Runs `parts` until Ctrl-C or SIGTERM, then stops them and waits for them to finish.
async fn run_until_terminated(c: Components, parts: Parts) -> anyhow::Result<ExitCode> {
    // Listening before anything starts: a signal during start-up stops the process cleanly.
    let terminated = termination_signal();
    let (stop, shutdown) = shutdown_channel();
    let listen = if parts.scheduler || parts.worker { c.store.listen() } else { None };
    let mut tasks = Vec::new();
    if parts.scheduler {
        tasks.push(spawn_owned(c.scheduler().run(shutdown.clone())));
        tasks.push(spawn_owned(c.delivery().run(shutdown.clone())));
    }
    if parts.worker {
        tasks.push(spawn_owned(c.worker().run(shutdown.clone())));
    }
    if let Some(listener) = parts.web {
        let serving = web::serve(listener, web_state(&c), shutdown.clone());
        tasks.push(spawn_owned(async move {
            if let Err(e) = serving.await {
                tracing::error!("web server stopped: {e}");
            }
        }));
    }
    terminated.await;
    say("shutting down");
    stop.trigger();
    for task in tasks {
        let _ = task.await;
    }
    drop(listen);
    c.store.close().await;
    Ok(ExitCode::SUCCESS)
}

/// Topics of the reference streaming DAGs, made on the demo broker.
const DEMO_TOPICS: &[(&str, i32)] = &[("web_logs", 3), ("connection_logs", 3), ("sensors", 3)];

pub async fn standalone(mut config: Config) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    // Without a Kafka cluster, a demo broker in this process lets the streaming DAGs run.
    let demo = if config.kafka.brokers.trim().is_empty() {
        let demo = crate::stream::demo::DemoBroker::start(DEMO_TOPICS)?;
        config.kafka.brokers = demo.brokers().as_str().to_string();
        say(&format!(
            "demo Kafka broker on {} (DEMO ONLY: in memory, lost on exit; set [kafka] brokers \
             or LAKEWARD_KAFKA_BROKERS for a real cluster)",
            config.kafka.brokers
        ));
        Some(demo)
    } else {
        None
    };
    let c = super::open(config).await?;
    if demo.is_some() {
        unpause_demo_dags(&c).await?;
    }
    let listener = bind(&c).await?;
    first_admin(&c).await?;
    say(&format!(
        "lakeward standalone ready in {} ms: UI on http://{}/ (DAGs from {}, database {})",
        started.elapsed().as_millis(),
        listener.local_addr()?,
        c.config.dags_folder.display(),
        mask_password(&c.config.database_url()),
    ));
    let code =
        run_until_terminated(c, Parts { scheduler: true, worker: true, web: Some(listener) }).await;
    drop(demo);
    code
}

/// DAGs tagged `demo` (the simulated producers) run while the demo broker does: they are
/// registered and unpaused before the scheduler starts.
async fn unpause_demo_dags(c: &Components) -> anyhow::Result<()> {
    let bag = crate::dag::folder::load_folder(&c.config.dags_folder, c.versions.registry());
    for dag in bag.dags.values().filter(|d| d.tags.iter().any(|t| t == "demo")) {
        let record = crate::store::DagRecord::from(dag.as_ref());
        crate::store::dags::register(c.store.write(), &record, crate::time::now_micros()).await?;
        crate::store::dags::set_paused(c.store.write(), &dag.id, false).await?;
    }
    Ok(())
}

pub async fn scheduler(config: Config) -> anyhow::Result<ExitCode> {
    let c = super::open(config).await?;
    run_until_terminated(c, Parts { scheduler: true, worker: false, web: None }).await
}

pub async fn worker(config: Config) -> anyhow::Result<ExitCode> {
    let c = super::open(config).await?;
    run_until_terminated(c, Parts { scheduler: false, worker: true, web: None }).await
}

pub async fn web(config: Config) -> anyhow::Result<ExitCode> {
    let c = super::open(config).await?;
    let listener = bind(&c).await?;
    say(&format!("lakeward web on http://{}/", listener.local_addr()?));
    run_until_terminated(c, Parts { scheduler: false, worker: false, web: Some(listener) }).await
}

pub async fn migrate(config: Config) -> anyhow::Result<ExitCode> {
    let c = super::open(config).await?;
    println!("database {} is up to date", mask_password(&c.config.database_url()));
    Ok(ExitCode::SUCCESS)
}
