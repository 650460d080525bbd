//! Client commands against a running server: `quiver apply`, `get`, `write`, `stats` and
//! `checkpoint`. Reads and idempotent calls are retried while the server is recovering or
//! shedding load; writes are sent once.

use std::path::Path;

use super::jsonl::json_batches;
use super::suggest::{did_you_mean, Names};
use super::{retried, status_text, with_client, ClientArgs, READ_TIMEOUT};
use crate::client::NativeClient;
use crate::proto::quiver::v1 as pb;

/// `quiver apply`: sends a registry file; prints the changes and whether they were applied.
pub(super) fn apply(
    client: &ClientArgs,
    registry: &Path,
    dry_run: bool,
    allow_removals: bool,
) -> Result<(), String> {
    let toml = std::fs::read_to_string(registry)
        .map_err(|e| format!("cannot read {}: {e}", registry.display()))?;
    with_client(client, None, |mut c| async move {
        let req = pb::ApplyRegistryRequest {
            toml,
            dry_run,
            allow_removals,
        };
        // A dry run changes nothing, so it is safe to repeat; applying is sent once.
        let r = if dry_run {
            retried(&c, req, |mut c, r| async move { c.apply_registry(r).await }).await?
        } else {
            c.apply_registry(req)
                .await
                .map_err(status_text)?
                .into_inner()
        };
        if r.changes.is_empty() {
            println!("no changes");
        }
        for ch in &r.changes {
            println!("{ch}");
        }
        println!(
            "{} (registry version {})",
            if r.applied { "applied" } else { "not applied" },
            r.version
        );
        Ok(())
    })
}

/// The server's registry.
async fn registry(c: &NativeClient) -> Result<pb::GetRegistryResponse, String> {
    retried(c, pb::GetRegistryRequest {}, |mut c, r| async move {
        c.get_registry(r).await
    })
    .await
}

/// `quiver get`: features of some entity keys as a table on stdout, and on stderr a legend
/// for the cells that hold no value.
pub(super) fn get(
    client: &ClientArgs,
    features: Vec<String>,
    service: Option<String>,
    keys: Vec<String>,
    full_names: bool,
) -> Result<(), String> {
    with_client(client, Some(READ_TIMEOUT), |c| {
        get_table(c, features, service, keys, full_names)
    })
}

async fn get_table(
    c: NativeClient,
    features: Vec<String>,
    service: Option<String>,
    keys: Vec<String>,
    full_names: bool,
) -> Result<(), String> {
    let reg = registry(&c).await?;
    let mut key_columns = Vec::new();
    for k in &keys {
        let (name, values) = k
            .split_once('=')
            .ok_or_else(|| format!("--key {k:?}: expected name=v1,v2,..."))?;
        let ty = reg
            .entities
            .iter()
            .flat_map(|e| &e.join_keys)
            .find(|j| j.name == name)
            .map(|j| j.r#type)
            .ok_or_else(|| {
                let known = reg.entities.iter().flat_map(|e| &e.join_keys);
                format!(
                    "--key {name:?}: no entity has this join key{}",
                    did_you_mean(name, known.map(|j| j.name.as_str()))
                )
            })?;
        let vals: Vec<&str> = values.split(',').collect();
        let column = if ty == pb::KeyType::Int64 as i32 {
            let parsed: Result<Vec<i64>, _> =
                vals.iter().map(|v| v.trim().parse::<i64>()).collect();
            pb::key_column::Values::Int64Values(pb::Int64Values {
                values: parsed.map_err(|e| format!("--key {name}: {e}"))?,
            })
        } else {
            pb::key_column::Values::StringValues(pb::StringValues {
                values: vals.iter().map(|v| v.to_string()).collect(),
            })
        };
        key_columns.push(pb::KeyColumn {
            name: name.to_string(),
            values: Some(column),
        });
    }
    let rows = key_columns
        .first()
        .map(|k| match &k.values {
            Some(pb::key_column::Values::Int64Values(v)) => v.values.len(),
            Some(pb::key_column::Values::StringValues(v)) => v.values.len(),
            None => 0,
        })
        .unwrap_or(0);
    let names = Names::of_proto(&reg);
    let hint = match &service {
        Some(s) => names.service_hint(s),
        None => names.refs_hint(&features),
    };
    let req = pb::GetOnlineFeaturesRequest {
        features: Some(match service {
            Some(s) => pb::get_online_features_request::Features::FeatureService(s),
            None => {
                pb::get_online_features_request::Features::Refs(pb::FeatureRefs { refs: features })
            }
        }),
        keys: key_columns.clone(),
        full_feature_names: full_names,
        max_age: None,
    };
    let resp = retried(
        &c,
        req,
        |mut c, r| async move { c.get_online_features(r).await },
    )
    .await
    .map_err(|e| format!("{e}{hint}"))?;
    let mut header = vec!["row".to_string()];
    header.extend(
        keys.iter()
            .filter_map(|k| k.split_once('=').map(|x| x.0.to_string())),
    );
    header.extend(resp.feature_names.iter().cloned());
    let mut table = vec![header];
    for r in 0..rows {
        let mut line = vec![r.to_string()];
        for k in &key_columns {
            line.push(match &k.values {
                Some(pb::key_column::Values::Int64Values(v)) => v.values[r].to_string(),
                Some(pb::key_column::Values::StringValues(v)) => v.values[r].clone(),
                None => String::new(),
            });
        }
        for col in &resp.columns {
            line.push(cell(col, r));
        }
        table.push(line);
    }
    let widths: Vec<usize> = (0..table[0].len())
        .map(|i| table.iter().map(|l| l[i].len()).max().unwrap_or(0))
        .collect();
    for line in &table {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", cells.join("  ").trim_end());
    }
    // On stderr: stdout stays the table alone, for whatever reads it.
    for (mark, meaning) in legend(&resp.columns) {
        eprintln!("{mark:<9}  {meaning}");
    }
    Ok(())
}

/// What a cell of row `r` shows for a value that is not there, by its status (None: present).
fn missing_mark(col: &pb::FeatureColumn, r: usize) -> Option<&'static str> {
    match col.statuses.get(r).copied() {
        Some(1) => None,
        Some(2) => Some(NULL),
        Some(3) => Some(NOT_FOUND),
        Some(4) => Some(EXPIRED),
        _ => Some(UNKNOWN),
    }
}

