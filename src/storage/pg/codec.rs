//! Bytes on the wire: framing of backend messages (with the size bound) and encoding of the
//! frontend messages this client sends.

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use postgres_protocol::message::{backend::Message, frontend};
use postgres_types::{Format, IsNull, ToSql, Type};

use super::config::Config;
use super::error::PgError;
use super::limits::MAX_MESSAGE_BYTES;

const DATA_ROW_TAG: u8 = b'D';
/// Tag byte plus the length word.
const HEADER_BYTES: usize = 5;

/// One backend message. Data rows are split out by hand so they keep sharing the read buffer's
/// bytes instead of being copied; everything else goes through postgres-protocol's parser.
pub(crate) enum Backend {
    DataRow(DataRow),
    Other(Message),
}

/// The values of one DataRow: each column is a byte range into `buf`, or `None` for NULL.
#[derive(Debug, Clone)]
pub(crate) struct DataRow {
    buf: Bytes,
    columns: Vec<Option<Range<usize>>>,
}

impl DataRow {
    pub fn len(&self) -> usize {
        self.columns.len()
    }

    /// The raw value of column `idx`, `None` for NULL; the caller has checked `idx`.
    pub fn raw(&self, idx: usize) -> Option<&[u8]> {
        self.columns
            .get(idx)
            .cloned()
            .flatten()
            .map(|r| &self.buf[r])
    }

    fn parse(frame: Bytes) -> Result<DataRow, PgError> {
        let bad = |why: &str| PgError::Protocol(format!("malformed data row: {why}"));
        let mut at = HEADER_BYTES;
        let count = read_i16(&frame, &mut at).ok_or_else(|| bad("no column count"))?;
        let count = usize::try_from(count).map_err(|_| bad("negative column count"))?;
        let mut columns = Vec::with_capacity(count);
        for _ in 0..count {
            let len = read_i32(&frame, &mut at).ok_or_else(|| bad("truncated"))?;
            if len == -1 {
                columns.push(None);
                continue;
            }
            let len = usize::try_from(len).map_err(|_| bad("negative length"))?;
            let end = at
                .checked_add(len)
                .filter(|&e| e <= frame.len())
                .ok_or_else(|| bad("value runs past the message"))?;
            columns.push(Some(at..end));
            at = end;
        }
        if at != frame.len() {
            return Err(bad("trailing bytes"));
        }
        Ok(DataRow {
            buf: frame,
            columns,
        })
    }
}

fn read_i16(buf: &[u8], at: &mut usize) -> Option<i16> {
    let b: [u8; 2] = buf.get(*at..*at + 2)?.try_into().ok()?;
    *at += 2;
    Some(i16::from_be_bytes(b))
}

fn read_i32(buf: &[u8], at: &mut usize) -> Option<i32> {
    let b: [u8; 4] = buf.get(*at..*at + 4)?.try_into().ok()?;
    *at += 4;
    Some(i32::from_be_bytes(b))
}

/// Splits one complete message off the front of `buf`; `None` when more bytes are needed.
/// The length word is checked against `MAX_MESSAGE_BYTES` before anything is reserved.
pub(crate) fn next_message(buf: &mut BytesMut) -> Result<Option<Backend>, PgError> {
    let Some(header) = buf.get(..HEADER_BYTES) else {
        return Ok(None);
    };
    let tag = header[0];
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if len < 4 {
        return Err(PgError::Protocol(format!("message length {len} below 4")));
    }
    if len > MAX_MESSAGE_BYTES {
        return Err(PgError::Protocol(format!(
            "message of {len} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit"
        )));
    }
    let total = len + 1;
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    if tag == DATA_ROW_TAG {
        return DataRow::parse(buf.split_to(total).freeze()).map(|r| Some(Backend::DataRow(r)));
    }
    match Message::parse(buf) {
        Ok(Some(m)) => Ok(Some(Backend::Other(m))),
        Ok(None) => Err(PgError::Protocol("complete message left unparsed".into())),
        Err(e) => Err(PgError::Protocol(format!("malformed message: {e}"))),
    }
}

/// Start-up packet: the session's settings travel with it so no extra round trip is needed.
pub(crate) fn encode_startup(cfg: &Config) -> Result<BytesMut, PgError> {
    // `options` is split on spaces by the server; the value itself has none.
    let options = format!(
        "-c statement_timeout={}ms",
        cfg.statement_timeout.as_millis()
    );
    let params = [
        ("user", cfg.user.as_str()),
        ("database", cfg.dbname.as_str()),
        ("application_name", cfg.application_name.as_str()),
        ("client_encoding", "UTF8"),
        ("options", options.as_str()),
    ];
    let mut buf = BytesMut::with_capacity(256);
    frontend::startup_message(params.iter().copied(), &mut buf).map_err(encode_error)?;
    Ok(buf)
}

