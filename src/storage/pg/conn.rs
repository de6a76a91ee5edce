//! PostgreSQL on the pipeline: the start-up and statement preparation, and the typed calls of
//! one connection. The connection itself is the shared [`Link`].

use std::io;
use std::sync::Arc;
use std::time::Duration;

use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::{Message, RowDescriptionBody};
use postgres_types::{ToSql, Type};

use super::auth::{AuthStep, Authenticator};
use super::codec::{
    encode_prepare, encode_query, encode_simple, encode_startup, encode_terminate, next_message,
    Backend,
};
use super::config::{Config, SessionAttrs};
use super::demux::{Demux, Pending};
use super::error::{server_error, PgError};
use super::limits::LIMITS;
use super::notify::NotifySink;
use super::row::Row;
use crate::pipeline::{Endpoint, Handshake, Link, Protocol};
use crate::placement::WorkerId;

/// A statement prepared on every (re)connection of the connections given it, and run by naming
/// it: declare each one as a `static` beside the code that runs it, and list it in the slice given
/// to `connect`. `name` is the server-side name: non-empty and unique within the slice.
pub struct StatementDef {
    pub name: &'static str,
    pub sql: &'static str,
    /// May be shorter than the statement's parameters (or empty): the server infers the rest.
    pub param_types: &'static [Type],
}

/// The statements a connection prepares.
pub type Statements = &'static [&'static StatementDef];

/// A prepared statement as the server described it.
struct Prepared {
    def: &'static StatementDef,
    params: Vec<Type>,
    columns: Arc<[Type]>,
}

/// What a connection is opened with: the settings, the statements to prepare, and for a
/// listening connection the channels it listens on and where their notifications go.
pub struct Target {
    pub cfg: Config,
    pub statements: Statements,
    pub listen: Option<Listen>,
}

impl Target {
    /// A connection that prepares `statements` and listens on nothing.
    pub fn plain(cfg: Config, statements: Statements) -> Target {
        Target {
            cfg,
            statements,
            listen: None,
        }
    }
}

/// `LISTEN` on every channel at each (re)connection, and hand what arrives to the sink.
pub struct Listen {
    pub channels: Vec<String>,
    pub sink: NotifySink,
}

/// What start-up learned, kept for the connection's life.
pub struct Session {
    statements: Vec<Prepared>,
    backend_pid: i32,
    query_timeout: Duration,
}

/// The PostgreSQL protocol as the pipeline sees it.
pub struct Postgres;

impl Protocol for Postgres {
    const NAME: &'static str = "pg";
    const LIMITS: crate::pipeline::Limits = LIMITS;
    type Config = Target;
    type Session = Session;
    type Decoder = Demux;

    fn endpoints(t: &Target) -> Vec<Endpoint<'_>> {
        t.cfg
            .hosts
            .iter()
            .map(|(host, port)| Endpoint {
                host,
                port: *port,
                connect_timeout: t.cfg.connect_timeout,
            })
            .collect()
    }

    /// As libpq does, the next host is tried after any failure but a failed authentication
    /// (which every host of a replicated set would answer alike): one unreachable, starting up
    /// or shutting down (class 57), read-only when writes are wanted (25006), or without the
    /// database yet (3D000: a standby that has not replayed its creation).
    fn try_next(e: &PgError) -> bool {
        match e {
            PgError::Unavailable(_) | PgError::Timeout => true,
            PgError::Db { code, .. } => !code.starts_with("28"),
            PgError::Busy | PgError::Protocol(_) | PgError::Auth(_) => false,
        }
    }

    /// A connection whose server answers that it takes no writes is on a demoted primary or a
    /// standby: it is given up, and the reconnection goes through the host list again.
    fn abandons(e: &PgError) -> bool {
        e.code() == Some(READ_ONLY_SQL_TRANSACTION)
    }

    /// Start-up, authentication, the server's kind when writes are wanted, then every statement
    /// prepared in one round trip.
    fn handshake(t: &Target, hs: &mut Handshake) -> Result<Session, PgError> {
        let backend_pid = startup(hs, &t.cfg)?;
        if t.cfg.target_session_attrs == SessionAttrs::ReadWrite {
            if let Err(e) = require_writes(hs) {
                let mut bye = Vec::new();
                Postgres::farewell(&mut bye);
                let _ = hs.send(&bye);
                return Err(e);
            }
        }
        let statements = prepare(hs, t.statements)?;
        if let Some(listen) = &t.listen {
            listen_on(hs, &listen.channels)?;
        }
        Ok(Session {
            statements,
            backend_pid,
            query_timeout: t.cfg.query_timeout,
        })
    }

    /// Terminate, so the server ends the session cleanly instead of logging an EOF.
    fn farewell(out: &mut Vec<u8>) {
        out.extend_from_slice(&encode_terminate());
    }

    fn decoder(t: &Target) -> Demux {
        match &t.listen {
            Some(listen) => Demux::listening(listen.sink.clone()),
            None => Demux::default(),
        }
    }
}

