//! Bid batches against the real database: each bid in a batch is decided as if alone, in the order
//! given within its auction, and batches on different connections never deadlock.

mod common;

use gavel::domain::auction::NewAuction;
use gavel::domain::money::Money;
use gavel::domain::time::Timestamp;
use gavel::storage::pg::{Client, Config};
use gavel::storage::queries::{self, BidInput, BidOutcome};
use std::sync::{Arc, Once};

fn run<F: FnOnce() + Send + 'static>(f: F) {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        may::config().set_workers(2);
    });
    if let Err(panic) = may::go!(f).join() {
        std::panic::resume_unwind(panic);
    }
}

fn setup(tag: &str) -> (Config, Client) {
    let url = format!("{}/{}", common::pg_base_url(), common::test_db_name(tag));
    let cfg = Config::from_url(&url).unwrap();
    gavel::storage::prepare_database(&cfg).unwrap();
    let client = Client::connect_now(cfg.clone(), queries::STATEMENTS, 0).unwrap();
    (cfg, client)
}

fn now() -> Timestamp {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    Timestamp::from_unix_micros(micros)
}

fn auction(client: &Client, seller: i64) -> i64 {
    let t = now();
    let new = NewAuction {
        title: "lot".into(),
        seller_id: seller,
        start_price: Money::from_cents(10_000),
        min_increment: Money::from_cents(500),
        starts_at: t.plus_secs(-10),
        ends_at: t.plus_secs(3_600),
        extension_seconds: 0,
    };
    queries::insert_auction(client, &new).unwrap().id
}

fn bid(auction_id: i64, bidder_id: i64, cents: i64) -> BidInput {
    BidInput {
        auction_id,
        bidder_id,
        amount: Money::from_cents(cents),
    }
}

#[test]
fn each_bid_is_decided_in_order_within_its_auction() {
    run(|| {
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
        let decided = queries::place_bids(&client, &batch).unwrap();
        assert_eq!(decided.len(), batch.len());
        assert!(matches!(decided[0].0, BidOutcome::Accepted(ref x) if x.auction_id == b));
        let first_on_a = match &decided[1].0 {
            BidOutcome::Accepted(x) => x.id,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            decided[2].0,
            BidOutcome::TooLow {
                current_price: Some(Money::from_cents(10_000)),
                min_next_bid: Money::from_cents(10_500)
            }
        );
        assert_eq!(decided[3].0, BidOutcome::Forbidden);
        match &decided[4].0 {
            BidOutcome::Accepted(x) => assert!(x.id > first_on_a, "acceptance order is kept"),
            other => panic!("{other:?}"),
        }
        assert_eq!(decided[5].0, BidOutcome::NotFound);
        assert!(decided[5].1.is_none());
        let state = decided[4].1.as_ref().unwrap();
        assert_eq!(state.bid_count, 2);
        assert_eq!(state.current_price, Some(Money::from_cents(10_500)));
    });
}

#[test]
fn crossing_batches_on_two_connections_never_deadlock() {
    run(|| {
        let (cfg, client) = setup("batch_cross");
        let ids: Vec<i64> = (0..6).map(|_| auction(&client, 1)).collect();
        let second = Arc::new(Client::connect_now(cfg, queries::STATEMENTS, 1).unwrap());
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
                        let decided = queries::place_bids(&client, &batch).expect("no deadlock");
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
