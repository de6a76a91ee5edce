//! Reply framing and decoding. IO-free: the reader coroutine feeds it bytes.
//!
//! [`Framer`] finds where the first reply in a buffer ends without allocating, enforcing
//! `MAX_REPLY_BYTES` and `MAX_REPLY_DEPTH` before a byte of the reply is stored anywhere else;
//! only then is the complete reply handed to [`decode`], which uses `redis`'s parser (with a
//! direct path for the flat replies that make up nearly all of Gavel's traffic).

use redis::Value;

use super::error::CacheError;
use super::limits::{MAX_REPLY_BYTES, MAX_REPLY_DEPTH};

/// What one command gets: its value, or its own error reply as `CacheError::Server`.
pub type Reply = Result<Value, CacheError>;

fn protocol(why: impl Into<String>) -> CacheError {
    CacheError::Protocol(why.into())
}

/// Finds reply boundaries. Keeps its place between calls, so a reply that arrives over many
/// reads is scanned about once instead of from its start on every read.
#[derive(Default)]
pub(crate) struct Framer {
    /// Offset of the next element header not yet scanned, from the start of the reply.
    scanned: usize,
    /// Elements still expected by each aggregate opened so far, outermost first.
    open: Vec<usize>,
}

impl Framer {
    /// The length of the complete reply at the front of `buf`, or `None` while more bytes are
    /// needed. `buf` must keep starting at the same reply until that reply has been returned;
    /// the caller then drops those bytes and the next call starts on the following reply.
    /// An error means the stream cannot be followed any further.
    pub fn frame(&mut self, buf: &[u8]) -> Result<Option<usize>, CacheError> {
        loop {
            let pos = self.scanned;
            let Some(eol) = line_end(buf, pos)? else {
                return if buf.len() > MAX_REPLY_BYTES {
                    Err(too_large())
                } else {
                    Ok(None)
                };
            };
            let line = &buf[pos + 1..eol];
            let mut next = eol + 2;
            match buf[pos] {
                b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => {}
                kind @ (b'$' | b'=' | b'!') => match length(line)? {
                    -1 if kind == b'$' => {}
                    n if n < 0 => return Err(protocol("negative string length")),
                    n => {
                        let end = next
                            .checked_add(n as usize + 2)
                            .filter(|&end| end <= MAX_REPLY_BYTES)
                            .ok_or_else(too_large)?;
                        if buf.len() < end {
                            return Ok(None);
                        }
                        if &buf[end - 2..end] != b"\r\n" {
                            return Err(protocol("string not followed by CRLF"));
                        }
                        next = end;
                    }
                },
                kind @ (b'*' | b'~' | b'%') => match length(line)? {
                    -1 if kind == b'*' => {}
                    n if n < 0 => return Err(protocol("negative aggregate length")),
                    0 => {}
                    n => {
                        let elements = if kind == b'%' { n * 2 } else { n } as usize;
                        // Every element takes at least 3 bytes ("_\r\n"): more cannot fit.
                        if elements > MAX_REPLY_BYTES / 3 {
                            return Err(too_large());
                        }
                        if self.open.len() >= MAX_REPLY_DEPTH {
                            return Err(protocol(format!(
                                "reply nested deeper than {MAX_REPLY_DEPTH} levels"
                            )));
                        }
                        self.open.push(elements);
                        self.scanned = next;
                        continue;
                    }
                },
                b'>' => return Err(protocol("unexpected push message")),
                b'|' => return Err(protocol("unexpected attribute message")),
                other => return Err(protocol(format!("unknown reply type byte 0x{other:02x}"))),
            }
            if next > MAX_REPLY_BYTES {
                return Err(too_large());
            }
            self.scanned = next;
            // One element is complete: close every aggregate it completes.
            loop {
                match self.open.last_mut() {
                    None => {
                        self.scanned = 0;
                        return Ok(Some(next));
                    }
                    Some(left) if *left > 1 => {
                        *left -= 1;
                        break;
                    }
                    Some(_) => {
                        self.open.pop();
                    }
                }
            }
        }
    }
}

