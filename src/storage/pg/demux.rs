//! Matching backend messages to the requests waiting for them. IO-free: the reader coroutine
//! feeds it messages and a way to take the next request in send order.

use std::sync::Arc;

use bytes::BytesMut;
use may::sync::mpsc::Sender;
use postgres_protocol::message::backend::Message;
use postgres_types::Type;

use super::codec::{next_message, Backend, DataRow};
use super::error::{server_error, PgError};
use super::limits::MAX_ROWS_PER_REPLY;
use super::notify::{Notification, NotifySink};
use super::row::{text_values, Row};
use crate::pipeline::{Decoder, Waiting};

pub type RowsReply = Result<Vec<Row>, PgError>;
pub type TextReply = Result<Vec<Vec<Option<String>>>, PgError>;

/// ReadyForQuery status: not inside a transaction block.
const IDLE: u8 = b'I';

/// Where one request's rows collect until its ReadyForQuery.
enum Sink {
    Rows {
        columns: Arc<[Type]>,
        rows: Vec<Row>,
        tx: Sender<RowsReply>,
    },
    Text {
        rows: Vec<Vec<Option<String>>>,
        tx: Sender<TextReply>,
    },
}

/// A request whose bytes are queued or sent and whose reply has not fully arrived.
pub struct Pending {
    sink: Sink,
    /// The first ErrorResponse of the request; its ReadyForQuery still ends it.
    error: Option<PgError>,
}

impl Pending {
    pub(crate) fn rows(columns: Arc<[Type]>, tx: Sender<RowsReply>) -> Pending {
        Pending::new(Sink::Rows {
            columns,
            rows: Vec::new(),
            tx,
        })
    }

    pub(crate) fn text(tx: Sender<TextReply>) -> Pending {
        Pending::new(Sink::Text {
            rows: Vec::new(),
            tx,
        })
    }

    fn new(sink: Sink) -> Pending {
        Pending { sink, error: None }
    }

    /// Answers the caller with `e`. A caller that already timed out is simply not there.
    pub(crate) fn fail(self, e: PgError) {
        match self.sink {
            Sink::Rows { tx, .. } => drop(tx.send(Err(e))),
            Sink::Text { tx, .. } => drop(tx.send(Err(e))),
        }
    }

    fn finish(mut self) {
        if let Some(e) = self.error.take() {
            return self.fail(e);
        }
        match self.sink {
            Sink::Rows { rows, tx, .. } => drop(tx.send(Ok(rows))),
            Sink::Text { rows, tx } => drop(tx.send(Ok(rows))),
        }
    }

    /// A column count other than the statement's means this side misunderstands the stream:
    /// that is a connection-level error. Too many rows only fails this request.
    fn push(&mut self, data: DataRow) -> Result<(), PgError> {
        if self.error.is_some() {
            return Ok(());
        }
        let count = match &mut self.sink {
            Sink::Rows { columns, rows, .. } => {
                if data.len() != columns.len() {
                    return Err(PgError::Protocol(format!(
                        "data row has {} values, the statement {} columns",
                        data.len(),
                        columns.len()
                    )));
                }
                rows.push(Row::new(columns.clone(), data));
                rows.len()
            }
            Sink::Text { rows, .. } => {
                rows.push(text_values(&data)?);
                rows.len()
            }
        };
        if count > MAX_ROWS_PER_REPLY {
            self.error = Some(PgError::Protocol(format!(
                "reply has more than {MAX_ROWS_PER_REPLY} rows"
            )));
            self.clear_rows();
        }
        Ok(())
    }

    fn clear_rows(&mut self) {
        match &mut self.sink {
            Sink::Rows { rows, .. } => *rows = Vec::new(),
            Sink::Text { rows, .. } => *rows = Vec::new(),
        }
    }
}

/// The request currently being answered, taken from the queue at its first message.
#[derive(Default)]
pub struct Demux {
    current: Option<Waiting<Pending>>,
    /// Where `NOTIFY`s go on a listening connection; ignored on the others.
    notifications: Option<NotifySink>,
}

impl Demux {
    pub(crate) fn listening(notifications: NotifySink) -> Demux {
        Demux {
            current: None,
            notifications: Some(notifications),
        }
    }
}

impl Decoder for Demux {
    type Request = Pending;
    type Error = PgError;

    fn fail(request: Pending, e: PgError) {
        request.fail(e);
    }

