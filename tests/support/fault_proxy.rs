//! A fault-injecting proxy in front of the Docker socket: it forwards
//! requests to the real daemon and, when a test says so, refuses, fails,
//! delays, swallows or never answers them, or goes away altogether.
//!
//! The proxy runs on a thread of its own with its own tokio runtime, so it
//! serves plain `#[test]`s and any `#[tokio::test]` alike and outlives the
//! runtimes of the tests that use it. Its handle, [`FaultProxy`], is `Clone`
//! and `Sync`: every method works from any thread, inside a runtime or not,
//! and takes effect for the requests that arrive after it returns.
//!
//! # How requests are seen
//!
//! Docker clients keep connections alive and send many requests on each. The
//! proxy reads each request head, rewrites its `Connection` header to
//! `close` and forwards it on a fresh upstream connection; the daemon then
//! answers with `Connection: close` too, so the client opens a new connection
//! for its next request and the proxy sees every request on its own. Bodies
//! (both ways, `Content-Length` or chunked) pass through as bytes, unparsed.
//!
//! A request with an `Upgrade` header (exec start, attach) is a hijacked
//! stream: its head is forwarded unchanged and bytes are piped both ways,
//! half-closes included, until both sides are done.
//!
//! # Order of faults
//!
//! A connection is first checked against [`refuse_next`](FaultProxy::refuse_next).
//! Its request is then read and logged, and the first that applies wins:
//! [`black_hole`](FaultProxy::black_hole), [`fail_matching`](FaultProxy::fail_matching),
//! [`fail_next`](FaultProxy::fail_next),
//! [`swallow_next_create`](FaultProxy::swallow_next_create), forwarding.
//! [`delay`](FaultProxy::delay) applies to every response that is sent, the
//! injected ones included.
//!
//! # Version negotiation
//!
//! `Docker::negotiate_version` sends `GET /version`, which counts as a
//! request like any other: negotiate before arming a fault.

use std::io;
use std::os::unix::net::UnixListener as StdUnixListener;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self as std_mpsc, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

/// The real daemon: the unix socket `DOCKER_HOST` names, as the tests'
/// own checks use it, or the default socket.
fn upstream() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(str::to_owned))
        .unwrap_or_else(|| "/var/run/docker.sock".to_owned())
}

/// A request head longer than this is dropped: Docker clients send a few
/// hundred bytes.
const MAX_HEAD: usize = 64 * 1024;

/// The buffer each direction of a forwarded connection copies through.
const COPY_BUF: usize = 16 * 1024;

/// How long a connection answered by the proxy itself is drained after the
/// answer, so that closing it does not reset the client before it has
/// read the answer.
const LINGER: Duration = Duration::from_secs(2);

/// How long `kill` and `revive` wait for the proxy thread to confirm.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// A fault-injecting proxy on a unix socket of its own, forwarding to the
/// real daemon at `/var/run/docker.sock`.
///
/// Clones share one proxy. When the last clone is dropped, the proxy thread
/// stops, every connection through it is closed, and the socket file is
/// removed.
///
/// # Examples
///
/// ```no_run
/// # async fn f() -> Result<(), bollard::errors::Error> {
/// let proxy = FaultProxy::start();
/// let docker = bollard::Docker::connect_with_unix(
///     &proxy.docker_host(),
///     10,
///     bollard::API_DEFAULT_VERSION,
/// )?
/// .negotiate_version()
/// .await?;
/// proxy.fail_next(1, 503);
/// assert!(docker.ping().await.is_err());
/// assert_eq!(proxy.count("GET", "/_ping"), 1);
/// # Ok(())
/// # }
/// ```
///
/// # Resource leaking
///
/// A proxy that is never dropped (a `static`, a leaked clone, a process
/// killed by a signal) leaves its thread running until the process exits
/// and its socket file in the temp dir.
#[derive(Clone, Debug)]
pub struct FaultProxy {
    inner: Arc<Inner>,
}

const _: fn() = || {
    fn assert_shareable<T: Clone + Send + Sync + 'static>() {}
    assert_shareable::<FaultProxy>();
};

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    shared: Arc<Shared>,
    commands: mpsc::UnboundedSender<Command>,
    /// True while the socket is bound; the lock also serializes `kill` and
    /// `revive`.
    listening: Mutex<bool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// What the proxy thread and the handle both see.
