//! What can be checked of `docker-compose.yml` without Docker: every `LAKEWARD_*` variable a
//! lakeward service sets is a setting that loads and passes the configuration's checks, every
//! lakeward service runs a command the CLI has, every service the lakeward services wait for
//! exists, the streaming DAGs' cluster is the compose file's Kafka service, and Prometheus and
//! Grafana are wired to the files `tests/it/prometheus.rs` runs for real.

use std::collections::BTreeMap;

use lakeward::config::Config;

/// The compose file's services, each as its lines (two-space-indented service names).
fn services(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut services = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut in_services = false;
    for line in text.lines() {
        if !line.starts_with(' ') && !line.is_empty() {
            in_services = line.starts_with("services:");
            current = None;
            continue;
        }
        if !in_services {
            continue;
        }
        if let Some(name) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':')) {
            if !name.starts_with(' ') {
                current = Some(name.to_string());
                services.insert(name.to_string(), Vec::new());
                continue;
            }
        }
        if let Some(name) = &current {
            services.get_mut(name).unwrap().push(line.to_string());
        }
    }
    services
}

/// `KEY: value` lines of `lines` whose key starts with `prefix`.
fn variables(lines: &[String], prefix: &str) -> Vec<(String, String)> {
    lines
        .iter()
        .filter_map(|l| l.trim().split_once(": "))
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(k, v)| (k.to_string(), v.trim().trim_matches('"').to_string()))
        .collect()
}

#[test]
fn the_compose_stack_sets_only_valid_settings_and_wires_kafka() {
    let text = std::fs::read_to_string("docker-compose.yml").unwrap();
    let services = services(&text);
    for needed in ["postgres", "minio", "kafka", "scheduler", "worker", "web"] {
        assert!(services.contains_key(needed), "no `{needed}` service in {:?}", services.keys());
    }
    // The shared lakeward settings (the `x-lakeward` anchor), then each service's own.
    let anchor: Vec<String> = text
        .lines()
        .skip_while(|l| !l.starts_with("x-lakeward:"))
        .take_while(|l| !l.starts_with("services:"))
        .map(String::from)
        .collect();
    let shared = variables(&anchor, "LAKEWARD_");
    assert!(shared.iter().any(|(k, v)| k == "LAKEWARD_KAFKA_BROKERS" && v == "kafka:9092"));
    for (name, lines) in services.iter().filter(|(_, l)| l.iter().any(|l| l.contains("lakeward"))) {
        let own = variables(lines, "LAKEWARD_");
        let vars = if own.is_empty() { shared.clone() } else { own };
        let config = Config::load_with(vars.clone(), Vec::new())
            .unwrap_or_else(|e| panic!("service `{name}`: {e}\n{vars:?}"));
        assert!(config.database_url().starts_with("postgres://"), "{name}");
    }
    // Every service the lakeward services wait for exists.
    let waited: Vec<&str> = anchor
        .iter()
        .skip_while(|l| l.trim() != "depends_on:")
        .skip(1)
        .take_while(|l| l.starts_with("    "))
        .filter(|l| !l.starts_with("      "))
        .filter_map(|l| l.trim().strip_suffix(':'))
        .collect();
    assert!(waited.contains(&"kafka") && waited.contains(&"postgres"), "{waited:?}");
    for name in waited {
        assert!(services.contains_key(name), "the lakeward services wait for `{name}`");
    }
    let kafka = &services["kafka"];
    let kafka_vars = variables(kafka, "KAFKA_");
    let listeners = kafka_vars.iter().find(|(k, _)| k == "KAFKA_ADVERTISED_LISTENERS").unwrap();
    assert!(listeners.1.contains("PLAINTEXT://kafka:9092"), "{listeners:?}");
    let roles = kafka_vars.iter().find(|(k, _)| k == "KAFKA_PROCESS_ROLES").unwrap();
    assert_eq!(roles.1, "broker,controller", "KRaft: no ZooKeeper");
    assert!(!text.contains("zookeeper"));
}

