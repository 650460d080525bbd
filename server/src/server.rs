//! Starting and stopping the server: bind, recover in the background while health says
//! NOT_SERVING, serve, and on shutdown finish in-flight requests and flush the WAL.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quiver_engine::{Db, Maintenance, Registry, SystemClock};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tonic_health::ServingStatus;
use tracing::{error, info, warn};

use crate::admission::{AdmissionLayer, Deadlines};
use crate::auth::BearerAuth;
use crate::config::{ConfigError, ServerConfig, Threading};
use crate::feast::FeastService;
use crate::metrics::{serve_metrics, Metrics};
use crate::online::NativeService;
use crate::proto::feast::serving::serving_service_server::ServingServiceServer;
use crate::proto::quiver::v1::feature_store_server::FeatureStoreServer;
use crate::service::FeatureStoreService;
use crate::state::AppState;

/// HTTP/2 flow-control window of one request stream, bytes.
const STREAM_WINDOW: u32 = 1 << 20;
/// HTTP/2 flow-control window of one connection, bytes.
const CONNECTION_WINDOW: u32 = 2 << 20;

/// Where a started server listens.
#[derive(Debug, Clone, Copy)]
pub struct Ready {
    /// The gRPC address.
    pub grpc: SocketAddr,
    /// The metrics address, if enabled.
    pub metrics: Option<SocketAddr>,
}

/// Why the server stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A socket could not be bound.
    #[error("cannot listen on {addr} (set by `{setting}`): {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The configuration key that chose it: `listen` or `metrics_listen`.
        setting: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// Recovery failed (the data directory could not be opened).
    #[error("cannot open the data directory: {0}")]
    Recovery(String),
    /// The gRPC transport failed.
    #[error("server failed: {0}")]
    Transport(String),
}

/// The error of binding `addr`, chosen by the configuration key `setting`.
fn bind_error(
    addr: SocketAddr,
    setting: &'static str,
) -> impl FnOnce(std::io::Error) -> ServeError {
    move |source| ServeError::Bind {
        addr,
        setting,
        source,
    }
}

/// Hook run once the engine is ready (the demo uses it to load data).
pub type OnReady = Box<dyn FnOnce(&Arc<Db>) + Send>;

