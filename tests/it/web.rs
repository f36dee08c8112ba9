//! Route tests of the web UI and REST API, through the real router (tower `oneshot`), against a
//! real database with an in-process scheduler and worker.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, SET_COOKIE};
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use common::web::Answer;
use common::{Harness, TestDb};
use lakeward::config::Config;
use lakeward::dag::{compile, Dag};
use lakeward::domain::Role;
use lakeward::jobs::Registry;
use lakeward::store::{dags, runs, stats, tasks, users};
use lakeward::store::{DagRecord, SessionRow, Store};
use lakeward::time::now_micros;
use lakeward::users::{create_api_token, create_user, digest, new_secret};
use lakeward::web::{app, AppState};
use serde_json::{json, Value};

fn example_dag() -> Arc<Dag> {
    let source = include_str!("../../dags/example.toml");
    Arc::new(compile("dags/example.toml", source, "example", &Registry::builtin()).unwrap())
}

/// A browser session: its cookie header and CSRF token.
struct Session {
    cookie: String,
    csrf: String,
}

struct Web {
    router: Router,
    store: Store,
}

impl Web {
    async fn new(harness: &Harness) -> Web {
        let dag = example_dag();
        dags::register(harness.store.write(), &DagRecord::from(dag.as_ref()), now_micros())
            .await
            .unwrap();
        harness.versions.insert(dag);
        let state =
            AppState::new(harness.store.clone(), harness.versions.clone(), &Config::default());
        Web { router: app(state), store: harness.store.clone() }
    }

    /// A logged-in session of `username`, created with `role` (sessions belong to users).
    async fn session(&self, username: &str, role: Role) -> Session {
        create_user(&self.store, username, "session-password", role).await.unwrap();
        let secret = new_secret();
        let csrf = new_secret();
        let session = SessionRow {
            username: username.into(),
            role,
            csrf_token: csrf.clone(),
            expires_at: now_micros() + 3_600_000_000,
        };
        users::create_session(self.store.write(), &digest(&secret), &session, now_micros())
            .await
            .unwrap();
        Session { cookie: format!("lakeward_session={secret}"), csrf }
    }

    async fn send(&self, request: Request<Body>) -> Answer {
        common::web::send(&self.router, request).await
    }

    async fn get(&self, path: &str, session: Option<&Session>) -> Answer {
        let mut request = Request::get(path);
        if let Some(s) = session {
            request = request.header(COOKIE, &s.cookie);
        }
        self.send(request.body(Body::empty()).unwrap()).await
    }

    /// Posts a form; the session's CSRF token is added unless `csrf` is false.
    async fn post_form(
        &self,
        path: &str,
        session: &Session,
        fields: &[(&str, &str)],
        csrf: bool,
    ) -> Answer {
        let mut pairs: Vec<(&str, &str)> = fields.to_vec();
        if csrf {
            pairs.push(("csrf_token", &session.csrf));
        }
        let body = serde_urlencoded::to_string(&pairs).unwrap();
        let request = Request::post(path)
            .header(COOKIE, &session.cookie)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap();
        self.send(request).await
    }

    async fn api(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> Answer {
        self.send(common::web::api_request(method, path, token, body)).await
    }
}

/// API calls with one bearer token.
struct Api<'a> {
    web: &'a Web,
    token: &'a str,
}

impl Api<'_> {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        self.web.api(method, path, self.token, body).await
    }
}

async fn admin_token(store: &Store) -> String {
    create_user(store, "robot", "robot-password", Role::Admin).await.unwrap();
    create_api_token(store, "robot", "tests", None).await.unwrap()
}

async fn viewer_token(store: &Store) -> String {
    create_user(store, "reader", "reader-password", Role::Viewer).await.unwrap();
    create_api_token(store, "reader", "tests", None).await.unwrap()
}

async fn for_each_database(test: impl AsyncFn(&TestDb)) {
    for db in common::databases().await {
        eprintln!("--- {}", db.backend);
        test(&db).await;
    }
}

