//! A real browser's `EventSource` against the real server: headless Chromium (Debian's
//! `chromium`, or the binary `GAVEL_TEST_CHROMIUM` names) opens a page from one origin, which
//! follows an auction's live updates on another (the server's CORS), receives bids, and, after
//! its connection is dropped under it, reconnects with `Last-Event-ID` and misses nothing.
//!
//! The page reports every event back to the origin that served it; the test reads the reports.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{post, spawn_server, test_db_name, Proxy};

/// How long the browser may take to start and load the page, and to deliver an event.
const BROWSER_WAIT_SECS: u64 = 60;

/// The page: an `EventSource` on `stream_url`, every event and state change reported back.
fn page(stream_url: &str) -> String {
    format!(
        r#"<!doctype html><meta charset="utf-8"><title>live</title><script>
let seq = 0;
const report = (o) => fetch("/report", {{method: "POST", body: JSON.stringify({{seq: seq++, ...o}})}});
const events = new EventSource("{stream_url}");
events.onopen = () => report({{kind: "open"}});
events.onerror = () => report({{kind: "error", state: events.readyState}});
for (const name of ["auction", "bid", "closed"]) {{
  events.addEventListener(name, (e) => report({{kind: name, id: e.lastEventId, origin: e.origin, data: JSON.parse(e.data)}}));
}}
</script>"#
    )
}

/// The page's origin: serves the page at `/` and takes reports at `/report`.
fn serve_page(html: String) -> (SocketAddr, mpsc::Receiver<Value>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming().map_while(Result::ok) {
            let (html, tx) = (html.clone(), tx.clone());
            std::thread::spawn(move || answer(conn, &html, &tx));
        }
    });
    (addr, rx)
}

fn answer(conn: TcpStream, html: &str, reports: &mpsc::Sender<Value>) {
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut length = 0;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; length];
    let _ = reader.read_exact(&mut body);
    let (status, content_type, out) = if line.starts_with("GET / ") {
        ("200 OK", "text/html", html.as_bytes().to_vec())
    } else if line.starts_with("POST /report ") {
        if let Ok(v) = serde_json::from_slice(&body) {
            let _ = reports.send(v);
        }
        ("204 No Content", "text/plain", Vec::new())
    } else {
        ("404 Not Found", "text/plain", Vec::new())
    };
    let mut conn = conn;
    let _ = write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        out.len()
    );
    let _ = conn.write_all(&out);
}

/// Headless Chromium on `url`, killed (by its PID) when dropped.
struct Browser(Child, std::path::PathBuf);

impl Browser {
    fn open(url: &str) -> Browser {
        let binary = std::env::var("GAVEL_TEST_CHROMIUM").unwrap_or_else(|_| "chromium".into());
        let profile = std::env::temp_dir().join(format!("gavel-browser-{}", std::process::id()));
        let child = Command::new(&binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--disable-extensions",
                "--disable-background-networking",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {binary} ({e}): this test needs headless Chromium \
                     (apt-get install chromium, or GAVEL_TEST_CHROMIUM=/path/to/chrome)"
                )
            });
        Browser(child, profile)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

/// Reports until `done` holds for the ones received so far (in the page's order).
fn reports_until(
    rx: &mpsc::Receiver<Value>,
    seen: &mut Vec<Value>,
    done: impl Fn(&[Value]) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(BROWSER_WAIT_SECS);
    while !done(seen) {
        let left = deadline
            .checked_duration_since(Instant::now())
            .unwrap_or_else(|| panic!("the page did not report in time; so far: {seen:#?}"));
        if let Ok(v) = rx.recv_timeout(left) {
            seen.push(v);
            seen.sort_by_key(|v| v["seq"].as_i64());
        }
    }
}

fn bid_ids(seen: &[Value]) -> Vec<i64> {
    seen.iter()
        .filter(|v| v["kind"] == "bid")
        .map(|v| v["id"].as_str().unwrap().parse().unwrap())
        .collect()
}

fn bid(addr: SocketAddr, auction: i64, bidder: i64, amount: &str) {
    let r = post(
        addr,
        "/api/bids",
        &format!(r#"{{"auction_id":{auction},"bidder_id":{bidder},"amount":"{amount}"}}"#),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
}

#[test]
fn a_browser_on_another_origin_follows_bids_and_resumes_after_a_drop() {
    let db = test_db_name("browser");
    let s = spawn_server(&db, &[]);
    let r = post(
        s.addr,
        "/api/auctions",
        r#"{"title":"browser","seller_id":1,"start_price":"1.00","duration_seconds":3600}"#,
    );
    let auction = r.json()["id"].as_i64().unwrap();
    // The browser reaches the server through a proxy the test can cut, as a network would.
    let proxy = Proxy::start(s.addr);
    let stream_url = format!("http://{}/api/auctions/{auction}/events", proxy.addr);
    let (origin, reports) = serve_page(page(&stream_url));
    let _browser = Browser::open(&format!("http://{origin}/"));

    let mut seen = Vec::new();
    reports_until(&reports, &mut seen, |s| {
        s.iter().any(|v| v["kind"] == "auction")
    });
    for (i, amount) in ["1.00", "2.00", "3.00"].iter().enumerate() {
        bid(s.addr, auction, 10 + i as i64, amount);
    }
    reports_until(&reports, &mut seen, |s| bid_ids(s).len() >= 3);
    assert_eq!(bid_ids(&seen), [1, 2, 3]);

    proxy.cut();
    for (i, amount) in ["4.00", "5.00", "6.00"].iter().enumerate() {
        bid(s.addr, auction, 20 + i as i64, amount);
    }
    // Reports travel as separate fetches: wait for the drop's `error` and the reconnection's
    // `open` too, which may arrive after the bids they preceded.
    reports_until(&reports, &mut seen, |s| {
        bid_ids(s).len() >= 6
            && s.iter().any(|v| v["kind"] == "error")
            && s.iter().filter(|v| v["kind"] == "open").count() >= 2
    });
    let kinds: Vec<&str> = seen.iter().map(|v| v["kind"].as_str().unwrap()).collect();
    assert_eq!(bid_ids(&seen), [1, 2, 3, 4, 5, 6], "{kinds:?}");
    assert_eq!(
        kinds.iter().filter(|k| **k == "auction").count(),
        1,
        "the reconnection resumed with Last-Event-ID (no state again): {kinds:?}"
    );
    assert!(
        kinds.contains(&"error"),
        "the connection was dropped: {kinds:?}"
    );
    assert!(
        kinds.iter().filter(|k| **k == "open").count() >= 2,
        "it reconnected: {kinds:?}"
    );
    let last = seen.iter().rev().find(|v| v["kind"] == "bid").unwrap();
    assert_eq!(last["data"]["auction"]["current_price"], "6.00");
    assert_eq!(last["data"]["auction"]["leader_id"], 22);
}
