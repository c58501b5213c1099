//! A fault-injecting proxy in front of the Docker socket, for tests that
//! need the daemon to fail for real.

use std::path::{Path, PathBuf};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

/// Forwards every request to the real daemon, except `DELETE` requests
/// whose path contains `victim`, which it answers with a 500 itself.
/// Removed (socket and task) on drop.
#[derive(Debug)]
pub struct FailRemoveProxy {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

const UPSTREAM: &str = "/var/run/docker.sock";

impl FailRemoveProxy {
    /// Listens on a fresh socket under the temp dir. Needs a tokio runtime.
    pub fn start(victim: &str) -> Self {
        let path = std::env::temp_dir().join(format!("dockfix-proxy-{}.sock", super::unique("p")));
        let listener = UnixListener::bind(&path).expect("cannot bind the proxy socket");
        let victim = victim.to_owned();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(serve(client, victim.clone()));
            }
        });
        FailRemoveProxy { path, task }
    }

    /// The value for `DOCKER_HOST`.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for FailRemoveProxy {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One connection: read the request head, refuse or forward it with
/// `Connection: close`, so every request arrives on a connection of its
/// own and is inspected.
async fn serve(mut client: UnixStream, victim: String) {
    let mut buf = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 4096];
        match client.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let request_line = head.lines().next().unwrap_or_default();
    if request_line.starts_with("DELETE ") && request_line.contains(&victim) {
        let body = r#"{"message":"injected failure: removal refused by the test proxy"}"#;
        let response = format!(
            "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = client.write_all(response.as_bytes()).await;
        return;
    }
    let mut rewritten: String = head
        .trim_end_matches("\r\n")
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    rewritten.push_str("Connection: close\r\n\r\n");
    let Ok(mut upstream) = UnixStream::connect(UPSTREAM).await else {
        return;
    };
    if upstream.write_all(rewritten.as_bytes()).await.is_err()
        || upstream.write_all(&buf[head_end..]).await.is_err()
    {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}
