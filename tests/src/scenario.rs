//! The main scenario of the server tests: rows of every type, status and key shape written
//! one way and read back every way, before and after restarts.

#![allow(clippy::unwrap_used)]

use tonic::Code;

use crate::fixtures::{apply_v2, ok, read, write_ok, HOUR, MINUTE, SEC};
use crate::req::*;
use crate::server::{now_micros, Native};

/// Event times of the main scenario, fixed when the data is written.
#[derive(Debug, Clone, Copy)]
pub struct Times {
    /// 10 s ago: fresh under every TTL.
    pub fresh: i64,
    /// 2 h ago: past `user_stats:recent`'s 1 h TTL, within the view's 1 d.
    pub old: i64,
    /// 30 min ago: fresh under the TTLs, stale under a 60 s `max_age`.
    pub half_hour: i64,
}

/// Every feature of `user_stats` in version 2 of the registry.
pub const USER_STATS: [&str; 10] = [
    "user_stats:clicks",
    "user_stats:logins",
    "user_stats:ctr",
    "user_stats:amount",
    "user_stats:verified",
    "user_stats:last_login",
    "user_stats:country",
    "user_stats:blob",
    "user_stats:recent",
    "user_stats:premium",
];

/// Applies version 2 of the registry, writes the scenario and checks it reads back: what a
/// test of the main path starts from. Returns v2's text, the version it became and the
/// scenario's times.
pub async fn apply_write_and_check(c: &mut Native) -> (String, u64, Times) {
    let (v2, version) = apply_v2(c).await;
    let t = write_scenario(c).await;
    check_scenario(c, t).await;
    (v2, version, t)
}

/// Users 1-4 of `user_stats` in one unary batch (with nulls), embeddings and lists for users
/// 1-3 and composite-key rows in one client stream of three batches.
pub async fn write_scenario(c: &mut Native) -> Times {
    let now = now_micros();
    let t = Times {
        fresh: now - 10 * SEC,
        old: now - 2 * HOUR,
        half_hour: now - 30 * MINUTE,
    };
    let r = write_ok(
        c,
        write(
            "user_stats",
            vec![int_keys("user_id", &[1, 2, 3, 4])],
            &[t.fresh, t.fresh, t.old, t.half_hour],
            vec![
                feature("clicks", i64s(&[10, 20, 30, 40])),
                feature("logins", i32s(&[1, 2, 3, 4])),
                feature("ctr", f32s(&[0.5, 0.25, 0.125, 1.0])),
                feature("amount", f64s(&[1.5, 2.5, 3.5, 4.5])),
                feature("verified", bools(&[true, false, true, false])),
                feature("last_login", timestamps(&[111, 222, 333, 444])),
                // User 2's country is written as null (its slot still holds a placeholder).
                feature_with_nulls("country", strings(&["us", "", "fr", "de"]), 4, &[1]),
                feature("blob", bytes(&[b"\x00\xff", b"", b"\x80", b"z"])),
                feature("recent", i64s(&[7, 8, 9, 10])),
                feature_with_nulls("premium", bools(&[true, true, false, false]), 4, &[3]),
            ],
        ),
    )
    .await;
    assert_eq!((r.rows, r.batches), (4, 1));
    assert!(r.wal_sequence > 0);

    let batches = vec![
        write(
            "user_embedding",
            vec![int_keys("user_id", &[1, 2])],
            &[t.fresh, t.fresh],
            vec![
                feature("embedding", vectors(4, &[1., 2., 3., 4., 5., 6., 7., 8.])),
                feature("tags", lists(&[2, 0], strings(&["a", "b"]))),
                feature("scores", lists(&[1, 3], f64s(&[0.1, 0.2, 0.3, 0.4]))),
                feature("tokens", lists(&[1, 1], bytes(&[b"\xff\x00", b"ok"]))),
            ],
        ),
        write(
            "user_embedding",
            vec![int_keys("user_id", &[3])],
            &[t.fresh],
            vec![
                feature("embedding", vectors(4, &[9., 10., 11., 12.])),
                feature("tags", lists(&[1], strings(&["c"]))),
                feature("scores", lists(&[0], f64s(&[]))),
                feature("tokens", lists(&[2], bytes(&[b"x", b"\xfe"]))),
            ],
        ),
        write(
            "user_merchant_stats",
            vec![
                int_keys("user_id", &[1, 1, 2]),
                str_keys("merchant_id", &["m1", "m2", "m1"]),
            ],
            &[t.fresh; 3],
            vec![
                feature("txn_count", i64s(&[5, 6, 7])),
                feature("last_amounts", lists(&[2, 1, 0], f64s(&[10., 11., 12.]))),
            ],
        ),
    ];
    let r = ok(
        c.stream_write_features(tokio_stream::iter(batches)).await,
        "StreamWriteFeatures",
    );
    assert_eq!((r.rows, r.batches), (6, 3));
    t
}

