//! The native GetOnlineFeatures route, served outside the generated service so its answer can
//! be encoded straight from the engine's result (see `convert::wire`) instead of through a
//! protobuf message, and so the result buffers are reused: each worker thread keeps a few
//! [`GetResult`]s, which an answer takes for its request and gives back once it is encoded.
//! Every other native call goes to the generated `FeatureStoreServer` unchanged.

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use quiver_engine::GetResult;
use tonic::codec::{Codec, EncodeBuf, Encoder};
use tonic::server::{NamedService, UnaryService};
use tonic::Status;

use crate::codec::StrictCodec;
use crate::convert::OnlineWire;
use crate::metrics::Rpc;
use crate::proto::quiver::v1 as pb;
use crate::service::FeatureStoreService;
use pb::feature_store_server::FeatureStoreServer;

/// The path of the call this module serves.
const PATH: &str = "/quiver.v1.FeatureStore/GetOnlineFeatures";

/// Results kept per worker thread for reuse.
const POOLED: usize = 16;

thread_local! {
    static RESULTS: RefCell<Vec<GetResult>> = const { RefCell::new(Vec::new()) };
}

/// A result buffer from this thread's pool (or a new one).
pub(crate) fn pooled_result() -> GetResult {
    RESULTS.with(|p| p.borrow_mut().pop()).unwrap_or_default()
}

/// One answer: output names and the engine's columns, encoded when tonic sends it.
#[derive(Debug)]
pub(crate) struct OnlineAnswer {
    pub(crate) names: Vec<String>,
    /// Always `Some` until dropped (taken back into the pool then).
    pub(crate) result: Option<GetResult>,
    pub(crate) rows: u32,
}

impl OnlineAnswer {
    fn wire(&self) -> OnlineWire<'_> {
        OnlineWire {
            names: &self.names,
            columns: self.result.as_ref().map_or(&[], |r| &r.columns),
            rows: self.rows,
        }
    }
}

impl Drop for OnlineAnswer {
    fn drop(&mut self) {
        if let Some(r) = self.result.take() {
            // A thread that is shutting down has no pool left: then the buffer just goes.
            let _ = RESULTS.try_with(|p| {
                let mut pool = p.borrow_mut();
                if pool.len() < POOLED {
                    pool.push(r);
                }
            });
        }
    }
}

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
