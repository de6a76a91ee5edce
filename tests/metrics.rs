//! Metrics on the admin listener: scraped over a raw socket from the real server, the counts move
//! by exactly what the requests did, the histograms hold together, the names follow Prometheus
//! conventions, the public port does not serve them, and `off` leaves nothing listening.

mod common;

use common::*;
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

/// One scrape: every sample line, keyed by its series (name and labels as written).
struct Scrape {
    text: String,
    samples: HashMap<String, f64>,
}

impl Scrape {
    fn get(&self, series: &str) -> f64 {
        self.samples.get(series).copied().unwrap_or(0.0)
    }

    /// Sum over every series of a metric name (any labels).
    fn sum(&self, name: &str) -> f64 {
        self.samples
            .iter()
            .filter(|(k, _)| k.split('{').next() == Some(name))
            .map(|(_, v)| v)
            .sum()
    }
}

fn scrape(admin: SocketAddr) -> Scrape {
    let r = raw(admin, b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = String::from_utf8(r.body).unwrap();
    let samples = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            let value = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("bad value in {l}")),
            };
            (series.to_owned(), value)
        })
        .collect();
    Scrape { text, samples }
}

fn count(route: &str, status: u16) -> String {
    format!("gavel_http_request_duration_seconds_count{{route=\"{route}\",status=\"{status}\"}}")
}

fn bids(outcome: &str) -> String {
    format!("gavel_bids_total{{outcome=\"{outcome}\"}}")
}

fn fast_path(result: &str) -> String {
    format!("gavel_bid_fast_path_total{{result=\"{result}\"}}")
}

fn bid(addr: SocketAddr, auction: i64, amount: &str) -> Reply {
    post(
        addr,
        "/api/bids",
        &format!(r#"{{"auction_id":{auction},"amount":"{amount}","bidder_id":2}}"#),
    )
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every histogram series: cumulative buckets never fall, `+Inf` equals `_count`, the sum is
/// not negative.
fn check_histograms(s: &Scrape) {
    let mut buckets: HashMap<String, Vec<(f64, f64)>> = HashMap::new();
    for (series, value) in &s.samples {
        let Some((name, labels)) = series.split_once("_bucket{") else {
            continue;
        };
        let (rest, le) = labels.rsplit_once("le=\"").unwrap();
        let le = le.trim_end_matches("\"}");
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap()
        };
        let key = format!("{name}{{{}", rest.trim_end_matches(','));
        buckets.entry(key).or_default().push((le, *value));
    }
    assert!(!buckets.is_empty());
    for (key, mut list) in buckets {
        list.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
        assert!(list.windows(2).all(|w| w[0].1 <= w[1].1), "{key}: {list:?}");
        let (name, labels) = key.split_once('{').unwrap();
        let labels = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let count = s.get(&format!("{name}_count{labels}"));
        let sum = s.get(&format!("{name}_sum{labels}"));
        assert_eq!(list.last().unwrap(), &(f64::INFINITY, count), "{key}");
        assert!(sum >= 0.0, "{key}");
    }
}

/// Prometheus naming: counters end in `_total`, histograms in `_seconds`, gauges never in
/// `_total`, units are base units; each family is declared once and every sample belongs to one.
fn check_names(text: &str) {
    let mut families = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{name}"
            );
            assert!(
                name.starts_with("gavel_") || name.starts_with("process_"),
                "{name}"
            );
            for unit in ["_milliseconds", "_ms", "_micros", "_kb", "_mb"] {
                assert!(!name.contains(unit), "{name} is not in a base unit");
            }
            match kind {
                "counter" => assert!(name.ends_with("_total"), "{name}"),
                "histogram" => assert!(name.ends_with("_seconds"), "{name}"),
                "gauge" => assert!(!name.ends_with("_total"), "{name}"),
                other => panic!("{name}: unexpected type {other}"),
            }
            assert!(
                families.insert(name.to_owned(), kind.to_owned()).is_none(),
                "{name} declared twice"
            );
        }
    }
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let series = line.split(['{', ' ']).next().unwrap();
        let known = families.get(series).is_some_and(|k| k != "histogram")
            || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
                series
                    .strip_suffix(suffix)
                    .is_some_and(|f| families.get(f).map(String::as_str) == Some("histogram"))
            });
        assert!(known, "{line} belongs to no declared family");
    }
}

