//! `TestContainer`: the guard that owns one container from the moment it
//! is created until it is removed.

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{ContainerCreateBody, ContainerInspectResponse};
use bollard::query_parameters::{CreateContainerOptionsBuilder, StopContainerOptionsBuilder};
use futures::StreamExt;

use crate::engine;
use crate::error::{Error, Result};
use crate::exec::{Exec, ExecRequest};
use crate::logs::{self, LogStream, Logs};
use crate::ready;
use crate::retry::{self, Retry};
use crate::spec::ContainerSpec;

/// How many log lines an [`Error::NotReady`] carries.
const LOG_TAIL: usize = 20;

/// A running container that is removed when the guard goes away.
///
/// Made by [`ContainerSpec::start`] (or [`TestContainer::builder`]). The
/// guard owns the container from the moment Docker creates it: if start or
/// readiness fails, the container is removed before the error is returned.
///
/// # Cleanup
///
/// - [`remove(self)`](TestContainer::remove) removes the container now and
///   returns the error if that fails: the deterministic, fallible path.
/// - Dropping the guard hands a force-remove (container and anonymous
///   volumes) to dockfix's engine runtime and returns at once, so the
///   daemon's removal overlaps the next test. It works in any context: a
///   current-thread or multi-thread tokio runtime, no runtime, a panicking
///   test, `spawn_blocking`. It never panics; a failure is printed on stderr.
///   With [`ContainerSpec::wait_on_drop`] or `DOCKFIX_DROP=wait`, Drop
///   blocks until the removal is done instead.
/// - When the process exits normally (including a test binary whose tests
///   failed), an exit hook waits for every removal still in flight and
///   removes the containers of guards that were never dropped (a guard in
///   a `static`), bounded by `DOCKFIX_EXIT_TIMEOUT` seconds (default 30).
/// - [`keep(self)`](TestContainer::keep) or `DOCKFIX_KEEP=1` leave the
///   container running for debugging.
///
/// # Resource leaking
///
/// Nothing runs when the process is killed by a signal (SIGKILL, a
/// cancelled CI job, SIGINT without a handler), or aborts. Its containers
/// stay, labelled `dockfix.managed=true` with this process's session, so
/// `dockfix sweep` (or `docker rm -f $(docker ps -aq --filter
/// label=dockfix.session=<id>)`) removes them later. Kept containers stay
/// labelled too.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> dockfix::Result<()> {
/// use std::time::Duration;
/// use dockfix::TestContainer;
///
/// let c = TestContainer::builder("dockfix-test/busybox:latest")
///     .cmd(["sleep", "300"])
///     .start()
///     .await?;
/// let out = c
///     .exec(["sh", "-c", "echo hi; exit 3"])
///     .timeout(Duration::from_secs(5))
///     .await?;
/// assert_eq!((out.exit_code, out.stdout.as_str()), (3, "hi\n"));
/// assert!(c.exec_ok(["false"]).await.is_err());
/// c.remove().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "dropping the guard removes the container"]
pub struct TestContainer {
    id: String,
    name: String,
    image: String,
    ports: HashMap<u16, u16>,
    /// `Some` while Drop should remove the container; the flag says whether
    /// Drop waits for it.
    removal: Option<DropMode>,
}

#[derive(Debug, Clone, Copy)]
struct DropMode {
    wait: bool,
}

/// A container's resource use, from one Docker stats sample.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct ContainerStats {
    /// CPU use over the sample, in percent of one core (200 = two cores
    /// busy), computed as Docker's CLI does: the container's CPU time
    /// delta over the host's, times the online CPUs.
    pub cpu_percent: f64,
    /// Memory in use, in bytes, without the page cache.
    pub memory_usage: u64,
    /// The memory limit, in bytes (the host's memory when unlimited).
    pub memory_limit: u64,
    /// `memory_usage` in percent of `memory_limit`.
    pub memory_percent: f64,
}

