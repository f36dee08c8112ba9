//! Crash recovery with real processes on the real Postgres: a worker killed with SIGKILL while
//! its task runs, two schedulers working the same database at once, database outages; and a
//! claim whose answer a worker never received.

use crate::common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::process::ChildProcess;
use lakeward::domain::{RunState, TaskState};
use lakeward::store::Store;
use lakeward::store::{dags, logs, processes, runs, stats, tasks};

const BIN: &str = env!("CARGO_BIN_EXE_lakeward");

/// A lakeward process on `url` with a short heartbeat timeout (see `config`).
fn spawn(home: &Path, url: &str, args: &[&str]) -> ChildProcess {
    ChildProcess::spawn(
        Command::new(BIN)
            .args(args)
            .env("LAKEWARD_HOME", home)
            .env("LAKEWARD_CONFIG", home.join("lakeward.toml"))
            .env("LAKEWARD_DATABASE_URL", url)
            .env("LAKEWARD_DAGS_FOLDER", home.join("dags"))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
}

/// A home with one DAG file and a config whose heartbeats are fast.
fn home_with(dag_id: &str, dag: &str) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join("dags")).unwrap();
    std::fs::write(home.path().join("dags").join(format!("{dag_id}.toml")), dag).unwrap();
    std::fs::write(
        home.path().join("lakeward.toml"),
        "[scheduler]\npoll_interval = \"200ms\"\ndag_refresh_interval = \"500ms\"\n\
         heartbeat_timeout = \"3s\"\n[worker]\nheartbeat_interval = \"500ms\"\npoll_interval = \"200ms\"\n",
    )
    .unwrap();
    home
}

