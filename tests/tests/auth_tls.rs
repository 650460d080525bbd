//! Who may call: bearer tokens guard the data RPCs of both APIs while health and reflection stay
//! open, and a TLS server answers TLS clients that trust its CA only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use quiver_server::proto::feast::serving as fs;
use quiver_server::proto::quiver::v1 as pb;
use quiver_tests::fixtures::*;
use quiver_tests::quiver_cli;
use quiver_tests::req::*;
use quiver_tests::server::{Server, ServerSpec};
use tonic::Code;

/// The service names server reflection lists, over both protocol versions (grpcurl before
/// 1.8.8 speaks only v1alpha); they must agree.
async fn reflected_services(server: &Server) -> Vec<String> {
    macro_rules! list {
        ($v:ident) => {{
            use tonic_reflection::pb::$v::server_reflection_client::ServerReflectionClient;
            use tonic_reflection::pb::$v::server_reflection_request::MessageRequest;
            use tonic_reflection::pb::$v::server_reflection_response::MessageResponse;
            use tonic_reflection::pb::$v::ServerReflectionRequest;
            let mut client = ServerReflectionClient::new(server.channel().await);
            let req = ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            };
            let mut responses = ok(
                client
                    .server_reflection_info(client_stream(vec![req]))
                    .await,
                "reflection",
            );
            let msg = responses
                .message()
                .await
                .expect("reflection answers")
                .expect("one response");
            match msg.message_response {
                Some(MessageResponse::ListServicesResponse(l)) => {
                    // Each version lists itself; compare the rest.
                    let mut names: Vec<String> = l
                        .service
                        .into_iter()
                        .map(|s| s.name)
                        .filter(|n| !n.starts_with("grpc.reflection."))
                        .collect();
                    names.sort();
                    names
                }
                other => panic!("unexpected reflection answer {other:?}"),
            }
        }};
    }
    let v1 = list!(v1);
    let v1alpha = list!(v1alpha);
    assert_eq!(v1, v1alpha);
    v1
}