    fn decode(
        &mut self,
        buf: &mut BytesMut,
        next: &mut dyn FnMut() -> Option<Waiting<Pending>>,
        completed: &mut usize,
    ) -> Result<(), PgError> {
        while let Some(msg) = next_message(buf)? {
            if self.on_message(msg, &mut *next)? {
                *completed += 1;
            }
        }
        Ok(())
    }

    fn in_progress(&self) -> Option<&Waiting<Pending>> {
        self.current.as_ref()
    }

    fn fail_in_progress(&mut self, e: PgError) -> bool {
        self.fail_current(e)
    }
}

impl Demux {
    /// Handles one message. `next` takes the oldest request still queued. Returns true when a
    /// request was completed. An error means the connection can no longer be trusted.
    pub(crate) fn on_message(
        &mut self,
        msg: Backend,
        next: impl FnOnce() -> Option<Waiting<Pending>>,
    ) -> Result<bool, PgError> {
        let msg = match msg {
            Backend::DataRow(row) => return self.current(next)?.push(row).map(|_| false),
            Backend::Other(m) => m,
        };
        match msg {
            Message::ParameterStatus(_) | Message::NoticeResponse(_) => Ok(false),
            Message::NotificationResponse(body) => {
                if let Some(sink) = &self.notifications {
                    let text = |r: std::io::Result<&str>| {
                        r.map(str::to_owned)
                            .map_err(|e| PgError::Protocol(format!("malformed notification: {e}")))
                    };
                    sink.deliver(Notification {
                        channel: text(body.channel())?,
                        payload: text(body.message())?,
                    });
                }
                Ok(false)
            }
            Message::ErrorResponse(body) => {
                let e = server_error(body.fields())?;
                if e.fatal {
                    return Err(PgError::Unavailable(format!(
                        "server ended the session: {}",
                        e.error
                    )));
                }
                let current = self.current(next)?;
                current.error.get_or_insert(e.error);
                Ok(false)
            }
            Message::BindComplete
            | Message::CommandComplete(_)
            | Message::EmptyQueryResponse
            | Message::RowDescription(_)
            | Message::NoData
            | Message::PortalSuspended => self.current(next).map(|_| false),
            Message::ReadyForQuery(body) => {
                self.current(next)?;
                // Requests pipelined behind one that left a transaction block open (or failed
                // inside one) would run in it, or fail with 25P02, until someone rolls it back.
                // Closing the connection rolls it back; the caller is told so.
                if body.status() != IDLE {
                    return Err(PgError::Unavailable(
                        "a request left the session inside a transaction block; \
                         the connection was reset, rolling it back"
                            .into(),
                    ));
                }
                if let Some(done) = self.current.take() {
                    done.request.finish();
                }
                Ok(true)
            }
            Message::CopyInResponse(_) | Message::CopyOutResponse(_) => Err(PgError::Protocol(
                "COPY is not supported by this client".into(),
            )),
            _ => Err(PgError::Protocol(
                "unexpected message while answering requests".into(),
            )),
        }
    }

    /// The connection is gone: the request in progress, if any, gets its own server error if
    /// it had one, `e` otherwise. Returns whether there was one.
    pub(crate) fn fail_current(&mut self, e: PgError) -> bool {
        match self.current.take() {
            Some(Waiting { request: mut p, .. }) => {
                let e = p.error.take().unwrap_or(e);
                p.fail(e);
                true
            }
            None => false,
        }
    }

    fn current(
        &mut self,
        next: impl FnOnce() -> Option<Waiting<Pending>>,
    ) -> Result<&mut Pending, PgError> {
        if self.current.is_none() {
            self.current = next();
        }
        self.current
            .as_mut()
            .map(|w| &mut w.request)
            .ok_or_else(|| {
                PgError::Protocol("reply from the server with no request waiting".into())
            })
    }
}

#[cfg(test)]
mod tests {
    use super::super::codec::tests::{data_row, msg};
    use super::*;
    use bytes::BytesMut;
    use may::sync::mpsc::{channel, Receiver};
    use std::collections::VecDeque;
    use std::time::Duration;

    /// Feeds every complete message in `bytes`; returns how many requests completed, or the
    /// connection-level error.
    fn feed(
        demux: &mut Demux,
        queue: &mut VecDeque<Pending>,
        bytes: &[u8],
    ) -> Result<usize, PgError> {
        let mut buf = BytesMut::from(bytes);
        let mut done = 0;
        while let Some(m) = next_message(&mut buf)? {
            let next = || {
                queue
                    .pop_front()
                    .map(|p| Waiting::new(p, Duration::from_secs(1)))
            };
            if demux.on_message(m, next)? {
                done += 1;
            }
        }
        Ok(done)
    }

