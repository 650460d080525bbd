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
use crate::convert::{OnlineAnswer, OnlineRequest};
use crate::metrics::Rpc;
use crate::proto::quiver::v1 as pb;
use crate::service::FeatureStoreService;
use pb::feature_store_server::FeatureStoreServer;

/// The path of the call this module serves.
const PATH: &str = "/quiver.v1.FeatureStore/GetOnlineFeatures";

/// Requests decoded by prost into `convert::OnlineRequest` (strictly, see `codec`), answers
/// encoded by `convert::wire`.
#[derive(Debug, Default)]
struct OnlineCodec {
    requests: StrictCodec<pb::GetOnlineFeaturesResponse, OnlineRequest>,
}

impl Codec for OnlineCodec {
    type Encode = OnlineAnswer;
    type Decode = OnlineRequest;
    type Encoder = AnswerEncoder;
    type Decoder = <StrictCodec<pb::GetOnlineFeaturesResponse, OnlineRequest> as Codec>::Decoder;

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

impl UnaryService<OnlineRequest> for OnlineRead {
    type Response = OnlineAnswer;
    type Future = std::future::Ready<Result<tonic::Response<OnlineAnswer>, Status>>;

    fn call(&mut self, request: tonic::Request<OnlineRequest>) -> Self::Future {
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

    /// The encoded read of two features for `users`, with int64 keys or (`strings`) the same
    /// users as string keys.
    fn request(users: std::ops::Range<i64>, strings: bool) -> bytes::Bytes {
        let values = if strings {
            pb::key_column::Values::StringValues(pb::StringValues {
                values: users.map(|u| format!("user-{u}")).collect(),
            })
        } else {
            pb::key_column::Values::Int64Values(pb::Int64Values {
                values: users.collect(),
            })
        };
        let req = pb::GetOnlineFeaturesRequest {
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
                values: Some(values),
            }],
            ..Default::default()
        };
        prost::Message::encode_to_vec(&req).into()
    }

    /// The read path from the received request bytes to the encoded answer (decode, keys,
    /// lookup in a snapshot and in memory, read, encode) makes the same number of allocations
    /// for 10 keys as for 1,000: none of them is per key, for int64 keys and for string keys.
    #[test]
    fn a_batched_get_allocates_nothing_per_key() {
        for strings in [false, true] {
            let registry = if strings {
                REGISTRY.replace(r#"type = "int64" }]"#, r#"type = "string" }]"#)
            } else {
                REGISTRY.to_owned()
            };
            assert_ne!(strings, registry == REGISTRY, "the key type changed");
            let dir = TempDir::new();
            let mut db_config = DbConfig::new(dir.path().join("data"));
            db_config.registry = Some(Registry::from_toml(&registry).unwrap());
            let (db, _) = Db::open(db_config, Arc::new(SystemClock)).unwrap();
            let registry = db.registry();
            let entity = &registry.entities()[0];
            let rows = |users: std::ops::Range<i64>| -> Vec<Row> {
                users
                    .map(|u| {
                        let mut key = Vec::new();
                        let name = format!("user-{u}");
                        let part = if strings {
                            KeyPart::String(&name)
                        } else {
                            KeyPart::Int64(u)
                        };
                        encode_key(entity, &[part], &mut key).unwrap();
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
                let bytes = request(users, strings);
                allocations(|| {
                    let req = <OnlineRequest as prost::Message>::decode(bytes).unwrap();
                    let answer = service.get_online(req).unwrap();
                    let wire = answer.wire();
                    buf.clear();
                    buf.reserve(wire.encoded_len());
                    wire.encode(&mut buf);
                    drop(wire);
                    drop(answer);
                })
            };
            // Warm up: the pooled result and the buffer grow to the largest batch once.
            read(1000..2000);
            read(1000..2000);
            let few = read(1990..2000);
            let many = read(1000..2000);
            assert!(few > 0, "the counter counts");
            assert_eq!(
                few, many,
                "string keys {strings}: 10 keys: {few} allocations, 1,000 keys: {many}"
            );
            let req = <OnlineRequest as prost::Message>::decode(request(1999..2001, strings));
            let answer = service.get_online(req.unwrap()).unwrap();
            let mut b = Vec::new();
            answer.wire().encode(&mut b);
            let back: pb::GetOnlineFeaturesResponse = prost::Message::decode(&b[..]).unwrap();
            assert_eq!(back.row_count, 2);
            assert_eq!(
                back.columns[0].values.as_ref().unwrap().data,
                Some(pb::column::Data::Int64Values(pb::Int64Values {
                    values: vec![1999, 2000]
                })),
                "string keys {strings}"
            );
        }
    }
}
