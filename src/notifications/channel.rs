//! Channels: where notifications go (`[channels.<name>]` in `lakeward.toml`), and sending one
//! message to one channel: a JSON webhook, a Slack-compatible incoming webhook, or e-mail.
//!
//! Secrets (a Slack URL, a bearer token, an SMTP password) are never written in the file:
//! it names an environment variable or a file that holds them, read at each send so a
//! rotated secret is picked up. Errors never contain a secret (URLs are left out).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::message::Message;
use super::smtp;
use super::SendError;

/// One channel's settings.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ChannelSpec {
    /// A JSON POST of the message (every field, plus `text` and an absolute `url`).
    Webhook {
        url: String,
        /// Sent as `Authorization: Bearer <token>`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<Secret>,
    },
    /// A Slack (or Mattermost, Rocket.Chat, …) incoming webhook: `{"text": …}`. The URL is
    /// the credential, so it is a secret.
    Slack {
        url: Secret,
    },
    Email(EmailSpec),
}

/// An SMTP submission server and the message's addresses.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EmailSpec {
    pub host: String,
    #[serde(default = "submission_port")]
    pub port: u16,
    #[serde(default)]
    pub security: Security,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    pub from: String,
    pub to: Vec<String>,
    /// PEM certificates to trust instead of the system's (a private relay's CA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

fn submission_port() -> u16 {
    587
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Security {
    /// Plain TCP upgraded with `STARTTLS` before anything is sent (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: only for a relay on the same host or network.
    None,
}

/// Where a secret is: `{ env = "SLACK_WEBHOOK_URL" }` or `{ file = "/run/secrets/smtp" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Secret {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
}

impl Secret {
    /// The secret's value (a file's trailing newline removed), or what is wrong, which
    /// never includes the value.
    pub fn reveal(&self) -> Result<String, String> {
        match (&self.env, &self.file) {
            (Some(name), None) => std::env::var(name)
                .ok()
                .filter(|value| !value.is_empty())
                .ok_or_else(|| format!("environment variable {name} is not set")),
            (None, Some(path)) => match std::fs::read_to_string(path) {
                Ok(text) if !text.trim().is_empty() => Ok(text.trim_end().to_string()),
                Ok(_) => Err(format!("secret file {} is empty", path.display())),
                Err(e) => Err(format!("cannot read secret file {}: {e}", path.display())),
            },
            _ => {
                Err("a secret is `{ env = \"NAME\" }` or `{ file = \"PATH\" }`, one of them".into())
            }
        }
    }
}

impl Secret {
    /// What is wrong with where the secret is said to be, if anything (not whether it is
    /// there: only the processes that send need it).
    fn problem(&self) -> Option<String> {
        match (&self.env, &self.file) {
            (Some(_), None) | (None, Some(_)) => None,
            _ => Some(
                "a secret is `{ env = \"NAME\" }` or `{ file = \"PATH\" }`, one of them".into(),
            ),
        }
    }
}

impl ChannelSpec {
    /// What is wrong with these settings, if anything.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut secret =
            |secret: Option<&Secret>| problems.extend(secret.and_then(Secret::problem));
        match self {
            ChannelSpec::Webhook { url, token } => {
                secret(token.as_ref());
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    problems.push("url must start with http:// or https://".into());
                }
            }
            ChannelSpec::Slack { url } => secret(Some(url)),
            ChannelSpec::Email(email) => {
                secret(email.password.as_ref());
                if email.to.is_empty() {
                    problems.push("`to` must name at least one address".into());
                }
                if email.password.is_some() != email.username.is_some() {
                    problems.push("username and password go together".into());
                }
            }
        }
        problems
    }

    /// The secrets this channel needs that cannot be read here (said without their values).
    pub fn unreadable_secrets(&self) -> Vec<String> {
        let secrets = match self {
            ChannelSpec::Webhook { token, .. } => vec![token.as_ref()],
            ChannelSpec::Slack { url } => vec![Some(url)],
            ChannelSpec::Email(email) => vec![email.password.as_ref()],
        };
        secrets.into_iter().flatten().filter_map(|s| s.reveal().err()).collect()
    }
}

/// What sending needs beyond a channel's settings: one HTTP client for every webhook.
pub struct Senders {
    http: reqwest::Client,
    timeout: Duration,
}

