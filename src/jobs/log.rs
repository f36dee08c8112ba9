//! The log handle a job writes to. Where lines end up (database, terminal) is the caller's choice.

use tokio::sync::mpsc;

/// Which stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
    /// Written by lakeward itself (start, end, errors).
    System,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
            Stream::System => "system",
        }
    }
}

#[derive(Debug, Clone)]
pub struct LogLine {
    pub at: crate::time::Micros,
    pub stream: Stream,
    pub text: String,
}

/// A cheap, clonable writer of log lines. Writing never blocks and never fails: if the
/// receiving side is gone, lines are dropped.
#[derive(Clone)]
pub struct LogSink {
    tx: mpsc::UnboundedSender<LogLine>,
}

impl LogSink {
    pub fn channel() -> (LogSink, mpsc::UnboundedReceiver<LogLine>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (LogSink { tx }, rx)
    }

    pub fn write(&self, stream: Stream, text: impl Into<String>) {
        let line = LogLine { at: crate::time::now_micros(), stream, text: text.into() };
        let _ = self.tx.send(line);
    }

    pub fn info(&self, text: impl Into<String>) {
        self.write(Stream::System, text);
    }
}
