//! One sample of a container's CPU and memory use.

use crate::docker::{self, ContainerStatsResponse, containers};
use crate::error::Result;

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
    fn from_response(s: &ContainerStatsResponse) -> Self {
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

impl super::TestContainer {
    /// One sample of the container's CPU and memory use. Docker takes two
    /// readings about a second apart for the CPU figure, so this takes
    /// about a second.
    ///
    /// # Errors
    ///
    /// [`Error::Docker`](crate::error::Error::Docker) if the daemon refuses (the container is not running).
    pub async fn stats(&self) -> Result<ContainerStats> {
        let (id, name) = (self.id().to_owned(), self.name().to_owned());
        docker::run(async move {
            let sample = containers::stats_once(&id, &name).await?;
            Ok(ContainerStats::from_response(&sample))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

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
