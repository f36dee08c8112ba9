//! Process configuration: `lakeward.toml` plus `LAKEWARD_*` environment variables.
//!
//! Precedence, highest first: environment, the config file, built-in defaults. The config file is
//! `$LAKEWARD_CONFIG` if set, else `./lakeward.toml`, else `$LAKEWARD_HOME/lakeward.toml`.
//! Every setting has a variable named after it (see [`env`]). A loaded configuration has been
//! checked as a whole ([`check`]): a process never starts on a setting it would misread.
//! This module only reads settings; it never touches the database or the DAG folder.

mod check;
mod env;

pub use env::Override;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::lake::tables::CatalogConfig;
use crate::time::serde_duration;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// Every problem found in the settings, each naming the setting and where it was set.
    #[error("invalid configuration:\n  {}", problems.join("\n  "))]
    Invalid { problems: Vec<String> },
}

/// Everything a lakeward process needs to know before it starts.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// State folder: the embedded database and (later) the warehouse live here.
    pub home: PathBuf,
    /// `sqlite://…` or `postgres://…`; defaults to `$home/lakeward.db`.
    pub database_url: Option<String>,
    /// Folder of DAG files (`*.toml`).
    pub dags_folder: PathBuf,
    /// Where datasets live; defaults to `$home/warehouse`.
    pub warehouse: Option<String>,
    pub scheduler: SchedulerConfig,
    pub worker: WorkerConfig,
    pub web: WebConfig,
    /// Named pools and their slot counts: `[pools] warehouse = 4`. Tasks opt in with `pool`.
    pub pools: std::collections::BTreeMap<String, u32>,
    /// The Iceberg catalog: lakeward's own database unless `[catalog] uri` names a REST one.
    pub catalog: CatalogConfig,
    pub kafka: KafkaConfig,
    pub sql: SqlConfig,
    /// How notifications are delivered (`[notifications]`).
    pub notifications: crate::notifications::NotificationSettings,
    /// Named notification channels (`[channels.ops] kind = "slack"`), which DAGs name in
    /// `on_failure`, `on_retry` and `on_success`.
    pub channels: std::collections::BTreeMap<String, crate::notifications::ChannelSpec>,
}

/// The SQL console (`lakeward sql`, the SQL page, `POST /api/v1/sql`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SqlConfig {
    /// A query running longer is cancelled.
    #[serde(with = "serde_duration")]
    pub timeout: Duration,
    /// Most rows a query returns (the API and page ask for fewer); beyond, the answer is
    /// truncated and says so.
    pub max_rows: usize,
}

impl Default for SqlConfig {
    fn default() -> Self {
        SqlConfig { timeout: Duration::from_secs(30), max_rows: 1_000_000 }
    }
}

impl SqlConfig {
    pub fn limits(&self) -> crate::lake::query::Limits {
        crate::lake::query::Limits { timeout: self.timeout, max_rows: self.max_rows }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// The Kafka cluster streaming tasks use unless they name their own: `host:port,…`.
    /// Empty: none (`lakeward standalone` then starts a demo broker in the process).
    pub brokers: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerConfig {
    /// Safety-net poll; the scheduler normally wakes on notifications.
    #[serde(with = "serde_duration")]
    pub poll_interval: Duration,
    /// How often the DAG folder is checked for new, changed or deleted files.
    #[serde(with = "serde_duration")]
    pub dag_refresh_interval: Duration,
    /// A running task whose worker has not heartbeated for this long is failed and retried.
    #[serde(with = "serde_duration")]
    pub heartbeat_timeout: Duration,
    /// Most instances a mapped task (`for_each`) may expand into; a longer list fails it.
    pub max_map_length: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// Task instances one worker runs at the same time.
    pub slots: usize,
    /// Queues this worker claims from.
    pub queues: Vec<String>,
    #[serde(with = "serde_duration")]
    pub heartbeat_interval: Duration,
    /// Safety-net poll; workers normally wake on notifications.
    #[serde(with = "serde_duration")]
    pub poll_interval: Duration,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    pub bind: String,
    /// Require a login (or API token) for every page and API call. May only be turned off
    /// when `bind` is a loopback address.
    pub auth: bool,
    /// How long a browser session stays logged in.
    #[serde(with = "serde_duration")]
    pub session_lifetime: Duration,
    /// Public host names of this server (port ignored): answered while `auth` is off, against
    /// DNS rebinding (loopback names always are), and accepted as the `Origin` of browser
    /// requests when a TLS proxy rewrites the `Host` header.
    pub allowed_hosts: Vec<String>,
    /// Mark cookies `Secure`: set it when a TLS proxy serves lakeward over HTTPS.
    pub secure_cookies: bool,
    /// What `/metrics`' task duration histograms are kept per: `"dag"` (the default) or
    /// `"task"` (a dozen series per task).
    pub duration_histograms: crate::store::DurationsBy,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            home: default_home(),
            database_url: None,
            dags_folder: PathBuf::from("dags"),
            warehouse: None,
            scheduler: SchedulerConfig::default(),
            worker: WorkerConfig::default(),
            web: WebConfig::default(),
            pools: Default::default(),
            catalog: CatalogConfig::default(),
            kafka: KafkaConfig::default(),
            sql: SqlConfig::default(),
            notifications: Default::default(),
            channels: Default::default(),
        }
    }
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            poll_interval: Duration::from_secs(1),
            dag_refresh_interval: Duration::from_secs(2),
            heartbeat_timeout: Duration::from_secs(60),
            max_map_length: 1024,
        }
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            slots: 16,
            queues: vec![crate::domain::DEFAULT_QUEUE.to_string()],
            heartbeat_interval: Duration::from_secs(5),
            poll_interval: Duration::from_secs(1),
        }
    }
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            bind: "127.0.0.1:8080".to_string(),
            auth: true,
            session_lifetime: Duration::from_secs(12 * 3600),
            allowed_hosts: Vec::new(),
            secure_cookies: false,
            duration_histograms: crate::store::DurationsBy::Dag,
        }
    }
}

