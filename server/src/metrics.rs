//! Prometheus metrics: counters and latency histograms kept in atomics, rendered as text on
//! `GET /metrics` by a tiny HTTP listener.

use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use quiver_engine::{Clock, Db, SystemClock};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The RPCs that are measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rpc {
    GetOnlineFeatures,
    WriteFeatures,
    StreamWriteFeatures,
    LoadSnapshot,
    UploadSnapshot,
    Checkpoint,
    ApplyRegistry,
    GetRegistry,
    GetStats,
    FeastGetOnlineFeatures,
    FeastGetServingInfo,
}

const RPCS: [Rpc; 11] = [
    Rpc::GetOnlineFeatures,
    Rpc::WriteFeatures,
    Rpc::StreamWriteFeatures,
    Rpc::LoadSnapshot,
    Rpc::UploadSnapshot,
    Rpc::Checkpoint,
    Rpc::ApplyRegistry,
    Rpc::GetRegistry,
    Rpc::GetStats,
    Rpc::FeastGetOnlineFeatures,
    Rpc::FeastGetServingInfo,
];

impl Rpc {
    fn label(self) -> &'static str {
        match self {
            Rpc::GetOnlineFeatures => "quiver.v1.FeatureStore/GetOnlineFeatures",
            Rpc::WriteFeatures => "quiver.v1.FeatureStore/WriteFeatures",
            Rpc::StreamWriteFeatures => "quiver.v1.FeatureStore/StreamWriteFeatures",
            Rpc::LoadSnapshot => "quiver.v1.FeatureStore/LoadSnapshot",
            Rpc::UploadSnapshot => "quiver.v1.FeatureStore/UploadSnapshot",
            Rpc::Checkpoint => "quiver.v1.FeatureStore/Checkpoint",
            Rpc::ApplyRegistry => "quiver.v1.FeatureStore/ApplyRegistry",
            Rpc::GetRegistry => "quiver.v1.FeatureStore/GetRegistry",
            Rpc::GetStats => "quiver.v1.FeatureStore/GetStats",
            Rpc::FeastGetOnlineFeatures => "feast.serving.ServingService/GetOnlineFeatures",
            Rpc::FeastGetServingInfo => "feast.serving.ServingService/GetFeastServingInfo",
        }
    }

    fn index(self) -> usize {
        RPCS.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// Histogram bucket upper bounds, seconds.
const BUCKETS: [f64; 16] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 10.0,
];

#[derive(Debug, Default)]
struct RpcStats {
    ok: AtomicU64,
    failed: AtomicU64,
    /// Count per bucket (not cumulative); the last slot is +Inf.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

/// Every counter the server keeps.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    rpcs: [RpcStats; RPCS.len()],
    /// Values served, by status number (0..=4).
    values_by_status: [AtomicU64; 5],
    shed: AtomicU64,
    /// Calls answered with an error, by gRPC status code (1..=16), wherever they were refused:
    /// admission, authentication, decoding or the handler.
    refused: [AtomicU64; 17],
}

/// gRPC status code names, by number.
const CODE_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

