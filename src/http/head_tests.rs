use super::*;
use crate::http::message::Header;
use crate::http::{MAX_METHOD_BYTES, MAX_REQUEST_LINE_BYTES};

/// Scans and parses a whole head; `None` if the input holds no complete head.
fn parse(input: &[u8]) -> Result<Option<Head>, HttpError> {
    let mut scanner = HeadScanner::default();
    match scanner.scan(input)? {
        Some(len) => parse_head(input, len).map(Some),
        None => Ok(None),
    }
}

fn parse_ok(input: &[u8]) -> Head {
    parse(input).expect("valid head").expect("complete head")
}

fn parse_err(input: &[u8]) -> HttpError {
    parse(input).expect_err("head must be refused")
}

fn with_headers(lines: &[&str]) -> Vec<u8> {
    let mut req = b"POST /bids HTTP/1.1\r\nHost: x\r\n".to_vec();
    for line in lines {
        req.extend_from_slice(line.as_bytes());
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"\r\n");
    req
}

fn framing_of(lines: &[&str]) -> Result<Framing, HttpError> {
    parse(&with_headers(lines)).map(|h| h.expect("complete").framing)
}

/// A request line of exactly `len` bytes (CRLF excluded).
fn request_line(len: usize) -> Vec<u8> {
    let fixed = "GET / HTTP/1.1".len();
    let mut line = b"GET /".to_vec();
    line.extend(std::iter::repeat_n(b'a', len - fixed));
    line.extend_from_slice(b" HTTP/1.1");
    assert_eq!(line.len(), len);
    line
}

/// A head whose header section (the header lines after the request line with their CRLFs, the
/// empty line that ends the head not counted) is `len` bytes in `lines` lines, `Host` first.
fn head_with_section(len: usize, lines: usize) -> Vec<u8> {
    let mut req = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
    let fill = len - "Host: h\r\n".len();
    let lines = lines - 1;
    for i in 0..lines {
        let line_len = fill / lines + usize::from(i < fill % lines);
        req.extend_from_slice(b"X: ");
        req.extend(std::iter::repeat_n(b'v', line_len - "X: \r\n".len()));
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"\r\n");
    req
}

/// An owned copy of a parsed request's head, for assertions.
struct Parts {
    method: String,
    path: String,
    query: Option<String>,
    headers: Vec<(String, Vec<u8>)>,
}

fn request_parts(head: &Head, buf: &[u8]) -> Parts {
    let mut scratch = [Header::EMPTY; MAX_HEADER_LINES];
    let req = head.request(buf, 0..0, &mut scratch);
    Parts {
        method: req.method.to_owned(),
        path: req.path.to_owned(),
        query: req.query.map(str::to_owned),
        headers: req
            .headers
            .iter()
            .map(|h| (h.name.to_owned(), h.value.to_vec()))
            .collect(),
    }
}

#[test]
fn parses_request_line_target_and_headers() {
    let input = b"GET /v1/auctions/7?limit=5&x=?y HTTP/1.1\r\nHost: gavel\r\nX-Pad:  v  \r\n\r\n";
    let head = parse_ok(input);
    let Parts {
        method,
        path,
        query,
        headers,
    } = request_parts(&head, input);
    assert_eq!(method, "GET");
    assert_eq!(path, "/v1/auctions/7");
    assert_eq!(query.as_deref(), Some("limit=5&x=?y"));
    assert_eq!(head.version_minor, 1);
    assert_eq!(headers[0], ("Host".to_owned(), b"gavel".to_vec()));
    assert_eq!(headers[1].1, b"v");
    assert!(!head.close);
    assert_eq!(head.framing, Framing::Length(0));
}

