use std::io::Read;

use super::*;

fn render(resp: &Response, meta: &ResponseMeta<'_>) -> (String, Vec<u8>) {
    let mut out = Vec::new();
    write_response(&mut out, resp, meta, &GzipPool::new(1));
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("head ends")
        + 4;
    (
        String::from_utf8(out[..split].to_vec()).expect("ascii head"),
        out[split..].to_vec(),
    )
}

fn header<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.lines().find_map(|line| {
        let (n, v) = line.split_once(": ")?;
        n.eq_ignore_ascii_case(name).then_some(v)
    })
}

fn accepts(values: &[&str]) -> bool {
    accepts_gzip(values.iter().map(|v| v.as_bytes()))
}

#[test]
fn writes_status_date_type_length_and_body() {
    let mut resp = Response::json(201, b"{\"id\":1}".to_vec());
    resp.header("Location", "/v1/bids/1");
    let (head, body) = render(&resp, &ResponseMeta::default());
    assert!(head.starts_with("HTTP/1.1 201 Created\r\n"));
    assert_eq!(header(&head, "date").map(str::len), Some(29));
    assert_eq!(header(&head, "content-type"), Some("application/json"));
    assert_eq!(header(&head, "location"), Some("/v1/bids/1"));
    assert_eq!(header(&head, "content-length"), Some("8"));
    assert_eq!(header(&head, "connection"), None);
    assert_eq!(body, b"{\"id\":1}");
}

#[test]
fn connection_header_follows_the_decision() {
    let resp = Response::new(200);
    let close = ResponseMeta {
        close: true,
        ..ResponseMeta::default()
    };
    assert_eq!(
        header(&render(&resp, &close).0, "connection"),
        Some("close")
    );
    let keep = ResponseMeta {
        keep_alive_10: true,
        ..ResponseMeta::default()
    };
    assert_eq!(
        header(&render(&resp, &keep).0, "connection"),
        Some("keep-alive")
    );
}

#[test]
fn head_requests_keep_the_length_but_not_the_body() {
    let resp = Response::json(200, vec![b'x'; 10]);
    let meta = ResponseMeta {
        head_request: true,
        ..ResponseMeta::default()
    };
    let (head, body) = render(&resp, &meta);
    assert_eq!(header(&head, "content-length"), Some("10"));
    assert!(body.is_empty());
}

#[test]
fn no_content_responses_carry_no_body_or_length() {
    let mut resp = Response::new(204);
    resp.body = b"ignored".to_vec();
    let (head, body) = render(&resp, &ResponseMeta::default());
    assert!(head.starts_with("HTTP/1.1 204 No Content\r\n"));
    assert_eq!(header(&head, "content-length"), None);
    assert!(body.is_empty());
}

#[test]
fn large_bodies_are_gzipped_when_accepted() {
    let text = "bid ".repeat(1000).into_bytes();
    let resp = Response::json(200, text.clone());
    let meta = ResponseMeta {
        accepts_gzip: true,
        ..ResponseMeta::default()
    };
    let (head, body) = render(&resp, &meta);
    assert_eq!(header(&head, "content-encoding"), Some("gzip"));
    assert_eq!(header(&head, "vary"), Some("Accept-Encoding"));
    assert_eq!(
        header(&head, "content-length"),
        Some(body.len().to_string().as_str())
    );
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_end(&mut plain)
        .unwrap();
    assert_eq!(plain, text);

    let (head, body) = render(&resp, &ResponseMeta::default());
    assert_eq!(header(&head, "content-encoding"), None);
    assert_eq!(header(&head, "vary"), Some("Accept-Encoding"));
    assert_eq!(body, text);
}

#[test]
fn small_bodies_are_not_compressed() {
    let resp = Response::json(200, vec![b'a'; GZIP_MIN_BYTES]);
    let meta = ResponseMeta {
        accepts_gzip: true,
        ..ResponseMeta::default()
    };
    let (head, body) = render(&resp, &meta);
    assert_eq!(header(&head, "content-encoding"), None);
    assert_eq!(header(&head, "vary"), None);
    assert_eq!(body.len(), GZIP_MIN_BYTES);
}

#[test]
fn cors_headers_and_vary_are_written() {
    let resp = Response::new(200);
    let meta = ResponseMeta {
        cors: CorsHeaders {
            allow_origin: Some(b"https://a.example"),
            vary_origin: true,
        },
        ..ResponseMeta::default()
    };
    let (head, _) = render(&resp, &meta);
    assert_eq!(
        header(&head, "access-control-allow-origin"),
        Some("https://a.example")
    );
    assert_eq!(
        header(&head, "access-control-expose-headers"),
        Some("location, retry-after, x-request-id")
    );
    assert_eq!(header(&head, "vary"), Some("Origin"));
}

#[test]
fn header_values_cannot_split_the_response() {
    let mut resp = Response::new(302);
    resp.header("Location", "/a\r\nSet-Cookie: x=1");
    let (head, _) = render(&resp, &ResponseMeta::default());
    assert_eq!(header(&head, "location"), Some("/a  Set-Cookie: x=1"));
    assert_eq!(header(&head, "set-cookie"), None);
}

#[test]
fn out_of_range_status_becomes_500() {
    let (head, _) = render(&Response::new(42), &ResponseMeta::default());
    assert!(head.starts_with("HTTP/1.1 500 "));
    let (head, _) = render(&Response::new(599), &ResponseMeta::default());
    assert!(head.starts_with("HTTP/1.1 599 \r\n"));
}

#[test]
fn accept_encoding_q_values() {
    assert!(accepts(&["gzip"]));
    assert!(accepts(&["deflate, GZIP;q=0.5"]));
    assert!(accepts(&["br", "gzip"]));
    assert!(accepts(&["*"]));
    assert!(accepts(&["x-gzip"]));
    assert!(accepts(&["gzip;q=1.000"]));
    assert!(accepts(&["gzip ; Q=0.001"]));
    assert!(!accepts(&[]));
    assert!(!accepts(&["identity"]));
    assert!(!accepts(&["gzip;q=0"]));
    assert!(!accepts(&["gzip;q=0.000"]));
    assert!(!accepts(&["*, gzip;q=0"]));
    assert!(!accepts(&["*;q=0"]));
    assert!(!accepts(&["gzip;q=2"]));
    assert!(!accepts(&["gzip;q=0.0001"]));
    assert!(!accepts(&["gzip;q=abc"]));
    assert!(accepts(&["gzip;level=1"]));
    assert!(accepts(&["gzip;q=0, gzip"]), "the best weight wins");
}
