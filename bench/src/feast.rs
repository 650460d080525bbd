//! `quiver-bench feast`: what a Feast user runs, on the same data and keys. The harness starts
//! a Quiver server and redis-server on the server CPUs (placement as everywhere,
//! `harness::placement`), then `bench/scripts/feast_bench.py` on the client CPUs: one Feast
//! repository with Feast's Redis online store and with the Quiver plugin, `feast materialize`
//! into each, `FeatureStore.get_online_features` in process, `feast serve` over HTTP, the
//! Python client on Quiver's own API, and training sets from Feast's file offline store against
//! `quiver.get_historical_features`. Last, the harness's own Rust client reads the same server
//! with the same request shapes, so the Python client's overhead is a ratio from one run.
//!
//! Every request is sequential (one in flight): the shape of a Python caller, and the one that
//! compares the client libraries rather than the servers' concurrency.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value as Json};

use crate::clients::procs::{
    check_redis_installed, quiver_binary, QuiverServer, QuiverSpec, RedisServer, RedisSpec,
};
use crate::error::io;
use crate::harness::args::{duration, entities, in_range};
use crate::harness::host::scratch_on;
use crate::harness::placement::{pinned_command, Placement, PlacementArg};
use crate::harness::report::{median, num, ratio, Latency, Table};
use crate::{BenchError, Result};
use quiver_server::proto::quiver::v1 as pb;

/// The view the script defines: 20 features, f0..f19.
const VIEW: &str = "bench_stats";
const FEATURES: usize = 20;
/// Most requests per measured loop, whatever the duration.
const MAX_REQUESTS: u64 = 200_000;

/// `quiver-bench feast`.
#[derive(Debug, Args)]
pub struct FeastArgs {
    /// Users in the feature view (three history rows each).
    #[arg(long, default_value_t = 20_000)]
    pub entities: u64,
    /// Seconds per measured case.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Runs per case; figures are medians.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Entity rows of the training-set comparison.
    #[arg(long, default_value_t = 20_000)]
    pub training_rows: u64,
    /// Where servers and pinning go.
    #[arg(long, value_enum)]
    pub placement: Option<PlacementArg>,
    /// The Python with feast, redis and the quiver package installed.
    #[arg(long, default_value = "python3")]
    pub python: String,
    /// The quiver binary (default: this tree's release build).
    #[arg(long)]
    pub quiver_bin: Option<PathBuf>,
    /// Parent of the scratch directory (default: the system temp directory).
    #[arg(long)]
    pub scratch: Option<PathBuf>,
    /// A small, quick run that checks the harness (not speed).
    #[arg(long)]
    pub smoke: bool,
}

/// Runs the Feast comparison and prints a table, then one JSON line.
pub fn run_feast(args: &FeastArgs) -> Result<()> {
    let (n, secs, runs, training) = if args.smoke {
        (2_000, 0.5, 1, 2_000)
    } else {
        (args.entities, args.duration, args.runs, args.training_rows)
    };
    entities(n, 100)?;
    duration(secs)?;
    in_range("--runs", runs, 1, 20)?;
    let placement = Placement::resolve(args.placement)?;
    placement.pin_harness()?;
    let redis_version = check_redis_installed()?;
    probe_python(&args.python)?;
    let (scratch, _fs) = scratch_on(args.scratch.as_deref(), "quiver-bench-feast")?;
    let registry = scratch.join("empty-registry.toml");
    std::fs::write(&registry, "project = \"bench\"\n")
        .map_err(io(format!("writing {}", registry.display())))?;
    let bin = quiver_binary(args.quiver_bin.as_deref(), !args.smoke)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io("starting the runtime"))?;
    runtime.block_on(async {
        let quiver = QuiverServer::start(
            QuiverSpec {
                bin,
                registry,
                fsync: "never".into(),
                worker_threads: 1,
                start_timeout: Duration::from_secs(60),
                extra_config: String::new(),
                cpus: placement.server_cpus().map(str::to_owned),
            },
            Some(scratch.path()),
            "quiver",
        )
        .await?;
        let redis = RedisServer::start(
            RedisSpec {
                aof_always: false,
                start_timeout: Duration::from_secs(60),
                io_threads: 1,
                cpus: placement.server_cpus().map(str::to_owned),
            },
            Some(scratch.path()),
            "redis",
        )
        .await?;
        eprintln!(
            "feast: {n} users x {FEATURES} features, {secs} s x {runs} runs per case ({}), \
             running bench/scripts/feast_bench.py",
            placement.name()
        );
        let script = script_path()?;
        let mut cmd = Command::new(&args.python);
        cmd.arg(&script)
            .args(["--dir", &scratch.join("feast").display().to_string()])
            .args(["--quiver", &quiver.addr.to_string()])
            .args(["--redis", &redis.addr.to_string()])
            .args(["--entities", &n.to_string()])
            .args(["--duration", &secs.to_string()])
            .args(["--runs", &runs.to_string()])
            .args(["--training-rows", &training.to_string()])
            .args(["--server-cpus", placement.server_cpus().unwrap_or("")])
            .stdin(Stdio::null());
        let cmd = pinned_command(cmd, placement.client_cpus());
        let py = run_script(cmd)?;
        let rust = [
            ("w1", rust_client(&quiver, n, 1, secs, runs).await?),
            ("w2", rust_client(&quiver, n, 100, secs, runs).await?),
        ];
        report(&py, &rust, &placement, &redis_version, n);
        Ok(())
    })
}