#[tokio::test]
async fn without_login_pages_redirect_and_api_answers_401() {
    let db = common::sqlite();
    let harness = Harness::start(&db).await;
    let web = Web::new(&harness).await;

    let page = web.get("/dags?tag=example", None).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/login?next=%2Fdags%3Ftag%3Dexample");
    for path in ["/api/v1/dags", "/metrics", "/api/v1/openapi.json"] {
        let api = web.get(path, None).await;
        assert_eq!(api.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(api.json()["error"], "login required");
    }
    let forged = web.api(Method::GET, "/api/v1/dags", "lw_not-a-token", None).await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    let expired = Session { cookie: "lakeward_session=unknown".into(), csrf: String::new() };
    assert_eq!(web.get("/dags", Some(&expired)).await.status, StatusCode::SEE_OTHER);

    // /health is open: the database is up, and the harness's scheduler has heartbeated.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let health = web.get("/health", None).await;
    assert_eq!(health.status, StatusCode::OK, "{}", health.body);
    assert_eq!(health.json()["database"]["status"], "healthy");
    assert_eq!(health.json()["scheduler"]["status"], "healthy");
    harness.stop().await;
}

#[tokio::test]
async fn login_sets_an_httponly_session_cookie_and_logout_ends_it() {
    let db = common::sqlite();
    let harness = Harness::start(&db).await;
    let web = Web::new(&harness).await;
    create_user(&web.store, "ana", "ana-password", Role::Admin).await.unwrap();

    let form = web.get("/login?next=/dags/example", None).await;
    assert_eq!(form.status, StatusCode::OK);
    let login_cookie = form.headers.get(SET_COOKIE).unwrap().to_str().unwrap().to_string();
    let token =
        login_cookie.split(';').next().unwrap().trim_start_matches("lakeward_login=").to_string();
    assert!(form.body.contains(&token), "the form carries the CSRF token");

    let post = |password: &str, csrf: &str| {
        let body = serde_urlencoded::to_string([
            ("username", "ana"),
            ("password", password),
            ("csrf_token", csrf),
            ("next", "/dags/example"),
        ])
        .unwrap();
        Request::post("/login")
            .header(COOKIE, format!("lakeward_login={token}"))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap()
    };
    let wrong = web.send(post("not-her-password", &token)).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("Wrong user name or password"));
    let forged = web.send(post("ana-password", "other-token")).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);

    let ok = web.send(post("ana-password", &token)).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    assert_eq!(ok.location(), "/dags/example");
    let cookie = ok
        .headers
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("lakeward_session="))
        .unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"), "{cookie}");
    let session =
        Session { cookie: cookie.split(';').next().unwrap().to_string(), csrf: String::new() };
    let page = web.get("/dags/example", Some(&session)).await;
    assert_eq!(page.status, StatusCode::OK);
    let csrf = page.body.split("name=\"csrf_token\" value=\"").nth(1).unwrap();
    let session = Session { csrf: csrf[..64].to_string(), ..session };

    assert_eq!(web.post_form("/logout", &session, &[], false).await.status, StatusCode::FORBIDDEN);
    let out = web.post_form("/logout", &session, &[], true).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(web.get("/dags", Some(&session)).await.status, StatusCode::SEE_OTHER);
    harness.stop().await;
}

