//! The `lakeward` binary end to end: validate, test, trigger, pause, runs, logs, standalone, and
//! a scheduler and workers as separate processes sharing Postgres.

use crate::common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::process::ChildProcess;

const BIN: &str = env!("CARGO_BIN_EXE_lakeward");

/// A `lakeward` command with its own home (so its own SQLite database) and the repo's DAGs.
fn lakeward(home: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env("LAKEWARD_HOME", home)
        .env("LAKEWARD_DAGS_FOLDER", "dags")
        .env_remove("LAKEWARD_DATABASE_URL")
        .env_remove("LAKEWARD_CONFIG");
    cmd
}

fn run(cmd: &mut Command) -> (bool, String) {
    let Output { status, stdout, stderr } = cmd.output().expect("lakeward runs");
    let text = format!("{}{}", String::from_utf8_lossy(&stdout), String::from_utf8_lossy(&stderr));
    (status.success(), text)
}

#[test]
fn validate_accepts_the_examples_and_reports_every_error() {
    let home = tempfile::tempdir().unwrap();
    let (ok, out) = run(lakeward(home.path()).args(["dags", "validate"]));
    assert!(ok, "{out}");
    assert!(out.contains("ok     example (dags/example.toml, 5 tasks)"), "{out}");

    let (ok, out) = run(lakeward(home.path()).args([
        "dags",
        "validate",
        "tests/dag_errors/cycle.toml",
        "tests/dag_errors/schedule_and_time.toml",
        "dags",
    ]));
    assert!(!ok, "broken files must exit non-zero");
    for expected in ["cycle", "schedule_and_time"] {
        let lines =
            std::fs::read_to_string(format!("tests/dag_errors/{expected}.expected")).unwrap();
        for line in lines.lines() {
            assert!(out.contains(&format!("error  {line}")), "missing `{line}` in:\n{out}");
        }
    }
    assert!(out.contains("9 DAG(s) valid, 2 file(s) with 9 error(s)"), "{out}");
}

#[test]
fn dags_test_runs_the_example_and_the_run_is_inspectable() {
    let home = tempfile::tempdir().unwrap();
    let (ok, out) = run(lakeward(home.path()).args([
        "dags",
        "test",
        "example",
        "--date",
        "2024-03-01",
        "--param",
        "rows=7",
    ]));
    assert!(ok, "{out}");
    assert!(
        out.contains("extracting 7 rows for 2024-03-01, run manual__2024-03-01T00:00:00Z"),
        "{out}"
    );
    assert!(out.contains("run manual__2024-03-01T00:00:00Z: success"), "{out}");
    let load = out.find("load ").unwrap();
    assert!(out.find("clean ").unwrap() < load && out.find("enrich ").unwrap() < load);

    let (ok, out) = run(lakeward(home.path()).args(["runs", "list", "example"]));
    assert!(ok && out.contains("manual__2024-03-01T00:00:00Z") && out.contains("success"), "{out}");
    let (ok, out) = run(lakeward(home.path()).args([
        "tasks",
        "logs",
        "example",
        "manual__2024-03-01T00:00:00Z",
        "enrich",
    ]));
    assert!(
        ok && out.contains("--- try 1 ---") && out.contains("enriching for region eu"),
        "{out}"
    );

    // Running the same date again replaces the old run instead of failing on the duplicate.
    let (ok, out) =
        run(lakeward(home.path()).args(["dags", "test", "example", "--date", "2024-03-01"]));
    assert!(ok && out.contains("replacing the existing run"), "{out}");
}

#[test]
fn dags_test_exits_non_zero_when_the_run_fails_and_rejects_bad_params() {
    let home = tempfile::tempdir().unwrap();
    let dags = tempfile::tempdir().unwrap();
    std::fs::write(
        dags.path().join("broken.toml"),
        "[tasks.boom]\nkind = \"shell\"\ncommand = \"exit 4\"\n",
    )
    .unwrap();
    let (ok, out) = run(lakeward(home.path())
        .env("LAKEWARD_DAGS_FOLDER", dags.path())
        .args(["dags", "test", "broken"]));
    assert!(!ok, "{out}");
    assert!(out.contains("command exited with code 4") && out.contains(": failed"), "{out}");

    let (ok, out) =
        run(lakeward(home.path()).args(["dags", "test", "example", "--param", "rows=many"]));
    assert!(!ok && out.contains("--param `rows`: expected integer, got `many`"), "{out}");
    let (ok, out) = run(lakeward(home.path()).args([
        "dags",
        "trigger",
        "example",
        "--conf",
        "{\"rows\": \"x\"}",
    ]));
    assert!(!ok && out.contains("param `rows` must be of type integer"), "{out}");
    let (ok, out) = run(lakeward(home.path()).args(["dags", "test", "nope"]));
    assert!(!ok && out.contains("no DAG `nope`"), "{out}");
}

