//! The numbers: one slot per worker, written with relaxed atomic adds, summed by a scrape.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::render::{HistogramCounts, Snapshot};
use super::{nanos, status_index, ErrorKind, Labels, MAX_LABEL_VALUES, MAX_ROUTES};
use super::{ERROR_KINDS, LATENCY_BUCKETS, STATUSES};

/// Buckets of a histogram slot: one per bound, plus the overflow (`+Inf` only).
const SLOTS: usize = LATENCY_BUCKETS.len() + 1;

/// Every worker's slot, allocated once.
pub struct Registry {
    workers: Box<[WorkerMetrics]>,
    /// The label sets the API registered.
    labels: Labels,
    /// Taken when the registry is made, at start-up: `process_start_time_seconds`.
    started: SystemTime,
}

impl Registry {
    /// Slots for `workers` workers (at least one), counting under `labels`: at most
    /// `MAX_ROUTES` routes, the last of which stands for any other route, and at most
    /// `MAX_LABEL_VALUES` values in each other set.
    pub fn new(workers: usize, labels: Labels) -> Registry {
        let routes = labels.routes.len();
        assert!(
            (1..=MAX_ROUTES).contains(&routes),
            "between 1 and {MAX_ROUTES} route labels"
        );
        for set in [labels.bid_outcomes, labels.key_results, labels.fast_path] {
            assert!(
                set.len() <= MAX_LABEL_VALUES,
                "at most {MAX_LABEL_VALUES} label values in a set"
            );
        }
        Registry {
            workers: (0..workers.max(1))
                .map(|_| WorkerMetrics::default())
                .collect(),
            labels,
            started: SystemTime::now(),
        }
    }

    /// `worker`'s slot. An index past the end (a caller that knows more workers than the
    /// registry was made for) shares a slot rather than failing: adds stay exact either way.
    pub fn worker(&self, worker: usize) -> &WorkerMetrics {
        &self.workers[worker % self.workers.len()]
    }

    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// The index of a route label; an unregistered one counts under the last label.
    pub fn route_index(&self, route: &str) -> usize {
        // The API hands back the very strings it registered: comparing addresses first skips
        // the string comparisons on the request path.
        let routes = &self.labels.routes;
        routes
            .iter()
            .position(|r| std::ptr::eq(*r, route))
            .or_else(|| routes.iter().position(|r| *r == route))
            .unwrap_or(routes.len() - 1)
    }

    /// Every slot summed. The values are read one by one while workers keep writing, so a scrape
    /// taken mid-request may see a bucket without its sum; Prometheus tolerates that, and the next
    /// scrape is whole again. `_count` is the sum of the buckets, so it always equals `+Inf`.
    pub fn snapshot(&self) -> Snapshot {
        let mut s = Snapshot {
            requests: Vec::new(),
            bids: labelled(self.labels.bid_outcomes),
            fast_path: labelled(self.labels.fast_path),
            keys: labelled(self.labels.key_results),
            pg_query: HistogramCounts::default(),
            pg_errors: [0; ERROR_KINDS.len()],
            pg_reconnects: 0,
            redis_command: HistogramCounts::default(),
            redis_errors: [0; ERROR_KINDS.len()],
            redis_reconnects: 0,
            connections_accepted: 0,
            keys_swept: 0,
            open_connections: Vec::new(),
            open_streams: 0,
            start_time_seconds: self
                .started
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            process: None,
        };
        for (route, label) in self.labels.routes.iter().enumerate() {
            for status in 0..STATUSES.len() {
                let mut h = HistogramCounts::default();
                for w in self.workers.iter() {
                    w.requests[route][status].add_to(&mut h);
                }
                if h.count() > 0 {
                    s.requests.push((*label, status, h));
                }
            }
        }
        for w in self.workers.iter() {
            add_labelled(&mut s.bids, &w.bids);
            add_labelled(&mut s.fast_path, &w.fast_path);
            add_labelled(&mut s.keys, &w.keys);
            w.pg_query.add_to(&mut s.pg_query);
            add_all(&mut s.pg_errors, &w.pg_errors);
            s.pg_reconnects += w.pg_reconnects.get();
            w.redis_command.add_to(&mut s.redis_command);
            add_all(&mut s.redis_errors, &w.redis_errors);
            s.redis_reconnects += w.redis_reconnects.get();
            s.connections_accepted += w.connections_accepted.get();
            s.keys_swept += w.keys_swept.get();
        }
        s
    }
}

