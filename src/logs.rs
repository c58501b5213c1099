//! Container logs: everything so far with the streams kept apart, or
//! followed line by line.

use std::pin::Pin;
use std::task::{Context, Poll};

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptionsBuilder;
use futures::{Stream, StreamExt};

use crate::error::{Error, Result};

/// A container's output so far, with stdout and stderr kept apart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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

fn split(frame: LogOutput) -> (LogSource, impl AsRef<[u8]>) {
    match frame {
        LogOutput::StdOut { message } | LogOutput::Console { message } => {
            (LogSource::Stdout, message)
        }
        LogOutput::StdErr { message } => (LogSource::Stderr, message),
        LogOutput::StdIn { message } => (LogSource::Stdin, message),
    }
}

/// The container's lines as a stream, on the engine. With `follow`, it ends
/// when the container stops; `tail` limits it to the last lines.
pub(crate) fn line_stream(
    docker: Docker,
    id: String,
    follow: bool,
    tail: Option<usize>,
) -> impl Stream<Item = Result<LogLine>> + Send + 'static {
    let tail = tail.map_or_else(|| "all".to_owned(), |n| n.to_string());
    let opts = LogsOptionsBuilder::new()
        .follow(follow)
        .stdout(true)
        .stderr(true)
        .tail(&tail)
        .build();
    let frames = docker.logs(&id, Some(opts));
    let mut splitter = LineSplitter::default();
    let mut done = false;
    frames
        .map(Some)
        .chain(futures::stream::iter([None]))
        .flat_map(move |frame| {
            let mut out = Vec::new();
            let mut err = None;
            match frame {
                _ if done => {}
                Some(Ok(frame)) => {
                    let (source, bytes) = split(frame);
                    splitter.push(source, bytes.as_ref(), &mut out);
                }
                Some(Err(e)) => {
                    done = true;
                    err = Some(Error::docker("logs", id.clone(), e));
                }
                None => splitter.finish(&mut out),
            }
            futures::stream::iter(out.into_iter().map(Ok).chain(err.map(Err)))
        })
}

/// Everything logged so far, on the engine.
pub(crate) async fn collect(
    docker: &Docker,
    id: &str,
    name: &str,
    tail: Option<usize>,
) -> Result<Logs> {
    let tail = tail.map_or_else(|| "all".to_owned(), |n| n.to_string());
    let opts = LogsOptionsBuilder::new()
        .stdout(true)
        .stderr(true)
        .tail(&tail)
        .build();
    crate::retry::gate()?;
    let mut frames = docker.logs(id, Some(opts));
    let mut logs = Logs::default();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    while let Some(frame) = frames.next().await {
        match split(frame.map_err(|e| Error::docker("logs", name, e))?) {
            (LogSource::Stderr, b) => err.extend_from_slice(b.as_ref()),
            (_, b) => out.extend_from_slice(b.as_ref()),
        }
    }
    logs.stdout = String::from_utf8_lossy(&out).into_owned();
    logs.stderr = String::from_utf8_lossy(&err).into_owned();
    Ok(logs)
}

/// The last `n` lines of the container log, both streams interleaved as
/// Docker recorded them. Used in error messages, so failures become text.
pub(crate) async fn tail_text(docker: &Docker, id: &str, n: usize) -> String {
    let lines: Vec<Result<LogLine>> = line_stream(docker.clone(), id.to_owned(), false, Some(n))
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
    pub(crate) fn spawn(id: String) -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let task = async move {
            let docker = match crate::engine::docker().await {
                Ok(d) => d,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            let mut lines = std::pin::pin!(line_stream(docker, id, true, None));
            while let Some(line) = lines.next().await {
                if tx.send(line).await.is_err() {
                    break;
                }
            }
        };
        match crate::engine::get() {
            Ok(engine) => engine.spawn(task),
            Err(e) => {
                let (tx, rx) = tokio::sync::mpsc::channel(1);
                let _ = tx.try_send(Err(e));
                return LogStream { rx };
            }
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
