//! What a failed test leaves to read. When a guard is dropped while its
//! thread panics (a failed assertion), the container's last log lines and
//! the transcript of its execs go to stderr, where `cargo test` shows them
//! under the failure; with `DOCKFIX_ARTIFACTS=<dir>`, its whole log, its
//! inspect JSON and the transcript are written to
//! `<dir>/<test>/<container>/` for CI to upload.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;

use super::ExecOutput;
use super::logs::{LogSource, line_stream, tail_text};
use crate::config;
use crate::docker::{self, containers};
use crate::error::{Error, Result, tail};

/// How many execs a transcript keeps: the latest.
const TRANSCRIPT_LEN: usize = 100;

/// How many lines of an exec's stderr its transcript entry keeps.
const STDERR_LINES: usize = 5;

/// How long a panicking test's Drop may spend reading the container.
const BUDGET: Duration = Duration::from_secs(10);

/// The execs run in one container, for the forensics of a failed test.
#[derive(Debug, Clone, Default)]
pub(crate) struct Transcript(Arc<Mutex<VecDeque<Entry>>>);

#[derive(Debug)]
struct Entry {
    command: String,
    outcome: String,
    took: Duration,
    stderr: String,
}

impl Transcript {
    /// Records how `command` went.
    pub(crate) fn record(&self, command: String, took: Duration, result: &Result<ExecOutput>) {
        let (outcome, stderr) = match result {
            Ok(out) => (
                format!("exit {}", out.exit_code),
                tail(&out.stderr, STDERR_LINES),
            ),
            Err(Error::ExecFailed {
                exit_code, stderr, ..
            }) => (format!("exit {exit_code}"), tail(stderr, STDERR_LINES)),
            Err(Error::ExecTimedOut { timeout, .. }) => {
                (format!("timed out after {timeout:?}"), String::new())
            }
            Err(e) => {
                let first = e.to_string();
                let first = first.lines().next().unwrap_or_default().to_owned();
                (format!("failed: {first}"), String::new())
            }
        };
        let mut entries = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() == TRANSCRIPT_LEN {
            entries.pop_front();
        }
        entries.push_back(Entry {
            command,
            outcome,
            took,
            stderr,
        });
    }

    /// Forgets every exec: a pool member starts a clean transcript with
    /// each holder.
    pub(crate) fn clear(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// One exec a line, oldest first, each followed by its stderr tail.
    fn render(&self, indent: &str) -> String {
        let entries = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut text = String::new();
        for e in entries.iter() {
            let _ = writeln!(
                text,
                "{indent}$ {}  -> {} in {:.0?}",
                e.command, e.outcome, e.took
            );
            for line in e.stderr.lines() {
                let _ = writeln!(text, "{indent}    stderr | {line}");
            }
        }
        text
    }

    fn is_empty(&self) -> bool {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).is_empty()
    }
}

/// The container a failed test leaves behind, as its guard saw it.
pub(crate) struct Subject<'a> {
    pub(crate) id: &'a str,
    pub(crate) name: &'a str,
    pub(crate) image: &'a str,
    pub(crate) transcript: &'a Transcript,
}

