//! HTTP/1.1 server layer: turns bytes on a socket into [`Request`]s for a [`Service`] and its
//! [`Response`]s back into bytes.
//!
//! It knows nothing about auctions. It enforces the protocol limits below, runs keep-alive and
//! pipelined connections with deadlines, answers CORS preflights, compresses large bodies, and
//! shuts down gracefully. Status codes and bodies of errors are never decided here: the layer
//! reports an [`HttpError`] to [`Service::error`] and writes whatever that returns.
//!
//! Layout: the codec (`head`, `chunked`, `parser`, `encode`, `gzip`, `cors`, `date`) is pure, no
//! IO, with unit tests beside it; `buffer` is the bounded read buffer; `conn` does a connection's
//! socket IO and deadlines, and sees its server only through `link`; `parking` holds a worker's
//! idle connections without a coroutine. `server` starts and stops a server: `listen` (listeners
//! and acceptors), `runtime` (spawning and running connections), `parker` (a worker's parked
//! connections), `shared` (per-worker state, the registry and its drop guards). What the layer
//! reports goes to an `observe::Observer`.
//!
//! `HEAD` requests reach the service with method `"HEAD"`; the service may treat them like `GET`.
//! The layer then drops the body but keeps the `Content-Length` (and encoding) the body would have
//! had.

mod buffer;
mod chunked;
mod conn;
mod cors;
mod date;
mod encode;
mod epoll;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz;
mod gzip;
mod head;
mod link;
mod listen;
#[cfg(any(test, feature = "fuzzing"))]
pub mod memory;
mod message;
mod observe;
mod parker;
mod parking;
mod parser;
pub mod request_id;
mod runtime;
mod server;
mod service;
mod shared;
pub mod sse;
pub mod stream;
mod transport;

pub use cors::Cors;
pub use message::{Header, HttpError, Request, Response, UNROUTED};
pub use observe::{Observer, Observers};
pub use server::{serve, ConnectionCounts, Server, ServerConfig};
pub use service::Service;
pub use stream::{Cut, OpenStream, Ready, Sent, StreamWatch};

/// Longest request line (method, target, version; without its CRLF). 8 KiB is the usual server
/// default and far above any Gavel URL, while bounding what a client can make us buffer before the
/// request is even recognised.
pub const MAX_REQUEST_LINE_BYTES: usize = 8 * 1024;

/// Longest request method the layer passes on. The longest methods of RFC 9110 §9 (`OPTIONS`,
/// `CONNECT`) have 7 bytes and Gavel serves none longer, so a longer method is answered 501 as
/// soon as its eighth byte arrives, instead of being buffered up to the request-line limit.
pub const MAX_METHOD_BYTES: usize = 7;

/// Largest header section: the header lines after the request line, each with its line end, not
/// the empty line that ends the head (API.md's count). Real clients (cookies, bearer tokens) stay well under 8 KiB; 16 KiB leaves
/// headroom while keeping per-connection memory bounded. Chunked trailers share this budget.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Most header lines in one request (trailers included). Bounds the fixed-size header table the
/// parser keeps on the coroutine stack and the per-request work of header lookups.
pub const MAX_HEADER_LINES: usize = 64;

/// Largest request body, decided from `Content-Length` before reading it (or while decoding a
/// chunked body). Gavel's JSON bodies are a few KiB; 64 KiB leaves room without letting one
/// connection pin much memory.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Longest chunk-size line of a chunked body, extensions included. A size needs at most 16 hex
/// digits and the extensions are ignored, so 1 KiB is generous and bounds what we hold while
/// waiting for the line's end.
pub const MAX_CHUNK_LINE_BYTES: usize = 1024;

/// Most chunk framing (size lines with their extensions, and the CRLF after each chunk's data)
/// in one chunked body, apart from its trailers. The body limit counts decoded bytes only, so
/// this bounds what a client may add around them: four times the body limit lets a full 64 KiB
/// body come in chunks of 2 bytes (5 framing bytes each), while a real client's chunks are KiBs.
/// Framing passed is cut out of the buffer, so this bounds work and time, not memory.
pub const MAX_CHUNK_FRAMING_BYTES: usize = 4 * MAX_BODY_BYTES;

/// Empty lines tolerated before a request line. RFC 9112 §2.2 asks servers to skip at least one
/// (some clients send CRLF after a body); more than a few is garbage, not a request.
pub const MAX_LEADING_EMPTY_BYTES: usize = 16;

/// Time allowed for a request's head, counted from its first byte: a slow-loris client must not
/// hold a connection and its buffer indefinitely, while a real client on a bad link sends a head
/// within a second or two.
pub const HEADER_TIMEOUT_SECS: u64 = 10;

