//! Every bound and timeout of the PostgreSQL client, in one place so they can be reviewed together.

/// Requests accepted on one connection and not yet answered. A worker's HTTP connections rarely
/// have more than a few hundred statements outstanding at once; past 1024 the server is falling
/// behind and queuing more only adds latency (and memory), so callers get `Busy` and answer 503.
pub const MAX_IN_FLIGHT: usize = 1024;

/// Largest backend message accepted. Gavel's rows are a few KiB; 16 MiB leaves room for
/// migration output while a corrupted length word can never make the reader allocate gigabytes.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Rows one reply may carry. Gavel's queries are paged far below this; the bound keeps one
/// accidental unbounded SELECT from holding a worker's memory hostage.
pub const MAX_ROWS_PER_REPLY: usize = 100_000;

/// Initial read buffer: one read usually takes in the replies of many pipelined requests.
pub const READ_BUFFER_BYTES: usize = 16 * 1024;

/// Most bytes zero-filled for a single read, so a buffer that once grew for a big message does
/// not cost a large memset on every later read.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Buffers that grew past this for one large message are released afterwards, so a single big
/// reply does not pin memory for the life of the connection.
pub const RETAINED_BUFFER_BYTES: usize = 256 * 1024;

/// First pause after a failed reconnection attempt: short enough that a restarted server is
/// picked up almost at once, long enough not to spin on a refused port.
pub const RECONNECT_BACKOFF_MIN_MILLIS: u64 = 50;

/// Longest pause between reconnection attempts: a server back from a long outage is in use again
/// within 2 s, while a dead one costs one attempt every 2 s per worker.
pub const RECONNECT_BACKOFF_MAX_MILLIS: u64 = 2_000;

/// Default bound on TCP connect plus start-up and authentication, when the URL has no
/// `connect_timeout`. A healthy local server answers in milliseconds.
pub const DEFAULT_CONNECT_TIMEOUT_SECS: u64 = 5;

/// Default server-side `statement_timeout`: a bid must never wait on a runaway statement for
/// longer than this; the server cancels it (SQLSTATE 57014).
pub const DEFAULT_STATEMENT_TIMEOUT_MILLIS: u64 = 5_000;

/// Default `query_timeout` is the statement timeout plus this margin, so that the server's own
/// cancellation (a precise 57014) normally arrives before the client gives up waiting.
pub const QUERY_TIMEOUT_MARGIN_MILLIS: u64 = 1_000;

/// A write that makes no progress for this long means the server stopped reading: the
/// connection is declared broken instead of holding every queued request.
pub const WRITE_TIMEOUT_MILLIS: u64 = 10_000;

/// How often an idle reader wakes to check for a stalled server; cheap, and bounds how late a
/// stall is noticed.
pub const READER_POLL_MILLIS: u64 = 1_000;

/// With requests outstanding and no byte received for `query_timeout` plus this grace, the
/// server is considered stalled (stopped process, black-holed network): every waiting caller has
/// already timed out, so the connection is dropped and the client reconnects.
pub const STALL_GRACE_MILLIS: u64 = 2_000;

/// TCP keepalive idle time: notices a peer that vanished without a FIN (host crash, NAT drop) on
/// an otherwise idle connection.
pub const KEEPALIVE_IDLE_SECS: u64 = 30;

/// TCP keepalive probe interval once probing has started.
pub const KEEPALIVE_INTERVAL_SECS: u64 = 10;

/// Stack of the reader, writer and reconnect coroutines, in machine words (may's unit). SCRAM's
/// key derivation and message parsing run on it, with headroom for debug builds' larger frames.
pub const COROUTINE_STACK_WORDS: usize = 16 * 1024;
