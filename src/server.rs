//! Start-up and shutdown: configure the runtime, prepare the database, open each worker's
//! connections, serve, and drain on SIGTERM/SIGINT.

use crate::api::auth::Auth;
use crate::api::live;
use crate::api::{Api, WorkerContext};
use crate::cache::client::RedisConfig;
use crate::cache::{BidCache, CacheStatus};
use crate::config::{Config, CorsSetting, STATEMENT_TIMEOUT_MARGIN_MILLIS};
use crate::fanout;
use crate::http::{self, Cors, ServerConfig};
use crate::logging;
use crate::memory;
use crate::metrics;
use crate::placement::WorkerId;
use crate::storage::{self, pg, Store};
use may::coroutine::JoinHandle;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Exit status when start-up fails.
pub const EXIT_STARTUP_FAILED: i32 = 1;
/// Exit status for settings that cannot be used (what clap answers for a bad flag, too).
pub const EXIT_BAD_SETTINGS: i32 = 2;

/// Coroutines of may's default stack size kept for reuse. may's default keeps 1 000, each with
/// its stack pages touched (8 KiB resident apiece, two thirds of an idle server's RSS), for
/// coroutines Gavel seldom starts: its connections and clients run on stacks of their own
/// size, and only the short-lived hand-back helpers (after a timeout) use the default.
const COROUTINE_POOL_CAPACITY: usize = 16;

/// Runs the server until a signal asks it to stop; returns the process exit status.
pub fn run(cfg: Config) -> i32 {
    logging::set_level(cfg.log_level);
    // Installed first: a signal that arrives while starting must still mean a clean stop.
    let signals = match signal_hook::iterator::Signals::new([SIGTERM, SIGINT]) {
        Ok(s) => s,
        Err(e) => {
            logging::error("cannot install signal handlers", &[("error", &e)]);
            return EXIT_STARTUP_FAILED;
        }
    };
    // A URL that cannot be used is a setting to fix, like a bad flag: exit 2, not a failed start.
    let (pg, redis) = match pg_config(&cfg).and_then(|pg| {
        RedisConfig::from_url(&cfg.redis_url)
            .map(|redis| (pg, redis))
            .map_err(|e| format!("REDIS_URL is not usable: {e}"))
    }) {
        Ok(urls) => urls,
        Err(e) => {
            logging::error("bad settings", &[("error", &e)]);
            return EXIT_BAD_SETTINGS;
        }
    };
    raise_nofile_limit();
    // Connection coroutines pick their own stack size; may's default stays small for its helpers.
    may::config()
        .set_pool_capacity(COROUTINE_POOL_CAPACITY)
        .set_workers(cfg.workers)
        .set_worker_pin(cfg.pin_workers);
    // Lets debug builds assert that a worker's coroutines run on its thread.
    if cfg!(debug_assertions) {
        crate::placement::record_worker_threads(cfg.workers);
    }

    // Bound before the database is touched, so a taken admin port stops start-up at once; the
    // registry exists before any client is made, so each one finds its worker's slot.
    let admin = match cfg.admin_listen.map(crate::admin::bind).transpose() {
        Ok(a) => a,
        Err(e) => {
            let addr = cfg.admin_listen.map_or(String::new(), |a| a.to_string());
            logging::error("cannot listen", &[("admin_listen", &addr), ("error", &e)]);
            return EXIT_STARTUP_FAILED;
        }
    };
    let registry = admin
        .as_ref()
        .map(|_| metrics::install(cfg.workers, crate::api::metric_labels()));
    if let Some(admin) = &admin {
        let addr = admin
            .local_addr()
            .map_or_else(|e| e.to_string(), |a| a.to_string());
        logging::info("admin listening", &[("addr", &addr), ("path", &"/metrics")]);
    }
    let (contexts, schema) = match start_storage(&cfg, &pg, redis) {
        Ok(c) => c,
        Err(e) => {
            logging::error("start-up failed", &[("error", &e)]);
            return EXIT_STARTUP_FAILED;
        }
    };
    let redis_on = contexts.iter().any(|c| c.cache.is_some());
    let streams = contexts[0].live.clone();
    let contexts_draining = contexts[0].draining.clone();
    let watched = contexts.clone();
    let mut server_cfg = server_config(&cfg);
    server_cfg.observers = registry.map(metrics::http_observers).unwrap_or_default();
    let server = match http::serve(server_cfg, move |worker| {
        Api::new(contexts[worker % contexts.len()].clone())
    }) {
        Ok(s) => s,
        Err(e) => {
            logging::error("cannot listen", &[("listen", &cfg.listen), ("error", &e)]);
            return EXIT_STARTUP_FAILED;
        }
    };
    // Off the start-up path: the sweeper's connection is not needed to serve.
    if let Err(e) = storage::sweep::start(&pg, WorkerId::new(0)) {
        let e = format!("cannot start the key sweeper: {e}");
        logging::error("start-up failed", &[("error", &e)]);
        return EXIT_STARTUP_FAILED;
    }
    memory::spawn_trimmers(&server.connection_counts(), cfg.workers);
    if let (Some(admin), Some(registry)) = (admin, registry) {
        let counts = server.connection_counts();
        let gauges = move || metrics::Gauges {
            open_connections: counts
                .open_per_worker()
                .into_iter()
                .map(|n| n as u64)
                .collect(),
            open_streams: streams.open_streams() as u64,
        };
        if let Err(e) = admin.serve(registry, gauges) {
            logging::error("cannot start the admin listener", &[("error", &e)]);
            return EXIT_STARTUP_FAILED;
        }
    }
    logging::info(
        "listening",
        &[
            ("addr", &server.local_addr()),
            ("workers", &cfg.workers),
            ("redis", &if redis_on { "enabled" } else { "disabled" }),
            ("schema", &schema),
        ],
    );
    if redis_on {
        warn_if_redis_stays_down(watched, &cfg.redis_url);
    }
    if cfg.auth_secret.is_none() {
        logging::warn(
            "authentication is off: no secret configured, every POST is open",
            &[(
                "enable_with",
                &"GAVEL_AUTH_SECRET or GAVEL_AUTH_SECRET_FILE",
            )],
        );
    }
    let mut signals = signals;
    signals.forever().next();
    give_notice(&contexts_draining, cfg.drain_notice, &mut signals);
    logging::info(
        "shutting down",
        &[("drain_secs", &cfg.shutdown_timeout.as_secs())],
    );
    let drained = server.shutdown(cfg.shutdown_timeout);
    logging::info("stopped", &[("drained", &drained)]);
    0
}

