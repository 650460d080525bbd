//! End-to-end tests of the server's defences against careless and hostile clients: the work a
//! read may ask for is bounded before it is done, writes that would poison a key are refused,
//! and every refusal names the limit and its configured value.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use quiver_server::proto::feast::serving as fs;
use quiver_server::proto::quiver::v1 as pb;
use quiver_testkit::Proc;
use quiver_tests::fixtures::{clicks, clicks_of, start_with, SEC};
use quiver_tests::quiver_cli;
use quiver_tests::req::*;
use quiver_tests::server::{now_micros, Server, ServerSpec, TempDir};
use tonic::Code;

/// One view of a fixed-width, a string, a bytes and a list feature.
const REGISTRY: &str = include_str!("../fixtures/hardening-registry.toml");

/// The second view and a feature service, which the removal test leaves out and brings back.
const PROFILE: &str = include_str!("../fixtures/hardening-profile.toml");

async fn start(tag: &str, config: &str) -> (TempDir, Server) {
    let (dir, _spec, server) = start_with(tag, &format!("{REGISTRY}{PROFILE}"), config).await;
    (dir, server)
}

/// Asserts `r` failed with `code` and a message containing every one of `needles`.
#[track_caller]
fn refused<T: std::fmt::Debug>(r: Result<T, tonic::Status>, code: Code, needles: &[&str]) {
    match r {
        Ok(v) => panic!("accepted, wanted {code:?} naming {needles:?}: {v:?}"),
        Err(s) => {
            assert_eq!(s.code(), code, "{}", s.message());
            for n in needles {
                assert!(s.message().contains(n), "{:?} lacks {n:?}", s.message());
            }
        }
    }
}

fn feast_get(features: &[&str], users: &[i64]) -> fs::GetOnlineFeaturesRequest {
    feast_req(features, vec![("user_id", feast_ints(users))], false)
}

