//! Validation keeps its promise: what it refuses, Docker would refuse too,
//! and what it lets through, Docker takes. Checked value by value against
//! the real daemon, and by 10,000 random specs.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::CreateContainerOptionsBuilder;
use dockfix::{ContainerSpec, Error};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use support::{CASE_LABEL, IMAGE, unique};

/// Sends `body` (whose command sleeps for 5 s) to the daemon as it is,
/// bypassing dockfix, and says how the daemon refused it: at create, at
/// start, or by a container that could not run its command and exited at
/// once. `None` when it took it. The container, if one was made, is
/// removed.
async fn daemon_refusal(mut body: ContainerCreateBody) -> Option<String> {
    let docker = support::raw_docker().await;
    let case = unique("raw");
    body.labels = Some(HashMap::from([(CASE_LABEL.to_owned(), case.clone())]));
    if body.image.is_none() {
        body.image = Some(IMAGE.to_owned());
    }
    let host_config = body.host_config.get_or_insert_with(HostConfig::default);
    host_config
        .network_mode
        .get_or_insert_with(|| "none".to_owned());
    let opts = CreateContainerOptionsBuilder::new().name(&case).build();
    let refusal = match docker.create_container(Some(opts), body).await {
        Err(e) => Some(format!("create: {e}")),
        Ok(created) => match docker.start_container(&created.id, None).await {
            Err(e) => Some(format!("start: {e}")),
            Ok(()) => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let info = docker.inspect_container(&created.id, None).await.ok();
                let state = info.and_then(|i| i.state).unwrap_or_default();
                (state.running != Some(true)).then(|| {
                    format!(
                        "started, then exited at once with code {:?}",
                        state.exit_code
                    )
                })
            }
        },
    };
    for id in support::list_by_label(CASE_LABEL, &case).await {
        support::force_remove(&id).await;
    }
    refusal
}

fn cmd(words: &[&str]) -> Option<Vec<String>> {
    Some(words.iter().map(|w| (*w).to_owned()).collect())
}

fn host(config: HostConfig) -> Option<HostConfig> {
    Some(config)
}

