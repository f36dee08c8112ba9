//! What a notification says: the event, where it happened (DAG, run, task, try), the error,
//! and a link to the page that tells more; and the same message as a webhook's JSON, a Slack
//! text and an e-mail.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::dag::Subscriptions;
use crate::domain::{run_path, task_path};
use crate::store::notifications::NewNotification;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// A try failed and the task will be retried (`on_retry`).
    TaskRetry,
    /// A task failed with no tries left (`on_failure`).
    TaskFailed,
    TaskSucceeded,
    /// A run ended failed (the DAG's `on_failure`).
    RunFailed,
    RunSucceeded,
    /// A run passed its DAG's deadline unfinished (the DAG's `on_failure`).
    DeadlineMissed,
}

impl Event {
    /// The channels told of this event, among a DAG's or a task's settings.
    pub fn subscribers(self, settings: &Subscriptions) -> &[String] {
        match self {
            Event::TaskRetry => &settings.on_retry,
            Event::TaskFailed | Event::RunFailed | Event::DeadlineMissed => &settings.on_failure,
            Event::TaskSucceeded | Event::RunSucceeded => &settings.on_success,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Event::TaskRetry => "task_retry",
            Event::TaskFailed => "task_failed",
            Event::TaskSucceeded => "task_succeeded",
            Event::RunFailed => "run_failed",
            Event::RunSucceeded => "run_succeeded",
            Event::DeadlineMissed => "deadline_missed",
        }
    }
}

/// One notification's content, stored as JSON in the queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub event: Event,
    pub dag_id: String,
    pub run_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub try_number: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tries: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For run events: the tasks that failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_tasks: Vec<String>,
    pub at: DateTime<Utc>,
}

/// Longest error text a message carries (the full one is in the task's log).
const MAX_ERROR_CHARS: usize = 2_000;

impl Message {
    /// A run ended, or missed its deadline (or, with [`Message::about_try`], a try ended).
    pub fn run(
        event: Event,
        dag_id: &str,
        run_id: &str,
        failed_tasks: Vec<String>,
        at: DateTime<Utc>,
    ) -> Message {
        Message {
            event,
            dag_id: dag_id.to_string(),
            run_id: run_id.to_string(),
            task_id: None,
            try_number: None,
            max_tries: None,
            error: None,
            failed_tasks,
            at,
        }
    }

    /// The same event about one try of a task (`event` is then one of the task events).
    pub fn about_try(
        mut self,
        task_id: &str,
        try_number: i64,
        max_tries: i64,
        error: Option<&str>,
    ) -> Message {
        self.task_id = Some(task_id.to_string());
        self.try_number = Some(try_number);
        self.max_tries = Some(max_tries);
        self.error = error.map(shorten);
        self
    }

    /// The page that tells more, as a path under the web server: the task's log (at the
    /// try) for task events, the run for run events.
    pub fn path(&self) -> String {
        match (&self.task_id, self.try_number) {
            (Some(task), Some(try_number)) => {
                format!("{}?try={try_number}", task_path(&self.dag_id, &self.run_id, task))
            }
            (Some(task), None) => task_path(&self.dag_id, &self.run_id, task),
            _ => run_path(&self.dag_id, &self.run_id),
        }
    }

    /// One line: what happened, where.
    pub fn subject(&self) -> String {
        let dag = &self.dag_id;
        match (&self.task_id, self.event) {
            (Some(task), Event::TaskRetry) => format!(
                "lakeward: task {task} of DAG {dag} failed try {} of {}, will retry",
                self.try_number.unwrap_or_default(),
                self.max_tries.unwrap_or_default()
            ),
            (Some(task), Event::TaskFailed) => format!("lakeward: task {task} of DAG {dag} failed"),
            (Some(task), _) => format!("lakeward: task {task} of DAG {dag} succeeded"),
            (None, Event::RunFailed) => format!("lakeward: run of DAG {dag} failed"),
            (None, Event::DeadlineMissed) => {
                format!("lakeward: run of DAG {dag} missed its deadline")
            }
            (None, _) => format!("lakeward: run of DAG {dag} succeeded"),
        }
    }

    /// The full text: subject, where, the error and the link.
    pub fn text(&self, base_url: &str) -> String {
        let mut text =
            format!("{}\n\nDAG: {}\nRun: {}\n", self.subject(), self.dag_id, self.run_id);
        if let Some(task) = &self.task_id {
            text.push_str(&format!("Task: {task}\n"));
        }
        if let (Some(try_number), Some(max)) = (self.try_number, self.max_tries) {
            text.push_str(&format!("Try: {try_number} of {max}\n"));
        }
        if !self.failed_tasks.is_empty() {
            text.push_str(&format!("Failed tasks: {}\n", self.failed_tasks.join(", ")));
        }
        text.push_str(&format!("At: {}\n", self.at.to_rfc3339()));
        if let Some(error) = &self.error {
            text.push_str(&format!("\nError:\n{error}\n"));
        }
        text.push_str(&format!("\nLog: {}\n", self.url(base_url)));
        text
    }