/// One pipelined connection to PostgreSQL: many requests in flight, answered in order.
///
/// A request is one Bind/Execute/Sync (or one simple Query) and is its own transaction: other
/// coroutines' requests interleave on the same connection, so a transaction never spans
/// requests.
pub type Connection = Link<Postgres>;

impl Link<Postgres> {
    /// Connects, authenticates, waits for ReadyForQuery and prepares every statement, all within
    /// `cfg.connect_timeout`; then starts the reader and writer coroutines on `worker`.
    pub fn connect(
        cfg: &Config,
        statements: Statements,
        worker: impl Into<WorkerId>,
    ) -> Result<Arc<Connection>, PgError> {
        Link::open(
            &Target::plain(cfg.clone(), statements),
            worker.into(),
            None,
            None,
        )
    }

    /// Runs the prepared statement `stmt` with `params` (binary in, binary out).
    pub fn query(
        &self,
        stmt: &StatementDef,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, PgError> {
        let session = self.session();
        // A statement is known by its address: a handful of pointer comparisons, and two
        // statements with the same text can never be confused.
        let st = session
            .statements
            .iter()
            .find(|p| std::ptr::eq(p.def, stmt))
            .ok_or_else(|| {
                PgError::Protocol(format!(
                    "statement {} is not prepared on this connection",
                    stmt.name
                ))
            })?;
        let bytes = encode_query(st.def.name, &st.params, params)?;
        let columns = st.columns.clone();
        self.call(
            |out| out.extend_from_slice(&bytes),
            |tx| Pending::rows(columns, tx),
            session.query_timeout,
        )
    }

    /// Simple query protocol: may hold several statements; returns all their rows as text.
    pub fn simple_query(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>, PgError> {
        let bytes = encode_simple(sql)?;
        self.call(
            |out| out.extend_from_slice(&bytes),
            Pending::text,
            self.session().query_timeout,
        )
    }

    /// The server process serving this connection (for `pg_cancel_backend`, logs).
    pub fn backend_pid(&self) -> i32 {
        self.session().backend_pid
    }
}

/// The next backend message of the start-up, reading as needed.
fn recv(hs: &mut Handshake) -> Result<Message, PgError> {
    loop {
        match next_message(&mut hs.buf)? {
            Some(Backend::Other(m)) => return Ok(m),
            Some(Backend::DataRow(_)) => {
                return Err(PgError::Protocol("data row during start-up".into()))
            }
            None => hs.fill()?,
        }
    }
}

fn is_auth_message(m: &Message) -> bool {
    matches!(
        m,
        Message::AuthenticationOk
            | Message::AuthenticationCleartextPassword
            | Message::AuthenticationMd5Password(_)
            | Message::AuthenticationSasl(_)
            | Message::AuthenticationSaslContinue(_)
            | Message::AuthenticationSaslFinal(_)
            | Message::AuthenticationGss
            | Message::AuthenticationGssContinue(_)
            | Message::AuthenticationKerberosV5
            | Message::AuthenticationScmCredential
            | Message::AuthenticationSspi
    )
}

/// SQLSTATE `read_only_sql_transaction`: what a standby, or a server read-only by default, says.
pub const READ_ONLY_SQL_TRANSACTION: &str = "25006";

/// Fails with 25006 unless the server accepts writes: not in recovery (a standby) and not
/// read-only by default. One round trip with no rows, so it needs no row decoding here; it works
/// on every PostgreSQL version, where the `in_hot_standby` report needs 14.
fn require_writes(hs: &mut Handshake) -> Result<(), PgError> {
    const CHECK: &str = "DO $$BEGIN IF pg_is_in_recovery() \
        OR current_setting('default_transaction_read_only')::bool THEN \
        RAISE EXCEPTION USING ERRCODE = 'read_only_sql_transaction', \
        MESSAGE = 'this server accepts no writes (target_session_attrs=read-write)'; \
        END IF; END$$";
    simple_without_rows(hs, CHECK)
}

/// Runs `sql` (statements that return no rows) during the handshake; the first error the server
/// answers, once it is ready again.
fn simple_without_rows(hs: &mut Handshake, sql: &str) -> Result<(), PgError> {
    hs.send(&encode_simple(sql)?)?;
    let mut error = None;
    loop {
        match recv(hs)? {
            Message::ErrorResponse(body) => {
                error.get_or_insert(server_error(body.fields())?.error);
            }
            Message::ReadyForQuery(_) => return error.map_or(Ok(()), Err),
            _ => {}
        }
    }
}

/// Start-up and authentication up to the first ReadyForQuery; returns the backend's pid.
fn startup(hs: &mut Handshake, cfg: &Config) -> Result<i32, PgError> {
    hs.send(&encode_startup(cfg)?)?;
    let mut auth = Authenticator::new(&cfg.user, cfg.password.as_deref());
    let mut authenticated = false;
    let mut pid = 0;
    loop {
        match recv(hs)? {
            m if is_auth_message(&m) && !authenticated => match auth.step(&m)? {
                AuthStep::Send(bytes) => hs.send(&bytes)?,
                AuthStep::Wait => {}
                AuthStep::Done => authenticated = true,
            },
            Message::ErrorResponse(body) => return Err(server_error(body.fields())?.error),
            Message::BackendKeyData(key) => pid = key.process_id(),
            Message::ParameterStatus(_) | Message::NoticeResponse(_) => {}
            Message::ReadyForQuery(_) if authenticated => return Ok(pid),
            _ => {
                return Err(PgError::Protocol(
                    "unexpected message during start-up".into(),
                ))
            }
        }
    }
}

/// Prepares every statement in one round trip and records each one's parameter and column
/// types as the server describes them.
fn prepare(hs: &mut Handshake, defs: Statements) -> Result<Vec<Prepared>, PgError> {
    check_names(defs)?;
    if defs.is_empty() {
        return Ok(Vec::new());
    }
    hs.send(&encode_prepare(
        defs.iter().map(|d| (d.name, d.sql, d.param_types)),
    )?)?;
    let mut prepared = Vec::with_capacity(defs.len());
    let mut params = Vec::new();
    let mut error = None;
    loop {
        let def = defs.get(prepared.len()).copied();
        let name = def.map_or("?", |d| d.name);
        match (recv(hs)?, def) {
            (Message::ParseComplete, _) => {}
            (Message::ParameterDescription(body), Some(_)) => {
                let oids: Vec<u32> = body.parameters().collect().map_err(malformed)?;
                params = types_of(name, &oids)?;
            }
            (Message::RowDescription(body), Some(d)) => {
                let columns = column_types(name, &body)?;
                prepared.push(described(d, &mut params, columns));
            }
            (Message::NoData, Some(d)) => prepared.push(described(d, &mut params, Vec::new())),
            (Message::ErrorResponse(body), _) => {
                let e = server_error(body.fields())?.error;
                error.get_or_insert(in_statement(name, e));
            }
            (Message::ParameterStatus(_) | Message::NoticeResponse(_), _) => {}
            (Message::ReadyForQuery(_), _) => {
                return match error {
                    Some(e) => Err(e),
                    None if prepared.len() == defs.len() => Ok(prepared),
                    None => Err(PgError::Protocol("statement descriptions missing".into())),
                };
            }
            _ => {
                return Err(PgError::Protocol(
                    "unexpected message while preparing statements".into(),
                ))
            }
        }
    }
}

fn described(d: &'static StatementDef, params: &mut Vec<Type>, columns: Vec<Type>) -> Prepared {
    Prepared {
        def: d,
        params: std::mem::take(params),
        columns: columns.into(),
    }
}

/// `LISTEN` on each channel, in one round trip; a name is quoted, so any text is one channel.
fn listen_on(hs: &mut Handshake, channels: &[String]) -> Result<(), PgError> {
    if channels.is_empty() {
        return Ok(());
    }
    let sql: String = channels
        .iter()
        .map(|c| format!("LISTEN \"{}\";", c.replace('"', "\"\"")))
        .collect();
    simple_without_rows(hs, &sql)
}

/// An empty name is the unnamed statement, which the next Parse would replace; a duplicate
/// would fail on the server with a less helpful message.
fn check_names(defs: &[&StatementDef]) -> Result<(), PgError> {
    for (i, d) in defs.iter().enumerate() {
        if d.name.is_empty() || defs[..i].iter().any(|e| e.name == d.name) {
            return Err(PgError::Protocol(format!(
                "statement {i}: name {:?} is empty or used twice",
                d.name
            )));
        }
    }
    Ok(())
}

fn in_statement(name: &str, e: PgError) -> PgError {
    match e {
        PgError::Db {
            code,
            message,
            constraint,
        } => PgError::Db {
            code,
            message: format!("preparing statement {name}: {message}"),
            constraint,
        },
        other => other,
    }
}

fn malformed(e: io::Error) -> PgError {
    PgError::Protocol(format!("malformed statement description: {e}"))
}

fn column_types(name: &str, body: &RowDescriptionBody) -> Result<Vec<Type>, PgError> {
    let oids: Vec<u32> = body
        .fields()
        .map(|f| Ok(f.type_oid()))
        .collect()
        .map_err(malformed)?;
    types_of(name, &oids)
}

/// Only built-in types can be encoded and decoded without asking the server about them.
fn types_of(name: &str, oids: &[u32]) -> Result<Vec<Type>, PgError> {
    oids.iter()
        .map(|&oid| {
            Type::from_oid(oid).ok_or_else(|| {
                PgError::Protocol(format!(
                    "statement {name} uses type oid {oid}, which is not built in; \
                     cast it to a built-in type (e.g. ::text)"
                ))
            })
        })
        .collect()
}