#[derive(Debug)]
struct Shared {
    faults: Mutex<Faults>,
    black_hole: watch::Sender<bool>,
    log: Mutex<Vec<(String, String)>>,
}

#[derive(Debug, Default)]
struct Faults {
    refuse: u64,
    fail: u64,
    fail_status: u16,
    /// What the next failures say; `injected <status>` when empty.
    fail_message: String,
    delay: Duration,
    swallow_create: bool,
    /// Standing failures: (method, path fragment, status).
    matching: Vec<(String, String, u16)>,
}

/// Orders for the proxy thread. Each carries a channel to confirm on, so
/// the method that sent it returns once it has taken effect.
enum Command {
    Listen(StdUnixListener, SyncSender<()>),
    Kill(SyncSender<()>),
    Shutdown,
}

/// What to do with a request once it has been read.
enum Action {
    /// Answer with this status and message.
    Fail(u16, String),
    Swallow,
    Forward,
}

impl FaultProxy {
    /// Listens on a fresh socket under the temp dir and starts the proxy
    /// thread. Works with or without a tokio runtime.
    ///
    /// # Panics
    ///
    /// If the socket cannot be bound or the thread or its runtime cannot be
    /// started.
    pub fn start() -> Self {
        let path =
            std::env::temp_dir().join(format!("dockfix-fault-{}.sock", super::unique("proxy")));
        let listener = bind(&path)
            .unwrap_or_else(|e| panic!("cannot bind the fault proxy to {}: {e}", path.display()));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("cannot build the fault proxy runtime");
        let (black_hole, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            faults: Mutex::new(Faults::default()),
            black_hole,
            log: Mutex::new(Vec::new()),
        });
        let (commands, receiver) = mpsc::unbounded_channel();
        let thread = std::thread::Builder::new()
            .name("fault-proxy".to_owned())
            .spawn({
                let shared = Arc::clone(&shared);
                // Dropping the runtime at the end of the thread cancels every
                // connection task still running.
                move || runtime.block_on(accept_loop(listener, shared, receiver))
            })
            .expect("cannot spawn the fault proxy thread");
        FaultProxy {
            inner: Arc::new(Inner {
                path,
                shared,
                commands,
                listening: Mutex::new(true),
                thread: Mutex::new(Some(thread)),
            }),
        }
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The value for `DOCKER_HOST`, and for `Docker::connect_with_unix` or
    /// `Docker::connect_with_host`: `unix://<path>`.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.inner.path.display())
    }

    /// Accepts the next `n` connections and closes each at once, without
    /// reading it: the client sees its connection closed or reset. Replaces
    /// any count still pending; `0` cancels. Refused connections carry no
    /// request and are not logged.
    pub fn refuse_next(&self, n: u64) {
        self.inner.shared.faults().refuse = n;
    }

    /// Answers the next `n` requests itself with `status` and the JSON body
    /// `{"message":"injected <status>"}` (no body for 204 and 304), without
    /// forwarding them. Replaces any count still pending; `0` cancels.
    ///
    /// # Panics
    ///
    /// If `status` is not between 200 and 599.
    pub fn fail_next(&self, n: u64, status: u16) {
        assert!(
            (200..=599).contains(&status),
            "fail_next: {status} is not a final HTTP status"
        );
        self.fail_next_saying(n, status, "");
    }

    /// Like [`fail_next`](Self::fail_next), with `message` as the body's
    /// `message` (Docker's own words, to see how they are classified).
    ///
    /// # Panics
    ///
    /// If `status` is not between 200 and 599.
    pub fn fail_next_saying(&self, n: u64, status: u16, message: &str) {
        assert!(
            (200..=599).contains(&status),
            "fail_next: {status} is not a final HTTP status"
        );
        let mut faults = self.inner.shared.faults();
        faults.fail = n;
        faults.fail_status = status;
        faults.fail_message = message.to_owned();
    }

    /// Answers every request whose method is `method` and whose path
    /// contains `path_contains` itself, with `status` and the JSON body
    /// `{"message":"injected <status>"}`, until [`clear_faults`](Self::clear_faults):
    /// a daemon that refuses one object (a container that resists its
    /// removal) and serves every other.
    ///
    /// # Panics
    ///
    /// If `status` is not between 200 and 599.
    pub fn fail_matching(&self, method: &str, path_contains: &str, status: u16) {
        assert!(
            (200..=599).contains(&status),
            "fail_matching: {status} is not a final HTTP status"
        );
        self.inner.shared.faults().matching.push((
            method.to_owned(),
            path_contains.to_owned(),
            status,
        ));
    }

    /// Holds every response for `delay` before passing it on: the daemon
    /// acts at once, the client hears of it late. For a streamed or
    /// hijacked response only its start is held. `Duration::ZERO` turns the
    /// delay off.
    pub fn delay(&self, delay: Duration) {
        self.inner.shared.faults().delay = delay;
    }

    /// Forwards the next `POST .../containers/create` to the daemon, waits
    /// for its answer, and closes the client's connection without passing
    /// the answer on: the container exists, and the client never learns it.
    /// Other requests pass meanwhile. Arms one create, however often it is
    /// called.
    pub fn swallow_next_create(&self) {
        self.inner.shared.faults().swallow_create = true;
    }

    /// While `on`, reads each request and never answers it nor forwards it.
    /// Turning it off closes the connections it holds, unanswered (the
    /// daemon never saw them), and lets later requests through.
    pub fn black_hole(&self, on: bool) {
        self.inner.shared.black_hole.send_replace(on);
    }

    /// Turns every fault off: pending refusals, failures and swallow, the
    /// delay and the black hole. Does not revive a killed proxy.
    pub fn clear_faults(&self) {
        *self.inner.shared.faults() = Faults::default();
        self.black_hole(false);
    }

    /// Stops listening, removes the socket file and closes every connection
    /// through the proxy, as if the daemon had died: connecting fails with
    /// `ENOENT`. Does nothing if already killed.
    ///
    /// # Panics
    ///
    /// If the proxy thread has stopped (a bug in the proxy).
    pub fn kill(&self) {
        let mut listening = lock(&self.inner.listening);
        if !*listening {
            return;
        }
        // Removing the file first makes new connects fail at once, even
        // before the proxy thread drops the listener.
        let _ = std::fs::remove_file(&self.inner.path);
        self.order(Command::Kill);
        *listening = false;
    }

    /// Listens again on the same path after [`kill`](Self::kill). Faults
    /// and the log are kept. Does nothing if listening.
    ///
    /// # Panics
    ///
    /// If the socket cannot be bound again or the proxy thread has stopped.
    pub fn revive(&self) {
        let mut listening = lock(&self.inner.listening);
        if *listening {
            return;
        }
        let listener = bind(&self.inner.path).unwrap_or_else(|e| {
            panic!(
                "cannot bind the fault proxy to {} again: {e}",
                self.inner.path.display()
            )
        });
        self.order(|ack| Command::Listen(listener, ack));
        *listening = true;
    }

    /// The method and path (without the query, with any `/v1.xx` prefix) of
    /// every request that reached the proxy since the start or the last
    /// [`reset_log`](Self::reset_log), in arrival order: forwarded ones and
    /// those a fault answered, held or swallowed alike.
    pub fn requests(&self) -> Vec<(String, String)> {
        self.inner.shared.log().clone()
    }

    /// How many logged requests have `method` (any case) and a path that
    /// contains `path_contains`.
    pub fn count(&self, method: &str, path_contains: &str) -> usize {
        self.inner
            .shared
            .log()
            .iter()
            .filter(|(m, p)| m.eq_ignore_ascii_case(method) && p.contains(path_contains))
            .count()
    }

    /// Empties the request log.
    pub fn reset_log(&self) {
        self.inner.shared.log().clear();
    }

    /// Sends `make(ack)` to the proxy thread and waits until it confirms.
    fn order(&self, make: impl FnOnce(SyncSender<()>) -> Command) {
        let (ack, confirmed) = std_mpsc::sync_channel(1);
        let sent = self.inner.commands.send(make(ack)).is_ok();
        assert!(
            sent && confirmed.recv_timeout(ACK_TIMEOUT).is_ok(),
            "the fault proxy thread has stopped"
        );
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Shutdown);
        let thread = self
            .thread
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
        if *self
            .listening
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Shared {
    fn faults(&self) -> MutexGuard<'_, Faults> {
        lock(&self.faults)
    }

    fn log(&self) -> MutexGuard<'_, Vec<(String, String)>> {
        lock(&self.log)
    }

    /// Uses up one refusal, if any is pending.
    fn take_refusal(&self) -> bool {
        let mut faults = self.faults();
        let refuse = faults.refuse > 0;
        faults.refuse = faults.refuse.saturating_sub(1);
        refuse
    }

    fn decide(&self, request: &Request) -> Action {
        let mut faults = self.faults();
        let matched = faults.matching.iter().find(|(method, path, _)| {
            request.method == *method && request.path.contains(path.as_str())
        });
        if let Some((_, _, status)) = matched {
            Action::Fail(*status, String::new())
        } else if faults.fail > 0 {
            faults.fail -= 1;
            Action::Fail(faults.fail_status, faults.fail_message.clone())
        } else if faults.swallow_create && request.is_create() {
            faults.swallow_create = false;
            Action::Swallow
        } else {
            Action::Forward
        }
    }

    /// Sleeps for the current delay, if any.
    async fn hold_response(&self) {
        let delay = self.faults().delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }
}