/// `gavel migrate`: creates the database when missing and applies the migrations, then exits;
/// for deployments that migrate before they start servers. Returns the exit status.
pub fn migrate(database_url: &str) -> i32 {
    let pg = match pg::Config::from_url(database_url) {
        Ok(pg) => pg,
        Err(e) => {
            eprintln!("gavel migrate: DATABASE_URL is not usable: {e}");
            return EXIT_BAD_SETTINGS;
        }
    };
    may::config().set_workers(1);
    match prepare_schema(&pg) {
        Ok(instance) => {
            logging::info("schema up to date", &[("instance", &instance)]);
            0
        }
        Err(e) => {
            logging::error("migration failed", &[("error", &e)]);
            EXIT_STARTUP_FAILED
        }
    }
}

/// How long after start-up Redis may take to connect before the log says it is unreachable:
/// twice the default connect timeout, so a first attempt that timed out has been retried.
const REDIS_STARTUP_GRACE_MILLIS: u64 = 1_000;

/// Says in the log, once, if a worker's Redis connection is still down shortly after start-up:
/// the server then decides every bid in PostgreSQL, which is correct but slower, and an operator
/// should know. Runs on a thread of its own; start-up does not wait for it.
fn warn_if_redis_stays_down(contexts: Vec<Arc<WorkerContext>>, url: &str) {
    // Host and port only: the URL may hold a password.
    let target = match RedisConfig::from_url(url) {
        Ok(Some(c)) => format!("{}:{}", c.host, c.port),
        _ => "?".to_owned(),
    };
    let _ = std::thread::Builder::new()
        .name("gavel-redis-check".into())
        .spawn(move || {
            std::thread::sleep(Duration::from_millis(REDIS_STARTUP_GRACE_MILLIS));
            let down = contexts
                .iter()
                .filter(|c| {
                    c.cache
                        .as_ref()
                        .is_some_and(|b| b.status() == CacheStatus::Down)
                })
                .count();
            if down > 0 {
                logging::warn(
                    "redis unreachable: bids are decided by PostgreSQL alone until it connects",
                    &[("redis", &target), ("workers_without_redis", &down)],
                );
            }
        });
}