fn too_large() -> CacheError {
    protocol(format!("reply larger than {MAX_REPLY_BYTES} bytes"))
}

/// The offset of the CRLF ending the header line that starts at `pos`, `None` if it has not
/// arrived. A bare LF is an error: RESP header lines never contain one.
fn line_end(buf: &[u8], pos: usize) -> Result<Option<usize>, CacheError> {
    let Some(rest) = buf.get(pos + 1..) else {
        return Ok(None);
    };
    match rest.iter().position(|&b| b == b'\n') {
        Some(i) if i > 0 && rest[i - 1] == b'\r' => Ok(Some(pos + i)),
        Some(_) => Err(protocol("header line not ended by CRLF")),
        None => Ok(None),
    }
}

/// A length field: an optional '-' and at most 18 digits (so it cannot overflow), nothing else.
fn length(line: &[u8]) -> Result<i64, CacheError> {
    let digits = line.strip_prefix(b"-").unwrap_or(line);
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(protocol("malformed length"));
    }
    let n = digits
        .iter()
        .fold(0i64, |n, &d| n * 10 + i64::from(d - b'0'));
    Ok(if digits.len() < line.len() { -n } else { n })
}

/// Decodes one complete reply as returned by [`Framer::frame`]. The outer error means the
/// connection cannot be trusted any more; the inner one is the command's own error reply.
pub(crate) fn decode(frame: &[u8]) -> Result<Reply, CacheError> {
    let eol = line_end(frame, 0)?.ok_or_else(|| protocol("incomplete reply"))?;
    let line = &frame[1..eol];
    let body = &frame[eol + 2..];
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    Ok(match frame[0] {
        b'-' => Err(CacheError::Server(text(line))),
        b'!' => Err(CacheError::Server(text(&body[..body.len() - 2]))),
        // The framer took any spelling of -1 (`-01` too) as the null string: so must this.
        b'$' if length(line)? < 0 => Ok(Value::Nil),
        b'$' => Ok(Value::BulkString(
            body.get(..body.len().saturating_sub(2))
                .unwrap_or_default()
                .to_vec(),
        )),
        b'+' if line == b"OK" => Ok(Value::Okay),
        b'+' => Ok(Value::SimpleString(
            std::str::from_utf8(line)
                .map_err(|_| protocol("status reply is not UTF-8"))?
                .to_owned(),
        )),
        b':' => Ok(Value::Int(
            std::str::from_utf8(line)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| protocol("malformed integer reply"))?,
        )),
        _ => Ok(redis::parse_redis_value(frame)
            .map_err(|e| protocol(format!("malformed reply: {e}")))?),
    })
}

#[cfg(test)]
mod tests {
    use super::super::limits::LIMITS;
    use super::*;

