//! The entry points of the fuzz targets (`fuzz/`), one for each parser that reads outside
//! input. Each takes arbitrary bytes and panics only when one of its oracles is broken; the
//! oracles live beside their parsers, whose property tests run them on stable in `cargo test`.

pub use crate::api::fuzz::{json_bodies, money_and_time as money, query};
pub use crate::cache::client::fuzz::resp;
pub use crate::http::fuzz::{chunked, connection, head};
pub use crate::storage::pg::fuzz::messages as pg_messages;