/// Parse + Describe for every statement, then one Sync: a single round trip prepares them all.
pub(crate) fn encode_prepare<'a>(
    statements: impl IntoIterator<Item = (&'a str, &'a str, &'a [Type])>,
) -> Result<BytesMut, PgError> {
    let mut buf = BytesMut::with_capacity(1024);
    for (name, sql, types) in statements {
        frontend::parse(name, sql, types.iter().map(Type::oid), &mut buf).map_err(encode_error)?;
        frontend::describe(b'S', name, &mut buf).map_err(encode_error)?;
    }
    frontend::sync(&mut buf);
    Ok(buf)
}

/// Bind (typed parameters, binary results) + Execute + Sync for a prepared statement.
pub(crate) fn encode_query(
    statement: &str,
    types: &[Type],
    params: &[&(dyn ToSql + Sync)],
) -> Result<BytesMut, PgError> {
    if params.len() != types.len() {
        return Err(PgError::Protocol(format!(
            "statement {statement} takes {} parameters, {} given",
            types.len(),
            params.len()
        )));
    }
    let mut buf = BytesMut::with_capacity(64 + 16 * params.len());
    let mut formats: Vec<i16> = params
        .iter()
        .zip(types)
        .map(|(p, ty)| format_code(p.encode_format(ty)))
        .collect();
    // One code applies to every parameter: the common all-binary case sends two bytes.
    if formats.iter().all(|&f| f == 1) {
        formats.truncate(1);
    }
    let mut index = 0;
    let bound = frontend::bind(
        "",
        statement,
        formats,
        params.iter().zip(types),
        |(param, ty), out| {
            index += 1;
            param.to_sql_checked(ty, out).map(|n| match n {
                IsNull::Yes => postgres_protocol::IsNull::Yes,
                IsNull::No => postgres_protocol::IsNull::No,
            })
        },
        Some(1),
        &mut buf,
    );
    if let Err(e) = bound {
        return Err(PgError::Protocol(match e {
            frontend::BindError::Conversion(e) => format!("parameter ${index}: {e}"),
            frontend::BindError::Serialization(e) => format!("parameter ${index}: {e}"),
        }));
    }
    frontend::execute("", 0, &mut buf).map_err(encode_error)?;
    frontend::sync(&mut buf);
    Ok(buf)
}

/// A simple-protocol Query message.
pub(crate) fn encode_simple(sql: &str) -> Result<BytesMut, PgError> {
    let mut buf = BytesMut::with_capacity(sql.len() + 6);
    frontend::query(sql, &mut buf).map_err(encode_error)?;
    Ok(buf)
}

pub(crate) fn encode_terminate() -> BytesMut {
    let mut buf = BytesMut::with_capacity(5);
    frontend::terminate(&mut buf);
    buf
}

fn format_code(f: Format) -> i16 {
    match f {
        Format::Text => 0,
        Format::Binary => 1,
    }
}

