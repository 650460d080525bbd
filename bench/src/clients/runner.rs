//! The closed-loop runner: `concurrency` clients, each with one request in flight, each drawing
//! keys from its own seeded stream, so every system is asked for exactly the same keys in the
//! same order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use quiver_server::proto::quiver::v1 as pb;

use crate::clients::layout;
use crate::clients::native::{check_shape, check_values, status_err, write_request};
use crate::clients::procs::QuiverClients;
use crate::clients::raw::{scan_shape, RawReader};
use crate::clients::redis::{
    check_blob_values, check_feast_shape, check_feast_values, queue_feast_write, queue_hmget,
};
use crate::clients::resp::{Item, RespConn};
use crate::dataset::{feature_refs, Data, Expected, USER_STATS};
use crate::harness::placement::cpu_seconds;
use crate::harness::report::Latency;
use crate::keys::{Dist, KeySpace};
use crate::{BenchError, Result};

/// Every this many responses per client, the whole answer is compared with the dataset (the
/// first response included); every response's shape and statuses are always checked.
pub(crate) const CHECK_EVERY: u64 = 16;

/// Seed salts: key streams per client, warm-up streams, and the read/write choice.
const SALT_CLIENT: u64 = 0x9e37_79b9_7f4a_7c15;
const SALT_WARMUP: u64 = 0x7761_726d_7570;
const SALT_OP: u64 = 0x6f70_6572;

/// The systems a client measurement runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Contender {
    /// Quiver's native gRPC API.
    Quiver,
    /// Redis in Feast's layout (hash per entity, pipelined HMGET / HSET).
    RedisFeast,
    /// Redis with one packed blob per entity and view (MGET / MSET).
    RedisBlob,
    /// A tonic service answering every read with one precomputed response (the gRPC floor).
    Echo,
}

impl Contender {
    /// Name in tables and JSON.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Quiver => "quiver",
            Self::RedisFeast => "redis-feast",
            Self::RedisBlob => "redis-blob",
            Self::Echo => "echo",
        }
    }
}

/// Where a system is reached.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// A Quiver server (process id) through these clients.
    Quiver(QuiverClients, u32),
    /// A Redis server (address, process id) holding the layout of the system.
    Redis(SocketAddr, u32, Contender),
    /// The echo service (process id) through these clients (answers are not the dataset:
    /// only their shape is checked).
    Echo(QuiverClients, u32),
}

impl Target {
    /// The system behind the target.
    pub(crate) fn contender(&self) -> Contender {
        match self {
            Self::Quiver(..) => Contender::Quiver,
            Self::Redis(_, _, s) => *s,
            Self::Echo(..) => Contender::Echo,
        }
    }

    /// The server process.
    fn server_pid(&self) -> Option<u32> {
        match self {
            Self::Quiver(_, pid) | Self::Redis(_, pid, _) | Self::Echo(_, pid) => Some(*pid),
        }
    }
}

/// What each request does.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Workload {
    /// Entities per request.
    pub(crate) batch: usize,
    /// `user_stats` features per read (the first N).
    pub(crate) features: usize,
    /// Whether reads include the embedding.
    pub(crate) embedding: bool,
    /// Percentage of requests that write `batch` rows instead of reading.
    pub(crate) write_percent: u32,
}

impl Workload {
    /// What this workload's reads must answer, from `data`.
    fn expected<'a>(&self, data: &'a Data) -> Expected<'a> {
        Expected {
            data,
            features: self.features,
            embedding: self.embedding,
        }
    }
}

/// How long and how hard.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Load {
    /// Clients, one request in flight each.
    pub(crate) concurrency: usize,
    /// Key distribution.
    pub(crate) dist: Dist,
    /// Un-timed warm-up (its own key stream).
    pub(crate) warmup: Duration,
    /// Timed part.
    pub(crate) duration: Duration,
    /// Most timed requests per client.
    pub(crate) max_requests: u64,
    /// Seed of the key streams.
    pub(crate) seed: u64,
    /// Open loop at this many requests per second in total (each client sends on its own
    /// schedule; a client behind schedule counts latency from the scheduled send time, so a
    /// stall is not hidden), or closed loop when `None`.
    pub(crate) rate: Option<f64>,
}

