//! `quiver write`'s input: JSON lines → native write batches, checked against the view's
//! schema before anything is sent.

use super::suggest::did_you_mean;
use crate::proto::quiver::v1 as pb;

/// Turns JSON lines into write batches for `view`. Each line is one row: its join keys,
/// `event_timestamp` (whole seconds; now if absent) and any of the view's features. A feature
/// a line leaves out is left untouched (consecutive lines with the same features share a
/// batch), `null` writes a null, and an unknown field or a value of the wrong type is an error
/// naming the line (from 1) and the field.
pub(super) fn json_batches(
    text: &str,
    view: &str,
    schema: &pb::ViewSchema,
    entity: &pb::EntitySchema,
) -> Result<Vec<pb::WriteFeaturesRequest>, String> {
    const EVENT_TIME: &str = "event_timestamp";
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    // (line number, the object, the indices of the features it sets) per row.
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let ln = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let obj: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(line).map_err(|e| format!("line {ln}: {e}"))?;
        let mut features = Vec::new();
        for name in obj.keys() {
            if name == EVENT_TIME || entity.join_keys.iter().any(|k| &k.name == name) {
                continue;
            }
            match schema.features.iter().position(|f| &f.name == name) {
                Some(fi) => features.push(fi),
                None => {
                    let known: Vec<&str> =
                        schema.features.iter().map(|f| f.name.as_str()).collect();
                    let keys = entity.join_keys.iter().map(|k| k.name.as_str());
                    let hint =
                        did_you_mean(name, known.iter().copied().chain(keys).chain([EVENT_TIME]));
                    return Err(format!(
                        "line {ln}: unknown field {name:?}{hint}: view {view:?} has {}, and \
                         rows carry {} and {EVENT_TIME:?}",
                        known.join(", "),
                        entity
                            .join_keys
                            .iter()
                            .map(|k| format!("{:?}", k.name))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
        }
        if features.is_empty() {
            return Err(format!("line {ln}: no feature of view {view:?} to write"));
        }
        features.sort_unstable();
        rows.push((ln, obj, features));
    }
    if rows.is_empty() {
        return Err("no rows".into());
    }
    let mut batches = Vec::new();
    for run in rows.chunk_by(|a, b| a.2 == b.2) {
        let mut req = pb::WriteFeaturesRequest {
            view: view.to_owned(),
            ..Default::default()
        };
        for jk in &entity.join_keys {
            let values = if jk.r#type == pb::KeyType::Int64 as i32 {
                let v = run.iter().map(|(ln, obj, _)| {
                    obj.get(&jk.name)
                        .ok_or_else(|| format!("line {ln}: missing join key {:?}", jk.name))?
                        .as_i64()
                        .ok_or_else(|| format!("line {ln}: {:?} must be an integer", jk.name))
                });
                pb::key_column::Values::Int64Values(pb::Int64Values {
                    values: v.collect::<Result<_, _>>()?,
                })
            } else {
                let v = run.iter().map(|(ln, obj, _)| {
                    obj.get(&jk.name)
                        .ok_or_else(|| format!("line {ln}: missing join key {:?}", jk.name))?
                        .as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| format!("line {ln}: {:?} must be a string", jk.name))
                });
                pb::key_column::Values::StringValues(pb::StringValues {
                    values: v.collect::<Result<_, _>>()?,
                })
            };
            req.keys.push(pb::KeyColumn {
                name: jk.name.clone(),
                values: Some(values),
            });
        }
        for (ln, obj, _) in run {
            let secs = match obj.get(EVENT_TIME) {
                None => now,
                Some(v) => v.as_i64().ok_or_else(|| {
                    format!(
                        "line {ln}: {EVENT_TIME:?} must be whole seconds since the Unix epoch \
                         (an integer such as 1700000000), got {v}"
                    )
                })?,
            };
            req.event_timestamps.push(secs.saturating_mul(1_000_000));
        }
        let lines: Vec<usize> = run.iter().map(|r| r.0).collect();
        for &fi in &run[0].2 {
            let f = &schema.features[fi];
            let vals: Vec<&serde_json::Value> = run
                .iter()
                .filter_map(|(_, obj, _)| obj.get(&f.name))
                .collect();
            let ty = f.r#type.as_ref().and_then(|t| t.kind);
            req.features.push(json_column(&f.name, ty, &vals, &lines)?);
        }
        batches.push(req);
    }
    Ok(batches)
}

/// One feature's column of a batch from JSON values (one per row; `null` is a null), with
/// errors naming the row's line.
fn json_column(
    name: &str,
    kind: Option<pb::value_type::Kind>,
    vals: &[&serde_json::Value],
    lines: &[usize],
) -> Result<pb::FeatureWrite, String> {
    use pb::column::Data;
    let mut nulls = vec![0u8; vals.len().div_ceil(8)];
    for (i, v) in vals.iter().enumerate() {
        if v.is_null() {
            nulls[i / 8] |= 1 << (i % 8);
        }
    }
    let bad = |i: usize| {
        format!(
            "line {}: {name:?} = {} does not fit its type",
            lines[i], vals[i]
        )
    };
    let scalar = match kind {
        Some(pb::value_type::Kind::Scalar(s)) => s,
        _ => {
            return Err(format!(
                "{name:?}: only scalar features can be written from JSON by this tool"
            ))
        }
    };
    // Every row's value converted by `conv` (a null row holds the type's default, its bit
    // set above); a value `conv` refuses is an error naming its line.
    fn column<T: Default>(
        vals: &[&serde_json::Value],
        bad: impl Fn(usize) -> String,
        conv: impl Fn(&serde_json::Value) -> Option<T>,
    ) -> Result<Vec<T>, String> {
        vals.iter()
            .enumerate()
            .map(|(i, v)| match v {
                serde_json::Value::Null => Ok(T::default()),
                v => conv(v).ok_or_else(|| bad(i)),
            })
            .collect()
    }
    let data = match pb::ScalarType::try_from(scalar).unwrap_or(pb::ScalarType::Unspecified) {
        pb::ScalarType::Bool => Data::BoolValues(pb::BoolValues {
            values: column(vals, bad, serde_json::Value::as_bool)?,
        }),
        pb::ScalarType::Int32 => Data::Int32Values(pb::Int32Values {
            values: column(vals, bad, |v| {
                v.as_i64().and_then(|x| i32::try_from(x).ok())
            })?,
        }),
        pb::ScalarType::Int64 => Data::Int64Values(pb::Int64Values {
            values: column(vals, bad, serde_json::Value::as_i64)?,
        }),
        // JSON times are whole seconds; the protocol carries microseconds.
        pb::ScalarType::Timestamp => Data::TimestampValues(pb::TimestampValues {
            micros: column(vals, bad, |v| {
                v.as_i64().map(|s| s.saturating_mul(1_000_000))
            })?,
        }),
        pb::ScalarType::Float32 => Data::Float32Values(pb::Float32Values {
            values: column(vals, bad, |v| v.as_f64().map(|x| x as f32))?,
        }),
        pb::ScalarType::Float64 => Data::Float64Values(pb::Float64Values {
            values: column(vals, bad, serde_json::Value::as_f64)?,
        }),
        pb::ScalarType::String => Data::StringValues(pb::StringValues {
            values: column(vals, bad, |v| v.as_str().map(str::to_string))?,
        }),
        pb::ScalarType::Bytes | pb::ScalarType::Unspecified => {
            return Err(format!(
                "{name:?}: bytes features cannot be written from JSON by this tool"
            ))
        }
    };
    Ok(pb::FeatureWrite {
        name: name.to_string(),
        values: Some(pb::Column { data: Some(data) }),
        null_bitmap: if nulls.iter().any(|b| *b != 0) {
            nulls
        } else {
            Vec::new()
        },
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use quiver_engine::Registry;

    use super::*;
    use crate::convert::registry_to_proto;

    fn batches(text: &str) -> Result<Vec<pb::WriteFeaturesRequest>, String> {
        let reg = registry_to_proto(&Registry::from_toml(crate::testing::REGISTRY).unwrap(), 1);
        json_batches(text, "user_stats", &reg.views[0], &reg.entities[0])
    }

    #[test]
    fn lines_setting_the_same_features_share_a_batch() {
        let b = batches(
            "{\"user_id\": 1, \"event_timestamp\": 1700000000, \"txn_count_7d\": 3}\n\
             {\"user_id\": 2, \"event_timestamp\": 1700000000, \"txn_count_7d\": null}\n\
             {\"user_id\": 3, \"country\": \"NZ\"}\n",
        )
        .unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].event_timestamps, [1_700_000_000_000_000; 2]);
        assert_eq!(b[0].features[0].null_bitmap, [0b10]);
        assert_eq!(b[1].features[0].name, "country");
    }

    #[test]
    fn a_misspelled_field_gets_a_suggestion() {
        let e = batches("{\"user_id\": 1, \"contry\": \"NZ\"}\n").unwrap_err();
        assert!(
            e.starts_with("line 1: unknown field \"contry\"; did you mean \"country\"?"),
            "{e}"
        );
        let e =
            batches("{\"user_id\": 1, \"event_timestmp\": 5, \"country\": \"NZ\"}").unwrap_err();
        assert!(e.contains("did you mean \"event_timestamp\"?"), "{e}");
        let e = batches("{\"user_id\": 1, \"balance\": 5}").unwrap_err();
        assert!(!e.contains("did you mean"), "{e}");
    }
}