    /// Every reply in `bytes`, fed in the pieces given, the way the reader consumes them.
    fn replies_from(pieces: &[&[u8]]) -> Result<Vec<Reply>, CacheError> {
        let mut framer = Framer::default();
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for piece in pieces {
            buf.extend_from_slice(piece);
            while let Some(len) = framer.frame(&buf)? {
                out.push(decode(&buf[..len])?);
                buf.drain(..len);
            }
        }
        assert!(buf.is_empty(), "{} bytes left over", buf.len());
        Ok(out)
    }

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn same(a: &[Reply], b: &[Reply]) -> bool {
        a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| match (x, y) {
                (Ok(x), Ok(y)) => x == y,
                (Err(CacheError::Server(x)), Err(CacheError::Server(y))) => x == y,
                _ => false,
            })
    }

    const STREAM: &[u8] = b"+OK\r\n+PONG\r\n:-42\r\n$5\r\nhello\r\n$0\r\n\r\n$-1\r\n*-1\r\n*0\r\n\
        -WRONGTYPE Operation against a key holding the wrong kind of value\r\n\
        *4\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$1\r\n2\r\n\
        *3\r\n*2\r\n:1\r\n*1\r\n$2\r\nxy\r\n$-1\r\n*0\r\n\
        $4\r\na\r\nb\r\n\
        !21\r\nSYNTAX invalid syntax\r\n\
        %1\r\n+k\r\n#t\r\n_\r\n,1.5\r\n";

    fn expected() -> Vec<Reply> {
        vec![
            Ok(Value::Okay),
            Ok(Value::SimpleString("PONG".into())),
            Ok(Value::Int(-42)),
            Ok(bulk("hello")),
            Ok(bulk("")),
            Ok(Value::Nil),
            Ok(Value::Nil),
            Ok(Value::Array(vec![])),
            Err(CacheError::Server(
                "WRONGTYPE Operation against a key holding the wrong kind of value".into(),
            )),
            Ok(Value::Array(vec![
                bulk("a"),
                bulk("1"),
                bulk("b"),
                bulk("2"),
            ])),
            Ok(Value::Array(vec![
                Value::Array(vec![Value::Int(1), Value::Array(vec![bulk("xy")])]),
                Value::Nil,
                Value::Array(vec![]),
            ])),
            Ok(bulk("a\r\nb")),
            Err(CacheError::Server("SYNTAX invalid syntax".into())),
            Ok(Value::Map(vec![(
                Value::SimpleString("k".into()),
                Value::Boolean(true),
            )])),
            Ok(Value::Nil),
            Ok(Value::Double(1.5)),
        ]
    }

    #[test]
    fn whole_stream_in_one_read() {
        assert!(same(&replies_from(&[STREAM]).unwrap(), &expected()));
    }

    #[test]
    fn split_at_every_boundary() {
        for cut in 0..=STREAM.len() {
            let got = replies_from(&[&STREAM[..cut], &STREAM[cut..]]).unwrap();
            assert!(same(&got, &expected()), "split at {cut}");
        }
        for a in 0..=STREAM.len() {
            for b in a..=STREAM.len() {
                let got = replies_from(&[&STREAM[..a], &STREAM[a..b], &STREAM[b..]]).unwrap();
                assert!(same(&got, &expected()), "split at {a} and {b}");
            }
        }
    }

    #[test]
    fn one_byte_at_a_time() {
        let pieces: Vec<&[u8]> = STREAM.chunks(1).collect();
        assert!(same(&replies_from(&pieces).unwrap(), &expected()));
    }

    #[test]
    fn direct_decoding_matches_the_redis_parser() {
        for frame in [
            &b"+OK\r\n"[..],
            b"+QUEUED\r\n",
            b":0\r\n",
            b":-9223372036854775808\r\n",
            b"$3\r\nabc\r\n",
            b"$0\r\n\r\n",
            b"$-1\r\n",
            b"$2\r\n\xff\x00\r\n",
        ] {
            let direct = decode(frame).unwrap().unwrap();
            assert_eq!(
                direct,
                redis::parse_redis_value(frame).unwrap(),
                "{frame:?}"
            );
        }
    }

    #[test]
    fn error_replies_are_the_commands_own() {
        let got = replies_from(&[b"-ERR unknown command 'NOPE'\r\n:1\r\n"]).unwrap();
        assert!(matches!(&got[0], Err(CacheError::Server(t)) if t == "ERR unknown command 'NOPE'"));
        assert!(matches!(&got[1], Ok(Value::Int(1))));
        // an error nested in an array (EXEC) stays inside the value
        let got = replies_from(&[b"*2\r\n:1\r\n-ERR inner\r\n"]).unwrap();
        match &got[0] {
            Ok(Value::Array(items)) => assert!(matches!(items[1], Value::ServerError(_))),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn size_bound() {
        let over = MAX_REPLY_BYTES;
        // a declared length past the bound fails before any of the body arrives
        let head = format!("${over}\r\n");
        assert!(Framer::default().frame(head.as_bytes()).is_err());
        let head = format!("${}\r\n", over - 20);
        assert_eq!(Framer::default().frame(head.as_bytes()).unwrap(), None);
        // the largest bulk string that fits
        let n = over - format!("${over}\r\n").len() - 2;
        let mut frame = format!("${n}\r\n").into_bytes();
        frame.resize(frame.len() + n, b'x');
        frame.extend_from_slice(b"\r\n");
        assert!(frame.len() <= over);
        assert_eq!(Framer::default().frame(&frame).unwrap(), Some(frame.len()));
        // a header line that never ends
        let mut endless = b"+".to_vec();
        endless.resize(over + 1, b'x');
        assert!(Framer::default().frame(&endless).is_err());
        // many small elements adding up past the bound
        let mut many = format!("*{}\r\n", over / 4).into_bytes();
        while many.len() <= over {
            many.extend_from_slice(b":1\r\n");
        }
        assert!(Framer::default().frame(&many).is_err());
        // element counts that could never fit
        assert!(Framer::default().frame(b"*9999999999\r\n").is_err());
        assert!(Framer::default().frame(b"%999999999999999\r\n").is_err());
    }

    #[test]
    fn depth_bound() {
        let nested = |depth: usize| {
            let mut f = "*1\r\n".repeat(depth).into_bytes();
            f.extend_from_slice(b":7\r\n");
            f
        };
        let ok = nested(MAX_REPLY_DEPTH);
        assert_eq!(Framer::default().frame(&ok).unwrap(), Some(ok.len()));
        assert!(decode(&ok).unwrap().is_ok());
        assert!(Framer::default()
            .frame(&nested(MAX_REPLY_DEPTH + 1))
            .is_err());
    }

    /// `redis`'s parser recurses with large frames (about 30 KiB a level in debug builds): the
    /// deepest reply the framer lets through must parse in half the reader's stack.
    #[test]
    fn deepest_reply_fits_the_reader_stack() {
        let bytes = LIMITS.coroutine_stack_words * std::mem::size_of::<usize>() / 2;
        let parsed = std::thread::Builder::new()
            .stack_size(bytes)
            .spawn(|| {
                let mut f = "*2\r\n:1\r\n".repeat(MAX_REPLY_DEPTH - 1).into_bytes();
                f.extend_from_slice(b"%1\r\n+k\r\n$1\r\nv\r\n");
                assert_eq!(Framer::default().frame(&f).unwrap(), Some(f.len()));
                decode(&f).unwrap().is_ok()
            })
            .unwrap()
            .join()
            .unwrap();
        assert!(parsed);
    }

    #[test]
    fn malformed_streams_are_connection_errors() {
        for bad in [
            &b">2\r\n$7\r\nmessage\r\n$1\r\nx\r\n"[..],
            b"|1\r\n+a\r\n+b\r\n:1\r\n",
            b"?\r\n",
            b"+OK\n",
            b"$3\r\nabcde\r\n",
            b"$x\r\n",
            b"$\r\n",
            b"$-2\r\n",
            b"*-2\r\n",
            b"$99999999999999999999\r\n",
            b"*1\r\n>1\r\n+x\r\n",
        ] {
            let e = replies_from(&[bad]).unwrap_err();
            assert!(matches!(e, CacheError::Protocol(_)), "{bad:?}: {e:?}");
        }
        // framed correctly but not what RESP allows inside
        assert!(decode(b":12a\r\n").is_err());
        assert!(decode(b"+\xff\r\n").is_err());
        assert!(decode(b",x\r\n").is_err());
    }

    /// Found by fuzzing: the framer reads `-01` as the null length, and decoding must agree
    /// instead of slicing an empty body.
    #[test]
    fn null_bulk_string_in_any_spelling_is_nil() {
        for frame in [&b"$-1\r\n"[..], b"$-01\r\n", b"$-0001\r\n"] {
            let mut framer = Framer::default();
            assert_eq!(framer.frame(frame).unwrap(), Some(frame.len()));
            assert_eq!(decode(frame).unwrap().unwrap(), Value::Nil);
        }
        crate::cache::client::fuzz::resp(b":-4elv\r\n$-01\r\n");
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut next = crate::testing::xorshift(0x9e37_79b9_7f4a_7c15);
        let alphabet = b"+-:$*%~_,#(!=>|0123456789\r\n\r\nab";
        for _ in 0..20_000 {
            let len = (next() % 24) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let mut framer = Framer::default();
            if let Ok(Some(n)) = framer.frame(&bytes) {
                let _ = decode(&bytes[..n]);
            }
        }
    }
}