/// A read is bounded before it runs: feature references, rows × features, the response's
/// fixed-width bytes estimated from the schema, and the strings/bytes/lists it gathers (held
/// while reading, so a read of huge stored values stops at the limit instead of building
/// them); duplicate references are refused. Both APIs. Single stored values are bounded at
/// write time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_bounded_before_they_are_built() {
    let (_dir, server) = start(
        "bounded-reads",
        "max_features_per_request = 3\nmax_values_per_request = 2000\n\
         max_response_bytes = 1048576\nmax_value_bytes = 2097152\n\
         max_entities_per_request = 5000",
    )
    .await;
    let mut c = server.native(None).await;
    let mut f = server.feast(None).await;
    let t = now_micros() - 10 * SEC;

    // User 1 holds a 1.5 MiB blob, users 2..=1000 a click count and a short country.
    let blob = vec![7u8; 1536 << 10];
    c.write_features(write(
        "user_stats",
        vec![int_keys("user_id", &[1])],
        &[t],
        vec![feature("blob", bytes(&[&blob]))],
    ))
    .await
    .unwrap();
    let users: Vec<i64> = (2..=1000).collect();
    let clicks: Vec<i64> = users.iter().map(|u| u * 10).collect();
    let countries: Vec<&str> = users.iter().map(|_| "NL").collect();
    c.write_features(write(
        "user_stats",
        vec![int_keys("user_id", &users)],
        &vec![t; users.len()],
        vec![
            feature("clicks", i64s(&clicks)),
            feature("country", strings(&countries)),
        ],
    ))
    .await
    .unwrap();

    // A value above max_value_bytes is refused at write time, naming the row and the limit.
    let huge = vec![0u8; (2 << 20) + 1];
    refused(
        c.write_features(write(
            "user_stats",
            vec![int_keys("user_id", &[5, 6])],
            &[t, t],
            vec![feature("blob", bytes(&[b"small", &huge]))],
        ))
        .await,
        Code::InvalidArgument,
        &["\"blob\"", "row 1", "max_value_bytes = 2097152"],
    );
    let r = c
        .get_online_features(get(&["user_stats:blob"], vec![int_keys("user_id", &[5])]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.columns[0].statuses,
        [3],
        "the refused batch wrote nothing"
    );

    // The stored blob is larger than the response limit: refused, not built.
    refused(
        c.get_online_features(get(&["user_stats:blob"], vec![int_keys("user_id", &[1])]))
            .await,
        Code::ResourceExhausted,
        &["max_response_bytes = 1048576"],
    );
    refused(
        f.get_online_features(feast_get(&["user_stats:blob"], &[1]))
            .await,
        Code::ResourceExhausted,
        &["max_response_bytes = 1048576"],
    );

    // The same reference twice is refused (it would only repeat the same bytes).
    refused(
        c.get_online_features(get(
            &["user_stats:clicks", "user_stats:clicks"],
            vec![int_keys("user_id", &[2])],
        ))
        .await,
        Code::InvalidArgument,
        &["user_stats:clicks", "twice"],
    );
    refused(
        f.get_online_features(feast_get(&["user_stats:clicks", "user_stats:clicks"], &[2]))
            .await,
        Code::InvalidArgument,
        &["twice"],
    );

    // More references than max_features_per_request.
    let four = [
        "user_stats:clicks",
        "user_stats:country",
        "user_stats:blob",
        "user_stats:tags",
    ];
    refused(
        c.get_online_features(get(&four, vec![int_keys("user_id", &[2])]))
            .await,
        Code::InvalidArgument,
        &["max_features_per_request = 3"],
    );
    refused(
        f.get_online_features(feast_get(&four, &[2])).await,
        Code::InvalidArgument,
        &["max_features_per_request = 3"],
    );

    // Rows × features over max_values_per_request (999 × 3 > 2000), within the row limit.
    let three = &four[..3];
    refused(
        c.get_online_features(get(three, vec![int_keys("user_id", &users)]))
            .await,
        Code::InvalidArgument,
        &["max_values_per_request = 2000"],
    );
    refused(
        f.get_online_features(feast_get(three, &users)).await,
        Code::InvalidArgument,
        &["max_values_per_request = 2000"],
    );

    // What fits is answered, both APIs, and the server is unharmed.
    let r = c
        .get_online_features(get(
            &["user_stats:clicks", "user_stats:country"],
            vec![int_keys("user_id", &users)],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(as_i64(&r.columns[0]), clicks.as_slice());
    let r = f
        .get_online_features(feast_get(&["user_stats:clicks"], &users))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.results[1].values.len(), users.len());
}

/// The fixed-width part of a response is estimated from the schema before any key is looked
/// up: a read that could only be too large is refused even when nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_response_estimate_refuses_before_reading() {
    let (_dir, server) = start("estimate", "max_response_bytes = 65536").await;
    let mut c = server.native(None).await;
    let mut f = server.feast(None).await;
    // 5,000 unknown users × one int64: ~105 KB of native response at most.
    let users: Vec<i64> = (1..=5000).collect();
    refused(
        c.get_online_features(get(
            &["user_stats:clicks"],
            vec![int_keys("user_id", &users)],
        ))
        .await,
        Code::ResourceExhausted,
        &["max_response_bytes = 65536", "fixed-width"],
    );
    refused(
        f.get_online_features(feast_get(&["user_stats:clicks"], &users))
            .await,
        Code::ResourceExhausted,
        &["max_response_bytes = 65536"],
    );
    let r = c
        .get_online_features(get(
            &["user_stats:clicks"],
            vec![int_keys("user_id", &users[..1000])],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.row_count, 1000);
}

/// An event time far beyond the server clock (nanoseconds sent as microseconds) is refused
/// naming the row and the likely unit, so it cannot win last-write-wins forever; the correct
/// write that follows is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_times_from_the_future_are_refused() {
    let (_dir, server) = start("future", "max_event_time_skew_secs = 3600").await;
    let mut c = server.native(None).await;
    let now = now_micros();
    refused(
        c.write_features(clicks(&[1, 2], &[now, now * 1000], &[1, 2]))
            .await,
        Code::InvalidArgument,
        &[
            "event_timestamps[1]",
            "max_event_time_skew_secs = 3600",
            "nanoseconds",
        ],
    );
    let mut late = clicks(&[2], &[now], &[2]);
    late.created_timestamps = vec![now + 7200 * SEC];
    refused(
        c.write_features(late).await,
        Code::InvalidArgument,
        &["created_timestamps[0]"],
    );
    // Within the skew is fine; the correct write is what is served.
    c.write_features(clicks(&[2], &[now + 60 * SEC], &[20]))
        .await
        .unwrap();
    c.write_features(clicks(&[2], &[now + 61 * SEC], &[21]))
        .await
        .unwrap();
    assert_eq!(clicks_of(&mut c, &[2]).await, [21]);
}

