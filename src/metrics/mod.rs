//! Metrics: counters and histograms kept per worker, summed and rendered as Prometheus text on
//! a separate admin listener.
//!
//! Layout: `registry` holds the numbers (one cache-line-aligned [`WorkerMetrics`] per worker,
//! allocated once at start-up) and `render` turns a summed [`Snapshot`] into the text exposition
//! format (pure, no IO). Nothing here does IO: the admin listener that serves the text is
//! [`crate::admin`].
//!
//! **No shared lock on the request path.** Each worker records into its own slot with relaxed
//! atomic adds; nothing is allocated, hashed or locked per observation, and a scrape only reads.
//! A slot is written by its own worker nearly always, so its cache lines stay in that core's
//! cache and the adds never contend. "Nearly" is why they are `fetch_add` and not a plain load
//! and store: may resumes a coroutine whose wait timed out on its timer thread, a connection
//! woken from another thread runs there for a moment, and a client socket whose descriptor could
//! not be aligned to its worker (`placement::on_worker` gives up after a bounded number of tries)
//! wakes its callers on another worker for as long as the connection lives. A load and store
//! from two threads would then lose counts; an uncontended locked add costs a few nanoseconds
//! more and never does (the README gives the measured figures).
//!
//! **Off means off.** [`install`] runs once at start-up unless `GAVEL_ADMIN_LISTEN=off`. Every
//! recording site asks [`worker`] for its slot once (when its connection or client is made) and
//! keeps the `Option`: when metrics are off that is `None`, and the only cost left on the request
//! path is the branch on it. Comparing a run with `off` against one with metrics on therefore
//! measures what counting costs.
//!
//! Label values come from fixed, small sets (the [`Labels`] the API registers at [`install`],
//! [`STATUSES`], the pipeline's error kinds): no auction, user or request id ever becomes a
//! label, and this module holds no copy of another layer's words to keep in step. The layers report through observers they define ([`crate::http::Observer`],
//! [`crate::pipeline::Observer`]); this module implements them, and never calls into a layer.

mod registry;
mod render;

use std::sync::OnceLock;
use std::time::Duration;

pub use registry::{Registry, WorkerMetrics};
pub use render::{
    render, Exposition, Gauges, HistogramCounts, ProcessStats, Snapshot, CONTENT_TYPE,
};

/// Upper bounds of the latency histograms' buckets, in nanoseconds, with the same bounds as
/// Prometheus writes them in seconds. Gavel answers most requests, and PostgreSQL and Redis most
/// round trips, in well under a millisecond on a healthy box, so the buckets start at 50 µs and
/// are densest there; 2.5 s is beyond every timeout on the request path (PostgreSQL's default is
/// 800 ms), so anything above it lands in `+Inf` and means something is badly wrong.
pub const LATENCY_BUCKETS: [(u64, &str); 15] = [
    (50_000, "0.00005"),
    (100_000, "0.0001"),
    (250_000, "0.00025"),
    (500_000, "0.0005"),
    (1_000_000, "0.001"),
    (2_500_000, "0.0025"),
    (5_000_000, "0.005"),
    (10_000_000, "0.01"),
    (25_000_000, "0.025"),
    (50_000_000, "0.05"),
    (100_000_000, "0.1"),
    (250_000_000, "0.25"),
    (500_000_000, "0.5"),
    (1_000_000_000, "1"),
    (2_500_000_000, "2.5"),
];

/// Most route labels the API may register. The registry keeps one histogram per (route,
/// status) pair per worker in a fixed array, so the bound is a compile-time one; Gavel has 8
/// (7 routes and the unrouted label), and 16 leaves room without costing a scrape much.
pub const MAX_ROUTES: usize = 16;

/// Every status Gavel answers with (API.md's table, plus 204 preflights, 414 and 501 from the
/// HTTP layer); any other code is counted under the last label, `other`.
pub const STATUSES: [&str; 20] = [
    "200", "201", "204", "400", "401", "403", "404", "405", "408", "409", "413", "414", "415",
    "422", "429", "431", "500", "501", "503", "other",
];

/// The index in [`STATUSES`] of a status code.
pub fn status_index(status: u16) -> usize {
    match status {
        200 => 0,
        201 => 1,
        204 => 2,
        400 => 3,
        401 => 4,
        403 => 5,
        404 => 6,
        405 => 7,
        408 => 8,
        409 => 9,
        413 => 10,
        414 => 11,
        415 => 12,
        422 => 13,
        429 => 14,
        431 => 15,
        500 => 16,
        501 => 17,
        503 => 18,
        _ => STATUSES.len() - 1,
    }
}

/// Most values one registered label set may have: its counters are a fixed array per worker.
/// Gavel's largest set (bid outcomes) has 5.
pub const MAX_LABEL_VALUES: usize = 8;

