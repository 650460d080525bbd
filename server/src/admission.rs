//! Admission control on the transport: a request takes a concurrency slot before its body is
//! read or decoded, and gives it back only when its response body has been sent (or the
//! stream was reset). A request that finds no free slot is answered `RESOURCE_EXHAUSTED` at
//! once, without reading its body.
//!
//! It also sets each call's default deadline: `request_timeout_ms` for the short calls,
//! `bulk_timeout_ms` for the long ones in [`BULK_PATHS`] (a shorter client deadline, which the
//! transport enforces, still wins).
//!
//! Holding the slot until the response is sent is what bounds memory: a handler that computes
//! a response in one poll finishes in microseconds, but the response then waits in HTTP/2
//! buffers for a slow client. Counting only the handler would let every offered request build
//! its response; counting until the body is gone keeps at most `max_concurrent_requests`
//! requests and responses in memory, whatever the offered load.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::{Code, Status};

use crate::metrics::Metrics;

/// Paths that are never shed: a health probe must see an overloaded server as up.
const EXEMPT_PREFIXES: [&str; 3] = [
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// Calls whose work grows with the data rather than with one request: they run under the
/// bulk deadline instead of `request_timeout_ms`.
const BULK_PATHS: [&str; 4] = [
    "/quiver.v1.FeatureStore/StreamWriteFeatures",
    "/quiver.v1.FeatureStore/LoadSnapshot",
    "/quiver.v1.FeatureStore/UploadSnapshot",
    "/quiver.v1.FeatureStore/Checkpoint",
];

/// The layer that wraps every gRPC service of the server.
#[derive(Debug, Clone)]
pub(crate) struct AdmissionLayer {
    slots: Arc<Semaphore>,
    limit: usize,
    deadlines: Deadlines,
    metrics: Arc<Metrics>,
}

/// The default deadlines of the two kinds of call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadlines {
    /// Reads, unary writes, registry and stats calls.
    pub(crate) request: Duration,
    /// The calls in [`BULK_PATHS`].
    pub(crate) bulk: Duration,
}

impl AdmissionLayer {
    pub(crate) fn new(limit: usize, deadlines: Deadlines, metrics: Arc<Metrics>) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(limit)),
            limit,
            deadlines,
            metrics,
        }
    }
}

impl<S> tower_layer::Layer<S> for AdmissionLayer {
    type Service = Admission<S>;

    fn layer(&self, inner: S) -> Admission<S> {
        Admission {
            inner,
            layer: self.clone(),
        }
    }
}

/// [`AdmissionLayer`] around one service.
#[derive(Debug, Clone)]
pub(crate) struct Admission<S> {
    inner: S,
    layer: AdmissionLayer,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> tower_service::Service<http::Request<B>> for Admission<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let path = req.uri().path();
        if EXEMPT_PREFIXES.iter().any(|p| path.starts_with(p)) {
            return Box::pin(self.inner.call(req));
        }
        let metrics = self.layer.metrics.clone();
        let Ok(permit) = self.layer.slots.clone().try_acquire_owned() else {
            metrics.shed();
            metrics.refused(Code::ResourceExhausted as usize);
            let status = Status::resource_exhausted(format!(
                "server is handling its limit of max_concurrent_requests = {} requests; retry \
                 with backoff",
                self.layer.limit
            ));
            return Box::pin(std::future::ready(Ok(status.into_http())));
        };
        let deadline = if BULK_PATHS.contains(&path) {
            self.layer.deadlines.bulk
        } else {
            self.layer.deadlines.request
        };
        let response = self.inner.call(req);
        Box::pin(async move {
            let Ok(response) = tokio::time::timeout(deadline, response).await else {
                // The words tonic uses for a client's deadline, so clients see one answer.
                metrics.refused(Code::Cancelled as usize);
                return Ok(Status::cancelled("Timeout expired").into_http());
            };
            let mut response = response?;
            refusal(response.headers_mut(), &metrics);
            Ok(response.map(|body| {
                tonic::body::Body::new(Held {
                    body,
                    pending: Bytes::new(),
                    _permit: permit,
                })
            }))
        })
    }
}

/// Most bytes of an error message sent (percent-encoded): gRPC clients refuse response headers
/// past their metadata limit (16 KiB by default), so a message quoting a huge input would turn
/// the refusal itself into a transport error.
const MAX_MESSAGE: usize = 2048;

/// Counts an error answered in the response headers (a call refused before any response
/// message: by authentication, decoding or the handler) and bounds its message.
fn refusal(headers: &mut http::HeaderMap, metrics: &Metrics) {
    let code = headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let Some(code) = code.filter(|&c| c != 0) else {
        return;
    };
    metrics.refused(code);
    let Some(message) = headers.get("grpc-message") else {
        return;
    };
    let bytes = message.as_bytes();
    if bytes.len() <= MAX_MESSAGE {
        return;
    }
    // Cut before a percent escape that would be split.
    let mut cut = MAX_MESSAGE;
    while cut > 0 && bytes[cut.saturating_sub(2)..cut].contains(&b'%') {
        cut -= 1;
    }
    let mut short = bytes[..cut].to_vec();
    short.extend_from_slice(b"%E2%80%A6 (message cut)");
    if let Ok(v) = http::HeaderValue::from_bytes(&short) {
        headers.insert("grpc-message", v);
    }
}

/// Most bytes handed to HTTP/2 at once. The transport asks for the next piece only when the
/// client's flow-control window has room, so a response is released (and its slot freed) as
/// the client reads it, not as soon as it was buffered whole.
const PIECE: usize = 64 << 10;

/// A response body that holds its request's slot until it is dropped, handing its data on in
/// pieces of at most [`PIECE`] bytes.
struct Held {
    body: tonic::body::Body,
    pending: Bytes,
    _permit: OwnedSemaphorePermit,
}

impl Held {
    fn piece(&mut self) -> http_body::Frame<Bytes> {
        let n = self.pending.len().min(PIECE);
        http_body::Frame::data(self.pending.split_to(n))
    }
}

impl http_body::Body for Held {
    type Data = Bytes;
    type Error = <tonic::body::Body as http_body::Body>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if !self.pending.is_empty() {
            return Poll::Ready(Some(Ok(self.piece())));
        }
        match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => {
                    self.pending = data;
                    Poll::Ready(Some(Ok(self.piece())))
                }
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_empty() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let inner = self.body.size_hint();
        let pending = self.pending.len() as u64;
        let mut hint = http_body::SizeHint::new();
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + pending);
        }
        hint.set_lower(inner.lower() + pending);
        hint
    }
}