/// Only a NUL byte inside a string or a message over 2 GiB can fail to encode.
fn encode_error(e: std::io::Error) -> PgError {
    PgError::Protocol(format!("cannot encode request: {e}"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A backend message with the given tag and body, length word filled in.
    pub(crate) fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    /// A DataRow body from column values (`None` = NULL).
    pub(crate) fn data_row(cols: &[Option<&[u8]>]) -> Vec<u8> {
        let mut body = (cols.len() as i16).to_be_bytes().to_vec();
        for c in cols {
            match c {
                None => body.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(v) => {
                    body.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    body.extend_from_slice(v);
                }
            }
        }
        msg(b'D', &body)
    }

    #[test]
    fn bind_execute_sync_bytes() {
        let id: i64 = 7;
        let name = "ab";
        let buf = encode_query("s1", &[Type::INT8, Type::TEXT], &[&id, &name]).unwrap();
        let mut expected = Vec::new();
        // Bind: portal "", statement "s1", 1 format code (binary), 2 values, 1 result format (binary)
        let mut bind = vec![0, b's', b'1', 0, 0, 1, 0, 1, 0, 2];
        bind.extend_from_slice(&[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 7]);
        bind.extend_from_slice(&[0, 0, 0, 2, b'a', b'b']);
        bind.extend_from_slice(&[0, 1, 0, 1]);
        expected.extend(msg(b'B', &bind));
        // Execute: portal "", no row limit
        expected.extend(msg(b'E', &[0, 0, 0, 0, 0]));
        expected.extend(msg(b'S', &[]));
        assert_eq!(&buf[..], &expected[..]);
    }

    #[test]
    fn bind_null_and_wrong_type() {
        let none: Option<i64> = None;
        let buf = encode_query("s", &[Type::INT8], &[&none]).unwrap();
        // value length -1 marks NULL
        assert_eq!(&buf[5 + 9..5 + 13], &(-1i32).to_be_bytes());
        let e = encode_query("s", &[Type::INT8], &[&"text"]).unwrap_err();
        assert!(
            matches!(e, PgError::Protocol(ref m) if m.contains("$1")),
            "{e}"
        );
        let e = encode_query("s", &[Type::INT8], &[]).unwrap_err();
        assert!(matches!(e, PgError::Protocol(_)));
    }

    #[test]
    fn simple_query_rejects_nul() {
        assert_eq!(
            &encode_simple("SELECT 1").unwrap()[..],
            &msg(b'Q', b"SELECT 1\0")[..]
        );
        assert!(encode_simple("SELECT '\0'").is_err());
    }

    #[test]
    fn startup_carries_statement_timeout() {
        let mut cfg = Config::from_url("postgres://u@h/db").unwrap();
        cfg.statement_timeout = std::time::Duration::from_millis(250);
        let buf = encode_startup(&cfg).unwrap();
        let text = String::from_utf8_lossy(&buf);
        assert!(
            text.contains("options\0-c statement_timeout=250ms\0"),
            "{text:?}"
        );
        assert!(text.contains("user\0u\0database\0db\0"));
    }

    #[test]
    fn frames_split_at_message_boundaries() {
        let mut bytes = msg(b'2', &[]);
        bytes.extend(data_row(&[Some(b"\x00\x01"), None]));
        bytes.extend(msg(b'Z', b"I"));
        let mut buf = BytesMut::from(&bytes[..bytes.len() - 1]);
        assert!(matches!(
            next_message(&mut buf),
            Ok(Some(Backend::Other(Message::BindComplete)))
        ));
        match next_message(&mut buf) {
            Ok(Some(Backend::DataRow(r))) => {
                assert_eq!(r.len(), 2);
                assert_eq!(r.raw(0), Some(&[0u8, 1][..]));
                assert_eq!(r.raw(1), None);
            }
            _ => panic!("expected a data row"),
        }
        // ReadyForQuery is one byte short: wait for more
        assert!(matches!(next_message(&mut buf), Ok(None)));
        buf.extend_from_slice(b"I");
        assert!(matches!(
            next_message(&mut buf),
            Ok(Some(Backend::Other(Message::ReadyForQuery(_))))
        ));
        assert!(buf.is_empty());
    }

    #[test]
    fn oversized_message_is_an_error_not_an_allocation() {
        let mut buf = BytesMut::from(&[b'D', 0x7f, 0xff, 0xff, 0xff][..]);
        let before = buf.capacity();
        assert!(matches!(next_message(&mut buf), Err(PgError::Protocol(_))));
        assert_eq!(buf.capacity(), before);
        let mut buf = BytesMut::from(&[b'Z', 0, 0, 0, 3][..]);
        assert!(matches!(next_message(&mut buf), Err(PgError::Protocol(_))));
    }

    #[test]
    fn malformed_data_rows_are_errors() {
        for body in [
            &[0xff, 0xff][..],                      // negative count
            &[0, 1, 0, 0, 0, 9, 1, 2][..],          // value longer than the message
            &[0, 1, 0xff, 0xff, 0xff, 0xfe][..],    // length -2
            &[0, 1, 0xff, 0xff, 0xff, 0xff, 7][..], // trailing byte
            &[0][..],                               // truncated count
        ] {
            let mut buf = BytesMut::from(&msg(b'D', body)[..]);
            assert!(matches!(next_message(&mut buf), Err(PgError::Protocol(_))));
        }
    }

    /// Arbitrary bytes must give messages or errors, never a panic.
    #[test]
    fn random_bytes_never_panic() {
        let mut next = crate::testing::xorshift(0x9e37_79b9_7f4a_7c15);
        let tags = b"123ACDEGHIKnNRsStTZcdx";
        for _ in 0..20_000 {
            let len = (next() % 24) as usize;
            let body: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let tag = tags[(next() % tags.len() as u64) as usize];
            let mut buf = BytesMut::from(&msg(tag, &body)[..]);
            while let Ok(Some(_)) = next_message(&mut buf) {}
        }
    }
}
