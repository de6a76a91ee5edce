use super::*;
use crate::http::{MAX_HEADER_BYTES, MAX_HEADER_LINES};

/// Decodes `raw` delivered in one piece; returns (decoded body, raw bytes consumed).
fn decode_all(raw: &[u8]) -> Result<Option<(Vec<u8>, usize)>, HttpError> {
    let mut buf = raw.to_vec();
    let mut dec = ChunkedDecoder::new(MAX_HEADER_BYTES, MAX_HEADER_LINES);
    if dec.decode(&mut buf)? {
        Ok(Some((buf[..dec.decoded_len()].to_vec(), dec.raw_len())))
    } else {
        Ok(None)
    }
}

/// Decodes `raw` arriving `step` bytes at a time, as a connection would see it.
fn decode_in_steps(raw: &[u8], step: usize) -> Result<(Vec<u8>, usize), HttpError> {
    let mut buf = Vec::new();
    let mut dec = ChunkedDecoder::new(MAX_HEADER_BYTES, MAX_HEADER_LINES);
    for piece in raw.chunks(step) {
        buf.extend_from_slice(piece);
        if dec.decode(&mut buf)? {
            return Ok((buf[..dec.decoded_len()].to_vec(), dec.raw_len()));
        }
    }
    Err(HttpError::BadRequest("incomplete"))
}

#[test]
fn decodes_chunks_and_reports_consumed_length() {
    let raw = b"5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\nGET /next";
    let (body, used) = decode_all(raw).unwrap().unwrap();
    assert_eq!(body, b"hello, world");
    assert_eq!(&raw[used..], b"GET /next");
}

#[test]
fn decodes_identically_whatever_the_split() {
    let raw = b"3;ext=1\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nX-Trailer: t\r\n\r\n";
    for step in 1..raw.len() {
        let (body, used) = decode_in_steps(raw, step).unwrap();
        assert_eq!(body, b"abc0123456789abcdef", "step {step}");
        assert_eq!(used, raw.len());
    }
}

#[test]
fn extensions_and_hex_case_are_accepted() {
    let raw = b"A ; name=\"v\"\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n";
    let (body, _) = decode_all(raw).unwrap().unwrap();
    assert_eq!(body.len(), 20);
}

#[test]
fn incomplete_input_waits() {
    assert_eq!(decode_all(b"5\r\nhel").unwrap(), None);
    assert_eq!(decode_all(b"5\r\nhello\r").unwrap(), None);
    assert_eq!(decode_all(b"0\r\n").unwrap(), None);
    assert_eq!(decode_all(b"0\r\nX: y\r\n").unwrap(), None);
}

#[test]
fn malformed_chunks_are_400() {
    for raw in [
        &b"x\r\n"[..],
        b"\r\n",
        b"5\nhello\r\n0\r\n\r\n",
        b"5\r\nhelloXY0\r\n\r\n",
        b"5\r\nhello\rX",
        b"5 x\r\nhello\r\n0\r\n\r\n",
        b"-5\r\nhello\r\n",
        b"5;\x01\r\nhello\r\n0\r\n\r\n",
        b"0\r\nnot a trailer\r\n\r\n",
        b"0\r\n: empty name\r\n\r\n",
        b"0\r\nX: a\x00\r\n\r\n",
    ] {
        assert!(
            matches!(decode_all(raw), Err(HttpError::BadRequest(_))),
            "{:?}",
            String::from_utf8_lossy(raw)
        );
    }
}

#[test]
fn endless_size_line_is_refused_at_its_limit() {
    let mut raw = b"5;".to_vec();
    raw.extend(std::iter::repeat_n(b'e', MAX_CHUNK_LINE_BYTES));
    assert!(matches!(decode_all(&raw), Err(HttpError::BadRequest(_))));
    let mut ok = b"1;".to_vec();
    ok.extend(std::iter::repeat_n(b'e', MAX_CHUNK_LINE_BYTES - 4));
    ok.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
    assert_eq!(decode_all(&ok).unwrap().unwrap().0, b"x");
}

#[test]
fn body_limit_counts_decoded_bytes() {
    let mut at = format!("{MAX_BODY_BYTES:x}\r\n").into_bytes();
    at.extend(std::iter::repeat_n(b'b', MAX_BODY_BYTES));
    at.extend_from_slice(b"\r\n0\r\n\r\n");
    assert_eq!(decode_all(&at).unwrap().unwrap().0.len(), MAX_BODY_BYTES);

    let mut over = format!("{:x}\r\n", MAX_BODY_BYTES - 1).into_bytes();
    over.extend(std::iter::repeat_n(b'b', MAX_BODY_BYTES - 1));
    over.extend_from_slice(b"\r\n2\r\n");
    assert_eq!(decode_all(&over), Err(HttpError::PayloadTooLarge));
}