impl ContainerStats {
    fn from_response(s: &bollard::models::ContainerStatsResponse) -> Self {
        let total = |c: &Option<bollard::models::ContainerCpuStats>| {
            let c = c.as_ref();
            (
                c.and_then(|c| c.cpu_usage.as_ref())
                    .and_then(|u| u.total_usage)
                    .unwrap_or(0),
                c.and_then(|c| c.system_cpu_usage).unwrap_or(0),
            )
        };
        let (cpu, system) = total(&s.cpu_stats);
        let (pre_cpu, pre_system) = total(&s.precpu_stats);
        let cpus = s
            .cpu_stats
            .as_ref()
            .and_then(|c| c.online_cpus)
            .unwrap_or(1)
            .max(1);
        let (cpu_delta, system_delta) = (
            cpu.saturating_sub(pre_cpu),
            system.saturating_sub(pre_system),
        );
        let cpu_percent = if system_delta > 0 {
            cpu_delta as f64 / system_delta as f64 * f64::from(cpus) * 100.0
        } else {
            0.0
        };
        let memory = s.memory_stats.as_ref();
        let usage = memory.and_then(|m| m.usage).unwrap_or(0);
        // The page cache is not the container's to keep: cgroup v1 calls it
        // total_inactive_file, v2 inactive_file.
        let cache = memory
            .and_then(|m| m.stats.as_ref())
            .and_then(|st| {
                st.get("total_inactive_file")
                    .or_else(|| st.get("inactive_file"))
                    .copied()
            })
            .unwrap_or(0);
        let memory_usage = usage.saturating_sub(cache);
        let memory_limit = memory.and_then(|m| m.limit).unwrap_or(0);
        let memory_percent = if memory_limit > 0 {
            memory_usage as f64 / memory_limit as f64 * 100.0
        } else {
            0.0
        };
        ContainerStats {
            cpu_percent,
            memory_usage,
            memory_limit,
            memory_percent,
        }
    }
}

/// What a container is doing, from Docker's inspect.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ContainerState {
    /// Docker's status word: `created`, `running`, `paused`, `restarting`,
    /// `removing`, `exited` or `dead`.
    pub status: String,
    /// True while the main process runs.
    pub running: bool,
    /// The main process's exit code, once it has exited.
    pub exit_code: Option<i64>,
    /// True if the kernel killed it for exceeding its memory limit.
    pub oom_killed: bool,
    /// The health status (`starting`, `healthy`, `unhealthy`) when the
    /// container has a healthcheck.
    pub health: Option<String>,
}

impl TestContainer {
    /// A spec for `image`; finish it with [`ContainerSpec::start`].
    pub fn builder(image: impl Into<String>) -> ContainerSpec {
        ContainerSpec::new(image)
    }

    /// The container id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The container name: the spec's prefix and a random suffix.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The image it was started from.
    pub fn image(&self) -> &str {
        &self.image
    }

    /// The address published ports are reached at: `127.0.0.1`, or the
    /// daemon's host when `DOCKER_HOST` names a remote daemon.
    pub fn host(&self) -> String {
        engine::daemon_host().unwrap_or_else(|| "127.0.0.1".to_owned())
    }

    /// The host port that container TCP `port` is published on.
    ///
    /// # Errors
    ///
    /// [`Error::PortNotExposed`] if the spec did not `expose(port)`.
    pub fn host_port(&self, port: u16) -> Result<u16> {
        self.ports
            .get(&port)
            .copied()
            .ok_or_else(|| Error::PortNotExposed {
                container: self.name.clone(),
                port,
            })
    }

