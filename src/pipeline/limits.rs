//! The bounds a protocol gives its links. Each protocol names and explains its values in its
//! own `limits.rs`; this is only their common shape.

/// Every bound and timeout of one protocol's links and clients.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Requests accepted on one link and not yet answered; past it callers get `Busy`.
    pub max_in_flight: usize,
    /// Initial read and write buffers.
    pub read_buffer_bytes: usize,
    /// Most bytes zero-filled for one read.
    pub read_chunk_bytes: usize,
    /// Buffers that grew past this for one large message are released afterwards.
    pub retained_buffer_bytes: usize,
    /// How often an idle reader wakes to look for a stalled server.
    pub reader_poll_millis: u64,
    /// A write that makes no progress for this long breaks the link.
    pub write_timeout_millis: u64,
    /// Silence tolerated behind the oldest request past its caller's own timeout.
    pub stall_grace_millis: u64,
    /// TCP keepalive idle time and probe interval.
    pub keepalive_idle_secs: u64,
    pub keepalive_interval_secs: u64,
    /// First and longest pause between reconnection attempts.
    pub reconnect_backoff_min_millis: u64,
    pub reconnect_backoff_max_millis: u64,
    /// Stack of the reader, writer and reconnect coroutines, in machine words (may's unit).
    pub coroutine_stack_words: usize,
}

impl Limits {
    /// The values both of Gavel's servers (PostgreSQL and Redis, on loopback or a LAN) are well
    /// served by; a protocol's `LIMITS` sets the rest and may override these.
    pub const DEFAULT: Limits = Limits {
        // A worker rarely has more than a few hundred requests outstanding at once; past 1024 the
        // server is falling behind and queuing more only adds latency (and memory).
        max_in_flight: 1024,
        // One read usually takes in the replies of many pipelined requests.
        read_buffer_bytes: 16 * 1024,
        // A buffer that once grew for a big reply does not cost a large memset on every later read.
        read_chunk_bytes: 64 * 1024,
        // A single big reply does not pin memory for the life of the connection.
        retained_buffer_bytes: 256 * 1024,
        // Cheap, and bounds how late a stall is noticed.
        reader_poll_millis: 1_000,
        // A write that makes no progress for this long means the server stopped reading.
        write_timeout_millis: 10_000,
        // Far beyond any healthy pause of a server that is still answering.
        stall_grace_millis: 2_000,
        // Notices a peer that vanished without a FIN (host crash, NAT drop) on an idle connection.
        keepalive_idle_secs: 30,
        keepalive_interval_secs: 10,
        // A restarted server is picked up almost at once, and a refused port is not spun on.
        reconnect_backoff_min_millis: 50,
        // A server back from a long outage is in use again within 2 s; a dead one costs one attempt
        // every 2 s per worker.
        reconnect_backoff_max_millis: 2_000,
        // 128 KiB: parsing and authentication with headroom for debug builds' larger frames.
        coroutine_stack_words: 16 * 1024,
    };
}