/// Time allowed for a request body once its head has arrived; same reasoning as the head: the
/// largest body is 64 KiB, which any live client sends in well under ten seconds.
pub const BODY_TIMEOUT_SECS: u64 = 10;

/// Default time a keep-alive connection may sit between requests before it is closed silently.
/// A minute lets browsers and load balancers reuse connections without holding idle sockets for
/// long.
pub const IDLE_TIMEOUT_SECS: u64 = 60;

/// Default time a connection waits for its next request in its own coroutine before it gives the
/// coroutine (and its stack) up and waits in its worker's parking lot instead. Clients that keep a
/// connection busy send their next request well within a second, so they never pay for parking;
/// connections idle longer cost a few hundred bytes instead of several stack pages.
pub const PARK_AFTER_MILLIS: u64 = 1000;

/// Time allowed to hand one batch of responses to the kernel: a client that stops reading must
/// not pin its output buffer (and its coroutine) forever.
pub const WRITE_TIMEOUT_SECS: u64 = 10;

/// Smallest response body worth compressing. Below 1 KiB the gzip header and CPU cost outweigh
/// the bytes saved.
pub const GZIP_MIN_BYTES: usize = 1024;

/// Compressors each worker builds at start. Its connections run one at a time on its thread and
/// compressing never yields, so one is busy at a time; the second covers one of its connections
/// that a wake-up from another thread left running there for a moment. A response finding none
/// free is sent uncompressed. Each costs a few hundred KiB, so the count stays small.
pub const GZIP_COMPRESSORS_PER_WORKER: usize = 2;

/// Pending-connection queue length requested for each listener. Large enough to absorb accept
/// bursts of a load test or a reconnect storm; the kernel caps it at `net.core.somaxconn`.
pub const LISTEN_BACKLOG: i32 = 4096;

/// Stack of each connection coroutine, which also runs the service. Measured in an unoptimised
/// build: the layer's own request path peaks near 22 KiB, gzip of a response near 140 KiB, and
/// serde_json refusing a 10 000-deep array (it stops at depth 128) near 215 KiB; optimised builds
/// need a fraction of that. 512 KiB leaves twice the worst of those. The stack is reserved address
/// space: only pages a connection actually touches become resident, so the size does not add to
/// the memory of connections that never run deep code.
pub const CONN_STACK_BYTES: usize = 512 * 1024;

/// Stack of the acceptor, parker and sweeper coroutines: they only move sockets between
/// structures and make syscalls, which fits in a few KiB; 64 KiB covers an unoptimised build.
pub const HOUSEKEEPING_STACK_BYTES: usize = 64 * 1024;

/// Read buffer size for a connection while it parses a request. Almost every request fits, so
/// a connection mostly never allocates more.
pub const READ_BUFFER_INITIAL_BYTES: usize = 4 * 1024;

/// Extra room in the read buffer beyond line + headers + body: covers the request line's CRLF,
/// tolerated leading empty lines and one partial chunk-size line.
pub const READ_BUFFER_SLACK_BYTES: usize = 2 * 1024;

/// Hard cap on a connection's read buffer: the largest request the limits admit, so no client can
/// make it grow further whatever it sends.
pub const READ_BUFFER_MAX_BYTES: usize =
    MAX_REQUEST_LINE_BYTES + MAX_HEADER_BYTES + MAX_BODY_BYTES + READ_BUFFER_SLACK_BYTES;

/// Pipelined responses are collected and written together; past this size they are written
/// before the next request is parsed, so a pipelining client cannot grow the output buffer
/// without bound.
pub const WRITE_BATCH_MAX_BYTES: usize = 64 * 1024;

/// After an error response the connection is closed; unread input at close time makes the kernel
/// send a reset that can destroy the response before the client reads it. So the input is read
/// and discarded for at most this long first.
pub const LINGER_TIMEOUT_MILLIS: u64 = 2000;

/// Upper bound on input discarded while lingering (see [`LINGER_TIMEOUT_MILLIS`]): enough to
/// swallow a refused multi-MiB upload, small enough to cap the work a client can demand.
pub const LINGER_MAX_BYTES: usize = 4 * 1024 * 1024;

/// Shortest nap of a parking lot's sweeper between two looks at its deadlines, so that a
/// deadline just reached never makes it spin.
pub const SWEEP_NAP_MIN_MILLIS: u64 = 1;

/// Pause after `accept` fails for lack of descriptors or memory, so the acceptor does not spin
/// while the condition lasts.
pub const ACCEPT_BACKOFF_MILLIS: u64 = 50;

/// How often [`Server::shutdown`] rechecks the open-connection counters while draining.
pub const SHUTDOWN_POLL_MILLIS: u64 = 5;