/// What a measurement saw.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    /// Timed requests.
    pub(crate) requests: u64,
    /// Timed entity rows (read or written).
    pub(crate) rows: u64,
    /// Timed feature values (read or written).
    pub(crate) values: u64,
    /// Wall time of the timed part, seconds.
    pub(crate) seconds: f64,
    /// Latency of every timed request.
    pub(crate) latency: Latency,
    /// Responses compared value by value with the dataset.
    pub(crate) checked: u64,
    /// CPU seconds the server process used over the timed part (None: not a process of its
    /// own, or /proc unreadable).
    pub(crate) server_cpu_seconds: Option<f64>,
}

impl Outcome {
    /// Feature values per second of server CPU time: throughput per server core, whatever
    /// the wall clock did.
    pub(crate) fn values_per_server_cpu_sec(&self) -> Option<f64> {
        self.server_cpu_seconds
            .filter(|&s| s > 0.0)
            .map(|s| self.values as f64 / s)
    }
    /// Requests per second.
    pub(crate) fn rps(&self) -> f64 {
        per_sec(self.requests, self.seconds)
    }
    /// Entity rows per second.
    pub(crate) fn rows_per_sec(&self) -> f64 {
        per_sec(self.rows, self.seconds)
    }
    /// Feature values per second.
    pub(crate) fn values_per_sec(&self) -> f64 {
        per_sec(self.values, self.seconds)
    }
}

fn per_sec(n: u64, s: f64) -> f64 {
    if s > 0.0 {
        n as f64 / s
    } else {
        f64::NAN
    }
}

/// What every client shares.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The dataset, to check answers and build writes.
    pub(crate) data: Data,
    /// Key choice.
    pub(crate) space: KeySpace,
}

/// A connected client of one system.
enum Client {
    /// Writes through the generated client, reads through the lean one (same connection).
    Quiver(quiver_server::client::NativeClient, Box<RawReader>),
    Redis(RespConn, Contender),
}

/// Runs `load` against `target` and merges what the clients saw.
pub(crate) async fn measure(
    target: &Target,
    wl: Workload,
    load: Load,
    shared: &Arc<Shared>,
) -> Result<Outcome> {
    // Connect every client before anything is timed.
    let mut clients = Vec::with_capacity(load.concurrency);
    for i in 0..load.concurrency {
        clients.push(match target {
            Target::Quiver(c, _) | Target::Echo(c, _) => Client::Quiver(
                c.get(i),
                Box::new(c.reader(i, &feature_refs(wl.features, wl.embedding))),
            ),
            Target::Redis(addr, _, s) => Client::Redis(RespConn::connect(*addr).await?, *s),
        });
    }
    let start = Instant::now();
    let timed_from = start + load.warmup;
    let until = timed_from + load.duration;
    let verify = !matches!(target, Target::Echo(..));
    // The server's CPU time over the timed part: read when it starts and after the last
    // client is done.
    let pid = target.server_pid();
    let cpu_at_start = tokio::spawn(async move {
        tokio::time::sleep_until(timed_from.into()).await;
        pid.and_then(cpu_seconds)
    });
    let mut tasks = Vec::with_capacity(clients.len());
    for (i, client) in clients.into_iter().enumerate() {
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            let mut w = Worker::new(client, wl, i as u64, verify)?;
            w.run(&shared, &load, timed_from, until).await?;
            Ok::<_, BenchError>(w)
        }));
    }
    let mut out = Outcome {
        requests: 0,
        rows: 0,
        values: 0,
        seconds: 0.0,
        latency: Latency::new()?,
        checked: 0,
        server_cpu_seconds: None,
    };
    let mut last = timed_from;
    for t in tasks {
        let w = t
            .await
            .map_err(|e| BenchError::other("a client task", e.to_string()))??;
        out.requests += w.requests;
        out.rows += w.rows;
        out.values += w.values;
        out.checked += w.checked;
        out.latency.add(&w.latency)?;
        last = last.max(w.finished.unwrap_or(timed_from));
    }
    out.seconds = last.saturating_duration_since(timed_from).as_secs_f64();
    let start_cpu = cpu_at_start
        .await
        .map_err(|e| BenchError::other("the CPU sampler", e.to_string()))?;
    out.server_cpu_seconds = start_cpu.zip(pid.and_then(cpu_seconds)).map(|(a, b)| b - a);
    Ok(out)
}