/// Feast's `Timestamp` is valid from year 1 to 9999: a stored time outside it is sent clamped
/// to the range, never as an invalid message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feast_timestamps_stay_in_protobuf_range() {
    let (_dir, server) = start("feast-range", "").await;
    let mut c = server.native(None).await;
    let mut f = server.feast(None).await;
    let ancient = -100_000 * 365 * 86_400 * SEC;
    c.write_features(clicks(&[1], &[ancient], &[1]))
        .await
        .unwrap();
    let r = f
        .get_online_features(feast_get(&["user_stats:clicks"], &[1]))
        .await
        .unwrap()
        .into_inner();
    let ts = &r.results[1].event_timestamps[0];
    assert_eq!(ts.seconds, -62_135_596_800, "0001-01-01T00:00:00Z");
    assert!((0..1_000_000_000).contains(&ts.nanos));
}

/// A field of `/proc/<pid>/status` in KiB (`VmHWM`, `VmRSS`).
fn proc_kib(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} missing from /proc/{pid}/status"))
}

/// Load shedding sheds: with `max_concurrent_requests = 4`, a burst of 200 concurrent reads
/// whose responses are ~1 MB each is mostly answered RESOURCE_EXHAUSTED at once (a request
/// keeps its slot until its response has been sent, so slow readers count), every answer is OK
/// or shed, the sheds are counted, and the server's peak memory grows by a few responses, not
/// by the burst.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_large_reads_is_shed_and_memory_stays_bounded() {
    let (_dir, server) = start(
        "shed-burst",
        "max_concurrent_requests = 4\nmax_entities_per_request = 1000",
    )
    .await;
    let mut c = server.native(None).await;
    let users: Vec<i64> = (1..=1000).collect();
    let country = "x".repeat(1000);
    let countries: Vec<&str> = users.iter().map(|_| country.as_str()).collect();
    c.write_features(write(
        "user_stats",
        vec![int_keys("user_id", &users)],
        &vec![now_micros() - SEC; users.len()],
        vec![feature("country", strings(&countries))],
    ))
    .await
    .unwrap();
    let pid = server.pid();
    let peak_before = proc_kib(pid, "VmHWM");

    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(server.settled_native().await);
    }
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let mut c = clients[i % clients.len()].clone();
            let keys = vec![int_keys("user_id", &users)];
            tokio::spawn(async move {
                match c
                    .get_online_features(get(&["user_stats:country"], keys))
                    .await
                {
                    Ok(r) => {
                        assert_eq!(r.into_inner().row_count, 1000);
                        (Code::Ok, String::new())
                    }
                    Err(s) => (s.code(), s.message().to_owned()),
                }
            })
        })
        .collect();
    let mut codes = Vec::new();
    for t in tasks {
        let r = tokio::time::timeout(Duration::from_secs(60), t).await;
        codes.push(r.unwrap().unwrap());
    }
    let shed = codes
        .iter()
        .filter(|(c, m)| *c == Code::ResourceExhausted && m.contains("max_concurrent_requests = 4"))
        .count();
    let answered = codes.iter().filter(|(c, _)| *c == Code::Ok).count();
    assert_eq!(shed + answered, codes.len(), "{codes:?}");
    assert!(shed > 0 && answered > 0, "shed {shed}, answered {answered}");
    assert_eq!(
        server.metric("quiver_shed_requests_total").await,
        shed as f64
    );
    let grown_mib = proc_kib(pid, "VmHWM").saturating_sub(peak_before) / 1024;
    eprintln!("shed {shed}, answered {answered}, peak memory grew by {grown_mib} MiB");
    // 4 in flight × (values + protobuf copy + encoded bytes) ≈ 12 MiB; all 200 ≈ 600 MiB.
    assert!(grown_mib < 128, "peak memory grew by {grown_mib} MiB");
}

async fn age_of(
    c: &mut quiver_tests::server::Native,
    user: i64,
) -> Result<(i32, i32), tonic::Status> {
    let r = c
        .get_online_features(get(
            &["user_profile:age"],
            vec![int_keys("user_id", &[user])],
        ))
        .await?
        .into_inner();
    Ok((
        r.columns[0].statuses[0],
        as_i32(&r.columns[0]).first().copied().unwrap_or(0),
    ))
}