#[test]
fn counts_move_by_exactly_what_was_done() {
    let redis = RedisServer::start();
    let server = spawn_server(
        &test_db_name("metrics"),
        &[("REDIS_URL", redis.url().as_str())],
    );
    let (addr, admin) = (server.addr, server.admin.expect("admin listener"));
    wait_for("Redis to be up", || {
        get(addr, "/ready").json()["status"] == "ready"
    });
    let auction = started_auction(addr, "10.00", "1.00");

    let before = scrape(admin);
    for _ in 0..3 {
        assert_healthy(addr);
    }
    assert_eq!(get(addr, "/nope").status, 404);
    let bad = raw(addr, b"GET /health HTTP/1.1\r\nContent-Length: abc\r\n\r\n");
    assert_eq!(bad.status, 400);
    assert_eq!(bid(addr, auction, "10.00").status, 201);
    assert_eq!(bid(addr, auction, "10.50").status, 409);
    assert_eq!(bid(addr, i64::MAX, "10.00").status, 404);
    assert_eq!(get(addr, &format!("/api/auctions/{auction}")).status, 200);
    // One more on a connection that stays open.
    let mut held = connect(addr);
    send(&mut held, "GET", "/health", None, &[]);
    assert_eq!(read_reply(&mut held).unwrap().status, 200);
    let connections_made = 3 + 1 + 1 + 3 + 1 + 1;
    let after = scrape(admin);

    let moved = |series: &str| after.get(series) - before.get(series);
    assert_eq!(moved(&count("/health", 200)), 4.0);
    assert_eq!(moved(&count("other", 404)), 1.0);
    assert_eq!(moved(&count("other", 400)), 1.0);
    assert_eq!(moved(&count("/api/bids", 201)), 1.0);
    assert_eq!(moved(&count("/api/bids", 409)), 1.0);
    assert_eq!(moved(&count("/api/bids", 404)), 1.0);
    assert_eq!(moved(&count("/api/auctions/{id}", 200)), 1.0);
    assert_eq!(
        after.sum("gavel_http_request_duration_seconds_count")
            - before.sum("gavel_http_request_duration_seconds_count"),
        10.0,
        "nothing else was counted"
    );
    assert_eq!(moved(&bids("accepted")), 1.0);
    assert_eq!(moved(&bids("too_low")), 1.0);
    assert_eq!(moved(&bids("not_found")), 1.0);
    assert_eq!(moved(&bids("not_open")), 0.0);
    assert_eq!(moved(&bids("forbidden")), 0.0);
    // The accepted bid's state is in Redis before its 201, so the low bid is normally answered
    // from there; a Redis write that timed out on a loaded box sends it to PostgreSQL instead.
    assert_eq!(moved(&fast_path("hit")) + moved(&fast_path("miss")), 3.0);
    assert!(moved(&fast_path("miss")) >= 2.0);
    assert_eq!(
        moved("gavel_http_connections_accepted_total"),
        f64::from(connections_made)
    );
    assert!(moved("gavel_postgres_query_duration_seconds_count") >= 3.0);
    assert!(moved("gavel_redis_command_duration_seconds_count") >= 3.0);
    assert_eq!(after.sum("gavel_postgres_errors_total"), 0.0);
    assert_eq!(after.sum("gavel_redis_errors_total"), 0.0);
    assert_eq!(after.get("gavel_postgres_reconnects_total"), 0.0);
    assert!(after.get("gavel_open_connections{worker=\"0\"}") >= 0.0);
    assert!(after.sum("gavel_open_connections") >= 1.0);
    assert!(after.get("process_resident_memory_bytes") > 0.0);
    assert!(after.get("process_open_fds") > 0.0);
    assert!(after.get("process_start_time_seconds") > 1.0e9);
    assert!(after
        .text
        .lines()
        .any(|l| l.starts_with("gavel_build_info{version=\"") && l.ends_with("} 1")));
    check_histograms(&after);
    check_names(&after.text);

    // The held connection is the last one open; closing it takes the gauge to zero.
    drop(held);
    wait_for("the gauge to drop", || {
        scrape(admin).sum("gavel_open_connections") == 0.0
    });
}