/// One closed-loop client.
struct Worker {
    client: Client,
    /// Compare sampled answers with the dataset (off for the echo service).
    verify: bool,
    wl: Workload,
    index: u64,
    /// Hash fields of a Feast-layout read.
    fields: Vec<Vec<u8>>,
    ids: Vec<i64>,
    idx: Vec<u64>,
    key: Vec<u8>,
    scratch: Vec<u8>,
    requests: u64,
    rows: u64,
    values: u64,
    checked: u64,
    latency: Latency,
    finished: Option<Instant>,
}

impl Worker {
    fn new(client: Client, wl: Workload, index: u64, verify: bool) -> Result<Self> {
        Ok(Self {
            client,
            verify,
            wl,
            index,
            fields: layout::read_fields(wl.features, wl.embedding),
            ids: Vec::with_capacity(wl.batch),
            idx: Vec::with_capacity(wl.batch),
            key: Vec::with_capacity(64),
            scratch: Vec::new(),
            requests: 0,
            rows: 0,
            values: 0,
            checked: 0,
            latency: Latency::new()?,
            finished: None,
        })
    }

    async fn run(
        &mut self,
        shared: &Shared,
        load: &Load,
        timed_from: Instant,
        until: Instant,
    ) -> Result<()> {
        let client_seed = load.seed ^ (self.index + 1).wrapping_mul(SALT_CLIENT);
        // Open loop: this client's share of the rate, its sends spread over the interval.
        let interval = load
            .rate
            .map(|r| Duration::from_secs_f64(load.concurrency as f64 / r.max(1e-3)));
        let offset = interval.map_or(Duration::ZERO, |iv| {
            iv.mul_f64(self.index as f64 / load.concurrency.max(1) as f64)
        });
        // Warm-up has its own stream, so the timed stream starts at the same key everywhere.
        for (timed, seed, end) in [
            (false, client_seed ^ SALT_WARMUP, timed_from),
            (true, client_seed, until),
        ] {
            let mut keys = shared.space.chooser(load.dist, seed);
            let mut ops = SmallRng::seed_from_u64(seed ^ SALT_OP);
            let mut n = 0u64;
            while n < load.max_requests && Instant::now() < end {
                keys.fill(&mut self.idx, self.wl.batch);
                let write =
                    self.wl.write_percent > 0 && ops.random_range(0..100) < self.wl.write_percent;
                // Behind schedule (the previous answer came after this send was due): the wait
                // counts, so a stall is not hidden. On time: the client sleeps until the send
                // is due, and the timer's lateness (Tokio's timer has millisecond granularity)
                // is the harness's, not the server's, so latency counts from the actual send.
                let behind_since = match interval.filter(|_| timed) {
                    Some(iv) => {
                        let at = timed_from + offset + iv.mul_f64(n as f64);
                        if at >= until {
                            break;
                        }
                        if Instant::now() < at {
                            tokio::time::sleep_until(at.into()).await;
                            None
                        } else {
                            Some(at)
                        }
                    }
                    None => None,
                };
                let sent = Instant::now();
                let dt = self
                    .request(shared, write, n.is_multiple_of(CHECK_EVERY))
                    .await?;
                n += 1;
                if !timed {
                    continue;
                }
                let queued =
                    behind_since.map_or(Duration::ZERO, |at| sent.saturating_duration_since(at));
                self.latency.record(queued + dt);
                self.requests += 1;
                self.rows += self.wl.batch as u64;
                let per_row = if write {
                    USER_STATS.len()
                } else {
                    self.wl.features + usize::from(self.wl.embedding)
                };
                self.values += (self.wl.batch * per_row) as u64;
            }
        }
        self.finished = Some(Instant::now());
        Ok(())
    }