/// With a bearer token configured, data RPCs of both APIs need it (missing or wrong:
/// UNAUTHENTICATED) while health and reflection stay open. The flag overrides the config file;
/// a token too short to be a secret is refused at startup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_token_guards_data_rpcs_only() {
    const FILE_TOKEN: &str = "token-from-config-file-0123";
    const FLAG_TOKEN: &str = "token-from-the-flag-456789";
    let (dir, spec) = new_server("e2e-auth", REGISTRY);
    let spec = spec.config(&format!("auth_token = {FILE_TOKEN:?}"));

    for (spec, good, stale) in [
        (spec.clone(), FILE_TOKEN, None),
        (
            ServerSpec {
                registry: None,
                ..spec.clone()
            }
            .args(&["--auth-token", FLAG_TOKEN]),
            FLAG_TOKEN,
            Some(FILE_TOKEN),
        ),
    ] {
        let server = Server::start(&spec).await;
        let mut wrong_tokens = vec![None, Some("not-the-token-at-all-00000"), Some("")];
        wrong_tokens.extend(stale.map(Some));
        for token in wrong_tokens {
            let mut c = server.native(token).await;
            let mut f = server.feast(token).await;
            let results = [
                code_of(&c.get_stats(pb::GetStatsRequest::default()).await),
                code_of(
                    &c.get_online_features(get(
                        &["user_stats:clicks"],
                        vec![int_keys("user_id", &[1])],
                    ))
                    .await,
                ),
                code_of(&c.write_features(one_click()).await),
                code_of(
                    &c.stream_write_features(client_stream(vec![one_click()]))
                        .await,
                ),
                code_of(&c.get_registry(pb::GetRegistryRequest {}).await),
                code_of(&c.checkpoint(pb::CheckpointRequest {}).await),
                code_of(
                    &f.get_feast_serving_info(fs::GetFeastServingInfoRequest {})
                        .await,
                ),
            ];
            assert!(
                results.iter().all(|c| *c == Code::Unauthenticated),
                "token {token:?}: {results:?}"
            );
            let err = c
                .get_stats(pb::GetStatsRequest::default())
                .await
                .unwrap_err();
            assert!(err.message().contains("authorization"), "{err:?}");
        }
        let mut c = server.native(Some(good)).await;
        if stale.is_none() {
            // Nothing was written by the refused calls (the second server sees this one's).
            let r = read(
                &mut c,
                get(&["user_stats:clicks"], vec![int_keys("user_id", &[1])]),
            )
            .await;
            assert_eq!(r.columns[0].statuses, [NOT_FOUND]);
        }
        write_ok(&mut c, one_click()).await;
        let mut f = server.feast(Some(good)).await;
        ok(
            f.get_feast_serving_info(fs::GetFeastServingInfoRequest {})
                .await,
            "GetFeastServingInfo",
        );
        // Health and reflection need no token.
        assert_eq!(
            server.health("").await.unwrap(),
            Some(tonic_health::pb::health_check_response::ServingStatus::Serving)
        );
        assert_eq!(
            server.health("quiver.v1.FeatureStore").await.unwrap(),
            Some(tonic_health::pb::health_check_response::ServingStatus::Serving)
        );
        let services = reflected_services(&server).await;
        for s in [
            "quiver.v1.FeatureStore",
            "feast.serving.ServingService",
            "grpc.health.v1.Health",
        ] {
            assert!(services.iter().any(|n| n == s), "{s} not in {services:?}");
        }
        assert_eq!(server.terminate().await.code(), Some(0));
    }

    // A short token is refused before anything listens.
    let out = quiver_tests::quiver_command()
        .args(["serve", "--listen", "127.0.0.1:0", "--metrics-listen", ""])
        .arg("--data-dir")
        .arg(dir.path().join("other"))
        .args(["--auth-token", "short"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("auth_token"), "{stderr}");
}

/// TLS from the config file (`tls_cert`, `tls_key`): readiness, the native client and the CLI
/// (`--ca-cert`) connect over TLS trusting the test CA (`tests/fixtures/tls`); a plaintext
/// client and a client that does not trust the CA get nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_tls_clients_only() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tls");
    let (_dir, spec) = new_server("e2e-tls", REGISTRY);
    let ca = fixtures.join("ca.pem");
    let spec = spec.tls(
        &fixtures.join("server.pem"),
        &fixtures.join("server.key"),
        &ca,
    );
    // `start` waits for health SERVING, asked over TLS.
    let server = Server::start(&spec).await;
    assert!(server.url().starts_with("https://"));
    let mut c = server.native(None).await;
    let stats = ok(
        c.get_stats(pb::GetStatsRequest::default()).await,
        "GetStats over TLS",
    );
    assert!(stats.views.iter().any(|v| v.view == "user_stats"));

    // Plaintext HTTP/2 to the TLS port: no answer.
    let plain = tonic::transport::Endpoint::from_shared(format!("http://{}", server.grpc))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .connect()
        .await;
    let answered = match plain {
        Err(_) => false,
        Ok(channel) => pb::feature_store_client::FeatureStoreClient::new(channel)
            .get_stats(pb::GetStatsRequest::default())
            .await
            .is_ok(),
    };
    assert!(!answered, "a plaintext client was answered by a TLS server");

    // The CLI: trusting the CA works; without it, it fails with exit code 2 and a message.
    let url = server.url();
    let ca = ca.display().to_string();
    let (code, out, err) = quiver_cli(vec![
        "stats".into(),
        "--server".into(),
        url.clone(),
        "--ca-cert".into(),
        ca,
    ])
    .await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("user_stats"), "{out}");
    let (code, _, err) = quiver_cli(vec!["stats".into(), "--server".into(), url]).await;
    assert_eq!(code, Some(2), "{err}");
    assert!(!err.is_empty());
    server.terminate().await;
}
