//! Every bound and timeout of the Redis client, in one place so they can be reviewed together.
//!
//! Redis is a cache here: whenever it is slow or gone, callers go to PostgreSQL instead. So the
//! values below favour giving up early over waiting.

use crate::pipeline::Limits;

/// Largest reply accepted. Gavel caches auction documents and short bid lists of a few KiB; 1 MiB
/// leaves a wide margin, while a corrupted or hostile length can never make the reader allocate
/// more. A reply over it breaks the connection, since the bytes after it cannot be trusted.
pub const MAX_REPLY_BYTES: usize = 1024 * 1024;

/// Deepest nesting of arrays, maps and sets in one reply. Gavel's replies (HGETALL, script
/// results) nest one or two levels. `redis`'s parser recurses with large frames (about 30 KiB a
/// level in debug builds), so this bound, checked before parsing, is what keeps a reply from
/// overflowing the reader's stack.
pub const MAX_REPLY_DEPTH: usize = 8;

/// Default bound on TCP connect plus AUTH, SELECT and PING. A local Redis answers in well under a
/// millisecond; one that needs half a second to accept a connection is not worth waiting for, and
/// the bound also caps how long each reconnection attempt occupies its coroutine.
pub const DEFAULT_CONNECT_TIMEOUT_MILLIS: u64 = 500;

/// Default wait for one reply. A cache hit must cost less than the PostgreSQL read it saves
/// (a few milliseconds); 50 ms tolerates scheduling hiccups and a fork for a snapshot, and
/// past it the caller is better off asking PostgreSQL.
pub const DEFAULT_COMMAND_TIMEOUT_MILLIS: u64 = 50;

/// The bounds of the pipelined connection and its client. Redis is a cache: where it is slow,
/// the caller reads from PostgreSQL instead, so these give up far sooner than the defaults.
pub const LIMITS: Limits = Limits {
    // With commands outstanding and no byte received for the oldest one's timeout plus this grace,
    // the server is considered stalled (stopped process, black-holed network, a script stuck for
    // long): the connection is dropped so that callers fail fast with `Unavailable` instead of each
    // waiting out its timeout. Half a second is far beyond any healthy pause of a cache server.
    stall_grace_millis: 500,
    // Bounds how late a stall is noticed, at the cost of ten timer wake-ups a second per
    // connection.
    reader_poll_millis: 100,
    // Stall detection usually notices first; this bound only keeps the writer from waiting forever.
    write_timeout_millis: 1_000,
    // A cache back from an outage is in use again within a second, while a dead one costs one
    // attempt a second per worker.
    reconnect_backoff_max_millis: 1_000,
    // 512 KiB: a reply nested `MAX_REPLY_DEPTH` deep needs about 256 KiB of it to parse in a debug
    // build (optimised builds far less); the rest is headroom. Only the pages actually touched cost
    // memory.
    coroutine_stack_words: 64 * 1024,
    // Redis spends roughly 10 µs on a typical command, so 1024 queued (the default) is already
    // about 10 ms of its work; beyond that the newest command would come close to the command
    // timeout anyway, so callers get `Busy` at once and read from PostgreSQL.
    ..Limits::DEFAULT
};