/// A poisoned lock only means a test panicked while holding it; the data
/// is still good.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Binds in the caller's thread, so that connecting works as soon as
/// `start` or `revive` returns and binding errors reach the caller.
fn bind(path: &Path) -> io::Result<StdUnixListener> {
    let listener = StdUnixListener::bind(path)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// The proxy thread: accepts connections and obeys commands until told to
/// shut down or until every handle is gone.
async fn accept_loop(
    listener: StdUnixListener,
    shared: Arc<Shared>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut listener = into_tokio(listener);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                None | Some(Command::Shutdown) => return,
                Some(Command::Kill(ack)) => {
                    listener = None;
                    connections.abort_all();
                    let _ = ack.send(());
                }
                Some(Command::Listen(std_listener, ack)) => {
                    listener = into_tokio(std_listener);
                    let _ = ack.send(());
                }
            },
            accepted = accept(listener.as_ref()) => match accepted {
                Ok(client) => {
                    if !shared.take_refusal() {
                        connections.spawn(serve(client, Arc::clone(&shared)));
                    }
                }
                // Out of file descriptors and the like: wait rather than
                // spin on an error that repeats.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

fn into_tokio(listener: StdUnixListener) -> Option<UnixListener> {
    UnixListener::from_std(listener)
        .inspect_err(|e| eprintln!("fault proxy: cannot listen: {e}"))
        .ok()
}

/// Waits forever while not listening.
async fn accept(listener: Option<&UnixListener>) -> io::Result<UnixStream> {
    match listener {
        Some(listener) => listener.accept().await.map(|(stream, _)| stream),
        None => std::future::pending().await,
    }
}

/// One client connection, which carries exactly one request (or one
/// hijacked stream).
async fn serve(mut client: UnixStream, shared: Arc<Shared>) {
    let Some((head, body_start)) = read_head(&mut client).await else {
        return;
    };
    let Some(request) = Request::parse(&head) else {
        return;
    };
    shared
        .log()
        .push((request.method.clone(), request.path.clone()));

    let mut black_hole = shared.black_hole.subscribe();
    if *black_hole.borrow_and_update() {
        tokio::select! {
            _ = black_hole.wait_for(|on| !on) => {}
            () = drain(&mut client) => {}
        }
        return;
    }

    match shared.decide(&request) {
        Action::Fail(status, message) => {
            shared.hold_response().await;
            let message = if message.is_empty() {
                format!("injected {status}")
            } else {
                message
            };
            let body = serde_json::json!({ "message": message }).to_string();
            answer(client, status, &body).await;
        }
        Action::Swallow => forward(client, &head, &body_start, &request, &shared, true).await,
        Action::Forward => forward(client, &head, &body_start, &request, &shared, false).await,
    }
}

/// Reads up to the end of the request head. Returns the head and whatever
/// of the body came with it; `None` if the client hangs up first or the
/// head is too long.
async fn read_head(client: &mut UnixStream) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::with_capacity(4096);
    loop {
        let searched = buf.len().saturating_sub(3);
        buf.reserve(4096);
        match client.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        if let Some(i) = buf[searched..].windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(searched + i + 4);
            return Some((buf, rest));
        }
        if buf.len() > MAX_HEAD {
            return None;
        }
    }
}

