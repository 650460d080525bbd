//! `quiver serve`: the configuration from file, environment and flags, logging, the runtime.

use std::ffi::OsStr;
use std::io::IsTerminal;

use quiver_engine::Registry;

use super::ServeArgs;
use crate::config::ServerConfig;
use crate::server::ServeError;

pub(super) fn serve(args: ServeArgs) -> Result<(), String> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("QUIVER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(colour(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR").as_deref(),
        ))
        .try_init();
    let mut config = match &args.config {
        Some(p) => ServerConfig::load(p).map_err(|e| e.to_string())?,
        None => ServerConfig::default(),
    };
    config.apply_env();
    if let Some(v) = args.listen {
        config.listen = v;
    }
    if let Some(v) = args.metrics_listen {
        config.metrics_listen = v;
    }
    if let Some(v) = args.data_dir {
        config.data_dir = v;
    }
    if let Some(v) = args.registry {
        config.registry = Some(v);
    }
    if let Some(v) = args.fsync {
        config.fsync = v;
    }
    if let Some(v) = args.auth_token {
        config.auth_token = Some(v);
    }
    if let Some(v) = args.worker_threads {
        config.worker_threads = v;
    }
    if let Some(v) = args.threading {
        config.threading = v;
    }
    if args.tls_cert.is_some() {
        config.tls_cert = args.tls_cert;
    }
    if args.tls_key.is_some() {
        config.tls_key = args.tls_key;
    }
    config.salvage |= args.salvage;
    config.validate().map_err(|e| e.to_string())?;
    let registry = match (&config.registry, args.demo) {
        (Some(p), _) => Some(Registry::load(p).map_err(|e| e.to_string())?),
        (None, true) => Some(crate::demo::example_registry()?),
        (None, false) => None,
    };
    let on_ready: Option<crate::server::OnReady> = if args.demo {
        let listen = config.listen.clone();
        Some(Box::new(move |db| {
            crate::demo::load(db);
            let server = if listen == "127.0.0.1:6566" {
                String::new()
            } else {
                format!(" --server http://{listen}")
            };
            println!(
                "\nQuiver is serving the demo dataset. In another terminal, try:\n\n  cargo run --release --bin quiver -- get --features user_stats:txn_count_7d,user_stats:country,user_stats:is_premium --key user_id=1,2,3{server}\n"
            );
        }))
    } else {
        None
    };
    // Per-core threading runs the acceptor, maintenance and (with one worker) the serving
    // itself on a current-thread runtime; more workers get a current-thread runtime each
    // (server/src/workers.rs). Either way no work-stealing machinery (cross-thread wake-ups,
    // queue atomics) sits on the request path. "shared" is Tokio's multi-thread scheduler.
    let threading = config.threading().map_err(|e| e.to_string())?;
    let mut builder = match threading {
        crate::Threading::PerCore => tokio::runtime::Builder::new_current_thread(),
        crate::Threading::Shared => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(config.worker_threads);
            b
        }
    };
    let runtime = builder
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime
        .block_on(crate::server::run(
            config,
            registry,
            crate::server::shutdown_signal(),
            None,
            on_ready,
        ))
        .map_err(|e| serve_error(&e))
}

/// Whether log lines may carry colour codes: only on a terminal, and not when the user set
/// `NO_COLOR` (to anything but the empty string, as no-color.org asks).
fn colour(terminal: bool, no_color: Option<&OsStr>) -> bool {
    terminal && no_color.is_none_or(OsStr::is_empty)
}

/// A server error as the person who ran `quiver serve` reads it: a taken port names the flag,
/// the configuration key and (for the gRPC port) the variable that choose another.
fn serve_error(e: &ServeError) -> String {
    match e {
        ServeError::Bind {
            setting, source, ..
        } if source.kind() == std::io::ErrorKind::AddrInUse => {
            let how = match *setting {
                "listen" => "--listen, `listen` in the --config file, or QUIVER_LISTEN".to_owned(),
                other => format!(
                    "--{}, or `{other}` in the --config file (\"\" turns it off)",
                    other.replace('_', "-")
                ),
            };
            format!("{e}; another process is using this port: choose another address with {how}")
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(colour(true, Some(OsStr::new(""))));
        assert!(!colour(true, Some(OsStr::new("1"))));
        assert!(!colour(false, None));
    }

    #[test]
    fn a_taken_port_names_the_flag_and_the_key() {
        let taken = |setting| ServeError::Bind {
            addr: "127.0.0.1:6566".parse().unwrap_or_else(|_| unreachable!()),
            setting,
            source: std::io::ErrorKind::AddrInUse.into(),
        };
        let grpc = serve_error(&taken("listen"));
        assert!(
            grpc.starts_with("cannot listen on 127.0.0.1:6566"),
            "{grpc}"
        );
        assert!(grpc.contains("--listen"), "{grpc}");
        assert!(grpc.contains("`listen`"), "{grpc}");
        assert!(grpc.contains("QUIVER_LISTEN"), "{grpc}");
        let metrics = serve_error(&taken("metrics_listen"));
        assert!(metrics.contains("--metrics-listen"), "{metrics}");
        assert!(metrics.contains("`metrics_listen`"), "{metrics}");
        let denied = ServeError::Bind {
            addr: "0.0.0.0:80".parse().unwrap_or_else(|_| unreachable!()),
            setting: "listen",
            source: std::io::ErrorKind::PermissionDenied.into(),
        };
        assert!(!serve_error(&denied).contains("another process"));
    }
}
