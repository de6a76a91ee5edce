//! Every bound and timeout of the Redis client, in one place so they can be reviewed together.
//!
//! Redis is a cache here: whenever it is slow or gone, callers go to PostgreSQL instead. So the
//! values below favour giving up early over waiting.

/// Commands accepted on one connection and not yet answered. Redis spends roughly 10 µs on a
/// typical command, so 1024 queued is already about 10 ms of its work; beyond that the newest
/// command would come close to the command timeout anyway, so callers get `Busy` at once and
/// read from PostgreSQL.
pub const MAX_IN_FLIGHT: usize = 1024;

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

/// With commands outstanding and no byte received for the oldest one's timeout plus this grace,
/// the server is considered stalled (stopped process, black-holed network, a script stuck for
/// long): the connection is dropped so that callers fail fast with `Unavailable` instead of each
/// waiting out its timeout. Half a second is far beyond any healthy pause of a cache server.
pub const STALL_GRACE_MILLIS: u64 = 500;

/// How often an idle reader wakes to check for a stalled server: bounds how late a stall is
/// noticed, at the cost of ten timer wake-ups a second per connection.
pub const READER_POLL_MILLIS: u64 = 100;

/// A write that makes no progress for this long means the server stopped reading. Stall detection
/// usually notices first; this bound only keeps the writer from waiting forever.
pub const WRITE_TIMEOUT_MILLIS: u64 = 1_000;

/// First pause after a failed reconnection attempt: short enough that a restarted server is
/// picked up almost at once, long enough not to spin on a refused port.
pub const RECONNECT_BACKOFF_MIN_MILLIS: u64 = 50;

/// Longest pause between reconnection attempts: a cache back from an outage is in use again
/// within a second, while a dead one costs one attempt a second per worker.
pub const RECONNECT_BACKOFF_MAX_MILLIS: u64 = 1_000;

/// Initial read buffer: one read usually takes in the replies of many pipelined commands.
pub const READ_BUFFER_BYTES: usize = 16 * 1024;

/// Most bytes zero-filled for a single read, so a buffer that once grew for a big reply does not
/// cost a large memset on every later read.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Buffers that grew past this for one large reply or batch are released afterwards, so a single
/// big value does not pin memory for the life of the connection.
pub const RETAINED_BUFFER_BYTES: usize = 256 * 1024;

/// TCP keepalive idle time: notices a peer that vanished without a FIN (host crash, NAT drop) on
/// an otherwise idle connection.
pub const KEEPALIVE_IDLE_SECS: u64 = 30;

/// TCP keepalive probe interval once probing has started.
pub const KEEPALIVE_INTERVAL_SECS: u64 = 10;

/// Stack of the reader, writer and reconnect coroutines, in machine words (may's unit): 512 KiB.
/// A reply nested `MAX_REPLY_DEPTH` deep needs about 256 KiB of it to parse in a debug build
/// (optimised builds far less); the rest is headroom. Only the pages actually touched cost
/// memory.
pub const COROUTINE_STACK_WORDS: usize = 64 * 1024;
