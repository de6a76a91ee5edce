//! Gavel: an auction bidding HTTP API server, thread-per-core on stackful coroutines.
//!
//! Layers, top to bottom: `http` (bytes, limits, connections), `api` (routes, JSON, errors),
//! `domain` (money, time, auction rules; no IO), `storage` (PostgreSQL client, queries, migrations).
//! `metrics` is beside them: per-worker counters any layer records into, and the admin listener.

pub mod api;
pub mod cache;
pub mod calendar;
pub mod config;
pub mod domain;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod http;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod pipeline;
pub mod placement;
pub mod server;
pub mod sockets;
pub mod storage;
#[cfg(test)]
mod testing;
pub mod token;
pub mod url;
