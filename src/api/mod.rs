//! API: routes, request decoding, handlers and error answers. Every answer's status code is
//! decided here (`error.rs` for every error, the handlers for their successes); no layer below
//! chooses one.
//!
//! Layout: `service` (the service: routing, route labels, metric label sets), `context` (a
//! worker's context and what handlers use of it), `routes` (the route table),
//! one file per resource (`health`, `auctions`, `bids`), `fields` (request bodies and their
//! fields), `query` (query strings), `write` (JSON answers), `error` (every error answer),
//! `auth`, `idempotency`, and `report` (what handlers count in the metrics).

pub mod auctions;
pub mod auth;
pub mod bids;
pub mod context;
pub mod error;
pub mod events;
pub mod fields;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz;
pub mod health;
pub mod idempotency;
pub mod live;
mod query;
pub mod report;
pub mod routes;
pub mod service;
pub mod write;

pub use context::WorkerContext;
pub use routes::{RouteSpec, OPENAPI_JSON, ROUTES};
pub use service::{metric_labels, Api};

/// Page size bounds of API.md: auctions 1–200 (default 50), bids 1–500 (default 50).
pub const MAX_AUCTION_PAGE: i64 = 200;
pub const MAX_BID_PAGE: i64 = 500;
pub const DEFAULT_PAGE: i64 = 50;
