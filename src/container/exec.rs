//! Running commands in a container: output with streams kept apart, a
//! timeout that kills what it cuts off, and exit-code checking.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use super::TestContainer;
use crate::docker::{self, Frame, exec};
use crate::error::{Error, Result, command_line, tail};
use crate::spec::{check_user, container_path, env_entry, no_nul_words};

/// How many lines of stderr an [`Error::ExecFailed`] carries.
const STDERR_TAIL: usize = 20;

/// What a finished command produced.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
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
    container: &'a TestContainer,
    req: ExecRequest,
}

#[derive(Debug)]
struct ExecRequest {
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
    fn new<I, S>(cmd: I, checked: bool) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let cmd: Vec<String> = cmd.into_iter().map(Into::into).collect();
        let invalid = if cmd.is_empty() {
            Some(Error::invalid("exec", "", "the command is empty"))
        } else {
            no_nul_words(&cmd)
                .err()
                .map(|reason| Error::invalid("exec", format!("{cmd:?}"), reason))
        };
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

impl TestContainer {
    /// Runs `cmd` in the container; await the returned [`Exec`] (after
    /// setting a timeout, env, stdin, …) for its [`ExecOutput`].
    /// A non-zero exit is returned, not an error; see [`exec_ok`](Self::exec_ok).
    pub fn exec<I, S>(&self, cmd: I) -> Exec<'_>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Exec {
            container: self,
            req: ExecRequest::new(cmd, false),
        }
    }

    /// Like [`exec`](Self::exec), but a non-zero exit is
    /// [`Error::ExecFailed`] with the command, the code and the tail of
    /// stderr.
    pub fn exec_ok<I, S>(&self, cmd: I) -> Exec<'_>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Exec {
            container: self,
            req: ExecRequest::new(cmd, true),
        }
    }
}

impl Exec<'_> {
    /// Cuts the command off after `limit`, counted from the moment the
    /// exec is awaited to its exit code (creating and starting the exec
    /// included): the process and its children are killed and the exec
    /// returns [`Error::ExecTimedOut`].
    ///
    /// The command gets `DOCKFIX_EXEC=<random>` in its environment, which
    /// its children inherit. As root on the daemon's machine the kill
    /// signals the host pids, each through a pidfd after checking that it
    /// is the container's (so a pid reused by a host process is never
    /// signalled); where they are out of reach (a non-root user
    /// in the `docker` group, a remote daemon) an exec as root inside the
    /// container kills every process that carries the marker, which needs
    /// `sh`, `grep` and `kill` in the image. The kill takes at most about
    /// 1.5 s past the limit; when nothing could be signalled the error says
    /// so at once (`killed: false`).
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

    /// The working directory of the command: an absolute path, cleaned.
    pub fn working_dir(mut self, dir: impl Into<String>) -> Self {
        let dir = dir.into();
        match container_path(&dir) {
            Ok(clean) => self.req.working_dir = Some(clean),
            Err(reason) => {
                self.req
                    .invalid
                    .get_or_insert(Error::invalid("working_dir", dir, reason));
            }
        }
        self
    }

    /// The user (`name`, `uid` or `uid:gid`) the command runs as.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        let user = user.into();
        match check_user(&user) {
            Ok(()) => self.req.user = Some(user),
            Err(reason) => {
                self.req
                    .invalid
                    .get_or_insert(Error::invalid("user", user, reason));
            }
        }
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

    /// Runs the command from a task already on the engine.
    pub(crate) async fn run_on_engine(self) -> Result<ExecOutput> {
        if let Some(err) = self.req.invalid {
            return Err(err);
        }
        let (command, started) = (command_line(&self.req.cmd), Instant::now());
        let result = run(self.container.id(), self.container.name(), self.req).await;
        self.container
            .transcript()
            .record(command, started.elapsed(), &result);
        result
    }
}

impl<'a> IntoFuture for Exec<'a> {
    type Output = Result<ExecOutput>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<ExecOutput>> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        let id = self.container.id().to_owned();
        let name = self.container.name().to_owned();
        let transcript = self.container.transcript().clone();
        Box::pin(async move {
            if let Some(err) = self.req.invalid {
                return Err(err);
            }
            let (command, started) = (command_line(&self.req.cmd), Instant::now());
            let result = docker::run(async move { run(&id, &name, self.req).await }).await;
            transcript.record(command, started.elapsed(), &result);
            result
        })
    }
}