/// Called from Drop while the thread panics (`print`): prints the
/// container's last `DOCKFIX_LOGS_ON_PANIC` log lines (default 50) and its
/// execs; and writes its artifacts when `DOCKFIX_ARTIFACTS` is set (also
/// without `print`, for a pool member its holder tainted). Bounded; never
/// panics. `why` says what happened, for the first line.
pub(crate) fn report(subject: &Subject<'_>, why: &str, print: bool) {
    let env = config::env();
    let lines = if print { env.logs_on_panic } else { 0 };
    let artifacts = env.artifacts.as_ref().map(|root| {
        root.join(file_name(&test_name()))
            .join(file_name(subject.name))
    });
    if lines == 0 && artifacts.is_none() {
        return;
    }
    // The engine's own threads cannot wait for the engine.
    if docker::on_engine_thread() {
        return;
    }
    let (id, name) = (subject.id.to_owned(), subject.name.to_owned());
    let transcript = subject.transcript.render("");
    let dir = artifacts.clone();
    let read = docker::run(async move {
        let work = async {
            let tail = match lines {
                0 => None,
                n => Some(tail_text(&id, &name, n).await),
            };
            let written = match dir {
                Some(dir) => Some(write_artifacts(&id, &name, &dir, &transcript).await),
                None => None,
            };
            (tail, written)
        };
        tokio::time::timeout(BUDGET, work).await.map_err(|_| {
            Error::docker(
                "read for the failed test",
                &name,
                format!("gave up after {BUDGET:?}"),
            )
        })
    });
    let mut text = format!(
        "dockfix: {why} container {} ({}, id {:.12})\n",
        subject.name, subject.image, subject.id
    );
    match docker::block_on(read) {
        Err(e) => {
            let _ = writeln!(text, "dockfix: could not read it: {e}");
        }
        Ok((tail, written)) => {
            match tail {
                Some(t) if t.is_empty() => text.push_str("dockfix: its log is empty\n"),
                Some(t) => {
                    let _ = writeln!(text, "dockfix: the last {lines} lines of its log:");
                    for line in t.lines() {
                        let _ = writeln!(text, "    | {line}");
                    }
                }
                None => {}
            }
            match written {
                Some(Ok(dir)) => {
                    let _ = writeln!(
                        text,
                        "dockfix: its log, inspect and execs are in {}",
                        dir.display()
                    );
                }
                Some(Err(e)) => {
                    let _ = writeln!(text, "dockfix: could not write its artifacts: {e}");
                }
                None => {}
            }
        }
    }
    if lines > 0 && !subject.transcript.is_empty() {
        text.push_str("dockfix: its execs, oldest first:\n");
        text.push_str(&subject.transcript.render("    "));
    }
    if print {
        // `eprint!`, not a write to the stderr handle: libtest captures
        // the macro's output and shows it under the failed test.
        eprint!("{text}");
    }
}

/// Writes `log.txt` (both streams, as Docker recorded them; stderr lines
/// marked), `inspect.json` and `execs.txt` into `dir`.
async fn write_artifacts(
    id: &str,
    name: &str,
    dir: &Path,
    transcript: &str,
) -> std::result::Result<PathBuf, String> {
    let mut log = String::new();
    let mut lines = std::pin::pin!(line_stream(id.to_owned(), name.to_owned(), false, None));
    while let Some(line) = lines.next().await {
        match line {
            Ok(l) if l.source == LogSource::Stderr => {
                let _ = writeln!(log, "stderr | {}", l.text);
            }
            Ok(l) => {
                let _ = writeln!(log, "{}", l.text);
            }
            Err(e) => {
                let _ = writeln!(log, "(the log could not be read further: {e})");
                break;
            }
        }
    }
    let inspect = match containers::inspect_container(id, name).await {
        Ok(info) => serde_json::to_string_pretty(&info)
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")),
        Err(e) => serde_json::json!({ "error": e.to_string() }).to_string(),
    };
    let dir = dir.to_owned();
    let transcript = transcript.to_owned();
    let written = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("log.txt"), log)?;
        std::fs::write(dir.join("inspect.json"), inspect)?;
        std::fs::write(dir.join("execs.txt"), transcript)?;
        Ok::<_, std::io::Error>(dir)
    })
    .await;
    match written {
        Ok(Ok(dir)) => Ok(dir),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// The running test's name: libtest names each test's thread after it.
fn test_name() -> String {
    match std::thread::current().name() {
        Some(name) if name != "main" => name.to_owned(),
        _ => format!("process-{}", std::process::id()),
    }
}

/// `name` as one path component: `::` becomes `.`, and anything but
/// letters, digits, `_`, `-` and `.` becomes `_`.
fn file_name(name: &str) -> String {
    let name = name.replace("::", ".");
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_-.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    match clean.trim_matches('.') {
        "" => "_".to_owned(),
        c => c.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_and_container_names_become_one_path_component() {
        assert_eq!(file_name("pool::a_test"), "pool.a_test");
        assert_eq!(file_name("../../etc"), "_.._etc");
        assert_eq!(file_name(".."), "_");
        assert_eq!(file_name("a b/c"), "a_b_c");
    }

    #[test]
    fn the_transcript_keeps_the_latest_execs_with_their_stderr_tails() {
        let t = Transcript::default();
        for n in 0..TRANSCRIPT_LEN + 5 {
            let out = Ok(ExecOutput {
                exit_code: 1,
                stdout: String::new(),
                stderr: "a\nb\nc\nd\ne\nf\nlast\n".to_owned(),
            });
            t.record(format!("cmd {n}"), Duration::from_millis(3), &out);
        }
        let text = t.render("");
        assert!(!text.contains("$ cmd 4 "), "{text}");
        assert!(text.starts_with("$ cmd 5  -> exit 1 in 3ms\n"), "{text}");
        assert!(
            text.contains("stderr | last") && !text.contains("stderr | b"),
            "{text}"
        );
    }
}
