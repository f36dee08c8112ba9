//! `lakeward sql`: a query over the lake from the command line (its argument, a file, or
//! standard input), or an interactive prompt when none is given; the answer as an aligned
//! table, CSV, JSON lines or Parquet, to the terminal or a file; `--explain` shows the files
//! each name would read.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::config::Config;
use crate::lake::query::render::{self, OutputFormat};
use crate::lake::query::{Console, QueryError, SourcePlan};

#[derive(clap::Args)]
pub struct SqlArgs {
    /// The query; without it (and without --file), an interactive prompt.
    #[arg(conflicts_with = "file")]
    query: Option<String>,
    /// Read the query from this file (`-` for standard input).
    #[arg(short, long)]
    file: Option<PathBuf>,
    /// table, csv, json (JSON lines) or parquet.
    #[arg(long, default_value = "table")]
    format: OutputFormat,
    /// Write the answer to this file instead of standard output.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Show the files each table would read (planned of total, and bytes) instead of running.
    #[arg(long)]
    explain: bool,
    /// Most rows to return (at most `[sql] max_rows`).
    #[arg(long)]
    limit: Option<usize>,
}

pub async fn sql(config: Config, args: SqlArgs) -> anyhow::Result<ExitCode> {
    let limits = config.sql.limits();
    let c = super::open(config).await?;
    let console = Console::new(c.warehouse.clone(), c.tables(), limits);
    let text = match (&args.query, &args.file) {
        (Some(query), _) => Some(query.clone()),
        (None, Some(path)) if path.as_os_str() == "-" => {
            Some(std::io::read_to_string(std::io::stdin()).context("reading standard input")?)
        }
        (None, Some(path)) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the query from {}", path.display()))?,
        ),
        (None, None) => None,
    };
    match text {
        Some(sql) => Ok(if answer(&console, &sql, &args).await? {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }),
        None => prompt(&console, &args).await,
    }
}

/// Reads statements ending with `;` and answers each, until end of input or `\q`.
async fn prompt(console: &Console, args: &SqlArgs) -> anyhow::Result<ExitCode> {
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        eprintln!(
            "lakeward SQL: tables as namespace.table, datasets as \"path/in/warehouse\"; end a \
             query with ; and leave with \\q"
        );
    }
    let mut pending = String::new();
    let mut failed = false;
    let mut lines = std::io::stdin().lock().lines();
    loop {
        if interactive {
            eprint!("{}", if pending.is_empty() { "lakeward> " } else { "      ..> " });
            std::io::stderr().flush().ok();
        }
        let Some(line) = lines.next() else { break };
        let line = line.context("reading standard input")?;
        if pending.is_empty() && matches!(line.trim(), "\\q" | "quit" | "exit") {
            break;
        }
        pending.push_str(&line);
        pending.push('\n');
        if let Some(query) = pending.trim_end().strip_suffix(';') {
            let query = query.to_string();
            pending.clear();
            failed |= !answer(console, &query, args).await?;
        }
    }
    if !pending.trim().is_empty() {
        failed |= !answer(console, &pending, args).await?;
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// Runs (or explains) one query and writes its answer; `false` when the query failed (the
/// error has been shown).
async fn answer(console: &Console, sql: &str, args: &SqlArgs) -> anyhow::Result<bool> {
    if args.explain {
        match console.explain(sql).await {
            Ok(plans) => {
                for plan in &plans {
                    println!("{}", describe_plan(plan));
                }
                return Ok(true);
            }
            Err(e) => return show_error(sql, &e),
        }
    }
    let cap = args.limit.unwrap_or(usize::MAX);
    let mut answer = match console.run(sql, cap).await {
        Ok(answer) => answer,
        Err(e) => return show_error(sql, &e),
    };
    let rows = answer.frame.height();
    match &args.output {
        Some(path) => {
            let mut file = std::io::BufWriter::new(
                std::fs::File::create(path)
                    .with_context(|| format!("creating {}", path.display()))?,
            );
            render::write(&mut answer.frame, args.format, &mut file)?;
            file.flush().with_context(|| format!("writing {}", path.display()))?;
        }
        None if args.format == OutputFormat::Parquet && std::io::stdout().is_terminal() => {
            anyhow::bail!("--format parquet writes binary data: name a file with --output");
        }
        None => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            render::write(&mut answer.frame, args.format, &mut out)?;
            out.flush().context("writing the answer")?;
        }
    }
    if answer.truncated {
        eprintln!("(first {rows} rows: more matched; raise --limit or [sql] max_rows)");
    } else if args.format == OutputFormat::Table || args.output.is_some() {
        eprintln!(
            "({rows} row{}, {} ms)",
            if rows == 1 { "" } else { "s" },
            answer.elapsed.as_millis()
        );
    }
    Ok(true)
}

/// Prints `e`, pointing at the position of a syntax error in `sql`.
fn show_error(sql: &str, e: &QueryError) -> anyhow::Result<bool> {
    eprintln!("error: {e}");
    if let Some((text, caret)) = e.pointer(sql) {
        eprintln!("  {text}\n  {caret}");
    }
    Ok(false)
}

/// `bronze.orders  table  snapshot 42  files 1 of 365  bytes 12.3 KB of 4.5 MB  pruned by …`.
pub fn describe_plan(plan: &SourcePlan) -> String {
    let snapshot = plan.snapshot_id.map_or("-".to_string(), |id| id.to_string());
    let mut line = format!(
        "{}  {}  snapshot {snapshot}  files {} of {}  bytes {} of {}",
        plan.name,
        plan.kind,
        plan.planned_files,
        plan.total_files,
        bytes(plan.planned_bytes),
        bytes(plan.total_bytes)
    );
    if !plan.pruned_by.is_empty() {
        line.push_str(&format!("  pruned by {}", plan.pruned_by.join(" and ")));
    }
    line
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KB", "MB", "GB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
