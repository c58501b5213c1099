//! `dockfix doctor`: what a user runs first when something does not work.
//! It says which daemon dockfix chose and why, what it is, and checks, with
//! a container of `--image`, what tests rely on: the container reaches
//! this host through the host gateway, a published port is reachable, an
//! exec timeout kills, and dockfix's labels survive.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::ExitCode;
use std::time::Duration;

use dockfix::{ContainerSpec, DaemonInfo, Error, WaitFor};
use serde_json::{Value, json};

/// One check: its name, whether it passed, and what was seen or the fix.
struct Check {
    name: &'static str,
    ok: bool,
    detail: String,
}

impl Check {
    fn new(name: &'static str, result: Result<String, String>) -> Self {
        let (ok, detail) = match result {
            Ok(seen) => (true, seen),
            Err(fix) => (false, fix),
        };
        Check { name, ok, detail }
    }
}

/// Runs every check against a container of `image`. Exits 0 when dockfix
/// can be used (the daemon answers and a container starts), 1 otherwise.
pub(crate) fn doctor(image: &str, json: bool) -> ExitCode {
    let (info, checks) = futures::executor::block_on(run(image));
    let usable = info.is_ok() && checks.first().is_some_and(|c| c.ok);
    if json {
        let daemon = match &info {
            Ok(d) => daemon_json(d),
            Err(e) => json!({ "error": e.to_string() }),
        };
        let checks: Vec<Value> = checks
            .iter()
            .map(|c| json!({ "check": c.name, "ok": c.ok, "detail": c.detail }))
            .collect();
        let out = json!({ "usable": usable, "daemon": daemon, "checks": checks });
        println!("{out}");
    } else {
        match &info {
            Ok(d) => {
                println!("daemon:    {} ({})", d.endpoint, d.chosen_because);
                println!(
                    "engine:    {} {}, API {}{}",
                    d.engine,
                    d.version,
                    d.api_version,
                    if d.tls { ", over TLS" } else { "" }
                );
                println!(
                    "rootless:  {}; cgroup v{}",
                    if d.rootless { "yes" } else { "no" },
                    d.cgroup_version.as_deref().unwrap_or("?")
                );
            }
            Err(e) => println!("daemon:    none usable\n{e}"),
        }
        for c in &checks {
            let mark = if c.ok { "ok  " } else { "FAIL" };
            println!("{mark} {}: {}", c.name, c.detail);
        }
    }
    if usable {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn daemon_json(d: &DaemonInfo) -> Value {
    json!({
        "endpoint": d.endpoint,
        "chosen_because": d.chosen_because,
        "tls": d.tls,
        "engine": d.engine.to_string(),
        "version": d.version,
        "api_version": d.api_version,
        "rootless": d.rootless,
        "cgroup_version": d.cgroup_version,
    })
}

async fn run(image: &str) -> (dockfix::Result<DaemonInfo>, Vec<Check>) {
    let info = dockfix::daemon().await;
    if info.is_err() {
        return (info, Vec::new());
    }
    let mut checks = Vec::new();
    let spec = ContainerSpec::new(image)
        .name_prefix("dockfix-doctor")
        .cmd([
            "sh",
            "-c",
            "mkdir -p /tmp/www && echo doctor > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www",
        ])
        .expose(8080)
        .wait_for(WaitFor::port(8080))
        .startup_timeout(Duration::from_secs(30));
    let container = match spec.start().await {
        Ok(c) => {
            checks.push(Check::new(
                "start",
                Ok(format!("{image} started as {}", c.name())),
            ));
            c
        }
        Err(e) => {
            let fix = match &e {
                Error::ImageNotFound { .. } | Error::RegistryUnavailable { .. } => format!(
                    "{e}; pass --image with an image on the daemon that has busybox's sh, httpd, nc, awk and ps"
                ),
                _ => e.to_string(),
            };
            checks.push(Check::new("start", Err(fix)));
            return (info, checks);
        }
    };
    checks.push(Check::new(
        "published port",
        published_port(&container).await,
    ));
    checks.push(Check::new("host gateway", host_gateway(&container).await));
    checks.push(Check::new("exec timeout", exec_kill(&container).await));
    checks.push(Check::new("labels", labels(&container).await));
    if let Err(e) = container.remove().await {
        checks.push(Check::new("remove", Err(e.to_string())));
    }
    (info, checks)
}

/// An HTTP GET of the container's published port from this host.
async fn published_port(c: &dockfix::TestContainer) -> Result<String, String> {
    let port = c.host_port(8080).map_err(|e| e.to_string())?;
    let address = format!("{}:{port}", c.host());
    let fetched = http_get(&address);
    match fetched {
        Ok(body) if body.contains("doctor") => {
            Ok(format!("container port 8080 answers at {address}"))
        }
        Ok(body) => Err(format!("{address} answered something else: {body:.80}")),
        Err(e) => Err(format!(
            "{address} does not answer ({e}); a firewall, or a remote daemon whose published ports are not reachable from here"
        )),
    }
}

fn http_get(address: &str) -> std::io::Result<String> {
    let mut stream = std::net::TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"GET / HTTP/1.0\r\nHost: doctor\r\n\r\n")?;
    let mut body = String::new();
    stream.read_to_string(&mut body)?;
    Ok(body)
}

/// The container fetches a page this process serves, through
/// `host.docker.internal`.
async fn host_gateway(c: &dockfix::TestContainer) -> Result<String, String> {
    let listener =
        TcpListener::bind("0.0.0.0:0").map_err(|e| format!("cannot listen here: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let server = std::thread::spawn(move || {
        listener.set_nonblocking(false).ok();
        if let Ok((mut stream, _)) = listener.accept() {
            let mut request = [0u8; 512];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhost\n");
        }
    });
    let url = format!("http://host.docker.internal:{port}/");
    // busybox's nc, which reads /etc/hosts (a static busybox's wget
    // crashes on some answers).
    let script = format!(
        "awk '$2 == \"host.docker.internal\" {{ print $1; exit }}' /etc/hosts >&2; \
         printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc host.docker.internal {port}"
    );
    let fetched = c
        .exec(["sh", "-c", &script])
        .timeout(Duration::from_secs(10))
        .await;
    // Unblock the server if the container never came.
    let _ = std::net::TcpStream::connect(("127.0.0.1", port));
    let _ = server.join();
    match fetched {
        Ok(out) if out.stdout.contains("host") => Ok(format!(
            "the container reached this host at {url} ({} in its /etc/hosts)",
            out.stderr.trim()
        )),
        Ok(out) => Err(format!(
            "the container could not reach {url} (exit {}: {}); a firewall between the bridge and this host, or a daemon on another machine",
            out.exit_code,
            out.stderr.trim()
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// A command cut off by its timeout is gone afterwards.
async fn exec_kill(c: &dockfix::TestContainer) -> Result<String, String> {
    let started = std::time::Instant::now();
    let err = match c
        .exec(["sleep", "37"])
        .timeout(Duration::from_secs(1))
        .await
    {
        Ok(_) => return Err("`sleep 37` finished within 1 s, which it cannot".to_owned()),
        Err(e) => e,
    };
    let took = started.elapsed();
    match err {
        Error::ExecTimedOut { killed: true, .. } => {
            let ps = c.exec(["ps", "-o", "args"]).await.map_err(|e| e.to_string())?;
            if ps.stdout.lines().any(|l| l.trim() == "sleep 37") {
                Err("the timed-out command still runs".to_owned())
            } else {
                Ok(format!("a 1 s timeout returned in {took:.1?} and the command is gone"))
            }
        }
        Error::ExecTimedOut { killed: false, .. } => Err(
            "the timed-out command could not be killed: as a non-root user the image needs sh, grep and kill".to_owned(),
        ),
        other => Err(other.to_string()),
    }
}

/// The container is listed as dockfix's, with this process's session.
async fn labels(c: &dockfix::TestContainer) -> Result<String, String> {
    let managed = dockfix::list_managed().await.map_err(|e| e.to_string())?;
    match managed.iter().find(|m| m.id == c.id()) {
        Some(m) if m.session == dockfix::session_id() => {
            Ok("the owner labels are on the container".to_owned())
        }
        Some(_) => Err("the container's session label is not this process's".to_owned()),
        None => Err("the container is not listed as managed: its labels were lost".to_owned()),
    }
}