const NULL: &str = "null";
const NOT_FOUND: &str = "-";
const EXPIRED: &str = "(expired)";
const UNKNOWN: &str = "?";

/// The marks the table uses, each with what it means, in a fixed order.
fn legend(columns: &[pb::FeatureColumn]) -> Vec<(&'static str, &'static str)> {
    let used: Vec<&str> = columns
        .iter()
        .flat_map(|c| (0..c.statuses.len()).filter_map(|r| missing_mark(c, r)))
        .collect();
    [
        (
            NOT_FOUND,
            "not found: never written for this entity (or reclaimed)",
        ),
        (NULL, "written as null"),
        (
            EXPIRED,
            "older than the feature's TTL: the stored value is withheld",
        ),
        (
            UNKNOWN,
            "a status this client does not know (is the server newer?)",
        ),
    ]
    .into_iter()
    .filter(|(mark, _)| used.contains(mark))
    .collect()
}

/// The text of row `r` of a result column.
fn cell(col: &pb::FeatureColumn, r: usize) -> String {
    use pb::column::Data;
    if let Some(mark) = missing_mark(col, r) {
        return mark.into();
    }
    let Some(data) = col.values.as_ref().and_then(|c| c.data.as_ref()) else {
        return "?".into();
    };
    match data {
        Data::BoolValues(v) => v.values[r].to_string(),
        Data::Int32Values(v) => v.values[r].to_string(),
        Data::Int64Values(v) => v.values[r].to_string(),
        Data::Float32Values(v) => format!("{:.4}", v.values[r]),
        Data::Float64Values(v) => format!("{:.4}", v.values[r]),
        Data::TimestampValues(v) => v.micros[r].to_string(),
        Data::StringValues(v) => v.values[r].clone(),
        Data::BytesValues(v) => format!("{} bytes", v.values[r].len()),
        Data::VectorValues(v) => {
            let d = v.dim as usize;
            let head: Vec<String> = v.values[r * d..(r * d + d.min(3))]
                .iter()
                .map(|x| format!("{x:.3}"))
                .collect();
            format!(
                "[{}{}] ({d} dims)",
                head.join(", "),
                if d > 3 { ", …" } else { "" }
            )
        }
        Data::ListValues(l) => format!("list of {}", l.lengths[r]),
    }
}

/// `quiver write`: rows from a JSON-lines file, a write batch per run of lines that set the
/// same features.
pub(super) fn write(client: &ClientArgs, view: String, file: &Path) -> Result<(), String> {
    with_client(client, None, |c| write_file(c, view, file))
}

