//! Hostile and malformed requests, as raw bytes: each gets the answer API.md gives, and the server
//! stays healthy afterwards.

mod common;

use common::*;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

fn post_raw_body(body: &[u8]) -> Reply {
    let addr = shared();
    let mut req = format!(
        "POST /api/bids HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    raw(addr, &req)
}

#[test]
fn malformed_json_bodies() {
    let deep = "[".repeat(10_000);
    let deep_obj = format!("{{\"amount\":{}", "[".repeat(10_000));
    let cases: Vec<(&[u8], &str)> = vec![
        (b"{", "invalid_json"),
        (b"{\"auction_id\":1,}", "invalid_json"),
        (b"[1,2,3]", "invalid_json"),
        (b"[]", "invalid_json"),
        (b"\"str\"", "invalid_json"),
        (b"42", "invalid_json"),
        (b"null", "invalid_json"),
        (b"", "invalid_json"),
        (deep.as_bytes(), "invalid_json"),
        (deep_obj.as_bytes(), "invalid_json"),
        (
            b"{\"auction_id\":1,\"amount\":\"1\",\"bidder_id\":2,\"auction_id\":3}",
            "invalid_json",
        ),
        (b"\xff\xfe{}", "invalid_json"),
        (b"{\"auction_id\":\x00}", "invalid_json"),
        (
            b"{\"auction_id\":\"1\",\"amount\":\"1\",\"bidder_id\":2}",
            "invalid_field",
        ),
        (
            b"{\"auction_id\":[1],\"amount\":\"1\",\"bidder_id\":2}",
            "invalid_field",
        ),
        (
            b"{\"auction_id\":{\"a\":1},\"amount\":\"1\",\"bidder_id\":2}",
            "invalid_field",
        ),
    ];
    for (body, code) in cases {
        let r = post_raw_body(body);
        assert_eq!(
            r.status,
            400,
            "{:?}",
            String::from_utf8_lossy(&body[..body.len().min(40)])
        );
        assert_eq!(
            r.code(),
            code,
            "{:?}",
            String::from_utf8_lossy(&body[..body.len().min(40)])
        );
    }
    assert_healthy(shared());
}

#[test]
fn body_limit_at_and_past_64_kib() {
    let addr = shared();
    let pad = |n: usize| {
        let head = r#"{"auction_id":9223372036854775806,"amount":"1","bidder_id":2,"pad":""#;
        let tail = r#""}"#;
        format!("{head}{}{tail}", "x".repeat(n - head.len() - tail.len()))
    };
    let at = pad(64 * 1024);
    assert_eq!(at.len(), 65_536);
    let r = post_raw_body(at.as_bytes());
    assert_eq!(
        r.status, 404,
        "a 64 KiB body is processed (auction 1 may not exist)"
    );
    let past = pad(64 * 1024 + 1);
    let r = post_raw_body(past.as_bytes());
    assert_eq!((r.status, r.code()), (413, "payload_too_large".into()));

    // A 1 MiB body is refused from its Content-Length, before it is read.
    let mut s = connect(addr);
    s.write_all(b"POST /api/bids HTTP/1.1\r\nHost: t\r\nContent-Length: 1048576\r\n\r\n")
        .unwrap();
    let _ = s.write_all(&vec![b'x'; 64 * 1024]);
    let r = read_reply(&mut s).unwrap();
    assert_eq!((r.status, r.code()), (413, "payload_too_large".into()));
    assert_healthy(addr);
}

#[test]
fn header_limits() {
    let addr = shared();
    let many: String = (0..100).map(|i| format!("X-H{i}: v\r\n")).collect();
    let r = raw(
        addr,
        format!("GET /health HTTP/1.1\r\nHost: t\r\n{many}\r\n").as_bytes(),
    );
    assert_eq!((r.status, r.code()), (431, "headers_too_large".into()));

    let sixty_four: String = (0..63).map(|i| format!("X-H{i}: v\r\n")).collect();
    let r = raw(
        addr,
        format!("GET /health HTTP/1.1\r\nHost: t\r\n{sixty_four}\r\n").as_bytes(),
    );
    assert_eq!(r.status, 200, "64 header lines are allowed");

    let big = "a".repeat(20 * 1024);
    let r = raw(
        addr,
        format!("GET /health HTTP/1.1\r\nHost: t\r\nX-Big: {big}\r\n\r\n").as_bytes(),
    );
    assert_eq!((r.status, r.code()), (431, "headers_too_large".into()));
    assert_healthy(addr);
}

#[test]
fn content_length_and_framing() {
    let addr = shared();
    for req in [
        "POST /api/bids HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n",
        "POST /api/bids HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n",
        "POST /api/bids HTTP/1.1\r\nHost: t\r\nContent-Length: +2\r\n\r\n{}",
        "POST /api/bids HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        "POST /api/bids HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        "POST /api/bids HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n{}",
    ] {
        let r = raw(addr, req.as_bytes());
        assert_eq!(r.status, 400, "{req:?}");
        assert!(r.json()["error"]["code"].is_string());
    }
    let same =
        "POST /api/bids HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}";
    let r = raw(addr, same.as_bytes());
    assert_eq!(
        (r.status, r.code()),
        (400, "invalid_field".into()),
        "two equal lengths are one"
    );
    assert_healthy(addr);
}

#[test]
fn nul_bytes_and_garbage() {
    let addr = shared();
    for req in [
        &b"GET /health HTTP/1.1\r\nHost: t\x00x\r\n\r\n"[..],
        b"GET /hea\x00lth HTTP/1.1\r\nHost: t\r\n\r\n",
        b"\x00\x01\x02\x03\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"NOT HTTP AT ALL\r\n\r\n",
    ] {
        let r = raw(addr, req);
        assert!((400..500).contains(&r.status), "{req:?} -> {}", r.status);
        let _ = r.json();
    }
    assert_healthy(addr);
}

#[test]
fn endless_header_stream_is_cut() {
    let addr = shared();
    let mut s = connect(addr);
    s.write_all(b"GET /health HTTP/1.1\r\n").unwrap();
    let line = b"X-Endless: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    let started = Instant::now();
    let mut sent = 0usize;
    // Stop as soon as the server refuses more; never send more than 50 MB.
    while sent < 50 * 1024 * 1024 && started.elapsed() < Duration::from_secs(10) {
        match s.write(line) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
        if sent > 1024 * 1024 {
            break;
        }
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");
    assert_healthy(addr);
}

#[test]
fn pipelined_and_keep_alive() {
    let addr = shared();
    let mut s = connect(addr);
    s.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\nGET /nope HTTP/1.1\r\nHost: t\r\n\r\nGET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
    assert_eq!(read_reply(&mut s).unwrap().status, 200);
    assert_eq!(read_reply(&mut s).unwrap().status, 404);
    let last = read_reply(&mut s).unwrap();
    assert_eq!(last.status, 200);
    let mut rest = Vec::new();
    assert_eq!(
        s.read_to_end(&mut rest).unwrap(),
        0,
        "closed after Connection: close"
    );
}