fn default_home() -> PathBuf {
    match std::env::var_os("HOME") {
        Some(home) => Path::new(&home).join(".lakeward"),
        None => PathBuf::from(".lakeward"),
    }
}

impl Config {
    /// Loads the config file (if any), applies the environment on top and checks the result.
    pub fn load() -> Result<Config, ConfigError> {
        Config::load_with(std::env::vars(), Vec::new())
    }

    /// [`Config::load`] with the environment `vars`, then `flags` (command-line options, which
    /// win over the environment) applied on top.
    pub fn load_with(
        vars: impl IntoIterator<Item = (String, String)>,
        flags: Vec<Override>,
    ) -> Result<Config, ConfigError> {
        let vars: Vec<(String, String)> = vars.into_iter().collect();
        let var = |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let candidates = match var("LAKEWARD_CONFIG") {
            Some(path) => vec![PathBuf::from(path)],
            None => {
                let home = var("LAKEWARD_HOME").map(PathBuf::from).unwrap_or_else(default_home);
                vec![PathBuf::from("lakeward.toml"), home.join("lakeward.toml")]
            }
        };
        let file = candidates.into_iter().find(|path| path.is_file());
        // The file alone first, so its mistakes are reported with their line.
        let mut table = toml::Table::new();
        if let Some(path) = &file {
            let text = std::fs::read_to_string(path)
                .map_err(|source| ConfigError::Read { path: path.clone(), source })?;
            let invalid = |e: toml::de::Error| ConfigError::Parse {
                path: path.clone(),
                message: e.to_string(),
            };
            toml::from_str::<Config>(&text).map_err(invalid)?;
            table = text.parse().map_err(invalid)?;
        }
        let defaults = serde_json::to_value(Config::default()).unwrap_or_default();
        let (mut overrides, mut problems) = env::overrides(vars.iter().cloned(), &defaults);
        overrides.extend(flags);
        for set in &overrides {
            env::apply(&mut table, &set.path, set.value.clone());
        }
        let config = match toml::Value::Table(table).try_into::<Config>() {
            Ok(config) => config,
            Err(e) => {
                problems.push(format!("environment: {}", e.message()));
                return Err(ConfigError::Invalid { problems });
            }
        };
        let origin = |setting: &str| match overrides.iter().rfind(|o| o.path.join(".") == setting) {
            Some(set) => format!("from {}", set.source),
            None => match &file {
                Some(path) => format!("from {} or the default", path.display()),
                None => "the default".to_string(),
            },
        };
        problems.extend(check::problems(&config, &origin));
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid { problems })
        }
    }

    /// The file settings alone (no environment, no checks as a whole).
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        toml::from_str(&text)
            .map_err(|e| ConfigError::Parse { path: path.to_path_buf(), message: e.to_string() })
    }

    /// This configuration as a `lakeward.toml`, with passwords and tokens masked.
    pub fn to_masked_toml(&self) -> String {
        let mut shown = self.clone();
        shown.database_url = shown.database_url.map(|url| crate::store::mask_password(&url));
        if shown.catalog.token.is_some() {
            shown.catalog.token = Some("***".to_string());
        }
        toml::to_string(&shown).unwrap_or_else(|e| format!("# cannot show the configuration: {e}"))
    }

    /// The warehouse location in effect.
    pub fn warehouse(&self) -> String {
        match &self.warehouse {
            Some(location) => location.clone(),
            None => self.home.join("warehouse").display().to_string(),
        }
    }

    /// The database URL in effect: the configured one or the embedded SQLite file.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.home.join("lakeward.db").display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_overrides_the_file_and_everything_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lakeward.toml");
        std::fs::write(&path, "[worker]\nslots = 3\n[pools]\netl = 2\n").unwrap();
        let vars = |extra: &[(&str, &str)]| {
            let mut vars = vec![("LAKEWARD_CONFIG".to_string(), path.display().to_string())];
            vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            vars
        };
        let config =
            Config::load_with(vars(&[("LAKEWARD_WORKER_POLL_INTERVAL", "250ms")]), Vec::new())
                .unwrap();
        assert_eq!(config.worker.slots, 3);
        assert_eq!(config.worker.poll_interval, Duration::from_millis(250));
        assert_eq!(config.pools["etl"], 2);

        let bad = vars(&[
            ("LAKEWARD_WORKER_SLOTS", "0"),
            ("LAKEWARD_POOLS_ETL", "0"),
            ("LAKEWARD_WEB_BYND", "x"),
        ]);
        let Err(ConfigError::Invalid { problems }) = Config::load_with(bad, Vec::new()) else {
            panic!("a worker without slots was accepted")
        };
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("LAKEWARD_WEB_BYND: no such setting"), "{problems:?}");
        assert!(
            problems[1].contains("worker.slots = 0")
                && problems[1].contains("LAKEWARD_WORKER_SLOTS")
        );
        assert!(problems[2].contains("pools.etl = 0"), "{problems:?}");
    }

    #[test]
    fn flags_win_over_the_environment_and_are_checked_as_flags() {
        let vars = [("LAKEWARD_CONFIG", "/nonexistent.toml"), ("LAKEWARD_WORKER_SLOTS", "3")]
            .map(|(k, v)| (k.to_string(), v.to_string()));
        let flag = |value: i64| Override::flag("--slots", &["worker", "slots"], value.into());
        let config = Config::load_with(vars.clone(), vec![flag(5)]).unwrap();
        assert_eq!(config.worker.slots, 5);
        let Err(ConfigError::Invalid { problems }) = Config::load_with(vars, vec![flag(0)]) else {
            panic!("--slots 0 was accepted")
        };
        assert!(
            problems[0].starts_with("worker.slots = 0") && problems[0].ends_with("(from --slots)"),
            "{problems:?}"
        );
    }

    #[test]
    fn the_effective_configuration_hides_secrets() {
        let mut config = Config {
            database_url: Some("postgres://lw:hunter2@db:5432/lakeward".into()),
            ..Config::default()
        };
        config.catalog.token = Some("tok".into());
        let shown = config.to_masked_toml();
        assert!(shown.contains("postgres://lw:***@db:5432/lakeward"), "{shown}");
        assert!(!shown.contains("hunter2") && !shown.contains("\"tok\""), "{shown}");
        let back: Config = toml::from_str(&shown).unwrap();
        assert_eq!(back.worker.slots, config.worker.slots);
    }

    #[test]
    fn config_file_sets_fields_and_rejects_typos() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lakeward.toml");
        std::fs::write(
            &path,
            "database_url = \"postgres://db/lakeward\"\n[worker]\nslots = 3\nheartbeat_interval = \"2s\"\n",
        )
        .unwrap();
        let config = Config::from_file(&path).unwrap();
        assert_eq!(config.database_url(), "postgres://db/lakeward");
        assert_eq!(config.worker.slots, 3);
        assert_eq!(config.worker.heartbeat_interval, Duration::from_secs(2));
        assert_eq!(config.web.bind, "127.0.0.1:8080");

        std::fs::write(&path, "[worker]\nslot = 3\n").unwrap();
        let error = Config::from_file(&path).unwrap_err().to_string();
        assert!(error.contains("unknown field `slot`"), "{error}");

        std::fs::write(&path, "[catalog]\nuri = \"http://nessie:19120/iceberg\"\n").unwrap();
        let config = Config::from_file(&path).unwrap();
        assert_eq!(config.catalog.uri.as_deref(), Some("http://nessie:19120/iceberg"));
        std::fs::write(&path, "[catalog]\nurl = \"http://nessie\"\n").unwrap();
        let error = Config::from_file(&path).unwrap_err().to_string();
        assert!(error.contains("unknown field `url`"), "{error}");
    }

    #[test]
    fn default_database_is_sqlite_under_home() {
        let config = Config { home: PathBuf::from("/srv/lw"), ..Config::default() };
        assert_eq!(config.database_url(), "sqlite:///srv/lw/lakeward.db");
    }
}
