//! `dockfix`: list and sweep the containers dockfix manages, and check
//! the daemon it would use.
//!
//! ```text
//! dockfix ls [--json]
//! dockfix sweep [--dry-run] [--older-than 30m] [--session ID] [--all] [--json]
//! dockfix doctor [--image IMAGE] [--json]
//! ```
//!
//! `sweep` exits 0 when everything it selected is gone, 1 when a removal
//! failed (each is listed), and 2 on a usage or connection error.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[path = "dockfix/doctor.rs"]
mod doctor;
use dockfix::{ManagedResource, Sweep, SweepCandidate};
use serde_json::{Value, json};

/// List and sweep the containers dockfix manages (labelled dockfix.managed=true).
#[derive(Debug, Parser)]
#[command(name = "dockfix", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List managed containers, networks and volumes with their session, owner, age, state and pool.
    Ls {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove orphaned and expired managed containers, networks and volumes.
    ///
    /// Orphaned: the owner process on this host is gone (or its pid was
    /// reused). Expired: older than its dockfix.ttl label or --older-than.
    /// Containers whose owner is alive on this host are never removed,
    /// unless their session is named with --session.
    Sweep {
        /// Print what would be removed, and remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Also remove containers older than this (e.g. 90s, 30m, 2h, 1d)
        /// whose owner is not alive on this host.
        #[arg(long, value_parser = parse_age)]
        older_than: Option<Duration>,
        /// Remove exactly the containers of this session id, live or not.
        #[arg(long, conflicts_with_all = ["older_than", "all"], value_parser = parse_session)]
        session: Option<String>,
        /// Also remove containers whose owner cannot be checked from here
        /// (another host, no pid label).
        #[arg(long)]
        all: bool,
        /// Also remove images dockfix built or imported, by the same rules.
        #[arg(long)]
        images: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Say which daemon dockfix uses and why, and check what tests rely on.
    ///
    /// Starts one container of --image (it needs busybox's sh, httpd, nc, awk
    /// and ps) and checks that a published port answers, that the
    /// container reaches this host through host.docker.internal, that an
    /// exec timeout kills, and that the owner labels are there. Exits 0
    /// when dockfix can be used, 1 when not.
    Doctor {
        /// The image of the test container.
        #[arg(long, default_value = "busybox:latest")]
        image: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn parse_session(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        return Err(
            "the session id is empty, which would name every container without one; give the id `dockfix ls` shows"
                .to_owned(),
        );
    }
    Ok(s.to_owned())
}

fn parse_age(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 90s, 30m, 2h or 1d"))?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("`{s}` has an unknown unit (use s, m, h or d)")),
    };
    n.checked_mul(mult)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("`{s}` is too long"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Ls { json } => ls(json),
        Command::Doctor { image, json } => Ok(doctor::doctor(&image, json)),
        Command::Sweep {
            dry_run,
            older_than,
            session,
            all,
            images,
            json,
        } => {
            let mut sweep = Sweep::new().dry_run(dry_run).all(all).images(images);
            if let Some(age) = older_than {
                sweep = sweep.older_than(age);
            }
            if let Some(session) = session {
                sweep = sweep.session(session);
            }
            if !json && std::io::stderr().is_terminal() {
                sweep = sweep.on_progress(|done, total| {
                    eprint!("\rdockfix: removing {done}/{total}");
                    if done == total {
                        eprintln!();
                    }
                });
            }
            run_sweep(sweep, json)
        }
    };
    result.unwrap_or_else(|e| {
        eprintln!("dockfix: {e}");
        ExitCode::from(2)
    })
}

/// An age as `dockfix ls` shows it: `45s`, `12m`, `3h`, `2d` (rounded
/// down).
fn age(c: &ManagedResource) -> String {
    let Some(age) = c.age() else {
        return "?".to_owned();
    };
    let secs = age.as_secs();
    let (n, unit) = [(86_400, "d"), (3600, "h"), (60, "m")]
        .into_iter()
        .find(|(size, _)| secs >= 2 * size)
        .unwrap_or((1, "s"));
    format!("{}{unit}", secs / n)
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

fn container_json(c: &ManagedResource) -> Value {
    json!({
        "kind": c.kind.to_string(),
        "id": c.id,
        "name": c.name,
        "image": c.image,
        "state": c.state,
        "session": c.session,
        "pid": c.pid,
        "host": c.host,
        "created": c.created,
        "age_secs": c.age().map(|a| a.as_secs()),
        "owner": c.owner().to_string(),
        "pool": c.pool,
        "ttl_secs": c.ttl.map(|t| t.as_secs()),
        "version": c.version,
    })
}

fn ls(json: bool) -> dockfix::Result<ExitCode> {
    let list = futures::executor::block_on(dockfix::list_managed())?;
    if json {
        let rows: Vec<Value> = list.iter().map(container_json).collect();
        println!("{}", Value::Array(rows));
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<9}  {:<12}  {:<28}  {:<8}  {:<16}  {:<26}  {:>5}  POOL",
        "KIND", "ID", "NAME", "STATE", "SESSION", "OWNER", "AGE"
    );
    for c in &list {
        let owner = format!(
            "{}@{} ({})",
            c.pid.map_or_else(|| "?".to_owned(), |p| p.to_string()),
            c.host,
            c.owner()
        );
        println!(
            "{:<9}  {:<12}  {:<28}  {:<8}  {:<16}  {:<26}  {:>5}  {}",
            c.kind,
            short(&c.id),
            c.name,
            c.state,
            c.session,
            owner,
            age(c),
            c.pool.as_deref().unwrap_or("-")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn candidate_json(s: &SweepCandidate) -> Value {
    let mut v = container_json(&s.resource);
    v["reason"] = json!(s.reason.code());
    v["why"] = json!(s.reason.to_string());
    v
}

fn run_sweep(sweep: Sweep, json: bool) -> dockfix::Result<ExitCode> {
    let report = futures::executor::block_on(sweep.run())?;
    let code = if report.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    };
    if json {
        let failed: Vec<Value> = report
            .failed
            .iter()
            .map(|(s, e)| {
                let mut v = candidate_json(s);
                v["error"] = json!(e);
                v
            })
            .collect();
        let out = json!({
            "dry_run": report.dry_run,
            "removed": report.removed.iter().map(candidate_json).collect::<Vec<_>>(),
            "failed": failed,
        });
        println!("{out}");
        return Ok(code);
    }
    let verb = if report.dry_run {
        "would remove"
    } else {
        "removed"
    };
    for s in &report.removed {
        println!(
            "{verb} {} {} {} (session {}): {}",
            s.resource.kind,
            short(&s.resource.id),
            s.resource.name,
            s.resource.session,
            s.reason
        );
    }
    for (s, e) in &report.failed {
        eprintln!(
            "FAILED to remove {} {} {} (session {}): {e}",
            s.resource.kind,
            short(&s.resource.id),
            s.resource.name,
            s.resource.session
        );
    }
    println!(
        "dockfix sweep: {} {verb}, {} failed",
        report.removed.len(),
        report.failed.len()
    );
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_parse_with_units() {
        assert_eq!(parse_age("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_age("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_age("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_age("1d"), Ok(Duration::from_secs(86_400)));
        assert!(parse_age("soon").is_err());
        assert!(parse_age("5w").is_err());
    }
}
