//! The log handle a job writes to. Where lines end up (database, terminal) is the caller's choice.
//! A line longer than [`MAX_LINE_BYTES`] is cut there and marked, whoever wrote it.

use tokio::sync::mpsc;

use crate::domain::{LogLine, Stream};

/// Longest log line kept; the rest of a longer line is dropped and the cut marked.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// `text` cut to [`MAX_LINE_BYTES`] at a character boundary, saying how much was dropped.
pub fn cap_line(mut text: String, dropped_already: usize) -> String {
    if text.len() <= MAX_LINE_BYTES && dropped_already == 0 {
        return text;
    }
    let mut cut = MAX_LINE_BYTES.min(text.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let dropped = text.len() - cut + dropped_already;
    text.truncate(cut);
    text.push_str(&format!(" [line truncated: {dropped} more bytes]"));
    text
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
        let text = cap_line(text.into(), 0);
        let line = LogLine { at: crate::time::now_micros(), stream, text };
        let _ = self.tx.send(line);
    }

    pub fn info(&self, text: impl Into<String>) {
        self.write(Stream::System, text);
    }
}
