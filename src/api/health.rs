//! Liveness is answered by the route table; readiness asks PostgreSQL and Redis.

use super::context::{ApiResult, WorkerContext};
use super::error;
use crate::cache::{BidCache, CacheStatus};
use crate::http::Response;
use std::sync::atomic::Ordering;

pub(super) fn ready(ctx: &WorkerContext) -> ApiResult {
    // Draining: "unavailable", the contract's word for a server not to send requests to.
    let draining = ctx.draining.load(Ordering::Relaxed);
    let postgres_up = ctx.store.answers();
    let redis = match ctx.cache.as_ref().map(BidCache::status) {
        None => "disabled",
        Some(CacheStatus::Up) => "up",
        Some(CacheStatus::Down) => "down",
    };
    let (code, status) = match (postgres_up, redis) {
        _ if draining => (503, "unavailable"),
        (false, _) => (503, "unavailable"),
        (true, "up") => (200, "ready"),
        (true, _) => (200, "degraded"),
    };
    let postgres = if postgres_up { "up" } else { "down" };
    let body = format!(r#"{{"status":"{status}","postgres":"{postgres}","redis":"{redis}"}}"#);
    let mut resp = Response::json(code, body.into_bytes());
    if code == 503 {
        resp.header("Retry-After", error::RETRY_AFTER_SECS.to_string());
    }
    Ok(resp)
}