/// Runs the server until `shutdown` completes. `ready` hears the bound addresses as soon as
/// the sockets are listening (recovery may still be running; health says NOT_SERVING).
pub async fn run(
    config: ServerConfig,
    registry: Option<Registry>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    ready: Option<oneshot::Sender<Ready>>,
    on_ready: Option<OnReady>,
) -> Result<(), ServeError> {
    config.validate()?;
    let mut db_config = config.db_config()?;
    db_config.registry = registry;
    let addr = config.listen_addr()?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(bind_error(addr, "listen"))?;
    let grpc = listener.local_addr().map_err(bind_error(addr, "listen"))?;
    let metrics = Arc::new(Metrics::default());
    let state = Arc::new(AppState::new(config.clone(), metrics.clone()));

    let metrics_addr = match config.metrics_addr()? {
        Some(a) => {
            let l = TcpListener::bind(a)
                .await
                .map_err(bind_error(a, "metrics_listen"))?;
            let bound = l.local_addr().map_err(bind_error(a, "metrics_listen"))?;
            tokio::spawn(serve_metrics(l, metrics.clone(), state.db.clone()));
            info!(url = %crate::metrics::describe(bound), "metrics listening");
            Some(bound)
        }
        None => None,
    };

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    set_health(&health_reporter, ServingStatus::NotServing).await;

    // Recovery runs in the background so health checks answer NOT_SERVING meanwhile.
    let (failed_tx, failed_rx) = oneshot::channel::<String>();
    let maintenance: Arc<std::sync::Mutex<Option<Maintenance>>> = Arc::default();
    {
        let state = state.clone();
        let reporter = health_reporter.clone();
        let maintenance = maintenance.clone();
        tokio::spawn(async move {
            let opened =
                tokio::task::spawn_blocking(move || Db::open(db_config, Arc::new(SystemClock)))
                    .await;
            match opened {
                Ok(Ok((db, report))) => {
                    for w in &report.wal.warnings {
                        warn!("recovery: {w}");
                    }
                    for kept in &report.registry_kept {
                        warn!(
                            "registry: the given file leaves out what the data directory has; \
                             kept, not removed (remove it with `quiver apply --allow-removals`): \
                             {kept}"
                        );
                    }
                    info!(
                        snapshots = report.snapshots.len(),
                        wal_records = report.wal.replayed,
                        "recovered"
                    );
                    let db = Arc::new(db);
                    match Maintenance::start(db.clone(), Duration::from_millis(200), |r| match r {
                        Ok(st) => info!(seq = st.seq, seconds = st.seconds, "checkpoint"),
                        Err(e) => error!(
                            "automatic checkpoint failed (retried after 1 s, then twice as long \
                             each time, up to a minute): {e}"
                        ),
                    }) {
                        Ok(m) => *maintenance.lock().unwrap_or_else(|p| p.into_inner()) = Some(m),
                        Err(e) => warn!("maintenance thread did not start: {e}"),
                    }
                    if let Some(hook) = on_ready {
                        hook(&db);
                    }
                    let _ = state.db.set(db);
                    set_health(&reporter, ServingStatus::Serving).await;
                    info!("serving");
                }
                Ok(Err(e)) => {
                    let _ = failed_tx.send(e.to_string());
                }
                Err(e) => {
                    let _ = failed_tx.send(format!("recovery task failed: {e}"));
                }
            }
        });
    }

    // Health is listed too, so `grpcurl ... grpc.health.v1.Health/Check` works without a
    // .proto; v1alpha as well as v1, because grpcurl before 1.8.8 only speaks v1alpha.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection()
        .build_v1()
        .map_err(|e| ServeError::Transport(e.to_string()))?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .map_err(|e| ServeError::Transport(e.to_string()))?;
    let auth = BearerAuth::new(config.auth_token.as_deref());
    let native = NativeService::new(
        FeatureStoreService {
            state: state.clone(),
        },
        config.max_write_message_bytes,
    );
    let feast = ServingServiceServer::new(FeastService {
        state: state.clone(),
    })
    .max_decoding_message_size(config.max_read_message_bytes)
    .max_encoding_message_size(usize::MAX);

    if let Some(tx) = ready {
        let _ = tx.send(Ready {
            grpc,
            metrics: metrics_addr,
        });
    }
    info!(%grpc, "gRPC listening");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopping = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let recovery_failed = Arc::new(std::sync::Mutex::new(None::<String>));
    {
        let recovery_failed = recovery_failed.clone();
        tokio::spawn(async move {
            tokio::pin!(shutdown);
            tokio::select! {
                _ = &mut shutdown => {}
                msg = failed_rx => match msg {
                    Ok(m) => *recovery_failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(m),
                    // Recovery succeeded (the sender is gone): serve until asked to stop.
                    Err(_) => shutdown.await,
                },
            }
            let _ = stop_tx.send(true);
        });
    }

    let mut builder = Server::builder();
    if let Some(tls) = config.tls()? {
        builder = builder
            .tls_config(tls)
            .map_err(|e| ServeError::Transport(format!("TLS: {e}")))?;
        info!("TLS enabled");
    }
    let front = builder
        .tcp_nodelay(true)
        // Request bytes a client can push before the server reads them: per stream, and per
        // connection across its streams; admission bounds how many streams are read at all.
        .initial_stream_window_size(Some(STREAM_WINDOW))
        .initial_connection_window_size(Some(CONNECTION_WINDOW))
        .max_concurrent_streams(Some(
            u32::try_from(config.max_concurrent_requests).unwrap_or(u32::MAX),
        ))
        .layer(AdmissionLayer::new(
            config.max_concurrent_requests,
            Deadlines {
                request: Duration::from_millis(config.request_timeout_ms),
                bulk: Duration::from_millis(config.bulk_timeout_ms),
            },
            metrics.clone(),
        ))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(tonic::service::interceptor::InterceptedService::new(
            native,
            auth.clone(),
        ))
        .add_service(tonic::service::interceptor::InterceptedService::new(
            feast, auth,
        ));
    let threading = config.threading()?;
    let serving = async {
        match threading {
            Threading::PerCore if config.worker_threads > 1 => {
                crate::workers::serve(front, listener, config.worker_threads, stopping()).await
            }
            // One thread, or the work-stealing scheduler: tonic accepts on this runtime.
            //
            // `tcp_nodelay` above only applies to listeners tonic binds itself; with our own
            // listener it must be set on the incoming stream, or Nagle + delayed ACK add ~40 ms
            // to every small response on a quiet connection.
            _ => front
                .serve_with_incoming_shutdown(
                    TcpIncoming::from(listener).with_nodelay(Some(true)),
                    stopping(),
                )
                .await
                .map_err(|e| ServeError::Transport(e.to_string())),
        }
    };
    // A graceful HTTP/2 shutdown waits for every client to acknowledge it; a client that has
    // gone quiet (its process stopped, its network gone) would hold the server up forever.
    let grace = Duration::from_millis(config.shutdown_grace_ms);
    let served = tokio::select! {
        r = serving => r,
        () = async { stopping().await; tokio::time::sleep(grace).await } => {
            warn!(
                "connections still open {} ms after shutdown began: closing them \
                 (shutdown_grace_ms)",
                config.shutdown_grace_ms
            );
            Ok(())
        }
    };

    // In-flight requests are done; make everything acknowledged durable and stop maintenance.
    drop(maintenance.lock().unwrap_or_else(|p| p.into_inner()).take());
    if let Some(db) = state.db.get() {
        if let Err(e) = db.sync() {
            error!("final WAL flush failed: {e}");
        }
    }
    if let Some(m) = recovery_failed
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
    {
        return Err(ServeError::Recovery(m));
    }
    served?;
    info!("stopped");
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        // If the handler cannot be installed (no controlling terminal), wait for SIGTERM only.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    info!("shutdown requested: finishing in-flight requests");
}

