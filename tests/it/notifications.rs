//! Notifications end to end: a DAG's `on_retry`, `on_failure` and `on_success` queue messages
//! in the database as tasks and runs end; two deliverers (as with two schedulers) send each
//! exactly once to a real local HTTP receiver (a JSON webhook that is down at first, and a
//! Slack-style webhook), and to a real SMTP server (aiosmtpd, STARTTLS and AUTH). Secrets are
//! read from files and appear in no message, error or page.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::Json;
use lakeward::notifications::{
    ChannelSpec, Delivery, Event, Message, NotificationSettings, Secret, Security,
};
use lakeward::runtime::shutdown_channel;
use lakeward::store::notifications::{self, NotificationRow};
use lakeward::store::Store;
use lakeward::time::now_micros;
use serde_json::Value;

use crate::common::process::{free_port, ChildProcess};
use crate::common::{self, Harness};

/// What the receiver got: path, `Authorization` header, body.
type Received = Arc<Mutex<Vec<(String, String, Value)>>>;

/// A local HTTP receiver; its JSON webhook answers 503 to the first request.
async fn start_receiver() -> (String, Received) {
    async fn receive(
        State((received, refused)): State<(Received, Arc<Mutex<bool>>)>,
        uri: Uri,
        headers: HeaderMap,
        Json(body): Json<Value>,
    ) -> StatusCode {
        let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
        received.lock().unwrap().push((uri.path().to_string(), auth.to_string(), body));
        let mut refused = refused.lock().unwrap();
        if uri.path() == "/hook" && !*refused {
            *refused = true;
            return StatusCode::SERVICE_UNAVAILABLE;
        }
        StatusCode::OK
    }
    let received: Received = Arc::default();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .route("/slack/T01/B02/{secret}", axum::routing::post(receive))
        .with_state((received.clone(), Arc::new(Mutex::new(false))));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

fn secret_file(dir: &std::path::Path, name: &str, value: &str) -> Secret {
    let path = dir.join(name);
    std::fs::write(&path, format!("{value}\n")).unwrap();
    Secret { env: None, file: Some(path) }
}

fn fast_settings() -> NotificationSettings {
    NotificationSettings {
        base_url: "http://lakeward.example.com".into(),
        retry_delay: Duration::from_millis(200),
        max_attempts: 5,
        timeout: Duration::from_secs(5),
    }
}

/// Waits until every notification of the run is settled (sent or given up), returns them.
async fn settled(store: &Store, dag: &str, run: &str, expected: usize) -> Vec<NotificationRow> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let rows = notifications::of_run(store.read(), dag, run).await.unwrap();
        let done = rows.iter().all(|n| n.state == "sent" || n.state == "failed");
        if rows.len() >= expected && done {
            return rows;
        }
        assert!(tokio::time::Instant::now() < deadline, "not settled: {rows:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn task_and_run_events_reach_webhooks_once_each_despite_an_outage() {
    for db in common::databases().await {
        let (url, received) = start_receiver().await;
        let secrets = tempfile::tempdir().unwrap();
        let token = "tok-7f3a91";
        let slack_secret = "XyZsecret42";
        let channels = BTreeMap::from([
            (
                "ops".to_string(),
                ChannelSpec::Webhook {
                    url: format!("{url}/hook"),
                    token: Some(secret_file(secrets.path(), "token", token)),
                },
            ),
            (
                "team".to_string(),
                ChannelSpec::Slack {
                    url: secret_file(
                        secrets.path(),
                        "slack",
                        &format!("{url}/slack/T01/B02/{slack_secret}"),
                    ),
                },
            ),
        ]);
        let h = Harness::start(&db).await;
        // Two deliverers on one database, as beside two schedulers.
        let (stop, shutdown) = shutdown_channel();
        for _ in 0..2 {
            let delivery = Delivery::new(h.store.clone(), channels.clone(), fast_settings());
            tokio::spawn(delivery.run(shutdown.clone()));
        }
        let dag = common::dag(
            r#"
            on_failure = "ops"
            [defaults]
            on_failure = ["ops", "team"]
            [tasks.flaky]
            kind = "shell"
            command = "echo 'disk full' >&2; exit 3"
            retries = 1
            retry_delay = "0s"
            on_retry = "ops"
            [tasks.fine]
            kind = "shell"
            command = "true"
            on_success = "team"
            "#,
        );
        let run = h.trigger(&dag, common::manual(serde_json::json!({}))).await;
        let finished = h.wait(&run, Duration::from_secs(30)).await;
        assert_eq!(finished.state.as_str(), "failed", "{}", db.backend);

        let rows = settled(&h.store, &run.dag_id, &run.run_id, 5).await;
        let mut seen: Vec<(String, String, String, String)> = rows
            .iter()
            .map(|n| {
                let task = n.task_id.clone().unwrap_or_default();
                (n.event.clone(), task, n.channel.clone(), n.state.clone())
            })
            .collect();
        seen.sort();
        let expected = [
            ("run_failed", "", "ops", "sent"),
            ("task_failed", "flaky", "ops", "sent"),
            ("task_failed", "flaky", "team", "sent"),
            ("task_retry", "flaky", "ops", "sent"),
            ("task_succeeded", "fine", "team", "sent"),
        ]
        .map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), d.to_string()));
        assert_eq!(seen, expected, "{}", db.backend);
        // The webhook refused the first message: it was tried again, and that is all.
        let attempts: i64 = rows.iter().map(|n| n.attempts).sum();
        assert_eq!(attempts, 6, "{rows:#?}");

        let received = received.lock().unwrap().clone();
        let hooks: Vec<&(String, String, Value)> =
            received.iter().filter(|(path, _, _)| path == "/hook").collect();
        assert_eq!(hooks.len(), 4, "three messages, one of them twice: {hooks:#?}");
        assert!(hooks.iter().all(|(_, auth, _)| auth == &format!("Bearer {token}")));
        let mut events: Vec<&str> =
            hooks[1..].iter().map(|(_, _, body)| body["event"].as_str().unwrap()).collect();
        events.sort();
        assert_eq!(events, ["run_failed", "task_failed", "task_retry"]);
        let retry = hooks.iter().map(|(_, _, b)| b).find(|b| b["event"] == "task_retry").unwrap();
        assert_eq!(
            (retry["task_id"].as_str(), retry["try_number"].as_i64()),
            (Some("flaky"), Some(1))
        );
        assert_eq!(retry["max_tries"], 2);
        assert!(retry["error"].as_str().unwrap().contains("exited with code 3"), "{retry}");
        let link = retry["url"].as_str().unwrap();
        let run_path = format!("/dags/test_dag/runs/{}", common::web::encode_segment(&run.run_id));
        assert_eq!(link, format!("http://lakeward.example.com{run_path}/tasks/flaky?try=1"));
        let run_failed =
            hooks.iter().map(|(_, _, b)| b).find(|b| b["event"] == "run_failed").unwrap();
        assert_eq!(run_failed["failed_tasks"], serde_json::json!(["flaky"]));

        let slack: Vec<&Value> = received
            .iter()
            .filter(|(path, _, _)| path.starts_with("/slack/"))
            .map(|(_, _, body)| body)
            .collect();
        assert_eq!(slack.len(), 2);
        assert!(slack.iter().all(|b| b["text"].as_str().unwrap().contains(&run_path)));

        // No secret in what is stored or shown.
        let stored = format!("{rows:?}");
        assert!(!stored.contains(token) && !stored.contains(slack_secret));
        stop.trigger();
        h.stop().await;
    }
}

