//! Container lifecycle: dockfix against the same operations done with raw
//! bollard calls, measured in one run against the local daemon.
//!
//! Run it with `cargo bench --bench lifecycle --features bench-internals`
//! (or only the pool section
//! with `LIFECYCLE_ONLY=pool`) after `bash ci/setup` has
//! built `dockfix-test/busybox:latest`. It needs a Docker daemon and no
//! registry, and takes about three minutes.
//!
//! Both sides start `sleep 300` on the test image with the same create
//! request: the default (bridge) network, dockfix's six owner labels and
//! the `host.docker.internal:host-gateway` extra host. The raw side is one
//! `bollard::Docker` (`connect_with_defaults` + `negotiate_version`) driven
//! from the tokio multi-thread runtime this bench builds; dockfix runs its
//! Docker I/O on its own engine runtime, so its numbers include the hop
//! there and back. Samples alternate between the two sides so that drift
//! in the daemon affects both alike.
//!
//! What is measured:
//!
//! 1. `start`: `ContainerSpec::start` against raw create + start, and a
//!    second raw baseline create + start + inspect (dockfix inspects once
//!    for ports and state). Containers are removed outside the timed region.
//! 2. `drop`: the time `drop(guard)` itself takes (the removal is handed to
//!    the engine), next to an inline raw force-remove.
//! 3. `64 tests`: 64 sequential "tests" per side, each start +
//!    `exec true` + end. dockfix drops the guard, so removal overlaps the
//!    next test; raw removes inline. The overlap is what is measured, so a
//!    side runs 16 tests in a row (chunks alternate between the sides) and
//!    each dockfix chunk is timed until `wait_for_removals` returns. The
//!    start step of each test is reported too: dockfix's overlaps the
//!    previous removal.
//! 4. `exec`: `exec(["true"])` on one running container against raw
//!    create_exec + start_exec (attached, read to the end) + inspect_exec.
//! 5. `remove x16`: 16 guards dropped together, timed until
//!    `wait_for_removals` returns, against 16 concurrent raw force-removes
//!    (`join_all`); 3 repeats per side.
//!
//! Each line of the final table gives n, p50 and p90 of both sides, the
//! ratio of medians dockfix/raw, and the target. Every raw container
//! carries `dockfix.managed=true` and this process's `dockfix.session`; at
//! the end the bench checks that no container of its session is left,
//! removes any it finds and exits non-zero if it had to.

use std::collections::HashMap;
use std::future::{Future, IntoFuture};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
};
use dockfix::{ContainerSpec, TestContainer};
use futures::StreamExt;
use futures::future::join_all;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Res<T> = Result<T, BoxError>;

const IMAGE: &str = "dockfix-test/busybox:latest";
const CMD: [&str; 2] = ["sleep", "300"];
const HOST_GATEWAY: &str = "host.docker.internal:host-gateway";

const START_SAMPLES: usize = 30;
const SEQUENTIAL_TESTS: usize = 64;
const SEQUENTIAL_CHUNK: usize = 16;
const EXEC_SAMPLES: usize = 50;
const BURST: usize = 16;
const BURST_REPEATS: usize = 3;
/// How many containers are started at once when preparing a burst.
const PREPARE_CONCURRENCY: usize = 4;
/// Pause after preparing a removal burst, so that it starts on an idle
/// daemon.
const QUIESCE: Duration = Duration::from_millis(250);
/// Bound on every wait for dockfix's background removals.
const SETTLE: Duration = Duration::from_secs(120);

