//! The `lakeward` command line. Parses arguments, loads configuration, and calls into the
//! library; errors are reported here, with context, for humans.

mod dags;
mod flags;
mod inspect;
mod operate;
mod produce;
mod serve;
mod sql;
mod tables;
mod users;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;

#[derive(Parser)]
#[command(
    name = "lakeward",
    version,
    about = "Lakehouse pipelines from TOML DAGs: scheduler, workers and UI in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Scheduler, a worker and the web server in one process, on the configured database
    /// (an embedded SQLite file by default).
    Standalone {
        #[command(flatten)]
        database: flags::DatabaseFlag,
        #[command(flatten)]
        dags: flags::DagsFlag,
        #[command(flatten)]
        listen: flags::ListenFlags,
        #[command(flatten)]
        work: flags::WorkFlags,
    },
    /// Run a scheduler.
    Scheduler {
        #[command(flatten)]
        database: flags::DatabaseFlag,
        #[command(flatten)]
        dags: flags::DagsFlag,
    },
    /// Run a worker.
    Worker {
        #[command(flatten)]
        database: flags::DatabaseFlag,
        #[command(flatten)]
        work: flags::WorkFlags,
    },
    /// Run the web server.
    Web {
        #[command(flatten)]
        database: flags::DatabaseFlag,
        #[command(flatten)]
        listen: flags::ListenFlags,
    },
    /// Database maintenance.
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
    /// The process configuration (`lakeward.toml` and `LAKEWARD_*` variables).
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Inspect, validate, test and trigger DAGs.
    Dags {
        #[command(subcommand)]
        command: DagsCommand,
    },
    /// Inspect DAG runs.
    Runs {
        #[command(subcommand)]
        command: RunsCommand,
    },
    /// Inspect task instances.
    Tasks {
        #[command(subcommand)]
        command: TasksCommand,
    },
    /// Query tables and datasets with SQL (an interactive prompt without a query).
    Sql(sql::SqlArgs),
    /// Iceberg tables: list, show, history, scan, compact, expire, alter.
    Tables {
        #[command(subcommand)]
        command: TablesCommand,
    },
    /// Send simulated events (web logs, connection logs, sensors) or JSON files to Kafka.
    Produce(produce::ProduceArgs),
    /// Manage web and API users.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
}

