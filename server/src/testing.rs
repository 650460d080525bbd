//! The unit tests' one fixture: a temporary directory, and a server started in-process on an
//! ephemeral port over one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use quiver_engine::Registry;
use tokio::sync::oneshot;

use crate::client::{Connect, NativeClient, Retry};
use crate::config::ServerConfig;
use crate::proto::quiver::v1 as pb;
use crate::server::{run, Ready, ServeError};

/// A registry of one view of scalar features, for tests that need a server to hold something.
pub(crate) const REGISTRY: &str = include_str!("../testdata/user-stats.toml");

/// A directory under the system temp dir, removed with everything in it on drop.
#[derive(Debug)]
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "quiver-server-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A configuration listening on an ephemeral loopback port without metrics, over `dir`.
pub(crate) fn config(dir: &TempDir) -> ServerConfig {
    ServerConfig {
        listen: "127.0.0.1:0".into(),
        metrics_listen: String::new(),
        data_dir: dir.path().join("data"),
        ..ServerConfig::default()
    }
}

/// A loopback port nothing listens on (free when probed; another process could take it).
pub(crate) fn unused_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A server running in this process on [`REGISTRY`], stopped by [`TestServer::stop`].
#[derive(Debug)]
pub(crate) struct TestServer {
    pub(crate) ready: Ready,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), ServeError>>,
    _dir: TempDir,
}

impl TestServer {
    /// Starts a server on [`config`] changed by `configure`; returns once it listens
    /// (recovery may still be running).
    pub(crate) async fn start(configure: impl FnOnce(&mut ServerConfig)) -> Self {
        let dir = TempDir::new();
        let mut config = config(&dir);
        configure(&mut config);
        let registry = Registry::from_toml(REGISTRY).unwrap();
        let (ready_tx, ready_rx) = oneshot::channel();
        let (stop, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(run(
            config,
            Some(registry),
            async {
                let _ = stop_rx.await;
            },
            Some(ready_tx),
            None,
        ));
        let ready = ready_rx.await.expect("the server listens");
        Self {
            ready,
            stop,
            task,
            _dir: dir,
        }
    }

    /// `http://` and the gRPC address.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.ready.grpc)
    }

    /// A native client without a token, once recovery has finished (data calls answer
    /// UNAVAILABLE until then).
    pub(crate) async fn ready_client(&self) -> NativeClient {
        let client = Connect::new(self.url()).native().await.unwrap();
        Retry::default()
            .run(|| {
                let mut c = client.clone();
                async move { c.get_stats(pb::GetStatsRequest::default()).await }
            })
            .await
            .unwrap();
        client
    }

    /// The server's data directory.
    pub(crate) fn data_dir(&self) -> PathBuf {
        self._dir.path().join("data")
    }

    /// Shuts the server down and waits for it to finish.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

/// A write batch of one row of [`REGISTRY`]'s `user_stats`: user `user_id` has made `count`
/// transactions.
pub(crate) fn one_row(user_id: i64, count: i64) -> pb::WriteFeaturesRequest {
    let now = quiver_engine::Clock::now_micros(&quiver_engine::SystemClock);
    pb::WriteFeaturesRequest {
        view: "user_stats".into(),
        keys: vec![pb::KeyColumn {
            name: "user_id".into(),
            values: Some(pb::key_column::Values::Int64Values(pb::Int64Values {
                values: vec![user_id],
            })),
        }],
        event_timestamps: vec![now],
        created_timestamps: Vec::new(),
        features: vec![pb::FeatureWrite {
            name: "txn_count_7d".into(),
            values: Some(pb::Column {
                data: Some(pb::column::Data::Int64Values(pb::Int64Values {
                    values: vec![count],
                })),
            }),
            null_bitmap: Vec::new(),
        }],
    }
}
