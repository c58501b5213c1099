//! Container logs: everything so far with the streams kept apart, or
//! followed line by line.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::{Stream, StreamExt};

use super::TestContainer;
use crate::docker::{self, Frame, containers};
use crate::error::Result;

/// A container's output so far, with stdout and stderr kept apart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Logs {
    /// Everything the container wrote to stdout.
    pub stdout: String,
    /// Everything the container wrote to stderr.
    pub stderr: String,
}

/// Which stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LogSource {
    /// Standard output (or a TTY's combined output).
    Stdout,
    /// Standard error.
    Stderr,
    /// Standard input echoed by Docker.
    Stdin,
}

/// One line of container output, without its line ending.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogLine {
    /// The stream it came from.
    pub source: LogSource,
    /// The text, decoded as UTF-8 (invalid bytes replaced).
    pub text: String,
}

/// Splits Docker's log frames (which follow writes, not lines) into lines,
/// per stream.
#[derive(Default)]
struct LineSplitter {
    partial: [Vec<u8>; 3],
}

impl LineSplitter {
    fn push(&mut self, source: LogSource, bytes: &[u8], out: &mut Vec<LogLine>) {
        let buf = &mut self.partial[source as usize];
        buf.extend_from_slice(bytes);
        while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
            let mut line: Vec<u8> = buf.drain(..=nl).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            out.push(LogLine {
                source,
                text: String::from_utf8_lossy(&line).into_owned(),
            });
        }
    }

    fn finish(&mut self, out: &mut Vec<LogLine>) {
        for (i, source) in [LogSource::Stdout, LogSource::Stderr, LogSource::Stdin]
            .into_iter()
            .enumerate()
        {
            let rest = std::mem::take(&mut self.partial[i]);
            if !rest.is_empty() {
                out.push(LogLine {
                    source,
                    text: String::from_utf8_lossy(&rest).into_owned(),
                });
            }
        }
    }
}

fn split(frame: Frame) -> (LogSource, bytes::Bytes) {
    match frame {
        Frame::Stdout(bytes) => (LogSource::Stdout, bytes),
        Frame::Stderr(bytes) => (LogSource::Stderr, bytes),
        Frame::Stdin(bytes) => (LogSource::Stdin, bytes),
    }
}

/// The container's lines as a stream, on the engine. With `follow`, it ends
/// when the container stops; `tail` limits it to the last lines.
pub(crate) fn line_stream(
    id: String,
    name: String,
    follow: bool,
    tail: Option<usize>,
) -> impl Stream<Item = Result<LogLine>> + Send + 'static {
    let mut splitter = LineSplitter::default();
    let mut done = false;
    containers::logs(id, name, follow, tail)
        .map(Some)
        .chain(futures::stream::iter([None]))
        .flat_map(move |frame| {
            let mut out = Vec::new();
            let mut err = None;
            match frame {
                _ if done => {}
                Some(Ok(frame)) => {
                    let (source, bytes) = split(frame);
                    splitter.push(source, &bytes, &mut out);
                }
                Some(Err(e)) => {
                    done = true;
                    err = Some(e);
                }
                None => splitter.finish(&mut out),
            }
            futures::stream::iter(out.into_iter().map(Ok).chain(err.map(Err)))
        })
}

/// Everything logged so far, on the engine.
async fn collect(id: String, name: String) -> Result<Logs> {
    let mut frames = containers::logs(id, name, false, None);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    while let Some(frame) = frames.next().await {
        match split(frame?) {
            (LogSource::Stderr, b) => err.extend_from_slice(&b),
            (_, b) => out.extend_from_slice(&b),
        }
    }
    Ok(Logs {
        stdout: String::from_utf8_lossy(&out).into_owned(),
        stderr: String::from_utf8_lossy(&err).into_owned(),
    })
}

/// The last `n` lines of the container log, both streams interleaved as
/// Docker recorded them. Used in error messages, so failures become text.
pub(crate) async fn tail_text(id: &str, name: &str, n: usize) -> String {
    let lines: Vec<Result<LogLine>> = line_stream(id.to_owned(), name.to_owned(), false, Some(n))
        .collect()
        .await;
    lines
        .into_iter()
        .map(|l| match l {
            Ok(l) => l.text,
            Err(e) => format!("(could not read the log: {e})"),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl TestContainer {
    /// Everything the container has logged so far, streams kept apart.
    ///
    /// # Errors
    ///
    /// [`Error::Docker`](crate::Error::Docker) if the daemon refuses or
    /// stops answering.
    pub async fn logs(&self) -> Result<Logs> {
        docker::run(collect(self.id().to_owned(), self.name().to_owned())).await
    }

    /// Follows the container log line by line, from its start; the stream
    /// ends when the container stops.
    pub fn follow_logs(&self) -> LogStream {
        LogStream::spawn(self.id().to_owned(), self.name().to_owned())
    }
}

/// A followed container log: yields lines from both streams as the
/// container writes them, and ends when the container stops.
///
/// Made by [`TestContainer::follow_logs`](crate::TestContainer::follow_logs).
/// It is read on the engine runtime and handed over through a channel, so
/// it can be polled from any executor. Dropping it stops the reading at the
/// container's next line (or its end).
#[derive(Debug)]
#[must_use = "streams do nothing unless polled"]
pub struct LogStream {
    rx: tokio::sync::mpsc::Receiver<Result<LogLine>>,
}

impl LogStream {
    fn spawn(id: String, name: String) -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let task = async move {
            let mut lines = std::pin::pin!(line_stream(id, name, true, None));
            while let Some(line) = lines.next().await {
                if tx.send(line).await.is_err() {
                    break;
                }
            }
        };
        if let Err(e) = docker::spawn(task) {
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            let _ = tx.try_send(Err(e));
            return LogStream { rx };
        }
        LogStream { rx }
    }
}

impl Stream for LogStream {
    type Item = Result<LogLine>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_split_into_lines_per_stream() {
        let mut s = LineSplitter::default();
        let mut out = Vec::new();
        s.push(LogSource::Stdout, b"hel", &mut out);
        s.push(LogSource::Stderr, b"oops\r\n", &mut out);
        s.push(LogSource::Stdout, b"lo\nwor", &mut out);
        s.finish(&mut out);
        let got: Vec<(LogSource, &str)> = out.iter().map(|l| (l.source, l.text.as_str())).collect();
        assert_eq!(
            got,
            [
                (LogSource::Stderr, "oops"),
                (LogSource::Stdout, "hello"),
                (LogSource::Stdout, "wor")
            ]
        );
    }
}
