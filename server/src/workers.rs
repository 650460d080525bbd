//! Thread-per-core serving: one acceptor hands each new connection to one of N worker threads,
//! each running its own current-thread Tokio runtime. A connection's requests are read,
//! decoded, executed against the engine, encoded and written on the thread that owns it, so a
//! request never hops threads and no scheduler moves work between cores (no cross-thread
//! wake-ups, no work-stealing queues). docs/operations.md says when to pick it; the bench's
//! `grpc --threading` measures it against the work-stealing scheduler.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::StreamExt;
use tonic::transport::server::{Connected, Router, TcpConnectInfo};
use tower_layer::{Identity, Stack};
use tracing::warn;

use crate::admission::AdmissionLayer;
use crate::server::ServeError;

/// The server's routes behind its admission layer, as every worker serves them.
pub(crate) type Front = Router<Stack<AdmissionLayer, Identity>>;

/// Serves `front` on `listener` with `workers` threads until `stop` completes, then lets
/// every worker finish its in-flight requests. Fails if a worker cannot start or fails.
pub(crate) async fn serve(
    front: Front,
    listener: TcpListener,
    workers: usize,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), ServeError> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut pool = Vec::with_capacity(workers);
    for i in 0..workers {
        pool.push(Worker::start(i, front.clone(), stop_rx.clone())?);
    }
    drop(front);

    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    // Nagle + delayed ACK would hold a small response's last frame ~40 ms.
                    if let Err(e) = stream.set_nodelay(true) {
                        warn!("TCP_NODELAY on an accepted connection: {e}");
                    }
                    let Some(worker) = pool.iter().min_by_key(|w| w.open.load(Ordering::Relaxed))
                    else {
                        break;
                    };
                    worker.hand(stream);
                }
                // A connection that failed between SYN and accept (reset, out of descriptors):
                // the listener itself is fine, keep accepting.
                Err(e) => warn!("accepting a connection: {e}"),
            },
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let mut failure = None;
    for w in pool {
        drop(w.connections);
        match w.done.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failure = failure.or(Some(e)),
            Err(_) => failure = failure.or(Some(format!("worker {} panicked", w.index))),
        }
    }
    match failure {
        None => Ok(()),
        Some(e) => Err(ServeError::Transport(e)),
    }
}

/// One serving thread, as the acceptor sees it.
struct Worker {
    index: usize,
    /// Connections handed over, converted to the worker's runtime when it takes them.
    connections: mpsc::UnboundedSender<std::net::TcpStream>,
    /// Connections this worker has open: the acceptor gives the next one to the least busy.
    open: Arc<AtomicUsize>,
    /// The worker's result once it has drained.
    done: oneshot::Receiver<Result<(), String>>,
}

impl Worker {
    fn start(
        index: usize,
        front: Front,
        mut stop: watch::Receiver<bool>,
    ) -> Result<Self, ServeError> {
        let (connections, rx) = mpsc::unbounded_channel::<std::net::TcpStream>();
        let open = Arc::new(AtomicUsize::new(0));
        let (done_tx, done) = oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ServeError::Transport(format!("worker {index}: runtime: {e}")))?;
        let counter = open.clone();
        std::thread::Builder::new()
            .name(format!("quiver-worker-{index}"))
            .spawn(move || {
                let incoming = UnboundedReceiverStream::new(rx).map(move |s| {
                    // Registering with this thread's reactor is what moves the connection here.
                    match TcpStream::from_std(s) {
                        Ok(stream) => Ok(Counted::new(stream, counter.clone())),
                        Err(e) => {
                            counter.fetch_sub(1, Ordering::Relaxed);
                            Err(e)
                        }
                    }
                });
                let served =
                    runtime.block_on(front.serve_with_incoming_shutdown(incoming, async move {
                        let _ = stop.wait_for(|stopped| *stopped).await;
                    }));
                let _ = done_tx.send(served.map_err(|e| format!("worker {index}: {e}")));
            })
            .map_err(|e| ServeError::Transport(format!("worker {index}: thread: {e}")))?;
        Ok(Self {
            index,
            connections,
            open,
            done,
        })
    }

    /// Gives `stream` to this worker. The count goes up now, not when the worker gets to it,
    /// so a burst of connections spreads over the workers.
    fn hand(&self, stream: TcpStream) {
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => return warn!("handing a connection to worker {}: {e}", self.index),
        };
        self.open.fetch_add(1, Ordering::Relaxed);
        if self.connections.send(stream).is_err() {
            // The worker has stopped (it failed; `serve` reports why): the connection closes.
            self.open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// A connection that counts itself out of its worker's open connections when it closes.
struct Counted {
    stream: TcpStream,
    open: Arc<AtomicUsize>,
}

impl Counted {
    fn new(stream: TcpStream, open: Arc<AtomicUsize>) -> Self {
        Self { stream, open }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Connected for Counted {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use crate::client::Connect;
    use crate::proto::quiver::v1 as pb;
    use crate::testing::{one_row, TestServer};

    /// Connections spread over three workers (more connections than workers, written on one
    /// and read on another) all see the same engine, and the server stops cleanly.
    #[tokio::test]
    async fn every_worker_serves_the_same_store() {
        let server = TestServer::start(|c| {
            c.worker_threads = 3;
            c.threading = "per-core".into();
        })
        .await;
        let first = server.ready_client().await;
        let mut clients = vec![first];
        for _ in 0..6 {
            clients.push(Connect::new(server.url()).native().await.unwrap());
        }
        for (i, c) in clients.iter_mut().enumerate() {
            let user = i64::try_from(i).unwrap();
            c.write_features(one_row(user, 10 + user)).await.unwrap();
        }
        // Each connection reads what the next one wrote.
        for (i, c) in clients.iter_mut().enumerate() {
            let user = i64::try_from((i + 1) % 7).unwrap();
            let answer = c
                .get_online_features(pb::GetOnlineFeaturesRequest {
                    features: Some(pb::get_online_features_request::Features::Refs(
                        pb::FeatureRefs {
                            refs: vec!["user_stats:txn_count_7d".into()],
                        },
                    )),
                    keys: vec![pb::KeyColumn {
                        name: "user_id".into(),
                        values: Some(pb::key_column::Values::Int64Values(pb::Int64Values {
                            values: vec![user],
                        })),
                    }],
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            let column = answer.columns[0].values.as_ref().unwrap();
            assert_eq!(
                column.data,
                Some(pb::column::Data::Int64Values(pb::Int64Values {
                    values: vec![10 + user]
                })),
                "connection {i}"
            );
        }
        drop(clients);
        server.stop().await;
    }
}