impl Senders {
    pub fn new(timeout: Duration) -> Senders {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("lakeward/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Senders { http, timeout }
    }

    /// Sends `message` to the channel; `base_url` makes its link absolute.
    pub async fn send(
        &self,
        spec: &ChannelSpec,
        message: &Message,
        base_url: &str,
    ) -> Result<(), SendError> {
        match spec {
            ChannelSpec::Webhook { url, token } => {
                let mut request = self.http.post(url).json(&message.webhook_body(base_url));
                if let Some(token) = token {
                    request = request.bearer_auth(token.reveal().map_err(SendError::permanent)?);
                }
                self.post(request).await
            }
            ChannelSpec::Slack { url } => {
                let url = url.reveal().map_err(SendError::permanent)?;
                self.post(self.http.post(url).json(&message.slack_body(base_url))).await
            }
            ChannelSpec::Email(email) => {
                let credentials = match (&email.username, &email.password) {
                    (Some(user), Some(password)) => {
                        Some((user.clone(), password.reveal().map_err(SendError::permanent)?))
                    }
                    _ => None,
                };
                let submission = smtp::Submission {
                    host: email.host.clone(),
                    port: email.port,
                    security: email.security,
                    credentials,
                    tls: trust(email.ca_file.as_ref())?,
                    timeout: self.timeout,
                };
                let body = message.text(base_url);
                let mail = smtp::Mail {
                    from: &email.from,
                    to: &email.to,
                    subject: &message.subject(),
                    body: &body,
                };
                smtp::send(&submission, &mail).await
            }
        }
    }

    async fn post(&self, request: reqwest::RequestBuilder) -> Result<(), SendError> {
        // `without_url`: a Slack URL is a secret, and reqwest's errors quote the URL.
        let response = request
            .send()
            .await
            .map_err(|e| SendError::retryable(format!("request failed: {}", e.without_url())))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let message = format!("the receiver answered HTTP {status}");
        // A refused request (bad URL, bad token, bad payload) will be refused again.
        let retry = status.is_server_error()
            || matches!(status.as_u16(), 408 | 425 | 429)
            || status.is_redirection();
        Err(if retry { SendError::retryable(message) } else { SendError::permanent(message) })
    }
}

/// TLS settings trusting the certificates of `ca_file`, or the system's.
fn trust(ca_file: Option<&PathBuf>) -> Result<Arc<rustls::ClientConfig>, SendError> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certificates = rustls_pki_types::CertificateDer::pem_file_iter(path)
                .map_err(|e| SendError::permanent(format!("ca_file {}: {e}", path.display())))?;
            for certificate in certificates {
                let certificate = certificate.map_err(|e| {
                    SendError::permanent(format!("ca_file {}: {e}", path.display()))
                })?;
                roots.add(certificate).map_err(|e| {
                    SendError::permanent(format!("ca_file {}: {e}", path.display()))
                })?;
            }
        }
        None => {
            for certificate in rustls_native_certs::load_native_certs().certs {
                // A system certificate rustls cannot use is simply not trusted.
                let _ = roots.add(certificate);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SendError::permanent(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_read_from_toml_with_secrets_by_reference() {
        let text = r#"
            [ops]
            kind = "webhook"
            url = "https://hooks.example.com/lakeward"
            token = { env = "LAKEWARD_NOTIFY_TEST_TOKEN" }

            [team]
            kind = "slack"
            url = { file = "/run/secrets/slack" }

            [mail]
            kind = "email"
            host = "smtp.example.com"
            username = "lakeward"
            password = { env = "SMTP_PASSWORD" }
            from = "lakeward@example.com"
            to = ["data@example.com"]
        "#;
        let channels: std::collections::BTreeMap<String, ChannelSpec> =
            toml::from_str(text).unwrap();
        let ChannelSpec::Email(mail) = &channels["mail"] else { panic!("{channels:?}") };
        assert_eq!((mail.port, mail.security), (587, Security::Starttls));
        assert!(matches!(&channels["team"], ChannelSpec::Slack { url } if url.file.is_some()));
        let bad = toml::from_str::<ChannelSpec>("kind = \"slack\"\nurl = \"https://hooks\"\n");
        assert!(bad.unwrap_err().to_string().contains("invalid type"));
        let typo =
            toml::from_str::<ChannelSpec>("kind = \"webhook\"\nurl = \"http://x\"\nurls = 1");
        assert!(typo.unwrap_err().to_string().contains("unknown field `urls`"));
    }

    #[test]
    fn problems_name_the_missing_secret_without_revealing_any() {
        let spec = ChannelSpec::Slack {
            url: Secret { env: Some("LAKEWARD_NOTIFY_TEST_UNSET".into()), file: None },
        };
        assert!(spec.problems().is_empty());
        let unset = "environment variable LAKEWARD_NOTIFY_TEST_UNSET is not set";
        assert_eq!(spec.unreadable_secrets(), [unset]);
        let both = Secret { env: Some("A".into()), file: Some("/b".into()) };
        assert!(both.reveal().unwrap_err().contains("one of them"));
        let spec = ChannelSpec::Slack { url: both };
        assert!(spec.problems()[0].contains("one of them"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "s3cret\n").unwrap();
        assert_eq!(Secret { env: None, file: Some(path) }.reveal().unwrap(), "s3cret");
    }
}
