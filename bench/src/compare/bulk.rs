//! Redis's side of the bulk workloads: mass insertion of the dataset in both layouts (W5), a
//! full scan that checks every entity is there, and the sample checked after a restart (W7).

use std::time::{Duration, Instant};

use prost::Message;

use crate::clients::layout::{self, feast_value};
use crate::clients::procs::RedisServer;
use crate::clients::redis::{check_feast_shape, check_feast_values, queue_hmget};
use crate::clients::resp::{encode_cmd, Item};
use crate::clients::runner::Contender;
use crate::dataset::{Data, Expected, EMBEDDING_FEATURE, EMBEDDING_VIEW, USER_STATS, VIEW};
use crate::{BenchError, Result};

/// Entities per mass-insertion chunk: the protocol stream of a chunk is built (not timed),
/// then sent (timed), so the harness never holds the whole stream in memory.
const CHUNK: u64 = 100_000;

/// What a bulk load took.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LoadTime {
    /// Sending the protocol and receiving every reply, seconds.
    pub(crate) load_seconds: f64,
    /// Building the protocol stream from the dataset (not part of the load), seconds.
    pub(crate) prep_seconds: f64,
    /// Bytes of protocol sent.
    pub(crate) bytes: u64,
}

/// Appends the commands that store user `i` in `layout` (both views when `embedding`).
fn encode_user(
    data: &Data,
    i: u64,
    layout: Contender,
    embedding: bool,
    fields: &[[u8; 4]],
    out: &mut Vec<u8>,
    scratch: &mut Vec<Vec<u8>>,
) {
    let row = data.stats_row(i);
    let id = row.user_id;
    match layout {
        Contender::RedisFeast => {
            // Feast's online_write_batch: HSET key _ts:<view> ts <field> <Value> ... per view.
            let mut key = Vec::with_capacity(40);
            layout::feast_key(id, &mut key);
            scratch.resize(2 + USER_STATS.len(), Vec::new());
            for s in scratch.iter_mut() {
                s.clear();
            }
            layout::encode_ts(row.event_ts, &mut scratch[0]);
            for (j, v) in row.values.iter().enumerate() {
                // Encoding into a Vec cannot fail.
                let _ = feast_value(v).encode(&mut scratch[1 + j]);
            }
            let ts_field = layout::ts_field(VIEW);
            let mut args: Vec<&[u8]> = vec![b"HSET", &key, &ts_field, &scratch[0]];
            for j in 0..USER_STATS.len() {
                args.push(&fields[j][..]);
                args.push(&scratch[1 + j]);
            }
            encode_cmd(out, &args);
            if embedding {
                let e = data.embedding_row(i);
                let mut ts = Vec::new();
                layout::encode_ts(e.event_ts, &mut ts);
                let value = feast_value(&quiver_engine::Value::Vector(e.vector)).encode_to_vec();
                let f = layout::field_name(EMBEDDING_VIEW, EMBEDDING_FEATURE);
                let ts_field = layout::ts_field(EMBEDDING_VIEW);
                encode_cmd(out, &[b"HSET", &key, &ts_field, &ts, &f, &value]);
            }
        }
        _ => {
            let blob = &mut scratch[0];
            blob.clear();
            layout::encode_blob(row.event_ts, &row.values, blob);
            encode_cmd(out, &[b"SET", &layout::blob_key(id), blob]);
            if embedding {
                let e = data.embedding_row(i);
                blob.clear();
                layout::encode_embedding_blob(e.event_ts, &e.vector, blob);
                encode_cmd(out, &[b"SET", &layout::blob_embedding_key(id), blob]);
            }
        }
    }
}

