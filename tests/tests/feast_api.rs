//! The Feast-compatible endpoint end to end, through the client generated from the
//! Feast-compatible protos.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use quiver_server::proto::feast::serving as fs;
use quiver_server::proto::feast::types as ft;
use quiver_tests::fixtures::*;
use quiver_tests::req::*;
use quiver_tests::scenario::{write_scenario, USER_STATS};

/// The Feast-compatible endpoint through the client generated from the Feast-compatible
/// protos: join key columns first (echoed, PRESENT), `view__feature` names, Feast's status
/// numbers, each type in its `feast.types.Value` member (timestamps in seconds), empty values
/// for rows that are not PRESENT, event times as `Timestamp`s, feature services, composite keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feast_endpoint_speaks_feast() {
    use ft::value::Val;
    let (_dir, _spec, server) = start("e2e-feast", "").await;
    let mut c = server.native(None).await;
    apply_v2(&mut c).await;
    let t = write_scenario(&mut c).await;
    let mut f = server.feast(None).await;

    let info = ok(
        f.get_feast_serving_info(fs::GetFeastServingInfoRequest {})
            .await,
        "GetFeastServingInfo",
    );
    assert!(info.version.starts_with("quiver-"), "{info:?}");

    // Version 1 of the registry: user_stats without `premium`, and the embedding view.
    let features: Vec<&str> = USER_STATS[..9]
        .iter()
        .copied()
        .chain([
            "user_embedding:embedding",
            "user_embedding:tags",
            "user_embedding:scores",
            "user_embedding:tokens",
        ])
        .collect();
    let r = ok(
        f.get_online_features(feast_req(
            &features,
            vec![("user_id", feast_ints(&[1, 2, 3, 99, 1]))],
            true,
        ))
        .await,
        "Feast GetOnlineFeatures",
    );
    let names = feast_names(&r);
    let mut expected = vec!["user_id".to_owned()];
    expected.extend(features.iter().map(|s| s.replace(':', "__")));
    assert_eq!(names, expected);
    assert_eq!(r.results.len(), names.len());
    for col in &r.results {
        assert_eq!(col.values.len(), 5);
        assert_eq!(col.statuses.len(), 5);
        assert_eq!(col.event_timestamps.len(), 5);
    }
    let by_name = |n: &str| &r.results[names.iter().position(|x| *x == n).unwrap()];

    // The join key column echoes the request, every row PRESENT, epoch-0 timestamps.
    let keys = by_name("user_id");
    assert_eq!(keys.values, feast_ints(&[1, 2, 3, 99, 1]).val);
    assert_eq!(keys.statuses, [1; 5]);
    assert!(keys.event_timestamps.iter().all(|ts| ts.seconds == 0));

    // Feast's FieldStatus numbers: PRESENT 1, NULL_VALUE 2, NOT_FOUND 3, OUTSIDE_MAX_AGE 4.
    let clicks = by_name("user_stats__clicks");
    assert_eq!(clicks.statuses, [1, 1, 1, 3, 1]);
    assert_eq!(clicks.values[0], fv(Val::Int64Val(10)));
    assert_eq!(clicks.values[2], fv(Val::Int64Val(30)));
    assert_eq!(clicks.values[3], ft::Value { val: None });
    assert_eq!(clicks.values[4], fv(Val::Int64Val(10)));
    let secs = |micros: i64| micros.div_euclid(SEC);
    let ts: Vec<i64> = clicks.event_timestamps.iter().map(|t| t.seconds).collect();
    assert_eq!(
        ts,
        [secs(t.fresh), secs(t.fresh), secs(t.old), 0, secs(t.fresh)]
    );
    assert_eq!(
        clicks.event_timestamps[0].nanos as i64,
        t.fresh.rem_euclid(SEC) * 1000
    );
    assert_eq!(
        by_name("user_stats__logins").values[1],
        fv(Val::Int32Val(2))
    );
    assert_eq!(by_name("user_stats__ctr").values[0], fv(Val::FloatVal(0.5)));
    assert_eq!(
        by_name("user_stats__amount").values[2],
        fv(Val::DoubleVal(3.5))
    );
    assert_eq!(
        by_name("user_stats__verified").values[0],
        fv(Val::BoolVal(true))
    );
    assert_eq!(
        by_name("user_stats__verified").values[1],
        fv(Val::BoolVal(false))
    );
    // Timestamps are seconds in Feast; these were written as 111 µs etc.
    assert_eq!(
        by_name("user_stats__last_login").values[0],
        fv(Val::UnixTimestampVal(0))
    );
    assert_eq!(
        by_name("user_stats__blob").values[0],
        fv(Val::BytesVal(vec![0, 0xff]))
    );
    let country = by_name("user_stats__country");
    assert_eq!(country.statuses, [1, 2, 1, 3, 1]);
    assert_eq!(country.values[0], fv(Val::StringVal("us".into())));
    assert_eq!(country.values[1], ft::Value { val: None });
    assert_eq!(country.event_timestamps[1].seconds, secs(t.fresh));
    let recent = by_name("user_stats__recent");
    assert!(matches!(recent.statuses[2], 3 | 4), "{:?}", recent.statuses);
    assert_eq!(recent.values[2], ft::Value { val: None });
    assert_eq!(
        by_name("user_embedding__embedding").values[0],
        fv(Val::FloatListVal(ft::FloatList {
            val: vec![1., 2., 3., 4.]
        }))
    );
    assert_eq!(
        by_name("user_embedding__embedding").statuses,
        [1, 1, 1, 3, 1]
    );
    assert_eq!(
        by_name("user_embedding__tags").values[..3],
        [
            fv(Val::StringListVal(ft::StringList {
                val: vec!["a".into(), "b".into()]
            })),
            fv(Val::StringListVal(ft::StringList { val: vec![] })),
            fv(Val::StringListVal(ft::StringList {
                val: vec!["c".into()]
            })),
        ]
    );
    assert_eq!(
        by_name("user_embedding__scores").values[1],
        fv(Val::DoubleListVal(ft::DoubleList {
            val: vec![0.2, 0.3, 0.4]
        }))
    );
    assert_eq!(
        by_name("user_embedding__tokens").values[2],
        fv(Val::BytesListVal(ft::BytesList {
            val: vec![b"x".to_vec(), vec![0xfe]]
        }))
    );

    // Bare names; int32 join key values are accepted for an int64 key.
    let r = ok(
        f.get_online_features(feast_req(
            &["user_stats:clicks", "user_profile:age"],
            vec![(
                "user_id",
                ft::RepeatedValue {
                    val: vec![fv(Val::Int32Val(2))],
                },
            )],
            false,
        ))
        .await,
        "bare names",
    );
    assert_eq!(feast_names(&r), ["user_id", "clicks", "age"]);
    assert_eq!(r.results[1].values, [fv(Val::Int64Val(20))]);
    assert_eq!(r.results[2].statuses, [3]);

    // A feature service, in its declared order.
    let r = ok(
        f.get_online_features(fs::GetOnlineFeaturesRequest {
            kind: Some(fs::get_online_features_request::Kind::FeatureService(
                "fraud_v1".into(),
            )),
            ..feast_req(&[], vec![("user_id", feast_ints(&[3]))], false)
        })
        .await,
        "feature service",
    );
    assert_eq!(
        feast_names(&r),
        ["user_id", "amount", "clicks", "embedding", "age"]
    );
    assert_eq!(r.results[1].values, [fv(Val::DoubleVal(3.5))]);

    // Composite keys: join keys in the entity's declared order, then the features.
    let r = ok(
        f.get_online_features(feast_req(
            &[
                "user_merchant_stats:txn_count",
                "user_merchant_stats:last_amounts",
            ],
            vec![
                ("merchant_id", feast_strs(&["m1", "m9", "m2"])),
                ("user_id", feast_ints(&[1, 1, 1])),
            ],
            true,
        ))
        .await,
        "composite",
    );
    assert_eq!(
        feast_names(&r),
        [
            "user_id",
            "merchant_id",
            "user_merchant_stats__txn_count",
            "user_merchant_stats__last_amounts"
        ]
    );
    assert_eq!(r.results[1].values, feast_strs(&["m1", "m9", "m2"]).val);
    assert_eq!(r.results[2].statuses, [1, 3, 1]);
    assert_eq!(r.results[2].values[2], fv(Val::Int64Val(6)));
    assert_eq!(
        r.results[3].values[0],
        fv(Val::DoubleListVal(ft::DoubleList {
            val: vec![10., 11.]
        }))
    );

    // Features of two entities in one request, each read with its own join keys.
    let r = ok(
        f.get_online_features(feast_req(
            &["user_stats:clicks", "user_merchant_stats:txn_count"],
            vec![
                ("user_id", feast_ints(&[2, 1])),
                ("merchant_id", feast_strs(&["m1", "m2"])),
            ],
            false,
        ))
        .await,
        "two entities",
    );
    assert_eq!(
        feast_names(&r),
        ["user_id", "merchant_id", "clicks", "txn_count"]
    );
    assert_eq!(
        r.results[2].values,
        [fv(Val::Int64Val(20)), fv(Val::Int64Val(10))]
    );
    assert_eq!(
        r.results[3].values,
        [fv(Val::Int64Val(7)), fv(Val::Int64Val(6))]
    );

    // The endpoint's reads are counted by status like the native ones.
    let text = server.metrics_text().await;
    assert!(
        text.contains(
            "quiver_requests_total{method=\"feast.serving.ServingService/GetOnlineFeatures\",outcome=\"ok\"} 5"
        ),
        "{text}"
    );
}
