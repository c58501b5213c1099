//! Starts a container from the local test image, runs commands in it, and
//! lets the guard remove it. Run with `bash ci/quickstart` (which builds the
//! image first) or `cargo run --example quickstart`.

use std::time::Duration;

use dockfix::{TestContainer, WaitFor};

#[tokio::main(flavor = "current_thread")]
async fn main() -> dockfix::Result<()> {
    let c = TestContainer::builder("dockfix-test/busybox:latest")
        .name_prefix("quickstart")
        .cmd([
            "sh",
            "-c",
            "echo booted; exec httpd -f -p 8080 -h /fixtures",
        ])
        .env("MODE", "test")
        .bind_ro("./tests/fixtures", "/fixtures")
        .expose(8080)
        .memory("64m")
        .cpus("500m")
        .wait_for(WaitFor::log_line("booted"))
        .wait_for(WaitFor::port(8080))
        .start()
        .await?;
    println!("started {} ({})", c.name(), &c.id()[..12]);
    println!(
        "http://{}:{} serves ./tests/fixtures",
        c.host(),
        c.host_port(8080)?
    );

    let out = c
        .exec(["sh", "-c", "cat /fixtures/a.txt; echo oops >&2; exit 3"])
        .timeout(Duration::from_secs(5))
        .await?;
    println!("exit code {}", out.exit_code);
    println!("stdout: {}", out.stdout.trim_end());
    println!("stderr: {}", out.stderr.trim_end());

    match c.exec_ok(["cat", "/no/such/file"]).await {
        Err(e) => println!("checked exec failed as expected:\n  {e}"),
        Ok(_) => println!("unexpected success"),
    }

    let hosts = c
        .exec_ok(["grep", "host.docker.internal", "/etc/hosts"])
        .await?;
    println!(
        "host.docker.internal is {}",
        hosts.stdout.split_whitespace().next().unwrap_or("?")
    );
    Ok(())
} // `c` is dropped here: the removal runs on dockfix's engine and the exit hook waits for it