/// Runs one exec on the engine; with a timeout, the whole of it (create,
/// start, output and exit code) is bounded, and what it started is killed
/// when the time is up.
async fn run(id: &str, name: &str, req: ExecRequest) -> Result<ExecOutput> {
    let command = command_line(&req.cmd);
    let (checked, limit) = (req.checked, req.timeout);
    let mut req = req;
    // A timed exec carries a marker, by which its processes are found.
    let marker = limit.map(|_| marker());
    if let Some(marker) = &marker {
        req.env.push(marker.clone());
    }
    // Where the exec got to, for the kill if the time runs out.
    let mut started: Option<String> = None;
    let finish = run_to_exit(id, name, req, &mut started);
    let output = match limit {
        None => finish.await?,
        Some(limit) => match tokio::time::timeout(limit, finish).await {
            Ok(output) => output?,
            Err(_) => {
                // Nothing was started: nothing runs.
                let killed = match (&started, &marker) {
                    (Some(exec_id), Some(marker)) => kill_exec(id, name, exec_id, marker).await,
                    _ => true,
                };
                return Err(Error::ExecTimedOut {
                    container: name.to_owned(),
                    command,
                    timeout: limit,
                    killed,
                });
            }
        },
    };
    if checked && output.exit_code != 0 {
        return Err(Error::ExecFailed {
            container: name.to_owned(),
            command,
            exit_code: output.exit_code,
            stderr: tail(&output.stderr, STDERR_TAIL),
        });
    }
    Ok(output)
}

/// Creates and starts the exec, feeds its stdin, reads its output and
/// waits for its exit code. `started` gets the exec's id just before it
/// is started.
async fn run_to_exit(
    id: &str,
    name: &str,
    req: ExecRequest,
    started: &mut Option<String>,
) -> Result<ExecOutput> {
    let exec_id = exec::create(
        id,
        name,
        exec::Command {
            cmd: &req.cmd,
            env: &req.env,
            user: req.user.as_deref(),
            working_dir: req.working_dir.as_deref(),
            stdin: req.stdin.is_some(),
        },
    )
    .await?;
    let exec_id = started.insert(exec_id);
    let docker::Attached {
        mut output,
        mut input,
    } = exec::start(exec_id, name).await?;
    let feed = async {
        if let Some(bytes) = req.stdin {
            // A command that exits without reading its input closes the
            // pipe; that is not an error of ours.
            let _ = input.write_all(&bytes).await;
            let _ = input.shutdown().await;
        }
    };
    let read = async {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        while let Some(frame) = output.next().await {
            match frame? {
                Frame::Stdout(bytes) => out.extend_from_slice(&bytes),
                Frame::Stderr(bytes) => err.extend_from_slice(&bytes),
                Frame::Stdin(_) => {}
            }
        }
        Ok::<_, Error>((out, err))
    };
    let ((), read) = futures::join!(feed, read);
    let (out, err) = read?;
    Ok(ExecOutput {
        exit_code: exit_code(exec_id, name).await?,
        stdout: String::from_utf8_lossy(&out).into_owned(),
        stderr: String::from_utf8_lossy(&err).into_owned(),
    })
}

