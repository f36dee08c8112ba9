//! Settings the long-running commands take as flags (`--database-url`, `--dags-folder` for
//! those that schedule, `--bind`/`--port` for those that serve, `--slots` and `--queues` for
//! those that work), as users of Airflow's CLI expect. A flag wins over
//! its `LAKEWARD_*` variable and the config file, and is checked with the rest of the
//! configuration (a bad value is reported as coming from the flag). This module only turns
//! flags into settings; what the commands do lives in `serve`.

use std::path::PathBuf;

use crate::config::{Config, Override};

/// Where a process keeps its state.
#[derive(clap::Args, Debug, Default)]
pub struct DatabaseFlag {
    /// Database URL: `sqlite://PATH` (the file is created if missing) or
    /// `postgres://USER:PASSWORD@HOST:PORT/DB`.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
}

/// Where a scheduler finds its DAGs.
#[derive(clap::Args, Debug, Default)]
pub struct DagsFlag {
    /// Folder of DAG files (`*.toml`).
    #[arg(long, value_name = "PATH")]
    pub dags_folder: Option<PathBuf>,
}

/// Where the web server listens.
#[derive(clap::Args, Debug, Default)]
pub struct ListenFlags {
    /// Address to listen on, `HOST:PORT`.
    #[arg(long, value_name = "HOST:PORT")]
    pub bind: Option<String>,
    /// Port to listen on, on the configured host (`web.bind`'s, 127.0.0.1 by default).
    #[arg(long, conflicts_with = "bind")]
    pub port: Option<u16>,
}

/// What a worker takes on.
#[derive(clap::Args, Debug, Default)]
pub struct WorkFlags {
    /// Queues to take tasks from (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub queues: Option<Vec<String>>,
    /// Tasks run at the same time.
    #[arg(long)]
    pub slots: Option<usize>,
}

impl DatabaseFlag {
    pub fn settings(&self, out: &mut Vec<Override>) {
        if let Some(url) = &self.database_url {
            out.push(Override::flag("--database-url", &["database_url"], url.clone().into()));
        }
    }
}

impl DagsFlag {
    pub fn settings(&self, out: &mut Vec<Override>) {
        if let Some(folder) = &self.dags_folder {
            let value = folder.display().to_string().into();
            out.push(Override::flag("--dags-folder", &["dags_folder"], value));
        }
    }
}

impl ListenFlags {
    pub fn settings(&self, out: &mut Vec<Override>) {
        if let Some(bind) = &self.bind {
            out.push(Override::flag("--bind", &["web", "bind"], bind.clone().into()));
        }
    }

    /// `--port` replaces the port of the configured address, keeping its host.
    pub fn apply_port(&self, config: &mut Config) {
        if let Some(port) = self.port {
            let bind = &config.web.bind;
            let host = bind.rsplit_once(':').map_or(bind.as_str(), |(host, _)| host);
            config.web.bind = format!("{host}:{port}");
        }
    }
}

impl WorkFlags {
    pub fn settings(&self, out: &mut Vec<Override>) {
        if let Some(queues) = &self.queues {
            let list = queues.iter().map(|q| toml::Value::from(q.as_str())).collect::<Vec<_>>();
            out.push(Override::flag("--queues", &["worker", "queues"], list.into()));
        }
        if let Some(slots) = self.slots {
            let slots = i64::try_from(slots).unwrap_or(i64::MAX);
            out.push(Override::flag("--slots", &["worker", "slots"], slots.into()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_keeps_the_configured_host() {
        let mut config = Config::default();
        config.web.bind = "0.0.0.0:8080".into();
        ListenFlags { bind: None, port: Some(9000) }.apply_port(&mut config);
        assert_eq!(config.web.bind, "0.0.0.0:9000");
        config.web.bind = "[::1]:8080".into();
        ListenFlags { bind: None, port: Some(0) }.apply_port(&mut config);
        assert_eq!(config.web.bind, "[::1]:0");
    }
}
