//! Attacks tried as an attacker would, one test (or more) per class of hole: parameters that
//! reach SQL or a shell, table functions, credential and session abuse, login brute force,
//! open redirects, DNS rebinding, Iceberg locations outside the warehouse, file deletion by
//! expiry, symbolic links, oversized input, and what pages reveal.

use crate::common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE, HOST, LOCATION, ORIGIN, SET_COOKIE};
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use common::web::Answer;
use common::{Harness, HarnessOptions};
use lakeward::config::Config;
use lakeward::dag::folder::load_folder;
use lakeward::dag::{compile, Dag};
use lakeward::domain::{Role, RunState};
use lakeward::jobs::Registry;
use lakeward::lake::tables::{CatalogConfig, ScanRequest, TablesHandle, WriteMode};
use lakeward::lake::Warehouse;
use lakeward::scheduler::trigger::RunRequest;
use lakeward::store::{dags, users};
use lakeward::store::{DagRecord, SessionRow, Store, TaskInstanceRow};
use lakeward::time::now_micros;
use lakeward::users::{create_api_token, create_user, digest, new_secret};
use lakeward::web::{app, AppState};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Tasks: parameters are data, never code.

/// Runs `source` with `params` against a warehouse in `dir`.
async fn run_dag(dir: &Path, source: &str, params: Value) -> (RunState, Vec<TaskInstanceRow>) {
    let db = common::sqlite();
    let options = HarnessOptions {
        warehouse: Some(Warehouse::open(dir.join("warehouse").to_str().unwrap()).unwrap()),
        ..Default::default()
    };
    let h = Harness::start_with(&db, options).await;
    let dag = Arc::new(compile("attack.toml", source, "attack", &Registry::builtin()).unwrap());
    let params = params.as_object().cloned().unwrap_or_default();
    let run = h.trigger(&dag, RunRequest::manual(chrono::Utc::now(), params)).await;
    let state = h.wait(&run, Duration::from_secs(60)).await.state;
    let tasks = h.tasks(&run).await;
    let mut logged = Vec::new();
    for task in &tasks {
        logged.push(h.log_text(task).await);
    }
    h.stop().await;
    let tasks = tasks
        .into_iter()
        .zip(logged)
        .map(|(mut task, log)| {
            task.outputs.insert("__log".into(), Value::String(log));
            task
        })
        .collect();
    (state, tasks)
}

fn log_of(task: &TaskInstanceRow) -> &str {
    task.outputs["__log"].as_str().unwrap_or_default()
}

fn secret_file(dir: &Path) -> String {
    let secret = dir.join("secret.csv");
    std::fs::write(&secret, "password\nhunter2-do-not-leak\n").unwrap();
    secret.display().to_string()
}

