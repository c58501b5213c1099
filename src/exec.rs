//! Running commands in a container: output with streams kept apart, a
//! timeout that kills what it cuts off, and exit-code checking.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::engine;
use crate::error::{Error, Result, command_line, tail};
use crate::retry::{self, Retry};

/// How many lines of stderr an [`Error::ExecFailed`] carries.
const STDERR_TAIL: usize = 20;

/// What a finished command produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// The exit code.
    pub exit_code: i64,
    /// Standard output, decoded as UTF-8 (invalid bytes replaced).
    pub stdout: String,
    /// Standard error, decoded as UTF-8 (invalid bytes replaced).
    pub stderr: String,
}

impl ExecOutput {
    /// True when the command exited 0.
    pub fn success(&self) -> bool {
        self.exit_code == 0
    }
}

/// A command to run in a container, configured by chained calls and run by
/// `.await`. Made by [`TestContainer::exec`](crate::TestContainer::exec)
/// and [`TestContainer::exec_ok`](crate::TestContainer::exec_ok).
///
/// # Examples
///
/// ```no_run
/// # async fn demo(c: &dockfix::TestContainer) -> dockfix::Result<()> {
/// use std::time::Duration;
///
/// let out = c
///     .exec(["sh", "-c", "cat; echo done >&2"])
///     .stdin("hello")
///     .env("LANG", "C")
///     .timeout(Duration::from_secs(5))
///     .await?;
/// assert_eq!((out.stdout.as_str(), out.stderr.as_str()), ("hello", "done\n"));
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "an exec does nothing until it is awaited"]
pub struct Exec<'a> {
    container: &'a crate::TestContainer,
    req: ExecRequest,
}

#[derive(Debug)]
pub(crate) struct ExecRequest {
    pub(crate) cmd: Vec<String>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) env: Vec<String>,
    pub(crate) working_dir: Option<String>,
    pub(crate) user: Option<String>,
    pub(crate) stdin: Option<Vec<u8>>,
    pub(crate) checked: bool,
    pub(crate) invalid: Option<Error>,
}

impl ExecRequest {
    pub(crate) fn new<I, S>(cmd: I, checked: bool) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let cmd: Vec<String> = cmd.into_iter().map(Into::into).collect();
        let invalid = cmd
            .is_empty()
            .then(|| Error::invalid("exec", "", "the command is empty"));
        ExecRequest {
            cmd,
            timeout: None,
            env: Vec::new(),
            working_dir: None,
            user: None,
            stdin: None,
            checked,
            invalid,
        }
    }
}

impl<'a> Exec<'a> {
    pub(crate) fn new(container: &'a crate::TestContainer, req: ExecRequest) -> Self {
        Exec { container, req }
    }

    /// Cuts the command off after `limit`: the process and its children are
    /// killed and the exec returns [`Error::ExecTimedOut`].
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.req.timeout = Some(limit);
        self
    }

    /// Sets an environment variable for this command.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let (key, value) = (key.into(), value.into());
        match env_entry(&key, &value) {
            Ok(e) => self.req.env.push(e),
            Err(reason) => {
                self.req.invalid.get_or_insert(Error::invalid(
                    "env",
                    format!("{key}={value}"),
                    reason,
                ));
            }
        }
        self
    }

    /// The working directory of the command.
    pub fn working_dir(mut self, dir: impl Into<String>) -> Self {
        self.req.working_dir = Some(dir.into());
        self
    }

    /// The user (`name`, `uid` or `uid:gid`) the command runs as.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.req.user = Some(user.into());
        self
    }

    /// Bytes written to the command's standard input, which is then closed.
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.req.stdin = Some(bytes.into());
        self
    }

    /// Turns a non-zero exit into [`Error::ExecFailed`].
    pub fn checked(mut self) -> Self {
        self.req.checked = true;
        self
    }
}

impl<'a> IntoFuture for Exec<'a> {
    type Output = Result<ExecOutput>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<ExecOutput>> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        let id = self.container.id().to_owned();
        let name = self.container.name().to_owned();
        Box::pin(async move {
            if let Some(err) = self.req.invalid {
                return Err(err);
            }
            engine::run(async move {
                let docker = engine::docker().await?;
                run(&docker, &id, &name, self.req).await
            })
            .await
        })
    }
}

/// `KEY=value`, refusing keys Docker would mangle.
pub(crate) fn env_entry(key: &str, value: &str) -> std::result::Result<String, &'static str> {
    if key.is_empty() {
        return Err("the variable name is empty");
    }
    if key.contains('=') {
        return Err("the variable name contains `=`");
    }
    if key.contains('\0') || value.contains('\0') {
        return Err("NUL bytes cannot be passed in the environment");
    }
    Ok(format!("{key}={value}"))
}