/// Reads and discards until the client closes or fails.
async fn drain<R: AsyncRead + Unpin>(reader: &mut R) {
    let mut sink = [0u8; 1024];
    while let Ok(1..) = reader.read(&mut sink).await {}
}

/// Answers with `status` and a JSON `body`, then closes the connection.
async fn answer(mut client: UnixStream, status: u16, body: &str) {
    let body = if matches!(status, 204 | 304) {
        ""
    } else {
        body
    };
    let response = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        reason(status),
        body.len()
    );
    if client.write_all(response.as_bytes()).await.is_err() {
        return;
    }
    let _ = client.shutdown().await;
    // Closing with unread request bytes would reset the connection, and the
    // client could see the reset instead of the answer.
    let _ = tokio::time::timeout(LINGER, drain(&mut client)).await;
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        409 => "Conflict",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Injected",
    }
}

/// Forwards one request to the daemon and its response back. With
/// `swallow`, waits for the response to start and then closes both
/// connections instead of passing it on.
async fn forward(
    client: UnixStream,
    head: &[u8],
    body_start: &[u8],
    request: &Request,
    shared: &Shared,
    swallow: bool,
) {
    let upstream_path = upstream();
    let mut upstream = match UnixStream::connect(&upstream_path).await {
        Ok(upstream) => upstream,
        Err(e) => {
            let body = format!(r#"{{"message":"fault proxy: cannot reach {upstream_path}: {e}"}}"#);
            return answer(client, 502, &body).await;
        }
    };
    let head = if request.upgrade {
        head.to_vec()
    } else {
        close_after(head)
    };
    if upstream.write_all(&head).await.is_err() || upstream.write_all(body_start).await.is_err() {
        return;
    }

    let (mut client_read, mut client_write) = client.into_split();
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    let up = async {
        let copied = tokio::io::copy(&mut client_read, &mut upstream_write).await;
        let _ = upstream_write.shutdown().await;
        copied.map(drop)
    };
    let down = async {
        let mut buf = vec![0u8; COPY_BUF];
        let n = upstream_read.read(&mut buf).await?;
        if swallow {
            return Ok(());
        }
        shared.hold_response().await;
        let mut n = n;
        while n > 0 {
            client_write.write_all(&buf[..n]).await?;
            n = upstream_read.read(&mut buf).await?;
        }
        client_write.shutdown().await
    };

    if request.upgrade {
        // A stream both ways: done when both sides are, or when one fails.
        let _ = tokio::try_join!(up, down);
    } else {
        // The daemon closes after its response (`Connection: close`), which
        // ends the exchange. A client that hangs up first is passed on as a
        // half-close, which the daemon takes as the client being gone.
        tokio::pin!(down);
        tokio::select! {
            _ = &mut down => {}
            _ = up => {
                let _ = down.await;
            }
        }
    }
}

/// The head with its `Connection` and `Keep-Alive` headers replaced by
/// `Connection: close`.
fn close_after(head: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(head.len() + 20);
    let mut lines = head.split(|&b| b == b'\n').map(trim_cr);
    if let Some(request_line) = lines.next() {
        out.extend_from_slice(request_line);
        out.extend_from_slice(b"\r\n");
    }
    for line in lines.filter(|l| !l.is_empty()) {
        if is_header(line, b"connection") || is_header(line, b"keep-alive") {
            continue;
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    out
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn is_header(line: &[u8], name: &[u8]) -> bool {
    line.split(|&b| b == b':')
        .next()
        .is_some_and(|n| n.trim_ascii().eq_ignore_ascii_case(name))
}

/// What the proxy needs to know of a request.
#[derive(Debug)]
struct Request {
    method: String,
    /// The target without its query.
    path: String,
    /// Asks for a hijacked stream (`Upgrade: tcp`).
    upgrade: bool,
}

impl Request {
    fn parse(head: &[u8]) -> Option<Self> {
        let mut lines = head.split(|&b| b == b'\n').map(trim_cr);
        let request_line = std::str::from_utf8(lines.next()?).ok()?;
        let mut parts = request_line.split(' ');
        let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
        if method.is_empty() || !version.starts_with("HTTP/") {
            return None;
        }
        let path = target.split('?').next().unwrap_or(target);
        Some(Request {
            method: method.to_owned(),
            path: path.to_owned(),
            upgrade: lines.any(|l| is_header(l, b"upgrade")),
        })
    }

    fn is_create(&self) -> bool {
        self.method == "POST" && self.path.contains("/containers/create")
    }
}