async fn write_file(mut c: NativeClient, view: String, file: &Path) -> Result<(), String> {
    let reg = registry(&c).await?;
    let schema = reg.views.iter().find(|v| v.name == view).ok_or_else(|| {
        format!(
            "--view {view:?}: no such feature view{}",
            Names::of_proto(&reg).view_hint(&view)
        )
    })?;
    let entity = reg
        .entities
        .iter()
        .find(|e| e.name == schema.entity)
        .ok_or_else(|| format!("entity {:?} missing", schema.entity))?;
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let batches = json_batches(&text, &view, schema, entity)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let (mut rows, mut seq) = (0, 0);
    for (i, req) in batches.iter().enumerate() {
        let r = c
            .write_features(req.clone())
            .await
            .map_err(|s| {
                format!(
                    "batch {} of {} (after {rows} rows written): {}",
                    i + 1,
                    batches.len(),
                    status_text(s)
                )
            })?
            .into_inner();
        rows += r.rows;
        seq = r.wal_sequence;
    }
    println!(
        "wrote {rows} rows to {view} in {} batches (wal sequence {seq})",
        batches.len()
    );
    Ok(())
}

/// `quiver stats`: a line per view, then the WAL and checkpoint figures.
pub(super) fn stats(client: &ClientArgs) -> Result<(), String> {
    with_client(client, Some(READ_TIMEOUT), |c| async move {
        let s = retried(&c, pb::GetStatsRequest::default(), |mut c, r| async move {
            c.get_stats(r).await
        })
        .await?;
        print!("{}", stats_text(&s));
        Ok(())
    })
}

fn stats_text(s: &pb::GetStatsResponse) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<24} {:>12} {:>14} {:>14} {:>14} {:>12}  compression",
        "view", "mem entities", "mem bytes", "snap entities", "snap bytes", "newest age"
    );
    for v in &s.views {
        let compression = v.compression.as_ref().map_or("-".into(), |c| {
            let saved = if c.sample_plain_bytes == 0 {
                0.0
            } else {
                100.0 * (1.0 - c.sample_packed_bytes as f64 / c.sample_plain_bytes as f64)
            };
            format!(
                "{} ({}: best saves {saved:.0} %, {} ns/record)",
                c.method, c.policy, c.decode_ns
            )
        });
        let _ = writeln!(
            out,
            "{:<24} {:>12} {:>14} {:>14} {:>14} {:>12}  {compression}",
            v.view,
            v.memory_entities,
            v.memory_bytes,
            v.snapshot_entities,
            v.snapshot_bytes,
            newest_age(v)
        );
    }
    if let Some(w) = &s.wal {
        let _ = writeln!(
            out,
            "wal: {} bytes in {} segments, last seq {}, synced {}{}",
            w.bytes,
            w.segments,
            w.last_sequence,
            w.synced_sequence,
            if w.poisoned.is_empty() {
                String::new()
            } else {
                format!(", POISONED: {}", w.poisoned)
            }
        );
    }
    let _ = writeln!(
        out,
        "checkpoint seq {}, registry version {}",
        s.checkpoint_sequence, s.registry_version
    );
    out
}

/// How old a view's newest event is, or `-` for a view nothing was written to.
fn newest_age(v: &pb::ViewStats) -> String {
    if v.newest_event_time_micros == 0 {
        "-".into()
    } else {
        format!("{:.1}s", v.newest_event_age_micros as f64 / 1e6)
    }
}

/// `quiver checkpoint`: checkpoints now; says what it wrote and what it freed, or why it freed
/// nothing.
pub(super) fn checkpoint(client: &ClientArgs) -> Result<(), String> {
    with_client(client, None, |c| async move {
        // Only to explain the outcome: the checkpoint the server had before this one.
        let before = retried(&c, pb::GetStatsRequest::default(), |mut c, r| async move {
            c.get_stats(r).await
        })
        .await
        .ok()
        .map(|s| s.checkpoint_sequence);
        // Checkpointing twice is harmless, so a checkpoint is safe to repeat.
        let r = retried(&c, pb::CheckpointRequest {}, |mut c, r| async move {
            c.checkpoint(r).await
        })
        .await?;
        print!("{}", checkpoint_text(&r, before));
        Ok(())
    })
}

