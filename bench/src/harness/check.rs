//! Rows as engine writes, and the check of a get's answer against what the dataset says: a
//! system that answers wrongly has no timings worth reporting.

use quiver_engine::{encode_key, Entity, GetResult, KeyPart, Row, Status, Value};

use crate::dataset::{EmbeddingRow, EntityRow, USER_STATS};
use crate::{BenchError, Result};

/// A generated entity as a write of all its features.
pub(crate) fn to_row(entity: &Entity, r: EntityRow) -> Result<Row> {
    let mut key = Vec::with_capacity(9);
    encode_key(entity, &[KeyPart::Int64(r.user_id)], &mut key)?;
    Ok(Row {
        key,
        event_ts: r.event_ts,
        created_ts: None,
        values: r.values.into_iter().enumerate().collect(),
    })
}

/// User `user_id`'s embedding as a write of `user_embedding`'s one feature.
pub(crate) fn embedding_to_row(entity: &Entity, user_id: i64, e: EmbeddingRow) -> Result<Row> {
    let mut key = Vec::with_capacity(9);
    encode_key(entity, &[KeyPart::Int64(user_id)], &mut key)?;
    Ok(Row {
        key,
        event_ts: e.event_ts,
        created_ts: None,
        values: vec![(0, Value::Vector(e.vector))],
    })
}

/// Column `j`'s name when the answer reads `user_stats`.
pub(crate) fn stats_column(j: usize) -> &'static str {
    USER_STATS[j].name
}

/// Checks a get's answer for `ids`, row for row: the `features` columns (`name(j)` names
/// column `j` in messages) must hold exactly `expect(id)`'s values and event time (all
/// `Present`), or `NotFound` everywhere where `expect` returns `None`.
pub(crate) fn check_columns(
    who: &str,
    out: &GetResult,
    ids: &[i64],
    features: usize,
    name: impl Fn(usize) -> &'static str,
    mut expect: impl FnMut(i64) -> Option<EntityRow>,
) -> Result<()> {
    let cols = &out.columns;
    let wrong = |m: String| Err(BenchError::WrongAnswer(format!("{who}: {m}")));
    if cols.len() != features {
        return Err(BenchError::WrongAnswer(format!(
            "{who} returned {} columns for {features} features",
            cols.len(),
        )));
    }
    for (j, col) in cols.iter().enumerate() {
        let n = ids.len();
        if col.statuses.len() != n || col.event_ts.len() != n || col.values.len() != n {
            let rows = col.statuses.len();
            return wrong(format!("column {} has {rows} rows for {n} keys", name(j)));
        }
    }
    for (row, &id) in ids.iter().enumerate() {
        let Some(expected) = expect(id) else {
            let mut found = cols.iter().enumerate();
            if let Some((j, c)) = found.find(|(_, c)| c.statuses[row] != Status::NotFound) {
                return wrong(format!(
                    "unknown user {id}, feature {}: status {:?}, expected NotFound",
                    name(j),
                    c.statuses[row]
                ));
            }
            continue;
        };
        for (j, col) in cols.iter().enumerate() {
            let want = &expected.values[j];
            let got = col.get(row);
            if col.statuses[row] != Status::Present
                || col.event_ts[row] != expected.event_ts
                || !got.as_ref().is_some_and(|g| g.bit_eq(want))
            {
                return wrong(format!(
                    "user {id}, feature {}: got {got:?} ({:?}, event time {}), expected \
                     {want:?} (Present, event time {})",
                    name(j),
                    col.statuses[row],
                    col.event_ts[row],
                    expected.event_ts
                ));
            }
        }
    }
    Ok(())
}