#[test]
fn only_the_admin_listener_serves_metrics() {
    let server = spawn_server(&test_db_name("metrics_where"), &[]);
    let admin = server.admin.expect("admin listener");
    assert_eq!(get(server.addr, "/metrics").status, 404);
    let r = raw(admin, b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(r.status, 404);
    let r = raw(
        admin,
        b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));
    // HEAD: the head with the body's length, no body (the listener closes after answering).
    let mut s = connect(admin);
    s.write_all(b"HEAD /metrics HTTP/1.1\r\n\r\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("\r\n\r\n"), "{answer}");
    let ports = listening_ports(server.child.id());
    assert_eq!(ports, HashSet::from([server.addr.port(), admin.port()]));
}

#[test]
fn off_means_nothing_listens() {
    let server = spawn_server(
        &test_db_name("metrics_off"),
        &[("GAVEL_ADMIN_LISTEN", "off")],
    );
    assert!(server.admin.is_none());
    assert_healthy(server.addr);
    assert_eq!(
        listening_ports(server.child.id()),
        HashSet::from([server.addr.port()])
    );
}

#[test]
fn a_taken_admin_address_stops_the_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let err = try_spawn_server(
        &test_db_name("metrics_taken"),
        &[("GAVEL_ADMIN_LISTEN", addr.as_str())],
    )
    .err()
    .expect("start must fail");
    assert!(err.contains("cannot listen"), "{err}");
    assert!(err.contains("exit code Some(1)"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_gavel"))
        .env("GAVEL_ADMIN_LISTEN", "somewhere")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--admin-listen"));
}

/// The TCP ports a process listens on, from its socket descriptors and the kernel's tables.
fn listening_ports(pid: u32) -> HashSet<u16> {
    let inodes: HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|target| {
            let t = target.to_string_lossy().into_owned();
            Some(t.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let mut ports = HashSet::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address is field 1 (ADDR:PORT in hex), st is field 3 (0A: LISTEN), inode 9.
            if f.len() > 9 && f[3] == "0A" && inodes.contains(f[9]) {
                let port = f[1].rsplit(':').next().unwrap();
                ports.insert(u16::from_str_radix(port, 16).unwrap());
            }
        }
    }
    ports
}

#[test]
fn the_admin_listener_bounds_heads_and_slow_clients() {
    use gavel::admin::{ADMIN_MAX_REQUEST_BYTES, ADMIN_READ_TIMEOUT_MILLIS};
    let server = spawn_server(&test_db_name("metrics_limits"), &[]);
    let admin = server.admin.expect("admin listener");
    // A head of exactly the bound is read; one byte more is refused.
    let head = |len: usize| {
        let start = "GET /metrics HTTP/1.1\r\nX-Pad: ";
        let pad = len - start.len() - 4;
        format!("{start}{}\r\n\r\n", "a".repeat(pad))
    };
    assert_eq!(
        raw(admin, head(ADMIN_MAX_REQUEST_BYTES).as_bytes()).status,
        200
    );
    assert_eq!(
        raw(admin, head(ADMIN_MAX_REQUEST_BYTES + 1).as_bytes()).status,
        400
    );
    // A client trickling its head keeps the listener no longer than the read deadline.
    let slow = std::thread::spawn(move || {
        let mut s = connect(admin);
        for _ in 0..40 {
            if s.write_all(b"G").is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    std::thread::sleep(Duration::from_millis(50));
    let started = Instant::now();
    scrape(admin);
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_millis(ADMIN_READ_TIMEOUT_MILLIS + 1_000),
        "a scrape waited {waited:?} behind a slow client"
    );
    slow.join().unwrap();
}

#[test]
fn keyed_requests_are_counted_by_result_and_replays_decide_no_bid() {
    let server = spawn_server(&test_db_name("metrics_keys"), &[]);
    let (addr, admin) = (server.addr, server.admin.expect("admin listener"));
    let auction = open_auction(addr, 1, "10", "1")["id"].as_i64().unwrap();
    let keyed = |path: &str, body: &str| {
        let mut s = connect(addr);
        send(
            &mut s,
            "POST",
            path,
            Some(body),
            &[("Idempotency-Key", "m")],
        );
        read_reply(&mut s).unwrap().status
    };
    let before = scrape(admin);
    let bid = format!(r#"{{"auction_id":{auction},"amount":"10","bidder_id":5}}"#);
    assert_eq!(keyed("/api/bids", &bid), 201);
    assert_eq!(keyed("/api/bids", &bid), 201);
    let other = format!(r#"{{"auction_id":{auction},"amount":"11","bidder_id":5}}"#);
    assert_eq!(keyed("/api/bids", &other), 422);
    let create = r#"{"title":"k","seller_id":6,"start_price":"1","duration_seconds":60}"#;
    assert_eq!(keyed("/api/auctions", create), 201);
    assert_eq!(keyed("/api/auctions", create), 201);
    let after = scrape(admin);
    let moved = |series: &str| after.get(series) - before.get(series);
    let result = |r: &str| format!("gavel_idempotent_requests_total{{result=\"{r}\"}}");
    assert_eq!(moved(&result("fresh")), 2.0);
    assert_eq!(moved(&result("replayed")), 2.0);
    assert_eq!(moved(&result("mismatch")), 1.0);
    assert_eq!(moved(&bids("accepted")), 1.0, "a replay decides no bid");
    assert_eq!(moved(&count("/api/bids", 422)), 1.0);
}

/// Every metric name a query of the Grafana dashboard (`tuning/grafana/gavel.json`) uses, with
/// a histogram's `_bucket`, `_sum` and `_count` series named by the histogram.
fn dashboard_metrics(exported_histograms: &HashSet<String>) -> HashSet<String> {
    let doc: serde_json::Value =
        serde_json::from_str(include_str!("../tuning/grafana/gavel.json")).unwrap();
    let mut queries = Vec::new();
    collect_queries(&doc, &mut queries);
    assert!(queries.len() >= 12, "{queries:?}");
    let mut names = HashSet::new();
    for query in &queries {
        let bytes = query.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let starts = query[i..].starts_with("gavel_") || query[i..].starts_with("process_");
            let boundary =
                i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
            if starts && boundary {
                let end = query[i..]
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .map_or(query.len(), |n| i + n);
                let name = &query[i..end];
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .filter(|b| exported_histograms.contains(*b))
                    .unwrap_or(name);
                names.insert(base.to_owned());
                i = end;
            } else {
                i += 1;
            }
        }
    }
    names
}

fn collect_queries(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "query", serde_json::Value::String(q)) => out.push(q.clone()),
                    _ => collect_queries(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_queries(v, out)),
        _ => {}
    }
}

#[test]
fn the_dashboard_queries_only_metrics_gavel_exports() {
    let server = spawn_server(&test_db_name("metrics_dashboard"), &[]);
    assert_healthy(server.addr);
    let r = raw(
        server.admin.unwrap(),
        b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n",
    );
    let text = String::from_utf8(r.body).unwrap();
    let mut exported = HashSet::new();
    let mut histograms = HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            exported.insert(name.to_owned());
            if kind == "histogram" {
                histograms.insert(name.to_owned());
            }
        }
    }
    let used = dashboard_metrics(&histograms);
    let unknown: Vec<&String> = used.iter().filter(|n| !exported.contains(*n)).collect();
    assert!(
        unknown.is_empty(),
        "the dashboard queries {unknown:?}, which Gavel does not export"
    );
    for needed in [
        "gavel_http_request_duration_seconds",
        "gavel_bids_total",
        "gavel_bid_fast_path_total",
        "gavel_postgres_query_duration_seconds",
        "gavel_postgres_errors_total",
        "gavel_redis_command_duration_seconds",
        "gavel_redis_errors_total",
        "gavel_open_connections",
        "process_resident_memory_bytes",
    ] {
        assert!(used.contains(needed), "the dashboard shows no {needed}");
    }
}
