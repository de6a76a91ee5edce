//! Bid batches against the real database: each bid in a batch is decided as if alone, in the order
//! given within its auction, and batches on different connections never deadlock.

mod common;

use gavel::domain::auction::NewAuction;
use gavel::domain::bid::{BidDecision, BidInput, BidOutcome};
use gavel::domain::idempotency::{KeyClaim, Keyed};
use gavel::domain::money::Money;
use gavel::storage::pg::{Client, Config};
use gavel::storage::{auctions, bids, STATEMENTS};
use std::sync::Arc;

fn setup(tag: &str) -> (Config, Client) {
    let url = format!("{}/{}", common::pg_base_url(), common::test_db_name(tag));
    let cfg = Config::from_url(&url).unwrap();
    gavel::storage::prepare_database(&cfg).unwrap();
    let client = Client::connect_now(cfg.clone(), STATEMENTS, 0).unwrap();
    (cfg, client)
}

fn auction(client: &Client, seller: i64) -> i64 {
    let t = common::wall_clock();
    let new = NewAuction {
        title: "lot".into(),
        seller_id: seller,
        start_price: Money::from_cents(10_000),
        min_increment: Money::from_cents(500),
        starts_at: t.plus_secs(-10),
        ends_at: t.plus_secs(3_600),
        extension_seconds: 0,
    };
    auctions::insert_auction(client, &new).unwrap().id
}

fn bid(auction_id: i64, bidder_id: i64, cents: i64) -> BidInput {
    BidInput {
        auction_id,
        bidder_id,
        amount: Money::from_cents(cents),
        key: None,
    }
}

fn outcome(d: &BidDecision) -> BidOutcome {
    match &d.answer {
        Keyed::Fresh(o) => o.clone(),
        other => panic!("expected a fresh decision, got {other:?}"),
    }
}

#[test]
fn each_bid_is_decided_in_order_within_its_auction() {
    common::coroutine(|| {
        let (_, client) = setup("batch_order");
        let a = auction(&client, 7);
        let b = auction(&client, 7);
        let batch = [
            bid(b, 8, 10_000),
            bid(a, 8, 10_000),
            bid(a, 9, 10_000), // too low after the bid before it on `a`
            bid(b, 7, 90_000), // the seller
            bid(a, 9, 10_500),
            bid(i64::MAX, 9, 10_000),
        ];
        let decided = bids::place_bids(&client, &batch).unwrap();
        assert_eq!(decided.len(), batch.len());
        assert!(matches!(outcome(&decided[0]), BidOutcome::Accepted(ref x) if x.auction_id == b));
        let first_on_a = match &outcome(&decided[1]) {
            BidOutcome::Accepted(x) => x.id,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            outcome(&decided[2]),
            BidOutcome::TooLow {
                current_price: Some(Money::from_cents(10_000)),
                min_next_bid: Money::from_cents(10_500)
            }
        );
        assert_eq!(outcome(&decided[3]), BidOutcome::Forbidden);
        match &outcome(&decided[4]) {
            BidOutcome::Accepted(x) => assert!(x.id > first_on_a, "acceptance order is kept"),
            other => panic!("{other:?}"),
        }
        assert_eq!(outcome(&decided[5]), BidOutcome::NotFound);
        assert!(decided[5].state.is_none());
        let state = decided[4].state.as_ref().unwrap();
        assert_eq!(state.bid_count, 2);
        assert_eq!(state.current_price, Some(Money::from_cents(10_500)));
    });
}

