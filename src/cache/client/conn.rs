//! Redis on the pipeline: the handshake, reply decoding, and the calls of one connection. The
//! connection itself is the shared [`Link`].

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use may::sync::mpsc::Sender;
use redis::{Cmd, Value};

use super::config::RedisConfig;
use super::error::CacheError;
use super::limits::LIMITS;
use super::resp::{decode, Framer, Reply};
use crate::pipeline::{Decoder, Endpoint, Handshake, Link, Protocol, Waiting};
use crate::placement::WorkerId;

/// Where a command's reply goes; `None` for `send`: the reply is read and dropped.
pub type Request = Option<Sender<Reply>>;

/// RESP2 as the pipeline sees it.
pub struct Resp;

impl Protocol for Resp {
    const NAME: &'static str = "redis";
    const LIMITS: crate::pipeline::Limits = LIMITS;
    type Config = RedisConfig;
    type Session = Duration;
    type Decoder = RespDecoder;

    fn endpoints(cfg: &RedisConfig) -> Vec<Endpoint<'_>> {
        vec![Endpoint {
            host: &cfg.host,
            port: cfg.port,
            connect_timeout: cfg.connect_timeout,
        }]
    }

    /// Returns the command timeout, the patience of every `query` on this connection.
    fn handshake(cfg: &RedisConfig, hs: &mut Handshake) -> Result<Duration, CacheError> {
        handshake(hs, cfg)?;
        Ok(cfg.command_timeout)
    }
}

/// A caller that already timed out is simply not there any more.
fn complete(request: Request, reply: Reply) {
    if let Some(tx) = request {
        drop(tx.send(reply));
    }
}

/// One pipelined connection to Redis: many commands in flight, answered in order.
pub type Connection = Link<Resp>;

impl Link<Resp> {
    /// Connects, authenticates (AUTH, with the username when one is given), selects the
    /// database when it is not 0 and checks the server with PING, all within
    /// `cfg.connect_timeout`; then starts the reader and writer coroutines on `worker`.
    pub fn connect(
        cfg: &RedisConfig,
        worker: impl Into<WorkerId>,
    ) -> Result<Arc<Connection>, CacheError> {
        Link::open(cfg, worker.into(), None, None)
    }

    /// Runs `cmd` and waits up to the configured command timeout for its reply.
    pub fn query(&self, cmd: &Cmd) -> Result<Value, CacheError> {
        self.query_timeout(cmd, *self.session())
    }

    /// Runs `cmd` and waits up to `timeout` for its reply. After a timeout the command stays in
    /// the pipeline and its reply, when it comes, is dropped.
    pub fn query_timeout(&self, cmd: &Cmd, timeout: Duration) -> Result<Value, CacheError> {
        not_empty(cmd)?;
        self.call(|out| cmd.write_packed_command(out), Some, timeout)
    }

    /// Queues the command and returns at once; its reply, even an error reply, is read and
    /// discarded in order. For cache writes off the hot path. Not for slow or blocking commands:
    /// silence behind it for longer than the command timeout plus the stall grace (`LIMITS.stall_grace_millis`) counts as
    /// a stalled server.
    pub fn send(&self, cmd: &Cmd) -> Result<(), CacheError> {
        not_empty(cmd)?;
        self.send_request(|out| cmd.write_packed_command(out), None, *self.session())
    }
}

/// The server answers nothing to an empty command, which would shift every later reply onto the
/// wrong caller.
fn not_empty(cmd: &Cmd) -> Result<(), CacheError> {
    if cmd.args_iter().len() == 0 {
        return Err(CacheError::Protocol("empty command".into()));
    }
    Ok(())
}

/// Frames and decodes replies, oldest command first.
#[derive(Default)]
pub struct RespDecoder {
    framer: Framer,
    /// The command whose reply could not be followed: it gets the protocol error, the commands
    /// behind it learn that the connection is gone.
    blamed: Option<Waiting<Request>>,
}

impl Decoder for RespDecoder {
    type Request = Request;
    type Error = CacheError;

    fn fail(request: Request, e: CacheError) {
        complete(request, Err(e));
    }

    fn decode(
        &mut self,
        buf: &mut BytesMut,
        next: &mut dyn FnMut() -> Option<Waiting<Request>>,
        completed: &mut usize,
    ) -> Result<(), CacheError> {
        loop {
            let reply = match self.framer.frame(buf) {
                Ok(None) => return Ok(()),
                Ok(Some(len)) => {
                    let reply = decode(&buf[..len]);
                    buf.advance(len);
                    reply
                }
                Err(e) => Err(e),
            };
            let reply = match reply {
                Ok(reply) => reply,
                Err(e) => {
                    self.blamed = next();
                    return Err(e);
                }
            };
            let waiting = next().ok_or_else(|| {
                CacheError::Protocol("a reply arrived with no command waiting for it".into())
            })?;
            complete(waiting.request, reply);
            *completed += 1;
        }
    }

    fn in_progress(&self) -> Option<&Waiting<Request>> {
        self.blamed.as_ref()
    }

    fn fail_in_progress(&mut self, e: CacheError) -> bool {
        match self.blamed.take() {
            Some(w) => {
                complete(w.request, Err(e));
                true
            }
            None => false,
        }
    }
}

/// The next reply of the handshake, reading as needed.
fn recv(hs: &mut Handshake, framer: &mut Framer) -> Result<Reply, CacheError> {
    loop {
        if let Some(len) = framer.frame(&hs.buf)? {
            let reply = decode(&hs.buf[..len])?;
            hs.buf.advance(len);
            return Ok(reply);
        }
        hs.fill()?;
    }
}

/// AUTH and SELECT when needed, then PING, in one write. The first error reply is returned as
/// it is (`Server`), so that WRONGPASS or NOAUTH reach the log unchanged.
fn handshake(hs: &mut Handshake, cfg: &RedisConfig) -> Result<(), CacheError> {
    let mut framer = Framer::default();
    let mut out = Vec::new();
    let mut expect = Vec::new();
    if cfg.username.is_some() || cfg.password.is_some() {
        let mut auth = redis::cmd("AUTH");
        if let Some(user) = &cfg.username {
            auth.arg(user);
        }
        // An ACL user marked `nopass` accepts any password, the empty one included.
        auth.arg(cfg.password.as_deref().unwrap_or(""));
        auth.write_packed_command(&mut out);
        expect.push("AUTH");
    }
    if cfg.db != 0 {
        redis::cmd("SELECT")
            .arg(cfg.db)
            .write_packed_command(&mut out);
        expect.push("SELECT");
    }
    redis::cmd("PING").write_packed_command(&mut out);
    expect.push("PING");
    hs.send(&out)?;
    for what in expect {
        match (what, recv(hs, &mut framer)??) {
            ("AUTH" | "SELECT", Value::Okay) => {}
            ("PING", Value::SimpleString(s)) if s == "PONG" => {}
            (what, other) => {
                return Err(CacheError::Protocol(format!(
                    "unexpected reply to {what}: {other:?}"
                )))
            }
        }
    }
    Ok(())
}
