//! One worker's request context, and what every handler uses of it.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use super::auth::{Auth, Caller};
use super::error::ApiError;
use super::live::Subscribers;
use crate::cache::BidCache;
use crate::domain::time::Timestamp;
use crate::http::{Request, Response};
use crate::metrics::WorkerMetrics;
use crate::placement::WorkerId;
use crate::storage::Store;

/// What one worker's request handlers share: its own database connections and cache client.
pub struct WorkerContext {
    pub worker: WorkerId,
    pub store: Store,
    /// `None` when Redis is off.
    pub cache: Option<BidCache>,
    /// `None` when no secret is configured: the server runs open.
    pub auth: Option<Arc<Auth>>,
    /// The worker's metrics slot; `None` when metrics are off.
    pub metrics: Option<&'static WorkerMetrics>,
    /// The worker's live-update streams.
    pub live: Arc<Subscribers>,
    /// Set once a stop was asked for: `/ready` answers 503 while requests are still served, so
    /// that a load balancer stops sending new ones before the listener closes. One flag for the
    /// whole process, read once per `/ready`.
    pub draining: Arc<AtomicBool>,
}

pub(super) type ApiResult = Result<Response, ApiError>;

pub(crate) fn now() -> Timestamp {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    Timestamp::from_unix_micros(micros)
}

pub(super) fn json_response(status: u16, write: impl FnOnce(&mut Vec<u8>)) -> Response {
    let mut body = Vec::with_capacity(512);
    write(&mut body);
    Response::json(status, body)
}

/// The verified caller of a POST, or `None` when the server runs open.
pub(super) fn caller(ctx: &WorkerContext, req: &Request<'_>) -> Result<Option<Caller>, ApiError> {
    ctx.auth
        .as_ref()
        .map(|auth| auth.verify(req.header("authorization")))
        .transpose()
}