    /// Runs `cmd` in the container; await the returned [`Exec`] (after
    /// setting a timeout, env, stdin, …) for its [`ExecOutput`](crate::ExecOutput).
    /// A non-zero exit is returned, not an error; see [`exec_ok`](Self::exec_ok).
    pub fn exec<I, S>(&self, cmd: I) -> Exec<'_>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Exec::new(self, ExecRequest::new(cmd, false))
    }

    /// Like [`exec`](Self::exec), but a non-zero exit is
    /// [`Error::ExecFailed`] with the command, the code and the tail of
    /// stderr.
    pub fn exec_ok<I, S>(&self, cmd: I) -> Exec<'_>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Exec::new(self, ExecRequest::new(cmd, true))
    }

    /// Everything the container has logged so far, streams kept apart.
    ///
    /// # Errors
    ///
    /// [`Error::Docker`] if the daemon refuses.
    pub async fn logs(&self) -> Result<Logs> {
        let (id, name) = (self.id.clone(), self.name.clone());
        engine::run(async move {
            let docker = engine::docker().await?;
            let limit = retry::config().call_timeout;
            match tokio::time::timeout(limit, logs::collect(&docker, &id, &name, None)).await {
                Ok(logs) => logs,
                Err(_) => Err(Error::Docker {
                    operation: "logs",
                    target: name,
                    status: None,
                    message: format!("no complete answer within the per-call timeout of {limit:?}"),
                }),
            }
        })
        .await
    }

    /// Follows the container log line by line, from its start; the stream
    /// ends when the container stops.
    pub fn follow_logs(&self) -> LogStream {
        LogStream::spawn(self.id.clone())
    }

    /// Stops the main process: SIGTERM, then SIGKILL after `grace`. The
    /// container stays until the guard removes it. Stopping a stopped
    /// container succeeds.
    ///
    /// # Errors
    ///
    /// [`Error::Docker`] if the daemon refuses.
    pub async fn stop(&self, grace: Duration) -> Result<()> {
        let (id, name) = (self.id.clone(), self.name.clone());
        let secs = i32::try_from(grace.as_secs() + u64::from(grace.subsec_nanos() > 0))
            .unwrap_or(i32::MAX);
        engine::run(async move {
            let docker = engine::docker().await?;
            let opts = StopContainerOptionsBuilder::new().t(secs).build();
            // The daemon answers once the container has stopped: allow the
            // grace period on top of the per-call timeout.
            let limit = grace.saturating_add(retry::config().call_timeout);
            let stopped = retry::call("stop", &name, Retry::Yes, Some(limit), || {
                docker.stop_container(&id, Some(opts.clone()))
            })
            .await;
            match stopped {
                Err(e) if e.status() == Some(304) => Ok(()),
                other => other,
            }
        })
        .await
    }

    /// Copies `host` (a file, or a directory and everything in it) into the
    /// existing directory `container_dir`, under its own name, keeping
    /// modes.
    ///
    /// # Errors
    ///
    /// [`Error::Copy`] if `host` cannot be read; [`Error::Docker`] if the
    /// daemon refuses (404: `container_dir` does not exist).
    pub async fn copy_in(
        &self,
        host: impl AsRef<std::path::Path>,
        container_dir: &str,
    ) -> Result<()> {
        let (id, name) = (self.id.clone(), self.name.clone());
        let (host, dir) = (host.as_ref().to_owned(), container_dir.to_owned());
        engine::run(async move {
            crate::files::upload(&engine::docker().await?, &id, &name, &host, &dir).await
        })
        .await
    }

    /// Copies `container_path` (a file or a directory) into the existing
    /// host directory `host_dir`, under its own name, keeping modes.
    ///
    /// # Errors
    ///
    /// [`Error::Docker`] if the daemon refuses (404: no such path);
    /// [`Error::Copy`] if the files cannot be written.
    pub async fn copy_out(
        &self,
        container_path: &str,
        host_dir: impl AsRef<std::path::Path>,
    ) -> Result<()> {
        let (id, name) = (self.id.clone(), self.name.clone());
        let (path, dir) = (container_path.to_owned(), host_dir.as_ref().to_owned());
        engine::run(async move {
            crate::files::download(&engine::docker().await?, &id, &name, &path, &dir).await
        })
        .await
    }

    /// One sample of the container's CPU and memory use. Docker takes two
    /// readings about a second apart for the CPU figure, so this takes
    /// about a second.
    ///
    /// # Errors
    ///
    /// [`Error::Docker`] if the daemon refuses (the container is not running).
    pub async fn stats(&self) -> Result<ContainerStats> {
        let (id, name) = (self.id.clone(), self.name.clone());
        engine::run(async move {
            let docker = engine::docker().await?;
            retry::gate()?;
            let opts = bollard::query_parameters::StatsOptionsBuilder::new()
                .stream(false)
                .build();
            let limit = retry::config().call_timeout;
            let sample = tokio::time::timeout(limit, docker.stats(&id, Some(opts)).next()).await;
            match sample {
                Ok(Some(Ok(s))) => Ok(ContainerStats::from_response(&s)),
                Ok(Some(Err(e))) => Err(Error::docker("stats", name, e)),
                Ok(None) => Err(Error::Docker {
                    operation: "stats",
                    target: name,
                    status: None,
                    message: "the daemon sent no sample".to_owned(),
                }),
                Err(_) => Err(Error::Docker {
                    operation: "stats",
                    target: name,
                    status: None,
                    message: format!("no sample within the per-call timeout of {limit:?}"),
                }),
            }
        })
        .await
    }

    /// The container's current state.
    ///
    /// # Errors
    ///
    /// [`Error::Docker`] if the daemon refuses (404 once it is gone).
    pub async fn state(&self) -> Result<ContainerState> {
        let (id, name) = (self.id.clone(), self.name.clone());
        engine::run(async move {
            let docker = engine::docker().await?;
            let info = inspect(&docker, &id, &name).await?;
            let s = info.state.unwrap_or_default();
            Ok(ContainerState {
                status: s.status.map(|s| s.to_string()).unwrap_or_default(),
                running: s.running == Some(true),
                exit_code: s.exit_code.filter(|_| s.running != Some(true)),
                oom_killed: s.oom_killed == Some(true),
                health: s
                    .health
                    .and_then(|h| h.status)
                    .map(|h| h.to_string())
                    .filter(|h| !h.is_empty() && h != "none"),
            })
        })
        .await
    }

    /// Removes the container now (force, with its anonymous volumes) and
    /// reports the outcome. Already gone counts as success.
    ///
    /// # Errors
    ///
    /// [`Error::CleanupFailed`] if the daemon could not remove it, or
    /// [`Error::DockerUnavailable`] if it could not be reached; the
    /// container stays labelled for `dockfix sweep`.
    pub async fn remove(mut self) -> Result<()> {
        self.removal = None;
        let id = self.id.clone();
        // Tracked, so the exit hook finishes it even if this future is
        // dropped before the daemon answers.
        let removal = engine::track_removal(&id, &self.name);
        engine::run(async move {
            let _removal = removal;
            engine::force_remove(&engine::docker().await?, &id).await
        })
        .await
    }

    /// Leaves the container running after the guard is gone, for
    /// debugging, and returns its id. It keeps its labels, so
    /// `dockfix sweep` can remove it later.
    pub fn keep(mut self) -> String {
        self.removal = None;
        engine::unregister_live(&self.id);
        std::mem::take(&mut self.id)
    }

    /// A handle on a container this process does not own: Drop leaves it
    /// alone (members of a shared pool outlive their holders).
    pub(crate) fn unowned(
        id: String,
        name: String,
        image: String,
        ports: HashMap<u16, u16>,
    ) -> Self {
        TestContainer {
            id,
            name,
            image,
            ports,
            removal: None,
        }
    }

    /// Removes a container whose start failed, now, before the error is
    /// returned; falls back to the background removal if that fails.
    async fn discard(mut self, docker: &Docker) {
        if self.removal.take().is_some() {
            engine::unregister_live(&self.id);
            if engine::force_remove(docker, &self.id).await.is_err() {
                engine::remove_in_background(self.id.clone(), self.name.clone(), false);
            }
        }
    }
}