/// Fails with what to install when the Python side cannot run.
fn probe_python(python: &str) -> Result<()> {
    let out = Command::new(python)
        .args([
            "-c",
            "import feast, redis, quiver.feast; print(feast.__version__)",
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(io(format!("starting {python}")))?;
    if !out.status.success() {
        return Err(BenchError::InvalidArgument(format!(
            "{python} cannot import feast, redis and quiver.feast ({}); install them with \
             `pip install \"feast==0.67.0\" \"redis<8\" ./python`",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        )));
    }
    Ok(())
}

fn script_path() -> Result<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/feast_bench.py");
    if p.exists() {
        Ok(p)
    } else {
        Err(BenchError::InvalidArgument(format!(
            "{} is missing: run quiver-bench from the repository it was built in",
            p.display()
        )))
    }
}

/// Runs the script and parses the JSON object on its last stdout line.
fn run_script(mut cmd: Command) -> Result<Json> {
    let out = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(io("running bench/scripts/feast_bench.py"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(BenchError::other(
            "bench/scripts/feast_bench.py",
            format!(
                "exited with {}; stdout:\n{stdout}\nstderr (end):\n{}",
                out.status,
                tail.join("\n")
            ),
        ));
    }
    let last = stdout.lines().last().unwrap_or("");
    serde_json::from_str(last).map_err(|e| {
        BenchError::other(
            "bench/scripts/feast_bench.py",
            format!("its last line is not JSON ({e}): {last:?}"),
        )
    })
}

/// One case's medians over runs: p50, p99 (µs) and rows per second of request time.
#[derive(Debug, Clone, Copy)]
struct Case {
    p50_us: f64,
    p99_us: f64,
    rows_per_s: f64,
}

/// The harness's Rust client (`quiver_server::client`, the one under the Python package):
/// sequential GetOnlineFeatures of `batch` uniform users x 20 features, `runs` times.
async fn rust_client(
    server: &QuiverServer,
    users: u64,
    batch: usize,
    secs: f64,
    runs: usize,
) -> Result<Case> {
    let clients = server.clients(1).await?;
    let refs: Vec<String> = (0..FEATURES).map(|i| format!("{VIEW}:f{i}")).collect();
    let mut rng = SmallRng::seed_from_u64(11);
    let (mut p50, mut p99, mut rows) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let mut lat = Latency::new()?;
        let (mut busy, mut n) = (Duration::ZERO, 0u64);
        let deadline = Instant::now() + Duration::from_secs_f64(secs);
        while n < MAX_REQUESTS && Instant::now() < deadline {
            let ids: Vec<i64> = (0..batch)
                .map(|_| rng.random_range(1..=users as i64))
                .collect();
            let req = pb::GetOnlineFeaturesRequest {
                features: Some(pb::get_online_features_request::Features::Refs(
                    pb::FeatureRefs { refs: refs.clone() },
                )),
                keys: vec![pb::KeyColumn {
                    name: "user_id".into(),
                    values: Some(pb::key_column::Values::Int64Values(pb::Int64Values {
                        values: ids,
                    })),
                }],
                full_feature_names: false,
                max_age: None,
            };
            let mut c = clients.get(0);
            let start = Instant::now();
            let r = c.get_online_features(req).await.map_err(|s| {
                BenchError::WrongAnswer(format!("rust client: {:?}: {}", s.code(), s.message()))
            })?;
            let took = start.elapsed();
            let r = r.into_inner();
            let present = r.columns.iter().all(|c| {
                c.statuses
                    .iter()
                    .all(|&s| s == pb::FieldStatus::Present as i32)
            });
            if r.row_count as usize != batch || r.columns.len() != FEATURES || !present {
                return Err(BenchError::WrongAnswer(format!(
                    "rust client: {} rows, {} columns, every value present: {present}",
                    r.row_count,
                    r.columns.len()
                )));
            }
            lat.record(took);
            busy += took;
            n += 1;
        }
        let s = lat.summary();
        p50.push(s.p50_us);
        p99.push(s.p99_us);
        rows.push(n as f64 * batch as f64 / busy.as_secs_f64().max(1e-9));
    }
    Ok(Case {
        p50_us: median(&p50),
        p99_us: median(&p99),
        rows_per_s: median(&rows),
    })
}

fn field(py: &Json, key: &str, stat: &str) -> f64 {
    py.get(key)
        .and_then(|c| c.get(stat))
        .and_then(Json::as_f64)
        .unwrap_or(f64::NAN)
}

fn report(py: &Json, rust: &[(&str, Case); 2], placement: &Placement, redis: &str, n: u64) {
    let mut t = Table::new([
        "case",
        "W1 p50 µs",
        "W1 p99 µs",
        "W1 rows/s",
        "W2 p50 µs",
        "W2 p99 µs",
        "W2 rows/s",
    ]);
    let cases = [
        ("feast serve (HTTP), Redis store", "serve_{}_redis"),
        ("feast serve (HTTP), Quiver plugin", "serve_{}_quiver"),
        ("FeatureStore in process, Redis", "inproc_{}_redis"),
        ("FeatureStore in process, Quiver plugin", "inproc_{}_quiver"),
        ("quiver.Client, to_dict", "pyclient_{}"),
        ("quiver.Client, Arrow answer", "pyclient_arrow_{}"),
    ];
    let fmt = |x: f64| format!("{x:.0}");
    for (label, key) in cases {
        let k1 = key.replace("{}", "w1");
        let k2 = key.replace("{}", "w2");
        t.row([
            label.to_owned(),
            fmt(field(py, &k1, "p50_us")),
            fmt(field(py, &k1, "p99_us")),
            fmt(field(py, &k1, "rows_per_s")),
            fmt(field(py, &k2, "p50_us")),
            fmt(field(py, &k2, "p99_us")),
            fmt(field(py, &k2, "rows_per_s")),
        ]);
    }
    let [(_, r1), (_, r2)] = rust;
    t.row([
        "Rust client (quiver_server::client)".to_owned(),
        fmt(r1.p50_us),
        fmt(r1.p99_us),
        fmt(r1.rows_per_s),
        fmt(r2.p50_us),
        fmt(r2.p99_us),
        fmt(r2.rows_per_s),
    ]);
    print!("{}", t.render());
    println!();
    let g = |k: &str, s: &str| field(py, k, s);
    let hist = |k: &str| py.get(k).and_then(Json::as_f64).unwrap_or(f64::NAN);
    let at = |k: &str| py.get(k).unwrap_or(&Json::Null);
    println!(
        "training set of {} entity rows: Feast file offline store {:.2} s ({} rows out), \
         quiver.get_historical_features {:.2} s ({} rows out: {} equal to Feast's, {} differing, \
         {} that Feast leaves out, all null); identical: {}",
        at("historical_rows"),
        hist("historical_s_feast"),
        at("historical_rows_feast"),
        hist("historical_s_quiver"),
        at("historical_rows_quiver"),
        at("historical_rows_matched_equal"),
        at("historical_rows_matched_differing"),
        at("historical_rows_only_quiver"),
        at("historical_identical")
    );
    let mut out = json!({
        "bench": "feast",
        "placement": placement.name(),
        "redis": redis,
        "entities": n,
        "features": FEATURES,
        "python": py,
        "rust_w1_p50_us": num(r1.p50_us),
        "rust_w1_p99_us": num(r1.p99_us),
        "rust_w1_rows_per_s": num(r1.rows_per_s),
        "rust_w2_p50_us": num(r2.p50_us),
        "rust_w2_p99_us": num(r2.p99_us),
        "rust_w2_rows_per_s": num(r2.rows_per_s),
    });
    let ratios = [
        // > 1: Quiver faster.
        (
            "serve_w1_rps_ratio",
            ratio(
                g("serve_w1_quiver", "rows_per_s"),
                g("serve_w1_redis", "rows_per_s"),
            ),
        ),
        (
            "serve_w2_rps_ratio",
            ratio(
                g("serve_w2_quiver", "rows_per_s"),
                g("serve_w2_redis", "rows_per_s"),
            ),
        ),
        (
            "inproc_w1_rps_ratio",
            ratio(
                g("inproc_w1_quiver", "rows_per_s"),
                g("inproc_w1_redis", "rows_per_s"),
            ),
        ),
        (
            "inproc_w2_rps_ratio",
            ratio(
                g("inproc_w2_quiver", "rows_per_s"),
                g("inproc_w2_redis", "rows_per_s"),
            ),
        ),
        // Quiver's API from Python against feast serve on Redis.
        (
            "native_vs_serve_redis_w2_rps_ratio",
            ratio(
                g("pyclient_arrow_w2", "rows_per_s"),
                g("serve_w2_redis", "rows_per_s"),
            ),
        ),
        // The Python client's cost over the Rust client's (p50, 1 = no overhead).
        (
            "python_overhead_w1_p50",
            ratio(g("pyclient_arrow_w1", "p50_us"), r1.p50_us),
        ),
        (
            "python_overhead_w2_p50",
            ratio(g("pyclient_arrow_w2", "p50_us"), r2.p50_us),
        ),
        (
            "python_overhead_w2_to_dict_p50",
            ratio(g("pyclient_w2", "p50_us"), r2.p50_us),
        ),
        (
            "historical_speedup",
            ratio(hist("historical_s_feast"), hist("historical_s_quiver")),
        ),
    ];
    for (k, v) in ratios {
        out[k] = num(v);
    }
    println!("{out}");
}
