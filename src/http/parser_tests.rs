use super::*;
/// Deterministic randomness without a dependency: the fuzz oracles' generator.
use crate::http::fuzz::Splits as Rng;
use crate::http::message::Header;
use crate::http::MAX_BODY_BYTES;

#[derive(Debug, PartialEq, Eq)]
struct Parsed {
    method: String,
    path: String,
    body: Vec<u8>,
}

/// Feeds `pieces` one after another the way a connection receives them, collecting every
/// request completed. Stops at the first error.
fn drive(pieces: &[&[u8]]) -> (Vec<Parsed>, Option<HttpError>) {
    let mut buf = Vec::new();
    let mut parser = RequestParser::new();
    let mut done = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            match parser.advance(&mut buf) {
                Ok(Progress::Complete { body, len }) => {
                    done.push(materialize(&parser, &buf, body));
                    buf.drain(..len);
                    parser.reset();
                }
                Ok(_) => break,
                Err(e) => return (done, Some(e)),
            }
        }
    }
    (done, None)
}

fn materialize(parser: &RequestParser, buf: &[u8], body: Range<usize>) -> Parsed {
    let head = parser.head().expect("complete request has a head");
    let mut scratch = [Header::EMPTY; crate::http::MAX_HEADER_LINES];
    let req = head.request(buf, body, &mut scratch);
    Parsed {
        method: req.method.to_owned(),
        path: req.path.to_owned(),
        body: req.body.to_vec(),
    }
}

fn parsed(method: &str, path: &str, body: &[u8]) -> Parsed {
    Parsed {
        method: method.to_owned(),
        path: path.to_owned(),
        body: body.to_vec(),
    }
}

const PIPELINE: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n\
POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello\
POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x\r\nde\r\n0\r\nT: 1\r\n\r\n\
\r\nHEAD /d HTTP/1.1\r\nHost: h\r\n\r\n";

fn pipeline_requests() -> Vec<Parsed> {
    vec![
        parsed("GET", "/a", b""),
        parsed("POST", "/b", b"hello"),
        parsed("POST", "/c", b"abcde"),
        parsed("HEAD", "/d", b""),
    ]
}

#[test]
fn pipelined_requests_come_out_in_order() {
    let (done, err) = drive(&[PIPELINE]);
    assert_eq!(err, None);
    assert_eq!(done, pipeline_requests());
}

#[test]
fn pipelined_input_split_at_every_byte_boundary() {
    for cut in 0..=PIPELINE.len() {
        let (done, err) = drive(&[&PIPELINE[..cut], &PIPELINE[cut..]]);
        assert_eq!(err, None, "cut at {cut}");
        assert_eq!(done, pipeline_requests(), "cut at {cut}");
    }
}

#[test]
fn pipelined_input_one_byte_at_a_time() {
    let pieces: Vec<&[u8]> = PIPELINE.chunks(1).collect();
    let (done, err) = drive(&pieces);
    assert_eq!(err, None);
    assert_eq!(done, pipeline_requests());
}

#[test]
fn body_waits_for_content_length_and_reports_the_total() {
    let mut parser = RequestParser::new();
    let mut buf = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n12345".to_vec();
    let head_len = buf.len() - 5;
    assert_eq!(
        parser.advance(&mut buf),
        Ok(Progress::NeedBody {
            total: Some(head_len + 10)
        })
    );
    assert!(parser.started());
    buf.extend_from_slice(b"67890GET");
    assert_eq!(
        parser.advance(&mut buf),
        Ok(Progress::Complete {
            body: head_len..head_len + 10,
            len: head_len + 10
        })
    );
}

#[test]
fn body_of_exactly_the_limit_is_accepted_and_one_more_is_413() {
    let mut at = format!("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: {MAX_BODY_BYTES}\r\n\r\n")
        .into_bytes();
    at.extend(std::iter::repeat_n(b'b', MAX_BODY_BYTES));
    let (done, err) = drive(&[&at]);
    assert_eq!(err, None);
    assert_eq!(done[0].body.len(), MAX_BODY_BYTES);

    let over = format!(
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n",
        MAX_BODY_BYTES + 1
    );
    let (_, err) = drive(&[over.as_bytes()]);
    assert_eq!(err, Some(HttpError::PayloadTooLarge));
}

#[test]
fn chunked_trailers_count_against_what_the_head_left() {
    let mut req = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n".to_vec();
    let pad = crate::http::MAX_HEADER_BYTES - 200;
    req.extend_from_slice(b"X: ");
    req.extend(std::iter::repeat_n(b'p', pad));
    req.extend_from_slice(b"\r\n\r\n0\r\nT: ");
    req.extend(std::iter::repeat_n(b't', 300));
    req.extend_from_slice(b"\r\n\r\n");
    let (_, err) = drive(&[&req]);
    assert_eq!(err, Some(HttpError::HeadersTooLarge));
}

#[test]
fn an_error_stops_the_pipeline_after_the_good_requests() {
    let input = b"GET /ok HTTP/1.1\r\nHost: h\r\n\r\nGET /bad HTTP/1.1\r\nHost: h\r\nContent-Length: abc\r\n\r\n";
    let (done, err) = drive(&[input]);
    assert_eq!(done, vec![parsed("GET", "/ok", b"")]);
    assert_eq!(err, Some(HttpError::InvalidContentLength));
}

/// Drives arbitrary input through the parser in random pieces; every outcome is fine except a
/// panic, and a completed request must lie within the buffer.
fn survive(input: &[u8], rng: &mut Rng) {
    let (done, _) = drive(&rng.pieces(input, 64));
    assert!(done.len() <= input.len());
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..3000 {
        let len = rng.below(600);
        let input: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        survive(&input, &mut rng);
    }
}

#[test]
fn random_bytes_from_a_request_alphabet_never_panic() {
    let alphabet: &[u8] = b"GET POST / HTTP/1.1\r\nHost: h\r\n:;,0123456789abcdefABCDEF \t\
        Content-Length Transfer-Encoding chunked";
    let mut rng = Rng(42);
    for _ in 0..3000 {
        let len = rng.below(400);
        let input: Vec<u8> = (0..len)
            .map(|_| alphabet[rng.below(alphabet.len())])
            .collect();
        survive(&input, &mut rng);
    }
}

#[test]
fn mutated_valid_requests_never_panic() {
    let mut rng = Rng(7);
    for _ in 0..5000 {
        let mut input = PIPELINE.to_vec();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(input.len());
            match rng.below(3) {
                0 => input[at] = rng.next() as u8,
                1 => input.insert(at, rng.next() as u8),
                _ => {
                    input.remove(at);
                }
            }
        }
        survive(&input, &mut rng);
    }
}
