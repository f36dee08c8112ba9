//! End to end in a real browser: headless Chromium driven over WebDriver (chromedriver) against
//! a `lakeward standalone` process. Logs in with the generated admin password, triggers the
//! example DAG with a param, watches the grid turn green without reloading (live refresh), and
//! opens a task log. Screenshots of the DAG list, grid, graph and log pages are saved in
//! `$LAKEWARD_TEST_ARTIFACTS` (default: `<target>/tmp/browser-screenshots`).
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them). Without them the
//! test is skipped, except under `CI=true`, where it fails.

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine;
use common::process::{free_port, ChildProcess};
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The W3C WebDriver key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A minimal W3C WebDriver client: just the commands this test needs.
struct Browser {
    http: reqwest::Client,
    session: String,
}

impl Browser {
    async fn call(
        http: &reqwest::Client,
        method: reqwest::Method,
        url: &str,
        body: Option<Value>,
    ) -> Value {
        let mut request = http.request(method, url);
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("WebDriver {url}: {e}"));
        let status = response.status();
        let text = response.text().await.unwrap();
        let value: Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("WebDriver said: {text}"));
        assert!(status.is_success(), "WebDriver {url} failed ({status}): {text}");
        value["value"].clone()
    }

    async fn start(driver: &str, profile: &Path) -> Browser {
        let http = reqwest::Client::new();
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--disable-quic", "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync", "--window-size=1400,1000",
                         format!("--user-data-dir={}", profile.display())],
            },
        }}});
        let value = Browser::call(
            &http,
            reqwest::Method::POST,
            &format!("{driver}/session"),
            Some(capabilities),
        )
        .await;
        let id = value["sessionId"].as_str().unwrap().to_string();
        Browser { http, session: format!("{driver}/session/{id}") }
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        Browser::call(&self.http, method, &format!("{}{path}", self.session), body).await
    }

    async fn goto(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", Some(json!({ "url": url }))).await;
    }

    async fn url(&self) -> String {
        self.command(reqwest::Method::GET, "/url", None).await.as_str().unwrap().to_string()
    }

    async fn find(&self, css: &str) -> String {
        let found = self
            .command(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        found[ELEMENT].as_str().unwrap_or_else(|| panic!("no element {css}: {found}")).to_string()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.command(reqwest::Method::POST, &format!("/element/{element}/clear"), Some(json!({})))
            .await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.command(reqwest::Method::POST, &format!("/element/{element}/click"), Some(json!({})))
            .await;
    }

    /// Clicks a link or submit button and returns the URL of the page it leads to, once that
    /// page has loaded (the click itself returns before).
    async fn click_and_load(&self, css: &str) -> String {
        let form = self.url().await;
        self.click(css).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let url = self.url().await;
            let loaded = self.script("return document.readyState").await == json!("complete");
            if url != form && loaded {
                return url;
            }
            assert!(Instant::now() < deadline, "clicking {css} never left {form}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn script(&self, script: &str) -> Value {
        self.command(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    async fn screenshot(&self, dir: &Path, name: &str) {
        let data = self.command(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD.decode(data.as_str().unwrap()).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{name} is not a PNG");
        std::fs::write(dir.join(name), png).unwrap();
    }

    async fn quit(self) {
        let _ = self.http.delete(&self.session).send().await;
    }
}

/// Waits for `check` to hold, polling every 200 ms, up to `limit`.
async fn eventually<F: AsyncFn() -> bool>(what: &str, limit: Duration, check: F) {
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn artifacts_dir() -> PathBuf {
    let dir = std::env::var_os("LAKEWARD_TEST_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-screenshots"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Starts `lakeward standalone` on a fresh home; returns it, the UI URL and the admin password.
fn start_lakeward(home: &Path) -> (ChildProcess, String, String) {
    let dags = home.join("dags");
    std::fs::create_dir_all(&dags).unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/dags/example.toml"),
        dags.join("example.toml"),
    )
    .unwrap();
    let mut process = ChildProcess::spawn(
        Command::new(env!("CARGO_BIN_EXE_lakeward"))
            .arg("standalone")
            .env("LAKEWARD_HOME", home)
            .env("LAKEWARD_DAGS_FOLDER", &dags)
            .env("LAKEWARD_WEB_BIND", format!("127.0.0.1:{}", free_port()))
            .env_remove("LAKEWARD_DATABASE_URL")
            .env_remove("LAKEWARD_CONFIG")
            .current_dir(home)
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    let stdout = process.stdout.take().unwrap();
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let (mut password, mut url) = (None, None);
    while url.is_none() {
        let line =
            received.recv_timeout(Duration::from_secs(60)).expect("standalone did not start");
        if let Some(rest) = line.split("with password: ").nth(1) {
            password = Some(rest.trim().to_string());
        }
        if let Some(rest) = line.split("UI on ").nth(1) {
            url = Some(rest.split_whitespace().next().unwrap().trim_end_matches('/').to_string());
        }
    }
    (process, url.unwrap(), password.expect("standalone printed no admin password on first start"))
}

fn chromedriver(port: u16) -> ChildProcess {
    ChildProcess::spawn(
        Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_in_trigger_watch_the_grid_and_read_a_log() {
    if !Path::new(CHROMEDRIVER).exists() || !Path::new(CHROMIUM).exists() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{CHROMIUM} and {CHROMEDRIVER} are required under CI=true (apt-get install chromium chromium-driver)"
        );
        eprintln!("skipping: Chromium or chromedriver is not installed");
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let (_lakeward, base, password) = start_lakeward(home.path());
    let port = free_port();
    let _driver = chromedriver(port);
    let driver = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    eventually("chromedriver to listen", Duration::from_secs(30), async || {
        http.get(format!("{driver}/status")).send().await.is_ok()
    })
    .await;
    let shots = artifacts_dir();
    let browser = Browser::start(&driver, &home.path().join("chromium-profile")).await;

    // Log in: the login page comes first and returns to the page asked for.
    browser.goto(&format!("{base}/dags")).await;
    assert!(browser.url().await.contains("/login?next="), "not logged in: sent to the login page");
    browser.type_into("#username", "admin").await;
    browser.type_into("#password", &password).await;
    assert_eq!(browser.click_and_load("#login").await, format!("{base}/dags"));
    eventually("the example DAG to be listed", Duration::from_secs(30), async || {
        browser.goto(&format!("{base}/dags")).await;
        browser.script("return document.querySelector('tr[data-dag=\"example\"]') !== null").await
            == json!(true)
    })
    .await;
    browser.screenshot(&shots, "dags.png").await;

    // Trigger with a param from the generated form; the browser lands on the new run.
    browser.goto(&format!("{base}/dags/example/trigger")).await;
    browser.type_into("#param-rows", "77").await;
    let run_url = browser.click_and_load("#trigger").await;
    assert!(run_url.contains("/dags/example/runs/manual__"), "{run_url}");

    // The grid turns green by itself: live refresh, no reload.
    browser.goto(&format!("{base}/dags/example")).await;
    eventually("every grid cell to turn success", Duration::from_secs(90), async || {
        let states = browser
            .script("return Array.from(document.querySelectorAll('#grid .cell')).map(c => c.dataset.state)")
            .await;
        let states = states.as_array().cloned().unwrap_or_default();
        !states.is_empty() && states.iter().all(|s| s == "success")
    })
    .await;
    browser.screenshot(&shots, "grid.png").await;

    browser.goto(&format!("{base}/dags/example?tab=graph")).await;
    let nodes = browser
        .script("return document.querySelectorAll('#graph .node.state-success').length")
        .await;
    assert_eq!(nodes, json!(5));
    browser.screenshot(&shots, "graph.png").await;

    // Open the task log from the run page.
    browser.goto(&run_url).await;
    browser.click_and_load("a[href$=\"/tasks/extract\"]").await;
    let log = browser.script("return document.querySelector('#log').textContent").await;
    assert!(log.as_str().unwrap().contains("extracting 77 rows"), "{log}");
    browser.screenshot(&shots, "log.png").await;

    // A query on the SQL page: its rows, a chart of them, and the query in the history.
    browser.goto(&format!("{base}/sql")).await;
    browser
        .type_into(
            "#query",
            "WITH t AS (SELECT 1 AS day, 10 AS revenue UNION ALL SELECT 2 AS day, 30 AS revenue \
             UNION ALL SELECT 3 AS day, 20 AS revenue) SELECT * FROM t ORDER BY day",
        )
        .await;
    browser.click_and_load("#run-query").await;
    let rows =
        browser.script("return document.querySelectorAll('#sql-result tbody tr').length").await;
    assert_eq!(rows, json!(3));
    let line =
        browser.script("return document.querySelector('#sql-chart polyline') !== null").await;
    assert_eq!(line, json!(true), "a line chart of revenue by day");
    let recent = browser.script("return document.querySelector('#sql-recent').textContent").await;
    assert!(recent.as_str().unwrap().contains("UNION ALL"), "{recent}");
    browser.screenshot(&shots, "sql.png").await;
    eprintln!("screenshots in {}", shots.display());
    browser.quit().await;
}
