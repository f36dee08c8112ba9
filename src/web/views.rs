//! What the pages show: one askama template struct per page, plus the small view models and
//! formatting helpers they share. Everything user-supplied reaches HTML through askama's
//! escaping; nothing here builds markup by hand.

use askama::Template;
use serde_json::Value;

use super::graph::GraphSvg;
use super::identity::Identity;
use crate::domain::TaskState;
use crate::store::{ImportErrorRow, RunRow, TaskInstanceRow};
use crate::time::{display, Micros};

pub use crate::domain::{
    dag_path as dag_href, encode_path_segment as encode_component, run_path as run_href,
    task_path as task_href,
};

pub fn time_text(at: Option<Micros>) -> String {
    at.map(display).unwrap_or_else(|| "-".into())
}

/// `1.2s`, `3m 04s`, `2h 05m`; `-` when the span is not known.
pub fn duration_text(start: Option<Micros>, end: Option<Micros>) -> String {
    let (Some(start), Some(end)) = (start, end) else { return "-".into() };
    let micros = (end - start).max(0);
    let seconds = micros / 1_000_000;
    if seconds < 60 {
        format!("{:.1}s", micros as f64 / 1e6)
    } else if seconds < 3600 {
        format!("{}m {:02}s", seconds / 60, seconds % 60)
    } else {
        format!("{}h {:02}m", seconds / 3600, (seconds % 3600) / 60)
    }
}

/// The parts of every page that depend on who is looking.
pub struct Chrome {
    pub username: String,
    pub is_admin: bool,
    pub csrf_token: String,
    /// Offer a logout button (not when authentication is off).
    pub can_log_out: bool,
}

impl From<&Identity> for Chrome {
    fn from(identity: &Identity) -> Self {
        Chrome {
            username: identity.username.clone(),
            is_admin: identity.is_admin(),
            csrf_token: identity.csrf_token.clone(),
            can_log_out: identity.via == super::identity::Via::Session,
        }
    }
}

/// Links to the neighbouring pages of a paginated list.
pub struct Pager {
    pub page: i64,
    pub pages: i64,
    pub prev_href: Option<String>,
    pub next_href: Option<String>,
}

impl Pager {
    /// `base` is the page's URL with its other query parameters, ending in `?` or `&`.
    pub fn new(base: &str, page: i64, per_page: i64, total: i64) -> Pager {
        let pages = ((total + per_page - 1) / per_page).max(1);
        let link = |p: i64| format!("{base}page={p}");
        Pager {
            page,
            pages,
            prev_href: (page > 1).then(|| link(page - 1)),
            next_href: (page < pages).then(|| link(page + 1)),
        }
    }
}

/// One run as a coloured square.
pub struct RunSquare {
    pub state: String,
    pub title: String,
    pub href: String,
}

impl RunSquare {
    pub fn of(run: &RunRow) -> RunSquare {
        RunSquare {
            state: run.state.to_string(),
            title: format!("{} ({})", run.run_id, run.state),
            href: run_href(&run.dag_id, &run.run_id),
        }
    }
}

pub struct DagItem {
    pub id: String,
    pub href: String,
    pub description: String,
    pub schedule: String,
    pub next_run: String,
    pub paused: bool,
    pub tags: Vec<String>,
    /// Oldest first.
    pub recent: Vec<RunSquare>,
}

#[derive(Template)]
#[template(path = "dags.html")]
pub struct DagsPage {
    pub chrome: Chrome,
    pub import_errors: Vec<ImportErrorRow>,
    pub dags: Vec<DagItem>,
    pub name: String,
    pub tag: String,
    pub tags: Vec<String>,
    pub pager: Pager,
    pub live: bool,
}

/// One input of the trigger form.
pub struct ParamField {
    pub name: String,
    pub type_name: String,
    /// `text`, `number`, `select` (booleans) or `json` (arrays, objects).
    pub widget: &'static str,
    pub value: String,
    pub description: String,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "trigger.html")]
pub struct TriggerPage {
    pub chrome: Chrome,
    pub dag_id: String,
    pub dag_href: String,
    pub fields: Vec<ParamField>,
    pub logical_date: String,
    pub date_error: Option<String>,
    pub error: Option<String>,
}

pub struct GridColumn {
    pub label: String,
    pub title: String,
    pub state: String,
    pub href: String,
}

pub struct GridCell {
    pub state: String,
    pub title: String,
    pub href: String,
    /// For a mapped task: how many instances (shown in the cell), else empty.
    pub count: String,
}

pub struct GridRow {
    pub task_id: String,
    pub cells: Vec<GridCell>,
}

pub struct HistoryRow {
    pub run_id: String,
    pub href: String,
    pub state: String,
    pub run_type: String,
    pub logical_date: String,
    pub started: String,
    pub duration: String,
}