#[test]
fn backfill_creates_each_interval_once() {
    let home = tempfile::tempdir().unwrap();
    let backfill = ["dags", "backfill", "example", "--start", "2024-02-27", "--end", "2024-03-01"];
    let (ok, out) = run(lakeward(home.path()).args(backfill));
    assert!(
        ok && out.contains("4 backfill run(s) created, 0 already existed, for 4 interval(s)"),
        "{out}"
    );
    let (ok, out) = run(lakeward(home.path()).args(backfill));
    assert!(ok && out.contains("0 backfill run(s) created, 4 already existed"), "{out}");
    let (_, out) = run(lakeward(home.path()).args(["runs", "list", "example"]));
    for day in ["2024-02-27", "2024-02-28", "2024-02-29", "2024-03-01"] {
        assert!(out.contains(&format!("backfill__{day}T00:00:00Z")), "{day} missing:\n{out}");
    }
    let (ok, out) = run(lakeward(home.path()).args([
        "dags",
        "backfill",
        "example",
        "--start",
        "2024-03-02",
        "--end",
        "2024-03-01",
    ]));
    assert!(!ok && out.contains("is before --start"), "{out}");
}

/// Sends SIGTERM and waits for a clean exit (running tries are stopped within a second; the
/// bound allows for a machine busy with the other tests).
fn terminate(child: ChildProcess) {
    let status = child.terminate(Duration::from_secs(30));
    assert!(status.success(), "exit status {status}");
}

fn http_get(address: &str, path: &str) -> String {
    http_get_with(address, path, "")
}

