//! A small SMTP client (RFC 5321) for e-mail notifications: one plain-text message per
//! connection, over STARTTLS (default), implicit TLS or plain TCP, with `AUTH PLAIN`.
//!
//! It sends what a notification needs and nothing more (no pipelining, no attachments); a
//! full mail library would cost more build time than this file. It never logs: errors carry
//! the server's reply, which never contains the password.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::channel::Security;
use super::SendError;

/// Where and how to submit mail.
pub struct Submission {
    pub host: String,
    pub port: u16,
    pub security: Security,
    /// User name and password for `AUTH PLAIN`.
    pub credentials: Option<(String, String)>,
    pub tls: Arc<rustls::ClientConfig>,
    /// Longest wait for any one reply.
    pub timeout: Duration,
}

/// One message.
pub struct Mail<'a> {
    pub from: &'a str,
    pub to: &'a [String],
    pub subject: &'a str,
    pub body: &'a str,
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

type Connection = BufReader<Box<dyn Stream>>;

/// Submits `mail`: connects, secures, authenticates, sends and quits.
pub async fn send(submission: &Submission, mail: &Mail<'_>) -> Result<(), SendError> {
    let address = format!("{}:{}", submission.host, submission.port);
    let tcp = tokio::time::timeout(submission.timeout, TcpStream::connect(&address))
        .await
        .map_err(|_| SendError::retryable(format!("connecting to {address} timed out")))?
        .map_err(|e| SendError::retryable(format!("cannot connect to {address}: {e}")))?;
    let stream: Box<dyn Stream> = match submission.security {
        Security::Tls => Box::new(secure(submission, tcp).await?),
        Security::Starttls | Security::None => Box::new(tcp),
    };
    let mut conn = BufReader::new(stream);
    let session = Session { timeout: submission.timeout };
    session.expect(&mut conn, &[220]).await?;
    let me = crate::process::hostname();
    session.command(&mut conn, &format!("EHLO {me}"), &[250]).await?;
    if submission.security == Security::Starttls {
        session.command(&mut conn, "STARTTLS", &[220]).await?;
        let tcp = conn.into_inner();
        conn = BufReader::new(Box::new(secure(submission, tcp).await?));
        session.command(&mut conn, &format!("EHLO {me}"), &[250]).await?;
    }
    if let Some((user, password)) = &submission.credentials {
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("\0{user}\0{password}").as_bytes());
        session.command(&mut conn, &format!("AUTH PLAIN {token}"), &[235]).await?;
    }
    session.command(&mut conn, &format!("MAIL FROM:<{}>", mail.from), &[250]).await?;
    for to in mail.to {
        session.command(&mut conn, &format!("RCPT TO:<{to}>"), &[250, 251]).await?;
    }
    session.command(&mut conn, "DATA", &[354]).await?;
    let data = message_data(mail, chrono::Utc::now(), &me);
    session.write(&mut conn, &data).await?;
    session.expect(&mut conn, &[250]).await?;
    // The message is accepted; a failed goodbye changes nothing.
    let _ = session.command(&mut conn, "QUIT", &[221]).await;
    Ok(())
}

/// A TLS session over `stream` with the submission's host as the server name.
async fn secure<S>(
    submission: &Submission,
    stream: S,
) -> Result<tokio_rustls::client::TlsStream<S>, SendError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let name = rustls_pki_types::ServerName::try_from(submission.host.clone()).map_err(|e| {
        SendError::permanent(format!("`{}` is not a TLS server name: {e}", submission.host))
    })?;
    let connector = tokio_rustls::TlsConnector::from(submission.tls.clone());
    tokio::time::timeout(submission.timeout, connector.connect(name, stream))
        .await
        .map_err(|_| SendError::retryable("the TLS handshake timed out"))?
        .map_err(|e| SendError::permanent(format!("TLS with {}: {e}", submission.host)))
}

/// Commands and replies under a time limit.
struct Session {
    timeout: Duration,
}

impl Session {
    async fn command(
        &self,
        conn: &mut Connection,
        line: &str,
        expected: &[u16],
    ) -> Result<String, SendError> {
        self.write(conn, &format!("{line}\r\n")).await?;
        self.expect(conn, expected).await.map_err(|mut e| {
            // Name the command, not its arguments (AUTH's carry the password).
            let verb = line.split_whitespace().next().unwrap_or_default();
            e.message = format!("{verb}: {}", e.message);
            e
        })
    }