#[tokio::test]
async fn every_page_renders_for_a_run_that_went_through_the_scheduler() {
    for_each_database(async |db| {
        let harness = Harness::start(db).await;
        let web = Web::new(&harness).await;
        let admin = web.session("admin", Role::Admin).await;
        let store = &web.store;
        dags::sync(
            store.write(),
            &[DagRecord::from(example_dag().as_ref())],
            &[("dags/broken.toml".into(), "dags/broken.toml:3:1: unknown field `shedule`".into())],
            now_micros(),
        )
        .await
        .unwrap();

        let trigger = web
            .post_form(
                "/dags/example/trigger",
                &admin,
                &[("param.rows", "42"), ("param.region", "us")],
                true,
            )
            .await;
        assert_eq!(trigger.status, StatusCode::SEE_OTHER, "{}", trigger.body);
        let run_path = trigger.location().to_string();
        assert!(run_path.starts_with("/dags/example/runs/manual__"), "{run_path}");
        let run_id = urlencoding_decode(run_path.rsplit('/').next().unwrap());
        let run = runs::get(store.read(), "example", &run_id).await.unwrap().unwrap();
        let run = harness.wait(&run, Duration::from_secs(30)).await;
        assert_eq!(run.state.as_str(), "success");

        let list = web.get("/dags", Some(&admin)).await;
        assert_eq!(list.status, StatusCode::OK);
        assert!(list.body.contains("href=\"/dags/example\""));
        assert!(list.body.contains("square state-success"), "recent runs as squares");
        assert!(
            list.body.contains("dags/broken.toml:3:1: unknown field `shedule`"),
            "import errors banner"
        );
        assert!(list.body.contains("/dags/example/trigger"), "admins get a Trigger button");
        let filtered = web.get("/dags?name=nomatch", Some(&admin)).await;
        assert!(
            !filtered.body.contains("href=\"/dags/example\"")
                && filtered.body.contains("No DAGs match")
        );
        let by_tag = web.get("/dags?tag=example", Some(&admin)).await;
        assert!(by_tag.body.contains("href=\"/dags/example\""));

        let grid = web.get("/dags/example", Some(&admin)).await;
        assert_eq!(grid.status, StatusCode::OK);
        assert_eq!(
            grid.body.matches("class=\"cell state-success\"").count(),
            5,
            "one cell per task"
        );
        assert!(!grid.body.contains("data-live"), "a finished run stops live refresh");
        let graph = web.get("/dags/example?tab=graph", Some(&admin)).await;
        assert_eq!(graph.body.matches("<g class=\"node state-success\">").count(), 5);
        assert_eq!(graph.body.matches("class=\"edge\"").count(), 5);
        let history = web.get("/dags/example?tab=history", Some(&admin)).await;
        assert!(
            history.body.contains("id=\"duration-chart\"") && history.body.contains(&run.run_id)
        );
        let source = web.get("/dags/example?tab=source", Some(&admin)).await;
        assert!(source.body.contains("[tasks.extract]"));
        let form = web.get("/dags/example/trigger", Some(&admin)).await;
        assert!(form.body.contains("name=\"param.rows\" value=\"1000\""), "defaults filled in");

        let run_page = web.get(&run_path, Some(&admin)).await;
        assert_eq!(run_page.status, StatusCode::OK);
        assert!(run_page.body.contains("&#34;rows&#34;:42"), "{}", run_page.body);
        assert_eq!(run_page.body.matches("/clear\"").count(), 5);
        let task_page = web.get(&format!("{run_path}/tasks/extract"), Some(&admin)).await;
        assert_eq!(task_page.status, StatusCode::OK);
        assert!(task_page.body.contains("extracting 42 rows for"), "the log is shown");
        assert!(task_page.body.contains("try 1"));

        for missing in ["/dags/nope", "/dags/example/runs/nope", &format!("{run_path}/tasks/nope")]
        {
            let page = web.get(missing, Some(&admin)).await;
            assert_eq!(page.status, StatusCode::NOT_FOUND, "{missing}");
            assert!(page.body.contains("<h1>404</h1>"));
        }

        // Clear with downstream from the run page: the tasks run again.
        let clear = web
            .post_form(
                &format!("{run_path}/tasks/load/clear"),
                &admin,
                &[("downstream", "true")],
                true,
            )
            .await;
        assert_eq!(clear.status, StatusCode::SEE_OTHER);
        let run = harness
            .wait(
                &runs::get(store.read(), "example", &run_id).await.unwrap().unwrap(),
                Duration::from_secs(30),
            )
            .await;
        let load = tasks::get(store.read(), run.pk, "load", -1).await.unwrap().unwrap();
        assert_eq!((load.state.as_str(), load.try_number), ("success", 2));
        let task_mark = web
            .post_form(
                &format!("{run_path}/tasks/done/mark"),
                &admin,
                &[("state", "success")],
                true,
            )
            .await;
        assert_eq!(task_mark.status, StatusCode::SEE_OTHER);
        let bogus = web
            .post_form(&format!("{run_path}/tasks/done/mark"), &admin, &[("state", "maybe")], true)
            .await;
        assert_eq!(bogus.status, StatusCode::BAD_REQUEST);
        assert!(bogus.body.contains("not `maybe`"));
        let mark =
            web.post_form(&format!("{run_path}/mark"), &admin, &[("state", "failed")], true).await;
        assert_eq!(mark.status, StatusCode::SEE_OTHER);
        assert_eq!(
            runs::get(store.read(), "example", &run_id).await.unwrap().unwrap().state.as_str(),
            "failed"
        );

        let pause = web.post_form("/dags/example/pause", &admin, &[("paused", "true")], true).await;
        assert_eq!(pause.status, StatusCode::SEE_OTHER);
        assert!(dags::get(store.read(), "example").await.unwrap().unwrap().is_paused);
        harness.stop().await;
    })
    .await;
}