/// Each value the issue found Docker refusing after ten retries: dockfix
/// now refuses it before calling Docker, and Docker, sent the same value
/// directly, does refuse it.
#[tokio::test]
async fn what_validation_refuses_the_daemon_refuses_too() {
    let tmpfs = |path: &str, options: &str| {
        host(HostConfig {
            tmpfs: Some(HashMap::from([(path.to_owned(), options.to_owned())])),
            ..Default::default()
        })
    };
    let bind = |binding: &str| {
        host(HostConfig {
            binds: Some(vec![binding.to_owned()]),
            ..Default::default()
        })
    };
    let sleep = || cmd(&["sleep", "5"]);
    let empty = HostDir::new(&[]);
    let empty_dir = empty.path();
    let cases: Vec<(&str, ContainerSpec, ContainerCreateBody)> = vec![
        (
            "NUL in cmd",
            ContainerSpec::new(IMAGE).cmd(["sleep", "5\0"]),
            ContainerCreateBody {
                cmd: cmd(&["sleep", "5\0"]),
                ..Default::default()
            },
        ),
        (
            "NUL in entrypoint",
            ContainerSpec::new(IMAGE).entrypoint(["sle\0ep"]).cmd(["5"]),
            ContainerCreateBody {
                entrypoint: cmd(&["sle\0ep"]),
                cmd: cmd(&["5"]),
                ..Default::default()
            },
        ),
        (
            "NUL in working_dir",
            ContainerSpec::new(IMAGE)
                .cmd(["sleep", "5"])
                .working_dir("/tmp\0x"),
            ContainerCreateBody {
                cmd: sleep(),
                working_dir: Some("/tmp\0x".into()),
                ..Default::default()
            },
        ),
        (
            "NUL in user",
            ContainerSpec::new(IMAGE).cmd(["sleep", "5"]).user("0\0"),
            ContainerCreateBody {
                cmd: sleep(),
                user: Some("0\0".into()),
                ..Default::default()
            },
        ),
        (
            "NUL in a tmpfs path",
            ContainerSpec::new(IMAGE)
                .cmd(["sleep", "5"])
                .tmpfs("/t\0", ""),
            ContainerCreateBody {
                cmd: sleep(),
                host_config: tmpfs("/t\0", ""),
                ..Default::default()
            },
        ),
        (
            "NUL in tmpfs options",
            ContainerSpec::new(IMAGE)
                .cmd(["sleep", "5"])
                .tmpfs("/t", "size=1m\0"),
            ContainerCreateBody {
                cmd: sleep(),
                host_config: tmpfs("/t", "size=1m\0"),
                ..Default::default()
            },
        ),
        (
            "NUL in a bind's container path",
            ContainerSpec::new(IMAGE)
                .cmd(["sleep", "5"])
                .bind("/tmp", "/d\0"),
            ContainerCreateBody {
                cmd: sleep(),
                host_config: bind("/tmp:/d\0:rw"),
                ..Default::default()
            },
        ),
        (
            "NUL in network_mode",
            ContainerSpec::new(IMAGE)
                .cmd(["sleep", "5"])
                .network_mode("none\0"),
            ContainerCreateBody {
                cmd: sleep(),
                host_config: host(HostConfig {
                    network_mode: Some("none\0".into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ),
        (
            "NUL in the image",
            ContainerSpec::new(format!("{IMAGE}\0")).cmd(["sleep", "5"]),
            ContainerCreateBody {
                image: Some(format!("{IMAGE}\0")),
                cmd: sleep(),
                ..Default::default()
            },
        ),
        (
            "tmpfs options size=lots,bogus",
            ContainerSpec::new(IMAGE)
                .cmd(["sleep", "5"])
                .tmpfs("/t", "size=lots,bogus"),
            ContainerCreateBody {
                cmd: sleep(),
                host_config: tmpfs("/t", "size=lots,bogus"),
                ..Default::default()
            },
        ),
        (
            "tmpfs option size=lots",
            ContainerSpec::new(IMAGE)
                .cmd(["sleep", "5"])
                .tmpfs("/t", "size=lots"),
            ContainerCreateBody {
                cmd: sleep(),
                host_config: tmpfs("/t", "size=lots"),
                ..Default::default()
            },
        ),
        (
            "tmpfs flag remount",
            ContainerSpec::new(IMAGE)
                .cmd(["sleep", "5"])
                .tmpfs("/t", "remount"),
            ContainerCreateBody {
                cmd: sleep(),
                host_config: tmpfs("/t", "remount"),
                ..Default::default()
            },
        ),
        (
            "a bind to container path /",
            ContainerSpec::new(IMAGE)
                .cmd(["sleep", "5"])
                .bind("/tmp", "/"),
            ContainerCreateBody {
                cmd: sleep(),
                host_config: bind("/tmp:/:rw"),
                ..Default::default()
            },
        ),
        (
            "a bind under /proc",
            ContainerSpec::new(IMAGE)
                .cmd(["sleep", "5"])
                .bind("/tmp", "/proc/sys"),
            ContainerCreateBody {
                cmd: sleep(),
                host_config: bind("/tmp:/proc/sys:rw"),
                ..Default::default()
            },
        ),
        (
            "a tmpfs on /etc/hosts",
            ContainerSpec::new(IMAGE)
                .cmd(["sleep", "5"])
                .tmpfs("/etc/hosts", ""),
            ContainerCreateBody {
                cmd: sleep(),
                host_config: tmpfs("/etc/hosts", ""),
                ..Default::default()
            },
        ),
        (
            "a bind and a tmpfs at one path",
            ContainerSpec::new(IMAGE)
                .cmd(["sleep", "5"])
                .bind("/tmp", "/d")
                .tmpfs("/d/", ""),
            ContainerCreateBody {
                cmd: sleep(),
                host_config: host(HostConfig {
                    binds: Some(vec!["/tmp:/d:rw".into()]),
                    tmpfs: Some(HashMap::from([("/d".to_owned(), String::new())])),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ),
        (
            "a working directory missing from a read-only bind",
            ContainerSpec::new(IMAGE)
                .cmd(["sleep", "5"])
                .bind_ro(&empty_dir, "/ro")
                .working_dir("/ro/missing"),
            ContainerCreateBody {
                cmd: sleep(),
                working_dir: Some("/ro/missing".into()),
                host_config: bind(&format!("{empty_dir}:/ro:ro")),
                ..Default::default()
            },
        ),
        (
            "a tmpfs missing from a read-only bind",
            ContainerSpec::new(IMAGE)
                .cmd(["sleep", "5"])
                .bind_ro(&empty_dir, "/ro")
                .tmpfs("/ro/t", ""),
            ContainerCreateBody {
                cmd: sleep(),
                host_config: host(HostConfig {
                    binds: Some(vec![format!("{empty_dir}:/ro:ro")]),
                    tmpfs: Some(HashMap::from([("/ro/t".to_owned(), String::new())])),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ),
        (
            "an uppercase repository behind a registry",
            ContainerSpec::new("localhost:5000/App"),
            ContainerCreateBody {
                image: Some("localhost:5000/App".into()),
                ..Default::default()
            },
        ),
    ];
    let podman = support::on_podman().await;
    for (what, spec, body) in cases {
        // Podman lets a tmpfs cover Docker's /etc/hosts file; dockfix
        // refuses it for Docker's sake.
        if podman && what == "a tmpfs on /etc/hosts" {
            println!("not run on Podman: {what} (Podman takes it)");
            continue;
        }
        let started = Instant::now();
        let refused = spec.validate();
        let took = started.elapsed();
        match &refused {
            Err(Error::InvalidSpec { .. }) => {}
            other => panic!("{what}: dockfix did not refuse it: {other:?}"),
        }
        assert!(
            took < Duration::from_millis(50),
            "{what}: validation took {took:?}"
        );
        let daemon = daemon_refusal(body).await;
        println!(
            "{what}: dockfix refused in {took:?} ({}); the daemon: {daemon:?}",
            refused.unwrap_err()
        );
        assert!(
            daemon.is_some(),
            "{what}: the daemon took what dockfix refuses"
        );
    }
}

/// A tmpfs whose options pass every check that can be made here, and that
/// the kernel still refuses at start (NUMA node 7 is not on this machine):
/// Docker's "invalid argument" fails on the first attempt, with its words.
#[tokio::test]
async fn a_value_only_the_kernel_refuses_fails_at_once_with_its_words() {
    let started = Instant::now();
    let err = support::sleeper()
        .tmpfs("/t", "mpol=bind:7")
        .start()
        .await
        .unwrap_err();
    let took = started.elapsed();
    println!("mpol=bind:7: failed in {took:?}: {err}");
    assert_eq!(err.status(), Some(500), "{err}");
    let msg = err.to_string();
    // Podman refuses every tmpfs `mpol` when the container is created.
    let words = if support::on_podman().await {
        "invalid mount option"
    } else {
        "invalid argument"
    };
    assert!(msg.contains(words), "{msg}");
    assert!(!msg.contains("gave up after"), "it was retried: {msg}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

/// Draws specs, mostly well-formed, with every kind of mistake mixed in: a
/// NUL anywhere, relative and odd paths, unknown options, garbage names.
struct Gen {
    rng: StdRng,
    /// For a sample run on the daemon: names of things outside the spec
    /// (image, network, directories copied into) are ones that exist, so a
    /// refusal can only come from a value of the spec.
    existing_names: bool,
    host_dir: String,
}

/// A directory of the host for bind mounts, with the subdirectories
/// `dirs`; removed on drop.
struct HostDir(std::path::PathBuf);

impl HostDir {
    fn new(dirs: &[&str]) -> Self {
        let root = std::env::temp_dir().join(unique("dockfix-validation"));
        for dir in dirs {
            std::fs::create_dir_all(root.join(dir)).expect("cannot make a host directory");
        }
        std::fs::create_dir_all(&root).expect("cannot make a host directory");
        HostDir(root)
    }

    fn path(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for HostDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Subdirectories of the generator's host directory: some of the names its
/// paths are made of, so that mounts nest inside binds both ways.
const HOST_SUBDIRS: [&str; 3] = ["a", "b-c/d_e", "tmp"];

impl Gen {
    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.rng.random_range(0..items.len())]
    }

    /// One of `good`, or now and then one of `bad`.
    fn either<'a>(&mut self, good: &[&'a str], bad: &[&'a str]) -> &'a str {
        if self.chance(0.05) {
            self.pick(bad)
        } else {
            self.pick(good)
        }
    }

    /// `s`, now and then with a NUL, a space or a `:` put in.
    fn spoil(&mut self, s: String) -> String {
        if !self.chance(0.01) {
            return s;
        }
        let at = self.rng.random_range(0..=s.len());
        let at = (0..=at).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0);
        let bad = self.pick(&["\0", " ", ":", "\n", ",", "=", "é"]);
        format!("{}{bad}{}", &s[..at], &s[at..])
    }

    fn word(&mut self) -> String {
        let len = self.rng.random_range(1..10);
        let w: String = (0..len)
            .map(|_| {
                let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789-_.";
                alphabet[self.rng.random_range(0..alphabet.len())] as char
            })
            .collect();
        self.spoil(w)
    }

    fn path(&mut self) -> String {
        let segments = self.rng.random_range(0..4);
        let mut p: String = (0..segments)
            .map(|_| {
                let s = self.pick(&[
                    "a", "b-c", "d_e", "..", ".", "", "tmp", "dev", "proc", "x.y",
                ]);
                format!("/{s}")
            })
            .collect();
        if p.is_empty() || self.chance(0.1) {
            p.push('/');
        }
        if self.chance(0.05) {
            p.remove(0);
        }
        self.spoil(p)
    }

    fn id(&mut self) -> String {
        // Names need the image's /etc/passwd, which the test image lacks.
        let names: &[&str] = if self.existing_names {
            &["1000"]
        } else {
            &["root"]
        };
        let id = match self.rng.random_range(0..4) {
            0 => self.rng.random_range(0..70000u32).to_string(),
            1 => format!(
                "{}:{}",
                self.rng.random_range(0..70000u32),
                self.rng.random_range(0..70000u32)
            ),
            2 => self.either(names, &["0:0:0", "", "a b"]).to_owned(),
            _ => "1000".to_owned(),
        };
        self.spoil(id)
    }

    fn tmpfs_options(&mut self) -> String {
        let n = self.rng.random_range(0..4);
        let options: Vec<String> = (0..n)
            .map(|_| {
                let size = self.rng.random_range(1..512u32);
                match self.rng.random_range(0..12) {
                    0 => format!(
                        "size={size}{}",
                        self.either(&["", "k", "m", "g", "%"], &["x", "kb"])
                    ),
                    1 => format!(
                        "mode={}",
                        self.either(&["1777", "700", "0755"], &["888", "rwx"])
                    ),
                    2 => format!(
                        "uid={}",
                        self.either(&["0", "1000"], &["root", "4294967295"])
                    ),
                    3 => format!("gid={}", self.either(&["0", "1000"], &["-1"])),
                    4 => format!("nr_inodes={size}k"),
                    5 => format!(
                        "mpol={}",
                        self.either(&["default", "local", "prefer", "interleave:0"], &["often"])
                    ),
                    6 => self
                        .pick(&[
                            "ro",
                            "rw",
                            "noexec",
                            "nosuid",
                            "nodev",
                            "exec",
                            "strictatime",
                        ])
                        .to_owned(),
                    7 => self
                        .either(&["nosuid", "dirsync"], &["remount", "bind", "bogus", ""])
                        .to_owned(),
                    8 if self.chance(0.1) => format!("colour={size}"),
                    _ => format!("size={size}m"),
                }
            })
            .collect();
        let options = options.join(",");
        self.spoil(options)
    }

    fn spec(&mut self) -> ContainerSpec {
        let image = if self.existing_names || self.chance(0.7) {
            IMAGE.to_owned()
        } else {
            let image = self.pick(&[
                "localhost:5000/App",
                "Registry.Example.com/app:1",
                "app:-x",
                "a//b",
                "busybox@sha256:abc",
                "dockfix-test/busybox:latest",
            ]);
            self.spoil(image.to_owned())
        };
        let mut spec = ContainerSpec::new(image);
        if self.chance(0.3) {
            spec = spec.entrypoint(["sleep"]).cmd([self.spoil("300".into())]);
        } else {
            spec = spec.cmd(["sleep".to_owned(), self.spoil("300".into())]);
        }
        if self.chance(0.2) {
            spec = spec.name_prefix(self.word());
        }
        for _ in 0..self.rng.random_range(0..3) {
            let (key, value) = (self.word(), self.word());
            spec = spec.env(key, value);
        }
        if self.chance(0.3) {
            spec = spec.working_dir(self.path());
        }
        if self.chance(0.3) {
            spec = spec.user(self.id());
        }
        for _ in 0..self.rng.random_range(0..3) {
            let (key, value) = (self.word(), self.word());
            spec = spec.label(key, value);
        }
        if self.chance(0.2) {
            let m = self.either(&["6m", "64m", "1g", "65536k"], &["lots", "5m", "0", "1.5g"]);
            spec = spec.memory(m);
        }
        if self.chance(0.2) {
            // Within this machine's two cores: more is the daemon's to judge.
            let c = self.either(&["0.5", "500m", "1", "2"], &["abc", "0", "-1"]);
            spec = spec.cpus(c);
        }
        for _ in 0..self.rng.random_range(0..3) {
            let (path, options) = (self.path(), self.tmpfs_options());
            spec = spec.tmpfs(path, options);
        }
        for _ in 0..self.rng.random_range(0..3) {
            let host = if self.chance(0.9) {
                self.host_dir.clone()
            } else {
                self.path()
            };
            let container = self.path();
            spec = if self.chance(0.5) {
                spec.bind(host, container)
            } else {
                spec.bind_ro(host, container)
            };
        }
        if self.chance(0.3) {
            let modes: &[&str] = if self.existing_names {
                &["none", "bridge", "host"]
            } else {
                &["none", "bridge", "host", "no-such-net", "container:x", ""]
            };
            let mode = self.pick(modes).to_owned();
            spec = spec.network_mode(self.spoil(mode));
        } else {
            spec = spec.network_mode("none");
        }
        if self.chance(0.2) {
            spec = spec.expose(self.rng.random_range(0..3000));
        }
        if self.chance(0.2) {
            let (name, ip) = (
                self.word(),
                self.either(&["10.0.0.1", "::1", "host-gateway"], &["nowhere"]),
            );
            spec = spec.extra_host(name, ip);
        }
        if self.chance(0.1) {
            let interval = Duration::from_millis(self.rng.random_range(0..2000));
            spec = spec.healthcheck([self.spoil("true".into())], interval);
        }
        if self.chance(0.1) {
            spec = spec.ttl(Duration::from_secs(self.rng.random_range(0..100)));
        }
        if self.chance(0.1) {
            let dir = if self.existing_names {
                self.pick(&["/tmp", "/", "/tmp/."]).to_owned()
            } else {
                self.path()
            };
            spec = spec.copy_in("tests/fixtures/a.txt", dir);
        }
        spec
    }
}

fn generator(seed: u64, existing_names: bool, host_dir: &HostDir) -> Gen {
    Gen {
        rng: StdRng::seed_from_u64(seed),
        existing_names,
        host_dir: host_dir.path(),
    }
}

const SPECS: usize = 10_000;

/// 10,000 random specs: validating them never panics, and with the daemon
/// out of reach (in a child process whose `DOCKER_HOST` points nowhere)
/// every start fails either as `InvalidSpec`, before any call, or as
/// `DockerUnavailable` (or `CircuitOpen`, once the breaker has seen enough
/// of that), having passed validation.
#[test]
fn ten_thousand_random_specs_are_refused_as_invalid_or_reach_for_the_daemon() {
    let child = support::run_child!(
        random_specs_child,
        &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")]
    );
    child.assert_success();
    let invalid: usize = child.value("INVALID").parse().unwrap();
    let passed: usize = child.value("PASSED").parse().unwrap();
    println!(
        "{invalid} refused by validation ({}), {passed} passed it",
        child.value("FIELDS")
    );
    assert_eq!(invalid + passed, SPECS);
    // The generator mixes mistakes in often enough that both happen a lot.
    assert!(
        invalid > SPECS / 10 && passed > SPECS / 10,
        "{invalid} / {passed}"
    );
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn random_specs_child() {
    if !support::is_child() {
        return;
    }
    let host_dir = HostDir::new(&HOST_SUBDIRS);
    let mut generator = generator(0x05ee_dd0c, false, &host_dir);
    let (mut invalid, mut passed) = (0, 0);
    let mut fields = std::collections::BTreeMap::new();
    for n in 0..SPECS {
        let spec = generator.spec();
        let shown = format!("{spec:?}");
        match spec.start_blocking() {
            Err(Error::InvalidSpec { field, .. }) => {
                invalid += 1;
                *fields.entry(field).or_insert(0) += 1;
            }
            Err(Error::DockerUnavailable { .. } | Error::CircuitOpen { .. }) => passed += 1,
            Err(other) => panic!("spec {n} failed otherwise: {other}\n{shown}"),
            Ok(_) => panic!("spec {n} started with no daemon\n{shown}"),
        }
    }
    println!("INVALID={invalid}");
    println!("FIELDS={fields:?}");
    println!("PASSED={passed}");
}

/// A sample of random specs that pass validation, started on the real
/// daemon (with an image, networks and directories that exist): every one
/// of them starts.
#[tokio::test]
async fn random_specs_that_pass_validation_start_on_the_daemon() {
    const SAMPLE: usize = 40;
    let host_dir = HostDir::new(&HOST_SUBDIRS);
    let mut generator = generator(0x0d0c_5eed, true, &host_dir);
    let mut started = 0;
    let mut drawn = 0;
    // Podman 4.3 takes fewer tmpfs options than Docker (no uid, gid,
    // nr_inodes, nr_blocks, mpol, or atime and sync flags) and refuses the
    // others at once with its words: on Podman such specs are left out of
    // the sample.
    let podman = support::on_podman().await;
    let podman_takes = |spec: &str| {
        const TAKES: [&str; 16] = [
            "size", "mode", "ro", "rw", "exec", "noexec", "suid", "nosuid", "dev", "nodev",
            "private", "rprivate", "shared", "rshared", "slave", "rslave",
        ];
        let Some(start) = spec.find("tmpfs: {") else {
            return true;
        };
        let tmpfs = &spec[start..spec[start..].find('}').map_or(spec.len(), |e| start + e)];
        tmpfs
            .split('"')
            .skip(3)
            .step_by(4)
            .flat_map(|options| options.split(','))
            .filter(|o| !o.is_empty())
            .all(|o| TAKES.contains(&o.split('=').next().unwrap_or(o)))
    };
    while started < SAMPLE {
        drawn += 1;
        let spec = generator.spec();
        if spec.validate().is_err() {
            continue;
        }
        let shown = format!("{spec:?}");
        if podman && !podman_takes(&shown) {
            continue;
        }
        let container = spec
            .startup_timeout(Duration::from_secs(20))
            .start()
            .await
            .unwrap_or_else(|e| {
                panic!("a spec that passed validation did not start: {e}\n{shown}")
            });
        container.remove().await.expect("remove");
        started += 1;
    }
    println!("{started} of {drawn} drawn specs passed validation and all started");
}

/// Binding the Docker socket, or `/` read-write, is allowed, and said once
/// per process on stderr for each of the two.
#[test]
fn binding_the_docker_socket_or_a_writable_root_is_allowed_and_said_once() {
    let child = support::run_child!(risky_binds_child);
    child.assert_success();
    let said: Vec<&str> = child
        .stderr
        .lines()
        .filter(|l| l.starts_with("dockfix: bind mount of"))
        .collect();
    assert_eq!(said.len(), 2, "{child}");
    assert!(
        said[0].contains("docker.sock") && said[0].contains("root on the host"),
        "{said:?}"
    );
    assert!(
        said[1].contains("`/`") && said[1].contains("write anywhere"),
        "{said:?}"
    );
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn risky_binds_child() {
    if !support::is_child() {
        return;
    }
    for _ in 0..3 {
        ContainerSpec::new(IMAGE)
            .bind_ro("/var/run/docker.sock", "/var/run/docker.sock")
            .validate()
            .expect("the socket may be bound");
    }
    for _ in 0..3 {
        ContainerSpec::new(IMAGE)
            .bind_ro("/", "/host")
            .validate()
            .expect("the root may be bound read-only, silently");
        ContainerSpec::new(IMAGE)
            .bind("/", "/host")
            .validate()
            .expect("the root may be bound read-write");
    }
}

/// An exec's command, user and working directory, and a copy's container
/// path, are checked like a spec's: refused before any call.
#[tokio::test]
async fn exec_and_copy_values_are_checked_before_the_daemon_sees_them() -> dockfix::Result<()> {
    let c = support::sleeper().start().await?;
    let refusals = [
        c.exec(["echo", "a\0b"]).await.unwrap_err(),
        c.exec(["true"]).user("a b").await.unwrap_err(),
        c.exec(["true"]).user("0\0").await.unwrap_err(),
        c.exec(["true"]).working_dir("relative").await.unwrap_err(),
        c.exec(["true"]).working_dir("/tmp\0").await.unwrap_err(),
        c.copy_in("tests/fixtures/a.txt", "tmp").await.unwrap_err(),
        c.copy_out("/tmp\0", std::env::temp_dir())
            .await
            .unwrap_err(),
    ];
    for err in refusals {
        assert!(matches!(err, Error::InvalidSpec { .. }), "{err}");
    }
    // Cleaned paths work.
    let out = c.exec(["pwd"]).working_dir("/tmp/../etc/./").await?;
    assert_eq!(out.stdout.trim(), "/etc");
    c.remove().await
}
