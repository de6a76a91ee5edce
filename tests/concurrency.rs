//! API.md's bid invariants under real concurrency: many connections, both workers, the same auctions.

mod common;

use common::*;
use std::sync::{Arc, Barrier};

const CLIENTS: usize = 32;
const BIDS_PER_CLIENT: usize = 25;
const AUCTIONS: usize = 3;

#[test]
fn invariants_hold_under_concurrent_bidding() {
    let addr = shared();
    let auctions: Vec<i64> = (0..AUCTIONS)
        .map(|_| {
            open_auction(addr, 1, "10.00", "0.50")["id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let handles: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let auctions = auctions.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut s = connect(addr);
                let mut accepted = Vec::new();
                barrier.wait();
                for i in 0..BIDS_PER_CLIENT {
                    let auction = auctions[(c + i) % AUCTIONS];
                    // Amounts rise with i and differ by client so both outcomes are common.
                    let cents = 1000 + (i * 100 + c * 7) as i64;
                    let body = format!(
                        r#"{{"auction_id":{auction},"amount":"{}.{:02}","bidder_id":{}}}"#,
                        cents / 100,
                        cents % 100,
                        100 + c
                    );
                    send(&mut s, "POST", "/api/bids", Some(&body), &[]);
                    let r = read_reply(&mut s).unwrap();
                    match r.status {
                        201 => accepted.push((auction, r.json()["id"].as_i64().unwrap())),
                        409 => assert_eq!(r.code(), "bid_too_low"),
                        other => panic!("unexpected {other}: {:?}", r.json()),
                    }
                }
                accepted
            })
        })
        .collect();
    let accepted: Vec<(i64, i64)> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert!(!accepted.is_empty());

    for auction in auctions {
        check_invariants(addr, auction, &accepted);
    }
}

#[test]
fn exactly_one_of_64_equal_bids_wins() {
    const RACERS: usize = 64;
    let addr = shared();
    let auction = open_auction(addr, 1, "50.00", "1.00")["id"]
        .as_i64()
        .unwrap();
    let barrier = Arc::new(Barrier::new(RACERS));
    let handles: Vec<_> = (0..RACERS)
        .map(|c| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut s = connect(addr);
                let body = format!(
                    r#"{{"auction_id":{auction},"amount":"75.00","bidder_id":{}}}"#,
                    200 + c
                );
                barrier.wait();
                send(&mut s, "POST", "/api/bids", Some(&body), &[]);
                read_reply(&mut s).unwrap()
            })
        })
        .collect();
    let replies: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let wins = replies.iter().filter(|r| r.status == 201).count();
    assert_eq!(wins, 1);
    for r in replies.iter().filter(|r| r.status != 201) {
        assert_eq!(r.status, 409);
        let e = r.json();
        assert_eq!(e["error"]["current_price"], "75.00");
        assert_eq!(e["error"]["min_next_bid"], "76.00");
    }
    let a = get(addr, &format!("/api/auctions/{auction}")).json();
    assert_eq!(a["bid_count"], 1);
}
