//! What a protocol supplies to the pipeline, and what the pipeline reports.

use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::error::{Failure, LinkFailure};
use super::handshake::{Endpoint, Handshake};
use super::limits::Limits;

/// A request/reply protocol whose replies arrive in request order.
pub trait Protocol: Send + Sync + Sized + 'static {
    /// Names the link's coroutines ("pg-reader", "redis-reconnect", ...).
    const NAME: &'static str;
    const LIMITS: Limits;
    /// What a client needs to (re)connect.
    type Config: Send + Sync + 'static;
    /// What the handshake learned, kept for the link's life.
    type Session: Send + Sync + 'static;
    /// Also names the protocol's requests and errors.
    type Decoder: Decoder;

    /// Where to connect, tried in order at every (re)connection until one takes; at least one.
    fn endpoints(cfg: &Self::Config) -> Vec<Endpoint<'_>>;

    /// Whether a failure to connect to one endpoint lets the next be tried (it could not be
    /// reached, or is not the kind of server wanted), rather than ending the attempt (a wrong
    /// password is wrong everywhere).
    fn try_next(_e: &ErrorOf<Self>) -> bool {
        true
    }

    /// Whether an answer on an open link means its server is no longer one to use (a primary
    /// turned standby): the link is then given up and the client reconnects.
    fn abandons(_e: &ErrorOf<Self>) -> bool {
        false
    }

    /// Everything between the TCP connection and the first request, bounded by the handshake's
    /// deadline.
    fn handshake(cfg: &Self::Config, hs: &mut Handshake) -> Result<Self::Session, ErrorOf<Self>>;

    /// Bytes queued last when the owner closes the link, so that the server ends the session
    /// cleanly instead of logging an unexpected end of stream.
    fn farewell(_out: &mut Vec<u8>) {}

    /// The decoder of a new link's replies.
    fn decoder(_cfg: &Self::Config) -> Self::Decoder {
        Self::Decoder::default()
    }
}

/// A protocol's error type.
pub type ErrorOf<P> = <<P as Protocol>::Decoder as Decoder>::Error;

/// A protocol's waiting request.
pub type RequestOf<P> = <<P as Protocol>::Decoder as Decoder>::Request;

/// Turns the bytes the server sent into replies, oldest request first. IO-free.
pub trait Decoder: Default + Send + 'static {
    /// A waiting request: where its reply goes.
    type Request: Send + 'static;
    type Error: LinkFailure;

    /// Answers a waiting request with `e`. A caller that already timed out is simply not there.
    fn fail(request: Self::Request, e: Self::Error);

    /// Handles every complete reply at the front of `buf`, removing its bytes. `next` takes the
    /// oldest request still waiting; `completed` counts the requests answered. An error means
    /// the stream can no longer be followed: the link breaks.
    fn decode(
        &mut self,
        buf: &mut BytesMut,
        next: &mut dyn FnMut() -> Option<Waiting<Self::Request>>,
        completed: &mut usize,
    ) -> Result<(), Self::Error>;

    /// A request taken from the queue and not yet answered (its reply is partly in, or its
    /// bytes were found broken).
    fn in_progress(&self) -> Option<&Waiting<Self::Request>>;

    /// The link broke: answers the request in progress, if any, and says whether there was one.
    fn fail_in_progress(&mut self, e: Self::Error) -> bool;
}

/// A request whose bytes are queued or sent and whose reply has not arrived.
pub struct Waiting<R> {
    pub request: R,
    pub sent_at: Instant,
    /// How long its caller waits. With the protocol's stall grace it is how long the server may
    /// stay silent behind this request before the link is declared stalled.
    pub patience: Duration,
}

impl<R> Waiting<R> {
    pub fn new(request: R, patience: Duration) -> Waiting<R> {
        Waiting {
            request,
            sent_at: Instant::now(),
            patience,
        }
    }
}

/// Told of every call a client makes; for metrics. Called on the caller's coroutine, so it must
/// be cheap and must not block.
pub trait Observer: Send + Sync {
    /// The server answered (a success or its own error reply) after `took`.
    fn answered(&self, took: Duration);
    /// The call failed; `Failure::Server` is reported both here and as an answer.
    fn failed(&self, kind: Failure);
    /// A link replaced a broken one.
    fn reconnected(&self);
}