fn server_config(cfg: &Config) -> ServerConfig {
    let mut server = ServerConfig::new(cfg.listen);
    server.workers = cfg.workers;
    server.idle_timeout = cfg.idle_timeout;
    server.join_port = cfg.join_port;
    server.cors = match &cfg.cors {
        CorsSetting::Any => Cors::Any,
        CorsSetting::Origins(list) => Cors::List(list.clone()),
    };
    server
}

fn pg_config(cfg: &Config) -> Result<pg::Config, String> {
    let mut pg = pg::Config::from_url(&cfg.database_url)
        .map_err(|e| format!("DATABASE_URL is not usable: {e}"))?;
    pg.query_timeout = cfg.db_timeout;
    pg.statement_timeout = cfg
        .db_timeout
        .saturating_sub(Duration::from_millis(STATEMENT_TIMEOUT_MARGIN_MILLIS))
        .max(Duration::from_millis(1));
    Ok(pg)
}

/// Opens every worker's connections, makes sure the schema is up to date, then builds each
/// worker's context. On an existing, settled database (every restart) the workers' connections
/// are opened first, at once, and one round trip on one of them confirms the schema: start-up
/// waits for one connection's set-up. Otherwise (a new database, migrations to run, or another
/// server's just run) the schema is prepared under the migration lock and the workers connect
/// again, since their statements may have been prepared against the old schema.
/// Returns the contexts and how the schema was found: `settled` (one round trip on the
/// connections opened first) or `prepared` (under the lock, connections opened again), for the
/// log.
fn start_storage(
    cfg: &Config,
    pg: &pg::Config,
    redis: Option<RedisConfig>,
) -> Result<(Vec<Arc<WorkerContext>>, &'static str), String> {
    let auth = cfg.auth_secret.as_deref().map(|s| Arc::new(Auth::new(s)));
    let draining = Arc::new(AtomicBool::new(false));
    let early: Vec<Option<Store>> = connect_stores(pg, (0..cfg.workers).collect())?
        .into_iter()
        .map(|h| h.join().ok().and_then(Result::ok))
        .collect();
    let (instance, stores, schema) = match settled_instance(&early) {
        Some(instance) => (instance, early.into_iter().flatten().collect(), "settled"),
        None => {
            drop(early);
            let instance = prepare_schema(pg)?;
            let stores = join_stores(connect_stores(pg, (0..cfg.workers).collect())?)?;
            (instance, stores, "prepared")
        }
    };
    let live = live::Shared::new(cfg.max_streams);
    let (hub, inboxes) = fanout::hub(cfg.workers);
    let contexts = stores
        .into_iter()
        .enumerate()
        .map(|(index, store)| {
            let worker = WorkerId::new(index);
            let live = live::Subscribers::new(worker, live.clone(), hub.clone())
                .map_err(|e| format!("cannot watch streams: {e}"))?;
            let cache = redis.clone().map(|r| BidCache::new(r, &instance, worker));
            Ok(Arc::new(WorkerContext {
                worker,
                store,
                cache,
                auth: auth.clone(),
                metrics: worker.metrics(),
                live: Arc::new(live),
                draining: draining.clone(),
            }))
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok((start_live(pg, contexts, inboxes, live, hub)?, schema))
}

/// The instance id, when every worker connected and the schema they prepared against is settled.
fn settled_instance(stores: &[Option<Store>]) -> Option<String> {
    if stores.iter().any(Option::is_none) {
        return None;
    }
    match stores.first()?.as_ref()?.schema() {
        Ok(storage::migrate::Schema::Settled { instance }) => Some(instance),
        _ => None,
    }
}

/// Creates the database when missing and applies the migrations, in a coroutine of its own.
fn prepare_schema(pg: &pg::Config) -> Result<String, String> {
    let setup = pg.clone();
    let prepare =
        may::coroutine::Builder::new().stack_size(pg::limits::LIMITS.coroutine_stack_words);
    may::go!(prepare, move || storage::prepare_database(&setup))
        .map_err(|e| format!("cannot start database preparation: {e}"))?
        .join()
        .map_err(|_| "database preparation stopped unexpectedly".to_owned())?
}

fn join_stores(handles: Vec<JoinHandle<Result<Store, pg::PgError>>>) -> Result<Vec<Store>, String> {
    handles
        .into_iter()
        .map(|h| {
            h.join()
                .map_err(|_| "worker start-up stopped unexpectedly".to_owned())?
                .map_err(|e| format!("cannot connect to PostgreSQL: {e}"))
        })
        .collect()
}

/// Opens the listed workers' stores at once, each in a coroutine on its own worker (a store's
/// connections belong to the worker that opened them).
fn connect_stores(
    pg: &pg::Config,
    workers: Vec<usize>,
) -> Result<Vec<JoinHandle<Result<Store, pg::PgError>>>, String> {
    workers
        .into_iter()
        .map(|index| {
            let worker = WorkerId::new(index);
            let pg = pg.clone();
            // It authenticates to PostgreSQL (SCRAM), so it gets the client's own stack size.
            let builder = may::coroutine::Builder::new()
                .id(worker.index())
                .stack_size(pg::limits::LIMITS.coroutine_stack_words);
            // SAFETY: the closure touches no thread-local state (may's requirement for spawn).
            unsafe { builder.spawn(move || Store::connect(&pg, worker)) }
                .map_err(|e| format!("cannot start worker coroutine: {e}"))
        })
        .collect()
}

/// Starts each worker's stream coroutines and the process's listening feed.
fn start_live(
    pg: &pg::Config,
    contexts: Vec<Arc<WorkerContext>>,
    inboxes: Vec<fanout::Inbox<live::Update>>,
    shared: Arc<live::Shared>,
    hub: fanout::Hub<live::Update>,
) -> Result<Vec<Arc<WorkerContext>>, String> {
    for (ctx, inbox) in contexts.iter().zip(inboxes) {
        live::updates::start(ctx.clone(), inbox)
            .map_err(|e| format!("cannot start live updates: {e}"))?;
    }
    live::feed::start(pg, WorkerId::new(0), shared, hub)
        .map_err(|e| format!("cannot start live updates: {e}"))?;
    Ok(contexts)
}

/// How often the notice period looks for a second signal, which cuts it short.
const NOTICE_POLL_MILLIS: u64 = 50;

/// Before the listener closes: `/ready` answers 503 for `notice` while every other request is
/// served as before, so a load balancer checking `/ready` takes this server out of rotation
/// first. A second SIGTERM or SIGINT ends the notice at once.
fn give_notice(draining: &AtomicBool, notice: Duration, signals: &mut Signals) {
    draining.store(true, Ordering::Relaxed);
    if notice.is_zero() {
        return;
    }
    logging::info(
        "draining: /ready answers 503",
        &[("notice_ms", &notice.as_millis())],
    );
    let until = std::time::Instant::now() + notice;
    while std::time::Instant::now() < until {
        if signals.pending().next().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(NOTICE_POLL_MILLIS));
    }
}

/// Each connection is a file descriptor: lift the soft limit to the hard one so 100K connections fit.
fn raise_nofile_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
    if !ok {
        return;
    }
    let before = lim.rlim_cur;
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: as above.
    let raised = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } == 0;
    let now = if raised { lim.rlim_cur } else { before };
    logging::info("open file limit", &[("before", &before), ("now", &now)]);
}