/// Sets the health of the native service and of the whole server ("") together: clients
/// probe either.
async fn set_health(reporter: &tonic_health::server::HealthReporter, status: ServingStatus) {
    reporter
        .set_service_status(
            <FeatureStoreServer<FeatureStoreService> as tonic::server::NamedService>::NAME,
            status,
        )
        .await;
    reporter.set_service_status("", status).await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::testing::{config, TempDir};

    #[tokio::test]
    async fn a_taken_port_names_the_setting() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dir = TempDir::new();
        let mut c = config(&dir);
        c.listen = taken.local_addr().unwrap().to_string();
        let e = run(c, None, std::future::pending(), None, None)
            .await
            .unwrap_err();
        match &e {
            ServeError::Bind {
                setting, source, ..
            } => {
                assert_eq!(*setting, "listen");
                assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse);
            }
            other => panic!("expected Bind, got {other:?}"),
        }
        assert!(e.to_string().starts_with("cannot listen on"), "{e}");

        let mut c = config(&dir);
        c.metrics_listen = taken.local_addr().unwrap().to_string();
        let e = run(c, None, std::future::pending(), None, None)
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                ServeError::Bind {
                    setting: "metrics_listen",
                    ..
                }
            ),
            "{e:?}"
        );
    }

    /// A client that opened an HTTP/2 connection and then went silent never acknowledges the
    /// shutdown's GOAWAY; the server closes its connection after `shutdown_grace_ms` instead
    /// of waiting for it forever. Both threading models.
    #[tokio::test]
    async fn shutdown_does_not_wait_forever_for_a_silent_client() {
        use tokio::io::AsyncWriteExt;
        for threading in ["per-core", "shared"] {
            let server = crate::testing::TestServer::start(|c| {
                c.shutdown_grace_ms = 300;
                c.threading = threading.into();
            })
            .await;
            server.ready_client().await;
            let mut silent = tokio::net::TcpStream::connect(server.ready.grpc)
                .await
                .unwrap();
            // The client preface and an empty SETTINGS frame; then nothing is ever read.
            silent
                .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
            tokio::time::timeout(Duration::from_secs(20), server.stop())
                .await
                .unwrap_or_else(|_| panic!("{threading}: the server waited for a silent client"));
            drop(silent);
        }
    }
}
