//! The PostgreSQL client: pipelined connections on may coroutines.
//!
//! A [`Client`] belongs to one worker. It holds one [`Connection`] whose reader and writer
//! coroutines run on that worker; any number of coroutines send requests through it at once.
//! Their bytes are batched into one write and their replies come back in order. When the
//! connection breaks, requests fail fast with [`PgError::Unavailable`] while one coroutine
//! reconnects with backoff.
//!
//! Statements are prepared once per connection from a static list ([`StatementDef`]) and run by
//! naming them with binary parameters and results. Their parameter and result types must be built-in
//! PostgreSQL types (cast enums and domains to text in SQL).
//!
//! A request is one Bind/Execute/Sync (or one simple Query) and is its own transaction: other
//! coroutines' requests interleave on the same connection, so a transaction can never span
//! requests. A multi-statement `simple_query` already runs as one transaction; an explicit
//! BEGIN must be committed within the same `simple_query`. A request that leaves the session
//! inside a transaction block (or failed inside one) resets the connection, which rolls it back.
//!
//! The connection and the self-healing client are the shared ones of [`crate::pipeline`], which
//! also says how they keep to their worker; this module supplies the protocol.
//!
//! Every bound and timeout is in [`limits`].

mod auth;
mod client;
mod codec;
mod config;
mod conn;
mod demux;
mod error;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz;
pub mod limits;
mod notify;
mod row;

pub use client::Client;
pub use config::{Config, SessionAttrs};
pub use conn::{Connection, Postgres, StatementDef, Statements, Target, READ_ONLY_SQL_TRANSACTION};
pub use error::PgError;
pub use notify::{Notification, Notifications, MAX_PENDING_NOTIFICATIONS};
pub use postgres_types::{FromSql, ToSql, Type};
pub use row::Row;
