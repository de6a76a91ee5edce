//! The Redis client: pipelined connections on may coroutines.
//!
//! A [`Client`] belongs to one worker. It holds one [`Connection`] whose reader and writer
//! coroutines run on that worker; any number of coroutines send commands through it at once.
//! Their bytes are batched into one write and their replies come back in order. When the
//! connection breaks, commands fail fast with [`CacheError::Unavailable`] while one coroutine
//! reconnects with backoff; [`Client::generation`] tells callers that a reconnection happened,
//! since the server may have restarted empty.
//!
//! Redis is a cache here, so every bound favours failing early (a 50 ms default command
//! timeout, stall detection, `Busy` past a fixed number of commands in flight): the caller then
//! reads from PostgreSQL. Commands are built and encoded with `redis::cmd` and replies are
//! `redis::Value`s; the `redis` crate's own connections are not used. Every command must get
//! exactly one reply, so blocking, subscribing and `CLIENT REPLY` commands are not for this
//! client. An error reply fails only its own command ([`CacheError::Server`]); bytes that do not
//! follow RESP2, a RESP3 push or a reply over `MAX_REPLY_BYTES` break the connection.
//!
//! The connection and the self-healing client are the shared ones of [`crate::pipeline`], which
//! also says how they keep to their worker; this module supplies the protocol.
//!
//! Every bound and timeout is in [`limits`].

#[allow(clippy::module_inception)]
mod client;
mod config;
mod conn;
mod error;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz;
pub mod limits;
mod resp;

pub use client::Client;
pub use config::RedisConfig;
pub use conn::{Connection, Resp};
pub use error::CacheError;
