//! HTTP/1.1 framing as RFC 9112 and API.md state it, against the real server over raw sockets:
//! `Host`, absolute-form targets, higher 1.x versions, overlong methods, the header-section limit
//! at its boundary, chunked bodies whose framing outweighs them, and bodies that are not UTF-8.

mod common;

use common::*;
use gavel::http::{MAX_BODY_BYTES, MAX_CHUNK_FRAMING_BYTES, MAX_HEADER_BYTES, MAX_METHOD_BYTES};
use std::io::Write;

fn db() -> String {
    test_db_name("rfc9112")
}

fn assert_error(r: &Reply, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.code(), code, "{}", String::from_utf8_lossy(&r.body));
}

#[test]
fn http_1_1_without_one_valid_host_is_400() {
    let addr = shared();
    for bad in [
        &b"GET /health HTTP/1.1\r\n\r\n"[..],
        b"GET /health HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: a b\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: u@h\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: h:x\r\n\r\n",
        b"GET /health HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
    ] {
        assert_error(&raw(addr, bad), 400, "bad_request");
    }
    for ok in [
        &b"GET /health HTTP/1.1\r\nHost: 127.0.0.1:3000\r\n\r\n"[..],
        b"GET /health HTTP/1.1\r\nHost: [::1]\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost:\r\n\r\n",
        b"GET /health HTTP/1.0\r\n\r\n",
    ] {
        assert_eq!(
            raw(addr, ok).status,
            200,
            "{:?}",
            String::from_utf8_lossy(ok)
        );
    }
}

#[test]
fn absolute_form_targets_are_served_as_their_path() {
    let addr = shared();
    let id = open_auction(addr, 1, "10.00", "1.00")["id"]
        .as_i64()
        .unwrap();
    let req = format!("GET http://{addr}/api/auctions/{id} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let r = raw(addr, req.as_bytes());
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["id"], id);
    let req =
        format!("GET HTTP://gavel.example/api/auctions?limit=1 HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let r = raw(addr, req.as_bytes());
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["auctions"].as_array().map(Vec::len), Some(1));
    let req = b"GET http://u@h/health HTTP/1.1\r\nHost: h\r\n\r\n";
    assert_error(&raw(addr, req), 400, "bad_request");
}

#[test]
fn higher_http_1_minor_versions_are_served_as_1_1() {
    let addr = shared();
    let r = raw(addr, b"GET /health HTTP/1.2\r\nHost: h\r\n\r\n");
    assert_eq!(r.status, 200);
    let r = raw(addr, b"GET /health HTTP/1.9\r\nHost: h\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_error(
        &raw(addr, b"GET /health HTTP/2.0\r\nHost: h\r\n\r\n"),
        400,
        "bad_request",
    );
}

#[test]
fn methods_longer_than_any_served_are_501() {
    let addr = shared();
    let at = format!(
        "{} /health HTTP/1.1\r\nHost: h\r\n\r\n",
        "A".repeat(MAX_METHOD_BYTES)
    );
    assert_error(&raw(addr, at.as_bytes()), 405, "method_not_allowed");
    let past = format!(
        "{} /health HTTP/1.1\r\nHost: h\r\n\r\n",
        "A".repeat(MAX_METHOD_BYTES + 1)
    );
    assert_error(&raw(addr, past.as_bytes()), 501, "not_implemented");
    let huge = format!("{} /health HTTP/1.1\r\nHost: h\r\n\r\n", "A".repeat(20_000));
    assert_error(&raw(addr, huge.as_bytes()), 501, "not_implemented");
}

/// A `GET /health` whose header section (header lines with their CRLFs, the final empty line
/// not counted) is `len` bytes in `lines` lines.
fn health_with_section(len: usize, lines: usize) -> Vec<u8> {
    let mut req = b"GET /health HTTP/1.1\r\nHost: h\r\n".to_vec();
    let fill = len - "Host: h\r\n".len();
    let pads = lines - 1;
    for i in 0..pads {
        let line_len = fill / pads + usize::from(i < fill % pads);
        req.extend_from_slice(b"X-Pad: ");
        req.extend(std::iter::repeat_n(b'p', line_len - "X-Pad: \r\n".len()));
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"\r\n");
    req
}

#[test]
fn header_section_of_16_kib_is_served_whatever_its_lines_and_one_byte_more_is_431() {
    let addr = shared();
    for lines in [2, 3, 64] {
        let at = health_with_section(MAX_HEADER_BYTES, lines);
        assert_eq!(
            at.len(),
            "GET /health HTTP/1.1\r\n".len() + MAX_HEADER_BYTES + 2
        );
        assert_eq!(raw(addr, &at).status, 200, "{lines} lines");
        let past = health_with_section(MAX_HEADER_BYTES + 1, lines);
        assert_error(&raw(addr, &past), 431, "headers_too_large");
    }
}