impl Drop for TestContainer {
    fn drop(&mut self) {
        let Some(mode) = self.removal.take() else {
            return;
        };
        if engine::keep_requested() {
            engine::unregister_live(&self.id);
            engine::warn(format_args!(
                "keeping container {} ({}) because DOCKFIX_KEEP is set",
                self.name, self.id
            ));
            return;
        }
        engine::remove_in_background(
            std::mem::take(&mut self.id),
            std::mem::take(&mut self.name),
            mode.wait,
        );
    }
}

impl ContainerSpec {
    /// Creates the container, starts it, and waits until it is running and
    /// every [`wait_for`](ContainerSpec::wait_for) condition holds.
    ///
    /// Runs on dockfix's engine runtime, so it works from any async runtime.
    /// If the image is missing it is pulled once.
    ///
    /// # Errors
    ///
    /// - [`Error::InvalidSpec`] before any Docker call if a value was refused;
    /// - [`Error::ImageNotFound`] if the image is missing and cannot be pulled;
    /// - [`Error::DockerUnavailable`] if the daemon cannot be reached;
    /// - [`Error::NotReady`] with the log tail if the container exited or
    ///   readiness timed out (the container is removed first);
    /// - [`Error::Docker`] for any other refusal by the daemon.
    pub async fn start(self) -> Result<TestContainer> {
        let body = self.create_body()?;
        crate::sweep::reap_on_first_start();
        // Taken before the task is spawned, so the exit hook cannot miss a
        // start whose caller gave up just before the process exits.
        let starting = engine::track_start();
        engine::run(async move {
            let _starting = starting;
            start_on_engine(self, body).await
        })
        .await
    }
}

