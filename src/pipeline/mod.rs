//! One pipelined connection and one self-healing client, for any request/reply protocol whose
//! replies come back in the order their requests were sent (PostgreSQL's extended query
//! protocol, RESP2).
//!
//! A [`Link`] belongs to one worker. Its reader and writer coroutines run on that worker; any
//! number of coroutines send requests through it at once. Requests queued while the writer is
//! busy go out together in its next write, and the reader hands each reply to the oldest request
//! still waiting. A [`Client`] keeps one link up: while it is down, calls fail at once with
//! [`LinkError::Unavailable`] and one coroutine reconnects with backoff.
//!
//! A [`Protocol`] supplies what differs: the handshake, how a request is encoded (a closure
//! given to [`Link::call`]), and a [`Decoder`] that turns bytes into replies and completes the
//! waiting requests. This module knows neither PostgreSQL nor Redis, nor what their callers
//! do; a client reports round trips, failures and reconnections to an [`Observer`].
//!
//! The ordering rules, which every protocol relies on:
//! 1. A request's bytes and its waiting slot are queued under one lock, so the reader meets
//!    replies in exactly the order their requests reach the socket.
//! 2. When the connection breaks (socket error, end of stream, bytes the decoder cannot follow,
//!    a stalled server), it is marked broken first, then every waiting request is answered with
//!    `Unavailable`, except the one the decoder was in the middle of, which gets the decoder's
//!    error. No request is ever answered twice or left waiting.
//! 3. A deliberate close (dropping the link) sends what is queued, then the protocol's farewell,
//!    and is not reported as a break.
//!
//! `worker` arguments are the index of the may worker that owns the link (the index given to
//! `may::coroutine::Builder::id`). may resumes a coroutine on the worker whose epoll watches the
//! socket it waited on (`fd % workers`), or on the worker of whoever woke it, so the reader and
//! writer sockets get descriptors that map to `worker`, and a caller is handed back to `worker`
//! after connecting and after a timeout.

mod client;
mod error;
mod handshake;
mod limits;
mod link;
mod protocol;
#[cfg(test)]
mod tests;

pub use client::Client;
pub use error::{Failure, LinkError, LinkFailure};
pub use handshake::{Endpoint, Handshake};
pub use limits::Limits;
pub use link::{Link, OnBreak};
pub use protocol::{Decoder, ErrorOf, Observer, Protocol, RequestOf, Waiting};

/// Compiles only for types that every coroutine of a worker can share; for `const` assertions.
pub const fn shareable<T: Send + Sync>() {}
