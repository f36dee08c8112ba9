//! `lakeward runs list` and `lakeward tasks logs`: reading run state from the database.

use std::process::ExitCode;

use anyhow::anyhow;

use crate::config::Config;
use crate::store::Store;
use crate::store::{logs, runs, tasks};
use crate::time::display;

async fn open(config: &Config) -> anyhow::Result<Store> {
    Ok(Store::open(&config.database_url()).await?)
}

pub async fn list_runs(config: Config, dag_id: &str, limit: i64) -> anyhow::Result<ExitCode> {
    let store = open(&config).await?;
    let runs = runs::list(store.read(), dag_id, limit, 0).await?;
    println!(
        "{:<44} {:<10} {:<8} {:<20} {:<20} DURATION",
        "RUN ID", "TYPE", "STATE", "LOGICAL DATE", "STARTED"
    );
    for run in runs {
        let duration = match (run.started_at, run.ended_at) {
            (Some(start), Some(end)) => format!("{:.3}s", (end - start) as f64 / 1e6),
            _ => "-".into(),
        };
        println!(
            "{:<44} {:<10} {:<8} {:<20} {:<20} {duration}",
            run.run_id,
            run.run_type,
            run.state,
            display(run.logical_date),
            run.started_at.map(display).unwrap_or_else(|| "-".into()),
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn task_logs(
    config: Config,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
    try_number: Option<i64>,
) -> anyhow::Result<ExitCode> {
    let store = open(&config).await?;
    let run = runs::get(store.read(), dag_id, run_id)
        .await?
        .ok_or_else(|| anyhow!("no run `{run_id}` of DAG `{dag_id}`"))?;
    let ti = tasks::get_named(store.read(), run.pk, task_id)
        .await?
        .ok_or_else(|| anyhow!("run `{run_id}` has no task `{task_id}`"))?;
    let mut after = 0;
    let mut current_try = None;
    loop {
        let lines = logs::read(store.read(), ti.id, try_number, after, 1000).await?;
        let Some(last) = lines.last() else { break };
        after = last.id;
        for line in &lines {
            if current_try != Some(line.try_number) {
                println!("--- try {} ---", line.try_number);
                current_try = Some(line.try_number);
            }
            println!("{} {:<6} {}", display(line.at), line.stream, line.line);
        }
    }
    if current_try.is_none() {
        println!("(no log lines; task is {})", ti.state);
    }
    Ok(ExitCode::SUCCESS)
}