impl Metrics {
    /// Records one finished call.
    pub(crate) fn observe(&self, rpc: Rpc, elapsed: Duration, ok: bool) {
        let s = &self.rpcs[rpc.index()];
        if ok { &s.ok } else { &s.failed }.fetch_add(1, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        let b = BUCKETS
            .iter()
            .position(|&ub| secs <= ub)
            .unwrap_or(BUCKETS.len());
        s.buckets[b].fetch_add(1, Ordering::Relaxed);
        s.sum_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    /// Counts served values by status.
    pub(crate) fn count_statuses(&self, statuses: &[quiver_engine::Status]) {
        let mut counts = [0u64; 5];
        for s in statuses {
            counts[(*s as usize).min(4)] += 1;
        }
        for (i, c) in counts.iter().enumerate() {
            if *c > 0 {
                self.values_by_status[i].fetch_add(*c, Ordering::Relaxed);
            }
        }
    }

    /// Counts a request refused by load shedding.
    pub(crate) fn shed(&self) {
        self.shed.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a call answered with gRPC status `code` (other than OK).
    pub(crate) fn refused(&self, code: usize) {
        if let Some(c) = self.refused.get(code).filter(|_| code > 0) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Prometheus text exposition.
    pub(crate) fn render(&self, db: Option<&Db>) -> String {
        let mut o = String::with_capacity(8192);
        let _ = writeln!(
            o,
            "# HELP quiver_requests_total RPCs handled, by method and outcome."
        );
        let _ = writeln!(o, "# TYPE quiver_requests_total counter");
        for r in RPCS {
            let s = &self.rpcs[r.index()];
            for (outcome, v) in [("ok", &s.ok), ("error", &s.failed)] {
                let _ = writeln!(
                    o,
                    "quiver_requests_total{{method=\"{}\",outcome=\"{outcome}\"}} {}",
                    r.label(),
                    v.load(Ordering::Relaxed)
                );
            }
        }
        let _ = writeln!(o, "# HELP quiver_request_duration_seconds RPC latency.");
        let _ = writeln!(o, "# TYPE quiver_request_duration_seconds histogram");
        for r in RPCS {
            let s = &self.rpcs[r.index()];
            let mut cum = 0u64;
            for (i, ub) in BUCKETS.iter().enumerate() {
                cum += s.buckets[i].load(Ordering::Relaxed);
                let _ = writeln!(
                    o,
                    "quiver_request_duration_seconds_bucket{{method=\"{}\",le=\"{ub}\"}} {cum}",
                    r.label()
                );
            }
            cum += s.buckets[BUCKETS.len()].load(Ordering::Relaxed);
            let _ = writeln!(
                o,
                "quiver_request_duration_seconds_bucket{{method=\"{}\",le=\"+Inf\"}} {cum}",
                r.label()
            );
            let _ = writeln!(
                o,
                "quiver_request_duration_seconds_sum{{method=\"{}\"}} {}",
                r.label(),
                s.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
            );
            let _ = writeln!(
                o,
                "quiver_request_duration_seconds_count{{method=\"{}\"}} {cum}",
                r.label()
            );
        }
        let _ = writeln!(
            o,
            "# HELP quiver_values_served_total Feature values served, by status."
        );
        let _ = writeln!(o, "# TYPE quiver_values_served_total counter");
        for (i, name) in [
            "INVALID",
            "PRESENT",
            "NULL_VALUE",
            "NOT_FOUND",
            "OUTSIDE_MAX_AGE",
        ]
        .iter()
        .enumerate()
        {
            let _ = writeln!(
                o,
                "quiver_values_served_total{{status=\"{name}\"}} {}",
                self.values_by_status[i].load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            o,
            "# HELP quiver_refused_requests_total Calls answered with an error, by gRPC code."
        );
        let _ = writeln!(o, "# TYPE quiver_refused_requests_total counter");
        for (code, name) in CODE_NAMES.iter().enumerate().skip(1) {
            let _ = writeln!(
                o,
                "quiver_refused_requests_total{{code=\"{name}\"}} {}",
                self.refused[code].load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(o, "# HELP quiver_shed_requests_total Requests refused with RESOURCE_EXHAUSTED by load shedding.");
        let _ = writeln!(o, "# TYPE quiver_shed_requests_total counter");
        let _ = writeln!(
            o,
            "quiver_shed_requests_total {}",
            self.shed.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            o,
            "# HELP quiver_ready Whether recovery finished and the server serves."
        );
        let _ = writeln!(o, "# TYPE quiver_ready gauge");
        let _ = writeln!(o, "quiver_ready {}", u8::from(db.is_some()));
        if let Some(db) = db {
            render_db(&mut o, db);
        }
        o
    }
}

fn render_db(o: &mut String, db: &Db) {
    let st = db.stats();
    let now = SystemClock.now_micros();
    type PerView = fn(&quiver_engine::ViewStats, i64) -> f64;
    let gauges: [(&str, &str, PerView); 5] = [
        (
            "quiver_view_memory_entities",
            "Entities held in memory per view.",
            |v, _| v.entities as f64,
        ),
        (
            "quiver_view_memory_bytes",
            "Heap bytes per view.",
            |v, _| v.bytes as f64,
        ),
        (
            "quiver_view_snapshot_entities",
            "Entities in the view's snapshot.",
            |v, _| v.base_entities as f64,
        ),
        (
            "quiver_view_snapshot_bytes",
            "Size of the view's snapshot file.",
            |v, _| v.base_bytes as f64,
        ),
        (
            "quiver_view_newest_event_age_seconds",
            "Age of the newest event written to the view.",
            |v, now| {
                if v.newest_event_ts == 0 {
                    f64::NAN
                } else {
                    (now - v.newest_event_ts) as f64 / 1e6
                }
            },
        ),
    ];
    for (name, help, value) in gauges {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} gauge");
        for v in &st.views {
            let _ = writeln!(o, "{name}{{view=\"{}\"}} {}", v.view, value(v, now));
        }
    }
    let checkpoint_age = if st.checkpoint_micros == 0 {
        f64::NAN
    } else {
        (now - st.checkpoint_micros) as f64 / 1e6
    };
    let singles: [(&str, &str, f64); 6] = [
        (
            "quiver_wal_bytes",
            "Size of the live WAL segments.",
            st.wal.bytes as f64,
        ),
        (
            "quiver_wal_segments",
            "Live WAL segment files.",
            st.wal.segments as f64,
        ),
        (
            "quiver_wal_last_sequence",
            "Sequence number of the last WAL record.",
            st.wal.last_seq as f64,
        ),
        (
            "quiver_wal_poisoned",
            "1 if the WAL refuses writes after an I/O failure.",
            f64::from(u8::from(st.wal.poisoned.is_some())),
        ),
        (
            "quiver_checkpoint_age_seconds",
            "Time since the last checkpoint.",
            checkpoint_age,
        ),
        (
            "quiver_registry_version",
            "Registry changes applied.",
            st.registry_version as f64,
        ),
    ];
    for (name, help, value) in singles {
        let _ = writeln!(
            o,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
    }
}

/// Serves `GET /metrics` until the process ends. Anything else gets 404.
pub(crate) async fn serve_metrics(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    db: Arc<std::sync::OnceLock<Arc<Db>>>,
) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        let db = db.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let mut n = 0;
            // Read the request head (bounded); the body, if any, is ignored.
            while n < buf.len() {
                match tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf[n..])).await {
                    Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
                    Ok(Ok(k)) => n += k,
                }
                if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            let head = String::from_utf8_lossy(&buf[..n]);
            let (status, body) = if head.starts_with("GET /metrics ") {
                ("200 OK", metrics.render(db.get().map(|d| d.as_ref())))
            } else {
                ("404 Not Found", "try GET /metrics\n".to_string())
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        });
    }
}

/// The address the metrics endpoint is bound to, for logs.
pub(crate) fn describe(addr: SocketAddr) -> String {
    format!("http://{addr}/metrics")
}
