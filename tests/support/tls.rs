//! A TLS front for the daemon, as GitLab's `docker:dind` offers one:
//! certificates made with the `openssl` command, and `stunnel4` listening
//! on a loopback port with TLS and client verification, forwarding to the
//! local socket (`socat` for a plain-text one). `ci/setup` installs both.
//! Not socat for TLS: with client verification it refuses a resumed
//! session ("session id context uninitialized"), which rustls offers and
//! Docker's own TLS server accepts.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::TempDir;

/// A CA, a server certificate for `127.0.0.1` and `localhost` signed by
/// it, a client certificate signed by it, and a second CA that signed
/// nothing of these.
pub struct Certs {
    dir: TempDir,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("cannot run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Certs {
    /// Certificates whose server certificate is valid for `server_days`
    /// days from now (negative: it expired that many days ago).
    pub fn new(server_days: i32) -> Self {
        let dir = TempDir::new("tls");
        let d = dir.path();
        let days = server_days.to_string();
        for (ca, name) in [("ca", "dockfix-test-ca"), ("other-ca", "another-ca")] {
            openssl(
                d,
                &[
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    "2",
                    "-keyout",
                    &format!("{ca}-key.pem"),
                    "-out",
                    &format!("{ca}.pem"),
                    "-subj",
                    &format!("/CN={name}"),
                ],
            );
        }
        std::fs::write(
            d.join("server.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .unwrap();
        std::fs::write(d.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
        for (who, valid) in [("server", days.as_str()), ("client", "2")] {
            openssl(
                d,
                &[
                    "req",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-keyout",
                    &format!("{who}-key.pem"),
                    "-out",
                    &format!("{who}.csr"),
                    "-subj",
                    &format!("/CN={who}"),
                ],
            );
            openssl(
                d,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &format!("{who}.csr"),
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca-key.pem",
                    "-CAcreateserial",
                    "-days",
                    valid,
                    "-out",
                    &format!("{who}.pem"),
                    "-extfile",
                    &format!("{who}.ext"),
                ],
            );
        }
        Certs { dir }
    }

    /// A directory as `DOCKER_CERT_PATH` wants it (`ca.pem`, `cert.pem`,
    /// `key.pem`) for the client, trusting `ca` (`"ca"` or `"other-ca"`).
    pub fn client_dir(&self, ca: &str) -> String {
        let d = self.dir.path().join(format!("client-trusting-{ca}"));
        std::fs::create_dir_all(&d).unwrap();
        let src = self.dir.path();
        std::fs::copy(src.join(format!("{ca}.pem")), d.join("ca.pem")).unwrap();
        std::fs::copy(src.join("client.pem"), d.join("cert.pem")).unwrap();
        std::fs::copy(src.join("client-key.pem"), d.join("key.pem")).unwrap();
        d.display().to_string()
    }

    fn path(&self, file: &str) -> String {
        self.dir.path().join(file).display().to_string()
    }
}

/// `socat` forwarding a loopback port to the local daemon socket; killed
/// on drop.
pub struct Forward {
    child: Child,
    /// The loopback port it listens on.
    pub port: u16,
}

impl Forward {
    /// TLS on the port, verifying clients against the CA of `certs`.
    pub fn tls(certs: &Certs) -> Self {
        let port = free_port();
        let config = certs.dir.path().join(format!("stunnel-{port}.conf"));
        std::fs::write(
            &config,
            format!(
                "foreground = yes\npid =\n[docker]\naccept = 127.0.0.1:{port}\nconnect = /var/run/docker.sock\ncert = {}\nkey = {}\nCAfile = {}\nverifyChain = yes\nrequireCert = yes\n",
                certs.path("server.pem"),
                certs.path("server-key.pem"),
                certs.path("ca.pem"),
            ),
        )
        .unwrap();
        let child = Command::new("stunnel4")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot run stunnel4 (ci/setup installs it)");
        Self::listening(child, port)
    }

    /// Plain TCP on the port: a daemon without TLS.
    pub fn plain() -> Self {
        Self::spawn(|port| format!("TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork"))
    }

    /// `tcp://127.0.0.1:<port>`.
    pub fn docker_host(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    fn spawn(listen: impl Fn(u16) -> String) -> Self {
        let port = free_port();
        let child = Command::new("socat")
            .args([listen(port).as_str(), "UNIX-CONNECT:/var/run/docker.sock"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot run socat (ci/setup installs it)");
        Self::listening(child, port)
    }

    fn listening(child: Child, port: u16) -> Self {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nothing listens on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Forward { child, port }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("no free loopback port")
        .port()
}

impl Drop for Forward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