/// A real SMTP server (aiosmtpd from the test venv) that requires STARTTLS and AUTH, and
/// writes each message it accepts to a folder.
const SMTP_SERVER: &str = r#"
import json, os, ssl, sys, time
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

port, cert, key, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(cert, key)

class Save:
    async def handle_DATA(self, server, session, envelope):
        name = os.path.join(out, "%d.json" % time.time_ns())
        with open(name, "w") as f:
            json.dump({"from": envelope.mail_from, "to": envelope.rcpt_tos,
                       "data": envelope.content.decode("utf-8", "replace"),
                       "tls": session.ssl is not None}, f)
        return "250 OK"

def check(server, session, envelope, mechanism, auth_data):
    ok = auth_data.login == b"lakeward" and auth_data.password == b"mail-pass-93"
    return AuthResult(success=ok, handled=False)

controller = Controller(Save(), hostname="127.0.0.1", port=port, tls_context=context,
                        require_starttls=True, authenticator=check, auth_require_tls=True)
controller.start()
print("ready", flush=True)
while True:
    time.sleep(3600)
"#;

#[tokio::test]
async fn email_goes_through_starttls_and_auth_to_a_real_smtp_server() {
    let Some(python) = common::python_with_pyiceberg() else { return };
    let dir = tempfile::tempdir().unwrap();
    // A private CA, and the server's certificate signed by it (the channel trusts the CA).
    let file = |name: &str| dir.path().join(name);
    let (ca, cert, key) = (file("ca.pem"), file("cert.pem"), file("key.pem"));
    let openssl = |args: &[&str]| {
        let made = std::process::Command::new("openssl")
            .current_dir(dir.path())
            .args(args)
            .output()
            .unwrap();
        assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    };
    openssl(
        &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
            .into_iter()
            .chain(["-subj", "/CN=lakeward test CA", "-keyout", "ca.key", "-out", "ca.pem"])
            .collect::<Vec<_>>(),
    );
    openssl(
        &["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1"]
            .into_iter()
            .chain(["-keyout", "key.pem", "-out", "server.csr"])
            .collect::<Vec<_>>(),
    );
    std::fs::write(file("server.ext"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
        .unwrap();
    openssl(
        &["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key"]
            .into_iter()
            .chain(["-CAcreateserial", "-days", "1", "-extfile", "server.ext", "-out", "cert.pem"])
            .collect::<Vec<_>>(),
    );
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let script = dir.path().join("smtp_server.py");
    std::fs::write(&script, SMTP_SERVER).unwrap();
    let port = free_port();
    let _server = ChildProcess::spawn(
        std::process::Command::new(&python)
            .arg(&script)
            .arg(port.to_string())
            .arg(&cert)
            .arg(&key)
            .arg(&inbox),
    );
    let up = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(tokio::time::Instant::now() < up, "the SMTP server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let email = |password: &str| {
        ChannelSpec::Email(lakeward::notifications::channel::EmailSpec {
            host: "127.0.0.1".into(),
            port,
            security: Security::Starttls,
            username: Some("lakeward".into()),
            password: Some(secret_file(dir.path(), &format!("pw-{password}"), password)),
            from: "lakeward@example.com".into(),
            to: vec!["data@example.com".into(), "oncall@example.com".into()],
            ca_file: Some(ca.clone()),
        })
    };
    let channels = BTreeMap::from([
        ("mail".to_string(), email("mail-pass-93")),
        ("wrong".to_string(), email("not-the-password")),
    ]);
    let db = common::sqlite();
    let store = Store::open(&db.url).await.unwrap();
    let at = chrono::Utc::now();
    let message = Message::run(Event::TaskFailed, "ecommerce", "manual__1", Vec::new(), at)
        .about_try("quality", 3, 3, Some("check `amount_positive` failed: 12 rows"));
    let mut tx = store.begin().await.unwrap();
    let rows = message.queue_for(&["mail".into(), "wrong".into()], 0);
    notifications::enqueue(&mut tx, &rows, now_micros()).await.unwrap();
    tx.commit().await.unwrap();

    let mut delivery = Delivery::new(store.clone(), channels, fast_settings());
    assert_eq!(delivery.pass(now_micros()).await.unwrap(), 2);
    let rows = notifications::of_run(store.read(), "ecommerce", "manual__1").await.unwrap();
    let state_of = |channel: &str| rows.iter().find(|r| r.channel == channel).unwrap();
    assert_eq!(state_of("mail").state, "sent", "{rows:#?}");
    // A refused login is not retried, and its error names the step, not the password.
    let wrong = state_of("wrong");
    assert_eq!((wrong.state.as_str(), wrong.attempts), ("failed", 1), "{rows:#?}");
    let error = wrong.last_error.clone().unwrap();
    assert!(error.starts_with("AUTH: the mail server answered `535"), "{error}");
    assert!(!error.contains("not-the-password"));

    let mails: Vec<Value> = std::fs::read_dir(&inbox)
        .unwrap()
        .map(|e| serde_json::from_str(&std::fs::read_to_string(e.unwrap().path()).unwrap()))
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(mails.len(), 1, "{mails:#?}");
    let mail = &mails[0];
    assert_eq!(mail["tls"], true);
    assert_eq!(mail["to"], serde_json::json!(["data@example.com", "oncall@example.com"]));
    let data = mail["data"].as_str().unwrap();
    assert!(data.contains("Subject: lakeward: task quality of DAG ecommerce failed"), "{data}");
    let (_, body) = data.split_once("\r\n\r\n").or_else(|| data.split_once("\n\n")).unwrap();
    use base64::Engine as _;
    let body: String = body.split_whitespace().collect();
    let body = base64::engine::general_purpose::STANDARD.decode(body).unwrap();
    let body = String::from_utf8(body).unwrap();
    assert!(body.contains("check `amount_positive` failed: 12 rows"), "{body}");
    assert!(body.contains("Try: 3 of 3"), "{body}");
    assert!(
        body.contains(
            "http://lakeward.example.com/dags/ecommerce/runs/manual__1/tasks/quality?try=3"
        ),
        "{body}"
    );
    store.close().await;
}