fn main() -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lifecycle: cannot build the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async {
        let raw = match Raw::connect().await {
            Ok(raw) => raw,
            Err(e) => {
                eprintln!("lifecycle: cannot reach the Docker daemon: {e}");
                return ExitCode::FAILURE;
            }
        };
        let load_before = load_average();
        let outcome = run(&raw).await;
        let clean = cleanup(&raw).await;
        match outcome {
            Ok(table) => {
                print_table(&table);
                print_machine(&load_before, &load_average());
                if clean {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                eprintln!("lifecycle: benchmark failed: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Runs every measurement in order and returns the table rows.
async fn run(raw: &Raw) -> Res<Vec<Row>> {
    warm_up(raw).await?;
    // `LIFECYCLE_ONLY=pool cargo bench --bench lifecycle` runs one section.
    if std::env::var("LIFECYCLE_ONLY").as_deref() == Ok("pool") {
        return bench_pool().await;
    }
    let mut rows = Vec::new();
    rows.extend(bench_start_and_drop(raw).await?);
    rows.extend(bench_sequential_tests(raw).await?);
    rows.push(bench_exec(raw).await?);
    rows.push(bench_burst_removal(raw).await?);
    rows.push(bench_remove_on_kill().await?);
    rows.push(bench_retry_layer().await?);
    rows.extend(bench_pool().await?);
    Ok(rows)
}

/// `ContainerPool`: the latency of a warm acquire, and a suite of 64 tests
/// (each: get a container, `exec true`, give it back) with a pool of 4
/// against a fresh container per test. The pool's side is timed from its
/// creation (its members start inside the timing) to its `close()`; the
/// fresh side until every removal is done.
async fn bench_pool() -> Res<Vec<Row>> {
    const ACQUIRES: usize = 200;
    progress(&format!(
        "pool: {ACQUIRES} warm acquires, then {SEQUENTIAL_TESTS} tests per side"
    ));
    let pool = dockfix::ContainerPool::builder("bench-warm", spec())
        .min_idle(4)
        .max_size(4)
        .build();
    pool.prewarm();
    while pool.stats().idle < 4 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut acquire = Vec::with_capacity(ACQUIRES);
    for _ in 0..ACQUIRES {
        let (c, t) = timed(pool.acquire()).await;
        acquire.push(t);
        drop(c?);
        // Let the member come back, so every sample is a warm acquire.
        while pool.stats().idle < 4 {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
    pool.close().await?;
    let mut sorted = acquire.clone();
    sorted.sort_unstable();
    let p99 = sorted[(sorted.len() * 99 / 100).min(sorted.len() - 1)];

    let started = Instant::now();
    let pool = dockfix::ContainerPool::builder("bench-suite", spec())
        .min_idle(4)
        .max_size(4)
        .build();
    let mut pooled_tests = Vec::with_capacity(SEQUENTIAL_TESTS);
    for _ in 0..SEQUENTIAL_TESTS {
        let t = Instant::now();
        let c = pool.acquire().await?;
        expect_success(c.exec(["true"]).await?.exit_code)?;
        drop(c);
        pooled_tests.push(t.elapsed());
    }
    pool.close().await?;
    let pooled_total = started.elapsed();

    let started = Instant::now();
    let mut fresh_tests = Vec::with_capacity(SEQUENTIAL_TESTS);
    for _ in 0..SEQUENTIAL_TESTS {
        let t = Instant::now();
        let c = spec().start().await?;
        expect_success(c.exec(["true"]).await?.exit_code)?;
        drop(c);
        fresh_tests.push(t.elapsed());
    }
    settle().await?;
    let fresh_total = started.elapsed();

    // A shared pool: the same, with every claim made on the daemon.
    let shared = dockfix::ContainerPool::builder(format!("bench{}", std::process::id()), spec())
        .shared(true)
        .max_size(4)
        .build();
    let warm_up: Vec<_> = futures::future::try_join_all((0..4).map(|_| shared.acquire())).await?;
    drop(warm_up);
    let mut shared_acquire = Vec::with_capacity(ACQUIRES / 2);
    for _ in 0..ACQUIRES / 2 {
        let (c, t) = timed(shared.acquire()).await;
        shared_acquire.push(t);
        drop(c?);
        // Its lease is removed in the background; let that finish.
        settle_shared().await;
    }
    shared.close().await?;
    let mut sorted_shared = shared_acquire.clone();
    sorted_shared.sort_unstable();
    let shared_p99 = sorted_shared[(sorted_shared.len() * 99 / 100).min(sorted_shared.len() - 1)];

    let warm = Summary::of(&acquire);
    let shared_warm = Summary::of(&shared_acquire);
    Ok(vec![
        Row::ratio(
            "shared pool acquire",
            &shared_acquire,
            "-",
            &shared_acquire,
            Target::None,
        )
        .with_note(&format!(
            "across processes, a claim on the daemon: p50 {} p99 {}",
            fmt_dur(shared_warm.p50),
            fmt_dur(shared_p99)
        )),
        Row::ratio("pool warm acquire", &acquire, "-", &acquire, Target::None).with_note(&format!(
            "p50 {} p99 {} (goal p50 <= 1ms)",
            fmt_dur(warm.p50),
            fmt_dur(p99)
        )),
        Row::ratio(
            "pool: 64 tests",
            &pooled_tests,
            "a fresh container per test",
            &fresh_tests,
            Target::None,
        )
        .with_note(&format!(
            "total: pool of 4 {} fresh {} speedup {:.1}x (goal >= 5x)",
            fmt_dur(pooled_total),
            fmt_dur(fresh_total),
            fresh_total.as_secs_f64() / pooled_total.as_secs_f64()
        )),
    ])
}

/// The retry and circuit-breaker layer around one Docker call that
/// succeeds at once, against the bare call, timed on the engine.
async fn bench_retry_layer() -> Res<Row> {
    const CALLS: usize = 10_000;
    progress(&format!("retry layer: {CALLS} calls"));
    let (layered, bare) = dockfix::bench::layer_cost(CALLS).await?;
    let (l, b) = (Summary::of(&layered), Summary::of(&bare));
    let added = l.p50.saturating_sub(b.p50);
    Ok(Row::ratio(
        "retry layer",
        &layered,
        "the same call, bare",
        &bare,
        Target::None,
    )
    .with_note(&format!(
        "added per call: {} at p50 (goal < 50us and < 1% of a start)",
        fmt_dur(added)
    )))
}

fn spec() -> ContainerSpec {
    ContainerSpec::new(IMAGE).cmd(CMD)
}

/// Connects both clients, and pays the first-use costs (engine runtime,
/// version negotiation, connection set-up) outside any measurement.
async fn warm_up(raw: &Raw) -> Res<()> {
    progress("warming up");
    for _ in 0..2 {
        let c = spec().start().await?;
        c.exec(["true"]).await?;
        c.remove().await?;
        let id = raw.create_and_start().await?;
        raw.exec_true(&id).await?;
        raw.remove(&id).await?;
    }
    Ok(())
}

/// Measures 1 (start) and 2 (drop): each start's container is then removed,
/// and that removal is the drop or raw-remove sample.
async fn bench_start_and_drop(raw: &Raw) -> Res<Vec<Row>> {
    progress(&format!("start/drop: {START_SAMPLES} samples per side"));
    let (mut df_start, mut raw_start, mut raw_start_inspect) = (Vec::new(), Vec::new(), Vec::new());
    let (mut df_drop, mut raw_remove) = (Vec::new(), Vec::new());
    for i in 0..START_SAMPLES {
        // Rotating the order of the three arms spreads any effect of the
        // previous sample evenly over them.
        for arm in (0..3).map(|k| (i + k) % 3) {
            match arm {
                0 => {
                    let (c, t) = timed(spec().start()).await;
                    df_start.push(t);
                    let c = c?;
                    let t = Instant::now();
                    drop(c);
                    df_drop.push(t.elapsed());
                    settle().await?;
                }
                1 => {
                    let (id, t) = timed(raw.create_and_start()).await;
                    raw_start.push(t);
                    let id = id?;
                    let (removed, t) = timed(raw.remove(&id)).await;
                    raw_remove.push(t);
                    removed?;
                }
                _ => {
                    let (id, t) = timed(async {
                        let id = raw.create_and_start().await?;
                        raw.inspect(&id).await?;
                        Ok::<_, BoxError>(id)
                    })
                    .await;
                    raw_start_inspect.push(t);
                    raw.remove(&id?).await?;
                }
            }
        }
    }
    Ok(vec![
        Row::ratio(
            "start",
            &df_start,
            "raw create+start",
            &raw_start,
            Target::None,
        ),
        Row::ratio(
            "start",
            &df_start,
            "raw create+start+inspect",
            &raw_start_inspect,
            Target::None,
        ),
        Row::ratio(
            "drop",
            &df_drop,
            "raw inline force-remove",
            &raw_remove,
            Target::P90AtMost(Duration::from_millis(5)),
        ),
    ])
}

/// Measures 3: 64 sequential tests per side. dockfix's gain comes from
/// overlapping each removal with the next test, so a side runs several
/// tests in a row: chunks of 16, alternating sides, each dockfix chunk
/// timed until `wait_for_removals` returns (a tail the 64 tests in one
/// block would pay once, so this slightly favours raw).
async fn bench_sequential_tests(raw: &Raw) -> Res<Vec<Row>> {
    progress(&format!(
        "sequential tests: {SEQUENTIAL_TESTS} per side, in chunks of {SEQUENTIAL_CHUNK}"
    ));
    let (mut df, mut rw) = (Sequential::default(), Sequential::default());
    for i in 0..SEQUENTIAL_TESTS / SEQUENTIAL_CHUNK {
        for side in Side::pair(i) {
            let chunk_start = Instant::now();
            let record = match side {
                Side::Dockfix => &mut df,
                Side::Raw => &mut rw,
            };
            for _ in 0..SEQUENTIAL_CHUNK {
                let (start_step, t) = match side {
                    Side::Dockfix => timed(dockfix_test()).await,
                    Side::Raw => timed(raw_test(raw)).await,
                };
                record.tests.push(t);
                record.start_steps.push(start_step?);
            }
            if let Side::Dockfix = side {
                settle().await?;
            }
            record.chunks.push(chunk_start.elapsed());
        }
    }
    let df_total: Duration = df.chunks.iter().sum();
    let raw_total: Duration = rw.chunks.iter().sum();
    Ok(vec![
        Row::ratio(
            "64 tests: per test",
            &df.tests,
            "raw inline remove",
            &rw.tests,
            Target::None,
        ),
        Row::ratio(
            "64 tests: start step",
            &df.start_steps,
            "raw start, no removal in flight",
            &rw.start_steps,
            Target::None,
        )
        .with_note("dockfix starts while the previous test's container is being removed"),
        Row {
            name: format!("{SEQUENTIAL_TESTS} tests: chunks"),
            baseline: "raw inline remove".to_owned(),
            dockfix: Summary::of(&df.chunks),
            raw: Summary::of(&rw.chunks),
            ratio: ratio(df_total, raw_total),
            target: Target::SpeedupAtLeast(1.3),
            note: format!(
                "total wall time of {SEQUENTIAL_TESTS} tests: dockfix {} raw {}  speedup raw/dockfix {:.2}x (ratio is of totals)",
                fmt_dur(df_total),
                fmt_dur(raw_total),
                ratio(raw_total, df_total)
            ),
        },
    ])
}

/// One side's samples in the sequential-tests measurement.
#[derive(Debug, Default)]
struct Sequential {
    /// Wall time of each chunk of tests.
    chunks: Vec<Duration>,
    /// Wall time of each test.
    tests: Vec<Duration>,
    /// The start step of each test.
    start_steps: Vec<Duration>,
}

/// One dockfix "test": start, one exec, and the guard goes out of scope.
/// Returns how long the start took.
async fn dockfix_test() -> Res<Duration> {
    let (c, start_step) = timed(spec().start()).await;
    let c = c?;
    expect_success(c.exec(["true"]).await?.exit_code)?;
    Ok(start_step)
}

/// One raw "test": everything inline, removal included. Returns how long
/// the start took.
async fn raw_test(raw: &Raw) -> Res<Duration> {
    let (id, start_step) = timed(raw.create_and_start()).await;
    let id = id?;
    let code = raw.exec_true(&id).await;
    raw.remove(&id).await?;
    expect_success(code?)?;
    Ok(start_step)
}

/// Measures 4: `exec true` on one running container, alternating sides.
async fn bench_exec(raw: &Raw) -> Res<Row> {
    progress(&format!("exec: {EXEC_SAMPLES} samples per side"));
    let c = spec().start().await?;
    let (mut df, mut rw) = (Vec::new(), Vec::new());
    for i in 0..EXEC_SAMPLES {
        for side in Side::pair(i) {
            match side {
                Side::Dockfix => {
                    let (out, t) = timed(c.exec(["true"])).await;
                    df.push(t);
                    expect_success(out?.exit_code)?;
                }
                Side::Raw => {
                    let (code, t) = timed(raw.exec_true(c.id())).await;
                    rw.push(t);
                    expect_success(code?)?;
                }
            }
        }
    }
    c.remove().await?;
    Ok(Row::ratio(
        "exec",
        &df,
        "raw create/start/inspect exec",
        &rw,
        Target::RatioAtMost(1.02),
    ))
}

/// Measures 5: 16 containers removed at once, from the first drop (or the
/// first remove call) until all are gone.
async fn bench_burst_removal(raw: &Raw) -> Res<Row> {
    progress(&format!(
        "removal burst: {BURST} containers, {BURST_REPEATS} repeats per side"
    ));
    let (mut df, mut rw) = (Vec::new(), Vec::new());
    for i in 0..BURST_REPEATS {
        for side in Side::pair(i) {
            match side {
                Side::Dockfix => {
                    let guards: Vec<TestContainer> = prepare(BURST, |_| spec().start())
                        .await
                        .into_iter()
                        .collect::<Result<_, _>>()?;
                    tokio::time::sleep(QUIESCE).await;
                    let t = Instant::now();
                    drop(guards);
                    let left = dockfix::wait_for_removals(SETTLE).await;
                    df.push(t.elapsed());
                    if left > 0 {
                        return Err(format!(
                            "{left} dockfix removals still outstanding after {SETTLE:?}"
                        )
                        .into());
                    }
                }
                Side::Raw => {
                    let ids: Vec<String> = prepare(BURST, |_| raw.create_and_start())
                        .await
                        .into_iter()
                        .collect::<Result<_, _>>()?;
                    tokio::time::sleep(QUIESCE).await;
                    let t = Instant::now();
                    let removed = join_all(ids.iter().map(|id| raw.remove(id))).await;
                    rw.push(t.elapsed());
                    removed.into_iter().collect::<Res<Vec<()>>>()?;
                }
            }
        }
    }
    Ok(Row::ratio(
        "remove x16",
        &df,
        "raw join_all force-remove",
        &rw,
        Target::RatioAtMost(1.05),
    ))
}

/// Runs `n` futures made by `make`, a few at a time, outside any timing.
async fn prepare<T, F, Fut>(n: usize, make: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = T>,
{
    futures::stream::iter((0..n).map(make))
        .buffer_unordered(PREPARE_CONCURRENCY)
        .collect()
        .await
}

/// `remove_on_kill` against a plain dockfix start. The first tied start
/// also starts the process's anchor container; it is reported in the note
/// and left out of the samples, which compare the starts after it.
async fn bench_remove_on_kill() -> Res<Row> {
    progress(&format!("remove_on_kill: {START_SAMPLES} samples per side"));
    let tied = || spec().remove_on_kill(true);
    let (first, first_time) = timed(tied().start()).await;
    drop(first?);
    settle().await?;
    let (mut plain, mut tied_starts) = (Vec::new(), Vec::new());
    for i in 0..START_SAMPLES {
        for arm in [i % 2, (i + 1) % 2] {
            let (c, t) = timed(if arm == 0 {
                spec().start()
            } else {
                tied().start()
            })
            .await;
            if arm == 0 {
                plain.push(t)
            } else {
                tied_starts.push(t)
            }
            drop(c?);
            settle().await?;
        }
    }
    Ok(Row::ratio(
        "start remove_on_kill",
        &tied_starts,
        "dockfix start, untied",
        &plain,
        Target::None,
    )
    .with_note(&format!(
        "the first tied start, which also starts the anchor, took {}",
        fmt_dur(first_time)
    )))
}

/// Gives a shared pool's background release (a lease removal) time to
/// finish before the next sample.
async fn settle_shared() {
    tokio::time::sleep(Duration::from_millis(30)).await;
}

/// Waits, untimed, until dockfix has no removal in flight, so that one
/// sample's cleanup does not load the daemon during the next.
async fn settle() -> Res<()> {
    match dockfix::wait_for_removals(SETTLE).await {
        0 => Ok(()),
        left => Err(format!("{left} dockfix removals still outstanding after {SETTLE:?}").into()),
    }
}

fn expect_success(code: i64) -> Res<()> {
    if code == 0 {
        Ok(())
    } else {
        Err(format!("`true` exited {code}").into())
    }
}

/// Which implementation a sample measures.
#[derive(Debug, Clone, Copy)]
enum Side {
    Dockfix,
    Raw,
}

impl Side {
    /// Both sides, the order alternating with `i`.
    fn pair(i: usize) -> [Side; 2] {
        if i % 2 == 0 {
            [Side::Dockfix, Side::Raw]
        } else {
            [Side::Raw, Side::Dockfix]
        }
    }
}

/// The raw bollard baseline: the same requests dockfix sends, made directly.
struct Raw {
    docker: Docker,
    hostname: String,
}

impl Raw {
    async fn connect() -> Res<Self> {
        let docker = Docker::connect_with_defaults()?.negotiate_version().await?;
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "unknown".to_owned());
        Ok(Raw { docker, hostname })
    }

    /// The create request dockfix renders for `ContainerSpec::new(IMAGE).cmd(CMD)`,
    /// with the same owner labels, so that leaks are found like dockfix's.
    fn body(&self) -> ContainerCreateBody {
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let labels = HashMap::from([
            (dockfix::LABEL_MANAGED.to_owned(), "true".to_owned()),
            (
                dockfix::LABEL_SESSION.to_owned(),
                dockfix::session_id().to_owned(),
            ),
            (
                dockfix::LABEL_PID.to_owned(),
                std::process::id().to_string(),
            ),
            (dockfix::LABEL_HOST.to_owned(), self.hostname.clone()),
            (dockfix::LABEL_CREATED.to_owned(), created.to_string()),
            (
                dockfix::LABEL_VERSION.to_owned(),
                env!("CARGO_PKG_VERSION").to_owned(),
            ),
        ]);
        ContainerCreateBody {
            image: Some(IMAGE.to_owned()),
            cmd: Some(CMD.iter().map(|s| (*s).to_owned()).collect()),
            labels: Some(labels),
            host_config: Some(HostConfig {
                extra_hosts: Some(vec![HOST_GATEWAY.to_owned()]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    async fn create_and_start(&self) -> Res<String> {
        let name = format!("dockfix-raw-{:08x}", rand::random::<u32>());
        let opts = CreateContainerOptionsBuilder::new().name(&name).build();
        let id = self
            .docker
            .create_container(Some(opts), self.body())
            .await?
            .id;
        if let Err(e) = self.docker.start_container(&id, None).await {
            let _ = self.remove(&id).await;
            return Err(e.into());
        }
        Ok(id)
    }

    async fn inspect(&self, id: &str) -> Res<()> {
        self.docker.inspect_container(id, None).await?;
        Ok(())
    }

    /// Runs `true` attached, reads the output to the end and returns the
    /// exit code, polling inspect while the daemon has not recorded it yet
    /// (as dockfix does).
    async fn exec_true(&self, id: &str) -> Res<i64> {
        let opts = CreateExecOptions {
            attach_stdin: Some(false),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            cmd: Some(vec!["true"]),
            ..Default::default()
        };
        let exec = self.docker.create_exec(id, opts).await?.id;
        let StartExecResults::Attached {
            mut output,
            input: _input,
        } = self.docker.start_exec(&exec, None).await?
        else {
            return Err("the daemon did not attach the exec".into());
        };
        while let Some(frame) = output.next().await {
            frame?;
        }
        loop {
            let info = self.docker.inspect_exec(&exec).await?;
            if let (Some(false) | None, Some(code)) = (info.running, info.exit_code) {
                return Ok(code);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Force-removes with anonymous volumes, as dockfix does.
    async fn remove(&self, id: &str) -> Res<()> {
        let opts = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        self.docker.remove_container(id, Some(opts)).await?;
        Ok(())
    }

    /// Ids of the containers, running or not, carrying `label`, except
    /// the `remove_on_kill` anchor: it lives until the process exits, when
    /// dockfix's exit hook removes it.
    async fn labelled(&self, label: &str) -> Res<Vec<String>> {
        let filters = HashMap::from([("label", vec![label])]);
        let opts = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let found = self.docker.list_containers(Some(opts)).await?;
        let is_anchor = |names: &Option<Vec<String>>| {
            names
                .iter()
                .flatten()
                .any(|n| n.starts_with("/dockfix-anchor-"))
        };
        Ok(found
            .into_iter()
            .filter(|c| !is_anchor(&c.names))
            .filter_map(|c| c.id)
            .collect())
    }
}

/// Waits for dockfix's removals, then checks by label that nothing of this
/// session is left; anything found is reported, removed, and fails the run.
async fn cleanup(raw: &Raw) -> bool {
    let outstanding = dockfix::wait_for_removals(SETTLE).await;
    if outstanding > 0 {
        eprintln!("lifecycle: {outstanding} dockfix removals still outstanding after {SETTLE:?}");
    }
    let session = format!("{}={}", dockfix::LABEL_SESSION, dockfix::session_id());
    let left = match raw.labelled(&session).await {
        Ok(left) => left,
        Err(e) => {
            eprintln!("lifecycle: cannot list containers labelled {session}: {e}");
            return false;
        }
    };
    if left.is_empty() {
        return outstanding == 0;
    }
    eprintln!(
        "lifecycle: LEAK: {} containers labelled {session} were left; removing them",
        left.len()
    );
    for id in &left {
        if let Err(e) = raw.remove(id).await {
            eprintln!("lifecycle: could not remove {id}: {e}");
        }
    }
    false
}

/// Runs `fut` and returns its output and how long it took.
async fn timed<T>(fut: impl IntoFuture<Output = T>) -> (T, Duration) {
    let start = Instant::now();
    let out = fut.await;
    (out, start.elapsed())
}

fn progress(what: &str) {
    eprintln!("lifecycle: {what}");
}

/// n, median and 90th percentile of a set of samples.
#[derive(Debug, Clone, Copy)]
struct Summary {
    n: usize,
    p50: Duration,
    p90: Duration,
}

impl Summary {
    fn of(samples: &[Duration]) -> Self {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        Summary {
            n: sorted.len(),
            p50: percentile(&sorted, 0.5),
            p90: percentile(&sorted, 0.9),
        }
    }
}

/// The `q` quantile of sorted samples, linearly interpolated between the
/// two nearest ranks.
fn percentile(sorted: &[Duration], q: f64) -> Duration {
    match sorted {
        [] => Duration::ZERO,
        [only] => *only,
        _ => {
            let pos = q * (sorted.len() - 1) as f64;
            let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
            let frac = pos - lo as f64;
            sorted[lo].mul_f64(1.0 - frac) + sorted[hi].mul_f64(frac)
        }
    }
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

/// What a row is held to.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// Reported for information only.
    None,
    /// dockfix/raw ratio of medians at most this.
    RatioAtMost(f64),
    /// raw/dockfix ratio at least this.
    SpeedupAtLeast(f64),
    /// dockfix's 90th percentile at most this.
    P90AtMost(Duration),
}

impl Target {
    fn describe(self) -> String {
        match self {
            Target::None => "-".to_owned(),
            Target::RatioAtMost(r) => format!("ratio <= {r:.2}"),
            Target::SpeedupAtLeast(s) => format!("speedup >= {s:.1}x"),
            Target::P90AtMost(d) => format!("dockfix p90 <= {}", fmt_dur(d)),
        }
    }

    /// `None` when there is nothing to check.
    fn met(self, row: &Row) -> Option<bool> {
        match self {
            Target::None => None,
            Target::RatioAtMost(r) => Some(row.ratio <= r),
            Target::SpeedupAtLeast(s) => Some(1.0 / row.ratio >= s),
            Target::P90AtMost(d) => Some(row.dockfix.p90 <= d),
        }
    }
}

/// One line of the final table.
#[derive(Debug)]
struct Row {
    name: String,
    baseline: String,
    dockfix: Summary,
    raw: Summary,
    /// dockfix/raw.
    ratio: f64,
    target: Target,
    note: String,
}

impl Row {
    /// A row whose ratio is that of the medians.
    fn ratio(
        name: &str,
        dockfix: &[Duration],
        baseline: &str,
        raw: &[Duration],
        target: Target,
    ) -> Row {
        let (dockfix, raw) = (Summary::of(dockfix), Summary::of(raw));
        Row {
            name: name.to_owned(),
            baseline: baseline.to_owned(),
            dockfix,
            raw,
            ratio: ratio(dockfix.p50, raw.p50),
            target,
            note: String::new(),
        }
    }

    fn with_note(mut self, note: &str) -> Row {
        self.note = note.to_owned();
        self
    }
}

fn print_table(rows: &[Row]) {
    println!();
    println!(
        "dockfix vs raw bollard (session {}), ratio = dockfix/raw of medians",
        dockfix::session_id()
    );
    for row in rows {
        let verdict = match row.target.met(row) {
            None => "",
            Some(true) => "ok",
            Some(false) => "MISSED",
        };
        println!(
            "{:<20} n={:<3} dockfix p50={:>9} p90={:>9}  raw p50={:>9} p90={:>9}  ratio={:.3}  target {} {}",
            row.name,
            row.dockfix.n.max(row.raw.n),
            fmt_dur(row.dockfix.p50),
            fmt_dur(row.dockfix.p90),
            fmt_dur(row.raw.p50),
            fmt_dur(row.raw.p90),
            row.ratio,
            row.target.describe(),
            verdict,
        );
        println!("{:<20} raw = {}", "", row.baseline);
        if !row.note.is_empty() {
            println!("{:<20} {}", "", row.note);
        }
    }
}

/// Other work on the machine or the daemon skews every number, so the
/// load is printed next to the table.
fn print_machine(before: &str, after: &str) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("machine: {cpus} cpus, load average (1 min) {before} at start, {after} at end");
    let busy = [before, after]
        .iter()
        .any(|l| l.parse::<f64>().is_ok_and(|l| l > cpus as f64));
    if busy {
        println!("warning: the load exceeded the cpu count; other work competed with this run");
    }
}

/// The 1-minute load average, or `?` where /proc is missing.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

/// A duration in the unit that keeps it readable.
fn fmt_dur(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 1e-3 {
        format!("{:.1}us", secs * 1e6)
    } else if secs < 10.0 {
        format!("{:.1}ms", secs * 1e3)
    } else {
        format!("{secs:.2}s")
    }
}