/// Every value of a label set, with a zero count.
fn labelled(set: &'static [&'static str]) -> Vec<(&'static str, u64)> {
    set.iter().map(|v| (*v, 0)).collect()
}

fn add_labelled(into: &mut [(&'static str, u64)], from: &[Counter]) {
    for ((_, sum), c) in into.iter_mut().zip(from) {
        *sum += c.get();
    }
}

fn add_all(into: &mut [u64], from: &[Counter]) {
    for (sum, c) in into.iter_mut().zip(from) {
        *sum += c.get();
    }
}

/// One worker's numbers. Aligned to 128 bytes (two cache lines, the unit the adjacent-line
/// prefetcher pulls together) so that two workers' slots never share a line.
#[repr(align(128))]
#[derive(Default)]
pub struct WorkerMetrics {
    requests: [[Histogram; STATUSES.len()]; MAX_ROUTES],
    bids: [Counter; MAX_LABEL_VALUES],
    fast_path: [Counter; MAX_LABEL_VALUES],
    keys: [Counter; MAX_LABEL_VALUES],
    pg_query: Histogram,
    pg_errors: [Counter; ERROR_KINDS.len()],
    pg_reconnects: Counter,
    redis_command: Histogram,
    redis_errors: [Counter; ERROR_KINDS.len()],
    redis_reconnects: Counter,
    connections_accepted: Counter,
    keys_swept: Counter,
}

impl WorkerMetrics {
    /// A request answered: its route label's index ([`Registry::route_index`]), status and
    /// time taken.
    pub fn request(&self, route: usize, status: u16, took: Duration) {
        debug_assert!(route < MAX_ROUTES);
        self.requests[route.min(MAX_ROUTES - 1)][status_index(status)].observe(took);
    }

    /// A bid decided, by PostgreSQL or by the fast path: its outcome's position in the
    /// registered `bid_outcomes`.
    pub fn bid(&self, outcome: usize) {
        self.bids[outcome.min(MAX_LABEL_VALUES - 1)].add(1);
    }

    /// A fast-path lookup: its result's position in the registered `fast_path` set.
    pub fn fast_path(&self, result: usize) {
        self.fast_path[result.min(MAX_LABEL_VALUES - 1)].add(1);
    }

    /// A request with an `Idempotency-Key` answered: its result's position in the registered
    /// `key_results`.
    pub fn idempotent(&self, result: usize) {
        self.keys[result.min(MAX_LABEL_VALUES - 1)].add(1);
    }

    /// A PostgreSQL request answered (with rows or an error): from queueing to the reply.
    pub fn pg_query(&self, took: Duration) {
        self.pg_query.observe(took);
    }

    pub fn pg_error(&self, kind: ErrorKind) {
        self.pg_errors[kind as usize].add(1);
    }

    pub fn pg_reconnect(&self) {
        self.pg_reconnects.add(1);
    }

    /// A Redis command answered: from queueing to the reply.
    pub fn redis_command(&self, took: Duration) {
        self.redis_command.observe(took);
    }

    pub fn redis_error(&self, kind: ErrorKind) {
        self.redis_errors[kind as usize].add(1);
    }

    pub fn redis_reconnect(&self) {
        self.redis_reconnects.add(1);
    }

    pub fn connection_accepted(&self) {
        self.connections_accepted.add(1);
    }

    /// Expired idempotency keys deleted by the sweeper.
    pub fn keys_swept(&self, n: u64) {
        self.keys_swept.add(n);
    }
}

/// A monotonic count. Relaxed: nothing else is ordered by it, and a scrape needs no more than
/// each value eventually seen.
#[derive(Default)]
struct Counter(AtomicU64);

impl Counter {
    fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Per-bucket (not cumulative) counts and the sum in nanoseconds: one observation is two adds,
/// and the renderer makes the buckets cumulative.
#[derive(Default)]
struct Histogram {
    buckets: [Counter; SLOTS],
    sum_nanos: Counter,
}

impl Histogram {
    fn observe(&self, took: Duration) {
        let ns = nanos(took);
        let slot = LATENCY_BUCKETS
            .iter()
            .position(|(bound, _)| ns <= *bound)
            .unwrap_or(SLOTS - 1);
        self.buckets[slot].add(1);
        self.sum_nanos.add(ns);
    }

    fn add_to(&self, into: &mut HistogramCounts) {
        for (sum, c) in into.buckets.iter_mut().zip(&self.buckets) {
            *sum += c.get();
        }
        into.sum_nanos += self.sum_nanos.get();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: [&str; 3] = ["/health", "/api/bids", "other"];

    fn labels() -> Labels {
        Labels {
            routes: ROUTES.to_vec(),
            bid_outcomes: &["accepted", "too_low", "not_open", "forbidden", "not_found"],
            key_results: &["fresh", "replayed", "mismatch"],
            fast_path: &["hit", "miss"],
        }
    }

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let r = Registry::new(2, labels());
        let w = r.worker(1);
        let health = r.route_index("/health");
        w.request(health, 200, Duration::from_micros(50)); // on the bound: le is inclusive
        w.request(health, 200, Duration::from_micros(51));
        w.request(health, 200, Duration::from_secs(3)); // past the last bound
        w.request(r.route_index("/nope"), 418, Duration::from_millis(1));
        let s = r.snapshot();
        assert_eq!(s.requests.len(), 2);
        let (route, status, h) = &s.requests[0];
        assert_eq!((*route, STATUSES[*status]), ("/health", "200"));
        assert_eq!(h.buckets[0], 1);
        assert_eq!(h.buckets[1], 1);
        assert_eq!(h.buckets[SLOTS - 1], 1);
        assert_eq!(h.count(), 3);
        assert_eq!(h.sum_nanos, 50_000 + 51_000 + 3_000_000_000);
        let (route, status, _) = &s.requests[1];
        assert_eq!((*route, STATUSES[*status]), ("other", "other"));
    }

    #[test]
    fn route_labels_by_address_or_text_and_the_last_for_the_rest() {
        let r = Registry::new(1, labels());
        assert_eq!(r.route_index(ROUTES[1]), 1);
        assert_eq!(r.route_index(&String::from("/api/bids")), 1);
        assert_eq!(r.route_index("/elsewhere"), 2);
    }

    #[test]
    #[should_panic(expected = "label values")]
    fn a_label_set_larger_than_its_counters_is_refused() {
        let many: &'static [&'static str] = &["v"; MAX_LABEL_VALUES + 1];
        Registry::new(
            1,
            Labels {
                bid_outcomes: many,
                ..labels()
            },
        );
    }

    #[test]
    #[should_panic(expected = "route labels")]
    fn more_route_labels_than_the_slots_hold_are_refused() {
        let routes = vec!["/r"; MAX_ROUTES + 1];
        Registry::new(1, Labels { routes, ..labels() });
    }

    #[test]
    fn as_many_route_labels_as_the_slots_hold_are_taken() {
        let routes = vec!["/r"; MAX_ROUTES];
        let r = Registry::new(1, Labels { routes, ..labels() });
        r.worker(0)
            .request(MAX_ROUTES - 1, 200, Duration::from_micros(1));
        assert_eq!(r.snapshot().requests.len(), 1);
    }

    #[test]
    fn a_scrape_sums_every_worker() {
        let r = Registry::new(3, labels());
        for w in 0..3 {
            r.worker(w).bid(0);
            r.worker(w).fast_path(usize::from(w != 0));
            r.worker(w).pg_query(Duration::from_micros(300));
            r.worker(w).pg_error(ErrorKind::Timeout);
            r.worker(w).redis_reconnect();
            r.worker(w).connection_accepted();
        }
        r.worker(4).bid(1); // wraps onto worker 1
        let s = r.snapshot();
        let counts = |set: &[(&str, u64)]| set.iter().map(|(_, n)| *n).collect::<Vec<_>>();
        assert_eq!(counts(&s.bids), [3, 1, 0, 0, 0]);
        assert_eq!(counts(&s.fast_path), [1, 2]);
        assert_eq!(s.bids[1].0, "too_low");
        assert_eq!(s.pg_query.count(), 3);
        assert_eq!(s.pg_query.sum_nanos, 900_000);
        assert_eq!(s.pg_errors[ErrorKind::Timeout as usize], 3);
        assert_eq!(s.redis_reconnects, 3);
        assert_eq!(s.connections_accepted, 3);
        assert!(s.requests.is_empty());
        assert!(s.start_time_seconds > 1.0e9);
    }

    #[test]
    fn slots_do_not_share_cache_lines() {
        let r = Registry::new(2, labels());
        let a = r.worker(0) as *const WorkerMetrics as usize;
        let b = r.worker(1) as *const WorkerMetrics as usize;
        assert_eq!(a % 128, 0);
        assert!(b - a >= std::mem::size_of::<WorkerMetrics>());
    }
}