/// The exit code, once the daemon has recorded it (it can lag the end of
/// the output stream by a moment).
async fn exit_code(exec_id: &str, name: &str) -> Result<i64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info = exec::inspect(exec_id, name).await?;
        if info.running != Some(true) {
            if let Some(code) = info.exit_code {
                return Ok(code);
            }
        }
        if Instant::now() >= deadline {
            return Err(Error::docker(
                "exec inspect",
                name,
                "the exec's output ended but no exit code was recorded",
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The variable every exec with a timeout carries, with a value of its
/// own, so that its processes can be found from inside the container.
const MARKER: &str = "DOCKFIX_EXEC";

/// How long the kill of a timed-out exec may take, past its timeout.
const KILL_BUDGET: Duration = Duration::from_millis(1500);

/// Finds every process of the container whose environment holds the
/// marker given as `$1`, and kills it: run as root inside the container.
/// Exits 0 when it killed something. (Not `grep -F`: busybox's misses a
/// match in a file of NUL-separated strings; the marker has no pattern
/// characters.)
const KILL_SCRIPT: &str = r#"n=0
for d in /proc/[0-9]*; do
  if grep -qs -- "$1" "$d/environ" 2>/dev/null; then
    kill -9 "${d#/proc/}" 2>/dev/null && n=$((n+1))
  fi
done
[ "$n" -gt 0 ]"#;

/// A fresh marker value, `DOCKFIX_EXEC=<random>`.
fn marker() -> String {
    use rand::Rng;
    let token: u128 = rand::rng().random();
    format!("{MARKER}={token:032x}")
}

/// Kills a timed-out exec and everything it started; returns whether
/// nothing of it runs any more. Docker has no call to stop an exec.
///
/// From the host first: the daemon reports the exec's host pid, which this
/// process can signal when the daemon runs here and it may (as root; the
/// pid's cgroup is checked, so a pid of another machine's namespace is
/// never signalled). Otherwise (a non-root user in the `docker` group, a
/// remote daemon) from inside: an exec as root kills every process whose
/// environment holds the exec's marker, which its children inherit; that
/// needs `sh`, `grep` and `kill` in the image. Bounded by [`KILL_BUDGET`].
async fn kill_exec(container_id: &str, name: &str, exec_id: &str, marker: &str) -> bool {
    let deadline = Instant::now() + KILL_BUDGET;
    let Ok(info) = exec::inspect(exec_id, container_id).await else {
        return false;
    };
    if info.running == Some(false) {
        return true;
    }
    let host_pid = info
        .pid
        .and_then(|p| i32::try_from(p).ok())
        .filter(|p| *p > 0);
    let sent = match host_pid {
        Some(pid) if kill_from_host(pid, container_id) => true,
        _ => {
            let budget = deadline.saturating_duration_since(Instant::now());
            tokio::time::timeout(budget, kill_from_inside(container_id, name, marker))
                .await
                .unwrap_or(false)
        }
    };
    if !sent {
        // Nothing could be signalled: say so now, not after a wait.
        return matches!(
            exec::inspect(exec_id, container_id).await,
            Ok(info) if info.running == Some(false)
        );
    }
    loop {
        match exec::inspect(exec_id, container_id).await {
            Ok(info) if info.running == Some(false) => return true,
            Ok(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            _ => return false,
        }
    }
}

/// SIGKILLs `pid` and its descendants from the host; false when `pid` is
/// not this machine's process of the container, or may not be signalled.
fn kill_from_host(pid: i32, container_id: &str) -> bool {
    // Its children, named before it dies (they are then reparented).
    let children = descendants(pid);
    // The root first: if it is not the container's (a pid of another
    // machine's namespace), nothing is signalled at all.
    if !matches!(kill_in_container(pid, container_id), Ok(true)) {
        return false;
    }
    for child in children {
        let _ = kill_in_container(child, container_id);
    }
    true
}

/// SIGKILLs `pid` if, at the moment of the signal, it is a process of the
/// container: a pidfd pins the process first, its cgroup is checked next,
/// and the signal goes through the pidfd, so a pid that left the container
/// and was reused by a process of the host is never signalled. On kernels
/// without pidfds (before 5.3) the cgroup is checked just before a plain
/// kill. `Ok(false)`: not the container's, nothing sent.
fn kill_in_container(pid: i32, container_id: &str) -> std::io::Result<bool> {
    let in_container = || {
        std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .is_ok_and(|cg| cg.contains(container_id))
    };
    match crate::sys::pidfd_open(pid) {
        Ok(fd) => {
            if !in_container() {
                return Ok(false);
            }
            crate::sys::pidfd_kill(&fd).map(|()| true)
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
            if !in_container() {
                return Ok(false);
            }
            crate::sys::kill(pid).map(|()| true)
        }
        Err(e) => Err(e),
    }
}

/// Runs [`KILL_SCRIPT`] as root in the container; true when it killed
/// something.
async fn kill_from_inside(container_id: &str, name: &str, marker: &str) -> bool {
    let cmd = [
        "sh".to_owned(),
        "-c".to_owned(),
        KILL_SCRIPT.to_owned(),
        "dockfix-kill".to_owned(),
        marker.to_owned(),
    ];
    let command = exec::Command {
        cmd: &cmd,
        env: &[],
        user: Some("0"),
        working_dir: Some("/"),
        stdin: false,
    };
    let Ok(exec_id) = exec::create(container_id, name, command).await else {
        return false;
    };
    let Ok(docker::Attached { mut output, .. }) = exec::start(&exec_id, name).await else {
        return false;
    };
    while let Some(frame) = output.next().await {
        if frame.is_err() {
            return false;
        }
    }
    matches!(exit_code(&exec_id, name).await, Ok(0))
}

/// The descendants of `root`, from this machine's `/proc`.
fn descendants(root: i32) -> Vec<i32> {
    let parents = crate::sys::processes();
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
    tree.remove(0);
    tree
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process of the host is never signalled by the exec kill, however
    /// it is named: its cgroup is not the container's.
    #[test]
    fn a_process_outside_the_container_is_never_signalled() {
        let mut host = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = i32::try_from(host.id()).unwrap();
        let container = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert!(matches!(kill_in_container(pid, container), Ok(false)));
        assert!(!kill_from_host(pid, container));
        assert!(
            host.try_wait().unwrap().is_none(),
            "the host process was killed"
        );
        host.kill().unwrap();
        host.wait().unwrap();
        // A process that has exited: its pidfd cannot be opened, nothing
        // is sent.
        assert!(
            kill_in_container(pid, container).is_err_and(|e| e.raw_os_error() == Some(libc::ESRCH))
        );
    }
}