async fn eventually<F: AsyncFn() -> bool>(what: &str, limit: Duration, check: F) {
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_task_is_replaced_by_the_task_s_second_try() {
    let Some(db) = common::postgres().await else { return };
    let home = home_with(
        "crash",
        r#"
        [tasks.slow]
        kind = "shell"
        retries = 1
        retry_delay = "0s"
        command = "if [ $LAKEWARD_TRY_NUMBER = 1 ]; then sleep 30; fi; echo finished on try $LAKEWARD_TRY_NUMBER"
        "#,
    );
    let store = Store::open(&db.url).await.unwrap();
    let _scheduler = spawn(home.path(), &db.url, &["scheduler"]);
    let mut doomed = spawn(home.path(), &db.url, &["worker"]);
    until_loaded(&store, "crash").await;
    trigger(home.path(), &db.url, "crash");
    let run =
        runs::get(store.read(), "crash", "manual__2024-05-01T00:00:00Z").await.unwrap().unwrap();
    eventually("the first try to run", Duration::from_secs(30), async || {
        let ti = tasks::get(store.read(), run.pk, "slow", -1).await.unwrap().unwrap();
        ti.state == TaskState::Running
    })
    .await;
    let killed_at = Instant::now();
    doomed.kill_now(); // SIGKILL: no chance to clean up
    let _replacement = spawn(home.path(), &db.url, &["worker"]);

    eventually("the run to succeed", Duration::from_secs(60), async || {
        let run = runs::by_pk(store.read(), run.pk).await.unwrap().unwrap();
        run.state == RunState::Success
    })
    .await;
    assert!(killed_at.elapsed() >= Duration::from_secs(3), "not before the heartbeat timeout");
    let ti = tasks::get(store.read(), run.pk, "slow", -1).await.unwrap().unwrap();
    assert_eq!((ti.state, ti.try_number), (TaskState::Success, 2));
    let tries = tasks::tries(store.read(), ti.id).await.unwrap();
    assert_eq!(tries.len(), 2);
    assert_eq!(tries[0].state, "up_for_retry");
    assert!(tries[0].error.as_deref().unwrap().contains("stopped heartbeating"), "{tries:?}");
    assert_eq!(tries[1].state, "success");
    assert_ne!(tries[0].worker_id, tries[1].worker_id, "the second try ran on the new worker");
    let log = logs::read(store.read(), ti.id, Some(2), 0, 100).await.unwrap();
    assert!(log.iter().any(|l| l.line == "finished on try 2"), "{log:?}");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_never_create_or_queue_anything_twice() {
    let Some(db) = common::postgres().await else { return };
    let start = (chrono::Utc::now() - chrono::Duration::hours(30)).format("%Y-%m-%dT%H:00:00Z");
    let home = home_with(
        "hourly",
        &format!(
            r#"
            schedule = "@hourly"
            start_date = "{start}"
            catchup = true
            max_active_runs = 64
            [tasks.a]
            kind = "noop"
            [tasks.b]
            kind = "shell"
            command = "echo {{{{ ds }}}}"
            depends_on = ["a"]
            "#
        ),
    );
    let store = Store::open(&db.url).await.unwrap();
    let _schedulers =
        [spawn(home.path(), &db.url, &["scheduler"]), spawn(home.path(), &db.url, &["scheduler"])];
    let _worker = spawn(home.path(), &db.url, &["worker", "--slots", "8"]);
    // 30 hourly intervals have ended since the start date (29 or 30 by the clock's minute).
    eventually("every catch-up run to finish", Duration::from_secs(120), async || {
        let runs = runs::list(store.read(), "hourly", 100, 0).await.unwrap();
        runs.len() >= 29 && runs.iter().all(|r| r.state == RunState::Success)
    })
    .await;
    let runs = runs::list(store.read(), "hourly", 100, 0).await.unwrap();
    let mut dates: Vec<i64> = runs.iter().map(|r| r.logical_date).collect();
    dates.dedup();
    assert_eq!(dates.len(), runs.len(), "one run per interval");
    let pks: Vec<i64> = runs.iter().map(|r| r.pk).collect();
    let tis = tasks::of_runs(store.read(), &pks).await.unwrap();
    assert_eq!(tis.len(), runs.len() * 2);
    for ti in &tis {
        assert_eq!(ti.try_number, 1, "{} of run {} ran more than once", ti.task_id, ti.run_pk);
        assert_eq!(tasks::tries(store.read(), ti.id).await.unwrap().len(), 1);
    }
    let schedulers = stats::scheduler_loop_times(store.read(), 0).await.unwrap();
    assert_eq!(schedulers.len(), 2, "both schedulers were alive and working");
    store.close().await;
}

/// Waits until a scheduler has loaded the DAG.
async fn until_loaded(store: &Store, dag_id: &str) {
    eventually("the DAG to be loaded", Duration::from_secs(30), async || {
        dags::get(store.read(), dag_id).await.unwrap().is_some()
    })
    .await;
}

/// Lines in `path` (0 if it does not exist yet).
fn lines_in(path: &Path) -> usize {
    std::fs::read_to_string(path).map(|text| text.lines().count()).unwrap_or(0)
}

/// Whether something keeps appending to `path`.
fn still_growing(path: &Path) -> bool {
    let before = lines_in(path);
    std::thread::sleep(Duration::from_millis(800));
    lines_in(path) > before
}

/// Runs `lakeward dags trigger <dag> --date 2024-05-01` in `home` against `url`.
fn trigger(home: &Path, url: &str, dag_id: &str) {
    let out = Command::new(BIN)
        .args(["dags", "trigger", dag_id, "--date", "2024-05-01"])
        .env("LAKEWARD_HOME", home)
        .env("LAKEWARD_DATABASE_URL", url)
        .env("LAKEWARD_DAGS_FOLDER", home.join("dags"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A worker killed with SIGKILL runs no cleanup, yet its task's command, and what the command
/// started in the background, die with it: only the retry runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_s_commands_die_with_it() {
    let Some(db) = common::postgres().await else { return };
    let ticks = tempfile::tempdir().unwrap();
    let home = home_with(
        "orphans",
        &format!(
            r#"
            [tasks.busy]
            kind = "shell"
            retries = 1
            retry_delay = "0s"
            command = """
            if [ $LAKEWARD_TRY_NUMBER = 1 ]; then
              (while true; do echo tick >> {dir}/background; sleep 0.1; done) &
              while true; do echo tick >> {dir}/foreground; sleep 0.1; done
            fi
            echo retried
            """
            "#,
            dir = ticks.path().display()
        ),
    );
    let store = Store::open(&db.url).await.unwrap();
    let _scheduler = spawn(home.path(), &db.url, &["scheduler"]);
    let mut doomed = spawn(home.path(), &db.url, &["worker"]);
    until_loaded(&store, "orphans").await;
    trigger(home.path(), &db.url, "orphans");
    let (foreground, background) =
        (ticks.path().join("foreground"), ticks.path().join("background"));
    eventually("the first try's command to run", Duration::from_secs(30), async || {
        lines_in(&foreground) > 2 && lines_in(&background) > 2
    })
    .await;
    // Only the worker itself: its own kill handler cannot run, so the supervisor must act.
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(doomed.id() as libc::pid_t, libc::SIGKILL) };
    let _ = doomed.wait();
    std::thread::sleep(Duration::from_millis(300));
    assert!(!still_growing(&foreground), "the command outlived its worker");
    assert!(!still_growing(&background), "a background process outlived its worker");

    let _replacement = spawn(home.path(), &db.url, &["worker"]);
    let run =
        runs::get(store.read(), "orphans", "manual__2024-05-01T00:00:00Z").await.unwrap().unwrap();
    eventually("the retry to succeed", Duration::from_secs(60), async || {
        runs::by_pk(store.read(), run.pk).await.unwrap().unwrap().state == RunState::Success
    })
    .await;
    let ti = tasks::get(store.read(), run.pk, "busy", -1).await.unwrap().unwrap();
    assert_eq!(ti.try_number, 2);
    assert!(!still_growing(&foreground) && !still_growing(&background));
    store.close().await;
}

/// A worker whose launcher dies (see `jobs::launcher`) carries on: the command the launcher
/// started runs to its end, and the next command starts its supervisor as a program.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_launcher_died_still_runs_its_commands() {
    let Some(db) = common::postgres().await else { return };
    let marks = tempfile::tempdir().unwrap();
    let home = home_with(
        "relaunch",
        &format!(
            r#"
            [tasks.first]
            kind = "shell"
            command = "touch {dir}/started; while [ ! -e {dir}/go ]; do sleep 0.05; done"
            [tasks.next]
            kind = "shell"
            command = "echo next > {dir}/next"
            depends_on = ["first"]
            "#,
            dir = marks.path().display()
        ),
    );
    let store = Store::open(&db.url).await.unwrap();
    let _scheduler = spawn(home.path(), &db.url, &["scheduler"]);
    let worker = spawn(home.path(), &db.url, &["worker"]);
    until_loaded(&store, "relaunch").await;
    trigger(home.path(), &db.url, "relaunch");
    eventually("the first command to start", Duration::from_secs(30), async || {
        marks.path().join("started").exists()
    })
    .await;
    // The worker's children: its launcher, and the supervisor of the running command.
    let children = |name: &str| -> Vec<i32> {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
            .filter(|pid: &i32| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                let comm = stat.split(['(', ')']).nth(1).unwrap_or_default();
                let parent = stat.rsplit(')').next().unwrap_or_default().split_whitespace().nth(1);
                comm == name && parent == Some(&worker.id().to_string())
            })
            .collect()
    };
    assert_eq!(children("lakeward-superv").len(), 1, "the first command's supervisor");
    let launchers = children("lakeward-launch");
    let [launcher] = launchers[..] else { panic!("one launcher expected: {launchers:?}") };
    // SAFETY: kill(2) on the launcher process found above.
    unsafe { libc::kill(launcher, libc::SIGKILL) };
    std::fs::write(marks.path().join("go"), "").unwrap();

    let run =
        runs::get(store.read(), "relaunch", "manual__2024-05-01T00:00:00Z").await.unwrap().unwrap();
    eventually("the run to succeed", Duration::from_secs(30), async || {
        runs::by_pk(store.read(), run.pk).await.unwrap().unwrap().state == RunState::Success
    })
    .await;
    assert_eq!(std::fs::read_to_string(marks.path().join("next")).unwrap(), "next\n");
    let next = tasks::get(store.read(), run.pk, "next", -1).await.unwrap().unwrap();
    assert_eq!(next.try_number, 1, "started on its first try, without the launcher");
    store.close().await;
}

/// A command whose environment is larger than one message to the launcher (about 200 KB)
/// still runs: that command starts its supervisor as a program.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_too_large_for_the_launcher_still_runs() {
    let Some(db) = common::postgres().await else { return };
    let out = tempfile::tempdir().unwrap();
    let big = "x".repeat(120_000);
    let home = home_with(
        "large",
        &format!(
            r#"
            [tasks.small]
            kind = "shell"
            command = "echo small > {dir}/small"
            [tasks.large]
            kind = "shell"
            command = "printf %s \"$FIRST$SECOND\" | wc -c > {dir}/large"
            env = {{ FIRST = "{big}", SECOND = "{big}" }}
            depends_on = ["small"]
            "#,
            dir = out.path().display()
        ),
    );
    let store = Store::open(&db.url).await.unwrap();
    let _scheduler = spawn(home.path(), &db.url, &["scheduler"]);
    let _worker = spawn(home.path(), &db.url, &["worker"]);
    until_loaded(&store, "large").await;
    trigger(home.path(), &db.url, "large");
    let run =
        runs::get(store.read(), "large", "manual__2024-05-01T00:00:00Z").await.unwrap().unwrap();
    eventually("the run to end", Duration::from_secs(30), async || {
        runs::by_pk(store.read(), run.pk).await.unwrap().unwrap().state.is_finished()
    })
    .await;
    let large = std::fs::read_to_string(out.path().join("large")).unwrap_or_default();
    assert_eq!(large.trim(), "240000");
    assert_eq!(std::fs::read_to_string(out.path().join("small")).unwrap(), "small\n");
    store.close().await;
}

