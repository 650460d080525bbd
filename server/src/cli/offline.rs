//! Commands over Parquet history (the work is in `quiver_offline`): `quiver historical`
//! builds training sets; `quiver materialize` loads a view's latest rows into a snapshot file,
//! a data directory or a running server (a snapshot upload, or write batches when
//! incremental).

use std::path::{Path, PathBuf};

use quiver_engine::Registry;

use super::suggest::Names;
use super::{status_text, with_client, ClientArgs, HistoricalArgs, MaterializeArgs, OfflineArgs};
use crate::client::upload_snapshot_file;
use crate::convert::writes_from_history;

fn open_histories(
    registry: &Registry,
    registry_path: &Path,
    views: &[&str],
    args: &OfflineArgs,
) -> Result<Vec<quiver_offline::History>, String> {
    let epoch = quiver_offline::EpochUnit::parse(&args.epoch_unit)?;
    let base = registry_path.parent().unwrap_or(Path::new("."));
    let overrides = args
        .history
        .iter()
        .map(|h| {
            h.split_once('=')
                .map(|(v, p)| (v.to_owned(), PathBuf::from(p)))
                .ok_or_else(|| format!("--history {h:?}: expected VIEW=PATH"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    quiver_offline::History::open_all(registry, views, base, &overrides, epoch)
        .map_err(|e| e.to_string())
}

/// `quiver historical`: a point-in-time-correct training set from Parquet history.
pub(super) fn historical(a: HistoricalArgs) -> Result<(), String> {
    let registry = Registry::load(&a.registry).map_err(|e| e.to_string())?;
    let features = match &a.service {
        Some(s) => registry
            .service(s)
            .ok_or_else(|| {
                format!(
                    "--service {s:?}: no such feature service{}",
                    Names::of_registry(&registry).service_hint(s)
                )
            })?
            .features
            .clone(),
        None => a.features.clone(),
    };
    let plan = quiver_offline::FeaturePlan::new(&registry, &features, a.full_feature_names)
        .map_err(|e| format!("{e}{}", Names::of_registry(&registry).refs_hint(&features)))?;
    let histories = open_histories(&registry, &a.registry, &plan.views(&registry), &a.offline)?;
    let opts = quiver_offline::JoinOptions {
        full_feature_names: a.full_feature_names,
        timestamp_column: a.timestamp_column,
        epoch_unit: quiver_offline::EpochUnit::parse(&a.offline.epoch_unit)?,
        threads: a.offline.threads,
        chunk_rows: a.chunk_rows,
        progress: true,
    };
    let s = quiver_offline::write_training_set(
        &registry,
        &plan,
        &histories,
        &a.entities,
        &a.out,
        &opts,
    )
    .map_err(|e| e.to_string())?;
    println!(
        "wrote {}: {} rows, {} features, {} history rows read, {} bytes, {:.2} s",
        a.out.display(),
        s.rows,
        s.features,
        s.history_rows,
        s.bytes,
        s.seconds
    );
    Ok(())
}

/// `quiver materialize`: a view's latest rows in a time window into a snapshot file, a data
/// directory or a running server.
pub(super) fn materialize(a: MaterializeArgs) -> Result<(), String> {
    let registry = Registry::load(&a.registry).map_err(|e| e.to_string())?;
    let history = open_histories(&registry, &a.registry, &[a.view.as_str()], &a.offline)
        .map_err(|e| format!("{e}{}", Names::of_registry(&registry).view_hint(&a.view)))?
        .pop()
        .ok_or("no history")?;
    let mut opts = quiver_offline::MaterializeOptions {
        start: match &a.start {
            Some(s) => quiver_offline::parse_time(s).map_err(|e| format!("--start: {e}"))?,
            None => i64::MIN,
        },
        end: quiver_offline::parse_time(&a.end).map_err(|e| format!("--end: {e}"))?,
        threads: a.offline.threads,
        progress: true,
    };
    let client = || ClientArgs {
        server: a.server.clone().unwrap_or_default(),
        token: a.token.clone(),
        ca_cert: a.ca_cert.clone(),
    };
    let state = a.state.clone().unwrap_or_else(|| {
        a.registry
            .parent()
            .unwrap_or(Path::new("."))
            .join(".quiver-materialize")
    });
    let target = match (&a.out, &a.data_dir, &a.server) {
        (Some(out), _, _) => out.display().to_string(),
        (None, Some(dir), _) => format!(
            "data-dir {}",
            std::path::absolute(dir).unwrap_or(dir.clone()).display()
        ),
        (None, None, server) => format!("server {}", server.clone().unwrap_or_default()),
    };
    if a.incremental {
        let prev = quiver_offline::last_materialized(&state, &a.view, &target)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                format!(
                    "no earlier materialization of {:?} into {target} is recorded in {}; run \
                     once without --incremental",
                    a.view,
                    state.display()
                )
            })?;
        if opts.end <= prev {
            println!("{}: already materialized up to {prev} µs", a.view);
            return Ok(());
        }
        opts.start = prev.saturating_add(1);
    }
    let summary = match (&a.out, &a.data_dir) {
        (Some(out), _) => quiver_offline::materialize_snapshot(&registry, &history, out, &opts)
            .map_err(|e| e.to_string())?,
        (None, Some(dir)) if a.incremental => {
            quiver_offline::materialize_rows_into_db(&registry, &history, dir, &opts)
                .map_err(|e| e.to_string())?
        }
        (None, Some(dir)) => quiver_offline::materialize_into_db(&registry, &history, dir, &opts)
            .map_err(|e| e.to_string())?,
        (None, None) if a.incremental => stream_rows(client(), &registry, &history, &opts)?,
        (None, None) => {
            let tmp = std::env::temp_dir().join(format!(
                "quiver-materialize-{}-{}.qsnap",
                a.view,
                std::process::id()
            ));
            let _ = std::fs::remove_file(&tmp);
            let s = quiver_offline::materialize_snapshot(&registry, &history, &tmp, &opts)
                .map_err(|e| e.to_string());
            let uploaded = match &s {
                Ok(_) => upload_snapshot(client(), &a.view, &tmp),
                Err(_) => Ok(()),
            };
            let _ = std::fs::remove_file(&tmp);
            uploaded?;
            s?
        }
    };
    if a.out.is_none() {
        quiver_offline::record_materialized(&state, &a.view, &target, opts.end)
            .map_err(|e| e.to_string())?;
    }
    println!(
        "materialized {summary}{} → {target}",
        if a.incremental { " (incremental)" } else { "" }
    );
    Ok(())
}

/// Incremental materialization into a server: the window's latest rows as write batches over
/// one StreamWriteFeatures call (the batches are built before the call starts).
fn stream_rows(
    args: ClientArgs,
    registry: &Registry,
    history: &quiver_offline::History,
    opts: &quiver_offline::MaterializeOptions,
) -> Result<quiver_offline::MaterializeSummary, String> {
    let started = std::time::Instant::now();
    let (requests, latest) = writes_from_history(registry, history, opts)?;
    if !requests.is_empty() {
        with_client(&args, None, |mut c| async move {
            let r = c
                .stream_write_features(tokio_stream::iter(requests))
                .await
                .map_err(status_text)?
                .into_inner();
            eprintln!(
                "wrote {} rows in {} batches (wal sequence {})",
                r.rows, r.batches, r.wal_sequence
            );
            Ok(())
        })?;
    }
    Ok(quiver_offline::MaterializeSummary::new(
        history.view(),
        latest,
        0,
        started,
    ))
}

/// Streams a snapshot file to a server (zstd-compressed, see [`upload_snapshot_file`]).
fn upload_snapshot(args: ClientArgs, view: &str, path: &Path) -> Result<(), String> {
    let view = view.to_owned();
    with_client(&args, None, |mut c| async move {
        let r = upload_snapshot_file(&mut c, &view, path)
            .await
            .map_err(|e| e.to_string())?;
        eprintln!(
            "uploaded {} bytes; the server loaded {} entities into {:?}",
            r.received_bytes, r.entities, r.view
        );
        Ok(())
    })
}
