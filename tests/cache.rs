//! The Redis fast path: its answers equal PostgreSQL's, it survives Redis stopping, restarting and
//! being flushed, and two server processes sharing one database and one Redis keep API.md's
//! invariants. Each test runs its own private redis-server.

mod common;

use common::*;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

fn server_with(redis: &RedisServer, db: &str) -> Server {
    spawn_server(db, &[("REDIS_URL", redis.url().as_str())])
}

fn wait_ready_status(addr: SocketAddr, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = get(addr, "/ready");
        if r.json()["status"] == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/ready never said {want}: {}",
            r.json()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What PostgreSQL must answer, computed from the rules of API.md.
struct Model {
    seller: i64,
    start: i64,
    inc: i64,
    current: Option<i64>,
}

impl Model {
    fn min_next(&self) -> i64 {
        self.current.map_or(self.start, |c| c + self.inc)
    }
}

fn money(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

fn bid(addr: SocketAddr, auction: i64, bidder: i64, amount: i64) -> Reply {
    post(
        addr,
        "/api/bids",
        &format!(
            r#"{{"auction_id":{auction},"amount":"{}","bidder_id":{bidder}}}"#,
            money(amount)
        ),
    )
}

/// Sends one random bid and checks the answer against the model.
fn random_bid(addr: SocketAddr, rng: &mut Lcg, auctions: &[i64], models: &mut [Model]) {
    let i = rng.next(auctions.len() as u64) as usize;
    let m = &mut models[i];
    let bidder = 1 + rng.next(4) as i64; // 1 is the seller
    let amount = (m.min_next() + rng.next(300) as i64 - 200).max(1);
    let r = bid(addr, auctions[i], bidder, amount);
    if bidder == m.seller {
        assert_eq!((r.status, r.code()), (403, "forbidden".into()));
    } else if amount < m.min_next() {
        assert_eq!(r.status, 409, "{}", r.json());
        let e = &r.json()["error"];
        assert_eq!(e["code"], "bid_too_low");
        assert_eq!(e["min_next_bid"], money(m.min_next()));
        let current = m.current.map_or(Value::Null, |c| Value::from(money(c)));
        assert_eq!(e["current_price"], current);
    } else {
        assert_eq!(r.status, 201, "{}", r.json());
        assert_eq!(r.json()["amount"], money(amount));
        m.current = Some(amount);
    }
}

fn open_auctions(addr: SocketAddr, n: usize) -> (Vec<i64>, Vec<Model>) {
    let ids = (0..n)
        .map(|_| started_auction(addr, "10.00", "0.50"))
        .collect();
    let models = (0..n)
        .map(|_| Model {
            seller: 1,
            start: 1000,
            inc: 50,
            current: None,
        })
        .collect();
    (ids, models)
}

fn stat(redis: &RedisServer, name: &str) -> u64 {
    let info = redis.cli(&["INFO", "stats"]).unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn fast_path_answers_equal_the_database_through_flushes_and_restarts() {
    let mut redis = RedisServer::start();
    let server = server_with(&redis, &test_db_name("fast"));
    let addr = server.addr;
    wait_ready_status(addr, "ready");
    let (auctions, mut models) = open_auctions(addr, 3);
    let mut rng = Lcg(0x0067_6176_656c);
    for step in 0..600 {
        random_bid(addr, &mut rng, &auctions, &mut models);
        if step == 200 {
            assert!(
                stat(&redis, "keyspace_hits") > 0,
                "the fast path was consulted"
            );
            redis.cli(&["FLUSHALL"]).unwrap();
        }
        if step == 400 {
            redis.restart();
        }
    }
    assert!(
        stat(&redis, "keyspace_hits") > 0,
        "the fast path is back after a restart"
    );
}

#[test]
fn fast_path_answers_without_the_database() {
    let redis = RedisServer::start();
    let db = test_db_name("nodb");
    drop(spawn_server(&db, &[])); // creates and migrates the database
    let proxy = Proxy::start(upstream());
    let url = format!("postgres://postgres@{}/{db}", proxy.addr);
    let server = spawn_server(
        &db,
        &[
            ("DATABASE_URL", url.as_str()),
            ("REDIS_URL", redis.url().as_str()),
        ],
    );
    let addr = server.addr;
    let a = started_auction(addr, "10.00", "1.00");
    assert_eq!(bid(addr, a, 2, 2000).status, 201);
    proxy.set(REFUSE);
    proxy.cut();
    // Only a cache can answer now: a bid that cannot win still gets PostgreSQL's answer.
    let r = bid(addr, a, 3, 2050);
    assert_eq!(r.status, 409, "{}", r.json());
    assert_eq!(r.json()["error"]["current_price"], "20.00");
    assert_eq!(r.json()["error"]["min_next_bid"], "21.00");
    let r = bid(addr, a, 3, 2100);
    assert_eq!(r.status, 503, "a bid that could win needs the database");
    // A keyed bid's answer is stored with its key, so only PostgreSQL may give it.
    let mut s = connect(addr);
    let body = format!(r#"{{"auction_id":{a},"amount":"20.50","bidder_id":3}}"#);
    send(
        &mut s,
        "POST",
        "/api/bids",
        Some(&body),
        &[("Idempotency-Key", "stored-with-its-answer")],
    );
    assert_eq!(read_reply(&mut s).unwrap().status, 503);
    proxy.set(FORWARD);
}

#[test]
fn two_processes_share_one_database_and_one_redis() {
    const CLIENTS: usize = 32;
    const BIDS: usize = 30;
    let redis = RedisServer::start();
    let db = test_db_name("two");
    let servers = [server_with(&redis, &db), server_with(&redis, &db)];
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    let (auctions, _) = open_auctions(addrs[0], 3);
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let handles: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (auctions, barrier, addr) = (auctions.clone(), barrier.clone(), addrs[c % 2]);
            std::thread::spawn(move || {
                let mut s = connect(addr);
                let mut accepted = Vec::new();
                barrier.wait();
                for i in 0..BIDS {
                    let auction = auctions[(c + i) % auctions.len()];
                    // Half the bids are far too low, so the fast path answers many of them.
                    let amount = if i % 2 == 0 {
                        1000 + (i * 100 + c * 7) as i64
                    } else {
                        1000
                    };
                    let body = format!(
                        r#"{{"auction_id":{auction},"amount":"{}","bidder_id":{}}}"#,
                        money(amount),
                        100 + c
                    );
                    send(&mut s, "POST", "/api/bids", Some(&body), &[]);
                    let r = read_reply(&mut s).unwrap();
                    match r.status {
                        201 => accepted.push((auction, r.json()["id"].as_i64().unwrap())),
                        409 => assert_eq!(r.code(), "bid_too_low"),
                        other => panic!("unexpected {other}: {}", r.json()),
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
    for auction in auctions {
        check_invariants(addrs[1], auction, &accepted);
    }
    assert!(stat(&redis, "keyspace_hits") > 0);
}

#[test]
fn redis_stopping_mid_load_loses_no_request() {
    const CLIENTS: usize = 8;
    let mut redis = RedisServer::start();
    let server = server_with(&redis, &test_db_name("stop"));
    let addr = server.addr;
    wait_ready_status(addr, "ready");
    let (auctions, _) = open_auctions(addr, 4);
    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (auctions, stop) = (auctions.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut s = connect(addr);
                let mut counts = [0usize; 3]; // 201, 409, 200
                let mut i = 0i64;
                while !stop.load(Ordering::SeqCst) {
                    let auction = auctions[(c + i as usize) % auctions.len()];
                    let amount = if i % 3 == 0 {
                        1000
                    } else {
                        1000 + i * 1000 + c as i64
                    };
                    let body = format!(
                        r#"{{"auction_id":{auction},"amount":"{}","bidder_id":{}}}"#,
                        money(amount),
                        50 + c
                    );
                    send(&mut s, "POST", "/api/bids", Some(&body), &[]);
                    let r = read_reply(&mut s).expect("every request is answered");
                    match r.status {
                        201 => counts[0] += 1,
                        409 => counts[1] += 1,
                        other => panic!("bid answered {other}: {}", r.json()),
                    }
                    send(
                        &mut s,
                        "GET",
                        &format!("/api/auctions/{auction}"),
                        None,
                        &[],
                    );
                    let r = read_reply(&mut s).expect("every request is answered");
                    assert_eq!(r.status, 200);
                    counts[2] += 1;
                    i += 1;
                }
                counts
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(700));
    redis.stop();
    wait_ready_status(addr, "degraded");
    assert_eq!(get(addr, "/ready").json()["redis"], "down");
    std::thread::sleep(Duration::from_millis(700));
    redis.restart();
    wait_ready_status(addr, "ready");
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let totals = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .fold([0usize; 3], |t, c| [t[0] + c[0], t[1] + c[1], t[2] + c[2]]);
    assert!(
        totals[0] > 0 && totals[1] > 0 && totals[2] > 0,
        "{totals:?}"
    );
    for a in auctions {
        let page = get(addr, &format!("/api/bids/{a}?limit=500")).json();
        let stored = page["bids"].as_array().unwrap().len();
        assert!(stored > 0);
    }
}

#[test]
fn ready_says_disabled_when_redis_is_off() {
    let r = get(shared(), "/ready").json();
    assert_eq!(r["redis"], "disabled");
    assert_eq!(r["status"], "degraded");
}