    async fn write(&self, conn: &mut Connection, text: &str) -> Result<(), SendError> {
        let io = async {
            conn.get_mut().write_all(text.as_bytes()).await?;
            conn.get_mut().flush().await
        };
        tokio::time::timeout(self.timeout, io)
            .await
            .map_err(|_| SendError::retryable("the mail server stopped answering"))?
            .map_err(|e| SendError::retryable(format!("writing to the mail server: {e}")))
    }

    /// Reads one reply (all its lines) and checks its code.
    async fn expect(&self, conn: &mut Connection, expected: &[u16]) -> Result<String, SendError> {
        let read = async {
            let mut text = String::new();
            loop {
                let mut line = String::new();
                if conn.read_line(&mut line).await? == 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the mail server closed the connection",
                    ));
                }
                text.push_str(&line);
                // `250-more follows`, `250 last line`.
                if line.as_bytes().get(3) != Some(&b'-') {
                    return Ok(text);
                }
            }
        };
        let text = tokio::time::timeout(self.timeout, read)
            .await
            .map_err(|_| SendError::retryable("the mail server stopped answering"))?
            .map_err(|e| SendError::retryable(format!("reading from the mail server: {e}")))?;
        let code: u16 = text.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
        if expected.contains(&code) {
            return Ok(text);
        }
        let reply = text.lines().last().unwrap_or_default().trim().to_string();
        let message = format!("the mail server answered `{reply}`");
        // 4xx: try again later; 5xx: the request itself is refused.
        Err(if (400..500).contains(&code) {
            SendError::retryable(message)
        } else {
            SendError::permanent(message)
        })
    }
}

/// The message as sent after `DATA`: headers, a base64 body (safe for any text and any
/// server), and the terminating dot.
fn message_data(mail: &Mail<'_>, now: chrono::DateTime<chrono::Utc>, host: &str) -> String {
    let one_line = |text: &str| text.replace(['\r', '\n'], " ");
    let subject = one_line(mail.subject);
    let subject = if subject.is_ascii() {
        subject
    } else {
        let encoded = base64::engine::general_purpose::STANDARD.encode(subject.as_bytes());
        format!("=?utf-8?b?{encoded}?=")
    };
    let body = base64::engine::general_purpose::STANDARD.encode(mail.body.as_bytes());
    let mut data = format!(
        "From: {}\r\nTo: {}\r\nSubject: {subject}\r\nDate: {}\r\nMessage-ID: <{}.lakeward@{host}>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n",
        one_line(mail.from),
        one_line(&mail.to.join(", ")),
        now.to_rfc2822(),
        now.timestamp_micros(),
    );
    // Base64 has no `.` at a line start, so no dot-stuffing is needed.
    for chunk in body.as_bytes().chunks(76) {
        data.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        data.push_str("\r\n");
    }
    data.push_str(".\r\n");
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_carry_encoded_subject_and_body_and_end_with_a_dot() {
        let to = vec!["ops@example.com".to_string(), "data@example.com".to_string()];
        let mail = Mail {
            from: "lakeward@example.com",
            to: &to,
            subject: "task `ingest` failed\r\nBcc: evil@example.com — again",
            body: ".starts with a dot\nsecond line",
        };
        let now = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let data = message_data(&mail, now, "host");
        let (headers, body) = data.split_once("\r\n\r\n").unwrap();
        assert!(headers.contains("To: ops@example.com, data@example.com\r\n"), "{headers}");
        assert_eq!(headers.lines().filter(|l| l.starts_with("Bcc")).count(), 0, "{headers}");
        let subject = headers.lines().find(|l| l.starts_with("Subject: ")).unwrap();
        let encoded = subject.strip_prefix("Subject: =?utf-8?b?").unwrap().strip_suffix("?=");
        let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.unwrap()).unwrap();
        assert_eq!(
            String::from_utf8(decoded).unwrap(),
            "task `ingest` failed  Bcc: evil@example.com — again"
        );
        assert!(body.ends_with("\r\n.\r\n"));
        let text: String = body.trim_end_matches("\r\n.\r\n").split("\r\n").collect();
        let decoded = base64::engine::general_purpose::STANDARD.decode(text).unwrap();
        assert_eq!(String::from_utf8(decoded).unwrap(), mail.body);
    }
}