fn urlencoding_decode(text: &str) -> String {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&format!("x={text}")).unwrap();
    pairs[0].1.clone()
}

#[tokio::test]
async fn actions_need_an_admin_and_a_csrf_token() {
    let db = common::sqlite();
    let harness = Harness::start(&db).await;
    let web = Web::new(&harness).await;
    let admin = web.session("admin", Role::Admin).await;
    let viewer = web.session("viewer", Role::Viewer).await;

    let list = web.get("/dags", Some(&viewer)).await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(!list.body.contains("/dags/example/trigger"), "viewers get no Trigger button");
    for (path, fields) in [
        ("/dags/example/pause", vec![("paused", "true")]),
        ("/dags/example/trigger", vec![("param.rows", "1")]),
    ] {
        let denied = web.post_form(path, &viewer, &fields, true).await;
        assert_eq!(denied.status, StatusCode::FORBIDDEN, "{path}");
        assert!(denied.body.contains("admin role"));
        let no_token = web.post_form(path, &admin, &fields, false).await;
        assert_eq!(no_token.status, StatusCode::FORBIDDEN, "{path} without CSRF token");
        assert!(no_token.body.contains("CSRF"));
        let wrong = Session { cookie: admin.cookie.clone(), csrf: new_secret() };
        assert_eq!(web.post_form(path, &wrong, &fields, true).await.status, StatusCode::FORBIDDEN);
    }
    assert!(!dags::get(web.store.read(), "example").await.unwrap().unwrap().is_paused);
    assert_eq!(stats::count_runs(web.store.read(), "example").await.unwrap(), 0);

    // The JSON API with a session cookie needs the token in a header.
    let patch = |csrf: Option<&str>| {
        let mut request = Request::patch("/api/v1/dags/example")
            .header(COOKIE, &admin.cookie)
            .header(CONTENT_TYPE, "application/json");
        if let Some(csrf) = csrf {
            request = request.header("x-csrf-token", csrf);
        }
        request.body(Body::from(json!({"is_paused": true}).to_string())).unwrap()
    };
    assert_eq!(web.send(patch(None)).await.status, StatusCode::FORBIDDEN);
    assert_eq!(web.send(patch(Some(&admin.csrf))).await.status, StatusCode::OK);

    let token = viewer_token(&web.store).await;
    let denied = web.api(Method::POST, "/api/v1/dags/example/runs", &token, Some(json!({}))).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert_eq!(denied.json()["error"], "this action needs the admin role");
    assert_eq!(web.api(Method::GET, "/api/v1/dags", &token, None).await.status, StatusCode::OK);
    harness.stop().await;
}