/// Prometheus in the stack reads the config `tests/it/prometheus.rs` checks, the token from
/// the secret its config names, and scrapes the web service on the port it listens on.
#[test]
fn prometheus_in_the_stack_scrapes_the_web_service_with_the_secret_token() {
    let text = std::fs::read_to_string("docker-compose.yml").unwrap();
    let services = services(&text);
    let prometheus = services.get("prometheus").expect("a prometheus service");
    assert!(prometheus.iter().any(|l| l.trim() == "- ./deploy/prometheus:/etc/prometheus:ro"));
    assert!(prometheus.iter().any(|l| l.trim() == "- lakeward_metrics_token"), "{prometheus:?}");
    assert!(text.contains(
        "secrets:\n  lakeward_metrics_token:\n    file: ./secrets/lakeward_metrics_token"
    ));
    let config = std::fs::read_to_string("deploy/prometheus/prometheus.yml").unwrap();
    assert!(config.contains("credentials_file: /run/secrets/lakeward_metrics_token"));
    assert!(!config.contains("credentials:"), "no token in the config itself");
    let web = variables(&services["web"], "LAKEWARD_");
    let bind = web.iter().find(|(k, _)| k == "LAKEWARD_WEB_BIND").unwrap();
    let port = bind.1.rsplit(':').next().unwrap();
    assert!(config.contains(&format!("targets: [\"web:{port}\"]")), "scrapes web:{port}");
    assert!(
        config.contains("- alerts.yml")
            && std::path::Path::new("deploy/prometheus/alerts.yml").exists()
    );
}

/// Grafana in the stack: provisioned with the stack's Prometheus as its data source and the
/// dashboard whose queries `tests/it/prometheus.rs` runs.
#[test]
fn grafana_is_provisioned_with_prometheus_and_the_dashboard() {
    let text = std::fs::read_to_string("docker-compose.yml").unwrap();
    let services = services(&text);
    let grafana = services.get("grafana").expect("a grafana service");
    for mount in [
        "- ./deploy/grafana/provisioning:/etc/grafana/provisioning:ro",
        "- ./deploy/grafana/dashboards:/var/lib/grafana/dashboards:ro",
    ] {
        assert!(grafana.iter().any(|l| l.trim() == mount), "{mount} in {grafana:?}");
    }
    let source =
        std::fs::read_to_string("deploy/grafana/provisioning/datasources/prometheus.yml").unwrap();
    assert!(source.contains("url: http://prometheus:9090") && source.contains("uid: prometheus"));
    assert!(services.contains_key("prometheus"));
    let provider =
        std::fs::read_to_string("deploy/grafana/provisioning/dashboards/lakeward.yml").unwrap();
    assert!(provider.contains("path: /var/lib/grafana/dashboards"));
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string("deploy/grafana/dashboards/lakeward.json").unwrap(),
    )
    .unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.iter().all(|p| p["datasource"]["uid"] == "prometheus"));
}

/// Every lakeward service's command is one the binary has, with arguments it takes: each is
/// run with `--help` appended, which parses the arguments and prints usage without starting.
#[test]
fn every_lakeward_service_command_is_a_cli_command() {
    let text = std::fs::read_to_string("docker-compose.yml").unwrap();
    let mut checked = 0;
    for (name, lines) in services(&text) {
        let Some(command) = lines.iter().find_map(|l| l.trim().strip_prefix("command: ")) else {
            continue;
        };
        let words: Vec<String> = serde_json::from_str(command)
            .unwrap_or_else(|e| panic!("service `{name}`: command {command} is not a list: {e}"));
        if words.first().map(String::as_str) != Some("lakeward") {
            continue;
        }
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_lakeward"))
            .args(&words[1..])
            .arg("--help")
            .env_remove("LAKEWARD_CONFIG")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "service `{name}`: `{}` is not a lakeward command: {}",
            words.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        checked += 1;
    }
    assert!(checked >= 3, "scheduler, worker and web");
}
