//! The HTTP layer end to end: an in-process server on 127.0.0.1:0 and raw bytes over std
//! sockets.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Once;
use std::thread;
use std::time::{Duration, Instant};

use gavel::http::{
    serve, Cors, HttpError, Request, Response, Server, ServerConfig, Service, MAX_BODY_BYTES,
};

const BIG_BODY_BYTES: usize = 5 * 1024;
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

struct TestService;

impl Service for TestService {
    fn call(&mut self, req: &Request<'_>) -> Response {
        match req.path {
            "/slow" => {
                may::coroutine::sleep(Duration::from_millis(300));
                Response::json(200, b"{\"slow\":true}".to_vec())
            }
            "/big" => Response::with_body(200, "text/plain", big_body()),
            "/deep" => match serde_json::from_slice::<serde_json::Value>(req.body) {
                Ok(_) => Response::json(200, b"{}".to_vec()),
                Err(e) => Response::json(400, format!("{{\"error\":\"{e}\"}}").into_bytes()),
            },
            _ => {
                let echo = format!("{} {} {}", req.method, req.path, req.body.len());
                Response::with_body(200, "text/plain", echo.into_bytes())
            }
        }
    }

    fn error(&mut self, err: &HttpError) -> Response {
        Response::json(
            status_of(err),
            format!("{{\"error\":\"{err}\"}}").into_bytes(),
        )
    }
}

/// The test service's choice of status: the layer itself never picks one.
fn status_of(err: &HttpError) -> u16 {
    match err {
        HttpError::BadRequest(_)
        | HttpError::InvalidContentLength
        | HttpError::ConflictingFraming => 400,
        HttpError::UriTooLong => 414,
        HttpError::HeadersTooLarge => 431,
        HttpError::PayloadTooLarge => 413,
        HttpError::UnsupportedTransferEncoding => 501,
        HttpError::RequestTimeout => 408,
        HttpError::MethodNotImplemented => 501,
    }
}

fn big_body() -> Vec<u8> {
    (0..BIG_BODY_BYTES)
        .map(|i| b"auction bid "[i % 12])
        .collect()
}

fn start(tweak: impl FnOnce(&mut ServerConfig)) -> Server {
    static MAY: Once = Once::new();
    MAY.call_once(|| {
        may::config().set_workers(2);
    });
    let mut cfg = ServerConfig::new("127.0.0.1:0".parse().expect("address"));
    cfg.workers = 2;
    tweak(&mut cfg);
    serve(cfg, |_worker| TestService).expect("server starts")
}

