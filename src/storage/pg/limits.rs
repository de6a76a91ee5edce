//! Every bound and timeout of the PostgreSQL client, in one place so they can be reviewed together.

use crate::pipeline::Limits;

/// Largest backend message accepted. Gavel's rows are a few KiB; 16 MiB leaves room for
/// migration output while a corrupted length word can never make the reader allocate gigabytes.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Rows one reply may carry. Gavel's queries are paged far below this; the bound keeps one
/// accidental unbounded SELECT from holding a worker's memory hostage.
pub const MAX_ROWS_PER_REPLY: usize = 100_000;

/// Default bound on TCP connect plus start-up and authentication, when the URL has no
/// `connect_timeout`. A healthy local server answers in milliseconds.
pub const DEFAULT_CONNECT_TIMEOUT_SECS: u64 = 5;

/// Default server-side `statement_timeout`: a bid must never wait on a runaway statement for
/// longer than this; the server cancels it (SQLSTATE 57014).
pub const DEFAULT_STATEMENT_TIMEOUT_MILLIS: u64 = 5_000;

/// Default `query_timeout` is the statement timeout plus this margin, so that the server's own
/// cancellation (a precise 57014) normally arrives before the client gives up waiting.
pub const QUERY_TIMEOUT_MARGIN_MILLIS: u64 = 1_000;

/// The bounds of the pipelined connection and its client: the pipeline's defaults, which were
/// chosen for this client (requests past 1024 in flight get `Busy` and answer 503; a stalled
/// server is noticed within `query_timeout` plus 2 s; SCRAM's key derivation runs on the
/// coroutines' 128 KiB stacks).
pub const LIMITS: Limits = Limits::DEFAULT;