/// The outcome of a checkpoint; `before` is the checkpoint sequence the server had before it.
fn checkpoint_text(r: &pb::CheckpointResponse, before: Option<u64>) -> String {
    use std::fmt::Write;
    let mut out = format!(
        "checkpoint at sequence {}; {} WAL bytes freed\n",
        r.checkpoint_sequence, r.wal_bytes_freed
    );
    if r.wal_bytes_freed == 0 {
        let why = if before == Some(r.checkpoint_sequence) {
            "nothing was written since the previous checkpoint"
        } else {
            "the log is deleted a whole segment at a time and the segment being written is \
             kept, so what this checkpoint covers stays on disk until the log has moved on to \
             a new segment; a later checkpoint frees it"
        };
        let _ = writeln!(out, "  no WAL bytes freed: {why}");
    }
    for s in &r.snapshots {
        let _ = writeln!(
            out,
            "  {}: {} entities, {} bytes",
            s.view, s.entities, s.bytes
        );
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::testing::{one_row, TestServer};

    fn column(statuses: &[i32]) -> pb::FeatureColumn {
        pb::FeatureColumn {
            statuses: statuses.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn the_legend_explains_the_marks_in_the_table() {
        let all = legend(&[column(&[1, 3, 2]), column(&[4, 9])]);
        let marks: Vec<&str> = all.iter().map(|(m, _)| *m).collect();
        assert_eq!(marks, ["-", "null", "(expired)", "?"]);
        assert!(all[0].1.contains("not found"));
        assert!(all[2].1.contains("TTL"));
        assert!(
            legend(&[column(&[1, 1])]).is_empty(),
            "all present: no legend"
        );
        assert_eq!(cell(&column(&[3]), 0), "-");
        assert_eq!(cell(&column(&[4]), 0), "(expired)");
    }

    #[test]
    fn an_empty_view_has_no_age() {
        let empty = pb::ViewStats {
            view: "empty".into(),
            ..Default::default()
        };
        let fresh = pb::ViewStats {
            view: "fresh".into(),
            newest_event_time_micros: 1_700_000_000_000_000,
            newest_event_age_micros: 1_500_000,
            ..Default::default()
        };
        assert_eq!(newest_age(&empty), "-");
        assert_eq!(newest_age(&fresh), "1.5s");
        let text = stats_text(&pb::GetStatsResponse {
            views: vec![empty, fresh],
            ..Default::default()
        });
        let line = |view: &str| {
            text.lines()
                .find(|l| l.starts_with(view))
                .unwrap()
                .to_owned()
        };
        assert!(line("empty").trim_end().ends_with("-  -"), "{text}");
        assert!(!line("empty").contains("0.0s"), "{text}");
        assert!(line("fresh").contains("1.5s"), "{text}");
    }

    #[test]
    fn checkpoint_text_explains_why_nothing_was_freed() {
        let r = |seq, freed| pb::CheckpointResponse {
            checkpoint_sequence: seq,
            wal_bytes_freed: freed,
            ..Default::default()
        };
        let freed = checkpoint_text(&r(9, 4096), Some(3));
        assert!(freed.starts_with("checkpoint at sequence 9; 4096 WAL bytes freed"));
        assert!(!freed.contains("no WAL bytes freed"), "{freed}");
        let idle = checkpoint_text(&r(9, 0), Some(9));
        assert!(idle.contains("nothing was written since the previous checkpoint"));
        let same_segment = checkpoint_text(&r(9, 0), Some(3));
        assert!(
            same_segment.contains("segment being written"),
            "{same_segment}"
        );
        assert_eq!(checkpoint_text(&r(9, 0), None), same_segment);
    }

    /// What a real server answers, through the same calls `quiver checkpoint` makes.
    #[tokio::test]
    async fn a_first_checkpoint_keeps_the_segment_and_a_second_has_nothing_to_free() {
        let server = TestServer::start(|_| {}).await;
        let mut c = server.ready_client().await;
        c.write_features(one_row(1, 3)).await.unwrap();
        for expected in [
            "segment being written",
            "nothing was written since the previous checkpoint",
        ] {
            let before = c
                .get_stats(pb::GetStatsRequest::default())
                .await
                .unwrap()
                .into_inner()
                .checkpoint_sequence;
            let r = c
                .checkpoint(pb::CheckpointRequest {})
                .await
                .unwrap()
                .into_inner();
            assert_eq!(r.wal_bytes_freed, 0);
            let text = checkpoint_text(&r, Some(before));
            assert!(text.contains(expected), "{text}");
        }
        server.stop().await;
    }
}
