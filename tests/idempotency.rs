//! Idempotent retries on the real server and database: a retried request gets the first answer
//! again (status and body) with no second effect, also when the copies arrive at the same moment on
//! two server processes, after a restart, and after the auction moved on; a reused key with another
//! body is a 422; keys expire after 24 hours and are swept.

mod common;

use common::*;
use gavel::domain::time::Timestamp;
use std::net::SocketAddr;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const KEY: &str = "Idempotency-Key";

fn post_keyed(addr: SocketAddr, path: &str, body: &str, key: &str) -> Reply {
    let mut s = connect(addr);
    send(&mut s, "POST", path, Some(body), &[(KEY, key)]);
    read_reply(&mut s).unwrap()
}

fn bid_body(auction: i64, bidder: i64, amount: &str) -> String {
    format!(r#"{{"auction_id":{auction},"bidder_id":{bidder},"amount":"{amount}"}}"#)
}

fn replayed(r: &Reply) -> bool {
    r.header("idempotent-replayed") == Some("true")
}

fn auction_id(v: &serde_json::Value) -> i64 {
    v["id"].as_i64().unwrap()
}

fn bid_count(addr: SocketAddr, auction: i64) -> i64 {
    get(addr, &format!("/api/auctions/{auction}")).json()["bid_count"]
        .as_i64()
        .unwrap()
}

fn db() -> String {
    test_db_name("idempotency")
}

#[test]
fn a_retried_bid_gets_the_first_answer_and_no_second_bid() {
    let addr = shared();
    let a = auction_id(&open_auction(addr, 1, "10", "1"));
    let body = bid_body(a, 2, "10");
    let first = post_keyed(addr, "/api/bids", &body, "bid-once");
    assert_eq!(first.status, 201);
    assert!(!replayed(&first));
    let again = post_keyed(addr, "/api/bids", &body, "bid-once");
    assert_eq!(again.status, 201);
    assert_eq!(again.body, first.body, "the same body, byte for byte");
    assert!(replayed(&again));
    assert_eq!(bid_count(addr, a), 1);
}

#[test]
fn a_rejected_bid_replays_its_rejection_after_the_auction_moved_on() {
    let addr = shared();
    let a = auction_id(&open_auction(addr, 1, "10", "1"));
    assert_eq!(post(addr, "/api/bids", &bid_body(a, 2, "20")).status, 201);
    let low = bid_body(a, 3, "15");
    let first = post_keyed(addr, "/api/bids", &low, "too-low");
    assert_eq!(first.status, 409);
    assert_eq!(first.code(), "bid_too_low");
    assert_eq!(post(addr, "/api/bids", &bid_body(a, 2, "30")).status, 201);
    let again = post_keyed(addr, "/api/bids", &low, "too-low");
    assert_eq!(again.status, 409);
    assert_eq!(
        again.body, first.body,
        "the first answer, not today's prices"
    );
    assert!(replayed(&again));
}

#[test]
fn a_key_reused_with_another_body_is_refused() {
    let addr = shared();
    let a = auction_id(&open_auction(addr, 1, "10", "1"));
    assert_eq!(
        post_keyed(addr, "/api/bids", &bid_body(a, 4, "10"), "reused").status,
        201
    );
    let other = post_keyed(addr, "/api/bids", &bid_body(a, 4, "11"), "reused");
    assert_eq!(other.status, 422);
    assert_eq!(other.code(), "idempotency_mismatch");
    // The same key on the other endpoint is another request too.
    let auction = r#"{"title":"x","seller_id":4,"start_price":"1","duration_seconds":60}"#;
    let cross = post_keyed(addr, "/api/auctions", auction, "reused");
    assert_eq!(cross.status, 422);
    assert_eq!(bid_count(addr, a), 1);
}

#[test]
fn keys_belong_to_their_caller() {
    let addr = shared();
    let a = auction_id(&open_auction(addr, 1, "10", "1"));
    let mine = post_keyed(addr, "/api/bids", &bid_body(a, 5, "10"), "shared-name");
    let theirs = post_keyed(addr, "/api/bids", &bid_body(a, 6, "11"), "shared-name");
    assert_eq!((mine.status, theirs.status), (201, 201));
    assert!(!replayed(&theirs));
    assert_eq!(bid_count(addr, a), 2);
}

#[test]
fn malformed_keys_are_refused_at_and_past_the_limits() {
    let addr = shared();
    let a = auction_id(&open_auction(addr, 1, "10", "1"));
    let longest = "k".repeat(255);
    let ok = post_keyed(addr, "/api/bids", &bid_body(a, 7, "10"), &longest);
    assert_eq!(ok.status, 201);
    let too_long = "k".repeat(256);
    for bad in [too_long.as_str(), "", "a b", "caf\u{e9}"] {
        let r = post_keyed(addr, "/api/bids", &bid_body(a, 7, "99"), bad);
        assert_eq!(r.status, 400, "{bad:?}");
        assert_eq!(r.code(), "invalid_field");
        assert_eq!(r.json()["error"]["field"], KEY);
    }
    let mut s = connect(addr);
    let body = bid_body(a, 7, "99");
    send(
        &mut s,
        "POST",
        "/api/bids",
        Some(&body),
        &[(KEY, "one"), (KEY, "two")],
    );
    assert_eq!(read_reply(&mut s).unwrap().status, 400);
    assert_eq!(bid_count(addr, a), 1);
}

#[test]
fn a_retried_auction_creation_gets_the_first_auction_as_it_was() {
    let addr = shared();
    let body = r#"{"title":"once","seller_id":8,"start_price":"5","duration_seconds":3600}"#;
    let first = post_keyed(addr, "/api/auctions", body, "create-once");
    assert_eq!(first.status, 201);
    let id = auction_id(&first.json());
    assert_eq!(post(addr, "/api/bids", &bid_body(id, 9, "5")).status, 201);
    let again = post_keyed(addr, "/api/auctions", body, "create-once");
    assert_eq!(again.status, 201);
    assert_eq!(again.body, first.body);
    assert_eq!(again.header("location"), first.header("location"));
    assert!(replayed(&again));
    let sql = "SELECT count(*) FROM auctions WHERE seller_id = 8 AND title = 'once'";
    assert_eq!(psql(&db(), sql), "1");
}

#[test]
fn an_auction_retried_after_its_end_still_gets_its_first_answer() {
    let addr = shared();
    let mut ends = String::new();
    Timestamp::from_unix_micros(now_micros())
        .plus_secs(2)
        .write_rfc3339(&mut ends);
    let body =
        format!(r#"{{"title":"brief","seller_id":10,"start_price":"5","ends_at":"{ends}"}}"#);
    let first = post_keyed(addr, "/api/auctions", &body, "brief");
    assert_eq!(first.status, 201);
    std::thread::sleep(Duration::from_millis(2_500));
    // Afresh, this body is now invalid (ends_at is past), but it is a retry of a stored request.
    assert_eq!(post(addr, "/api/auctions", &body).status, 400);
    let again = post_keyed(addr, "/api/auctions", &body, "brief");
    assert_eq!(again.status, 201);
    assert_eq!(again.body, first.body);
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

#[test]
fn simultaneous_copies_on_two_servers_have_one_effect_and_one_answer() {
    let db = test_db_name("idem_race");
    let servers = [spawn_server(&db, &[]), spawn_server(&db, &[])];
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    let copies = 16;
    let rounds = 5;
    for round in 0..rounds {
        let a = auction_id(&open_auction(addrs[0], 1, "10", "1"));
        let body = bid_body(a, 2, "10");
        let key = format!("race-{round}");
        let barrier = Arc::new(Barrier::new(copies));
        let handles: Vec<_> = (0..copies)
            .map(|i| {
                let (barrier, body, key) = (barrier.clone(), body.clone(), key.clone());
                let addr = addrs[i % 2];
                std::thread::spawn(move || {
                    let mut s = connect(addr);
                    barrier.wait();
                    send(&mut s, "POST", "/api/bids", Some(&body), &[(KEY, &key)]);
                    read_reply(&mut s).unwrap()
                })
            })
            .collect();
        let replies: Vec<Reply> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        for r in &replies {
            assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
            assert_eq!(r.body, replies[0].body, "every copy gets the same answer");
        }
        assert_eq!(replies.iter().filter(|r| !replayed(r)).count(), 1);
        assert_eq!(bid_count(addrs[1], a), 1, "one effect");
    }
}

#[test]
fn a_retry_after_a_restart_gets_the_first_answer() {
    let db = test_db_name("idem_restart");
    let first_server = spawn_server(&db, &[]);
    let a = auction_id(&open_auction(first_server.addr, 1, "10", "1"));
    let body = bid_body(a, 2, "10");
    let first = post_keyed(first_server.addr, "/api/bids", &body, "across-restart");
    assert_eq!(first.status, 201);
    drop(first_server);
    let second_server = spawn_server(&db, &[]);
    let again = post_keyed(second_server.addr, "/api/bids", &body, "across-restart");
    assert_eq!(again.status, 201);
    assert_eq!(again.body, first.body);
    assert!(replayed(&again));
    assert_eq!(bid_count(second_server.addr, a), 1);
}

#[test]
fn a_key_past_its_24_hours_starts_afresh() {
    let addr = shared();
    let a = auction_id(&open_auction(addr, 1, "10", "1"));
    psql(
        &db(),
        "INSERT INTO idempotency_keys (caller_id, key, request_hash, answer, created_at) \
         VALUES (11, 'day-old', '\\x00', '{}', now() - interval '24 hours 1 minute')",
    );
    let r = post_keyed(addr, "/api/bids", &bid_body(a, 11, "10"), "day-old");
    assert_eq!(r.status, 201);
    assert!(!replayed(&r));
    assert_eq!(bid_count(addr, a), 1);
    let again = post_keyed(addr, "/api/bids", &bid_body(a, 11, "10"), "day-old");
    assert!(replayed(&again));
}

#[test]
fn expired_keys_are_swept_and_live_ones_kept() {
    let db = test_db_name("idem_sweep");
    drop(spawn_server(&db, &[]));
    psql(
        &db,
        "INSERT INTO idempotency_keys (caller_id, key, request_hash, answer, created_at) \
         SELECT 1, 'old-' || i, '\\x00', '{}', now() - interval '26 hours' \
           FROM generate_series(1, 2500) AS i; \
         INSERT INTO idempotency_keys (caller_id, key, request_hash, answer, created_at) \
         VALUES (1, 'recent', '\\x00', '{}', now() - interval '1 hour')",
    );
    let server = spawn_server(&db, &[]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while psql(&db, "SELECT count(*) FROM idempotency_keys") != "1" {
        assert!(Instant::now() < deadline, "expired keys were not swept");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(psql(&db, "SELECT key FROM idempotency_keys"), "recent");
    let admin = server.admin.expect("admin listener");
    let text = String::from_utf8(raw(admin, b"GET /metrics HTTP/1.1\r\n\r\n").body).unwrap();
    assert!(
        text.lines()
            .any(|l| l == "gavel_idempotency_keys_swept_total 2500"),
        "the sweep is counted"
    );
}

#[test]
fn an_answer_of_503_is_not_stored() {
    let proxy = Proxy::start(upstream());
    let db = test_db_name("idem_outage");
    drop(spawn_server(&db, &[]));
    let url = format!("postgres://postgres@{}/{db}", proxy.addr);
    let server = spawn_server(&db, &[("DATABASE_URL", url.as_str())]);
    let a = auction_id(&open_auction(server.addr, 1, "10", "1"));
    let body = bid_body(a, 2, "10");
    proxy.set(REFUSE);
    proxy.cut();
    let down = post_keyed(server.addr, "/api/bids", &body, "during-outage");
    assert_eq!(down.status, 503);
    proxy.set(FORWARD);
    let deadline = Instant::now() + Duration::from_secs(15);
    while get(server.addr, "/ready").status != 200 {
        assert!(Instant::now() < deadline, "did not recover");
        std::thread::sleep(Duration::from_millis(100));
    }
    let after = post_keyed(server.addr, "/api/bids", &body, "during-outage");
    assert_eq!(after.status, 201, "processed afresh");
    assert!(!replayed(&after));
}
