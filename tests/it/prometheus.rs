//! The monitoring config of `deploy/prometheus/`, checked by the real Prometheus (Debian's
//! `prometheus` package, installed by `.ci/run`): `promtool` accepts the config and the alert
//! rules, and a Prometheus started with them scrapes a running `lakeward standalone` with an
//! API token read from a file, reads lakeward's series back through its query API, evaluates
//! every alert rule without error, and runs every query of the Grafana dashboard.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::process::{free_port, ChildProcess};

const PROMTOOL: &str = "/usr/bin/promtool";
const PROMETHEUS: &str = "/usr/bin/prometheus";

/// `lakeward ARGS` in `home`; its standard output.
fn lakeward(home: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_lakeward"))
        .args(args)
        .env("LAKEWARD_HOME", home)
        .env_remove("LAKEWARD_DATABASE_URL")
        .env_remove("LAKEWARD_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success(), "lakeward {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The deployed config with the token file and the target of this test, scraping every second.
fn config(token_file: &Path, target: &str) -> String {
    let text = std::fs::read_to_string("deploy/prometheus/prometheus.yml").unwrap();
    assert!(text.contains("/run/secrets/lakeward_metrics_token") && text.contains("web:8080"));
    text.replace("/run/secrets/lakeward_metrics_token", token_file.to_str().unwrap())
        .replace("web:8080", target)
        .replace("15s", "1s")
}

/// Prometheus' answer to `expr`; `null` while it does not listen yet, or answers in plain
/// text that it is not ready ("Service Unavailable" while it starts).
async fn query(client: &reqwest::Client, prometheus: &str, expr: &str) -> Value {
    let url = format!("{prometheus}/api/v1/query");
    match client.get(url).query(&[("query", expr)]).send().await {
        Ok(answer) => answer.json::<Value>().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

/// Waits until `check` holds, for at most a minute.
async fn eventually(what: &str, check: impl AsyncFn() -> bool) {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < Duration::from_secs(60), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_lakeward_and_evaluates_the_alert_rules() {
    if !Path::new(PROMETHEUS).exists() || !Path::new(PROMTOOL).exists() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{PROMETHEUS} and {PROMTOOL} are required under CI=true (apt-get install prometheus)"
        );
        eprintln!("skipping: Prometheus is not installed");
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let monitoring = home.path().join("prometheus");
    std::fs::create_dir_all(&monitoring).unwrap();

    // A viewer's API token, in a file as the compose stack's secret.
    lakeward(
        home.path(),
        &["users", "create", "prometheus", "--role", "viewer", "--password", "p4ssword-prom"],
    );
    let token = lakeward(home.path(), &["users", "token", "prometheus", "--name", "scraper"]);
    let token_file = monitoring.join("token");
    std::fs::write(&token_file, token.trim()).unwrap();

    let web = format!("127.0.0.1:{}", free_port());
    let dags = home.path().join("dags");
    std::fs::create_dir_all(&dags).unwrap();
    let mut standalone = ChildProcess::spawn(
        Command::new(env!("CARGO_BIN_EXE_lakeward"))
            .arg("standalone")
            .env("LAKEWARD_HOME", home.path())
            .env("LAKEWARD_DAGS_FOLDER", &dags)
            .env("LAKEWARD_WEB_BIND", &web)
            .env_remove("LAKEWARD_DATABASE_URL")
            .env_remove("LAKEWARD_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    let stdout = standalone.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    while !lines.next().unwrap().unwrap().contains("UI on ") {}
    std::thread::spawn(move || lines.for_each(drop));

    // promtool: the config as deployed (with this token file) and the rules.
    let config_file = monitoring.join("prometheus.yml");
    std::fs::write(&config_file, config(&token_file, &web)).unwrap();
    std::fs::copy("deploy/prometheus/alerts.yml", monitoring.join("alerts.yml")).unwrap();
    for args in [vec!["check", "config"], vec!["check", "rules"]] {
        let file =
            if args[1] == "config" { config_file.clone() } else { monitoring.join("alerts.yml") };
        let out = Command::new(PROMTOOL).args(&args).arg(&file).output().unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    let port = free_port();
    let _prometheus = ChildProcess::spawn(
        Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!("--storage.tsdb.path={}", monitoring.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let prometheus = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();

    // Scraped with the token (a wrong one would leave `up` at 0).
    eventually("Prometheus to scrape lakeward", async || {
        let answer = query(&client, &prometheus, "up{job=\"lakeward\"}").await;
        answer["data"]["result"][0]["value"][1] == "1"
    })
    .await;
    for series in [
        "lakeward_import_errors",
        "lakeward_dag_runs_missed_deadline",
        "lakeward_scheduler_loop_seconds",
        "lakeward_build_info",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
    ] {
        let answer = query(&client, &prometheus, series).await;
        let result = answer["data"]["result"].as_array().cloned().unwrap_or_default();
        assert!(!result.is_empty(), "{series} not scraped: {answer}");
        assert_eq!(result[0]["metric"]["job"], "lakeward", "{answer}");
    }

    // Every rule evaluates, and none fires against a healthy lakeward.
    eventually("every rule to be evaluated", async || {
        let rules = client.get(format!("{prometheus}/api/v1/rules")).send().await.unwrap();
        let rules: Value = rules.json().await.unwrap();
        let rules = rules["data"]["groups"][0]["rules"].as_array().cloned().unwrap_or_default();
        rules.len() == 8 && rules.iter().all(|r| r["health"] == "ok")
    })
    .await;
    // Every query of the Grafana dashboard is valid PromQL over what lakeward exports.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string("deploy/grafana/dashboards/lakeward.json").unwrap(),
    )
    .unwrap();
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect();
    assert!(exprs.len() >= 10, "{exprs:?}");
    for expr in &exprs {
        let answer = query(&client, &prometheus, expr).await;
        assert_eq!(answer["status"], "success", "{expr}: {answer}");
    }
    // And the panels on what an idle lakeward already reports show it.
    for shown in ["process_resident_memory_bytes", "lakeward_import_errors", "scheduler_loop"] {
        let expr = exprs.iter().find(|e| e.contains(shown)).unwrap();
        let answer = query(&client, &prometheus, expr).await;
        let result = answer["data"]["result"].as_array().cloned().unwrap_or_default();
        assert!(!result.is_empty(), "{expr}: {answer}");
    }
    let alerts = client.get(format!("{prometheus}/api/v1/alerts")).send().await.unwrap();
    let alerts: Value = alerts.json().await.unwrap();
    assert_eq!(alerts["data"]["alerts"].as_array().map(Vec::len), Some(0), "{alerts}");
}