/// A GET with extra header lines (each ending in CRLF).
fn http_get_with(address: &str, path: &str, headers: &str) -> String {
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\n{headers}Connection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn standalone_serves_schedules_and_runs_triggered_dags() {
    let home = tempfile::tempdir().unwrap();
    let mut child = ChildProcess::spawn(
        lakeward(home.path())
            .arg("standalone")
            .env("LAKEWARD_WEB_BIND", "127.0.0.1:0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut demo_line = String::new();
    stdout.read_line(&mut demo_line).unwrap();
    assert!(demo_line.starts_with("demo Kafka broker on 127.0.0.1:"), "{demo_line}");
    let mut first_line = String::new();
    stdout.read_line(&mut first_line).unwrap();
    assert!(first_line.starts_with("created user `admin` with password: "), "{first_line}");
    let mut ready_line = String::new();
    stdout.read_line(&mut ready_line).unwrap();
    while !ready_line.starts_with("lakeward standalone ready in") {
        ready_line.clear();
        assert!(
            stdout.read_line(&mut ready_line).unwrap() > 0,
            "standalone never said it was ready"
        );
    }
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let address =
        ready_line.split("http://").nth(1).unwrap().split('/').next().unwrap().to_string();

    // The example is @daily without catchup: the latest interval runs right away.
    wait_for("the scheduled example run", Duration::from_secs(20), || {
        let (_, out) = run(lakeward(home.path()).args(["runs", "list", "example"]));
        out.contains("scheduled__") && out.contains("success")
    });
    let (ok, out) =
        run(lakeward(home.path()).args(["dags", "trigger", "example", "--conf", "{\"rows\": 3}"]));
    assert!(ok && out.contains("created run manual__"), "{out}");
    let run_id = out.split_whitespace().nth(2).unwrap().to_string();
    wait_for("the triggered run", Duration::from_secs(20), || {
        let (_, out) = run(lakeward(home.path()).args(["runs", "list", "example"]));
        out.lines().any(|l| l.starts_with(&run_id) && l.contains("success"))
    });
    let (_, logs) =
        run(lakeward(home.path()).args(["tasks", "logs", "example", &run_id, "extract"]));
    assert!(logs.contains("extracting 3 rows"), "{logs}");

    let health = http_get(&address, "/health");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let body: serde_json::Value =
        serde_json::from_str(health.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["scheduler"]["status"], "healthy", "{health}");
    assert_eq!(body["database"]["status"], "healthy", "{health}");
    let page = http_get(&address, "/dags");
    assert!(page.starts_with("HTTP/1.1 303"), "pages need a login: {page}");
    assert!(page.contains("location: /login?next=%2Fdags"), "{page}");

    // Its table catalog is served as an Iceberg REST catalog, to API tokens.
    let (ok, token) = run(lakeward(home.path()).args(["users", "token", "admin"]));
    assert!(ok, "{token}");
    let auth = format!("Authorization: Bearer {}\r\n", token.trim());
    let namespaces = http_get_with(&address, "/iceberg/v1/namespaces", &auth);
    assert!(namespaces.starts_with("HTTP/1.1 200"), "{namespaces}");
    // The scheduled e-commerce DAG may have promoted its first tables already: any list will do.
    let listed: serde_json::Value =
        serde_json::from_str(namespaces.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert!(listed["namespaces"].is_array(), "{namespaces}");
    let anonymous = http_get(&address, "/iceberg/v1/namespaces");
    assert!(anonymous.starts_with("HTTP/1.1 401"), "{anonymous}");
    assert!(anonymous.contains("NotAuthorizedException"), "{anonymous}");

    // A backfill runs through the same scheduler, one run at a time (max_active_runs = 1).
    let (ok, out) = run(lakeward(home.path()).args([
        "dags",
        "backfill",
        "example",
        "--start",
        "2024-01-01",
        "--end",
        "2024-01-03",
        "--wait",
    ]));
    assert!(ok, "{out}");
    assert!(out.contains("3 backfill run(s) created, 0 already existed"), "{out}");
    assert!(out.contains("3/3 runs finished (0 failed)"), "{out}");

    // The streaming demo runs at once on the demo broker: simulated web logs are produced,
    // and the continuous ingest puts them into bronze.web_logs.
    wait_for("web logs in bronze.web_logs", Duration::from_secs(60), || {
        let (ok, out) =
            run(lakeward(home.path()).args(["tables", "scan", "bronze.web_logs", "--limit", "3"]));
        ok && out.contains("event_id") && out.contains("/")
    });

    // The lambda pipeline follows on data: the batch layer's first run comes with bronze's
    // first data, the serving view on the next minute tick.
    wait_for("the serving view", Duration::from_secs(150), || {
        let (ok, out) =
            run(lakeward(home.path()).args(["tables", "show", "serving.endpoint_minutes"]));
        ok && out.contains("layer")
    });
    let (ok, out) = run(lakeward(home.path()).args(["runs", "list", "weblogs_batch"]));
    assert!(ok && out.contains("asset_triggered") && out.contains("success"), "{out}");

    let (ok, out) = run(lakeward(home.path()).args(["dags", "pause", "example"]));
    assert!(ok && out.contains("example paused"), "{out}");
    let (ok, out) = run(lakeward(home.path()).args(["dags", "list"]));
    assert!(ok && out.lines().any(|l| l.starts_with("example") && l.contains("yes")), "{out}");
    terminate(child);
}

/// `lakeward scheduler` and two `lakeward worker` processes share one Postgres.
#[test]
fn scheduler_and_workers_as_separate_processes_on_postgres() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let Some(db) = runtime.block_on(common::postgres()) else { return };
    let home = tempfile::tempdir().unwrap();
    let spawn = |args: &[&str]| {
        ChildProcess::spawn(
            lakeward(home.path())
                .args(args)
                .env("LAKEWARD_DATABASE_URL", &db.url)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
    };
    let scheduler = spawn(&["scheduler"]);
    let workers = [spawn(&["worker", "--slots", "2"]), spawn(&["worker", "--slots", "2"])];
    let (ok, out) = run(lakeward(home.path()).env("LAKEWARD_DATABASE_URL", &db.url).args([
        "dags",
        "trigger",
        "example",
        "--date",
        "2024-05-01",
    ]));
    assert!(ok, "{out}");
    wait_for("the run on Postgres", Duration::from_secs(30), || {
        let (_, out) = run(lakeward(home.path())
            .env("LAKEWARD_DATABASE_URL", &db.url)
            .args(["runs", "list", "example"]));
        out.lines().any(|l| l.starts_with("manual__2024-05-01") && l.contains("success"))
    });
    terminate(scheduler);
    for worker in workers {
        terminate(worker);
    }
}

#[test]
fn without_auth_the_web_server_only_listens_on_loopback() {
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("lakeward.toml");
    std::fs::write(&config, "[web]\nauth = false\nbind = \"0.0.0.0:0\"\n").unwrap();
    let (ok, out) = run(lakeward(home.path()).arg("web").env("LAKEWARD_CONFIG", &config));
    assert!(!ok, "{out}");
    assert!(
        out.contains("refusing to listen on 0.0.0.0:") && out.contains("web.auth = false"),
        "{out}"
    );
}

#[test]
fn users_and_tokens_are_created_from_the_cli() {
    let home = tempfile::tempdir().unwrap();
    let (ok, out) = run(lakeward(home.path()).args(["users", "create", "ana", "--role", "viewer"]));
    assert!(ok && out.contains("user `ana` (viewer) saved with password: "), "{out}");
    let (ok, out) = run(lakeward(home.path()).args(["users", "token", "ana"]));
    assert!(ok && out.trim().starts_with("lw_") && out.trim().len() == 67, "{out}");
    let (ok, out) = run(lakeward(home.path()).args(["users", "token", "nobody"]));
    assert!(!ok && out.contains("no user `nobody`"), "{out}");
    let (ok, out) = run(lakeward(home.path()).args([
        "users",
        "create",
        "bob",
        "--role",
        "admin",
        "--password",
        "short",
    ]));
    assert!(!ok && out.contains("at least 8 characters"), "{out}");
}

#[test]
fn tokens_are_listed_revoked_and_users_deleted_from_the_cli() {
    let home = tempfile::tempdir().unwrap();
    let cli = |args: &[&str]| run(lakeward(home.path()).args(args));
    assert!(cli(&["users", "create", "ana", "--role", "viewer"]).0);
    let (ok, token) = cli(&["users", "token", "ana", "--name", "ci", "--expires-in", "30d"]);
    assert!(ok, "{token}");
    let (ok, listed) = cli(&["users", "tokens", "ana"]);
    assert!(ok && !listed.contains(token.trim()), "a listing never shows a token: {listed}");
    let row = listed.lines().find(|l| l.contains(" ci ")).unwrap_or_else(|| panic!("{listed}"));
    assert!(!row.ends_with("never"), "the token expires: {row}");
    let id = row.split_whitespace().next().unwrap();
    let (ok, out) = cli(&["users", "revoke", id]);
    assert!(ok && out.contains("revoked"), "{out}");
    let (ok, out) = cli(&["users", "revoke", id]);
    assert!(!ok && out.contains("no API token"), "{out}");
    assert!(cli(&["users", "token", "ana"]).0);
    let (ok, out) = cli(&["users", "delete", "ana"]);
    assert!(ok && out.contains("deleted"), "{out}");
    let (_, listed) = cli(&["users", "tokens"]);
    assert_eq!(listed.lines().count(), 1, "the deleted user's tokens went with it: {listed}");
    let (ok, out) = cli(&["users", "delete", "ana"]);
    assert!(!ok && out.contains("no user `ana`"), "{out}");
}

#[test]
fn tables_commands_list_show_scan_and_maintain_the_promoted_tables() {
    let home = tempfile::tempdir().unwrap();
    let (ok, out) = run(lakeward(home.path()).args([
        "dags",
        "test",
        "ecommerce_etl",
        "--date",
        "2024-06-30",
        "--param",
        "orders=3000",
        "--param",
        "customers=200",
        "--param",
        "products=30",
    ]));
    assert!(ok, "{out}");
    let (ok, out) = run(lakeward(home.path()).args(["tables", "list"]));
    assert!(ok, "{out}");
    assert_eq!(out.lines().count(), 8, "{out}");
    assert!(out.contains("bronze.orders") && out.contains("gold.daily_sales"), "{out}");

    let (ok, out) = run(lakeward(home.path()).args(["tables", "show", "bronze.orders"]));
    assert!(ok && out.contains("order_date_day = day(order_date)"), "{out}");
    assert!(out.contains("order_id: long?"), "{out}");
    let (ok, out) = run(lakeward(home.path()).args(["tables", "history", "gold.daily_sales"]));
    assert!(
        ok && out.lines().nth(1).is_some_and(|l| l.contains("append") && l.contains(" 365")),
        "{out}"
    );

    let (ok, out) = run(lakeward(home.path()).args([
        "tables",
        "scan",
        "bronze.orders",
        "--filter",
        "order_date = '2024-03-01'",
        "--explain",
    ]));
    assert!(ok, "{out}");
    let planned: Vec<u64> = out.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    assert!(out.contains("planned 1 of ") && planned.len() >= 2, "{out}");
    let (ok, out) =
        run(lakeward(home.path()).args(["tables", "scan", "gold.daily_sales", "--limit", "3"]));
    assert!(ok && out.contains("total_revenue") && out.contains("3 of 365 rows"), "{out}");
    let csv = home.path().join("daily.csv");
    let (ok, out) = run(lakeward(home.path())
        .args(["tables", "scan", "gold.daily_sales", "--output"])
        .arg(&csv));
    assert!(ok, "{out}");
    assert_eq!(std::fs::read_to_string(&csv).unwrap().lines().count(), 366);

    let (ok, out) = run(lakeward(home.path()).args([
        "tables",
        "alter",
        "gold.daily_sales",
        "add-column",
        "note",
        "string",
    ]));
    assert!(ok, "{out}");
    let (ok, out) = run(lakeward(home.path()).args([
        "tables",
        "alter",
        "gold.daily_sales",
        "rename-column",
        "num_orders",
        "orders",
    ]));
    assert!(ok, "{out}");
    let (_, out) = run(lakeward(home.path()).args(["tables", "show", "gold.daily_sales"]));
    assert!(out.contains("note: string?") && out.contains("orders: long?"), "{out}");
    let (ok, out) =
        run(lakeward(home.path()).args(["tables", "scan", "gold.daily_sales", "--limit", "1"]));
    assert!(
        ok && out.contains("orders") && out.contains("note"),
        "renamed columns keep their data: {out}"
    );

    let (ok, out) = run(lakeward(home.path()).args(["tables", "compact", "bronze.customers"]));
    assert!(ok && out.contains("nothing to compact"), "{out}");
    let (ok, out) = run(lakeward(home.path()).args([
        "tables",
        "expire",
        "bronze.orders",
        "--older-than",
        "0s",
    ]));
    assert!(ok && out.contains("expired 0 snapshots"), "the only snapshot is kept: {out}");
    let (ok, out) = run(lakeward(home.path()).args(["tables", "show", "nope.nothing"]));
    assert!(!ok && out.contains("no table `nope.nothing`"), "{out}");
}

/// `config check` prints the effective configuration with secrets masked, or every problem;
/// a process does not start on a configuration with problems.
#[test]
fn config_check_shows_the_effective_settings_or_every_problem() {
    let home = tempfile::tempdir().unwrap();
    let (ok, out) = run(lakeward(home.path())
        .args(["config", "check"])
        .env("LAKEWARD_DATABASE_URL", "postgres://lw:hunter2@db/lakeward")
        .env("LAKEWARD_WORKER_QUEUES", "etl,reports"));
    assert!(ok, "{out}");
    assert!(out.contains("postgres://lw:***@db/lakeward") && !out.contains("hunter2"), "{out}");
    assert!(out.contains("queues = [\"etl\", \"reports\"]"), "{out}");

    let broken = |cmd: &mut Command| {
        cmd.env("LAKEWARD_WORKER_SLOTS", "0")
            .env("LAKEWARD_WEB_BIND", "nowhere")
            .env("LAKEWARD_POOLS_WAREHOUSE", "0");
    };
    let mut check = lakeward(home.path());
    broken(check.args(["config", "check"]));
    let (ok, out) = run(&mut check);
    assert!(!ok, "{out}");
    for problem in ["worker.slots = 0", "web.bind = \"nowhere\"", "pools.warehouse = 0"] {
        assert!(out.contains(problem), "{problem} missing:\n{out}");
    }
    let mut start = lakeward(home.path());
    broken(start.args(["dags", "list"]));
    let (ok, out) = run(&mut start);
    assert!(!ok && out.contains("invalid configuration"), "{out}");
}

#[test]
fn produce_sends_simulated_events_and_says_what_is_wrong() {
    let home = tempfile::tempdir().unwrap();
    let (ok, out) = run(lakeward(home.path()).args(["produce", "--topic", "t", "--count", "5"]));
    assert!(!ok);
    assert!(out.contains("no Kafka brokers: pass --brokers or set [kafka] brokers"), "{out}");
    let (ok, out) = run(lakeward(home.path()).args([
        "produce",
        "--topic",
        "t",
        "--count",
        "5",
        "--profile",
        "tweets",
        "--brokers",
        "h:1",
    ]));
    assert!(!ok);
    assert!(out.contains("unknown profile `tweets`"), "{out}");
    let Some(brokers) = crate::common::kafka() else { return };
    let topic = crate::common::unique_topic("cli");
    let (ok, out) = run(lakeward(home.path()).args([
        "produce",
        "--topic",
        &topic,
        "--count",
        "250",
        "--rate",
        "0",
        "--profile",
        "sensors",
        "--brokers",
        &brokers,
    ]));
    assert!(ok, "{out}");
    assert!(out.contains("sent 250 events") && out.contains(&topic), "{out}");
}

/// `scheduler`, `web` and `worker` take their common settings as flags, which win over the
/// environment; an explicit SQLite file is created; a database that cannot be opened is named
/// (password masked); log lines sent to a pipe carry no colour codes.
#[test]
fn long_running_commands_take_flags_and_name_their_database() {
    let home = tempfile::tempdir().unwrap();
    let dags = home.path().join("my_dags");
    std::fs::create_dir(&dags).unwrap();
    std::fs::copy("dags/example.toml", dags.join("example.toml")).unwrap();
    let database = home.path().join("not/yet/there/lakeward.db");
    let url = format!("sqlite://{}", database.display());
    let database_flag = ["--database-url", url.as_str()];

    let mut scheduler = ChildProcess::spawn(
        lakeward(home.path())
            .arg("scheduler")
            .args(database_flag)
            .args(["--dags-folder", dags.to_str().unwrap()])
            .env("LAKEWARD_DATABASE_URL", "postgres://overridden@127.0.0.1:1/by_the_flag")
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    let stderr = BufReader::new(scheduler.stderr.take().unwrap());
    let mut seen = Vec::new();
    for line in stderr.lines() {
        let line = line.unwrap();
        let loaded = line.contains("DAG folder loaded");
        seen.push(line);
        if loaded {
            break;
        }
    }
    let log = seen.join("\n");
    assert!(log.contains("DAG folder loaded dags=1 changed=1 removed=0"), "{log}");
    assert!(!log.contains('\u{1b}'), "colour codes in piped log lines:\n{log:?}");
    terminate(scheduler);
    assert!(database.is_file(), "the SQLite file named by --database-url was not created");

    let mut web = ChildProcess::spawn(
        lakeward(home.path())
            .args(["web", "--port", "0"])
            .args(database_flag)
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    let mut line = String::new();
    BufReader::new(web.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let address = line.split("http://").nth(1).unwrap().trim_end().trim_end_matches('/');
    assert!(address.starts_with("127.0.0.1:") && !address.ends_with(":0"), "{line}");
    let health = http_get(address, "/health");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    terminate(web);

    let (ok, out) = run(lakeward(home.path()).args(["worker", "--slots", "0"]).args(database_flag));
    assert!(!ok && out.contains("worker.slots = 0") && out.contains("(from --slots)"), "{out}");
    let (ok, out) = run(lakeward(home.path())
        .args(["web", "--bind", "127.0.0.1:1", "--port", "2"])
        .args(database_flag));
    assert!(!ok && out.contains("cannot be used with"), "{out}");

    let (ok, out) = run(lakeward(home.path())
        .args(["dags", "list"])
        .env("LAKEWARD_DATABASE_URL", "postgres://lw:hunter2@127.0.0.1:1/nowhere"));
    assert!(!ok, "{out}");
    assert!(out.contains("cannot open database postgres://lw:***@127.0.0.1:1/nowhere"), "{out}");
    assert!(!out.contains("hunter2"), "{out}");
}