#[tokio::test]
async fn user_supplied_text_is_escaped_and_bad_params_are_shown_by_their_field() {
    let db = common::sqlite();
    let harness = Harness::start(&db).await;
    let web = Web::new(&harness).await;
    let admin = web.session("admin", Role::Admin).await;

    let bad = web
        .post_form(
            "/dags/example/trigger",
            &admin,
            &[("param.rows", "lots"), ("logical_date", "someday")],
            true,
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("expected integer, got `lots`"), "{}", bad.body);
    assert!(bad.body.contains("`someday` is not a date"));
    assert!(bad.body.contains("value=\"lots\""), "what was typed is kept");

    let script = "<script>alert('x')</script>";
    let ok = web
        .post_form(
            "/dags/example/trigger",
            &admin,
            &[("param.region", script), ("logical_date", "2024-03-01")],
            true,
        )
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    let run_page = web.get(ok.location(), Some(&admin)).await;
    assert_eq!(run_page.status, StatusCode::OK, "{}", run_page.body);
    assert!(!run_page.body.contains("<script>alert"), "{}", run_page.body);
    assert!(
        run_page.body.contains("&#60;script&#62;alert(&#39;x&#39;)&#60;/script&#62;"),
        "{}",
        run_page.body
    );

    let again = web
        .post_form("/dags/example/trigger", &admin, &[("logical_date", "2024-03-01")], true)
        .await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert!(again.body.contains("already has a run at logical date"));
    harness.stop().await;
}