/// `body` sent chunked, `chunk` bytes a chunk.
fn chunked_post(path: &str, body: &[u8], chunk: usize) -> Vec<u8> {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for piece in body.chunks(chunk) {
        req.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        req.extend_from_slice(piece);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    req
}

/// An auction body padded with an ignored member to exactly `len` bytes.
fn padded_auction(len: usize, title: &str) -> Vec<u8> {
    let fixed = format!(
        r#"{{"title":"{title}","seller_id":1,"start_price":"5.00","min_increment":"1.00","duration_seconds":3600,"pad":""}}"#
    );
    let pad = "p".repeat(len - fixed.len());
    let body = fixed.replace(r#""pad":"""#, &format!(r#""pad":"{pad}""#));
    assert_eq!(body.len(), len);
    body.into_bytes()
}

#[test]
fn a_64_kb_body_in_8_byte_chunks_is_accepted() {
    let addr = shared();
    let body = padded_auction(64_000, "chunked-64000");
    let req = chunked_post("/api/auctions", &body, 8);
    let head_len = chunked_post("/api/auctions", b"", 8).len() - b"0\r\n\r\n".len();
    assert_eq!(
        req.len() - head_len,
        104_005,
        "8 000 chunks of 8 bytes on the wire"
    );
    let r = raw(addr, &req);
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    // The whole body limit in small chunks, and one byte more.
    let r = raw(
        addr,
        &chunked_post("/api/auctions", &padded_auction(MAX_BODY_BYTES, "c"), 16),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let r = raw(
        addr,
        &chunked_post(
            "/api/auctions",
            &padded_auction(MAX_BODY_BYTES + 1, "c"),
            16,
        ),
    );
    assert_error(&r, 413, "payload_too_large");
}

#[test]
fn chunk_framing_past_its_limit_is_400() {
    let addr = shared();
    // One-byte chunks cost 5 framing bytes each: this body needs more than the limit allows.
    let body = padded_auction(MAX_CHUNK_FRAMING_BYTES / 5 + 100, "too-much-framing");
    let r = raw(addr, &chunked_post("/api/auctions", &body, 1));
    assert_error(&r, 400, "bad_request");
    assert_eq!(
        psql(
            &db(),
            "SELECT count(*) FROM auctions WHERE title = 'too-much-framing'"
        ),
        "0"
    );
    assert_healthy(addr);
}

fn post_bytes(path: &str, body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req
}

#[test]
fn bodies_that_are_not_utf_8_are_invalid_json_and_nothing_is_stored() {
    let addr = shared();
    let auction = started_auction(addr, "10.00", "1.00");
    for bad in [
        &b"\xff"[..],
        b"\xc3\x28",
        b"\xed\xa0\x80",
        b"\xf8\x88\x80\x80\x80",
    ] {
        let mut bid =
            format!(r#"{{"auction_id":{auction},"amount":"20.00","bidder_id":2,"note":""#)
                .into_bytes();
        bid.extend_from_slice(bad);
        bid.extend_from_slice(b"\"}");
        assert_error(
            &raw(addr, &post_bytes("/api/bids", &bid)),
            400,
            "invalid_json",
        );

        let mut created = br#"{"title":"not-utf8","seller_id":1,"start_price":"5.00","min_increment":"1.00","duration_seconds":60,"x":""#.to_vec();
        created.extend_from_slice(bad);
        created.extend_from_slice(b"\"}");
        assert_error(
            &raw(addr, &post_bytes("/api/auctions", &created)),
            400,
            "invalid_json",
        );
    }
    let r = get(addr, &format!("/api/auctions/{auction}"));
    assert_eq!(r.json()["bid_count"], 0);
    assert_eq!(
        psql(
            &db(),
            "SELECT count(*) FROM auctions WHERE title = 'not-utf8'"
        ),
        "0"
    );
    // The same bodies in valid UTF-8 are taken.
    let good = format!(r#"{{"auction_id":{auction},"amount":"20.00","bidder_id":2,"note":"é"}}"#);
    assert_eq!(
        raw(addr, &post_bytes("/api/bids", good.as_bytes())).status,
        201
    );
}

#[test]
fn the_server_stays_healthy_after_every_refusal() {
    let addr = shared();
    let mut s = connect(addr);
    s.write_all(b"GET /health HTTP/1.1\r\n\r\n").unwrap();
    let r = read_reply(&mut s).unwrap();
    assert_error(&r, 400, "bad_request");
    assert_healthy(addr);
}