/// The database goes away for twice the heartbeat timeout while a task runs, and comes back
/// to the scheduler a little before the worker. Nothing may be failed or run twice for it: the
/// worker's heartbeats could not arrive, so their silence does not count. Both processes say
/// when the database went away and when it came back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_longer_than_the_heartbeat_timeout_reruns_nothing() {
    let Some(db) = common::postgres().await else { return };
    let server = common::proxy::server_of(&db.url);
    let (to_scheduler, to_worker) =
        (common::proxy::Proxy::start(&server).await, common::proxy::Proxy::start(&server).await);
    let home = home_with(
        "outage",
        r#"
        [tasks.long]
        kind = "shell"
        retries = 3
        retry_delay = "0s"
        command = "sleep 12; echo done on try $LAKEWARD_TRY_NUMBER"
        "#,
    );
    let store = Store::open(&db.url).await.unwrap();
    let logs = tempfile::tempdir().unwrap();
    let logged = |name: &str, proxy: &common::proxy::Proxy| {
        let file = std::fs::File::create(logs.path().join(name)).unwrap();
        let mut command = Command::new(BIN);
        command
            .arg(name)
            .env("LAKEWARD_HOME", home.path())
            .env("LAKEWARD_CONFIG", home.path().join("lakeward.toml"))
            .env("LAKEWARD_DATABASE_URL", proxy.url_through(&db.url))
            .env("LAKEWARD_DAGS_FOLDER", home.path().join("dags"))
            .stdout(Stdio::null())
            .stderr(file);
        ChildProcess::spawn(&mut command)
    };
    let _scheduler = logged("scheduler", &to_scheduler);
    let _worker = logged("worker", &to_worker);
    until_loaded(&store, "outage").await;
    trigger(home.path(), &db.url, "outage");
    let run =
        runs::get(store.read(), "outage", "manual__2024-05-01T00:00:00Z").await.unwrap().unwrap();
    eventually("the task to run", Duration::from_secs(30), async || {
        let ti = tasks::get(store.read(), run.pk, "long", -1).await.unwrap().unwrap();
        ti.state == TaskState::Running
    })
    .await;
    to_scheduler.cut();
    to_worker.cut();
    tokio::time::sleep(Duration::from_secs(6)).await; // the heartbeat timeout is 3 s
    to_scheduler.restore();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    to_worker.restore();
    let deadline = Instant::now() + Duration::from_secs(60);
    while runs::by_pk(store.read(), run.pk).await.unwrap().unwrap().state != RunState::Success {
        if Instant::now() > deadline {
            let ti = tasks::get(store.read(), run.pk, "long", -1).await.unwrap().unwrap();
            let log = |name: &str| std::fs::read_to_string(logs.path().join(name)).unwrap();
            panic!(
                "the run did not succeed within 60 s of the outage: {ti:?}\n\
                 scheduler:\n{}\nworker:\n{}",
                log("scheduler"),
                log("worker")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ti = tasks::get(store.read(), run.pk, "long", -1).await.unwrap().unwrap();
    let tries = tasks::tries(store.read(), ti.id).await.unwrap();
    assert_eq!((ti.try_number, tries.len()), (1, 1), "the outage made a retry: {tries:?}");
    assert!(ti.ended_at >= ti.heartbeat_at && ti.heartbeat_at >= ti.started_at, "{ti:?}");
    for name in ["scheduler", "worker"] {
        let log = std::fs::read_to_string(logs.path().join(name)).unwrap();
        assert!(log.contains("database unavailable"), "{name} did not report the outage:\n{log}");
        assert!(log.contains("database available again"), "{name} did not report the end:\n{log}");
    }
    store.close().await;
}

/// The connection breaks as a worker's claim commits: the database has the try running on that
/// worker, which never heard of it. Its heartbeats would keep the try alive forever; instead
/// the worker finds the try it does not know among those it heartbeats, and runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_whose_answer_was_lost_is_run_by_its_worker() {
    use common::{Harness, HarnessOptions};
    use lakeward::runtime::shutdown_channel;
    use lakeward::worker::{Worker, WorkerOptions};
    for db in common::databases().await {
        // The harness's own worker claims nothing: only the worker below runs tasks.
        let harness =
            Harness::start_with(&db, HarnessOptions { slots: 0, ..Default::default() }).await;
        let dag = common::dag(
            "id = \"lost_claim\"\n[tasks.only]\nkind = \"shell\"\ncommand = \"echo ran on try $LAKEWARD_TRY_NUMBER\"\n",
        );
        let run = harness.trigger(&dag, common::manual(serde_json::json!({}))).await;
        eventually("the task to be queued", Duration::from_secs(10), async || {
            harness.tasks(&run).await.iter().all(|ti| ti.state == TaskState::Queued)
        })
        .await;
        let scratch = tempfile::tempdir().unwrap();
        let worker = Worker::new(
            harness.store.clone(),
            harness.versions.clone(),
            WorkerOptions {
                slots: 4,
                queues: vec!["default".into()],
                heartbeat_interval: Duration::from_millis(200),
                poll_interval: Duration::from_millis(100),
                warehouse: lakeward::lake::Warehouse::open(scratch.path().to_str().unwrap())
                    .unwrap(),
                catalog: Default::default(),
                kafka: None,
            },
        );
        let default = ["default".to_string()];
        let (_, lost) = tasks::finish_and_claim(
            harness.store.write(),
            worker.id(),
            &[],
            &default,
            1,
            lakeward::time::now_micros(),
        )
        .await
        .unwrap();
        assert_eq!(lost.len(), 1, "{}", db.url);
        let (stop, shutdown) = shutdown_channel();
        let running = tokio::spawn(worker.run(shutdown));
        let finished = harness.wait(&run, Duration::from_secs(20)).await;
        assert_eq!(finished.state, RunState::Success, "{}", db.url);
        let ti = &harness.tasks(&run).await[0];
        assert_eq!(ti.try_number, 1, "{}: the lost claim cost a try", db.url);
        assert!(harness.log_text(ti).await.contains("ran on try 1"), "{}", db.url);
        stop.trigger();
        running.await.unwrap();
        harness.stop().await;
    }
}

/// A small file system of its own (tmpfs), unmounted when dropped. Mounting needs root, which
/// CI has; elsewhere the test is skipped.
struct SmallDisk(tempfile::TempDir);

impl SmallDisk {
    fn mount(megabytes: u32) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            let in_ci = std::env::var("CI").is_ok_and(|v| v == "true");
            assert!(!in_ci, "CI=true: cannot mount a tmpfs (the disk-full test needs root)");
            eprintln!("skipping: cannot mount a tmpfs (needs root)");
            return None;
        }
        Some(SmallDisk(dir))
    }

    fn path(&self) -> &Path {
        self.0.path()
    }

    /// Fills the disk but for `spare` KiB.
    fn fill(&self, spare: u64) {
        let free = nix_free_kib(self.path());
        let filler = vec![0u8; 1024];
        let mut file = std::fs::File::create(self.path().join("filler")).unwrap();
        for _ in 0..free.saturating_sub(spare) {
            if std::io::Write::write_all(&mut file, &filler).is_err() {
                break;
            }
        }
    }

    fn free(&self) {
        std::fs::remove_file(self.path().join("filler")).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

fn nix_free_kib(path: &Path) -> u64 {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: statvfs fills the struct for a valid NUL-terminated path.
    unsafe {
        let mut stat: libc::statvfs = std::mem::zeroed();
        assert_eq!(libc::statvfs(c_path.as_ptr(), &mut stat), 0);
        stat.f_bavail * stat.f_frsize / 1024
    }
}

/// The SQLite database's disk fills up while runs are created, claimed and finished and logs
/// are written. Writes fail cleanly; once space is freed another process (the CLI) can write
/// again, and sees everything the first one wrote since: no connection keeps the write lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_under_sqlite_fails_writes_and_releases_the_lock() {
    use lakeward::domain::RunType;
    use lakeward::jobs::{LogLine, Stream};
    use lakeward::store::{NewRun, TaskOutcome};
    let Some(disk) = SmallDisk::mount(4) else { return };
    let url = format!("sqlite://{}?mode=rwc", disk.path().join("lakeward.db").display());
    let store = Store::open(&url).await.unwrap();
    let queues = ["default".to_string()];
    let line = LogLine { at: 1, stream: Stream::Stdout, text: "x".repeat(200) };
    let mut failures = 0;
    for round in 0..6 {
        disk.fill(96);
        for n in 0..40 {
            let run = NewRun {
                dag_id: "full".into(),
                run_id: format!("r{round}_{n}"),
                version: "v1".into(),
                run_type: RunType::Manual,
                logical_date: i64::from(round * 100 + n),
                interval_start: 0,
                interval_end: 0,
                params: Default::default(),
                tasks: (0..20).map(|i| (format!("t{i}"), "default".into(), 1)).collect(),
            };
            let pk = match runs::create(store.write(), &run, lakeward::time::now_micros()).await {
                Ok(pk) => pk,
                Err(e) => {
                    assert!(e.is_unavailable(), "{e}");
                    failures += 1;
                    continue;
                }
            };
            let Some(pk) = pk else { continue };
            let Ok(tis) = tasks::of_runs(store.read(), &[pk]).await else { continue };
            let ids: Vec<i64> = tis.iter().map(|t| t.id).collect();
            let now = lakeward::time::now_micros();
            failures += usize::from(tasks::queue(store.write(), &ids, now).await.is_err());
            if let Ok(claimed) = tasks::claim(store.write(), "w", &queues, 20, now).await {
                for task in &claimed {
                    let lines = vec![line.clone(); 50];
                    failures +=
                        usize::from(logs::append(store.write(), task.id, 1, &lines).await.is_err());
                    let done = TaskOutcome::success(Default::default());
                    failures += usize::from(
                        tasks::finish(store.write(), task, "w", &done, now).await.is_err(),
                    );
                }
            } else {
                failures += 1;
            }
        }
        disk.free();
        // Another process writes now: it must not find the database locked.
        let other = Store::connect(&url).await.unwrap();
        processes::heartbeat(other.write(), &format!("cli-{round}"), "worker", "h", 1, None)
            .await
            .unwrap();
        // And this one writes again, visibly to the other.
        let own = 1_000 + i64::from(round);
        processes::heartbeat(store.write(), &format!("own-{round}"), "worker", "h", own, None)
            .await
            .unwrap();
        let seen = processes::latest_heartbeat(other.read(), "worker").await.unwrap();
        assert_eq!(seen, Some(own), "round {round}: the other process does not see the write");
        other.close().await;
    }
    assert!(failures > 0, "the disk never filled up");
    store.close().await;
}

