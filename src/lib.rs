//! Gavel: an auction bidding HTTP API server, thread-per-core on stackful coroutines.
//!
//! Layers, top to bottom: `http` (bytes, limits, connections), `api` (routes, JSON, errors, the
//! only layer that decides status codes), `domain` (money, time, auction rules, the words for
//! bids, keys and pages; no IO), `storage` (queries by resource, migrations, the PostgreSQL
//! protocol) and `cache` (the Redis fast path and the RESP protocol), both on `pipeline` (one
//! pipelined connection and self-healing client, for any in-order protocol). `metrics` is a
//! sink beside them: it implements the observers `http` and `pipeline` define and the API
//! reports into; `admin` serves it. `server` wires them together at start-up.

pub mod admin;
pub mod api;
pub mod cache;
pub mod calendar;
pub mod config;
pub mod domain;
pub mod fanout;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod http;
pub mod logging;
pub mod lossy;
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