/// Bars of run duration over time, oldest left.
pub struct DurationChart {
    pub width: i64,
    pub height: i64,
    pub bars: Vec<Bar>,
    pub longest: String,
}

pub struct Bar {
    pub x: i64,
    pub y: i64,
    pub width: i64,
    pub height: i64,
    pub state: String,
    pub title: String,
}

impl DurationChart {
    /// `runs` newest first, as listed.
    pub fn of(runs: &[RunRow]) -> DurationChart {
        const HEIGHT: i64 = 120;
        const BAR: i64 = 14;
        let spans: Vec<i64> = runs
            .iter()
            .map(|r| match (r.started_at, r.ended_at) {
                (Some(s), Some(e)) => (e - s).max(0),
                _ => 0,
            })
            .collect();
        let longest = spans.iter().copied().max().unwrap_or(0).max(1);
        let bars = runs
            .iter()
            .zip(&spans)
            .rev()
            .enumerate()
            .map(|(i, (run, &span))| {
                let height = (span * (HEIGHT - 10) / longest).max(2);
                Bar {
                    x: i as i64 * (BAR + 4),
                    y: HEIGHT - height,
                    width: BAR,
                    height,
                    state: run.state.to_string(),
                    title: format!(
                        "{}: {}",
                        run.run_id,
                        duration_text(run.started_at, run.ended_at)
                    ),
                }
            })
            .collect::<Vec<_>>();
        DurationChart {
            width: (bars.len() as i64 * (BAR + 4)).max(BAR),
            height: HEIGHT,
            bars,
            longest: duration_text(Some(0), Some(longest)),
        }
    }
}

/// Throughput and lag of a stream over its recent runs, as two lines.
pub struct StreamChart {
    pub width: i64,
    pub height: i64,
    /// SVG polyline points, oldest left.
    pub throughput: String,
    pub lag: String,
    pub peak_throughput: String,
    pub peak_lag: String,
    pub latest: String,
}

/// What one finished run of a stream did.
pub struct StreamPoint {
    pub records: f64,
    pub seconds: f64,
    pub lag: f64,
}

impl StreamChart {
    /// `points` oldest first; `None` without two points to draw.
    pub fn of(points: &[StreamPoint]) -> Option<StreamChart> {
        const WIDTH: i64 = 600;
        const HEIGHT: i64 = 80;
        if points.len() < 2 {
            return None;
        }
        let rates: Vec<f64> = points.iter().map(|p| p.records / p.seconds.max(1e-3)).collect();
        let lags: Vec<f64> = points.iter().map(|p| p.lag).collect();
        let line = |values: &[f64]| {
            let peak = values.iter().copied().fold(0.0, f64::max).max(1.0);
            let step = WIDTH as f64 / (values.len() - 1) as f64;
            let points: Vec<String> = values
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let y = (HEIGHT - 4) as f64 * (1.0 - v / peak) + 2.0;
                    format!("{:.1},{y:.1}", i as f64 * step)
                })
                .collect();
            (points.join(" "), peak)
        };
        let (throughput, peak_rate) = line(&rates);
        let (lag, peak_lag) = line(&lags);
        let last = points.len() - 1;
        Some(StreamChart {
            width: WIDTH,
            height: HEIGHT,
            throughput,
            lag,
            peak_throughput: format!("{peak_rate:.0} records/s"),
            peak_lag: format!("{peak_lag:.0} records"),
            latest: format!("{:.0} records/s, lag {:.0}", rates[last], lags[last]),
        })
    }
}

pub struct GridView {
    pub columns: Vec<GridColumn>,
    pub rows: Vec<GridRow>,
}

pub struct GraphView {
    pub svg: GraphSvg,
    /// The run whose states colour the boxes.
    pub run_id: Option<String>,
}

pub struct HistoryView {
    pub rows: Vec<HistoryRow>,
    pub chart: DurationChart,
}

pub struct SourceView {
    pub file: String,
    pub source: String,
}

#[derive(Template)]
#[template(path = "dag.html")]
pub struct DagPage {
    pub chrome: Chrome,
    pub dag_id: String,
    pub href: String,
    pub description: String,
    pub schedule: String,
    pub next_run: String,
    pub paused: bool,
    /// Which view is shown: `grid`, `graph`, `history` or `source`; only that one is filled.
    pub tab: &'static str,
    pub grid: Option<GridView>,
    pub graph: Option<GraphView>,
    pub history: Option<HistoryView>,
    /// A continuous DAG's throughput and lag over its recent runs.
    pub stream: Option<StreamChart>,
    pub source: Option<SourceView>,
    pub pager: Option<Pager>,
    pub live: bool,
    /// What the DAG reads and writes, and the DAGs it feeds and is fed by.
    pub dataflow: DataFlowView,
}

