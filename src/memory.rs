//! Memory given back after load. The allocator keeps freed pages of a thread's heap for reuse
//! and purges them only when that thread allocates again; a worker that goes quiet after a burst
//! of connections would hold the burst's peak for as long as it stays quiet. So each worker
//! collects its own heap once many of its connections have closed.

use std::time::Duration;

use may::coroutine::Builder;

use crate::http::ConnectionCounts;
use crate::placement::Nap;

/// How often each worker compares its open connections with their peak. A second is soon enough
/// for memory to follow a burst down, and costs one atomic read a second when nothing changed.
pub const TRIM_CHECK_MILLIS: u64 = 1000;

/// Connections that must have closed on a worker since its peak before it collects its heap.
/// Each closed connection freed a few KiB at least, so 256 of them are worth a collection
/// (which walks the heap's pages), while ordinary churn under steady load does not trigger one
/// every second.
pub const TRIM_AFTER_CLOSED_CONNECTIONS: usize = 256;

/// Stack of a trimmer coroutine: a loop, a sleep and one allocator call.
const TRIMMER_STACK_BYTES: usize = 64 * 1024;

/// Starts one trimmer on each worker.
pub fn spawn_trimmers(counts: &ConnectionCounts, workers: usize) {
    for worker in 0..workers {
        let counts = counts.clone();
        let builder = Builder::new()
            .id(worker)
            .stack_size(TRIMMER_STACK_BYTES / std::mem::size_of::<usize>());
        let trim = move || match Nap::new(worker) {
            Ok(mut nap) => trim_loop(&mut nap, CHECK, || counts.open(worker), collect),
            Err(e) => crate::logging::warn("memory trimmer not started", &[("error", &e)]),
        };
        if let Err(e) = may::go!(builder, trim) {
            crate::logging::warn("memory trimmer not started", &[("error", &e)]);
        }
    }
}

const CHECK: Duration = Duration::from_millis(TRIM_CHECK_MILLIS);

/// Collects the calling thread's heap, purging the pages freed by closed connections now rather
/// than after a delay that only a later allocation on this thread would end.
fn collect() {
    // SAFETY: collects the calling thread's own heap; no pointer is passed.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

/// Every `every`, compares `open()` with its peak and calls `collect` once enough connections
/// have gone. The naps resume on the worker (a `may` sleep would resume on the timer thread),
/// so `collect` runs on the thread whose heap those connections used.
fn trim_loop(nap: &mut Nap, every: Duration, open: impl Fn() -> usize, mut collect: impl FnMut()) {
    let mut peak = 0;
    loop {
        nap.sleep(every);
        let open = open();
        peak = peak.max(open);
        if worth_collecting(peak, open) {
            collect();
            peak = open;
        }
    }
}

/// Whether enough connections closed since the peak to make a collection worth its walk.
fn worth_collecting(peak: usize, open: usize) -> bool {
    debug_assert!(open <= peak);
    peak - open >= TRIM_AFTER_CLOSED_CONNECTIONS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_once_the_threshold_of_closed_connections_is_reached() {
        let n = TRIM_AFTER_CLOSED_CONNECTIONS;
        assert!(!worth_collecting(n - 1, 0));
        assert!(worth_collecting(n, 0));
        assert!(!worth_collecting(10_000, 10_000 - n + 1));
        assert!(worth_collecting(10_000, 10_000 - n));
        assert!(!worth_collecting(0, 0));
    }

    #[test]
    fn collections_run_on_the_worker_whose_connections_closed() {
        let workers = may::config().get_workers().max(1);
        for worker in 0..workers {
            let (tx, rx) = std::sync::mpsc::channel();
            let on_worker = Builder::new().id(worker);
            // The loop never ends: the coroutine is left behind once it has reported.
            let _trimmer = may::go!(on_worker, move || {
                let home = std::thread::current().id();
                let mut nap = Nap::new(worker).expect("nap");
                let open = std::cell::Cell::new(TRIM_AFTER_CLOSED_CONNECTIONS);
                let reads = move || open.replace(0);
                trim_loop(&mut nap, Duration::from_millis(5), reads, || {
                    let _ = tx.send(std::thread::current().id() == home);
                });
            })
            .expect("spawn");
            let on_home = rx
                .recv_timeout(Duration::from_secs(5))
                .expect("a collection");
            assert!(on_home, "worker {worker} collected on another thread");
        }
    }
}