#[derive(Subcommand)]
enum TablesCommand {
    /// Every table, as NAMESPACE.TABLE.
    List,
    /// Schema, partition spec, properties, current snapshot, file and row counts.
    Show { table: String },
    /// Snapshots with time, operation, added and removed files and rows.
    History { table: String },
    /// Print (or write) rows, at the current snapshot or an older one.
    Scan {
        table: String,
        /// Read this snapshot.
        #[arg(long, conflicts_with = "as_of")]
        snapshot: Option<i64>,
        /// Read the snapshot that was current at this time (YYYY-MM-DD or RFC 3339).
        #[arg(long)]
        as_of: Option<String>,
        /// `column op value [and …]`, e.g. "order_date = '2024-03-01' and amount > 10".
        #[arg(long)]
        filter: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Only say how many data files the scan plans out of the total.
        #[arg(long)]
        explain: bool,
        /// Write every row to FILE.parquet or FILE.csv instead of printing.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Rewrite the small data files of each partition into one, as one snapshot.
    Compact { table: String },
    /// Drop snapshots older than a retention and delete the files only they used, then the
    /// orphan files (left by failed commits) older than a safety age.
    Expire {
        table: String,
        #[arg(long, value_parser = crate::time::parse_duration)]
        older_than: std::time::Duration,
        /// Snapshots kept whatever their age (the current one always is).
        #[arg(long, default_value_t = 1)]
        retain_last: usize,
        /// Unreferenced files younger than this are kept: a commit in progress may own them.
        #[arg(long, value_parser = crate::time::parse_duration, default_value = "3d")]
        orphans_older_than: std::time::Duration,
    },
    /// Change a table's schema or properties.
    Alter {
        table: String,
        #[command(subcommand)]
        change: AlterCommand,
    },
}

#[derive(Subcommand)]
enum AlterCommand {
    /// Add a nullable column (string, long, int, double, float, boolean, date, timestamp, …).
    AddColumn { name: String, r#type: String },
    /// Rename a column (its data is kept: columns are matched by id).
    RenameColumn { from: String, to: String },
    /// Set a table property.
    SetProperty { key: String, value: String },
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Create a user (or reset an existing user's password and role).
    Create {
        username: String,
        #[arg(long, value_parser = ["admin", "viewer"])]
        role: String,
        /// The password; without it one is generated and printed.
        #[arg(long)]
        password: Option<String>,
    },
    /// Create an API token for scripts (sent as `Authorization: Bearer TOKEN`).
    Token {
        username: String,
        /// What the token is for.
        #[arg(long, default_value = "cli")]
        name: String,
        /// Lifetime, e.g. `90d`; without it the token is valid until revoked.
        #[arg(long, value_parser = crate::time::parse_duration)]
        expires_in: Option<std::time::Duration>,
    },
    /// List API tokens (of one user, or of everyone): id, owner, name, created, expires.
    Tokens { username: Option<String> },
    /// Revoke an API token by the id `users tokens` shows.
    Revoke { id: String },
    /// Delete a user with its sessions and API tokens.
    Delete { username: String },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration (secrets masked), or every problem in it.
    Check,
}

#[derive(Subcommand)]
enum DbCommand {
    /// Apply pending database migrations.
    Migrate,
    /// Delete finished runs older than a retention, with their task instances, tries and logs.
    Clean {
        /// e.g. `30d`, `12h`: runs that ended longer ago than this are deleted.
        #[arg(long, value_parser = crate::time::parse_duration)]
        older_than: std::time::Duration,
        /// Most runs deleted per transaction (batches are sized to take about 40 ms).
        #[arg(long, default_value_t = 500)]
        batch_size: i64,
    },
}

#[derive(Subcommand)]
enum DagsCommand {
    /// List the DAGs of the DAG folder with their state.
    List,
    /// Check DAG files and print every error (exit code 1 if there is any).
    Validate {
        /// Files or folders; default: the DAG folder.
        paths: Vec<PathBuf>,
    },
    /// Run one DAG run in this process and print each task's state changes.
    Test {
        dag: String,
        /// Logical date (YYYY-MM-DD or RFC 3339); default: now.
        #[arg(long)]
        date: Option<String>,
        /// A param value, `NAME=VALUE` (repeatable).
        #[arg(long = "param", value_name = "NAME=VALUE")]
        params: Vec<String>,
    },
    /// Create a manual run.
    Trigger {
        dag: String,
        /// Param values as a JSON object.
        #[arg(long)]
        conf: Option<String>,
        /// Logical date (YYYY-MM-DD or RFC 3339); default: now.
        #[arg(long)]
        date: Option<String>,
    },
    /// Stop creating scheduled runs of a DAG.
    Pause { dag: String },
    /// Resume creating scheduled runs of a DAG.
    Unpause { dag: String },
    /// Create the scheduled runs of a date range (run type backfill); existing runs are kept.
    Backfill {
        dag: String,
        /// First logical date (YYYY-MM-DD or RFC 3339).
        #[arg(long)]
        start: String,
        /// Last logical date, inclusive (a bare date covers that whole day).
        #[arg(long)]
        end: String,
        /// Wait for the runs to finish, printing progress (needs a running scheduler and worker).
        #[arg(long)]
        wait: bool,
    },
}

#[derive(Subcommand)]
enum RunsCommand {
    /// List a DAG's runs, newest first.
    List {
        dag: String,
        #[arg(long, default_value_t = 25)]
        limit: i64,
    },
    /// Mark a run success or failed (with its unfinished task instances).
    Mark {
        dag: String,
        run_id: String,
        #[arg(value_parser = ["success", "failed"])]
        state: String,
    },
}

#[derive(Subcommand)]
enum TasksCommand {
    /// Print a task instance's log.
    Logs {
        dag: String,
        run_id: String,
        task: String,
        /// Only this try.
        #[arg(long = "try")]
        try_number: Option<i64>,
    },
    /// Set a task instance to success or failed by hand; the run carries on from there.
    Mark {
        dag: String,
        run_id: String,
        task: String,
        #[arg(value_parser = ["success", "failed"])]
        state: String,
    },
    /// Run a task instance again (and, with --downstream, every task after it).
    Clear {
        dag: String,
        run_id: String,
        task: String,
        #[arg(long)]
        downstream: bool,
    },
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Servers narrate what they do; one-shot commands only speak up when something is wrong.
    let serving = matches!(
        cli.command,
        Command::Standalone { .. }
            | Command::Scheduler { .. }
            | Command::Worker { .. }
            | Command::Web { .. }
    );
    init_tracing(if serving { "info,sqlx=warn" } else { "warn" });
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// Opens the configured database and warehouse with the built-in task kinds. Store errors
/// name the database URL (password masked), so no context is added here.
async fn open(config: Config) -> anyhow::Result<crate::runtime::Components> {
    Ok(crate::runtime::Components::open(config, crate::jobs::Registry::builtin()).await?)
}

/// `lakeward config check`: the effective configuration, or every problem in it.
fn check_config() -> ExitCode {
    match Config::load() {
        Ok(config) => {
            println!("# the configuration is valid; in effect (secrets masked):");
            print!("{}", config.to_masked_toml());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes, `: `-separated, leaving out a cause whose text the message before
/// it already shows (library errors often repeat their source in their own message).
fn error_chain(error: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}

fn init_tracing(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LAKEWARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    // Colour codes only for a terminal: in a file or a log collector they are noise.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // Checking the configuration must work when it is invalid, so before loading it.
    if let Command::Config { command: ConfigCommand::Check } = cli.command {
        return Ok(check_config());
    }
    let mut config = Config::load_with(std::env::vars(), cli.command.settings())?;
    match cli.command {
        Command::Config { .. } => unreachable!("answered before the configuration is loaded"),
        Command::Standalone { listen, .. } => {
            listen.apply_port(&mut config);
            serve::standalone(config).await
        }
        Command::Scheduler { .. } => serve::scheduler(config).await,
        Command::Worker { .. } => serve::worker(config).await,
        Command::Web { listen, .. } => {
            listen.apply_port(&mut config);
            serve::web(config).await
        }
        Command::Db { command: DbCommand::Migrate } => serve::migrate(config).await,
        Command::Db { command: DbCommand::Clean { older_than, batch_size } } => {
            operate::clean(config, older_than, batch_size).await
        }
        Command::Dags { command } => match command {
            DagsCommand::List => dags::list(config).await,
            DagsCommand::Validate { paths } => dags::validate(config, paths),
            DagsCommand::Test { dag, date, params } => {
                dags::test(config, &dag, date.as_deref(), &params).await
            }
            DagsCommand::Trigger { dag, conf, date } => {
                dags::trigger(config, &dag, conf.as_deref(), date.as_deref()).await
            }
            DagsCommand::Pause { dag } => dags::set_paused(config, &dag, true).await,
            DagsCommand::Unpause { dag } => dags::set_paused(config, &dag, false).await,
            DagsCommand::Backfill { dag, start, end, wait } => {
                dags::backfill(config, &dag, &start, &end, wait).await
            }
        },
        Command::Runs { command: RunsCommand::List { dag, limit } } => {
            inspect::list_runs(config, &dag, limit).await
        }
        Command::Runs { command: RunsCommand::Mark { dag, run_id, state } } => {
            operate::mark(config, &dag, &run_id, &state).await
        }
        Command::Tasks { command: TasksCommand::Clear { dag, run_id, task, downstream } } => {
            operate::clear(config, &dag, &run_id, &task, downstream).await
        }
        Command::Tasks { command: TasksCommand::Mark { dag, run_id, task, state } } => {
            operate::mark_task(config, &dag, &run_id, &task, &state).await
        }
        Command::Tasks { command: TasksCommand::Logs { dag, run_id, task, try_number } } => {
            inspect::task_logs(config, &dag, &run_id, &task, try_number).await
        }
        Command::Sql(args) => sql::sql(config, args).await,
        Command::Tables { command } => run_tables(config, command).await,
        Command::Produce(args) => produce::produce(config, args).await,
        Command::Users { command: UsersCommand::Create { username, role, password } } => {
            users::create(config, &username, &role, password).await
        }
        Command::Users { command: UsersCommand::Token { username, name, expires_in } } => {
            users::token(config, &username, &name, expires_in).await
        }
        Command::Users { command: UsersCommand::Tokens { username } } => {
            users::tokens(config, username.as_deref()).await
        }
        Command::Users { command: UsersCommand::Revoke { id } } => users::revoke(config, &id).await,
        Command::Users { command: UsersCommand::Delete { username } } => {
            users::delete(config, &username).await
        }
    }
}

impl Command {
    /// The settings this command's flags give.
    fn settings(&self) -> Vec<crate::config::Override> {
        let mut out = Vec::new();
        match self {
            Command::Standalone { database, dags, listen, work } => {
                database.settings(&mut out);
                dags.settings(&mut out);
                listen.settings(&mut out);
                work.settings(&mut out);
            }
            Command::Scheduler { database, dags } => {
                database.settings(&mut out);
                dags.settings(&mut out);
            }
            Command::Worker { database, work } => {
                database.settings(&mut out);
                work.settings(&mut out);
            }
            Command::Web { database, listen } => {
                database.settings(&mut out);
                listen.settings(&mut out);
            }
            _ => {}
        }
        out
    }
}

async fn run_tables(config: Config, command: TablesCommand) -> anyhow::Result<ExitCode> {
    use crate::lake::tables::Alteration;
    match command {
        TablesCommand::List => tables::list(config).await,
        TablesCommand::Show { table } => tables::show(config, &table).await,
        TablesCommand::History { table } => tables::history(config, &table).await,
        TablesCommand::Scan { table, snapshot, as_of, filter, limit, explain, output } => {
            let args = tables::ScanArgs { snapshot, as_of, filter, limit, explain, output };
            tables::scan(config, &table, args).await
        }
        TablesCommand::Compact { table } => tables::compact(config, &table).await,
        TablesCommand::Expire { table, older_than, retain_last, orphans_older_than } => {
            tables::expire(config, &table, older_than, retain_last, orphans_older_than).await
        }
        TablesCommand::Alter { table, change } => {
            let alteration = match change {
                AlterCommand::AddColumn { name, r#type } => {
                    Alteration::AddColumn { name, type_name: r#type }
                }
                AlterCommand::RenameColumn { from, to } => Alteration::RenameColumn { from, to },
                AlterCommand::SetProperty { key, value } => Alteration::SetProperty { key, value },
            };
            tables::alter(config, &table, alteration).await
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn error_chains_say_each_cause_once() {
        let inner = std::io::Error::other("database or disk is full");
        let store = crate::store::StoreError::Database(sqlx::Error::Io(inner));
        let error = anyhow::Error::new(store).context("opening the database");
        assert_eq!(
            super::error_chain(&error),
            "opening the database: database error: error communicating with database: \
             database or disk is full"
        );
    }
}