/// The label values the API registers at start-up, for the series it reports into. Each set is
/// the API's own, beside the enum it indexes; metrics only counts by position in it.
#[derive(Debug, Clone, Default)]
pub struct Labels {
    /// The `route` label of request latencies; the last one stands for any other route.
    pub routes: Vec<&'static str>,
    /// The `outcome` label of `gavel_bids_total`.
    pub bid_outcomes: &'static [&'static str],
    /// The `result` label of `gavel_idempotent_requests_total`.
    pub key_results: &'static [&'static str],
    /// The `result` label of `gavel_bid_fast_path_total`.
    pub fast_path: &'static [&'static str],
}

/// The error kinds of the clients' counters: the pipeline's own words and labels.
pub use crate::pipeline::Failure as ErrorKind;

/// Label values of [`ErrorKind`], in its order.
pub const ERROR_KINDS: [&str; 6] = ErrorKind::LABELS;

/// Which client an observer reports for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Redis,
}

/// Reports one client's calls into its worker's slot.
struct ClientMetrics {
    slot: &'static WorkerMetrics,
    backend: Backend,
}

impl crate::pipeline::Observer for ClientMetrics {
    fn answered(&self, took: Duration) {
        match self.backend {
            Backend::Postgres => self.slot.pg_query(took),
            Backend::Redis => self.slot.redis_command(took),
        }
    }

    fn failed(&self, kind: ErrorKind) {
        match self.backend {
            Backend::Postgres => self.slot.pg_error(kind),
            Backend::Redis => self.slot.redis_error(kind),
        }
    }

    fn reconnected(&self) {
        match self.backend {
            Backend::Postgres => self.slot.pg_reconnect(),
            Backend::Redis => self.slot.redis_reconnect(),
        }
    }
}

/// Reports one worker's responses and connections into its slot.
struct HttpMetrics {
    slot: &'static WorkerMetrics,
    registry: &'static Registry,
}

impl crate::http::Observer for HttpMetrics {
    fn request(&self, route: &'static str, status: u16, took: Duration) {
        self.slot
            .request(self.registry.route_index(route), status, took);
    }

    fn connection_accepted(&self) {
        self.slot.connection_accepted();
    }
}

/// The observers of the public listener's workers, each reporting into its worker's slot.
pub fn http_observers(registry: &'static Registry) -> crate::http::Observers {
    crate::http::Observers::new(
        (0..registry.workers())
            .map(|w| {
                std::sync::Arc::new(HttpMetrics {
                    slot: registry.worker(w),
                    registry,
                }) as std::sync::Arc<dyn crate::http::Observer>
            })
            .collect(),
    )
}

/// An observer for a client of `worker`, or `None` when metrics are off.
pub fn observer(
    worker: usize,
    backend: Backend,
) -> Option<std::sync::Arc<dyn crate::pipeline::Observer>> {
    self::worker(worker)
        .map(|slot| std::sync::Arc::new(ClientMetrics { slot, backend }) as std::sync::Arc<_>)
}

static REGISTRY: OnceLock<Registry> = OnceLock::new();

/// Allocates the slots of `workers` workers and turns counting on; later calls return the
/// registry made by the first.
pub fn install(workers: usize, labels: Labels) -> &'static Registry {
    REGISTRY.get_or_init(|| Registry::new(workers, labels))
}

/// The registry, when metrics are on.
pub fn registry() -> Option<&'static Registry> {
    REGISTRY.get()
}

/// `worker`'s slot, or `None` when metrics are off. Callers keep the result rather than asking
/// per observation (see the module notes).
pub fn worker(worker: usize) -> Option<&'static WorkerMetrics> {
    registry().map(|r| r.worker(worker))
}

/// Nanoseconds in `d`, saturating (a u64 of nanoseconds lasts 584 years).
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_labels_are_the_bounds_in_seconds_ascending() {
        for pair in LATENCY_BUCKETS.windows(2) {
            assert!(pair[0].0 < pair[1].0);
        }
        for (nanos, label) in LATENCY_BUCKETS {
            let seconds: f64 = label.parse().unwrap();
            assert_eq!((seconds * 1e9).round() as u64, nanos, "{label}");
        }
    }

    #[test]
    fn every_status_has_its_own_index() {
        for (i, s) in STATUSES.iter().enumerate().take(STATUSES.len() - 1) {
            assert_eq!(status_index(s.parse().unwrap()), i, "{s}");
        }
        assert_eq!(STATUSES[status_index(418)], "other");
    }

    #[test]
    fn kind_labels_follow_their_enum() {
        assert_eq!(ERROR_KINDS[ErrorKind::Auth as usize], "auth");
        assert_eq!(ERROR_KINDS[ErrorKind::Server as usize], "server");
    }
}