    fn rows_request(cols: &[Type]) -> (Pending, Receiver<RowsReply>) {
        let (tx, rx) = channel();
        (Pending::rows(cols.to_vec().into(), tx), rx)
    }

    fn row_description(types: &[u32]) -> Vec<u8> {
        let mut body = (types.len() as i16).to_be_bytes().to_vec();
        for (i, oid) in types.iter().enumerate() {
            body.extend_from_slice(format!("c{i}\0").as_bytes());
            body.extend_from_slice(&0u32.to_be_bytes()); // table
            body.extend_from_slice(&0i16.to_be_bytes()); // column
            body.extend_from_slice(&oid.to_be_bytes());
            body.extend_from_slice(&(-1i16).to_be_bytes()); // size
            body.extend_from_slice(&(-1i32).to_be_bytes()); // modifier
            body.extend_from_slice(&0i16.to_be_bytes()); // text
        }
        msg(b'T', &body)
    }

    fn error_response(severity: &str, code: &str) -> Vec<u8> {
        let body = format!("S{severity}\0V{severity}\0C{code}\0Mboom\0\0");
        msg(b'E', body.as_bytes())
    }

    #[test]
    fn pipelined_replies_reach_their_requests_in_order() {
        let (a, ra) = rows_request(&[Type::INT8]);
        let (b, rb) = rows_request(&[Type::INT8]);
        let mut queue = VecDeque::from([a, b]);
        let mut bytes = Vec::new();
        for v in [1i64, 2] {
            bytes.extend(msg(b'2', &[]));
            bytes.extend(data_row(&[Some(&v.to_be_bytes())]));
            bytes.extend(data_row(&[Some(&(v * 10).to_be_bytes())]));
            bytes.extend(msg(b'C', b"SELECT 2\0"));
            bytes.extend(msg(b'S', b"TimeZone\0UTC\0")); // asynchronous, anywhere
            bytes.extend(msg(b'Z', b"I"));
        }
        let mut demux = Demux::default();
        assert_eq!(feed(&mut demux, &mut queue, &bytes).unwrap(), 2);
        let a: Vec<i64> = ra
            .recv()
            .unwrap()
            .unwrap()
            .iter()
            .map(|r| r.get(0).unwrap())
            .collect();
        let b: Vec<i64> = rb
            .recv()
            .unwrap()
            .unwrap()
            .iter()
            .map(|r| r.get(0).unwrap())
            .collect();
        assert_eq!((a, b), (vec![1, 10], vec![2, 20]));
    }

    #[test]
    fn simple_query_rows_from_every_statement() {
        let (tx, rx) = channel();
        let mut queue = VecDeque::from([Pending::text(tx)]);
        let mut bytes = row_description(&[23, 25]);
        bytes.extend(data_row(&[Some(b"1"), None]));
        bytes.extend(msg(b'C', b"SELECT 1\0"));
        bytes.extend(msg(b'C', b"CREATE TABLE\0"));
        bytes.extend(msg(b'N', b"SNOTICE\0Mhello\0\0"));
        bytes.extend(row_description(&[25]));
        bytes.extend(data_row(&[Some(b"x")]));
        bytes.extend(msg(b'C', b"SELECT 1\0"));
        bytes.extend(msg(b'Z', b"I"));
        assert_eq!(feed(&mut Demux::default(), &mut queue, &bytes).unwrap(), 1);
        let rows = rx.recv().unwrap().unwrap();
        assert_eq!(
            rows,
            vec![vec![Some("1".into()), None], vec![Some("x".into())]]
        );
    }

    #[test]
    fn error_fails_only_its_own_request() {
        let (a, ra) = rows_request(&[Type::INT8]);
        let (b, rb) = rows_request(&[Type::INT8]);
        let mut queue = VecDeque::from([a, b]);
        let mut bytes = error_response("ERROR", "22012");
        bytes.extend(msg(b'Z', b"I"));
        bytes.extend(msg(b'2', &[]));
        bytes.extend(data_row(&[Some(&5i64.to_be_bytes())]));
        bytes.extend(msg(b'C', b"SELECT 1\0"));
        bytes.extend(msg(b'Z', b"I"));
        assert_eq!(feed(&mut Demux::default(), &mut queue, &bytes).unwrap(), 2);
        assert_eq!(ra.recv().unwrap().unwrap_err().code(), Some("22012"));
        assert_eq!(rb.recv().unwrap().unwrap()[0].get::<i64>(0).unwrap(), 5);
    }