/// Every read of the main scenario, with all statuses, types and key shapes. Run before and
/// after restarts: the answers must not change.
pub async fn check_scenario(c: &mut Native, t: Times) {
    // --- every scalar type; PRESENT, NULL_VALUE, NOT_FOUND, OUTSIDE_MAX_AGE (TTL), duplicates.
    let keys = [1, 2, 3, 4, 99, 1];
    let r = read(c, get(&USER_STATS, vec![int_keys("user_id", &keys)])).await;
    assert_eq!(r.row_count, 6);
    let bare: Vec<&str> = USER_STATS
        .iter()
        .map(|s| s.split_once(':').unwrap().1)
        .collect();
    assert_eq!(r.feature_names, bare);
    let ts_all = vec![t.fresh, t.fresh, t.old, t.half_hour, 0, t.fresh];
    let (p, n, nf) = (PRESENT, NULL_VALUE, NOT_FOUND);
    let clicks = column(&r, "clicks");
    assert_eq!(clicks.statuses, [p, p, p, p, nf, p]);
    assert_eq!(clicks.event_timestamps, ts_all);
    let v = as_i64(clicks);
    assert_eq!((v[0], v[1], v[2], v[3], v[5]), (10, 20, 30, 40, 10));
    assert_eq!(
        as_i32(column(&r, "logins"))
            .iter()
            .zip(&column(&r, "logins").statuses)
            .filter(|(_, s)| **s == p)
            .map(|(v, _)| *v)
            .collect::<Vec<_>>(),
        [1, 2, 3, 4, 1]
    );
    assert_eq!(as_f32(column(&r, "ctr"))[..4], [0.5, 0.25, 0.125, 1.0]);
    assert_eq!(as_f64(column(&r, "amount"))[..4], [1.5, 2.5, 3.5, 4.5]);
    assert_eq!(
        as_bool(column(&r, "verified"))[..4],
        [true, false, true, false]
    );
    assert_eq!(as_ts(column(&r, "last_login"))[..4], [111, 222, 333, 444]);
    let blob = as_bytes(column(&r, "blob"));
    assert_eq!(
        (&blob[0][..], &blob[1][..], &blob[2][..], &blob[3][..]),
        (&b"\x00\xff"[..], &b""[..], &b"\x80"[..], &b"z"[..])
    );
    let country = column(&r, "country");
    assert_eq!(country.statuses, [p, n, p, p, nf, p]);
    // A null keeps its event time; a missing entity has none.
    assert_eq!(country.event_timestamps, ts_all);
    let cv = as_str(country);
    assert_eq!(
        (&cv[0][..], &cv[2][..], &cv[3][..], &cv[5][..]),
        ("us", "fr", "de", "us")
    );
    let premium = column(&r, "premium");
    assert_eq!(premium.statuses, [p, p, p, n, nf, p]);
    assert_eq!(as_bool(premium)[..3], [true, true, false]);
    // `recent` has a 1 h TTL: user 3's value (2 h old) is withheld.
    let recent = column(&r, "recent");
    assert_eq!(recent.statuses[..2], [p, p]);
    assert_eq!(recent.statuses[3..], [p, nf, p]);
    assert!(
        matches!(recent.statuses[2], OUTSIDE_MAX_AGE | NOT_FOUND),
        "expired value served: {:?}",
        recent.statuses
    );
    if recent.statuses[2] == OUTSIDE_MAX_AGE {
        assert_eq!(recent.event_timestamps[2], t.old);
    }
    assert_eq!(as_i64(recent)[0], 7);

    // --- a request max_age stricter than the TTLs: users 3 and 4 are too old for 60 s.
    let mut req = get(
        &["user_stats:clicks", "user_stats:country"],
        vec![int_keys("user_id", &[1, 2, 3, 4, 99])],
    );
    req.max_age = Some(prost_types::Duration {
        seconds: 60,
        nanos: 0,
    });
    let r = read(c, req).await;
    let o = OUTSIDE_MAX_AGE;
    assert_eq!(column(&r, "clicks").statuses, [p, p, o, o, nf]);
    assert_eq!(
        column(&r, "clicks").event_timestamps,
        [t.fresh, t.fresh, t.old, t.half_hour, 0]
    );
    assert_eq!(column(&r, "country").statuses, [p, n, o, o, nf]);

    // --- full_feature_names, and a bare-name collision between two views.
    let both = [
        "user_stats:country",
        "user_profile:country",
        "user_stats:clicks",
    ];
    let mut req = get(&both, vec![int_keys("user_id", &[1])]);
    req.full_feature_names = true;
    let r = read(c, req).await;
    assert_eq!(
        r.feature_names,
        [
            "user_stats__country",
            "user_profile__country",
            "user_stats__clicks"
        ]
    );
    assert_eq!(as_str(column(&r, "user_stats__country"))[0], "us");
    let err = c
        .get_online_features(get(&both, vec![int_keys("user_id", &[1])]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("\"country\""), "{err:?}");

    // --- composite keys, columns in either order, an unknown pair, an empty list.
    let r = read(
        c,
        get(
            &[
                "user_merchant_stats:txn_count",
                "user_merchant_stats:last_amounts",
            ],
            vec![
                str_keys("merchant_id", &["m1", "m2", "m1", "m9", "m1"]),
                int_keys("user_id", &[1, 1, 2, 1, 3]),
            ],
        ),
    )
    .await;
    let txn = column(&r, "txn_count");
    assert_eq!(txn.statuses, [p, p, p, nf, nf]);
    assert_eq!(as_i64(txn)[..3], [5, 6, 7]);
    let amounts = column(&r, "last_amounts");
    assert_eq!(amounts.statuses, [p, p, p, nf, nf]);
    let (lengths, items) = as_lists(amounts);
    assert_eq!(lengths, [2, 1, 0, 0, 0]);
    assert_eq!(items, &f64s(&[10., 11., 12.]));

    // --- a feature service: its declared order, across three views.
    let r = read(
        c,
        get_service("fraud_v1", vec![int_keys("user_id", &[3, 1])]),
    )
    .await;
    assert_eq!(r.feature_names, ["amount", "clicks", "embedding", "age"]);
    assert_eq!(as_f64(column(&r, "amount")), [3.5, 1.5]);
    // (User 1's age is written later in the scenario; user 3 never has one.)
    assert_eq!(column(&r, "age").statuses[0], nf);

    // --- vectors and lists, rows in another order than written, with a miss and duplicates.
    let r = read(
        c,
        get(
            &[
                "user_embedding:embedding",
                "user_embedding:tags",
                "user_embedding:scores",
                "user_embedding:tokens",
            ],
            vec![int_keys("user_id", &[3, 99, 1, 2, 1])],
        ),
    )
    .await;
    let emb = column(&r, "embedding");
    assert_eq!(emb.statuses, [p, nf, p, p, p]);
    let (dim, flat) = as_vectors(emb);
    assert_eq!(dim, 4);
    assert_eq!(
        flat,
        [9., 10., 11., 12., 0., 0., 0., 0., 1., 2., 3., 4., 5., 6., 7., 8., 1., 2., 3., 4.]
    );
    let (lengths, items) = as_lists(column(&r, "tags"));
    assert_eq!(lengths, [1, 0, 2, 0, 2]);
    assert_eq!(items, &strings(&["c", "a", "b", "a", "b"]));
    let (lengths, items) = as_lists(column(&r, "scores"));
    assert_eq!(lengths, [0, 0, 1, 3, 1]);
    assert_eq!(items, &f64s(&[0.1, 0.2, 0.3, 0.4, 0.1]));
    let (lengths, items) = as_lists(column(&r, "tokens"));
    assert_eq!(lengths, [2, 0, 1, 1, 1]);
    assert_eq!(
        items,
        &bytes(&[b"x", b"\xfe", b"\xff\x00", b"ok", b"\xff\x00"])
    );
}
