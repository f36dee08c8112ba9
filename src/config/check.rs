//! Checks a configuration as a whole and reports every problem at once, each naming the
//! setting and where its value came from, so one run of `lakeward config check` (or a
//! failed start) shows everything to fix.

use std::time::Duration;

use super::Config;

/// Every problem of `config`; `origin` says where a setting (`worker.slots`) was set.
pub fn problems(config: &Config, origin: &dyn Fn(&str) -> String) -> Vec<String> {
    let mut found = Vec::new();
    let mut problem = |setting: &str, text: String| {
        found.push(format!("{setting} {text} ({})", origin(setting)));
    };
    if config.worker.slots == 0 {
        problem("worker.slots", "= 0: a worker needs at least one slot".into());
    }
    if config.worker.queues.iter().all(|q| q.trim().is_empty()) {
        problem("worker.queues", "is empty: a worker must take tasks from some queue".into());
    }
    for (name, slots) in &config.pools {
        if *slots == 0 {
            problem(&format!("pools.{name}"), "= 0: a pool needs at least one slot".into());
        }
    }
    for (name, spec) in &config.channels {
        for text in spec.problems() {
            problem(&format!("channels.{name}"), format!(": {text}"));
        }
    }
    if config.notifications.max_attempts == 0 {
        problem("notifications.max_attempts", "= 0: a message needs at least one attempt".into());
    }
    if !(config.notifications.base_url.starts_with("http://")
        || config.notifications.base_url.starts_with("https://"))
    {
        problem("notifications.base_url", "must start with http:// or https://".into());
    }
    let durations = [
        ("notifications.retry_delay", config.notifications.retry_delay),
        ("notifications.timeout", config.notifications.timeout),
        ("scheduler.poll_interval", config.scheduler.poll_interval),
        ("scheduler.dag_refresh_interval", config.scheduler.dag_refresh_interval),
        ("scheduler.heartbeat_timeout", config.scheduler.heartbeat_timeout),
        ("worker.heartbeat_interval", config.worker.heartbeat_interval),
        ("worker.poll_interval", config.worker.poll_interval),
        ("web.session_lifetime", config.web.session_lifetime),
    ];
    for (setting, value) in durations {
        if value == Duration::ZERO {
            problem(setting, "= 0s: must be longer than zero".into());
        }
    }
    if config.scheduler.heartbeat_timeout <= config.worker.heartbeat_interval {
        problem(
            "scheduler.heartbeat_timeout",
            format!(
                "= {}: must be longer than worker.heartbeat_interval ({}), or every worker \
                 would be presumed dead between two heartbeats",
                humantime::format_duration(config.scheduler.heartbeat_timeout),
                humantime::format_duration(config.worker.heartbeat_interval)
            ),
        );
    }
    if let Err(why) = check_bind(&config.web.bind) {
        problem("web.bind", format!("= \"{}\": {why}", config.web.bind));
    }
    if let Some(url) = &config.database_url {
        if crate::store::Backend::of_url(url).is_none() {
            problem("database_url", "is neither sqlite://… nor postgres://…".into());
        }
    }
    if let Some(location) = &config.warehouse {
        let remote = location.contains("://");
        let known = ["s3://", "s3a://", "file://"];
        if remote && !known.iter().any(|scheme| location.starts_with(scheme)) {
            problem("warehouse", format!("= \"{location}\": use a folder or s3://bucket/prefix"));
        }
    }
    if let Some(uri) = &config.catalog.uri {
        let host = uri
            .strip_prefix("http://")
            .or_else(|| uri.strip_prefix("https://"))
            .and_then(|rest| rest.split('/').next())
            .filter(|host| !host.is_empty());
        if host.is_none() {
            problem("catalog.uri", format!("= \"{uri}\": expected an http:// or https:// URL"));
        }
    }
    if !config.kafka.brokers.trim().is_empty() {
        if let Err(e) = crate::stream::Brokers::new(&config.kafka.brokers) {
            problem("kafka.brokers", format!("= \"{}\": {e}", config.kafka.brokers));
        }
    }
    if config.sql.timeout.is_zero() {
        problem("sql.timeout", "= 0s: every query would be stopped at once".into());
    }
    if config.sql.max_rows == 0 {
        problem("sql.max_rows", "= 0: every answer would be empty".into());
    }
    found
}

/// Whether `bind` is `HOST:PORT` (an IP address or a name, and a port number).
fn check_bind(bind: &str) -> Result<(), &'static str> {
    if bind.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(());
    }
    let (host, port) = bind.rsplit_once(':').ok_or("expected HOST:PORT, such as 127.0.0.1:8080")?;
    if host.is_empty() || host.contains(['/', ' ']) {
        return Err("expected HOST:PORT, such as 127.0.0.1:8080");
    }
    port.parse::<u16>().map(|_| ()).map_err(|_| "the port must be a number from 0 to 65535")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_reported_with_its_origin() {
        let mut config = Config::default();
        config.worker.slots = 0;
        config.pools.insert("warehouse".into(), 0);
        config.web.bind = "localhost".into();
        config.scheduler.heartbeat_timeout = Duration::from_secs(5);
        config.catalog.uri = Some("nessie:19120".into());
        config.database_url = Some("mysql://db".into());
        let origin = |setting: &str| {
            if setting == "worker.slots" {
                "LAKEWARD_WORKER_SLOTS".into()
            } else {
                "lakeward.toml".into()
            }
        };
        let found = problems(&config, &origin);
        assert_eq!(
            found,
            [
                "worker.slots = 0: a worker needs at least one slot (LAKEWARD_WORKER_SLOTS)",
                "pools.warehouse = 0: a pool needs at least one slot (lakeward.toml)",
                "scheduler.heartbeat_timeout = 5s: must be longer than worker.heartbeat_interval \
                 (5s), or every worker would be presumed dead between two heartbeats (lakeward.toml)",
                "web.bind = \"localhost\": expected HOST:PORT, such as 127.0.0.1:8080 (lakeward.toml)",
                "database_url is neither sqlite://… nor postgres://… (lakeward.toml)",
                "catalog.uri = \"nessie:19120\": expected an http:// or https:// URL (lakeward.toml)",
            ]
        );
        assert!(problems(&Config::default(), &origin).is_empty());
    }
}
