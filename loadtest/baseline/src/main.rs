//! gavel-baseline: the Gavel API built the conventional way (Axum on a multi-threaded Tokio
//! runtime, SQLx, deadpool-redis, tower-http), as the reference Gavel is load-tested against.

mod api;
mod cache;
mod db;
mod error;
mod input;
mod model;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use tracing_subscriber::EnvFilter;

struct Config {
    listen: SocketAddr,
    database_url: String,
    redis_url: Option<String>,
    workers: usize,
    pg_pool: u32,
    pg_acquire_timeout: Duration,
    pg_test_before_acquire: bool,
    redis_pool: usize,
    request_timeout: Duration,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .map_err(|_| format!("{name}: cannot parse {v:?}")),
        _ => Ok(default),
    }
}

impl Config {
    fn from_env() -> Result<Config, String> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let redis_url = env_or("REDIS_URL", "redis://127.0.0.1:6379/0".to_owned())?;
        Ok(Config {
            listen: env_or("BASELINE_LISTEN", SocketAddr::from(([127, 0, 0, 1], 3100)))?,
            database_url: env_or(
                "DATABASE_URL",
                "postgres://postgres@127.0.0.1:5432/gavel_baseline".to_owned(),
            )?,
            redis_url: (!redis_url.eq_ignore_ascii_case("off")).then_some(redis_url),
            workers: env_or("BASELINE_WORKERS", cores)?.max(1),
            pg_pool: env_or("BASELINE_PG_POOL", 50)?,
            // API.md wants a 503 within a second when PostgreSQL cannot be reached.
            pg_acquire_timeout: Duration::from_millis(env_or("BASELINE_PG_ACQUIRE_MS", 900)?),
            pg_test_before_acquire: env_or("BASELINE_PG_TEST_BEFORE_ACQUIRE", true)?,
            redis_pool: env_or("BASELINE_REDIS_POOL", 32)?,
            request_timeout: Duration::from_millis(env_or("BASELINE_REQUEST_TIMEOUT_MS", 10_000)?),
        })
    }
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("configuration error: {e}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.workers)
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = runtime.block_on(run(config)) {
        tracing::error!("{e}");
        std::process::exit(1);
    }
}

async fn run(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    let pool = db::connect(
        &config.database_url,
        &db::PoolSettings {
            max_connections: config.pg_pool,
            acquire_timeout: config.pg_acquire_timeout,
            test_before_acquire: config.pg_test_before_acquire,
        },
    )
    .await
    .map_err(|e| format!("database: {e}"))?;
    let cache = match &config.redis_url {
        None => None,
        Some(url) => {
            let oid = db::database_oid(&pool)
                .await
                .map_err(|e| format!("database: {e}"))?;
            Some(
                cache::Cache::new(url, config.redis_pool, oid)
                    .map_err(|e| format!("redis: {e}"))?,
            )
        }
    };
    tracing::info!(
        workers = config.workers,
        pg_pool = config.pg_pool,
        redis = cache.is_some(),
        "starting; authentication is not implemented, the server runs open"
    );
    let state = Arc::new(api::AppState {
        pool: pool.clone(),
        cache,
    });
    let app = api::router(state, config.request_timeout);

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("bind {}: {e}", config.listen))?;
    let addr = listener.local_addr()?;
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY");
        }
    });
    println!("listening on {addr}");
    std::io::stdout().flush()?;

    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    pool.close().await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}