#[tokio::test]
async fn rest_api_covers_dags_runs_tasks_and_logs() {
    for_each_database(async |db| {
        let harness = Harness::start(db).await;
        let web = Web::new(&harness).await;
        let token = admin_token(&web.store).await;
        let api = Api { web: &web, token: &token };

        let dags = api.call(Method::GET, "/api/v1/dags?tag=example", None).await;
        assert_eq!(dags.status, StatusCode::OK);
        assert_eq!(dags.json()["total_entries"], 1);
        assert_eq!(dags.json()["dags"][0]["dag_id"], "example");
        let dag = api.call(Method::GET, "/api/v1/dags/example", None).await.json();
        assert_eq!(dag["params"]["rows"]["default"], 1000);
        assert_eq!(dag["tasks"].as_array().unwrap().len(), 5);
        let missing = api.call(Method::GET, "/api/v1/dags/nope", None).await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        assert_eq!(missing.json()["error"], "no DAG `nope`");

        let paused = api.call(Method::PATCH, "/api/v1/dags/example", Some(json!({"is_paused": true}))).await;
        assert_eq!(paused.json()["is_paused"], true);
        let typo = api.call(Method::PATCH, "/api/v1/dags/example", Some(json!({"paused": true}))).await;
        assert_eq!(typo.status, StatusCode::BAD_REQUEST);
        assert!(typo.json()["error"].as_str().unwrap().contains("unknown field `paused`"));
        api.call(Method::PATCH, "/api/v1/dags/example", Some(json!({"is_paused": false}))).await;

        let bad_conf = api.call(Method::POST, "/api/v1/dags/example/runs", Some(json!({"conf": {"rows": "many"}}))).await;
        assert_eq!(bad_conf.status, StatusCode::BAD_REQUEST);
        assert!(bad_conf.json()["error"].as_str().unwrap().contains("param `rows` must be of type integer"));
        let created = api.call(
            Method::POST,
            "/api/v1/dags/example/runs",
            Some(json!({"conf": {"rows": 7}, "logical_date": "2024-05-01"})),
        )
        .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        let run_id = created.json()["run_id"].as_str().unwrap().to_string();
        assert_eq!(created.json()["logical_date"], "2024-05-01T00:00:00.000000Z");
        let duplicate = api.call(Method::POST, "/api/v1/dags/example/runs", Some(json!({"logical_date": "2024-05-01"}))).await;
        assert_eq!(duplicate.status, StatusCode::CONFLICT);
        let malformed = web
            .send(
                Request::post("/api/v1/dags/example/runs")
                    .header(AUTHORIZATION, format!("Bearer {token}"))
                    .header(CONTENT_TYPE, "application/json")
                    .body(Body::from("{not json"))
                    .unwrap(),
            )
            .await;
        assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
        assert!(malformed.json()["error"].is_string());

        let run = runs::get(web.store.read(), "example", &run_id).await.unwrap().unwrap();
        harness.wait(&run, Duration::from_secs(30)).await;
        let encoded = common::web::encode_segment(&run_id);
        let detail = api.call(Method::GET, &format!("/api/v1/dags/example/runs/{encoded}"), None).await.json();
        assert_eq!(detail["state"], "success");
        let instances = detail["task_instances"].as_array().unwrap();
        assert_eq!(instances.len(), 5);
        assert!(instances.iter().all(|t| t["state"] == "success" && t["duration_seconds"].is_number()));

        let runs = api.call(Method::GET, "/api/v1/dags/example/runs?limit=1", None).await.json();
        assert_eq!(runs["total_entries"], 1);
        assert_eq!(runs["dag_runs"][0]["run_id"], run_id.as_str());
        let bad_query = api.call(Method::GET, "/api/v1/dags/example/runs?limit=ten", None).await;
        assert_eq!(bad_query.status, StatusCode::BAD_REQUEST);

        let logs_path = format!("/api/v1/dags/example/runs/{encoded}/tasks/extract/logs");
        let logs = api.call(Method::GET, &logs_path, None).await.json();
        let lines = logs["lines"].as_array().unwrap();
        assert!(lines.iter().any(|l| l["line"].as_str().unwrap().contains("extracting 7 rows")), "{logs}");
        let after = logs["next_after"].as_i64().unwrap();
        let rest = api.call(Method::GET, &format!("{logs_path}?after={after}"), None).await.json();
        assert!(rest["lines"].as_array().unwrap().is_empty(), "following from next_after gives only new lines");

        let cleared = api.call(
            Method::POST,
            &format!("/api/v1/dags/example/runs/{encoded}/tasks/clean/clear"),
            Some(json!({"downstream": true})),
        )
        .await;
        assert_eq!(cleared.status, StatusCode::OK, "{}", cleared.body);
        assert_eq!(cleared.json()["cleared"], json!(["clean", "load", "done"]));
        let malformed = web
            .send(
                Request::post(format!("/api/v1/dags/example/runs/{encoded}/tasks/clean/clear"))
                    .header(AUTHORIZATION, format!("Bearer {token}"))
                    .header(CONTENT_TYPE, "application/json")
                    .body(Body::from("{\"downstream\": maybe}"))
                    .unwrap(),
            )
            .await;
        assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
        assert!(malformed.json()["error"].is_string(), "{}", malformed.body);
        let run = harness.wait(&run, Duration::from_secs(30)).await;
        assert_eq!(run.state.as_str(), "success");

        let task_path = format!("/api/v1/dags/example/runs/{encoded}/tasks/done");
        let task = api.call(Method::PATCH, &task_path, Some(json!({"state": "failed"}))).await;
        assert_eq!(task.status, StatusCode::OK, "{}", task.body);
        assert_eq!(task.json()["state"], "failed");
        let bogus = api.call(Method::PATCH, &task_path, Some(json!({"state": "done"}))).await;
        assert_eq!(bogus.status, StatusCode::BAD_REQUEST);
        assert_eq!(bogus.json()["error"], "state must be `success` or `failed`, not `done`");
        let run = harness.wait(&run, Duration::from_secs(30)).await;
        assert_eq!(run.state.as_str(), "failed", "a failed leaf fails the run again");

        let marked = api.call(Method::PATCH, &format!("/api/v1/dags/example/runs/{encoded}"), Some(json!({"state": "failed"}))).await;
        assert_eq!(marked.json()["state"], "failed");
        assert_eq!(api.call(Method::GET, "/api/v1/nothing/here", None).await.status, StatusCode::NOT_FOUND);

        let metrics = api.call(Method::GET, "/metrics", None).await;
        assert_eq!(metrics.status, StatusCode::OK);
        assert!(metrics.body.contains("lakeward_dag_runs_finished_total{state=\"failed\"} 1"), "{}", metrics.body);
        // One histogram per DAG by default; per task when the configuration asks for it.
        let ran = 5; // extract, clean, enrich, load, done: each once (the cleared ones' last tries)
        assert!(metrics.body.contains(&format!("lakeward_task_duration_seconds_count{{dag_id=\"example\"}} {ran}")), "{}", metrics.body);
        assert!(metrics.body.contains(&format!("lakeward_task_duration_seconds_bucket{{dag_id=\"example\",le=\"+Inf\"}} {ran}")));
        assert!(!metrics.body.contains("task_id="), "{}", metrics.body);
        let mut config = Config::default();
        config.web.duration_histograms = lakeward::store::DurationsBy::Task;
        let per_task = app(AppState::new(harness.store.clone(), harness.versions.clone(), &config));
        let request = common::web::api_request(Method::GET, "/metrics", &token, None);
        let by_task = common::web::send(&per_task, request).await.body;
        assert!(by_task.contains("lakeward_task_duration_seconds_count{dag_id=\"example\",task_id=\"extract\"} 1"), "{by_task}");
        assert!(by_task.contains("lakeward_task_duration_seconds_bucket{dag_id=\"example\",task_id=\"load\",le=\"+Inf\"} 1"));
        assert!(metrics.body.contains("lakeward_import_errors 0"));
        assert!(metrics.body.contains("# TYPE lakeward_queue_depth gauge"));
        // The process's own, as every Prometheus target reports them, and the build.
        let sample = |name: &str| -> f64 {
            let line = metrics.body.lines().find(|l| l.starts_with(&format!("{name} ")));
            line.and_then(|l| l.split(' ').nth(1)?.parse().ok()).unwrap_or_else(|| panic!("no {name}"))
        };
        assert!(sample("process_resident_memory_bytes") > 1e6);
        assert!(sample("process_cpu_seconds_total") > 0.0);
        assert!(sample("process_open_fds") >= 3.0);
        assert!(sample("process_start_time_seconds") > 1.7e9);
        assert!(metrics.body.contains("# TYPE process_cpu_seconds_total counter"));
        assert!(metrics.body.contains(&format!("lakeward_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"))));
        harness.stop().await;
    })
    .await;
}

