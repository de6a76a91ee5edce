//! The self-healing Redis client: the pipeline's [`crate::pipeline::Client`] with Redis's calls.

use std::time::Duration;

use redis::{Cmd, Value};

use super::config::RedisConfig;
use super::conn::{Connection, Resp};
use super::error::CacheError;
use crate::metrics::Backend;
use crate::pipeline;
use crate::placement::WorkerId;

/// One worker's connection to Redis. While the connection is down, commands fail at once with
/// `Unavailable` and a single background coroutine on the worker reconnects with exponential
/// backoff; no call ever waits for it. [`pipeline::Client::generation`] tells callers that a
/// reconnection happened, since the server may have restarted empty.
pub type Client = pipeline::Client<Resp>;

/// Every coroutine of a worker shares the client and what it hands out.
const _: () = pipeline::shareable::<(Client, Connection, RedisConfig, CacheError)>();

impl pipeline::Client<Resp> {
    /// Starts connecting in the background on `worker` and returns at once.
    pub fn new(cfg: RedisConfig, worker: impl Into<WorkerId>) -> Client {
        let worker = worker.into();
        Client::start(
            cfg,
            worker,
            crate::metrics::observer(worker.index(), Backend::Redis),
        )
    }

    /// Runs `cmd` and waits up to the configured command timeout for its reply.
    pub fn query(&self, cmd: &Cmd) -> Result<Value, CacheError> {
        self.with(|conn| conn.query(cmd))
    }

    /// Runs `cmd` and waits up to `timeout` for its reply.
    pub fn query_timeout(&self, cmd: &Cmd, timeout: Duration) -> Result<Value, CacheError> {
        self.with(|conn| conn.query_timeout(cmd, timeout))
    }

    /// Queues `cmd` and returns at once; its reply is read and discarded.
    pub fn send(&self, cmd: &Cmd) -> Result<(), CacheError> {
        self.with(|conn| conn.send(cmd))
    }
}
