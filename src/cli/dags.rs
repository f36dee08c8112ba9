//! `lakeward dags …`: list, validate, test, trigger, pause and unpause.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::config::Config;
use crate::dag::folder::{load_file, load_folder, DagBag};
use crate::dag::Dag;
use crate::domain::{RunState, TaskState};
use crate::jobs::Registry;
use crate::runtime::{process_id, shutdown_channel, Components};
use crate::schedule::{parse_date, BackfillRange};
use crate::scheduler::trigger::{create_run, RunRequest, TriggerError};
use crate::scheduler::{Scheduler, SchedulerOptions};
use crate::store::{dags, logs, runs, tasks};
use crate::store::{DagRecord, RunRow, Store};
use crate::time::{display, now_micros, to_micros};
use crate::worker::{Worker, WorkerOptions};

pub fn validate(config: Config, paths: Vec<PathBuf>) -> anyhow::Result<ExitCode> {
    let registry = Registry::builtin();
    let paths = if paths.is_empty() { vec![config.dags_folder.clone()] } else { paths };
    let mut bag = DagBag::default();
    for path in &paths {
        if path.is_dir() {
            let found = load_folder(path, &registry);
            bag.dags.extend(found.dags);
            bag.errors.extend(found.errors);
        } else {
            match load_file(path, &registry) {
                Ok(dag) => {
                    bag.dags.insert(dag.id.clone(), Arc::new(dag));
                }
                Err(diagnostics) => {
                    bag.errors.insert(path.display().to_string(), diagnostics);
                }
            }
        }
    }
    for dag in bag.dags.values() {
        println!("ok     {} ({}, {} tasks)", dag.id, dag.file, dag.tasks.len());
    }
    for diagnostics in bag.errors.values() {
        for d in diagnostics {
            println!("error  {d}");
        }
    }
    let error_count: usize = bag.errors.values().map(Vec::len).sum();
    println!(
        "{} DAG(s) valid, {} file(s) with {} error(s)",
        bag.dags.len(),
        bag.errors.len(),
        error_count
    );
    Ok(if bag.errors.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

pub async fn list(config: Config) -> anyhow::Result<ExitCode> {
    let bag = load_folder(&config.dags_folder, &Registry::builtin());
    let c = super::open(config).await?;
    let rows: HashMap<String, _> =
        dags::list(c.store.read()).await?.into_iter().map(|d| (d.dag_id.clone(), d)).collect();
    println!("{:<28} {:<16} {:<7} {:<20} FILE", "DAG", "SCHEDULE", "PAUSED", "NEXT RUN");
    for dag in bag.dags.values() {
        let row = rows.get(&dag.id);
        println!(
            "{:<28} {:<16} {:<7} {:<20} {}",
            dag.id,
            dag.schedule_text().unwrap_or_else(|| "manual".into()),
            if row.is_some_and(|r| r.is_paused) { "yes" } else { "no" },
            row.and_then(|r| r.next_run_at).map(display).unwrap_or_else(|| "-".into()),
            dag.file
        );
    }
    for diagnostics in bag.errors.values() {
        for d in diagnostics {
            println!("import error: {d}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The DAG `dag_id` from the DAG folder, with its import errors if it failed to load.
fn folder_dag(
    config: &Config,
    registry: &Registry,
    dag_id: &str,
) -> anyhow::Result<Option<Arc<Dag>>> {
    let bag = load_folder(&config.dags_folder, registry);
    if let Some(dag) = bag.dags.get(dag_id) {
        return Ok(Some(dag.clone()));
    }
    let stem_matches =
        |file: &String| std::path::Path::new(file).file_stem().is_some_and(|s| s == dag_id);
    if let Some((_, diagnostics)) = bag.errors.iter().find(|(file, _)| stem_matches(file)) {
        let text: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
        bail!("DAG `{dag_id}` does not load:\n{}", text.join("\n"));
    }
    Ok(None)
}

/// The DAG from the folder (recorded in the database), else the version the database knows.
async fn resolve_dag(c: &Components, dag_id: &str) -> anyhow::Result<Arc<Dag>> {
    if let Some(dag) = folder_dag(&c.config, c.versions.registry(), dag_id)? {
        dags::register(c.store.write(), &DagRecord::from(dag.as_ref()), now_micros()).await?;
        c.versions.insert(dag.clone());
        return Ok(dag);
    }
    let row = dags::get(c.store.read(), dag_id).await?.ok_or_else(|| {
        anyhow!("no DAG `{dag_id}` in {} or in the database", c.config.dags_folder.display())
    })?;
    Ok(c.versions.get(dag_id, &row.version).await?)
}

fn logical_date(dag: &Dag, date: Option<&str>) -> anyhow::Result<DateTime<Utc>> {
    match date {
        None => Ok(Utc::now()),
        Some(text) => parse_date(text, dag.timezone).ok_or_else(|| {
            anyhow!("invalid date `{text}` (expected YYYY-MM-DD or an RFC 3339 timestamp)")
        }),
    }
}

/// Parses `NAME=VALUE` pairs by the declared type of each param.
fn parse_params(dag: &Dag, pairs: &[String]) -> anyhow::Result<Map<String, Value>> {
    let mut params = Map::new();
    for pair in pairs {
        let (name, text) =
            pair.split_once('=').ok_or_else(|| anyhow!("--param `{pair}`: expected NAME=VALUE"))?;
        let spec = dag.params.get(name).ok_or_else(|| {
            let known: Vec<&str> = dag.params.keys().map(String::as_str).collect();
            anyhow!(
                "--param `{name}`: DAG `{}` has no such param (params: {})",
                dag.id,
                known.join(", ")
            )
        })?;
        let value = spec.ty.parse_text(text).map_err(|e| anyhow!("--param `{name}`: {e}"))?;
        params.insert(name.to_string(), value);
    }
    Ok(params)
}

pub async fn trigger(
    config: Config,
    dag_id: &str,
    conf: Option<&str>,
    date: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let c = super::open(config).await?;
    let dag = resolve_dag(&c, dag_id).await?;
    let params = match conf {
        None => Map::new(),
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => map,
            Ok(_) => bail!("--conf must be a JSON object"),
            Err(e) => bail!("--conf is not valid JSON: {e}"),
        },
    };
    let run =
        create_run(&c.store, &dag, RunRequest::manual(logical_date(&dag, date)?, params)).await?;
    println!("created run {} of {} ({})", run.run_id, run.dag_id, run.state);
    Ok(ExitCode::SUCCESS)
}

pub async fn set_paused(config: Config, dag_id: &str, paused: bool) -> anyhow::Result<ExitCode> {
    let c = super::open(config).await?;
    if dags::get(c.store.read(), dag_id).await?.is_none() {
        resolve_dag(&c, dag_id).await?;
    }
    dags::set_paused(c.store.write(), dag_id, paused).await?;
    println!("{dag_id} {}", if paused { "paused" } else { "unpaused" });
    Ok(ExitCode::SUCCESS)
}

/// Creates the backfill runs of `[start, end]`; with `wait`, follows them to the end.
pub async fn backfill(
    config: Config,
    dag_id: &str,
    start: &str,
    end: &str,
    wait: bool,
) -> anyhow::Result<ExitCode> {
    let c = super::open(config).await?;
    let dag = resolve_dag(&c, dag_id).await?;
    let Some(timetable) = dag.timetable() else {
        bail!("DAG `{dag_id}` has no schedule to backfill; use `lakeward dags trigger` instead");
    };
    let range = BackfillRange::parse(start, end, dag.timezone).map_err(|e| anyhow!(e))?;
    let intervals = timetable.intervals_in(&range);
    let (mut created, mut existing) = (Vec::new(), 0);
    for interval in &intervals {
        let request = RunRequest {
            run_type: crate::domain::RunType::Backfill,
            logical_date: interval.start,
            interval: Some(*interval),
            params: Map::new(),
            queue: None,
            triggered_by: None,
        };
        match create_run(&c.store, &dag, request).await {
            Ok(run) => created.push(run),
            Err(TriggerError::Duplicate { .. }) => existing += 1,
            Err(e) => return Err(e.into()),
        }
    }
    println!(
        "{} backfill run(s) created, {existing} already existed, for {} interval(s) of {dag_id}",
        created.len(),
        intervals.len()
    );
    if !wait || created.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    let mut reported = usize::MAX;
    loop {
        let mut finished = 0;
        let mut failed = 0;
        for run in &created {
            let state = runs::by_pk(c.store.read(), run.pk).await?.map(|r| r.state);
            finished += usize::from(state.is_some_and(|s| s.is_finished()));
            failed += usize::from(state == Some(RunState::Failed));
        }
        if finished != reported {
            println!("{finished}/{} runs finished ({failed} failed)", created.len());
            reported = finished;
        }
        if finished == created.len() {
            return Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs one DAG run in this process, through the same scheduler and worker code as production,
/// on a private queue so no other worker takes its tasks.
pub async fn test(
    config: Config,
    dag_id: &str,
    date: Option<&str>,
    params: &[String],
) -> anyhow::Result<ExitCode> {
    let c = super::open(config).await?;
    let dag = folder_dag(&c.config, c.versions.registry(), dag_id)?
        .ok_or_else(|| anyhow!("no DAG `{dag_id}` in {}", c.config.dags_folder.display()))?;
    let params = parse_params(&dag, params)?;
    dags::register(c.store.write(), &DagRecord::from(dag.as_ref()), now_micros()).await?;
    c.versions.insert(dag.clone());
    let logical_date = logical_date(&dag, date)?;
    if let Some(existing) = runs::at(c.store.read(), &dag.id, to_micros(logical_date)).await? {
        println!("replacing the existing run {} at that logical date", existing.run_id);
        runs::delete(c.store.write(), &[existing.pk]).await?;
    }
    let queue = format!("test-{}", process_id("test"));
    let request =
        RunRequest { queue: Some(queue.clone()), ..RunRequest::manual(logical_date, params) };
    let run = create_run(&c.store, &dag, request).await?;
    println!("testing {} run {} ({} tasks)", dag.id, run.run_id, dag.tasks.len());

    let (stop, shutdown) = shutdown_channel();
    let scheduler_options = SchedulerOptions {
        dags_folder: None,
        create_scheduled_runs: false,
        ..SchedulerOptions::from_config(&c.config)
    };
    let worker_options = WorkerOptions { queues: vec![queue], ..c.worker_options.clone() };
    let scheduler = Scheduler::new(c.store.clone(), c.versions.clone(), scheduler_options);
    let worker = Worker::new(c.store.clone(), c.versions.clone(), worker_options);
    let scheduler = crate::process::spawn_owned(scheduler.run(shutdown.clone()));
    let worker = crate::process::spawn_owned(worker.run(shutdown));
    let state = follow(&c.store, &run).await;
    stop.trigger();
    let _ = tokio::join!(scheduler, worker);
    let state = state?;
    Ok(if state == RunState::Success { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Prints task state changes (and the log of each finished try) until the run ends.
async fn follow(store: &Store, run: &RunRow) -> anyhow::Result<RunState> {
    let started = Instant::now();
    let mut seen: HashMap<String, (TaskState, i64)> = HashMap::new();
    loop {
        // The run state first: a run ends after its tasks, so the tasks read next are final
        // whenever it has ended, and no last state or log goes unprinted.
        let current = runs::by_pk(store.read(), run.pk).await?.context("the run disappeared")?;
        for ti in tasks::of_runs(store.read(), &[run.pk]).await? {
            if seen.get(&ti.task_id) == Some(&(ti.state, ti.try_number)) {
                continue;
            }
            let try_note = if ti.try_number > 0 {
                format!(" (try {}/{})", ti.try_number, ti.max_tries)
            } else {
                String::new()
            };
            println!(
                "{:>9.3}s  {:<28} {}{try_note}",
                started.elapsed().as_secs_f64(),
                ti.task_id,
                ti.state
            );
            if matches!(ti.state, TaskState::Success | TaskState::Failed | TaskState::UpForRetry) {
                for line in logs::read(store.read(), ti.id, Some(ti.try_number), 0, 10_000).await? {
                    println!("{:>11}| {}", "", line.line);
                }
            }
            seen.insert(ti.task_id.clone(), (ti.state, ti.try_number));
        }
        if current.state.is_finished() {
            println!(
                "{:>9.3}s  run {}: {}",
                started.elapsed().as_secs_f64(),
                current.run_id,
                current.state
            );
            print_summary(store, run).await?;
            return Ok(current.state);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Per-task durations of the run, and this process's peak memory.
async fn print_summary(store: &Store, run: &RunRow) -> anyhow::Result<()> {
    println!("\n{:<28} {:<16} {:>10}  OUTPUT", "TASK", "STATE", "SECONDS");
    for ti in tasks::of_runs(store.read(), &[run.pk]).await? {
        let seconds = match (ti.started_at, ti.ended_at) {
            (Some(start), Some(end)) if ti.state != TaskState::Skipped => {
                format!("{:.3}", (end - start) as f64 / 1e6)
            }
            _ => "-".into(),
        };
        let rows = ti.outputs.get("rows").map(|r| format!("{r} rows")).unwrap_or_default();
        println!("{:<28} {:<16} {seconds:>10}  {rows}", ti.task_id, ti.state);
    }
    if let Some(peak) = peak_rss_kib() {
        println!("peak RSS: {:.1} MiB", peak as f64 / 1024.0);
    }
    Ok(())
}

/// The highest resident memory of this process so far (Linux), in KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