#[tokio::test]
async fn openapi_describes_every_api_route() {
    let db = common::sqlite();
    let harness = Harness::start(&db).await;
    let web = Web::new(&harness).await;
    let token = admin_token(&web.store).await;
    let spec = web.api(Method::GET, "/api/v1/openapi.json", &token, None).await.json();
    assert_eq!(spec["openapi"], "3.0.3");
    let paths = spec["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/health", vec!["get"]),
        ("/dags", vec!["get"]),
        ("/dags/{dag}", vec!["get", "patch"]),
        ("/dags/{dag}/runs", vec!["get", "post"]),
        ("/dags/{dag}/runs/{run}", vec!["get", "patch"]),
        ("/dags/{dag}/runs/{run}/tasks/{task}/clear", vec!["post"]),
        ("/dags/{dag}/runs/{run}/tasks/{task}/logs", vec!["get"]),
        ("/sql", vec!["post"]),
    ] {
        for method in methods {
            assert!(paths[path].get(method).is_some(), "{method} {path} is not described");
        }
    }
    harness.stop().await;
}

/// A dataset written by one DAG triggers another that watches it; the pages show what each
/// reads and writes, how they feed one another and what triggered the run on data.
#[tokio::test]
async fn pages_show_the_data_flow_between_dags_and_what_triggered_a_run() {
    let db = common::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("dags");
    std::fs::create_dir_all(&folder).unwrap();
    let producer = r#"
        [tasks.generate]
        kind = "generate"
        output = "raw"
        orders = 50
        customers = 10
        products = 5
        dirty_fraction = 0.0
        seed = 1
        end_date = "{{ ds }}"
    "#;
    std::fs::write(folder.join("make_orders.toml"), producer).unwrap();
    let consumer = r#"
        schedule = { on = ["raw/orders"] }
        [tasks.ingest]
        kind = "ingest"
        [tasks.ingest.tables.orders]
        input = "raw/orders"
        output = "bronze/orders"
        schema = { order_id = "integer", customer_id = "integer", product_id = "integer", order_date = "date", quantity = "integer", total_amount = "float", status = "string", payment_method = "string" }
    "#;
    std::fs::write(folder.join("load_orders.toml"), consumer).unwrap();
    let options = common::HarnessOptions { dags_folder: Some(folder), ..Default::default() };
    let harness = Harness::start_with(&db, options).await;
    let web = Web::new(&harness).await;
    let admin = web.session("admin", Role::Admin).await;
    let store = &web.store;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let watched: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM asset_watches")
            .fetch_one(store.read())
            .await
            .unwrap();
        if watched > 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the DAG folder was never loaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let trigger = web.post_form("/dags/make_orders/trigger", &admin, &[], true).await;
    assert_eq!(trigger.status, StatusCode::SEE_OTHER, "{}", trigger.body);
    let run_id = urlencoding_decode(trigger.location().rsplit('/').next().unwrap());
    let run = runs::get(store.read(), "make_orders", &run_id).await.unwrap().unwrap();
    assert_eq!(harness.wait(&run, Duration::from_secs(30)).await.state.as_str(), "success");
    let loaded = loop {
        if let Some(run) = runs::list(store.read(), "load_orders", 1, 0).await.unwrap().pop() {
            break run;
        }
        assert!(tokio::time::Instant::now() < deadline, "the dataset's change made no run");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(loaded.run_type.as_str(), "asset_triggered");
    assert_eq!(harness.wait(&loaded, Duration::from_secs(30)).await.state.as_str(), "success");

    let page = web.get("/dags/load_orders", Some(&admin)).await;
    assert_eq!(page.status, StatusCode::OK);
    let flow = page.body.split("id=\"dataflow\"").nth(1).expect("a data-flow table").to_string();
    assert!(flow.contains("raw/orders</code> <span class=\"badge\">triggers runs"), "{flow}");
    assert!(flow.contains("bronze/orders"), "{flow}");
    assert!(
        flow.contains("Fed by</th><td><a href=\"/dags/make_orders\">make_orders</a>"),
        "{flow}"
    );
    let page = web.get("/dags/make_orders", Some(&admin)).await;
    assert!(page.body.contains("Feeds</th><td><a href=\"/dags/load_orders\">load_orders</a>"));

    let run_page =
        web.get(&format!("/dags/load_orders/runs/{}", loaded.run_id), Some(&admin)).await;
    assert_eq!(run_page.status, StatusCode::OK);
    let version = sqlx::query_scalar::<_, String>(
        "SELECT version FROM task_lineage WHERE direction = 'wrote' AND name = 'raw/orders'",
    )
    .fetch_one(store.read())
    .await
    .unwrap();
    assert!(
        run_page.body.contains(&format!("Triggered by</th><td colspan=\"3\"><code>raw/orders</code> <span class=\"small\">{version}</span>")),
        "{version}: {}",
        run_page.body
    );
    harness.stop().await;
}