#[test]
fn huge_chunk_sizes_are_413_not_overflow() {
    assert_eq!(
        decode_all(b"ffffffffffffffffffff\r\n"),
        Err(HttpError::PayloadTooLarge)
    );
    assert_eq!(decode_all(b"10001\r\n"), Err(HttpError::PayloadTooLarge));
}

#[test]
fn trailers_share_the_header_budget() {
    let mut dec = ChunkedDecoder::new(20, 1);
    let mut raw = b"0\r\nX-A: 0123456789abcd\r\n\r\n".to_vec();
    assert_eq!(dec.decode(&mut raw), Err(HttpError::HeadersTooLarge));

    let mut dec = ChunkedDecoder::new(100, 1);
    let mut raw = b"0\r\nX-A: 1\r\nX-B: 2\r\n\r\n".to_vec();
    assert_eq!(dec.decode(&mut raw), Err(HttpError::HeadersTooLarge));

    let mut dec = ChunkedDecoder::new(0, 0);
    let mut raw = b"0\r\n\r\n".to_vec();
    assert_eq!(dec.decode(&mut raw), Ok(true), "the final CRLF always fits");

    let mut dec = ChunkedDecoder::new(10, 5);
    let mut raw = b"0\r\nX-Endless-Trailer".to_vec();
    assert_eq!(dec.decode(&mut raw), Err(HttpError::HeadersTooLarge));
}

/// A body of `chunks` one-byte chunks whose last size line is `0` plus `ext_bytes` of extension:
/// 5 framing bytes a chunk, `3 + ext_bytes` for the last-chunk line.
fn one_byte_chunks(chunks: usize, ext_bytes: usize) -> Vec<u8> {
    let mut raw = b"1\r\nx\r\n".repeat(chunks);
    raw.push(b'0');
    raw.extend(std::iter::repeat_n(b';', ext_bytes));
    raw.extend_from_slice(b"\r\n\r\n");
    raw
}

#[test]
fn framing_at_its_limit_is_accepted_and_one_byte_more_is_400() {
    let chunks = (MAX_CHUNK_FRAMING_BYTES - 3) / 5;
    let ext = MAX_CHUNK_FRAMING_BYTES - 3 - 5 * chunks;
    let at = one_byte_chunks(chunks, ext);
    assert_eq!(at.len() - chunks - 2, MAX_CHUNK_FRAMING_BYTES);
    assert_eq!(decode_all(&at).unwrap().unwrap().0.len(), chunks);
    assert_eq!(
        decode_all(&one_byte_chunks(chunks, ext + 1)),
        Err(HttpError::BadRequest("too much chunk framing for the body"))
    );
}

/// Decodes as the connection does: `step` bytes arrive at a time, and the framing decoded past
/// is cut out of the buffer after each pass. Returns the body and the largest buffer held.
fn decode_compacting(raw: &[u8], step: usize) -> Result<(Vec<u8>, usize), HttpError> {
    let mut buf = Vec::new();
    let mut peak = 0;
    let mut dec = ChunkedDecoder::new(MAX_HEADER_BYTES, MAX_HEADER_LINES);
    for piece in raw.chunks(step) {
        buf.extend_from_slice(piece);
        peak = peak.max(buf.len());
        if dec.decode(&mut buf)? {
            assert_eq!(dec.raw_len(), buf.len(), "the whole input was one body");
            return Ok((buf[..dec.decoded_len()].to_vec(), peak));
        }
        let spent = dec.take_spent();
        buf.drain(spent);
    }
    Err(HttpError::BadRequest("incomplete"))
}

#[test]
fn a_body_in_small_chunks_costs_its_decoded_size() {
    // 64 000 bytes in 8 000 chunks of 8: 104 005 bytes on the wire.
    let mut raw = b"8\r\nabcdefgh\r\n".repeat(8_000);
    raw.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(raw.len(), 104_005);
    for step in [1, 7, 4096, raw.len()] {
        let (body, peak) = decode_compacting(&raw, step).unwrap();
        assert_eq!(body, b"abcdefgh".repeat(8_000));
        assert!(peak <= 64_000 + step + 16, "step {step}: peak {peak}");
    }
}