    /// The link to [`Message::path`] on the server at `base_url`.
    pub fn url(&self, base_url: &str) -> String {
        format!("{}{}", base_url.trim_end_matches('/'), self.path())
    }

    /// A JSON webhook's body: every field, plus the text and the absolute link.
    pub fn webhook_body(&self, base_url: &str) -> serde_json::Value {
        let mut body = serde_json::to_value(self).unwrap_or_default();
        if let Some(fields) = body.as_object_mut() {
            fields.insert("summary".into(), self.subject().into());
            fields.insert("text".into(), self.text(base_url).into());
            fields.insert("url".into(), self.url(base_url).into());
        }
        body
    }

    /// A Slack incoming webhook's body: the subject as a link, then the details.
    pub fn slack_body(&self, base_url: &str) -> serde_json::Value {
        let escape = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
        let mut text = format!("*<{}|{}>*", self.url(base_url), escape(&self.subject()));
        text.push_str(&format!("\nDAG `{}` · run `{}`", self.dag_id, self.run_id));
        if let (Some(task), Some(try_number)) = (&self.task_id, self.try_number) {
            text.push_str(&format!(" · task `{task}` try {try_number}"));
        }
        if !self.failed_tasks.is_empty() {
            text.push_str(&format!("\nFailed tasks: {}", self.failed_tasks.join(", ")));
        }
        if let Some(error) = &self.error {
            text.push_str(&format!("\n```{}```", escape(error)));
        }
        serde_json::json!({ "text": text })
    }

    /// The queue rows for this message, one per channel. `occurrence` tells repeated events
    /// apart (a run that ends again after a task was cleared); the same occurrence queued
    /// twice is kept once.
    pub fn queue_for(&self, channels: &[String], occurrence: i64) -> Vec<NewNotification> {
        let json = serde_json::to_string(self).unwrap_or_default();
        channels
            .iter()
            .map(|channel| NewNotification {
                event_key: serde_json::json!([
                    self.event.as_str(),
                    self.dag_id,
                    self.run_id,
                    self.task_id,
                    self.try_number,
                    occurrence,
                    channel
                ])
                .to_string(),
                channel: channel.clone(),
                event: self.event.as_str().to_string(),
                dag_id: self.dag_id.clone(),
                run_id: self.run_id.clone(),
                task_id: self.task_id.clone(),
                message: json.clone(),
            })
            .collect()
    }
}

fn shorten(error: &str) -> String {
    match error.char_indices().nth(MAX_ERROR_CHARS) {
        Some((end, _)) => format!("{}… (see the log)", &error[..end]),
        None => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed_try() -> Message {
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let run = "manual__2023-11-14T22:13:20+00:00";
        Message::run(Event::TaskRetry, "etl", run, Vec::new(), at).about_try(
            "load",
            1,
            3,
            Some("exit code 2"),
        )
    }

    #[test]
    fn a_failed_try_says_what_where_why_and_links_to_its_log() {
        let message = failed_try();
        let text = message.text("http://lakeward.example.com/");
        for part in [
            "task load of DAG etl failed try 1 of 3, will retry",
            "Run: manual__2023-11-14T22:13:20+00:00",
            "Try: 1 of 3",
            "Error:\nexit code 2",
            "Log: http://lakeward.example.com/dags/etl/runs/manual__2023-11-14T22%3A13%3A20%2B00%3A00/tasks/load?try=1",
        ] {
            assert!(text.contains(part), "{part} not in {text}");
        }
        let body = message.webhook_body("http://x");
        assert_eq!(body["event"], "task_retry");
        assert_eq!(body["try_number"], 1);
        assert!(body["url"].as_str().unwrap().ends_with("/tasks/load?try=1"));
        let slack = message.slack_body("http://x");
        assert!(slack["text"].as_str().unwrap().starts_with("*<http://x/dags/etl/runs/"));
    }

    #[test]
    fn each_channel_gets_its_own_row_and_a_repeat_has_the_same_key() {
        let message = failed_try();
        let rows = message.queue_for(&["ops".into(), "team".into()], 0);
        assert_eq!(rows.len(), 2);
        assert_ne!(rows[0].event_key, rows[1].event_key);
        assert_eq!(rows, message.queue_for(&["ops".into(), "team".into()], 0));
        assert_ne!(rows[0].event_key, message.queue_for(&["ops".into()], 1)[0].event_key);
        let back: Message = serde_json::from_str(&rows[0].message).unwrap();
        assert_eq!(back, message);
    }

    #[test]
    fn long_errors_are_cut_short() {
        let long = "x".repeat(5_000);
        let message = Message::run(Event::TaskFailed, "d", "r", Vec::new(), Utc::now());
        let message = message.about_try("t", 1, 1, Some(&long));
        assert!(message.error.unwrap().len() < 2_100);
    }
}
