//! Rendering a spec to the daemon's create request, checking every value
//! on the way.

use std::collections::HashMap;

use super::image_ref::check_image;
use super::network::publish_ip;
use super::{ContainerSpec, Invalid};
use crate::docker::{
    ContainerCreateBody, EndpointSettings, HostConfig, NetworkingConfig, PortBinding,
};
use crate::error::{Error, Result};
use crate::labels;

impl ContainerSpec {
    /// Validates and renders the Docker create request.
    pub(crate) fn create_body(&self) -> Result<ContainerCreateBody> {
        if let Some(Invalid {
            field,
            value,
            reason,
        }) = &self.invalid
        {
            return Err(Error::invalid(field, value.clone(), reason.clone()));
        }
        check_image(&self.image)?;
        let binds = self
            .binds
            .iter()
            .map(|b| b.to_bind(self.check_host_paths))
            .collect::<Result<Vec<_>>>()?;
        let mut mount_points: Vec<&str> = self
            .binds
            .iter()
            .map(|b| b.container_path())
            .chain(self.tmpfs.keys().map(String::as_str))
            .collect();
        mount_points.sort_unstable();
        if let Some(twice) = mount_points.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::invalid(
                "bind",
                twice[0],
                "two mounts share this container path (Docker refuses a duplicate mount point)",
            ));
        }
        self.check_inside_read_only_binds(&binds)?;
        let mode = self.network_mode.as_deref();
        if !self.exposed.is_empty() && matches!(mode, Some("none" | "host")) {
            return Err(Error::invalid(
                "expose",
                format!("{:?}", self.exposed),
                format!(
                    "ports cannot be published with network mode `{}`",
                    mode.unwrap_or_default()
                ),
            ));
        }
        if matches!(mode, Some(m) if m.starts_with("container:")) && !self.extra_hosts.is_empty() {
            return Err(Error::invalid(
                "extra_host",
                self.extra_hosts.join(","),
                "a container on another container's network shares its /etc/hosts; add the entry there",
            ));
        }
        for w in &self.wait_for {
            w.check(self)?;
        }
        let publish_ip = publish_ip().to_owned();
        let port_bindings = self
            .exposed
            .iter()
            .map(|p| {
                (
                    format!("{p}/tcp"),
                    Some(vec![PortBinding {
                        host_ip: Some(publish_ip.clone()),
                        host_port: Some(String::new()),
                    }]),
                )
            })
            .collect::<HashMap<_, _>>();
        let mut extra_hosts = Vec::new();
        // With `host` or another container's network there is no
        // /etc/hosts of our own to add to (Docker refuses it).
        let own_network = !matches!(mode, Some(m) if m == "host" || m.starts_with("container:"));
        if self.host_gateway && own_network {
            extra_hosts.push("host.docker.internal:host-gateway".to_owned());
        }
        extra_hosts.extend(self.extra_hosts.iter().cloned());
        let host_config = HostConfig {
            binds: (!binds.is_empty()).then_some(binds),
            tmpfs: (!self.tmpfs.is_empty()).then(|| self.tmpfs.clone()),
            port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
            extra_hosts: (!extra_hosts.is_empty()).then_some(extra_hosts),
            memory: self.memory,
            nano_cpus: self.nano_cpus,
            network_mode: self.network_mode.clone(),
            ..Default::default()
        };
        Ok(ContainerCreateBody {
            image: Some(self.image.clone()),
            cmd: self.cmd.clone(),
            entrypoint: self.entrypoint.clone(),
            env: (!self.env.is_empty()).then(|| self.env.clone()),
            working_dir: self.working_dir.clone(),
            user: self.user.clone(),
            labels: Some({
                let mut labels = labels::owner_labels(&self.labels, self.ttl, self.pool.as_deref());
                if self.shared_name.is_some() {
                    labels.remove(labels::LABEL_PID);
                    labels.remove(labels::LABEL_PIDNS);
                    labels.remove(labels::LABEL_START);
                }
                labels
            }),
            exposed_ports: (!self.exposed.is_empty())
                .then(|| self.exposed.iter().map(|p| format!("{p}/tcp")).collect()),
            healthcheck: self.healthcheck.clone(),
            host_config: Some(host_config),
            networking_config: self
                .network
                .as_ref()
                .map(|(name, aliases)| NetworkingConfig {
                    endpoints_config: Some(HashMap::from([(
                        name.clone(),
                        EndpointSettings {
                            aliases: (!aliases.is_empty()).then(|| aliases.clone()),
                            ..Default::default()
                        },
                    )])),
                }),
            ..Default::default()
        })
    }
}