async fn start_on_engine(
    spec: ContainerSpec,
    mut body: ContainerCreateBody,
) -> Result<TestContainer> {
    let docker = engine::docker().await?;
    if spec.remove_on_kill && !engine::keep_requested() {
        let anchor = crate::anchor::anchor(&docker, &spec.image).await?;
        crate::anchor::tie(&mut body, &anchor);
    }
    let name = spec.fresh_name();
    let id = match create(
        &docker,
        &name,
        &spec.image,
        body,
        spec.pull_policy,
        spec.pull_progress.as_ref(),
    )
    .await
    {
        Ok(id) => id,
        Err(e) => {
            // A create that failed without a clear refusal (a timeout, a
            // lost answer) may still have happened on the daemon: remove
            // the name, which is this start's own (404 is fine).
            let unclear = matches!(&e, Error::Docker { status, .. } if status.is_none_or(|s| s >= 500))
                || matches!(e, Error::CircuitOpen { .. });
            if unclear && spec.shared_name.is_none() {
                engine::remove_in_background(name.clone(), name, false);
            }
            return Err(e);
        }
    };
    // From here on the guard owns the container: any early return, or the
    // caller giving up on this task, drops it and so removes the container.
    let mut guard = TestContainer {
        id,
        name,
        image: spec.image.clone(),
        ports: HashMap::new(),
        removal: Some(DropMode {
            wait: spec.wait_on_drop,
        }),
    };
    engine::register_live(&guard.id, &guard.name);
    for (host, dir) in &spec.copies {
        if let Err(e) = crate::files::upload(&docker, &guard.id, &guard.name, host, dir).await {
            guard.discard(&docker).await;
            return Err(e);
        }
    }
    let deadline = engine::deadline_in(spec.startup_timeout);
    let started = retry::call("start", &guard.name, Retry::Yes, None, || {
        docker.start_container(&guard.id, None)
    })
    .await;
    match started {
        // 304: a retried start whose first attempt had started it.
        Err(e) if e.status() != Some(304) => {
            guard.discard(&docker).await;
            return Err(e);
        }
        _ => {}
    }
    let info = match inspect(&docker, &guard.id, &guard.name).await {
        Ok(info) => info,
        Err(e) => {
            guard.discard(&docker).await;
            return Err(e);
        }
    };
    guard.ports = published_ports(&info);
    let ready = match ready::running_or_failure(&info) {
        Ok(()) if spec.wait_for.is_empty() => Ok(()),
        Ok(()) => {
            ready::wait_all(
                &docker,
                &guard.id,
                &guard.name,
                &spec.wait_for,
                &guard.ports,
                deadline,
                spec.startup_timeout,
            )
            .await
        }
        Err(f) => Err(f),
    };
    if let Err(failure) = ready {
        let logs = logs::tail_text(&docker, &guard.id, LOG_TAIL).await;
        let err = Error::NotReady {
            container: guard.name.clone(),
            condition: failure.condition,
            reason: failure.reason,
            logs,
        };
        guard.discard(&docker).await;
        return Err(err);
    }
    Ok(guard)
}

