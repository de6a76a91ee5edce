//! What recording a metric costs: `cargo bench --bench metrics_cost`. Times one request
//! observation, and the two ways a slot could be written (a locked add, a plain load and store)
//! for comparison. The figures are in the README's metrics section.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gavel::metrics::Registry;

const ROUNDS: u32 = 20_000_000;

/// Nanoseconds per round since `t`.
fn per(t: Instant) -> f64 {
    t.elapsed().as_nanos() as f64 / f64::from(ROUNDS)
}

fn main() {
    let r = Registry::new(1, gavel::api::metric_labels());
    let w = black_box(r.worker(0));
    let t = Instant::now();
    for i in 0..ROUNDS {
        w.request(
            r.route_index(black_box("/api/bids")),
            black_box(201),
            Duration::from_nanos(u64::from(i % 4096) * 200),
        );
    }
    let request = per(t);
    let t = Instant::now();
    for _ in 0..ROUNDS {
        let _ = black_box(Instant::now());
    }
    let clock = per(t);
    let cell = black_box(AtomicU64::new(0));
    let t = Instant::now();
    for _ in 0..ROUNDS {
        cell.fetch_add(1, Ordering::Relaxed);
    }
    let locked = per(t);
    let t = Instant::now();
    for _ in 0..ROUNDS {
        cell.store(cell.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }
    let plain = per(t);
    println!(
        "request observation {request:.1} ns, Instant::now {clock:.1} ns, \
         fetch_add {locked:.2} ns, load+store {plain:.2} ns"
    );
}
