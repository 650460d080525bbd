//! Requests to Redis in either layout, and the checks of its answers against the dataset.

use prost::Message;

use crate::clients::layout::{self, feast_value};
use crate::clients::resp::{Item, RespConn};
use crate::dataset::{expected, Data, EntityRow, Expected, USER_STATS, VIEW};
use crate::{BenchError, Result};

/// Queues `HMGET <Feast key of id> <fields>`.
pub(crate) fn queue_hmget(conn: &mut RespConn, id: i64, fields: &[Vec<u8>], key: &mut Vec<u8>) {
    key.clear();
    layout::feast_key(id, key);
    conn.begin(2 + fields.len());
    conn.arg(b"HMGET");
    conn.arg(key);
    for f in fields {
        conn.arg(f);
    }
}

/// Queues Feast's write of one `user_stats` row: `HSET key _ts:user_stats <ts> <field>
/// <Value> ...` (without Feast's preceding read of `_ts`, which only helps Redis).
pub(crate) fn queue_feast_write(
    conn: &mut RespConn,
    row: &EntityRow,
    key: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
) {
    let fields = feast_write_fields();
    key.clear();
    layout::feast_key(row.user_id, key);
    conn.begin(4 + 2 * fields.len());
    conn.arg(b"HSET");
    conn.arg(key);
    scratch.clear();
    layout::encode_ts(row.event_ts, scratch);
    conn.arg(VIEW_TS.as_bytes());
    conn.arg(scratch);
    for (f, v) in fields.iter().zip(&row.values) {
        scratch.clear();
        // Encoding into a Vec cannot fail.
        let _ = feast_value(v).encode(scratch);
        conn.arg(f);
        conn.arg(scratch);
    }
}

/// `_ts:user_stats`.
const VIEW_TS: &str = "_ts:user_stats";

/// The hash fields of `user_stats`'s features, computed once.
fn feast_write_fields() -> &'static [[u8; 4]] {
    static FIELDS: std::sync::OnceLock<Vec<[u8; 4]>> = std::sync::OnceLock::new();
    FIELDS.get_or_init(|| {
        USER_STATS
            .iter()
            .map(|f| layout::field_name(VIEW, f.name))
            .collect()
    })
}

/// Writes the `user_stats` rows of `ids` (their dataset values) in Feast's layout, pipelined.
pub(crate) async fn hset_rows(conn: &mut RespConn, data: &Data, ids: &[i64]) -> Result<()> {
    let (mut key, mut scratch) = (Vec::new(), Vec::new());
    for &id in ids {
        let row = data.stats_to_write(id)?;
        queue_feast_write(conn, &row, &mut key, &mut scratch);
    }
    conn.exec().await
}

/// Every HMGET reply is an array of `fields` bulk strings (no nil: nothing missing).
pub(crate) fn check_feast_shape(conn: &RespConn, rows: usize, fields: usize) -> Result<()> {
    if conn.replies() != rows {
        return Err(BenchError::WrongAnswer(format!(
            "redis answered {} of {rows} HMGETs",
            conn.replies()
        )));
    }
    for k in 0..rows {
        let (head, items) = conn.reply(k);
        if head != Item::Array(fields) || items.iter().any(|i| !matches!(i, Item::Bulk(..))) {
            return Err(BenchError::WrongAnswer(format!(
                "redis HMGET {k} answered {head:?} with missing fields"
            )));
        }
    }
    Ok(())
}

/// Decodes every field of a batch of Feast-layout HMGET replies and compares it with the
/// dataset.
pub(crate) fn check_feast_values(conn: &RespConn, ids: &[i64], want: &Expected<'_>) -> Result<()> {
    let (data, features, embedding) = (want.data, want.features, want.embedding);
    for (k, &id) in ids.iter().enumerate() {
        let want = expected(data, id, features, embedding)?;
        let (_, items) = conn.reply(k);
        let bytes = |i: usize| items.get(i).map_or(&[][..], |&it| conn.bytes(it));
        // Fields: features, _ts:user_stats, then embedding and _ts:user_embedding.
        let at = |j: usize, field: usize, ts_field: usize| -> Result<()> {
            let (ts, v) = &want[j];
            let got = layout::decode_feast_value(bytes(field));
            let got_ts = layout::decode_ts(bytes(ts_field));
            if got_ts != Some(*ts) || !got.as_ref().is_some_and(|g| g.bit_eq(v)) {
                return Err(BenchError::WrongAnswer(format!(
                    "redis-feast: user {id}, column {j}: got {got:?} at {got_ts:?}, expected \
                     {v:?} at {ts}"
                )));
            }
            Ok(())
        };
        for j in 0..features {
            at(j, j, features)?;
        }
        if embedding {
            at(features, features + 1, features + 2)?;
        }
    }
    Ok(())
}

/// Decodes every blob of an MGET reply and compares it with the dataset.
pub(crate) fn check_blob_values(conn: &RespConn, ids: &[i64], want: &Expected<'_>) -> Result<()> {
    let (data, features, embedding) = (want.data, want.features, want.embedding);
    let (_, items) = conn.reply(0);
    for (k, &id) in ids.iter().enumerate() {
        let want = expected(data, id, features, embedding)?;
        let wrong =
            |what: String| BenchError::WrongAnswer(format!("redis-blob: user {id}: {what}"));
        let (ts, vals) = layout::decode_blob(conn.bytes(items[k]), features)
            .ok_or_else(|| wrong("blob does not decode".into()))?;
        for (j, v) in vals.iter().enumerate() {
            if ts != want[j].0 || !v.bit_eq(&want[j].1) {
                return Err(wrong(format!(
                    "column {j}: got {v:?} at {ts}, expected {:?} at {}",
                    want[j].1, want[j].0
                )));
            }
        }
        if embedding {
            let (ets, vec) = layout::decode_embedding_blob(conn.bytes(items[ids.len() + k]))
                .ok_or_else(|| wrong("embedding blob does not decode".into()))?;
            let (wts, wv) = &want[features];
            if ets != *wts || !quiver_engine::Value::Vector(vec).bit_eq(wv) {
                return Err(wrong(format!(
                    "embedding differs (event time {ets} vs {wts})"
                )));
            }
        }
    }
    Ok(())
}
