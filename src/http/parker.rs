//! A worker's parker and sweeper: connections idle in the worker's parking lot get a coroutine
//! again when input arrives, and are closed when their idle timeout passes.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use may::io::{CoIo, WaitIo};

use super::runtime::{spawn_connection, Parked, Runtime};
use super::service::Service;
use super::SWEEP_NAP_MIN_MILLIS;
use crate::placement::Nap;

/// `worker`'s parker: gives connections in its lot whose socket became readable a coroutine on
/// the worker again; on shutdown, closes every connection parked there and exits. `waiter`
/// resumes it on `worker`.
pub(super) fn run_parker<S, F>(rt: &Arc<Runtime<S, F>>, worker: usize, waiter: &CoIo<OwnedFd>)
where
    S: Service + Send + 'static,
    F: Fn(usize) -> S + Send + Sync + 'static,
{
    let lot = &rt.lots[worker];
    loop {
        waiter.wait_io();
        if rt.shared.draining() {
            drop(lot.close());
            return;
        }
        for Parked {
            tracked, service, ..
        } in lot.ready()
        {
            spawn_connection(rt, tracked, Some(service));
        }
    }
}

/// `worker`'s sweeper: closes connections in its lot whose idle timeout has passed. It naps
/// (on `worker`, see [`Nap`]) until the oldest deadline, or for the park delay when the lot is
/// empty: a connection parked meanwhile has a deadline at least that far away.
pub(super) fn run_sweeper<S, F>(rt: &Runtime<S, F>, worker: usize, nap: &mut Nap) {
    let lot = &rt.lots[worker];
    let nap_max = rt.shared.timeouts.park;
    loop {
        let now = Instant::now();
        let (expired, next) = lot.expire(now);
        drop(expired);
        if rt.shared.draining() {
            return;
        }
        let until_next = next.map_or(nap_max, |at| at.saturating_duration_since(now));
        nap.sleep(until_next.clamp(Duration::from_millis(SWEEP_NAP_MIN_MILLIS), nap_max));
    }
}