#[test]
fn crossing_batches_on_two_connections_never_deadlock() {
    common::coroutine(|| {
        let (cfg, client) = setup("batch_cross");
        let ids: Vec<i64> = (0..6).map(|_| auction(&client, 1)).collect();
        let second = Arc::new(Client::connect_now(cfg, STATEMENTS, 1).unwrap());
        let first = Arc::new(client);
        let rounds = 40;
        let handles: Vec<_> = [first, second]
            .into_iter()
            .enumerate()
            .map(|(c, client)| {
                let mut order = ids.clone();
                if c == 1 {
                    order.reverse(); // the other connection asks in the opposite order
                }
                may::go!(move || {
                    for r in 0..rounds {
                        let batch: Vec<BidInput> = order
                            .iter()
                            .map(|&a| bid(a, 100 + c as i64, 10_000 + (r * 2 + c as i64) * 500))
                            .collect();
                        let decided = bids::place_bids(&client, &batch).expect("no deadlock");
                        assert_eq!(decided.len(), batch.len());
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    });
}

fn keyed(auction_id: i64, bidder_id: i64, cents: i64, key: &str, hash: u8) -> BidInput {
    BidInput {
        key: Some(KeyClaim {
            caller: bidder_id,
            key: key.into(),
            request_hash: [hash; 32],
        }),
        ..bid(auction_id, bidder_id, cents)
    }
}

#[test]
fn a_key_used_twice_in_one_batch_has_one_effect_and_one_answer() {
    common::coroutine(|| {
        let (_, client) = setup("batch_keys");
        let a = auction(&client, 7);
        let batch = [
            keyed(a, 8, 10_000, "k1", 1),
            keyed(a, 8, 10_000, "k1", 1), // the same request again
            keyed(a, 8, 20_000, "k1", 2), // the same key, another request
            keyed(a, 9, 10_000, "k1", 1), // another caller's own k1: too low now
        ];
        let decided = bids::place_bids(&client, &batch).unwrap();
        let first = outcome(&decided[0]);
        assert!(matches!(first, BidOutcome::Accepted(_)), "{first:?}");
        assert_eq!(decided[1].answer, Keyed::Replayed(first.clone()));
        assert!(decided[1].state.is_none(), "a replay says nothing of now");
        assert_eq!(decided[2].answer, Keyed::Reused);
        assert!(matches!(outcome(&decided[3]), BidOutcome::TooLow { .. }));
        // A later batch, after another bid moved the auction on, still gets the first answers.
        let later = bids::place_bids(
            &client,
            &[
                bid(a, 10, 20_000),
                keyed(a, 8, 10_000, "k1", 1),
                keyed(a, 9, 10_000, "k1", 1),
            ],
        )
        .unwrap();
        assert!(matches!(outcome(&later[0]), BidOutcome::Accepted(_)));
        assert_eq!(later[1].answer, Keyed::Replayed(first));
        assert_eq!(later[2].answer, Keyed::Replayed(outcome(&decided[3])));
    });
}

#[test]
fn keyed_batches_crossing_on_two_connections_never_deadlock_and_act_once() {
    common::coroutine(|| {
        let (cfg, client) = setup("batch_keys_cross");
        let ids: Vec<i64> = (0..6).map(|_| auction(&client, 1)).collect();
        let second = Arc::new(Client::connect_now(cfg, STATEMENTS, 1).unwrap());
        let first = Arc::new(client);
        let rounds = 30;
        let handles: Vec<_> = [first.clone(), second]
            .into_iter()
            .enumerate()
            .map(|(c, client)| {
                let mut order: Vec<(usize, i64)> = ids.iter().copied().enumerate().collect();
                if c == 1 {
                    order.reverse(); // keys and auctions asked for in the opposite order
                }
                may::go!(move || {
                    let mut fresh = 0;
                    for r in 0..rounds {
                        // Both connections send the same keyed requests in each round.
                        let batch: Vec<BidInput> = order
                            .iter()
                            .map(|&(k, a)| {
                                let key = format!("r{r}-k{k}");
                                keyed(a, 100 + k as i64, 10_000 + r * 500, &key, k as u8)
                            })
                            .collect();
                        let decided = bids::place_bids(&client, &batch).expect("no deadlock");
                        fresh += decided
                            .iter()
                            .filter(|d| matches!(d.answer, Keyed::Fresh(_)))
                            .count();
                    }
                    fresh
                })
            })
            .collect();
        let fresh: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(fresh, ids.len() * rounds as usize, "each key decided once");
        let total: i64 = ids
            .iter()
            .map(|&a| auctions::get_auction(&first, a).unwrap().unwrap().bid_count)
            .sum();
        assert_eq!(
            total,
            ids.len() as i64 * rounds,
            "each key's bid stored once"
        );
    });
}

#[test]
fn a_batch_whose_new_key_another_request_wrote_first_is_rolled_back_and_replays() {
    common::coroutine(|| {
        let db = common::test_db_name("batch_key_race");
        let (_, client) = setup("batch_key_race");
        let a = auction(&client, 7);
        // Another transaction holds the key, written but not yet committed, for a second: the
        // batch sees no key, decides, then waits at the key's INSERT and finds it taken.
        let hex = "01".repeat(32);
        let holder = hold_in_transaction(
            &db,
            &format!(
                "INSERT INTO idempotency_keys (caller_id, key, request_hash, answer) \
                 VALUES (8, 'race', '\\x{hex}', to_jsonb(ROW(4::smallint, NULL, NULL, NULL, \
                 100.00, 105.00, 7, 100.00, 5.00, now(), now(), 0)::gavel_bid_answer))"
            ),
            1_000,
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
        let decided = bids::place_bids(
            &client,
            &[bid(a, 9, 10_000), keyed(a, 8, 10_000, "race", 1)],
        )
        .unwrap();
        assert!(holder.wait_with_output().unwrap().status.success());
        // Rerun whole: the unkeyed bid is decided once, the keyed one replays the stored answer.
        assert!(matches!(outcome(&decided[0]), BidOutcome::Accepted(_)));
        assert!(
            matches!(
                &decided[1].answer,
                Keyed::Replayed(BidOutcome::TooLow { .. })
            ),
            "{:?}",
            decided[1]
        );
        assert_eq!(
            common::psql(
                &db,
                &format!("SELECT bid_count FROM auctions WHERE id = {a}")
            ),
            "1"
        );
        assert_eq!(
            common::psql(
                &db,
                &format!("SELECT count(*) FROM bids WHERE auction_id = {a}")
            ),
            "1"
        );
    });
}

/// Runs `sql` in a transaction of another session (psql) that stays open for `millis` more.
fn hold_in_transaction(db: &str, sql: &str, millis: u64) -> std::process::Child {
    std::process::Command::new("psql")
        .args([
            format!("{}/{db}", common::pg_base_url()).as_str(),
            "-v",
            "ON_ERROR_STOP=1",
            "-qc",
            &format!(
                "BEGIN; {sql}; SELECT pg_sleep({}); COMMIT;",
                millis as f64 / 1000.0
            ),
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// Holds the key row `(caller, key)` locked from another session for `millis`.
fn hold_key(db: &str, caller: i64, key: &str, millis: u64) -> std::process::Child {
    let lock = format!(
        "SELECT 1 FROM idempotency_keys WHERE caller_id = {caller} AND key = '{key}' FOR UPDATE"
    );
    hold_in_transaction(db, &lock, millis)
}

#[test]
fn batches_taking_over_the_same_expired_keys_in_opposite_orders_never_deadlock() {
    common::coroutine(|| {
        let db = common::test_db_name("batch_expired_cross");
        let (cfg, client) = setup("batch_expired_cross");
        let ids: Vec<i64> = (0..4).map(|_| auction(&client, 1)).collect();
        common::psql(
            &db,
            "INSERT INTO idempotency_keys (caller_id, key, request_hash, answer, created_at) \
             VALUES (8, 'a', '\\x00', '{}', now() - interval '30 hours'), \
                    (8, 'b', '\\x00', '{}', now() - interval '30 hours')",
        );
        // Batch one meets key a before key b (its auctions' order), batch two b before a. Two
        // other sessions hold the keys so that each batch is stopped at its first key, and b is
        // let go first: batch two takes b and then waits for a, which batch one will get first.
        let holders = [hold_key(&db, 8, "a", 1_200), hold_key(&db, 8, "b", 700)];
        std::thread::sleep(std::time::Duration::from_millis(250));
        let second = Arc::new(Client::connect_now(cfg, STATEMENTS, 1).unwrap());
        let first = Arc::new(client);
        let batches = [
            (
                first,
                vec![
                    keyed(ids[0], 8, 10_000, "a", 1),
                    keyed(ids[1], 8, 10_000, "b", 2),
                ],
            ),
            (
                second,
                vec![
                    keyed(ids[2], 8, 10_000, "b", 3),
                    keyed(ids[3], 8, 10_000, "a", 4),
                ],
            ),
        ];
        let handles: Vec<_> = batches
            .into_iter()
            .map(|(client, batch)| may::go!(move || bids::place_bids(&client, &batch)))
            .collect();
        let decided: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().unwrap().expect("no deadlock"))
            .collect();
        for h in holders {
            assert!(h.wait_with_output().unwrap().status.success());
        }
        // Each key was taken over once; the other batch, run again, found it used with another
        // body.
        let fresh = decided
            .iter()
            .flatten()
            .filter(|d| matches!(d.answer, Keyed::Fresh(_)))
            .count();
        assert_eq!(fresh, 2, "{decided:?}");
        assert_eq!(
            common::psql(&db, "SELECT count(*) FROM idempotency_keys WHERE created_at > now() - interval '1 hour'"),
            "2"
        );
    });
}