pub struct DataFlowView {
    pub reads: Vec<AssetView>,
    pub writes: Vec<AssetView>,
    pub feeds: Vec<FeedView>,
    pub fed_by: Vec<FeedView>,
}

impl DataFlowView {
    pub fn is_empty(&self) -> bool {
        self.reads.is_empty() && self.writes.is_empty()
    }
}

/// A table or dataset on a DAG page.
pub struct AssetView {
    pub name: String,
    pub kind: &'static str,
    /// The DAG's schedule watches it: its changes make runs.
    pub triggers: bool,
}

/// Another DAG linked to this one through the data one writes and the other reads.
pub struct FeedView {
    pub dag_id: String,
    pub href: String,
    /// The tables and datasets in between.
    pub through: String,
}

/// What triggered a run on data: an asset and the snapshots (versions) that changed it.
pub struct RunTriggerView {
    pub name: String,
    pub versions: String,
}

pub struct TaskRow {
    pub task_id: String,
    pub href: String,
    pub state: String,
    pub tries: String,
    pub started: String,
    pub ended: String,
    pub duration: String,
    pub outputs: String,
    pub error: String,
    /// For a mapped task's row: its instances.
    pub instances: Vec<TaskRow>,
}

impl TaskRow {
    pub fn of(run: &RunRow, ti: &TaskInstanceRow) -> TaskRow {
        let name = ti.display_id();
        TaskRow {
            href: task_href(&run.dag_id, &run.run_id, &name),
            task_id: name,
            state: ti.state.to_string(),
            tries: format!("{}/{}", ti.try_number, ti.max_tries),
            started: time_text(ti.started_at),
            ended: time_text(ti.ended_at),
            duration: duration_text(ti.started_at, ti.ended_at),
            outputs: if ti.outputs.is_empty() {
                String::new()
            } else {
                Value::Object(ti.outputs.clone()).to_string()
            },
            error: ti.error.clone().unwrap_or_default(),
            instances: Vec::new(),
        }
    }

    /// One row for the instances of a mapped task (listed under it, folded): the summary
    /// state, and the count of instances per state.
    pub fn mapped(run: &RunRow, task_id: &str, instances: &[&TaskInstanceRow]) -> TaskRow {
        let states = instances.iter().map(|ti| ti.state);
        let state = TaskState::summary(states.clone()).map_or("none".into(), |s| s.to_string());
        let mut counts: Vec<(TaskState, usize)> = Vec::new();
        for state in states {
            match counts.iter_mut().find(|(s, _)| *s == state) {
                Some((_, n)) => *n += 1,
                None => counts.push((state, 1)),
            }
        }
        let counts: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
        TaskRow {
            task_id: task_id.to_string(),
            href: format!("#mapped-{task_id}"),
            state,
            tries: format!("×{}", instances.len()),
            started: String::new(),
            ended: String::new(),
            duration: String::new(),
            outputs: counts.join(", "),
            error: String::new(),
            instances: instances.iter().map(|ti| TaskRow::of(run, ti)).collect(),
        }
    }
}

#[derive(Template)]
#[template(path = "run.html")]
pub struct RunPage {
    pub chrome: Chrome,
    pub dag_id: String,
    pub dag_href: String,
    pub run_id: String,
    pub href: String,
    pub state: String,
    pub run_type: String,
    pub logical_date: String,
    pub interval: String,
    pub started: String,
    pub ended: String,
    pub duration: String,
    pub params: String,
    /// When the run was still unfinished at its DAG's deadline.
    pub deadline_missed: Option<String>,
    /// The table snapshots and dataset versions that triggered a run on data.
    pub triggers: Vec<RunTriggerView>,
    pub tasks: Vec<TaskRow>,
    /// The messages queued about this run, and how their delivery went.
    pub notifications: Vec<NotificationView>,
    pub live: bool,
}

/// One queued notification on the run page.
pub struct NotificationView {
    pub channel: String,
    pub event: String,
    pub task: String,
    pub state: String,
    pub attempts: i64,
    pub queued: String,
    pub sent: String,
    pub error: String,
}

impl NotificationView {
    pub fn of(row: &crate::store::notifications::NotificationRow) -> NotificationView {
        NotificationView {
            channel: row.channel.clone(),
            event: row.event.replace('_', " "),
            task: row.task_id.clone().unwrap_or_default(),
            state: row.state.clone(),
            attempts: row.attempts,
            queued: display(row.created_at),
            sent: time_text(row.sent_at),
            error: row.last_error.clone().unwrap_or_default(),
        }
    }
}

/// One try of a task instance: its link (to its log) and timing.
pub struct TryView {
    pub number: i64,
    pub href: String,
    pub selected: bool,
    pub state: String,
    pub worker: String,
    pub started: String,
    pub ended: String,
    pub duration: String,
}