/// Creates the container, pulling the image once if the daemon lacks it.
pub(crate) async fn create(
    docker: &Docker,
    name: &str,
    image: &str,
    body: ContainerCreateBody,
    policy: crate::image::PullPolicy,
    progress: Option<&crate::image::ProgressFn>,
) -> Result<String> {
    if policy == crate::image::PullPolicy::Always {
        crate::image::pull(docker, image, policy, progress).await?;
    }
    match create_once(docker, name, &body).await {
        // A 404 also means a missing network or volume: pull only when the
        // image is the thing missing.
        Err(e) if e.status() == Some(404) => {
            let present = retry::call("inspect image", image, Retry::Yes, None, || {
                docker.inspect_image(image)
            })
            .await;
            if present.is_ok() {
                return Err(e);
            }
        }
        other => return other,
    }
    crate::image::pull(docker, image, policy, progress).await?;
    create_once(docker, name, &body).await
}

/// One create, retried on transient failures. Every attempt uses the same
/// name, so a retry after a lost response gets 409 "name in use": then
/// the container of that name is ours if it carries this session's label,
/// and the result is still exactly one container.
async fn create_once(docker: &Docker, name: &str, body: &ContainerCreateBody) -> Result<String> {
    let opts = CreateContainerOptionsBuilder::new().name(name).build();
    let created = retry::call("create", name, Retry::Yes, None, || {
        docker.create_container(Some(opts.clone()), body.clone())
    })
    .await;
    match created {
        Ok(created) => Ok(created.id),
        Err(e) if e.status() == Some(409) => {
            // Gone again (renamed or removed) by the time we look: the
            // conflict stands.
            let Ok(existing) = inspect(docker, name, name).await else {
                return Err(e);
            };
            let labels = existing.config.as_ref().and_then(|c| c.labels.as_ref());
            let session = labels.and_then(|l| l.get(crate::LABEL_SESSION));
            match (session, existing.id) {
                (Some(s), Some(id)) if s == crate::session_id() => {
                    tracing::debug!(
                        name,
                        "dockfix: a retried create found the container its lost attempt made"
                    );
                    Ok(id)
                }
                _ => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// Inspects a container (by id or name), retried on transient failures.
pub(crate) async fn inspect(
    docker: &Docker,
    id: &str,
    name: &str,
) -> Result<ContainerInspectResponse> {
    retry::call("inspect", name, Retry::Yes, None, || {
        docker.inspect_container(id, None)
    })
    .await
}

/// Container TCP port → host port, from inspect.
pub(crate) fn published_ports(info: &ContainerInspectResponse) -> HashMap<u16, u16> {
    let mut ports = HashMap::new();
    let map = info
        .network_settings
        .as_ref()
        .and_then(|n| n.ports.as_ref());
    for (key, bindings) in map.into_iter().flatten() {
        let Some(port) = key.strip_suffix("/tcp").and_then(|p| p.parse::<u16>().ok()) else {
            continue;
        };
        let host = bindings
            .iter()
            .flatten()
            .filter_map(|b| b.host_port.as_deref()?.parse::<u16>().ok())
            .next();
        if let Some(host) = host {
            ports.insert(port, host);
        }
    }
    ports
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_the_containers_delta_over_the_hosts_times_cpus() {
        use bollard::models::{
            ContainerCpuStats, ContainerCpuUsage, ContainerMemoryStats, ContainerStatsResponse,
        };
        let cpu = |total, system| ContainerCpuStats {
            cpu_usage: Some(ContainerCpuUsage {
                total_usage: Some(total),
                ..Default::default()
            }),
            system_cpu_usage: Some(system),
            online_cpus: Some(2),
            ..Default::default()
        };
        let s = ContainerStatsResponse {
            cpu_stats: Some(cpu(1_500, 20_000)),
            precpu_stats: Some(cpu(500, 10_000)),
            memory_stats: Some(ContainerMemoryStats {
                usage: Some(300),
                limit: Some(1000),
                stats: Some(HashMap::from([("inactive_file".to_owned(), 100)])),
                ..Default::default()
            }),
            ..Default::default()
        };
        let stats = ContainerStats::from_response(&s);
        assert!((stats.cpu_percent - 20.0).abs() < 1e-9, "{stats:?}");
        assert_eq!((stats.memory_usage, stats.memory_limit), (200, 1000));
        assert!((stats.memory_percent - 20.0).abs() < 1e-9);
    }
}