    #[test]
    fn fatal_error_is_a_connection_error() {
        let (a, _ra) = rows_request(&[]);
        let mut queue = VecDeque::from([a]);
        let e = feed(
            &mut Demux::default(),
            &mut queue,
            &error_response("FATAL", "57P01"),
        )
        .unwrap_err();
        assert!(matches!(e, PgError::Unavailable(m) if m.contains("57P01")));
    }

    #[test]
    fn replies_without_requests_and_odd_messages_are_protocol_errors() {
        let mut queue = VecDeque::new();
        let e = feed(&mut Demux::default(), &mut queue, &msg(b'Z', b"I")).unwrap_err();
        assert!(matches!(e, PgError::Protocol(_)));
        let (a, _ra) = rows_request(&[Type::INT8]);
        let mut queue = VecDeque::from([a]);
        let e = feed(&mut Demux::default(), &mut queue, &msg(b'1', &[])).unwrap_err();
        assert!(
            matches!(e, PgError::Protocol(_)),
            "ParseComplete is never expected here"
        );
        let (a, _ra) = rows_request(&[Type::INT8]);
        let mut queue = VecDeque::from([a]);
        let two_cols = data_row(&[None, None]);
        assert!(feed(&mut Demux::default(), &mut queue, &two_cols).is_err());
    }

    #[test]
    fn abandoned_request_keeps_later_replies_in_order() {
        let (a, ra) = rows_request(&[Type::INT8]);
        let (b, rb) = rows_request(&[Type::INT8]);
        drop(ra); // its caller timed out
        let mut queue = VecDeque::from([a, b]);
        let mut bytes = Vec::new();
        for v in [1i64, 2] {
            bytes.extend(data_row(&[Some(&v.to_be_bytes())]));
            bytes.extend(msg(b'Z', b"I"));
        }
        assert_eq!(feed(&mut Demux::default(), &mut queue, &bytes).unwrap(), 2);
        assert_eq!(rb.recv().unwrap().unwrap()[0].get::<i64>(0).unwrap(), 2);
    }

    /// Well-framed messages with arbitrary bodies, against a queue of requests: answers or
    /// connection errors, never a panic.
    #[test]
    fn arbitrary_message_bodies_never_panic() {
        let mut next = crate::testing::xorshift(0x2545_f491_4f6c_dd1d);
        let tags = b"123ACDEGHIKnNRsStTZ";
        for round in 0..5_000 {
            let (a, _ra) = rows_request(&[Type::INT8, Type::TEXT]);
            let (tx, _rb) = channel();
            let mut queue = VecDeque::from([a, Pending::text(tx)]);
            let mut demux = Demux::default();
            for _ in 0..4 {
                let len = (next() % 20) as usize;
                let body: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                let tag = tags[(next() % tags.len() as u64) as usize];
                if feed(&mut demux, &mut queue, &msg(tag, &body)).is_err() {
                    break;
                }
            }
            demux.fail_current(PgError::Unavailable(format!("round {round}")));
        }
    }

    #[test]
    fn transaction_left_open_resets_the_connection() {
        let (a, ra) = rows_request(&[]);
        let mut queue = VecDeque::from([a]);
        let mut demux = Demux::default();
        let e = feed(&mut demux, &mut queue, &msg(b'Z', b"T")).unwrap_err();
        assert!(matches!(e, PgError::Unavailable(_)));
        demux.fail_current(e);
        assert!(matches!(ra.recv().unwrap(), Err(PgError::Unavailable(_))));

        // failed inside a transaction block: the caller still learns the server's error
        let (a, ra) = rows_request(&[]);
        let mut queue = VecDeque::from([a]);
        let mut demux = Demux::default();
        let mut bytes = error_response("ERROR", "22012");
        bytes.extend(msg(b'Z', b"E"));
        let e = feed(&mut demux, &mut queue, &bytes).unwrap_err();
        demux.fail_current(e);
        assert_eq!(ra.recv().unwrap().unwrap_err().code(), Some("22012"));
    }

    #[test]
    fn fail_current_answers_the_request_in_progress() {
        let (a, ra) = rows_request(&[Type::INT8]);
        let mut queue = VecDeque::from([a]);
        let mut demux = Demux::default();
        feed(&mut demux, &mut queue, &msg(b'2', &[])).unwrap();
        assert!(demux.in_progress().is_some());
        demux.fail_current(PgError::Unavailable("gone".into()));
        assert!(matches!(ra.recv().unwrap(), Err(PgError::Unavailable(_))));
    }
}