pub struct LogLineView {
    pub at: String,
    pub stream: String,
    pub text: String,
}

/// One row of a quality task's check results.
pub struct CheckView {
    pub name: String,
    pub check: String,
    pub severity: String,
    pub passed: bool,
    pub failing_rows: String,
    pub sample: String,
}

impl CheckView {
    /// The `checks` output of a quality task, if it has one.
    pub fn list(outputs: &serde_json::Map<String, Value>) -> Vec<CheckView> {
        let text = |v: &Value, key: &str| match v.get(key) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        };
        let Some(Value::Array(checks)) = outputs.get("checks") else { return Vec::new() };
        checks
            .iter()
            .filter(|c| c.is_object())
            .map(|c| CheckView {
                name: text(c, "name"),
                check: text(c, "check"),
                severity: text(c, "severity"),
                passed: c.get("passed").and_then(Value::as_bool).unwrap_or(false),
                failing_rows: text(c, "failing_rows"),
                sample: text(c, "sample"),
            })
            .collect()
    }
}

/// One partition of a stream-ingest try: where it read from and to, and what was left.
pub struct PartitionView {
    pub partition: String,
    pub from: String,
    pub to: String,
    pub records: String,
    pub dead_letters: String,
    pub lag: String,
}

impl PartitionView {
    /// The `partitions` output of a `kafka_ingest` task, if it has one.
    pub fn list(outputs: &serde_json::Map<String, Value>) -> Vec<PartitionView> {
        let Some(Value::Array(partitions)) = outputs.get("partitions") else { return Vec::new() };
        let text = |v: &Value, key: &str| v.get(key).map_or_else(String::new, Value::to_string);
        partitions
            .iter()
            .filter(|p| p.is_object())
            .map(|p| PartitionView {
                partition: text(p, "partition"),
                from: text(p, "from"),
                to: text(p, "to"),
                records: text(p, "records"),
                dead_letters: text(p, "dead_letters"),
                lag: text(p, "lag"),
            })
            .collect()
    }
}

#[derive(Template)]
#[template(path = "task.html")]
pub struct TaskPage {
    pub chrome: Chrome,
    pub dag_id: String,
    pub dag_href: String,
    pub run_id: String,
    pub run_href: String,
    pub task_id: String,
    pub href: String,
    pub state: String,
    pub kind: String,
    pub tries: Vec<TryView>,
    pub selected_try: i64,
    pub max_tries: i64,
    pub queued: String,
    pub started: String,
    pub ended: String,
    pub duration: String,
    pub worker: String,
    pub exit_code: String,
    pub error: String,
    /// What the try last reported of its progress, and when; empty if it reported nothing.
    pub progress: String,
    pub outputs: Vec<(String, String)>,
    pub checks: Vec<CheckView>,
    pub partitions: Vec<PartitionView>,
    pub log: Vec<LogLineView>,
    /// More lines exist than are shown.
    pub log_truncated: bool,
    pub live: bool,
}

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub next: String,
    pub error: Option<String>,
    pub csrf_token: String,
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub status: u16,
    pub message: String,
}

/// A DAG file's path as shown to web and API users: an absolute server path is cut to the
/// file name, so pages do not reveal the server's folder layout.
pub fn shown_path(path: &str) -> String {
    let file = std::path::Path::new(path);
    if file.is_absolute() {
        file.file_name().map_or_else(String::new, |name| name.to_string_lossy().into_owned())
    } else {
        path.to_string()
    }
}

/// An import error as shown: its file, and its message, cut like [`shown_path`].
pub fn shown_import_error(mut error: ImportErrorRow) -> ImportErrorRow {
    let shown = shown_path(&error.file_path);
    error.message = error.message.replace(&error.file_path, &shown);
    error.file_path = shown;
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(
            encode_component("manual__2024-01-01T00:00:00+00:00"),
            "manual__2024-01-01T00%3A00%3A00%2B00%3A00"
        );
        assert_eq!(run_href("a b", "r/1"), "/dags/a%20b/runs/r%2F1");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration_text(Some(0), Some(1_200_000)), "1.2s");
        assert_eq!(duration_text(Some(0), Some(184_000_000)), "3m 04s");
        assert_eq!(duration_text(Some(0), Some(7_500_000_000)), "2h 05m");
        assert_eq!(duration_text(None, Some(1)), "-");
    }

    #[test]
    fn pager_links_neighbours() {
        let pager = Pager::new("/dags?", 2, 25, 60);
        assert_eq!(pager.pages, 3);
        assert_eq!(pager.prev_href.as_deref(), Some("/dags?page=1"));
        assert_eq!(pager.next_href.as_deref(), Some("/dags?page=3"));
        assert!(Pager::new("/x?", 1, 25, 0).next_href.is_none());
    }
}