/// Runs one exec on the engine.
pub(crate) async fn run(
    docker: &Docker,
    id: &str,
    name: &str,
    req: ExecRequest,
) -> Result<ExecOutput> {
    let command = command_line(&req.cmd);
    let options = CreateExecOptions {
        attach_stdin: Some(req.stdin.is_some()),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        env: (!req.env.is_empty()).then(|| req.env.clone()),
        cmd: Some(req.cmd.clone()),
        user: req.user.clone(),
        working_dir: req.working_dir.clone(),
        ..Default::default()
    };
    let created = retry::call("exec", name, Retry::Yes, None, || {
        docker.create_exec(id, options.clone())
    })
    .await?;
    let exec_id = created.id;
    // Not retried: a second start would run the command twice.
    let started = retry::call("exec start", name, Retry::No, None, || {
        docker.start_exec(&exec_id, None)
    })
    .await?;
    let StartExecResults::Attached {
        mut output,
        mut input,
    } = started
    else {
        return Err(Error::Docker {
            operation: "exec start",
            target: name.to_owned(),
            status: None,
            message: "the daemon did not attach the exec's streams".to_owned(),
        });
    };
    let stdin = req.stdin;
    let collect = async move {
        let feed = async {
            if let Some(bytes) = stdin {
                // A command that exits without reading its input closes the
                // pipe; that is not an error of ours.
                let _ = input.write_all(&bytes).await;
                let _ = input.shutdown().await;
            }
        };
        let read = async {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            while let Some(frame) = output.next().await {
                match frame {
                    Ok(LogOutput::StdOut { message }) | Ok(LogOutput::Console { message }) => {
                        out.extend_from_slice(&message)
                    }
                    Ok(LogOutput::StdErr { message }) => err.extend_from_slice(&message),
                    Ok(LogOutput::StdIn { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok((out, err))
        };
        let ((), read) = futures::join!(feed, read);
        read
    };
    let streams = match req.timeout {
        None => collect.await,
        Some(limit) => match tokio::time::timeout(limit, collect).await {
            Ok(r) => r,
            Err(_) => {
                let killed = kill_exec(docker, id, &exec_id).await;
                return Err(Error::ExecTimedOut {
                    container: name.to_owned(),
                    command,
                    timeout: limit,
                    killed,
                });
            }
        },
    };
    let (out, err) = streams.map_err(|e| Error::docker("exec", name, e))?;
    let exit_code = exit_code(docker, &exec_id, name).await?;
    let output = ExecOutput {
        exit_code,
        stdout: String::from_utf8_lossy(&out).into_owned(),
        stderr: String::from_utf8_lossy(&err).into_owned(),
    };
    if req.checked && exit_code != 0 {
        return Err(Error::ExecFailed {
            container: name.to_owned(),
            command,
            exit_code,
            stderr: tail(&output.stderr, STDERR_TAIL),
        });
    }
    Ok(output)
}

/// The exit code, once the daemon has recorded it (it can lag the end of
/// the output stream by a moment).
async fn exit_code(docker: &Docker, exec_id: &str, name: &str) -> Result<i64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info = inspect_exec(docker, exec_id, name).await?;
        if info.running != Some(true) {
            if let Some(code) = info.exit_code {
                return Ok(code);
            }
        }
        if Instant::now() >= deadline {
            return Err(Error::Docker {
                operation: "exec inspect",
                target: name.to_owned(),
                status: None,
                message: "the exec's output ended but no exit code was recorded".to_owned(),
            });
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn inspect_exec(
    docker: &Docker,
    exec_id: &str,
    name: &str,
) -> Result<bollard::models::ExecInspectResponse> {
    retry::call("exec inspect", name, Retry::Yes, None, || {
        docker.inspect_exec(exec_id)
    })
    .await
}

/// Kills a timed-out exec and everything it started. Docker has no API to
/// stop an exec, so this signals the process directly: the daemon reports
/// its host pid, which is reachable when the daemon runs on this machine
/// (checked against the process's cgroup, so a pid from another machine's
/// namespace is never signalled). Returns whether the process is gone.
async fn kill_exec(docker: &Docker, container_id: &str, exec_id: &str) -> bool {
    let Ok(info) = inspect_exec(docker, exec_id, container_id).await else {
        return false;
    };
    if info.running == Some(false) {
        return true;
    }
    let Some(pid) = info
        .pid
        .and_then(|p| i32::try_from(p).ok())
        .filter(|p| *p > 0)
    else {
        return false;
    };
    let victims = process_tree(pid, container_id);
    if victims.is_empty() {
        return false;
    }
    for pid in &victims {
        let _ = crate::sys::kill(*pid);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match inspect_exec(docker, exec_id, container_id).await {
            Ok(info) if info.running == Some(false) => return true,
            Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            Err(_) => return false,
        }
    }
    false
}

/// `root` and its descendants, if `root` is in the container's cgroup.
fn process_tree(root: i32, container_id: &str) -> Vec<i32> {
    let in_container = std::fs::read_to_string(format!("/proc/{root}/cgroup"))
        .is_ok_and(|cg| cg.contains(container_id));
    if !in_container {
        return Vec::new();
    }
    let mut parents: Vec<(i32, i32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            if let Some(ppid) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| parse_ppid(&s))
            {
                parents.push((pid, ppid));
            }
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    tree
}

/// The parent pid from `/proc/<pid>/stat`; the command name may contain
/// spaces and parentheses, so fields are counted after the last `)`.
fn parse_ppid(stat: &str) -> Option<i32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ppid_is_read_after_the_command_name() {
        assert_eq!(parse_ppid("42 (sleep) S 7 42 42 0"), Some(7));
        assert_eq!(parse_ppid("42 (a) b) c) R 9 1"), Some(9));
        assert_eq!(parse_ppid("garbage"), None);
    }

    #[test]
    fn env_entries_are_checked() {
        assert_eq!(env_entry("A", "b=c"), Ok("A=b=c".to_owned()));
        assert!(env_entry("", "x").is_err());
        assert!(env_entry("A=B", "x").is_err());
        assert!(env_entry("A", "x\0").is_err());
    }
}
