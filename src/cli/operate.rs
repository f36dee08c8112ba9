//! `lakeward tasks clear|mark`, `lakeward runs mark` and `lakeward db clean`: operator actions
//! on existing runs.

use std::process::ExitCode;

use anyhow::{anyhow, Context};

use crate::config::Config;
use crate::domain::{RunState, TaskState};
use crate::runtime::Components;
use crate::scheduler::control;
use crate::store::RunRow;
use crate::store::{runs, tasks};
use crate::time::now_micros;

async fn open_run(
    config: Config,
    dag_id: &str,
    run_id: &str,
) -> anyhow::Result<(Components, RunRow)> {
    let c = super::open(config).await?;
    let run = runs::get(c.store.read(), dag_id, run_id)
        .await?
        .ok_or_else(|| anyhow!("no run `{run_id}` of DAG `{dag_id}`"))?;
    Ok((c, run))
}

pub async fn clear(
    config: Config,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
    downstream: bool,
) -> anyhow::Result<ExitCode> {
    let (c, run) = open_run(config, dag_id, run_id).await?;
    let dag = c.versions.get(dag_id, &run.version).await?;
    if !dag.tasks.contains_key(task_id) {
        return Err(anyhow!("run `{run_id}` has no task `{task_id}`"));
    }
    let cleared = control::clear(&c.store, &dag, &run, task_id, downstream).await?;
    if cleared.is_empty() {
        println!("nothing cleared: the task is queued or running");
    } else {
        println!("cleared {} in {run_id}; the scheduler will run them again", cleared.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn mark(
    config: Config,
    dag_id: &str,
    run_id: &str,
    state: &str,
) -> anyhow::Result<ExitCode> {
    let (c, run) = open_run(config, dag_id, run_id).await?;
    let state = if state == "success" { RunState::Success } else { RunState::Failed };
    control::mark(&c.store, &run, state).await?;
    println!("{run_id} marked {state}");
    Ok(ExitCode::SUCCESS)
}

pub async fn mark_task(
    config: Config,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
    state: &str,
) -> anyhow::Result<ExitCode> {
    let (c, run) = open_run(config, dag_id, run_id).await?;
    let ti = tasks::get_named(c.store.read(), run.pk, task_id)
        .await?
        .ok_or_else(|| anyhow!("run `{run_id}` has no task `{task_id}`"))?;
    let state = if state == "success" { TaskState::Success } else { TaskState::Failed };
    control::mark_task(&c.store, &ti, state).await?;
    println!("{task_id} in {run_id} marked {state}");
    Ok(ExitCode::SUCCESS)
}

pub async fn clean(
    config: Config,
    older_than: std::time::Duration,
    batch_size: i64,
) -> anyhow::Result<ExitCode> {
    let c = super::open(config).await?;
    let age = i64::try_from(older_than.as_micros()).context("retention too long")?;
    let cutoff = now_micros() - age;
    let deleted = control::clean(&c.store, cutoff, batch_size.max(1), |so_far| {
        println!("deleted {so_far} runs so far");
    })
    .await?;
    println!(
        "deleted {deleted} finished runs that ended before {} (with their tasks, tries and logs)",
        crate::time::display(cutoff)
    );
    Ok(ExitCode::SUCCESS)
}
