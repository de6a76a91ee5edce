//! PostgreSQL going away while Gavel serves: requests get a fast 503 (never a hang), `/ready` says
//! so within a second, and Gavel recovers by itself. The outage is made by a TCP proxy between
//! Gavel and PostgreSQL that this test controls.

mod common;

use common::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Longest any answer may take while the database is down or hung (API.md: "within a second").
const MAX_ANSWER_MILLIS: u128 = 1_000;

fn start_behind(proxy: &Proxy, tag: &str) -> Server {
    let db = test_db_name(tag);
    // The database is created and migrated directly, then the server talks through the proxy.
    let direct = spawn_server(&db, &[]);
    drop(direct);
    let url = format!("postgres://postgres@{}/{db}", proxy.addr);
    spawn_server(&db, &[("DATABASE_URL", url.as_str())])
}

/// Sends a request and returns (status, milliseconds taken).
fn timed(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (Reply, u128) {
    let started = Instant::now();
    let r = request(addr, method, path, body);
    (r, started.elapsed().as_millis())
}

/// Every answer during an outage is a fast 503 `unavailable`, except a success that
/// `served_before_noticed` allows: the outage cannot be known before a request meets it.
fn check_fast_503(r: &Reply, ms: u128, what: &str, served_before_noticed: bool) {
    assert!(ms <= MAX_ANSWER_MILLIS, "{what} took {ms} ms");
    if r.status == 200 && served_before_noticed {
        return;
    }
    assert_eq!(
        r.status,
        503,
        "{what} during the outage answered {}: {}",
        r.status,
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.header("retry-after"), Some("1"), "{what}");
    let code = r.json()["error"]["code"].clone();
    let status = r.json()["status"].clone();
    assert!(code == "unavailable" || status == "unavailable", "{what}");
}

fn wait_until_ready(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while get(addr, "/ready").status != 200 {
        assert!(Instant::now() < deadline, "did not recover");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn outage_round(proxy: &Proxy, server: &Server, mode: u8) {
    let addr = server.addr;
    let auction = open_auction(addr, 1, "1", "1")["id"].as_i64().unwrap();
    proxy.set(mode);
    if mode == REFUSE {
        proxy.cut();
    }
    let mut unavailable = 0;
    let ends = Instant::now() + Duration::from_secs(3);
    let mut amount = 1;
    while Instant::now() < ends {
        let (r, ms) = timed(addr, "GET", &format!("/api/auctions/{auction}"), None);
        // Sent after the outage began and never answered from anywhere but PostgreSQL.
        check_fast_503(&r, ms, "read", false);
        let bid = format!(r#"{{"auction_id":{auction},"amount":"{amount}","bidder_id":2}}"#);
        let (b, ms) = timed(addr, "POST", "/api/bids", Some(&bid));
        // Never too low (each is the next valid amount), so never answered by the cache alone.
        check_fast_503(&b, ms, "bid", false);
        amount += 1;
        let (ready, ms) = timed(addr, "GET", "/ready", None);
        // `/ready` may still say 200 until a request has met the outage; once it says 503 it
        // keeps saying so until the database is back.
        check_fast_503(&ready, ms, "ready", unavailable == 0);
        if ready.status == 503 {
            unavailable += 1;
            assert_eq!(ready.json()["postgres"], "down");
        }
        let (health, _) = timed(addr, "GET", "/health", None);
        assert_eq!(
            health.status, 200,
            "liveness does not depend on the database"
        );
    }
    assert!(unavailable > 0, "/ready never reported the outage");
    proxy.cut();
    proxy.set(FORWARD);
    wait_until_ready(addr);
    // `/ready` speaks for the worker that answered it; each worker reconnects on its own
    // backoff, so recovery is done once a read succeeds too, within the same bound.
    let path = format!("/api/auctions/{auction}");
    let deadline = Instant::now() + Duration::from_secs(15);
    while get(addr, &path).status != 200 {
        assert!(Instant::now() < deadline, "reads did not recover");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn database_down_then_back() {
    let proxy = Proxy::start(upstream());
    let server = start_behind(&proxy, "down");
    outage_round(&proxy, &server, REFUSE);
}

#[test]
fn database_hung_then_back() {
    let proxy = Proxy::start(upstream());
    let server = start_behind(&proxy, "hung");
    outage_round(&proxy, &server, STALL);
}