/// The id and try number of a try of `dag_id` running now, other than `other`; `None` when
/// none runs within 30 s.
async fn running_try(store: &Store, dag_id: &str, other: Option<(i64, i64)>) -> Option<(i64, i64)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let newest = runs::list(store.read(), dag_id, 20, 0).await.unwrap();
        let pks: Vec<i64> = newest.iter().map(|r| r.pk).collect();
        let running = tasks::of_runs(store.read(), &pks)
            .await
            .unwrap()
            .iter()
            .filter(|t| t.state == TaskState::Running)
            .map(|t| (t.id, t.try_number))
            .find(|&found| Some(found) != other);
        if running.is_some() {
            return running;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// The issue's crash test: events with unique ids and malformed messages in a topic, a
/// continuous ingest DAG in `lakeward scheduler` + `lakeward worker` processes on Postgres,
/// the worker killed with SIGKILL again and again at random moments while it ingests and
/// restarted each time; then pyiceberg reads exactly the ids sent, once each, and exactly the
/// malformed messages among the dead letters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_worker_while_it_ingests_loses_and_doubles_no_event() {
    use crate::streaming::{ingest_dag_source, produce, send_raw};
    use lakeward::stream::{ensure_topic, Brokers};

    let Some(db) = common::postgres().await else { return };
    let Some(brokers) = common::kafka() else { return };
    let Some(python) = common::python_with_pyiceberg() else { return };
    let topic = common::unique_topic("crash");
    ensure_topic(&Brokers::new(&brokers).unwrap(), &topic, 3).await.unwrap();
    let malformed: Vec<Vec<u8>> = vec![
        b"{\"event_id\":".to_vec(),
        b"null".to_vec(),
        br#"{"event_id":"late","timestamp":"not a time"}"#.to_vec(),
        br#"{"event_id":"typed","timestamp":"2026-11-26T10:00:00Z","bytes":"many"}"#.to_vec(),
        br#"{"event_id":"nested","timestamp":"2026-11-26T10:00:00Z","status_code":{"code":200}}"#
            .to_vec(),
    ];
    produce(&brokers, &topic, 8_000, 11).await;
    send_raw(&brokers, &topic, &malformed[..2]);
    produce(&brokers, &topic, 8_000, 12).await;
    send_raw(&brokers, &topic, &malformed[2..]);
    produce(&brokers, &topic, 4_000, 13).await;
    const EVENTS: usize = 20_000;

    let dag = ingest_dag_source(&brokers, &topic, "retries = 50\nretry_delay = \"0s\"")
        .replacen("[tasks.ingest]", "schedule = \"@continuous\"\n[tasks.ingest]", 1)
        .replace("stop_at_end = true", "max_records = 1500")
        .replace("max_wait = \"60s\"", "max_wait = \"2s\"");
    let home = home_with("stream", &dag);
    let store = Store::open(&db.url).await.unwrap();
    let _scheduler = spawn(home.path(), &db.url, &["scheduler"]);
    let mut worker = spawn(home.path(), &db.url, &["worker"]);
    until_loaded(&store, "stream").await;
    let mut seed = std::process::id() as u64 ^ now_nanos();
    let mut killed = None;
    for _ in 0..6 {
        // Each kill waits for a try to run (not the one killed last, which the database shows
        // running until its heartbeat times out): on a busy machine, kills at fixed moments
        // could all fall while the worker was starting.
        let Some(running) = running_try(&store, "stream", killed).await else { break };
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        tokio::time::sleep(Duration::from_millis((seed >> 33) % 600)).await;
        worker.kill_now(); // SIGKILL, mid-read, mid-write or mid-commit: whatever it was doing
        worker = spawn(home.path(), &db.url, &["worker"]);
        killed = Some(running);
    }

    let warehouse =
        lakeward::lake::Warehouse::open(home.path().join("warehouse").to_str().unwrap()).unwrap();
    let tables = lakeward::lake::tables::Tables::open(&store, &warehouse, &Default::default())
        .await
        .unwrap();
    let request = lakeward::lake::tables::ScanRequest::default();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let rows = match tables.scan("bronze.web_logs", &request).await {
            Ok(scan) => common::rows(&scan.batches),
            Err(_) => 0,
        };
        if rows >= EVENTS {
            break;
        }
        if Instant::now() > deadline {
            let all = runs::list(store.read(), "stream", 20, 0).await.unwrap();
            let pks: Vec<i64> = all.iter().map(|r| r.pk).collect();
            let tis = tasks::of_runs(store.read(), &pks).await.unwrap();
            let states: Vec<String> = tis
                .iter()
                .map(|t| {
                    format!(
                        "{} try {} {:?} {:?}",
                        t.state,
                        t.try_number,
                        t.error,
                        t.outputs.get("records")
                    )
                })
                .collect();
            panic!("{rows} of {EVENTS} rows after 180 s; newest tasks:\n{}", states.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let all = runs::list(store.read(), "stream", 10_000, 0).await.unwrap();
    let pks: Vec<i64> = all.iter().map(|r| r.pk).collect();
    let retried = tasks::of_runs(store.read(), &pks)
        .await
        .unwrap()
        .iter()
        .filter(|t| t.try_number > 1)
        .count();
    assert!(retried > 0, "no kill hit a running try ({} runs)", all.len());

    let schema = db.url.rsplit("search_path]=").next().unwrap().to_string();
    let script = format!(
        r#"
import json
from pyiceberg.catalog.sql import SqlCatalog
catalog = SqlCatalog("lakeward",
    uri="postgresql+psycopg2://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}",
    warehouse="file://{warehouse}")
rows = catalog.load_table("bronze.web_logs").scan(selected_fields=("event_id",)).to_arrow()
ids = rows["event_id"].to_pylist()
dead = catalog.load_table("bronze.web_logs_dead_letters").scan().to_arrow()
print(json.dumps({{
    "rows": len(ids),
    "distinct": len(set(ids)),
    "dead": dead.num_rows,
    "dead_offsets": len(set(zip(dead["partition"].to_pylist(), dead["offset"].to_pylist()))),
    "dead_payloads": sorted(dead["payload"].to_pylist()),
}}))
"#,
        warehouse = home.path().join("warehouse").join("iceberg").canonicalize().unwrap().display(),
    );
    let seen = common::run_python_json(&python, &script);
    assert_eq!(seen["rows"], EVENTS, "every event once ({retried} tries were retried)");
    assert_eq!(seen["distinct"], EVENTS, "no event twice");
    assert_eq!(seen["dead"], malformed.len(), "exactly the malformed messages are dead letters");
    assert_eq!(seen["dead_offsets"], malformed.len());
    let mut expected: Vec<String> =
        malformed.iter().map(|m| String::from_utf8_lossy(m).into_owned()).collect();
    expected.sort();
    assert_eq!(seen["dead_payloads"], serde_json::json!(expected));
    store.close().await;
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The binary as a shell task's supervisor (`lakeward __supervise <worker pid> <program> …`,
/// how the worker starts commands): it ends with its command, the same way, and kills its
/// process group once its parent is not the worker it names.
#[test]
fn the_supervisor_ends_with_its_command_or_with_its_worker() {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    let supervise = |worker: u32, args: &[&str]| {
        let mut command = Command::new(BIN);
        command.arg("__supervise").arg(worker.to_string()).args(args).process_group(0);
        command.output().unwrap()
    };
    let me = std::process::id();
    let ended = supervise(me, &["sh", "-c", "echo out; exit 3"]);
    assert_eq!((ended.status.code(), ended.stdout.as_slice()), (Some(3), &b"out\n"[..]));
    let killed = supervise(me, &["sh", "-c", "kill -TERM $$"]);
    assert_eq!(killed.status.signal(), Some(libc::SIGTERM));
    let missing = supervise(me, &["/no/such/program"]);
    assert_eq!(missing.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/no/such/program"));
    // Named worker 1 is not its parent: as if the worker had died, the group is killed.
    let started = Instant::now();
    let orphaned = supervise(1, &["sleep", "30"]);
    assert_eq!(orphaned.status.signal(), Some(libc::SIGKILL));
    assert!(started.elapsed() < Duration::from_secs(10), "the command outlived its worker");
}

/// The launcher (`lakeward __launch`, how the binary's workers start commands): each command's
/// supervisor is this process's own child and leads its own group, the command gets the
/// environment, directory and output pipes it was given, and its status comes back, also for
/// many commands started at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_launcher_starts_supervisors_as_the_worker_s_own_children() {
    use lakeward::jobs::launcher::{Launched, Launcher, Request};
    use std::os::unix::process::ExitStatusExt;
    use std::sync::Arc;
    use tokio::io::AsyncReadExt;

    async fn output(child: &mut Launched) -> (std::process::ExitStatus, String, String) {
        let (mut out, mut err) = (String::new(), String::new());
        let (mut stdout, mut stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        let (o, e) = tokio::join!(stdout.read_to_string(&mut out), stderr.read_to_string(&mut err));
        o.unwrap();
        e.unwrap();
        (child.wait().await.unwrap(), out, err)
    }
    let sh = |script: &str| Request {
        argv: vec!["sh".into(), "-c".into(), script.into()],
        env: vec!["PATH=/usr/bin:/bin".into(), "GREETING=hello there".into()],
        cwd: Some("/tmp".into()),
    };
    let launcher = Arc::new(Launcher::start(Path::new(BIN)).unwrap());
    let launch = |request: Request| {
        let launcher = launcher.clone();
        async move {
            lakeward::process::blocking(move || launcher.launch(&request)).await.unwrap().unwrap()
        }
    };

    let mut ended = launch(sh("echo \"$GREETING\"; pwd; echo oops >&2; exit 3")).await;
    let (status, out, err) = output(&mut ended).await;
    assert_eq!(
        (status.code(), out.as_str(), err.as_str()),
        (Some(3), "hello there\n/tmp\n", "oops\n")
    );

    let mut sleeping = launch(sh("sleep 30")).await;
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", sleeping.id())).unwrap();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap().split_whitespace().collect();
    let (parent, group): (u32, u32) = (fields[1].parse().unwrap(), fields[2].parse().unwrap());
    assert_eq!(
        (parent, group),
        (std::process::id(), sleeping.id()),
        "our child, leading its group"
    );
    // SAFETY: signals the group the supervisor leads.
    unsafe { libc::killpg(sleeping.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(output(&mut sleeping).await.0.signal(), Some(libc::SIGTERM));

    let missing = Request { argv: vec!["/no/such/program".into()], ..sh("") };
    let (status, _, err) = output(&mut launch(missing).await).await;
    assert_eq!(status.code(), Some(127));
    assert!(err.contains("/no/such/program"), "{err}");

    let many = (0..40).map(|i| {
        let launch = &launch;
        async move {
            let (status, out, _) = output(&mut launch(sh(&format!("echo {i}"))).await).await;
            (status.code(), out)
        }
    });
    let results = futures::future::join_all(many).await;
    for (i, result) in results.into_iter().enumerate() {
        assert_eq!(result, (Some(0), format!("{i}\n")));
    }
}