/// Loads every user into `server` in `layout` by mass insertion: the whole protocol stream of
/// a chunk written on one connection while its replies are read concurrently (what
/// `redis-cli --pipe` does), chunk after chunk.
pub(crate) async fn mass_insert(
    server: &RedisServer,
    data: &Data,
    layout: Contender,
    embedding: bool,
) -> Result<LoadTime> {
    let fields: Vec<[u8; 4]> = USER_STATS
        .iter()
        .map(|f| layout::field_name(VIEW, f.name))
        .collect();
    let mut t = LoadTime::default();
    let mut out = Vec::new();
    let mut scratch = vec![Vec::new()];
    let n = data.entities();
    let mut start = 0;
    while start < n {
        let end = (start + CHUNK).min(n);
        let prep = Instant::now();
        out.clear();
        for i in start..end {
            encode_user(data, i, layout, embedding, &fields, &mut out, &mut scratch);
        }
        t.prep_seconds += prep.elapsed().as_secs_f64();
        let commands = (end - start) * (1 + u64::from(embedding));
        let conn = server.conn().await?;
        let sent = Instant::now();
        conn.pipe(&out, commands).await?;
        t.load_seconds += sent.elapsed().as_secs_f64();
        t.bytes += out.len() as u64;
        start = end;
    }
    Ok(t)
}

/// Reads every user back (HMGET or MGET, `batch` per pipeline), checks that nothing is
/// missing, and compares every `check_every`-th batch value by value. Returns the time taken.
pub(crate) async fn scan(
    server: &RedisServer,
    data: &Data,
    layout: Contender,
    embedding: bool,
    batch: usize,
    check_every: u64,
) -> Result<Duration> {
    let start = Instant::now();
    let mut conn = server.conn().await?;
    let fields = layout::read_fields(USER_STATS.len(), embedding);
    let n = data.entities();
    let mut ids = Vec::with_capacity(batch);
    let mut key = Vec::new();
    let mut k = 0u64;
    let mut first = 0u64;
    while first < n {
        let last = (first + batch as u64).min(n);
        ids.clear();
        ids.extend((first..last).map(|i| data.stats.user_id(i)));
        match layout {
            Contender::RedisFeast => {
                for &id in &ids {
                    queue_hmget(&mut conn, id, &fields, &mut key);
                }
                conn.exec().await?;
                check_feast_shape(&conn, ids.len(), fields.len())?;
                if k.is_multiple_of(check_every) {
                    check_feast_values(
                        &conn,
                        &ids,
                        &Expected {
                            data,
                            features: USER_STATS.len(),
                            embedding,
                        },
                    )?;
                }
            }
            _ => {
                conn.begin(1 + ids.len());
                conn.arg(b"MGET");
                for &id in &ids {
                    conn.arg(&layout::blob_key(id));
                }
                conn.exec().await?;
                let (head, items) = conn.reply(0);
                if head != Item::Array(ids.len()) || items.contains(&Item::Nil) {
                    return Err(BenchError::WrongAnswer(format!(
                        "redis-blob: users {first}..{last} are not all there"
                    )));
                }
                if k.is_multiple_of(check_every) {
                    for (j, &id) in ids.iter().enumerate() {
                        let want = data.stats_of(id).ok_or_else(|| {
                            BenchError::WrongAnswer(format!("user {id} is not a user"))
                        })?;
                        let got = layout::decode_blob(conn.bytes(items[j]), USER_STATS.len());
                        let same = got.as_ref().is_some_and(|(ts, v)| {
                            *ts == want.event_ts
                                && v.iter().zip(&want.values).all(|(a, b)| a.bit_eq(b))
                        });
                        if !same {
                            return Err(BenchError::WrongAnswer(format!(
                                "redis-blob: user {id}: got {got:?}, expected {want:?}"
                            )));
                        }
                    }
                }
            }
        }
        k += 1;
        first = last;
    }
    Ok(start.elapsed())
}

/// Compares every value of `ids` (both views) in Feast's layout with the dataset.
pub(crate) async fn check_sample(server: &RedisServer, data: &Data, ids: &[i64]) -> Result<()> {
    let mut conn = server.conn().await?;
    let fields = layout::read_fields(USER_STATS.len(), true);
    let mut key = Vec::new();
    for chunk in ids.chunks(100) {
        for &id in chunk {
            queue_hmget(&mut conn, id, &fields, &mut key);
        }
        conn.exec().await?;
        check_feast_shape(&conn, chunk.len(), fields.len())?;
        check_feast_values(
            &conn,
            chunk,
            &Expected {
                data,
                features: USER_STATS.len(),
                embedding: true,
            },
        )?;
    }
    Ok(())
}
