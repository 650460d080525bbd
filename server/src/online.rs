//! The native GetOnlineFeatures route, served outside the generated service so its answer can
//! be encoded straight from the engine's result (see `convert::wire`) instead of through a
//! protobuf message, and so the result buffers are reused (the pool is `convert::wire`'s).
//! Every other native call goes to the generated `FeatureStoreServer` unchanged.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::codec::{Codec, EncodeBuf, Encoder};
use tonic::server::{NamedService, UnaryService};
use tonic::Status;

use crate::codec::StrictCodec;
use crate::convert::OnlineAnswer;
use crate::metrics::Rpc;
use crate::proto::quiver::v1 as pb;
use crate::service::FeatureStoreService;
use pb::feature_store_server::FeatureStoreServer;

/// The path of the call this module serves.
const PATH: &str = "/quiver.v1.FeatureStore/GetOnlineFeatures";

/// Requests decoded by prost (strictly, see `codec`), answers encoded by `convert::wire`.
#[derive(Debug, Default)]
struct OnlineCodec {
    requests: StrictCodec<pb::GetOnlineFeaturesResponse, pb::GetOnlineFeaturesRequest>,
}

impl Codec for OnlineCodec {
    type Encode = OnlineAnswer;
    type Decode = pb::GetOnlineFeaturesRequest;
    type Encoder = AnswerEncoder;
    type Decoder = <StrictCodec<pb::GetOnlineFeaturesResponse, pb::GetOnlineFeaturesRequest> as Codec>::Decoder;

    fn encoder(&mut self) -> AnswerEncoder {
        AnswerEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        self.requests.decoder()
    }
}

#[derive(Debug)]
struct AnswerEncoder;

impl Encoder for AnswerEncoder {
    type Item = OnlineAnswer;
    type Error = Status;

    fn encode(&mut self, item: OnlineAnswer, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        let wire = item.wire();
        dst.reserve(wire.encoded_len());
        wire.encode(dst);
        Ok(())
    }
}

/// The read itself, as tonic's unary service.
struct OnlineRead(FeatureStoreService);

impl UnaryService<pb::GetOnlineFeaturesRequest> for OnlineRead {
    type Response = OnlineAnswer;
    type Future = std::future::Ready<Result<tonic::Response<OnlineAnswer>, Status>>;

    fn call(&mut self, request: tonic::Request<pb::GetOnlineFeaturesRequest>) -> Self::Future {
        let call = self.0.state.begin(Rpc::GetOnlineFeatures);
        let r = self.0.get_online(request.into_inner());
        std::future::ready(call.finish(r).map(tonic::Response::new))
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, Infallible>> + Send>>;

/// The native service: GetOnlineFeatures here, everything else generated.
#[derive(Debug, Clone)]
pub(crate) struct NativeService {
    generated: FeatureStoreServer<FeatureStoreService>,
    service: FeatureStoreService,
    max_request_bytes: usize,
}

impl NativeService {
    /// `max_request_bytes` bounds a decoded request, as on the generated calls.
    pub(crate) fn new(service: FeatureStoreService, max_request_bytes: usize) -> Self {
        let generated = FeatureStoreServer::new(service.clone())
            .max_decoding_message_size(max_request_bytes)
            .max_encoding_message_size(usize::MAX);
        Self {
            generated,
            service,
            max_request_bytes,
        }
    }
}

impl NamedService for NativeService {
    const NAME: &'static str = <FeatureStoreServer<FeatureStoreService> as NamedService>::NAME;
}

impl<B> tower_service::Service<http::Request<B>> for NativeService
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != PATH {
            return self.generated.call(req);
        }
        let read = OnlineRead(self.service.clone());
        let limit = self.max_request_bytes;
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(OnlineCodec::default())
                .apply_max_message_size_config(Some(limit), Some(usize::MAX));
            Ok(grpc.unary(read, req).await)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::Arc;

    use quiver_engine::{
        encode_key, Clock, Db, DbConfig, KeyPart, Registry, Row, SystemClock, Value,
    };

    use super::*;
    use crate::metrics::Metrics;
    use crate::state::AppState;
    use crate::testing::{config, TempDir, REGISTRY};

    /// Allocations this thread makes while running `f` (the counting allocator is the
    /// test binary's global allocator).
    fn allocations(f: impl FnOnce()) -> u64 {
        allocation_counter::measure(f).count_total
    }

    fn request(users: std::ops::Range<i64>) -> pb::GetOnlineFeaturesRequest {
        pb::GetOnlineFeaturesRequest {
            features: Some(pb::get_online_features_request::Features::Refs(
                pb::FeatureRefs {
                    refs: vec![
                        "user_stats:txn_count_7d".into(),
                        "user_stats:country".into(),
                    ],
                },
            )),
            keys: vec![pb::KeyColumn {
                name: "user_id".into(),
                values: Some(pb::key_column::Values::Int64Values(pb::Int64Values {
                    values: users.collect(),
                })),
            }],
            ..Default::default()
        }
    }

    /// The read path from a decoded request to the encoded answer (keys, lookup in a
    /// snapshot and in memory, decode, encode) makes the same number of allocations for 10
    /// keys as for 1,000: none of them is per key.
    #[test]
    fn a_batched_get_allocates_nothing_per_key() {
        let dir = TempDir::new();
        let mut db_config = DbConfig::new(dir.path().join("data"));
        db_config.registry = Some(Registry::from_toml(REGISTRY).unwrap());
        let (db, _) = Db::open(db_config, Arc::new(SystemClock)).unwrap();
        let registry = db.registry();
        let entity = &registry.entities()[0];
        let rows = |users: std::ops::Range<i64>| -> Vec<Row> {
            users
                .map(|u| {
                    let mut key = Vec::new();
                    encode_key(entity, &[KeyPart::Int64(u)], &mut key).unwrap();
                    Row {
                        key,
                        event_ts: SystemClock.now_micros(),
                        created_ts: None,
                        values: vec![(0, Value::Int64(u)), (1, Value::String(format!("c{u}")))],
                    }
                })
                .collect()
        };
        // Half the users in a snapshot, the other half (and updates) in memory.
        db.write("user_stats", &rows(0..2000)).unwrap();
        db.checkpoint().unwrap();
        db.write("user_stats", &rows(1500..4000)).unwrap();
        let state = Arc::new(AppState::new(config(&dir), Arc::new(Metrics::default())));
        state.db.set(Arc::new(db)).unwrap();
        let service = FeatureStoreService { state };

        let mut buf = Vec::new();
        let mut read = |users: std::ops::Range<i64>| {
            let req = request(users.clone());
            allocations(|| {
                let answer = service.get_online(req).unwrap();
                let wire = answer.wire();
                buf.clear();
                buf.reserve(wire.encoded_len());
                wire.encode(&mut buf);
                drop(answer);
            })
        };
        // Warm up: the pooled result and the buffer grow to the largest batch once.
        read(1000..2000);
        read(1000..2000);
        let few = read(1990..2000);
        let many = read(1000..2000);
        assert!(few > 0, "the counter counts");
        assert_eq!(few, many, "10 keys: {few} allocations, 1,000 keys: {many}");
        let answer = service.get_online(request(1999..2001)).unwrap();
        let pb::GetOnlineFeaturesResponse { row_count, .. } = prost::Message::decode(
            &{
                let mut b = Vec::new();
                answer.wire().encode(&mut b);
                b
            }[..],
        )
        .unwrap();
        assert_eq!(row_count, 2);
    }
}
