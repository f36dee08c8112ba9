//! Process configuration: `lakeward.toml` plus `LAKEWARD_*` environment variables.
//!
//! Precedence, highest first: environment, the config file, built-in defaults. The config file is
//! `$LAKEWARD_CONFIG` if set, else `./lakeward.toml`, else `$LAKEWARD_HOME/lakeward.toml`.
//! This module only reads settings; it never touches the database or the DAG folder.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use crate::lake::tables::CatalogConfig;
use crate::time::serde_duration;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid environment variable {name}={value}: {message}")]
    Env { name: &'static str, value: String, message: String },
}

/// Everything a lakeward process needs to know before it starts.
#[derive(Debug, Clone, Deserialize)]
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
}

#[derive(Debug, Clone, Deserialize)]
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
}

#[derive(Debug, Clone, Deserialize)]
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

#[derive(Debug, Clone, Deserialize)]
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
        }
    }
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            poll_interval: Duration::from_secs(1),
            dag_refresh_interval: Duration::from_secs(2),
            heartbeat_timeout: Duration::from_secs(60),
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
    /// Loads the config file (if any) and applies the environment on top.
    pub fn load() -> Result<Config, ConfigError> {
        let env_home = std::env::var_os("LAKEWARD_HOME").map(PathBuf::from);
        let candidates = match std::env::var_os("LAKEWARD_CONFIG") {
            Some(path) => vec![PathBuf::from(path)],
            None => {
                let home = env_home.clone().unwrap_or_else(default_home);
                vec![PathBuf::from("lakeward.toml"), home.join("lakeward.toml")]
            }
        };
        let mut config = Config::default();
        for path in candidates {
            if path.is_file() {
                config = Config::from_file(&path)?;
                break;
            }
        }
        config.apply_env()?;
        Ok(config)
    }

    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        toml::from_str(&text)
            .map_err(|e| ConfigError::Parse { path: path.to_path_buf(), message: e.to_string() })
    }

    fn apply_env(&mut self) -> Result<(), ConfigError> {
        if let Some(home) = std::env::var_os("LAKEWARD_HOME") {
            self.home = PathBuf::from(home);
        }
        if let Ok(url) = std::env::var("LAKEWARD_DATABASE_URL") {
            self.database_url = Some(url);
        }
        if let Some(folder) = std::env::var_os("LAKEWARD_DAGS_FOLDER") {
            self.dags_folder = PathBuf::from(folder);
        }
        if let Ok(warehouse) = std::env::var("LAKEWARD_WAREHOUSE") {
            self.warehouse = Some(warehouse);
        }
        if let Ok(bind) = std::env::var("LAKEWARD_WEB_BIND") {
            self.web.bind = bind;
        }
        if let Ok(value) = std::env::var("LAKEWARD_WEB_SECURE_COOKIES") {
            self.web.secure_cookies = matches!(value.as_str(), "1" | "true" | "yes");
        }
        let catalog = [
            ("LAKEWARD_CATALOG_URI", &mut self.catalog.uri),
            ("LAKEWARD_CATALOG_WAREHOUSE", &mut self.catalog.warehouse),
            ("LAKEWARD_CATALOG_TOKEN", &mut self.catalog.token),
        ];
        for (name, field) in catalog {
            if let Ok(value) = std::env::var(name) {
                *field = Some(value).filter(|v| !v.is_empty());
            }
        }
        if let Ok(value) = std::env::var("LAKEWARD_WORKER_SLOTS") {
            self.worker.slots = value.parse().map_err(|_| ConfigError::Env {
                name: "LAKEWARD_WORKER_SLOTS",
                value: value.clone(),
                message: "expected a positive whole number".into(),
            })?;
        }
        Ok(())
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
            None => format!("sqlite://{}?mode=rwc", self.home.join("lakeward.db").display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(config.database_url(), "sqlite:///srv/lw/lakeward.db?mode=rwc");
    }
}