    /// One request for the entities in `self.idx`. Returns its latency: building the request,
    /// the round trip, and parsing the reply into the client's representation (protobuf
    /// messages for Quiver, RESP byte ranges for Redis). Checking the answer is not timed.
    async fn request(&mut self, shared: &Shared, write: bool, check: bool) -> Result<Duration> {
        let data = &shared.data;
        self.ids.clear();
        self.ids
            .extend(self.idx.iter().map(|&i| data.stats.user_id(i)));
        let wl = self.wl;
        let cols = wl.features + usize::from(wl.embedding);
        let check = check && self.verify;
        let t0 = Instant::now();
        match &mut self.client {
            Client::Quiver(c, reader) => {
                if write {
                    let req = write_request(data, &self.ids)?;
                    let r = c
                        .write_features(req)
                        .await
                        .map_err(|s| status_err("WriteFeatures", &s))?;
                    let dt = t0.elapsed();
                    if r.into_inner().rows != self.ids.len() as u64 {
                        return Err(BenchError::WrongAnswer(
                            "quiver acknowledged a different number of rows".into(),
                        ));
                    }
                    return Ok(dt);
                }
                let bytes = reader
                    .get(&self.ids)
                    .await
                    .map_err(|s| status_err("GetOnlineFeatures", &s))?;
                let dt = t0.elapsed();
                scan_shape(&bytes, self.ids.len(), cols)?;
                if check {
                    let r = <pb::GetOnlineFeaturesResponse as prost::Message>::decode(bytes)
                        .map_err(|e| BenchError::WrongAnswer(format!("quiver's answer: {e}")))?;
                    check_shape(&r, self.ids.len(), cols)?;
                    check_values(&r, &self.ids, &wl.expected(data))?;
                    self.checked += 1;
                }
                Ok(dt)
            }
            Client::Redis(conn, Contender::RedisFeast) => {
                if write {
                    for &id in &self.ids {
                        let row = data.stats_to_write(id)?;
                        queue_feast_write(conn, &row, &mut self.key, &mut self.scratch);
                    }
                    conn.exec().await?;
                    let dt = t0.elapsed();
                    for k in 0..conn.replies() {
                        if !matches!(conn.reply(k).0, Item::Int(_)) {
                            return Err(BenchError::WrongAnswer(format!(
                                "redis HSET answered {:?}",
                                conn.reply(k).0
                            )));
                        }
                    }
                    return Ok(dt);
                }
                for &id in &self.ids {
                    queue_hmget(conn, id, &self.fields, &mut self.key);
                }
                conn.exec().await?;
                let dt = t0.elapsed();
                check_feast_shape(conn, self.ids.len(), self.fields.len())?;
                if check {
                    check_feast_values(conn, &self.ids, &wl.expected(data))?;
                    self.checked += 1;
                }
                Ok(dt)
            }
            Client::Redis(conn, _) => {
                if write {
                    conn.begin(1 + 2 * self.ids.len());
                    conn.arg(b"MSET");
                    for &id in &self.ids {
                        let row = data.stats_to_write(id)?;
                        self.scratch.clear();
                        layout::encode_blob(row.event_ts, &row.values, &mut self.scratch);
                        conn.arg(&layout::blob_key(id));
                        conn.arg(&self.scratch);
                    }
                    conn.exec().await?;
                    let dt = t0.elapsed();
                    if conn.bytes(conn.reply(0).0) != b"OK" {
                        return Err(BenchError::WrongAnswer(
                            "redis MSET did not answer OK".into(),
                        ));
                    }
                    return Ok(dt);
                }
                let per_id = 1 + usize::from(wl.embedding);
                conn.begin(1 + per_id * self.ids.len());
                conn.arg(b"MGET");
                for &id in &self.ids {
                    conn.arg(&layout::blob_key(id));
                }
                if wl.embedding {
                    for &id in &self.ids {
                        conn.arg(&layout::blob_embedding_key(id));
                    }
                }
                conn.exec().await?;
                let dt = t0.elapsed();
                let (head, items) = conn.reply(0);
                if head != Item::Array(per_id * self.ids.len())
                    || items.iter().any(|i| !matches!(i, Item::Bulk(..)))
                {
                    return Err(BenchError::WrongAnswer(format!(
                        "redis MGET of {} keys answered {head:?} with missing values",
                        per_id * self.ids.len()
                    )));
                }
                if check {
                    check_blob_values(conn, &self.ids, &wl.expected(data))?;
                    self.checked += 1;
                }
                Ok(dt)
            }
        }
    }
}
