//! Coalesced reads of single auctions, against the real server: answers under concurrency (many
//! reads, and duplicates, in one statement) equal the answers read one at a time (one
//! statement each), and a read that starts after a bid's 201 shows that bid.

mod common;

use common::*;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

const AUCTIONS: i64 = 40;
const READERS: usize = 16;
const READS_EACH: usize = 150;

/// Each path with its answer read alone (nothing else in flight on the server): one statement
/// each, the single-read path.
fn read_alone(addr: SocketAddr, paths: &[String]) -> Arc<Vec<(String, (u16, Value))>> {
    let answers = paths
        .iter()
        .map(|p| {
            let r = get(addr, p);
            (p.clone(), (r.status, r.json()))
        })
        .collect();
    Arc::new(answers)
}

/// READERS clients each read READS_EACH paths drawn from `expected`, pipelining none, all at
/// once: many reads, and the same one often twice, share statements. Every answer must be the
/// one read alone.
fn read_concurrently(addr: SocketAddr, expected: &Arc<Vec<(String, (u16, Value))>>) {
    let readers: Vec<_> = (0..READERS)
        .map(|r| {
            let expected = expected.clone();
            thread::spawn(move || {
                let mut s = connect(addr);
                let mut rng = Lcg(r as u64 + 1);
                for _ in 0..READS_EACH {
                    let (path, want) = &expected[rng.next(expected.len() as u64) as usize];
                    send(&mut s, "GET", path, None, &[]);
                    let got = read_reply(&mut s).unwrap();
                    assert_eq!((got.status, got.json()), *want, "{path}");
                }
            })
        })
        .collect();
    for r in readers {
        r.join().unwrap();
    }
}

#[test]
fn concurrent_reads_answer_exactly_what_lone_reads_do() {
    let server = spawn_server(&test_db_name("reads_diff"), &[]);
    let addr = server.addr;
    let mut ids = Vec::new();
    for i in 0..AUCTIONS {
        let id = started_auction(addr, "10.00", "1.00");
        for b in 0..(i % 4) {
            let body = format!(
                r#"{{"auction_id":{id},"amount":"{}.00","bidder_id":{}}}"#,
                20 + b,
                7 + b
            );
            assert_eq!(post(addr, "/api/bids", &body).status, 201);
        }
        ids.push(id);
    }
    let unknown = ids.iter().max().unwrap() + 1_000;
    ids.push(unknown);
    let paths: Vec<String> = ids.iter().map(|id| format!("/api/auctions/{id}")).collect();
    read_concurrently(addr, &read_alone(addr, &paths));
}

#[test]
fn a_read_after_a_201_shows_that_bid_even_among_concurrent_reads() {
    let server = spawn_server(&test_db_name("reads_fresh"), &[]);
    let addr = server.addr;
    let hot = started_auction(addr, "10.00", "1.00");
    let stop = Arc::new(AtomicBool::new(false));
    let noise: Vec<_> = (0..8)
        .map(|_| {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut s = connect(addr);
                while !stop.load(Ordering::Relaxed) {
                    send(&mut s, "GET", &format!("/api/auctions/{hot}"), None, &[]);
                    assert_eq!(read_reply(&mut s).unwrap().status, 200);
                }
            })
        })
        .collect();
    let mut bidder = connect(addr);
    let mut reader = connect(addr);
    for n in 1..=60 {
        let amount = format!("{}.00", 10 + n);
        let body = format!(
            r#"{{"auction_id":{hot},"amount":"{amount}","bidder_id":{}}}"#,
            2 + n % 2
        );
        send(&mut bidder, "POST", "/api/bids", Some(&body), &[]);
        let placed = read_reply(&mut bidder).unwrap();
        assert_eq!(placed.status, 201, "{}", placed.json());
        send(
            &mut reader,
            "GET",
            &format!("/api/auctions/{hot}"),
            None,
            &[],
        );
        let seen = read_reply(&mut reader).unwrap().json();
        assert_eq!(seen["bid_count"], n, "read after the 201 of bid {n}");
        assert_eq!(seen["current_price"], amount.as_str());
    }
    stop.store(true, Ordering::Relaxed);
    for t in noise {
        t.join().unwrap();
    }
}

#[test]
fn concurrent_bid_pages_answer_exactly_what_lone_pages_do() {
    let server = spawn_server(&test_db_name("reads_pages"), &[]);
    let addr = server.addr;
    let mut paths = Vec::new();
    let mut deep = 0;
    for i in 0..12 {
        let id = started_auction(addr, "1.00", "1.00");
        let bids = [0, 1, 2, 7, 60][i % 5];
        if bids == 60 {
            deep = id;
        }
        for b in 0..bids {
            let body = format!(
                r#"{{"auction_id":{id},"amount":"{}.00","bidder_id":{}}}"#,
                2 + b,
                7 + b % 3
            );
            assert_eq!(post(addr, "/api/bids", &body).status, 201);
        }
        paths.push(format!("/api/bids/{id}"));
        paths.push(format!("/api/bids/{id}?limit=3"));
        paths.push(format!("/api/bids/{id}?limit=1&before_id=999999999"));
        paths.push(format!("/api/bids/{id}?limit=50"));
        paths.push(format!("/api/bids/{id}?limit=200"));
    }
    // A cursor from a real first page of the auction with most bids, and an auction that does
    // not exist.
    let first = get(addr, &format!("/api/bids/{deep}?limit=5")).json();
    let next = first["next_before_id"]
        .as_i64()
        .expect("60 bids make more than one page");
    paths.push(format!("/api/bids/{deep}?limit=5&before_id={next}"));
    paths.push("/api/bids/999999999".into());
    read_concurrently(addr, &read_alone(addr, &paths));
}