impl ContainerSpec {
    /// The runtime makes each mount point, and the working directory, that
    /// is missing; inside a read-only bind it cannot, and the start fails.
    /// Where host paths are checked, a path whose closest enclosing mount
    /// is a read-only bind must exist in the bind's host directory.
    fn check_inside_read_only_binds(&self, binds: &[String]) -> Result<()> {
        if !self.check_host_paths {
            return Ok(());
        }
        // (field, container path, host path when a read-only bind)
        let mounts: Vec<(&str, &str, Option<&str>)> = self
            .binds
            .iter()
            .zip(binds)
            .map(|(b, rendered)| {
                let host = rendered.split(':').next().unwrap_or_default();
                ("bind", b.container_path(), b.is_read_only().then_some(host))
            })
            .chain(self.tmpfs.keys().map(|p| ("tmpfs", p.as_str(), None)))
            .collect();
        let paths = mounts
            .iter()
            .map(|(field, p, _)| (*field, *p))
            .chain(self.working_dir.as_deref().map(|d| ("working_dir", d)));
        for (field, path) in paths {
            let enclosing = mounts
                .iter()
                .filter_map(|(_, m, host)| {
                    Some((*m, path.strip_prefix(m)?.strip_prefix('/')?, host))
                })
                .max_by_key(|(m, _, _)| m.len());
            if let Some((at, rest, Some(host))) = enclosing {
                if !std::path::Path::new(host).join(rest).exists() {
                    return Err(Error::invalid(
                        field,
                        path,
                        format!(
                            "it lies inside the read-only bind of {host} at {at}, which has no `{rest}`: the runtime cannot create it there"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn first_refusal_is_reported_with_field_and_value() {
        let spec = ContainerSpec::new("img").memory("lots").cpus("x");
        match spec.validate() {
            Err(Error::InvalidSpec { field, value, .. }) => {
                assert_eq!((field, value.as_str()), ("memory", "lots"));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(
            ContainerSpec::new("img")
                .env("A=B", "c")
                .validate()
                .is_err()
        );
        assert!(
            ContainerSpec::new("img")
                .label("dockfix.pool", "x")
                .validate()
                .is_err()
        );
        assert!(
            ContainerSpec::new("img")
                .extra_host("db", "not-ip")
                .validate()
                .is_err()
        );
        assert!(
            ContainerSpec::new("img")
                .extra_host("db", "10.0.0.1")
                .validate()
                .is_ok()
        );
        assert!(
            ContainerSpec::new("img")
                .name_prefix("-x")
                .validate()
                .is_err()
        );
        assert!(ContainerSpec::new("").validate().is_err());
        assert!(ContainerSpec::new("Busybox").validate().is_err());
        assert!(
            ContainerSpec::new("img")
                .network_mode("none")
                .expose(80)
                .validate()
                .is_err()
        );
        let joined = || ContainerSpec::new("img").network_mode("container:x");
        assert!(
            joined().validate().is_ok(),
            "no host-gateway entry is added there"
        );
        assert!(joined().extra_host("db", "10.0.0.1").validate().is_err());
    }

    #[test]
    fn ttl_is_written_to_its_label_in_whole_seconds() {
        let labels = |s: ContainerSpec| s.create_body().unwrap().labels.unwrap();
        assert_eq!(
            labels(ContainerSpec::new("img").ttl(Duration::from_secs(90)))["dockfix.ttl"],
            "90"
        );
        assert!(!labels(ContainerSpec::new("img")).contains_key("dockfix.ttl"));
        assert!(
            ContainerSpec::new("img")
                .ttl(Duration::from_millis(500))
                .validate()
                .is_err()
        );
    }

    #[test]
    fn host_gateway_is_added_by_default_and_can_be_turned_off() {
        let hosts = |s: ContainerSpec| s.create_body().unwrap().host_config.unwrap().extra_hosts;
        let on = hosts(ContainerSpec::new("img")).unwrap_or_default();
        assert_eq!(
            on.contains(&"host.docker.internal:host-gateway".to_owned()),
            cfg!(target_os = "linux")
        );
        assert_eq!(hosts(ContainerSpec::new("img").host_gateway(false)), None);
    }
}