fn start_default() -> Server {
    start(|_| {})
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    fn connect(server: &Server) -> Client {
        let stream = TcpStream::connect(server.local_addr()).expect("connect");
        stream.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    fn get(&mut self, path: &str) -> Resp {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        self.response()
    }

    fn response(&mut self) -> Resp {
        self.read_response(false)
            .expect("a response before the connection closed")
    }

    /// Reads one response; for HEAD requests pass `head` (no body follows).
    fn read_response(&mut self, head: bool) -> Option<Resp> {
        loop {
            if let Some(resp) = self.parse_buffered(head) {
                return Some(resp);
            }
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    fn parse_buffered(&mut self, head: bool) -> Option<Resp> {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Response::new(&mut headers);
        let head_len = match parsed.parse(&self.buf).expect("well-formed response") {
            httparse::Status::Complete(n) => n,
            httparse::Status::Partial => return None,
        };
        let status = parsed.code.expect("status");
        let headers: Vec<(String, String)> = parsed
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_owned(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        let length = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map_or(0, |(_, v)| v.parse::<usize>().expect("numeric length"));
        let body_len = if head || status == 204 || status == 100 {
            0
        } else {
            length
        };
        if self.buf.len() < head_len + body_len {
            return None;
        }
        let body = self.buf[head_len..head_len + body_len].to_vec();
        self.buf.drain(..head_len + body_len);
        Some(Resp {
            status,
            headers,
            body,
        })
    }

    /// The server closed the connection: end of input (or a reset), and nothing else sent.
    fn expect_closed(&mut self) {
        assert!(self.buf.is_empty(), "unexpected bytes: {:?}", self.buf);
        let mut chunk = [0u8; 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => panic!(
                    "expected close, got {:?}",
                    String::from_utf8_lossy(&chunk[..n])
                ),
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => panic!("expected close, got {e}"),
            }
        }
    }
}

/// The server still serves a fresh connection.
fn assert_alive(server: &Server) {
    let resp = Client::connect(server).get("/alive");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "GET /alive 0");
}

/// Sends `raw`, expects an error `status` with `Connection: close` and then the close, and
/// checks the server still answers a new connection.
fn assert_refused(server: &Server, raw: &[u8], status: u16) {
    let mut client = Client::connect(server);
    client.send(raw);
    let resp = client.response();
    assert_eq!(resp.status, status, "{}", resp.text());
    assert_eq!(resp.header("connection"), Some("close"));
    client.expect_closed();
    assert_alive(server);
}

/// Polls until the server reports `n` open connections (or fails after a few seconds).
fn wait_open(server: &Server, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.open_connections() != n {
        assert!(
            Instant::now() < deadline,
            "open connections {} != {n}",
            server.open_connections()
        );
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn keep_alive_serves_many_requests_on_one_connection() {
    let server = start_default();
    let mut client = Client::connect(&server);
    for i in 0..5 {
        let resp = client.get(&format!("/n/{i}?q=1"));
        assert_eq!(resp.status, 200);
        assert_eq!(resp.text(), format!("GET /n/{i} 0"));
        assert_eq!(resp.header("date").map(str::len), Some(29));
        assert!(resp.header("content-length").is_some());
        assert_eq!(resp.header("connection"), None);
    }
    assert_eq!(server.open_connections(), 1);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = start_default();
    let mut client = Client::connect(&server);
    client.send(
        b"GET /one HTTP/1.1\r\nHost: t\r\n\r\n\
          POST /two HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc\
          GET /three HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    assert_eq!(client.response().text(), "GET /one 0");
    assert_eq!(client.response().text(), "POST /two 3");
    assert_eq!(client.response().text(), "GET /three 0");
    assert_eq!(client.get("/four").text(), "GET /four 0");
}

#[test]
fn connection_close_is_honoured() {
    let server = start_default();
    let mut client = Client::connect(&server);
    client.send(b"GET /bye HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let resp = client.response();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("connection"), Some("close"));
    client.expect_closed();
}

#[test]
fn http_1_0_closes_unless_keep_alive_is_asked() {
    let server = start_default();
    let mut client = Client::connect(&server);
    client.send(b"GET /old HTTP/1.0\r\n\r\n");
    assert_eq!(client.response().status, 200);
    client.expect_closed();

    let mut client = Client::connect(&server);
    client.send(b"GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let resp = client.response();
    assert_eq!(resp.header("connection"), Some("keep-alive"));
    assert_eq!(client.get("/again").status, 200);
}

#[test]
fn head_gets_the_length_without_the_body() {
    let server = start_default();
    let mut client = Client::connect(&server);
    client.send(b"HEAD /big HTTP/1.1\r\nHost: t\r\n\r\n");
    let resp = client.read_response(true).expect("response");
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("content-length"),
        Some(BIG_BODY_BYTES.to_string().as_str())
    );
    // Were a body sent, this response would be read from it and fail to parse.
    assert_eq!(client.get("/after").text(), "GET /after 0");
}

#[test]
fn chunked_bodies_are_decoded_and_expect_continue_is_answered() {
    let server = start_default();
    let mut client = Client::connect(&server);
    client.send(
        b"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
          4\r\nabcd\r\n3;x=y\r\nefg\r\n0\r\n\r\n",
    );
    assert_eq!(client.response().text(), "POST /c 7");

    client
        .send(b"POST /e HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
    assert_eq!(client.response().status, 100);
    client.send(b"body");
    assert_eq!(client.response().text(), "POST /e 4");
}

#[test]
fn body_limit_at_and_past_64_kib() {
    let server = start_default();
    let mut client = Client::connect(&server);
    let mut at =
        format!("POST /max HTTP/1.1\r\nHost: t\r\nContent-Length: {MAX_BODY_BYTES}\r\n\r\n")
            .into_bytes();
    at.extend(std::iter::repeat_n(b'x', MAX_BODY_BYTES));
    client.send(&at);
    assert_eq!(
        client.response().text(),
        format!("POST /max {MAX_BODY_BYTES}")
    );

    let over = format!(
        "POST /max HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        MAX_BODY_BYTES + 1
    );
    assert_refused(&server, over.as_bytes(), 413);
}

#[test]
fn one_mib_body_is_refused_without_being_buffered() {
    let server = start_default();
    let mut client = Client::connect(&server);
    let head = b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 1048576\r\n\r\n";
    let mut writer = client.stream.try_clone().unwrap();
    let sender = thread::spawn(move || {
        let _ = writer.write_all(head);
        let _ = writer.write_all(&vec![b'u'; 1 << 20]);
    });
    let resp = client.response();
    assert_eq!(resp.status, 413);
    assert_eq!(resp.header("connection"), Some("close"));
    client.expect_closed();
    sender.join().unwrap();
    assert_alive(&server);
}

#[test]
fn header_limits() {
    let server = start_default();
    let mut many = b"GET / HTTP/1.1\r\nHost: t\r\n".to_vec();
    for i in 0..100 {
        many.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert_refused(&server, &many, 431);

    let mut large = b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: ".to_vec();
    large.extend(std::iter::repeat_n(b'b', 20 * 1024));
    large.extend_from_slice(b"\r\n\r\n");
    assert_refused(&server, &large, 431);

    let mut long_line = b"GET /".to_vec();
    long_line.extend(std::iter::repeat_n(b'p', 9 * 1024));
    long_line.extend_from_slice(b" HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_refused(&server, &long_line, 414);
}

#[test]
fn endless_header_stream_is_cut_with_431() {
    let server = start_default();
    let mut client = Client::connect(&server);
    let mut writer = client.stream.try_clone().unwrap();
    let sender = thread::spawn(move || {
        let _ = writer.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n");
        let line = b"X-Endless: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
        let mut sent = 0;
        while sent < 1_000_000 {
            if writer.write_all(line).is_err() {
                break;
            }
            sent += line.len();
        }
    });
    let resp = client.response();
    assert_eq!(resp.status, 431);
    client.expect_closed();
    sender.join().unwrap();
    wait_open(&server, 0);
    assert_alive(&server);
}

#[test]
fn framing_errors() {
    let server = start_default();
    assert_refused(
        &server,
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n",
        400,
    );
    assert_refused(
        &server,
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        400,
    );
    assert_refused(
        &server,
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        400,
    );
    assert_refused(
        &server,
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n",
        501,
    );
    assert_refused(
        &server,
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        400,
    );
}

#[test]
fn malformed_input_is_400() {
    let server = start_default();
    assert_refused(&server, b"GET /a\0b HTTP/1.1\r\nHost: t\r\n\r\n", 400);
    assert_refused(&server, b"GET / HTTP/1.1\r\nHost: t\r\nX: \0\r\n\r\n", 400);
    assert_refused(&server, b"NOT A REQUEST\r\n\r\n", 400);
    assert_refused(
        &server,
        b"GET / HTTP/1.1\r\nHost: t\r\nbroken header\r\n\r\n",
        400,
    );
}

#[test]
fn random_garbage_never_takes_the_server_down() {
    let server = start_default();
    let mut seed = 0x1234_5678_9abc_def0u64;
    for _ in 0..20 {
        let garbage: Vec<u8> = (0..512)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let mut client = Client::connect(&server);
        client.send(&garbage);
        client.stream.shutdown(Shutdown::Write).unwrap();
        let mut sink = Vec::new();
        let _ = client.stream.read_to_end(&mut sink);
    }
    assert_alive(&server);
}

#[test]
fn deep_json_runs_within_the_connection_stack() {
    let server = start_default();
    let mut client = Client::connect(&server);
    let body = "[".repeat(10_000);
    client.send(
        format!(
            "POST /deep HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    let resp = client.response();
    assert_eq!(resp.status, 400);
    assert!(resp.text().contains("recursion limit"), "{}", resp.text());
    assert_eq!(client.get("/after").status, 200);
}

#[test]
fn gzip_follows_accept_encoding() {
    let server = start_default();
    let mut client = Client::connect(&server);
    client.send(b"GET /big HTTP/1.1\r\nHost: t\r\nAccept-Encoding: br, gzip;q=0.8\r\n\r\n");
    let resp = client.response();
    assert_eq!(resp.header("content-encoding"), Some("gzip"));
    assert_eq!(resp.header("vary"), Some("Accept-Encoding"));
    assert!(resp.body.len() < BIG_BODY_BYTES);
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&resp.body[..])
        .read_to_end(&mut plain)
        .unwrap();
    assert_eq!(plain, big_body());

    for accept in [
        "",
        "Accept-Encoding: gzip;q=0\r\n",
        "Accept-Encoding: identity\r\n",
    ] {
        client.send(format!("GET /big HTTP/1.1\r\nHost: t\r\n{accept}\r\n").as_bytes());
        let resp = client.response();
        assert_eq!(resp.header("content-encoding"), None, "{accept}");
        assert_eq!(resp.body, big_body());
    }

    client.send(b"GET /small HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n");
    assert_eq!(client.response().header("content-encoding"), None);
}

#[test]
fn cors_preflight_and_simple_requests() {
    let server = start_default();
    let mut client = Client::connect(&server);
    client.send(
        b"OPTIONS /v1/bids HTTP/1.1\r\nHost: t\r\nOrigin: https://app.example\r\n\
          Access-Control-Request-Method: POST\r\n\
          Access-Control-Request-Headers: content-type, x-trace\r\n\r\n",
    );
    let resp = client.response();
    assert_eq!(resp.status, 204);
    assert!(resp.body.is_empty());
    assert_eq!(resp.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        resp.header("access-control-allow-methods"),
        Some("GET, POST, OPTIONS")
    );
    assert_eq!(
        resp.header("access-control-allow-headers"),
        Some("content-type, x-trace")
    );
    assert_eq!(resp.header("access-control-max-age"), Some("86400"));
    assert_eq!(
        resp.header("access-control-expose-headers"),
        Some("location, retry-after, x-request-id")
    );

    client.send(b"GET /x HTTP/1.1\r\nHost: t\r\nOrigin: https://app.example\r\n\r\n");
    let resp = client.response();
    assert_eq!(resp.text(), "GET /x 0");
    assert_eq!(resp.header("access-control-allow-origin"), Some("*"));

    let resp = client.get("/no-origin");
    assert_eq!(resp.header("access-control-allow-origin"), None);
}

#[test]
fn cors_origin_list() {
    let server = start(|cfg| cfg.cors = Cors::List(vec!["https://ok.example".into()]));
    let mut client = Client::connect(&server);
    client.send(b"GET /x HTTP/1.1\r\nHost: t\r\nOrigin: https://ok.example\r\n\r\n");
    let resp = client.response();
    assert_eq!(
        resp.header("access-control-allow-origin"),
        Some("https://ok.example")
    );
    assert_eq!(resp.header("vary"), Some("Origin"));

    client.send(b"GET /x HTTP/1.1\r\nHost: t\r\nOrigin: https://evil.example\r\n\r\n");
    let resp = client.response();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("access-control-allow-origin"), None);

    client.send(
        b"OPTIONS /x HTTP/1.1\r\nHost: t\r\nOrigin: https://ok.example\r\n\
          Access-Control-Request-Method: GET\r\n\r\n",
    );
    let resp = client.response();
    assert_eq!(resp.status, 204);
    assert_eq!(
        resp.header("access-control-allow-headers"),
        Some("authorization, content-type, idempotency-key")
    );
}

/// Header, body, idle and write timeouts with short overrides, checked side by side.
#[test]
fn timeouts_with_short_overrides() {
    let server = start(|cfg| {
        cfg.header_timeout = Duration::from_millis(600);
        cfg.body_timeout = Duration::from_millis(600);
        cfg.idle_timeout = Duration::from_millis(600);
        cfg.write_timeout = Duration::from_millis(600);
    });
    thread::scope(|s| {
        s.spawn(|| {
            let mut client = Client::connect(&server);
            client.send(b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ");
            let started = Instant::now();
            let resp = client.response();
            assert_eq!(resp.status, 408);
            assert!(started.elapsed() >= Duration::from_millis(500));
            client.expect_closed();
        });
        s.spawn(|| {
            let mut client = Client::connect(&server);
            client.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nhalf");
            assert_eq!(client.response().status, 408);
            client.expect_closed();
        });
        s.spawn(|| {
            let mut client = Client::connect(&server);
            assert_eq!(client.get("/first").status, 200);
            let idle_from = Instant::now();
            client.expect_closed();
            assert!(idle_from.elapsed() >= Duration::from_millis(500));
        });
        s.spawn(|| {
            let mut client = Client::connect(&server);
            let started = Instant::now();
            client.expect_closed();
            assert!(started.elapsed() >= Duration::from_millis(500));
        });
        s.spawn(|| {
            // Never reads: the server's writes stall and the write timeout ends the connection
            // while this client still holds its socket open.
            let client = Client::connect(&server);
            let mut stream = &client.stream;
            let requests = b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n".repeat(200);
            for _ in 0..20 {
                if stream.write_all(&requests).is_err() {
                    break;
                }
            }
            thread::sleep(Duration::from_millis(2500));
            assert_eq!(
                server.open_connections(),
                0,
                "stalled connection still open"
            );
        });
    });
    wait_open(&server, 0);
}

/// The real 10 s header timeout: a head completed after 9 s of trickling is answered, one still
/// trickling at 10 s gets 408 and is closed.
#[test]
fn default_header_timeout_is_ten_seconds() {
    let server = start_default();
    let trickle = |client: &mut Client, until: Duration| {
        let started = Instant::now();
        while started.elapsed() < until {
            if client.stream.write_all(b"x").is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(250));
        }
    };
    thread::scope(|s| {
        s.spawn(|| {
            let mut client = Client::connect(&server);
            client.send(b"GET /patient HTTP/1.1\r\nHost: t\r\nX-Trickle: ");
            trickle(&mut client, Duration::from_secs(9));
            client.send(b"\r\n\r\n");
            assert_eq!(client.response().text(), "GET /patient 0");
        });
        s.spawn(|| {
            let mut client = Client::connect(&server);
            let started = Instant::now();
            client.send(b"GET /late HTTP/1.1\r\nHost: t\r\nX-Trickle: ");
            let mut writer = Client {
                stream: client.stream.try_clone().unwrap(),
                buf: Vec::new(),
            };
            let sender = thread::spawn(move || trickle(&mut writer, Duration::from_secs(12)));
            client
                .stream
                .set_read_timeout(Some(Duration::from_secs(15)))
                .unwrap();
            let resp = client.response();
            let elapsed = started.elapsed();
            assert_eq!(resp.status, 408);
            assert!(elapsed >= Duration::from_millis(9900), "{elapsed:?}");
            assert!(elapsed < Duration::from_secs(12), "{elapsed:?}");
            sender.join().unwrap();
        });
    });
}

#[test]
fn graceful_shutdown_finishes_in_flight_and_closes_idle() {
    let server = start_default();
    let mut idle = Client::connect(&server);
    assert_eq!(idle.get("/warm").status, 200);
    let mut busy = Client::connect(&server);
    busy.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
    thread::sleep(Duration::from_millis(100));
    assert_eq!(server.open_connections(), 2);

    let started = Instant::now();
    let drained = thread::scope(|s| {
        let shutdown = s.spawn(|| server.shutdown(Duration::from_secs(5)));
        let resp = busy.response();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("connection"), Some("close"));
        busy.expect_closed();
        idle.expect_closed();
        shutdown.join().unwrap()
    });
    assert!(drained);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(server.open_connections(), 0);
    assert!(TcpStream::connect(server.local_addr())
        .and_then(|mut s| {
            s.set_read_timeout(Some(CLIENT_TIMEOUT))?;
            s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")?;
            let mut b = [0u8; 1];
            match s.read(&mut b)? {
                0 => Err(io::ErrorKind::UnexpectedEof.into()),
                _ => Ok(()),
            }
        })
        .is_err());
}

#[test]
fn shutdown_reports_false_when_the_drain_runs_out() {
    let server = start_default();
    let mut busy = Client::connect(&server);
    busy.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
    thread::sleep(Duration::from_millis(50));
    assert!(!server.shutdown(Duration::from_millis(20)));
    assert_eq!(busy.response().header("connection"), Some("close"));
    wait_open(&server, 0);
}

/// Waits until the server reports `n` parked connections.
fn wait_parked(server: &Server, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.parked_connections() != n {
        assert!(
            Instant::now() < deadline,
            "parked connections {} != {n}",
            server.parked_connections()
        );
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn idle_connections_park_and_come_back() {
    let server = start(|cfg| cfg.park_after = Duration::from_millis(100));
    let mut fresh = Client::connect(&server);
    let mut used = Client::connect(&server);
    assert_eq!(used.get("/before").status, 200);
    wait_parked(&server, 2);
    assert_eq!(server.open_connections(), 2);
    assert_eq!(fresh.get("/first").text(), "GET /first 0");
    used.send(b"POST /after HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nok");
    assert_eq!(used.response().text(), "POST /after 2");
    wait_parked(&server, 2);
    assert_eq!(used.get("/again").status, 200);
}

#[test]
fn parked_connections_still_time_out() {
    let server = start(|cfg| {
        cfg.park_after = Duration::from_millis(100);
        cfg.idle_timeout = Duration::from_millis(700);
    });
    let mut client = Client::connect(&server);
    let started = Instant::now();
    wait_parked(&server, 1);
    client.expect_closed();
    let idle = started.elapsed();
    assert!(idle >= Duration::from_millis(600), "{idle:?}");
    assert!(idle < Duration::from_secs(2), "{idle:?}");
    wait_open(&server, 0);
    assert_eq!(server.parked_connections(), 0);
}

#[test]
fn shutdown_closes_parked_connections() {
    let server = start(|cfg| cfg.park_after = Duration::from_millis(100));
    let mut clients: Vec<Client> = (0..3).map(|_| Client::connect(&server)).collect();
    wait_parked(&server, 3);
    assert!(server.shutdown(Duration::from_secs(2)));
    for client in &mut clients {
        client.expect_closed();
    }
    assert_eq!(server.parked_connections(), 0);
}