/// Leaving a view or feature service out of a registry never removes it silently: ApplyRegistry
/// refuses naming what would go, a dry run lists it, `--allow-removals` removes it (the view's
/// data is dropped, and a view re-added later starts empty, across a checkpoint and a
/// restart), and a `--registry` file given on start that lacks them keeps them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_view_is_explicit() {
    let dir = TempDir::new("removals");
    let full = dir.path().join("full.toml");
    let small = dir.path().join("small.toml");
    std::fs::write(&full, format!("{REGISTRY}{PROFILE}")).unwrap();
    std::fs::write(&small, REGISTRY).unwrap();
    let spec = ServerSpec::new(dir.path().join("data"), Some(&full));
    let server = Server::start(&spec).await;
    let mut c = server.native(None).await;
    c.write_features(write(
        "user_profile",
        vec![int_keys("user_id", &[1])],
        &[now_micros() - SEC],
        vec![feature("age", i32s(&[41]))],
    ))
    .await
    .unwrap();
    let apply = |dry_run, allow_removals| pb::ApplyRegistryRequest {
        toml: REGISTRY.to_owned(),
        dry_run,
        allow_removals,
    };

    // Refused by name, nothing changes.
    refused(
        c.apply_registry(apply(false, false)).await,
        Code::FailedPrecondition,
        &[
            "remove feature view user_profile",
            "remove feature service profile_v1",
            "allow_removals",
        ],
    );
    assert_eq!(age_of(&mut c, 1).await.unwrap(), (1, 41));
    // The dry run shows the removals (and applies nothing).
    let dry = c
        .apply_registry(apply(true, false))
        .await
        .unwrap()
        .into_inner();
    assert!(!dry.applied);
    assert!(
        dry.changes
            .iter()
            .any(|l| l.starts_with("remove feature view user_profile")),
        "{dry:?}"
    );
    let cli = |args: &[&str]| {
        let mut v: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        v.extend(["--server".to_owned(), server.url()]);
        v
    };
    let small_path = small.display().to_string();
    let (code, out, err) = quiver_cli(cli(&["apply", &small_path])).await;
    assert_ne!(code, Some(0), "{out}");
    assert!(err.contains("--allow-removals"), "{err}");
    assert_eq!(age_of(&mut c, 1).await.unwrap(), (1, 41));

    // A restart with the smaller file keeps the view and its data, with a warning.
    server.terminate().await;
    let restarted = ServerSpec::new(dir.path().join("data"), Some(&small));
    let server = Server::start(&restarted).await;
    let mut c = server.native(None).await;
    assert_eq!(age_of(&mut c, 1).await.unwrap(), (1, 41));
    assert!(
        server.log().contains("kept, not removed"),
        "{}",
        server.log()
    );

    // Removal asked for: shown in the diff, applied, the data dropped.
    let cli = |args: &[&str]| {
        let mut v: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        v.extend(["--server".to_owned(), server.url()]);
        v
    };
    let (code, out, err) = quiver_cli(cli(&["apply", &small_path, "--allow-removals"])).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("remove feature view user_profile") && out.contains("applied"),
        "{out}"
    );
    refused(age_of(&mut c, 1).await, Code::NotFound, &["user_profile"]);

    // Re-added: the view is back, empty, and stays empty across a checkpoint and a restart.
    let back = c
        .apply_registry(pb::ApplyRegistryRequest {
            toml: format!("{REGISTRY}{PROFILE}"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(back.applied);
    assert_eq!(age_of(&mut c, 1).await.unwrap().0, 3, "NOT_FOUND");
    c.checkpoint(pb::CheckpointRequest::default())
        .await
        .unwrap();
    server.terminate().await;
    let server = Server::start(&restarted).await;
    let mut c = server.native(None).await;
    assert_eq!(
        age_of(&mut c, 1).await.unwrap().0,
        3,
        "NOT_FOUND after a restart"
    );
}

/// Sends raw bytes as a gRPC message (for bodies no generated client would send).
#[derive(Debug, Default, Clone)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        use bytes::Buf;
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

async fn raw_call(server: &Server, path: &'static str, body: Vec<u8>) -> Result<(), tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(server.channel().await);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    grpc.unary(
        tonic::Request::new(body),
        http::uri::PathAndQuery::from_static(path),
        RawCodec,
    )
    .await
    .map(|_| ())
}

/// A column nested `depth` lists deep.
fn nested(depth: usize) -> pb::Column {
    let mut c = i64s(&[1]);
    for _ in 0..depth {
        c = lists(&[1], c);
    }
    pb::Column { data: Some(c) }
}

/// The small contract fixes: bad bytes and over-nested messages are INVALID_ARGUMENT (never
/// INTERNAL); messages quote a bounded prefix of the input (a 20 KB name does not overflow the
/// client's metadata limit); max_age nanos past a second, a reference without a colon, an
/// empty write or stream, an unknown Feast entity column and stray null-bitmap bits are
/// refused; every refusal is counted by code in the metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_invalid_argument_by_name() {
    let (_dir, server) = start("contract", "").await;
    let mut c = server.native(None).await;
    let mut f = server.feast(None).await;
    let before = server
        .metric("quiver_refused_requests_total{code=\"INVALID_ARGUMENT\"}")
        .await;
    let mut refusals = 0.0;
    let check = |r: Result<(), tonic::Status>, needles: &[&str]| {
        refused(r, Code::InvalidArgument, needles);
        1.0
    };

    // Garbage bodies to both APIs, and a message nested past the decoder's recursion limit.
    refusals += check(
        raw_call(
            &server,
            "/quiver.v1.FeatureStore/GetOnlineFeatures",
            vec![0xff; 32],
        )
        .await,
        &["not a valid protobuf message"],
    );
    refusals += check(
        raw_call(
            &server,
            "/feast.serving.ServingService/GetOnlineFeatures",
            vec![0x0a, 0xff, 0x01],
        )
        .await,
        &["not a valid protobuf message"],
    );
    let mut deep = write(
        "user_stats",
        vec![int_keys("user_id", &[1])],
        &[now_micros()],
        vec![],
    );
    deep.features.push(pb::FeatureWrite {
        name: "tags".into(),
        values: Some(nested(150)),
        null_bitmap: vec![],
    });
    refusals += check(
        c.write_features(deep).await.map(|_| ()),
        &["not a valid protobuf message"],
    );

    // A 20 KB reference: refused by name, the message cut to a bounded prefix.
    let long = format!("user_stats:{}", "x".repeat(20_000));
    let err = c
        .get_online_features(get(&[long.as_str()], vec![int_keys("user_id", &[1])]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{}", err.message());
    assert!(err.message().len() < 4096, "{} bytes", err.message().len());
    let no_colon = "x".repeat(20_000);
    let err = c
        .get_online_features(get(&[no_colon.as_str()], vec![int_keys("user_id", &[1])]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
    assert!(err.message().contains("view:feature") && err.message().len() < 1024);
    refusals += 1.0;

    refusals += check(
        c.get_online_features(get(&["clicks"], vec![int_keys("user_id", &[1])]))
            .await
            .map(|_| ()),
        &["\"clicks\"", "view:feature"],
    );
    let mut bad_age = get(&["user_stats:clicks"], vec![int_keys("user_id", &[1])]);
    bad_age.max_age = Some(prost_types::Duration {
        seconds: 1,
        nanos: 1_000_000_000,
    });
    refusals += check(
        c.get_online_features(bad_age).await.map(|_| ()),
        &["max_age.nanos"],
    );
    refusals += check(
        c.write_features(pb::WriteFeaturesRequest::default())
            .await
            .map(|_| ()),
        &["view: empty"],
    );
    refusals += check(
        c.stream_write_features(tokio_stream::iter(Vec::<pb::WriteFeaturesRequest>::new()))
            .await
            .map(|_| ()),
        &["without a batch"],
    );
    // Three rows, null bitmap 0b1000_0001: row 0 null, bit 7 set past the last row.
    refusals += check(
        c.write_features(write(
            "user_stats",
            vec![int_keys("user_id", &[1, 2, 3])],
            &[now_micros(); 3],
            vec![pb::FeatureWrite {
                null_bitmap: vec![0b1000_0001],
                ..feature("clicks", i64s(&[0, 2, 3]))
            }],
        ))
        .await
        .map(|_| ()),
        &["null_bitmap", "past row 2"],
    );
    let mut misspelt = feast_get(&["user_stats:clicks"], &[1]);
    let ids = misspelt.entities.remove("user_id").unwrap();
    misspelt.entities.insert("user_id".into(), ids.clone());
    misspelt.entities.insert("userid".into(), ids);
    refusals += check(
        f.get_online_features(misspelt).await.map(|_| ()),
        &["\"userid\"", "user_id"],
    );

    let after = server
        .metric("quiver_refused_requests_total{code=\"INVALID_ARGUMENT\"}")
        .await;
    assert_eq!(after - before, refusals);
    // Nothing was written by any of them.
    let r = c
        .get_online_features(get(
            &["user_stats:clicks"],
            vec![int_keys("user_id", &[1, 2, 3])],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.columns[0].statuses, [3, 3, 3]);
}

/// An empty or all-space `QUIVER_AUTH_TOKEN` is refused like `--auth-token ""`: the server
/// does not start open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_token_from_the_environment_is_refused() {
    let dir = TempDir::new("empty-token");
    let registry = dir.path().join("registry.toml");
    std::fs::write(&registry, REGISTRY).unwrap();
    for token in ["", "                    "] {
        let mut cmd = quiver_tests::quiver_command();
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--metrics-listen", ""])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--registry")
            .arg(&registry)
            .env("QUIVER_AUTH_TOKEN", token);
        let mut server = Proc::spawn("quiver serve", cmd, &dir.join("serve.log")).unwrap();
        let status = tokio::task::block_in_place(|| server.wait_timeout(Duration::from_secs(20)))
            .unwrap_or_else(|e| panic!("token {token:?}: the server started: {e}"));
        assert!(!status.success());
        let err = server.own_log();
        assert!(err.contains("auth_token"), "{err}");
    }
}

/// A small tmpfs mounted for one test, unmounted on drop.
struct SmallDisk {
    path: std::path::PathBuf,
    _dir: TempDir,
}

impl SmallDisk {
    /// Mounts a tmpfs of `mib` MiB; None (with a note) where this process may not mount.
    fn mount(tag: &str, mib: u32) -> Option<Self> {
        let dir = TempDir::new(tag);
        let path = dir.path().join("disk");
        std::fs::create_dir_all(&path).unwrap();
        let euid = std::process::Command::new("id").arg("-u").output().unwrap();
        if String::from_utf8_lossy(&euid.stdout).trim() != "0" {
            eprintln!("skipped: mounting a small tmpfs needs root");
            return None;
        }
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "mount a {mib} MiB tmpfs at {}",
            path.display()
        );
        Some(Self { path, _dir: dir })
    }

    /// Fills the disk with one file until a write fails; returns the file.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let filler = self.path.join("filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0xa5u8; 64 << 10];
        while f.write_all(&block).and_then(|()| f.sync_data()).is_ok() {}
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

/// A checkpoint on a full disk is RESOURCE_EXHAUSTED with the reason, reads keep working, the
/// automatic checkpoint backs off instead of failing every tick, and once space is free the
/// checkpoint succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_on_a_full_disk_backs_off_and_recovers() {
    let Some(disk) = SmallDisk::mount("full-disk", 32) else {
        return;
    };
    let registry = disk.path.join("registry.toml");
    std::fs::write(&registry, REGISTRY).unwrap();
    let spec = ServerSpec::new(disk.path.join("data"), Some(&registry))
        .config("checkpoint_interval_secs = 1\ncheckpoint_wal_bytes = 0");
    let server = Server::start(&spec).await;
    let mut c = server.native(None).await;
    let users: Vec<i64> = (1..=2000).collect();
    c.write_features(clicks(
        &users,
        &vec![now_micros() - SEC; users.len()],
        &users,
    ))
    .await
    .unwrap();
    let filler = disk.fill();
    refused(
        c.checkpoint(pb::CheckpointRequest::default()).await,
        Code::ResourceExhausted,
        &["space"],
    );
    let failures = |log: &str| log.matches("automatic checkpoint failed").count();
    let first = failures(&server.log());
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let later = failures(&server.log());
    // Every tick (200 ms) would be 25 attempts; backing off from 1 s doubling is at most 4.
    assert!(later - first <= 4, "{} failures in 5 s", later - first);
    assert_eq!(clicks_of(&mut c, &[7]).await, [7]);

    std::fs::remove_file(filler).unwrap();
    let cp = c
        .checkpoint(pb::CheckpointRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(cp.checkpoint_sequence >= 1);
    server.terminate().await;
    let server = Server::start(&spec).await;
    let mut c = server.native(None).await;
    assert_eq!(clicks_of(&mut c, &[2000]).await, [2000]);
}

/// `quiver write` from JSON lines loses nothing silently: an unknown (misspelt) field or an
/// unparsable event time is an error naming the line and the field, and nothing of the file
/// is written; a feature a line leaves out is left untouched (not erased); `null` writes null.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiver_write_refuses_what_it_cannot_write() {
    let (dir, server) = start("cli-write", "").await;
    let mut c = server.native(None).await;
    let t = now_micros() / SEC - 100;
    let write_file = |name: &str, lines: &[String]| {
        let path = dir.path().join(name);
        std::fs::write(&path, lines.join("\n")).unwrap();
        path.display().to_string()
    };
    let run = |path: String| {
        let url = server.url();
        async move {
            let args = ["write", "--view", "user_stats", &path, "--server", &url];
            quiver_cli(args.iter().map(|s| (*s).to_owned()).collect()).await
        }
    };
    let read = |c: &mut quiver_tests::server::Native| {
        let mut c = c.clone();
        async move {
            c.get_online_features(get(
                &["user_stats:clicks", "user_stats:country"],
                vec![int_keys("user_id", &[1])],
            ))
            .await
            .unwrap()
            .into_inner()
        }
    };

    let first = write_file(
        "first.jsonl",
        &[format!(
            r#"{{"user_id": 1, "event_timestamp": {t}, "clicks": 5, "country": "NL"}}"#
        )],
    );
    let (code, out, err) = run(first).await;
    assert_eq!(code, Some(0), "{out}{err}");

    // A misspelt field: refused by line and name, and the good line before it is not sent.
    let misspelt = write_file(
        "misspelt.jsonl",
        &[
            format!(
                r#"{{"user_id": 1, "event_timestamp": {}, "clicks": 50}}"#,
                t + 1
            ),
            format!(
                r#"{{"user_id": 1, "event_timestamp": {}, "countryy": "DE"}}"#,
                t + 2
            ),
        ],
    );
    let (code, out, err) = run(misspelt).await;
    assert_ne!(code, Some(0), "{out}");
    assert!(
        err.contains("line 2") && err.contains("\"countryy\""),
        "{err}"
    );
    let r = read(&mut c).await;
    assert_eq!(as_i64(&r.columns[0]), [5]);

    // An event time that is not whole seconds.
    let dated = write_file(
        "dated.jsonl",
        &[r#"{"user_id": 1, "event_timestamp": "2026-01-01", "clicks": 7}"#.to_owned()],
    );
    let (code, _, err) = run(dated).await;
    assert_ne!(code, Some(0));
    assert!(
        err.contains("line 1") && err.contains("event_timestamp"),
        "{err}"
    );

    // The second line lacks "country": it keeps "NL"; clicks takes the newer value.
    let partial = write_file(
        "partial.jsonl",
        &[
            format!(
                r#"{{"user_id": 1, "event_timestamp": {}, "clicks": 6, "country": "NL"}}"#,
                t + 3
            ),
            format!(
                r#"{{"user_id": 1, "event_timestamp": {}, "clicks": 8}}"#,
                t + 4
            ),
        ],
    );
    let (code, out, err) = run(partial).await;
    assert_eq!(code, Some(0), "{out}{err}");
    let r = read(&mut c).await;
    assert_eq!(as_i64(&r.columns[0]), [8]);
    assert_eq!(r.columns[1].statuses, [1], "country untouched");
    assert_eq!(as_str(&r.columns[1]), ["NL"]);

    // An explicit null erases.
    let nulled = write_file(
        "null.jsonl",
        &[format!(
            r#"{{"user_id": 1, "event_timestamp": {}, "country": null}}"#,
            t + 5
        )],
    );
    let (code, out, err) = run(nulled).await;
    assert_eq!(code, Some(0), "{out}{err}");
    let r = read(&mut c).await;
    assert_eq!(r.columns[1].statuses, [2], "NULL_VALUE");
}