#[test]
fn incomplete_head_waits() {
    assert!(parse(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap().is_none());
    assert!(parse(b"GET / HTT").unwrap().is_none());
    assert!(parse(b"").unwrap().is_none());
}

#[test]
fn scanning_resumes_where_it_stopped() {
    let input = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut scanner = HeadScanner::default();
    for end in 0..input.len() {
        assert_eq!(scanner.scan(&input[..end]).unwrap(), None, "at {end}");
    }
    assert_eq!(scanner.scan(input).unwrap(), Some(input.len()));
}

#[test]
fn bare_lf_line_endings_are_accepted() {
    let head = parse_ok(b"GET /a HTTP/1.1\nHost: x\n\n");
    assert_eq!(head.header_count(), 1);
}

#[test]
fn leading_empty_lines_are_skipped_within_a_bound() {
    let input = b"\r\n\r\nGET /a HTTP/1.1\r\nHost: h\r\n\r\n";
    let head = parse_ok(input);
    assert_eq!(request_parts(&head, input).path, "/a");
    let mut many = b"\r\n".repeat(MAX_LEADING_EMPTY_BYTES / 2 + 1);
    many.extend_from_slice(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert!(matches!(parse_err(&many), HttpError::BadRequest(_)));
}

#[test]
fn request_line_at_limit_is_accepted_and_one_more_byte_is_414() {
    let mut ok = request_line(MAX_REQUEST_LINE_BYTES);
    ok.extend_from_slice(b"\r\nHost: h\r\n\r\n");
    parse_ok(&ok);
    let mut long = request_line(MAX_REQUEST_LINE_BYTES + 1);
    long.extend_from_slice(b"\r\nHost: h\r\n\r\n");
    assert_eq!(parse_err(&long), HttpError::UriTooLong);
}

#[test]
fn endless_request_line_is_414_before_it_ends() {
    let mut ok = request_line(MAX_REQUEST_LINE_BYTES);
    ok.push(b'\r');
    assert!(parse(&ok).unwrap().is_none(), "CR may still end the line");
    let partial = request_line(MAX_REQUEST_LINE_BYTES + 1);
    assert_eq!(parse_err(&partial), HttpError::UriTooLong);
}

#[test]
fn header_section_at_limit_is_accepted_and_one_more_byte_is_431() {
    for lines in [2, 17, MAX_HEADER_LINES] {
        let ok = head_with_section(MAX_HEADER_BYTES, lines);
        let section = ok.len() - "GET / HTTP/1.1\r\n".len() - "\r\n".len();
        assert_eq!(section, MAX_HEADER_BYTES);
        assert_eq!(parse_ok(&ok).header_count(), lines);
        let mut bare_lf = ok.clone();
        bare_lf.truncate(ok.len() - 2);
        bare_lf.push(b'\n');
        parse_ok(&bare_lf);
        let big = head_with_section(MAX_HEADER_BYTES + 1, lines);
        assert_eq!(parse_err(&big), HttpError::HeadersTooLarge, "{lines} lines");
    }
}

#[test]
fn endless_header_stream_is_431_at_the_limit() {
    let mut input = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
    while input.len() < 40_000 {
        input.extend_from_slice(b"X-Endless: yes\r\n");
    }
    let mut scanner = HeadScanner::default();
    let err = scanner.scan(&input).unwrap_err();
    assert_eq!(err, HttpError::HeadersTooLarge);
}

#[test]
fn sixty_four_header_lines_are_accepted_and_sixty_five_are_431() {
    let lines: Vec<String> = (0..MAX_HEADER_LINES - 1)
        .map(|i| format!("X-{i}: v"))
        .collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let head = parse_ok(&with_headers(&refs)); // plus Host = 64
    assert_eq!(head.header_count(), MAX_HEADER_LINES);
    let mut more = refs.clone();
    more.push("X-last: v");
    assert_eq!(parse_err(&with_headers(&more)), HttpError::HeadersTooLarge);
}

#[test]
fn nul_and_control_bytes_are_400_even_before_the_head_ends() {
    assert!(matches!(
        parse_err(b"GET /a\0b HTTP/1.1\r\nHost: h\r\n\r\n"),
        HttpError::BadRequest(_)
    ));
    assert!(matches!(
        parse_err(b"GET / HTTP/1.1\r\nHost: h\r\nX: a\0"),
        HttpError::BadRequest(_)
    ));
    assert!(matches!(
        parse_err(b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x7f\r\n\r\n"),
        HttpError::BadRequest(_)
    ));
    assert!(matches!(
        parse_err(b"GET / HTTP/1.1\r\nHost: h\r\nX: \x1b[31m\r\n\r\n"),
        HttpError::BadRequest(_)
    ));
}

#[test]
fn malformed_heads_are_400() {
    for input in [
        &b"GET\r\n\r\n"[..],
        b"GET / HTTP/2.0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nNo colon\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n folded\r\n\r\n",
        b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nBad Name: v\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n",
        b"\rGET / HTTP/1.1\r\nHost: h\r\n\r\n",
    ] {
        assert!(
            matches!(parse(input), Err(HttpError::BadRequest(_))),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn content_length_must_be_a_plain_decimal() {
    for bad in [
        "abc",
        "-1",
        "+5",
        " 5 5",
        "5, 5",
        "0x10",
        "",
        "18446744073709551616",
        "1e3",
    ] {
        let line = format!("Content-Length: {bad}");
        assert_eq!(
            framing_of(&[&line]),
            Err(HttpError::InvalidContentLength),
            "{bad:?}"
        );
    }
    assert_eq!(framing_of(&["Content-Length:  7 "]), Ok(Framing::Length(7)));
    assert_eq!(framing_of(&["Content-Length: 007"]), Ok(Framing::Length(7)));
    assert_eq!(framing_of(&[]), Ok(Framing::Length(0)));
}

#[test]
fn repeated_content_length_must_agree() {
    assert_eq!(
        framing_of(&["Content-Length: 5", "content-length: 5"]),
        Ok(Framing::Length(5))
    );
    assert_eq!(
        framing_of(&["Content-Length: 5", "Content-Length: 6"]),
        Err(HttpError::InvalidContentLength)
    );
    assert_eq!(
        framing_of(&["Content-Length: 5", "Content-Length: x"]),
        Err(HttpError::InvalidContentLength)
    );
}

#[test]
fn body_limit_is_decided_from_content_length() {
    let at = format!("Content-Length: {MAX_BODY_BYTES}");
    assert_eq!(framing_of(&[&at]), Ok(Framing::Length(MAX_BODY_BYTES)));
    let over = format!("Content-Length: {}", MAX_BODY_BYTES + 1);
    assert_eq!(framing_of(&[&over]), Err(HttpError::PayloadTooLarge));
    assert_eq!(
        framing_of(&["Content-Length: 1048576"]),
        Err(HttpError::PayloadTooLarge)
    );
}

#[test]
fn transfer_encoding_rules() {
    assert_eq!(
        framing_of(&["Transfer-Encoding: chunked"]),
        Ok(Framing::Chunked)
    );
    assert_eq!(
        framing_of(&["Transfer-Encoding: Chunked "]),
        Ok(Framing::Chunked)
    );
    for te in [
        "gzip",
        "gzip, chunked",
        "chunked, chunked",
        "identity",
        "chunked;x=1",
    ] {
        let line = format!("Transfer-Encoding: {te}");
        assert_eq!(
            framing_of(&[&line]),
            Err(HttpError::UnsupportedTransferEncoding),
            "{te}"
        );
    }
    assert_eq!(
        framing_of(&["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"]),
        Err(HttpError::UnsupportedTransferEncoding)
    );
    assert!(matches!(
        framing_of(&["Transfer-Encoding: ,"]),
        Err(HttpError::BadRequest(_))
    ));
}

#[test]
fn both_framings_are_refused_whatever_their_values() {
    for cl in ["5", "abc"] {
        let line = format!("Content-Length: {cl}");
        assert_eq!(
            framing_of(&["Transfer-Encoding: chunked", &line]),
            Err(HttpError::ConflictingFraming)
        );
        assert_eq!(
            framing_of(&[&line, "Transfer-Encoding: gzip"]),
            Err(HttpError::ConflictingFraming)
        );
    }
}

#[test]
fn transfer_encoding_in_http_1_0_is_refused() {
    let input = b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert!(matches!(parse_err(input), HttpError::BadRequest(_)));
}

#[test]
fn connection_options() {
    let h = parse_ok(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    assert!(h.close && !h.keep_alive_10);
    let h = parse_ok(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Close\r\n\r\n");
    assert!(h.close);
    let h = parse_ok(b"GET / HTTP/1.0\r\n\r\n");
    assert!(h.close && !h.keep_alive_10);
    let h = parse_ok(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
    assert!(!h.close && h.keep_alive_10);
    let h = parse_ok(b"HEAD / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n");
    assert!(h.is_head && h.expect_continue && !h.close);
}

#[test]
fn header_lookup_by_name_uses_the_parsed_buffer() {
    let input = b"GET / HTTP/1.1\r\nHost: h\r\nOrigin: https://a.example\r\n\r\n";
    let head = parse_ok(input);
    assert_eq!(head.find(input, "ORIGIN"), Some(&b"https://a.example"[..]));
    assert_eq!(head.find(input, "host"), Some(&b"h"[..]));
    assert_eq!(head.find(input, "referer"), None);
}

#[test]
fn http_1_1_needs_exactly_one_valid_host() {
    for ok in [
        &b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: \r\n\r\n",
        b"GET / HTTP/1.1\r\nHOST: api.example.com:8080\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1:3000\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: [::1]:3000\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: xn--bcher-kva.example\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a%2Db.example:\r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\n",
        b"GET / HTTP/1.0\r\nHost: h\r\n\r\n",
    ] {
        parse_ok(ok);
    }
    for (bad, why) in [
        (&b"GET / HTTP/1.1\r\n\r\n"[..], "missing Host header"),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
            "more than one Host header",
        ),
        (
            b"GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n",
            "more than one Host header",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
            "invalid Host header",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: u@h\r\n\r\n",
            "invalid Host header",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: h:80x\r\n\r\n",
            "invalid Host header",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: :80\r\n\r\n",
            "invalid Host header",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n",
            "invalid Host header",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: h/x\r\n\r\n",
            "invalid Host header",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a%zz\r\n\r\n",
            "invalid Host header",
        ),
        (
            b"GET / HTTP/1.0\r\nHost: a\"b\r\n\r\n",
            "invalid Host header",
        ),
    ] {
        assert_eq!(
            parse_err(bad),
            HttpError::BadRequest(why),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn absolute_form_targets_are_served_as_their_path() {
    let cases: [(&[u8], &str, Option<&str>); 5] = [
        (
            b"GET http://h:3000/api/auctions/7 HTTP/1.1\r\nHost: h:3000\r\n\r\n",
            "/api/auctions/7",
            None,
        ),
        (
            b"GET HTTPS://h/api/auctions?limit=2 HTTP/1.1\r\nHost: h\r\n\r\n",
            "/api/auctions",
            Some("limit=2"),
        ),
        (b"GET http://h HTTP/1.1\r\nHost: other\r\n\r\n", "/", None),
        (
            b"GET http://h?x=1 HTTP/1.1\r\nHost: h\r\n\r\n",
            "/",
            Some("x=1"),
        ),
        (
            b"GET /http://h/x HTTP/1.1\r\nHost: h\r\n\r\n",
            "/http://h/x",
            None,
        ),
    ];
    for (input, path, query) in cases {
        let head = parse_ok(input);
        let mut scratch = [Header::EMPTY; MAX_HEADER_LINES];
        let req = head.request(input, 0..0, &mut scratch);
        assert_eq!((req.path, req.query), (path, query));
    }
    for bad in [
        &b"GET http:///x HTTP/1.1\r\nHost: h\r\n\r\n"[..],
        b"GET http://u@h/x HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET http://h:8x/ HTTP/1.1\r\nHost: h\r\n\r\n",
    ] {
        assert_eq!(
            parse_err(bad),
            HttpError::BadRequest("invalid authority in request target")
        );
    }
}

#[test]
fn higher_http_1_minor_versions_are_served_as_1_1() {
    for version in ["1.2", "1.9"] {
        let mut input = format!("GET / HTTP/{version}\r\nHost: h\r\n\r\n").into_bytes();
        let mut scanner = HeadScanner::default();
        let len = scanner.scan(&input).unwrap().expect("complete");
        downgrade_minor_version(&mut input[scanner.request_line()]);
        assert_eq!(parse_head(&input, len).expect("served").version_minor, 1);
    }
    for refused in ["2.0", "1.10", "0.9"] {
        let mut input = format!("GET / HTTP/{refused}\r\nHost: h\r\n\r\n").into_bytes();
        let mut scanner = HeadScanner::default();
        let len = scanner.scan(&input).unwrap().expect("complete");
        downgrade_minor_version(&mut input[scanner.request_line()]);
        assert!(
            matches!(parse_head(&input, len), Err(HttpError::BadRequest(_))),
            "{refused}"
        );
    }
}

#[test]
fn methods_up_to_the_limit_pass_and_longer_ones_are_501_at_once() {
    let method = "M".repeat(MAX_METHOD_BYTES);
    parse_ok(format!("{method} / HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes());
    let longer = "M".repeat(MAX_METHOD_BYTES + 1);
    assert_eq!(
        parse_err(format!("{longer} / HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes()),
        HttpError::MethodNotImplemented
    );
    // Refused before the line ends, however long it would be.
    let mut scanner = HeadScanner::default();
    assert_eq!(
        scanner.scan(longer.as_bytes()),
        Err(HttpError::MethodNotImplemented)
    );
    let endless = "X".repeat(MAX_REQUEST_LINE_BYTES * 2);
    assert_eq!(
        HeadScanner::default().scan(endless.as_bytes()),
        Err(HttpError::MethodNotImplemented)
    );
}

#[test]
fn host_value_whitespace_around_it_is_not_part_of_it() {
    parse_ok(b"GET / HTTP/1.1\r\nHost:  h:80 \t\r\n\r\n");
}

#[test]
fn an_origin_form_target_without_its_slash_is_not_taken_for_the_root() {
    let input = b"GET ?a=1 HTTP/1.1\r\nHost: h\r\n\r\n";
    let head = parse_ok(input);
    let mut scratch = [Header::EMPTY; MAX_HEADER_LINES];
    let req = head.request(input, 0..0, &mut scratch);
    assert_eq!((req.path, req.query), ("", Some("a=1")));
}