const ORDERS_CSV: &str = "id,status\n1,shipped\n2,pending\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_param_in_a_query_is_a_literal_and_cannot_read_files() {
    let dir = tempfile::tempdir().unwrap();
    let secret = secret_file(dir.path());
    std::fs::create_dir_all(dir.path().join("warehouse/raw")).unwrap();
    std::fs::write(dir.path().join("warehouse/raw/orders.csv"), ORDERS_CSV).unwrap();
    let dag = r#"
        [params]
        status = { type = "string", default = "shipped" }
        [tasks.report]
        kind = "report"
        inputs = { orders = "raw/orders.csv" }
        output = "gold/report.json"
        metrics = { matching = "SELECT COUNT(*) AS n FROM orders WHERE status = {{ params.status }}" }
    "#;
    let (state, tasks) = run_dag(dir.path(), dag, json!({})).await;
    assert_eq!(state, RunState::Success, "{:?}", tasks[0].error);
    assert_eq!(tasks[0].outputs["metrics"]["matching"], 1);

    let hostile =
        format!("x' UNION ALL SELECT COUNT(*) FROM read_csv('{secret}') UNION ALL SELECT 'x");
    let (state, tasks) = run_dag(dir.path(), dag, json!({ "status": hostile })).await;
    assert_eq!(state, RunState::Success, "{:?}", tasks[0].error);
    assert_eq!(tasks[0].outputs["metrics"]["matching"], 0, "the value was compared, not run");
    assert!(!serde_json::to_string(&tasks[0].outputs).unwrap().contains("hunter2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_params_are_checked_after_rendering_like_the_file_itself() {
    let dir = tempfile::tempdir().unwrap();
    let secret = secret_file(dir.path());
    std::fs::create_dir_all(dir.path().join("warehouse/raw")).unwrap();
    std::fs::write(dir.path().join("warehouse/raw/orders.csv"), ORDERS_CSV).unwrap();
    let dag = r#"
        [params]
        filter = { type = "string", default = "TRUE" }
        [tasks.copy]
        kind = "sql"
        retries = 3
        inputs = { orders = "raw/orders.csv" }
        [tasks.copy.outputs."silver/orders"]
        query = "SELECT * FROM orders WHERE {{ params.filter | safe }}"
    "#;
    let (state, tasks) = run_dag(dir.path(), dag, json!({ "filter": "status = 'shipped'" })).await;
    assert_eq!(state, RunState::Success, "{:?}", tasks[0].error);

    let attacks = [
        format!("TRUE UNION ALL SELECT * FROM read_csv('{secret}')"),
        format!("id IN (SELECT 1 FROM read_csv('{secret}'))"),
        // Looks like a template once rendered: still checked.
        format!("TRUE UNION ALL SELECT * FROM read_csv('{secret}') -- {{{{"),
        "TRUE; SELECT 1".to_string(),
    ];
    for attack in attacks {
        let (state, tasks) = run_dag(dir.path(), dag, json!({ "filter": attack })).await;
        assert_eq!(state, RunState::Failed, "{attack}");
        let error = tasks[0].error.clone().unwrap_or_default();
        assert!(error.starts_with("invalid task configuration"), "{attack}: {error}");
        assert_eq!(tasks[0].try_number, 1, "a refused query is never retried: {attack}");
        assert!(!error.contains("hunter2") && !log_of(&tasks[0]).contains("hunter2"));
    }
}

#[test]
fn the_load_time_check_cannot_be_bypassed_and_quoted_templates_are_refused() {
    let compile_errors = |task: &str| {
        let source = format!("[params]\nx = {{ type = \"string\", default = \"a\" }}\n{task}");
        match compile("attack.toml", &source, "attack", &Registry::builtin()) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.iter().map(|e| e.to_string()).collect(),
        }
    };
    let shadowing_cte = r#"
        [tasks.q]
        kind = "sql"
        inputs = { t = "raw/t" }
        outputs."gold/x" = { query = "WITH read_csv AS (SELECT * FROM t) SELECT * FROM read_csv('/etc/passwd')" }
    "#;
    let errors = compile_errors(shadowing_cte);
    assert!(errors.iter().any(|e| e.contains("table function `read_csv`")), "{errors:?}");

    let quoted_sql = r#"
        [tasks.q]
        kind = "quality"
        datasets = { t = "raw/t" }
        checks = [{ check = "sql", dataset = "t", predicate = "status = '{{ params.x }}'" }]
    "#;
    let errors = compile_errors(quoted_sql);
    assert!(errors.iter().any(|e| e.contains("without the quotes")), "{errors:?}");

    let quoted_shell = "[tasks.s]\nkind = \"shell\"\ncommand = 'echo \"{{ params.x }}\"'\n";
    let errors = compile_errors(quoted_shell);
    assert!(errors.iter().any(|e| e.contains("without the quotes")), "{errors:?}");
    let bare = "[tasks.s]\nkind = \"shell\"\ncommand = 'echo {{ params.x }}'\n";
    assert!(compile_errors(bare).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_param_in_a_shell_command_is_one_word_and_secrets_stay_out() {
    let dir = tempfile::tempdir().unwrap();
    let planted = dir.path().join("planted");
    // A variable of the worker's environment that is not in the base set: cargo gives every
    // test process CARGO_PKG_NAME (the tests share one process, so none may set variables).
    assert_eq!(std::env::var("CARGO_PKG_NAME").as_deref(), Ok("lakeward"), "run under cargo");
    let dag = r#"
        [params]
        region = { type = "string", default = "eu" }
        [tasks.echo]
        kind = "shell"
        command = "echo region={{ params.region }}; echo secret=${CARGO_PKG_NAME:-absent} path=${PATH:+set}"
        [tasks.allowed]
        kind = "shell"
        inherit_env = ["CARGO_PKG_NAME"]
        command = "echo secret=$CARGO_PKG_NAME"
    "#;
    let hostile = format!("eu; touch {}; echo $(id)", planted.display());
    let (state, tasks) = run_dag(dir.path(), dag, json!({ "region": hostile })).await;
    assert_eq!(state, RunState::Success);
    assert!(!planted.exists(), "the param ran as code");
    let echo = tasks.iter().find(|t| t.task_id == "echo").unwrap();
    assert!(log_of(echo).contains(&format!("region={hostile}")), "{}", log_of(echo));
    assert!(log_of(echo).contains("secret=absent path=set"), "{}", log_of(echo));
    let allowed = tasks.iter().find(|t| t.task_id == "allowed").unwrap();
    assert!(log_of(allowed).contains("secret=lakeward"), "{}", log_of(allowed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_log_lines_are_cut_and_marked() {
    let dir = tempfile::tempdir().unwrap();
    let dag = r#"
        [tasks.noisy]
        kind = "shell"
        command = "head -c 3000000 /dev/zero | tr '\\0' x; echo; echo after"
    "#;
    let (state, tasks) = run_dag(dir.path(), dag, json!({})).await;
    assert_eq!(state, RunState::Success);
    let log = log_of(&tasks[0]);
    let long = log.lines().find(|l| l.starts_with("xxx")).expect("the long line is kept, cut");
    assert!(long.len() < 20_000, "{} bytes stored", long.len());
    assert!(long.ends_with("more bytes]"), "{}", &long[long.len() - 60..]);
    assert!(log.contains("\nafter\n"), "lines after a long one are kept");
}

// ---------------------------------------------------------------------------------------------
// The web: sessions, tokens, logins, redirects, hosts, headers.

struct Web {
    router: Router,
    store: Store,
}

fn example_dag() -> Arc<Dag> {
    let source = include_str!("../../dags/example.toml");
    let file = "/srv/lakeward/private/dags/example.toml";
    Arc::new(compile(file, source, "example", &Registry::builtin()).unwrap())
}

impl Web {
    async fn new(harness: &Harness, config: &Config, tables: Option<TablesHandle>) -> Web {
        let dag = example_dag();
        dags::register(harness.store.write(), &DagRecord::from(dag.as_ref()), now_micros())
            .await
            .unwrap();
        harness.versions.insert(dag);
        let mut state = AppState::new(harness.store.clone(), harness.versions.clone(), config);
        if let Some(tables) = tables {
            state = state.with_tables(tables);
        }
        Web { router: app(state), store: harness.store.clone() }
    }

    async fn send(&self, request: Request<Body>) -> Answer {
        common::web::send(&self.router, request).await
    }

    async fn session(&self, username: &str) -> (String, String) {
        let (secret, csrf) = (new_secret(), new_secret());
        let session = SessionRow {
            username: username.into(),
            role: Role::Admin, // what the session row says is not what counts
            csrf_token: csrf.clone(),
            expires_at: now_micros() + 3_600_000_000,
        };
        users::create_session(self.store.write(), &digest(&secret), &session, now_micros())
            .await
            .unwrap();
        (format!("lakeward_session={secret}"), csrf)
    }

    async fn get_as(&self, path: &str, cookie: &str) -> Answer {
        self.send(Request::get(path).header(COOKIE, cookie).body(Body::empty()).unwrap()).await
    }

    /// Pauses a DAG through its form (`path` is the pause action).
    async fn post_as(&self, path: &str, (cookie, csrf): &(String, String)) -> Answer {
        let fields = [("csrf_token", csrf.as_str()), ("paused", "true")];
        let body = serde_urlencoded::to_string(fields).unwrap();
        let request = Request::post(path)
            .header(COOKIE, cookie)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap();
        self.send(request).await
    }

    async fn api(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> Answer {
        self.send(common::web::api_request(method, path, token, body)).await
    }

    /// A login attempt through the real form, from `client`.
    async fn login(&self, username: &str, password: &str, next: &str, client: &str) -> Answer {
        let form = self.send(Request::get("/login").body(Body::empty()).unwrap()).await;
        let cookie = form.header(SET_COOKIE).split(';').next().unwrap().to_string();
        let token = cookie.split_once('=').unwrap().1.to_string();
        let body = serde_urlencoded::to_string([
            ("username", username),
            ("password", password),
            ("csrf_token", &token),
            ("next", next),
        ])
        .unwrap();
        let mut request = Request::post("/login")
            .header(COOKIE, cookie)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap();
        let peer: std::net::SocketAddr = format!("{client}:40000").parse().unwrap();
        request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
        self.send(request).await
    }
}

/// A new admin's API token.
async fn admin_token(store: &Store) -> String {
    create_user(store, "robot", "robot-password", Role::Admin).await.unwrap();
    create_api_token(store, "robot", "t", None).await.unwrap()
}

/// A harness whose web server serves the table catalog of a warehouse in `dir`.
async fn catalog_server(
    db: &common::TestDb,
    dir: &Path,
) -> (Harness, Web, TablesHandle, Warehouse) {
    let harness = Harness::start(db).await;
    let warehouse = Warehouse::open(dir.join("warehouse").to_str().unwrap()).unwrap();
    let tables =
        TablesHandle::new(harness.store.clone(), warehouse.clone(), CatalogConfig::default());
    let web = Web::new(&harness, &Config::default(), Some(tables.clone())).await;
    (harness, web, tables, warehouse)
}

async fn web_harness(db: &common::TestDb) -> (Harness, Web) {
    let harness = Harness::start(db).await;
    let web = Web::new(&harness, &Config::default(), None).await;
    (harness, web)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demoted_or_deleted_user_loses_its_powers_at_once() {
    let db = common::sqlite();
    let (harness, web) = web_harness(&db).await;
    create_user(&web.store, "ana", "ana-password", Role::Admin).await.unwrap();
    let session = web.session("ana").await;
    assert_eq!(web.post_as("/dags/example/pause", &session).await.status, StatusCode::SEE_OTHER);

    create_user(&web.store, "ana", "ana-password", Role::Viewer).await.unwrap();
    assert_eq!(web.post_as("/dags/example/pause", &session).await.status, StatusCode::FORBIDDEN);
    assert_eq!(web.get_as("/dags", &session.0).await.status, StatusCode::OK);
    let form = web.get_as("/dags/example/trigger", &session.0).await;
    assert_eq!(form.status, StatusCode::FORBIDDEN, "viewers cannot open the trigger form");

    let token = create_api_token(&web.store, "ana", "script", None).await.unwrap();
    assert!(users::delete(web.store.write(), "ana").await.unwrap());
    let page = web.get_as("/dags", &session.0).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "a deleted user's session is over");
    let api = web.api(Method::GET, "/api/v1/dags", &token, None).await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED, "a deleted user's token is dead");
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_listed_revoked_and_expire() {
    for db in common::databases().await {
        tokens_lifecycle(&db).await;
    }
}

async fn tokens_lifecycle(db: &common::TestDb) {
    let (harness, web) = web_harness(db).await;
    create_user(&web.store, "robot", "robot-password", Role::Admin).await.unwrap();
    create_user(&web.store, "reader", "reader-password", Role::Viewer).await.unwrap();
    let admin = create_api_token(&web.store, "robot", "ops", None).await.unwrap();
    let reader = create_api_token(&web.store, "reader", "laptop", None).await.unwrap();
    let short = create_api_token(&web.store, "reader", "short", Some(Duration::from_millis(300)))
        .await
        .unwrap();
    assert_eq!(web.api(Method::GET, "/api/v1/dags", &short, None).await.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let expired = web.api(Method::GET, "/api/v1/dags", &short, None).await;
    assert_eq!(expired.status, StatusCode::UNAUTHORIZED, "an expired token is refused");

    let listed = web.api(Method::GET, "/api/v1/tokens", &reader, None).await;
    let tokens: Value = serde_json::from_str(&listed.body).unwrap();
    let tokens = tokens["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 2, "a viewer sees its own tokens: {tokens:?}");
    assert!(tokens.iter().all(|t| t["user"] == "reader"));
    assert!(!listed.body.contains(&reader), "a listing never shows a token");
    let others = web.api(Method::GET, "/api/v1/tokens?user=robot", &reader, None).await;
    assert_eq!(others.status, StatusCode::FORBIDDEN);
    let all = web.api(Method::GET, "/api/v1/tokens", &admin, None).await;
    assert_eq!(
        serde_json::from_str::<Value>(&all.body).unwrap()["tokens"].as_array().unwrap().len(),
        3
    );

    let admin_id =
        users::list_api_tokens(web.store.read(), Some("robot")).await.unwrap()[0].id.clone();
    let not_mine =
        web.api(Method::DELETE, &format!("/api/v1/tokens/{admin_id}"), &reader, None).await;
    assert_eq!(not_mine.status, StatusCode::NOT_FOUND, "a viewer cannot revoke others' tokens");
    let laptop = tokens.iter().find(|t| t["name"] == "laptop").unwrap()["id"].as_str().unwrap();
    let revoked = web.api(Method::DELETE, &format!("/api/v1/tokens/{laptop}"), &reader, None).await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    let after = web.api(Method::GET, "/api/v1/dags", &reader, None).await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED, "a revoked token is dead");
    assert_eq!(web.api(Method::GET, "/api/v1/dags", &admin, None).await.status, StatusCode::OK);
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brute_force_logins_are_locked_out_per_user_and_per_address() {
    let db = common::sqlite();
    let (harness, web) = web_harness(&db).await;
    create_user(&web.store, "admin", "the-right-password", Role::Admin).await.unwrap();
    let mut statuses = Vec::new();
    for attempt in 0..8 {
        let answer = web.login("admin", &format!("guess-{attempt}"), "/dags", "192.0.2.1").await;
        statuses.push(answer.status);
    }
    assert_eq!(statuses[..5], [StatusCode::UNAUTHORIZED; 5], "{statuses:?}");
    assert!(statuses[5..].iter().all(|s| *s == StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
    let right = web.login("admin", "the-right-password", "/dags", "198.51.100.7").await;
    assert_eq!(right.status, StatusCode::TOO_MANY_REQUESTS, "the user is locked, from anywhere");
    assert!(right.header("retry-after").parse::<u64>().unwrap() >= 1);

    // The attacking address is locked for every user name it tries.
    create_user(&web.store, "other", "other-password", Role::Viewer).await.unwrap();
    let sprayed = web.login("other", "other-password", "/dags", "192.0.2.1").await;
    assert_eq!(sprayed.status, StatusCode::TOO_MANY_REQUESTS);
    let elsewhere = web.login("other", "other-password", "/dags", "198.51.100.7").await;
    assert_eq!(elsewhere.status, StatusCode::SEE_OTHER, "others log in from elsewhere");
    // An unknown user fails like a wrong password, and is counted the same.
    let unknown = web.login("nobody", "whatever-pass", "/dags", "203.0.113.5").await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookies_are_secure_when_a_tls_proxy_is_configured() {
    let db = common::sqlite();
    let harness = Harness::start(&db).await;
    let mut config = Config::default();
    config.web.secure_cookies = true;
    let web = Web::new(&harness, &config, None).await;
    create_user(&web.store, "ana", "ana-password", Role::Admin).await.unwrap();
    let answer = web.login("ana", "ana-password", "/dags", "192.0.2.50").await;
    let session = answer.headers.get_all(SET_COOKIE).iter().find_map(|v| {
        let v = v.to_str().ok()?;
        v.starts_with("lakeward_session=").then(|| v.to_string())
    });
    let session = session.expect("a session cookie");
    assert!(session.contains("; Secure") && session.contains("HttpOnly"), "{session}");
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_login_only_same_site_paths_are_followed() {
    let db = common::sqlite();
    let (harness, web) = web_harness(&db).await;
    create_user(&web.store, "ana", "ana-password", Role::Admin).await.unwrap();
    for (i, (next, expected)) in [
        ("/dags/example?tab=graph", "/dags/example?tab=graph"),
        ("/\t/evil.example", "/dags"),
        ("/\u{b}/evil.example/", "/dags"),
        ("/\r\nSet-Cookie: x=1", "/dags"),
        ("//evil.example", "/dags"),
        ("/\\evil.example", "/dags"),
        ("https://evil.example/", "/dags"),
        ("http:/evil.example", "/dags"),
        (" /dags", "/dags"),
    ]
    .into_iter()
    .enumerate()
    {
        let client = format!("192.0.2.{}", 10 + i);
        let answer = web.login("ana", "ana-password", next, &client).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{next:?}");
        assert_eq!(answer.header(LOCATION), expected, "{next:?}");
    }
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_auth_only_known_hosts_and_same_site_origins_are_served() {
    let db = common::sqlite();
    let harness = Harness::start(&db).await;
    let mut config = Config::default();
    config.web.auth = false;
    config.web.allowed_hosts = vec!["lakeward.internal".into()];
    let web = Web::new(&harness, &config, None).await;
    let get =
        |host: &'static str| Request::get("/api/v1/dags").header(HOST, host).body(Body::empty());
    assert_eq!(web.send(get("127.0.0.1:8080").unwrap()).await.status, StatusCode::OK);
    assert_eq!(web.send(get("localhost:8080").unwrap()).await.status, StatusCode::OK);
    assert_eq!(web.send(get("[::1]:8080").unwrap()).await.status, StatusCode::OK);
    assert_eq!(web.send(get("lakeward.internal").unwrap()).await.status, StatusCode::OK);
    let rebound = web.send(get("attacker.example:8080").unwrap()).await;
    assert_eq!(rebound.status, StatusCode::FORBIDDEN, "a rebound name is refused");

    // A JSON call to the catalog needs no CSRF token without auth: only `Origin` guards it.
    // Past the checks it gets 404, since this server has no table catalog.
    let create = |origin: &'static str| {
        Request::post("/iceberg/v1/namespaces")
            .header(HOST, "127.0.0.1:8080")
            .header(ORIGIN, origin)
            .header(CONTENT_TYPE, "application/json")
            .body(Body::from(r#"{"namespace": ["x"]}"#))
            .unwrap()
    };
    for foreign in ["http://attacker.example", "http://localhost:3000", "null"] {
        let answer = web.send(create(foreign)).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{foreign}: {}", answer.body);
        assert!(answer.body.contains("cross-site request refused"), "{}", answer.body);
    }
    for same_site in ["http://127.0.0.1:8080", "https://lakeward.internal"] {
        let answer = web.send(create(same_site)).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{same_site}: {}", answer.body);
    }
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_carry_security_headers_and_reveal_no_server_paths() {
    let db = common::sqlite();
    let (harness, web) = web_harness(&db).await;
    create_user(&web.store, "ana", "ana-password", Role::Viewer).await.unwrap();
    let (cookie, _) = web.session("ana").await;
    let page = web.get_as("/dags/example?tab=source", &cookie).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.header("x-frame-options"), "DENY");
    assert_eq!(page.header("x-content-type-options"), "nosniff");
    assert!(page.header("content-security-policy").contains("frame-ancestors 'none'"));
    assert_eq!(page.header(CACHE_CONTROL), "no-store");
    assert!(!page.body.contains("/srv/lakeward/private"), "the server's DAG path is shown");
    let login = web.send(Request::get("/login").body(Body::empty()).unwrap()).await;
    assert_eq!(login.header("x-frame-options"), "DENY", "the login page cannot be framed");

    let huge_page = web.get_as(&format!("/dags?page={}", i64::MAX), &cookie).await;
    assert_eq!(huge_page.status, StatusCode::OK);
    let runs_page = web.get_as(&format!("/dags/example?page={}", i64::MAX), &cookie).await;
    assert_eq!(runs_page.status, StatusCode::OK);

    let token = admin_token(&web.store).await;
    let dag = web.api(Method::GET, "/api/v1/dags/example", &token, None).await;
    assert!(!dag.body.contains("/srv/lakeward/private"), "{}", dag.body);
    let big = json!({ "conf": "x".repeat(3 << 20) });
    let too_big = web.api(Method::POST, "/api/v1/dags/example/runs", &token, Some(big)).await;
    assert_eq!(too_big.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", too_big.body);
    harness.stop().await;
}

// ---------------------------------------------------------------------------------------------
// The Iceberg REST catalog: nothing outside the warehouse.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_locations_and_names_stay_inside_the_warehouse() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::sqlite();
    let (harness, web, _, _) = catalog_server(&db, dir.path()).await;
    let token = admin_token(&web.store).await;
    let call = |method: Method, path: &str, body: Option<Value>| {
        let path = format!("/iceberg/v1{path}");
        let token = token.clone();
        let web = &web;
        async move { web.api(method, &path, &token, body).await }
    };
    let outside = format!("file://{}/elsewhere", dir.path().display());
    let schema = json!({"type": "struct", "schema-id": 0, "fields": [
        {"id": 1, "name": "id", "type": "long", "required": false}]});

    assert_eq!(
        call(Method::POST, "/namespaces", Some(json!({"namespace": ["ok"]}))).await.status,
        StatusCode::OK
    );
    for bad in [json!(["a.b"]), json!([".."]), json!(["a/b"])] {
        let answer = call(Method::POST, "/namespaces", Some(json!({"namespace": bad}))).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{bad}: {}", answer.body);
    }
    let located = json!({"namespace": ["evil"], "properties": {"location": outside}});
    assert_eq!(
        call(Method::POST, "/namespaces", Some(located)).await.status,
        StatusCode::BAD_REQUEST
    );
    let moved = json!({"updates": {"location": outside}});
    let answer = call(Method::POST, "/namespaces/ok/properties", Some(moved)).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);

    let explicit = json!({"name": "t1", "schema": schema, "location": outside});
    let answer = call(Method::POST, "/namespaces/ok/tables", Some(explicit)).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
    let traversal = json!({"name": "..", "schema": schema});
    let answer = call(Method::POST, "/namespaces/ok/tables", Some(traversal)).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
    let climbing = format!("file://{}/warehouse/iceberg/ok/../../x", dir.path().display());
    let sneaky = json!({"name": "t2", "schema": schema, "location": climbing});
    assert_eq!(
        call(Method::POST, "/namespaces/ok/tables", Some(sneaky)).await.status,
        StatusCode::BAD_REQUEST
    );

    let plain = json!({"name": "t3", "schema": schema});
    let created = call(Method::POST, "/namespaces/ok/tables", Some(plain)).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    for update in [
        json!({"action": "set-location", "location": outside}),
        json!({"action": "set-properties", "updates": {"write.data.path": outside}}),
    ] {
        let commit = json!({"requirements": [], "updates": [update]});
        let answer = call(Method::POST, "/namespaces/ok/tables/t3", Some(commit)).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{update}: {}", answer.body);
    }
    assert!(!dir.path().join("elsewhere").exists(), "nothing was written outside");
    harness.stop().await;
}

// ---------------------------------------------------------------------------------------------
// The DAG folder and the database.

#[cfg(unix)]
#[test]
fn folder_links_in_the_dag_folder_are_reported_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let dags = dir.path().join("dags");
    std::fs::create_dir_all(dags.join("team")).unwrap();
    std::fs::write(dags.join("team/a.toml"), "[tasks.t]\nkind = \"noop\"\n").unwrap();
    std::os::unix::fs::symlink(&dags, dags.join("team/loop")).unwrap();
    std::os::unix::fs::symlink("/", dags.join("root")).unwrap();
    let started = std::time::Instant::now();
    let bag = load_folder(&dags, &Registry::builtin());
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(bag.dags.len(), 1, "{:?}", bag.errors);
    assert_eq!(bag.errors.len(), 2, "{:?}", bag.errors);
    for diagnostics in bag.errors.values() {
        assert!(diagnostics[0].message.contains("link to a folder not followed"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn descriptions_are_capped_and_deleted_dags_keep_no_body() {
    let huge = format!("description = \"{}\"\n[tasks.t]\nkind = \"noop\"\n", "x".repeat(20_000));
    let errors = compile("big.toml", &huge, "big", &Registry::builtin()).unwrap_err();
    assert!(errors[0].message.contains("description is 20000 bytes"), "{errors:?}");

    let db = common::sqlite();
    let store = Store::open(&db.url).await.unwrap();
    let source = format!("description = \"{}\"\n[tasks.t]\nkind = \"noop\"\n", "y".repeat(10_000));
    let dag = compile("gone.toml", &source, "gone", &Registry::builtin()).unwrap();
    dags::sync(store.write(), &[DagRecord::from(&dag)], &[], now_micros()).await.unwrap();
    assert!(dags::get(store.read(), "gone").await.unwrap().unwrap().description.is_some());
    dags::sync(store.write(), &[], &[], now_micros()).await.unwrap();
    let row = dags::get(store.read(), "gone").await.unwrap().unwrap();
    assert!(!row.is_active && row.description.is_none());
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_never_deletes_files_of_another_table() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::sqlite();
    let (harness, web, handle, warehouse) = catalog_server(&db, dir.path()).await;
    let token = admin_token(&web.store).await;
    let tables = handle.get().await.unwrap();
    let promote = |name: &'static str, amount: f64| {
        let (tables, warehouse) = (tables.clone(), warehouse.clone());
        async move {
            common::write_orders(&warehouse, &format!("bronze/{name}"), 0..2, 10, amount);
            let data = warehouse.dataset(&format!("bronze/{name}")).unwrap().current().unwrap();
            tables.promote(&format!("ns.{name}"), &data, &[], WriteMode::Append).await.unwrap();
        }
    };
    promote("a", 1.0).await;
    promote("b", 2.0).await;
    let files_of_b = || {
        let root = dir.path().join("warehouse/iceberg/ns/b");
        let mut found = Vec::new();
        let mut pending = vec![root];
        while let Some(folder) = pending.pop() {
            for entry in std::fs::read_dir(folder).unwrap().flatten() {
                if entry.path().is_dir() {
                    pending.push(entry.path());
                } else {
                    found.push(entry.path());
                }
            }
        }
        found.sort();
        found
    };
    let before = files_of_b();

    // A catalog client commits to `a` a snapshot made of `b`'s manifest list…
    let b = tables.load("ns.b").await.unwrap();
    let a = tables.load("ns.a").await.unwrap();
    let snapshot = json!({
        "snapshot-id": 424242,
        "sequence-number": a.metadata().last_sequence_number() + 1,
        "timestamp-ms": chrono::Utc::now().timestamp_millis() - 10,
        "manifest-list": b.metadata().current_snapshot().unwrap().manifest_list(),
        "summary": {"operation": "append"},
        "schema-id": 0,
    });
    let commit =
        json!({"requirements": [], "updates": [{"action": "add-snapshot", "snapshot": snapshot}]});
    let path = "/iceberg/v1/namespaces/ns/tables/a";
    let answer = web.api(Method::POST, path, &token, Some(commit)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    // …which `a`'s next write leaves behind, and expiry then drops.
    tokio::time::sleep(Duration::from_millis(20)).await;
    promote("a", 3.0).await;
    let later = chrono::Utc::now().timestamp_millis() + 1000;
    let expiry = tables.expire_snapshots("ns.a", later, 1).await.unwrap();
    assert!(expiry.expired_snapshots.contains(&424242), "{expiry:?}");
    assert_eq!(files_of_b(), before, "expiry of `a` deleted files of `b`");
    let scan = ScanRequest::default();
    assert_eq!(common::rows(&tables.scan("ns.b", &scan).await.unwrap().batches), 20);
    harness.stop().await;
}
