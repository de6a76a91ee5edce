//! A database made and used by an older Gavel upgrades through the migration history: the bids and
//! idempotency keys it stored stay, its keys replay through the set-based batch, and bidding goes
//! on from the state it left.

mod common;

use gavel::domain::auction::NewAuction;
use gavel::domain::bid::{BidInput, BidOutcome};
use gavel::domain::idempotency::{KeyClaim, Keyed};
use gavel::domain::money::Money;
use gavel::storage::migrate;
use gavel::storage::pg::{Client, Config};
use gavel::storage::{auctions, bids, STATEMENTS};

/// The last migration of the Gavel before set-based bid batches.
const BEFORE_SET_BASED: i32 = 4;

fn bid(auction_id: i64, bidder_id: i64, cents: i64, key: Option<(&str, u8)>) -> BidInput {
    BidInput {
        auction_id,
        bidder_id,
        amount: Money::from_cents(cents),
        key: key.map(|(k, hash)| KeyClaim {
            caller: bidder_id,
            key: k.into(),
            request_hash: [hash; 32],
        }),
    }
}

fn fresh(answer: &Keyed<BidOutcome>) -> BidOutcome {
    match answer {
        Keyed::Fresh(o) => o.clone(),
        other => panic!("expected a fresh decision, got {other:?}"),
    }
}

#[test]
fn a_database_of_the_per_bid_loop_upgrades_and_its_keys_replay() {
    common::coroutine(|| {
        let db = common::test_db_name("upgrade");
        common::psql("postgres", &format!("CREATE DATABASE {db}"));
        let cfg = Config::from_url(&format!("{}/{db}", common::pg_base_url())).unwrap();

        // The older Gavel: its migrations, its statements, its bids and keys.
        let bare = Client::connect_now(cfg.clone(), &[], 0).unwrap();
        assert_eq!(
            migrate::run_through(&bare, BEFORE_SET_BASED).unwrap(),
            BEFORE_SET_BASED as usize
        );
        let old = Client::connect_now(cfg.clone(), STATEMENTS, 0).unwrap();
        let t = common::wall_clock();
        let a = auctions::insert_auction(
            &old,
            &NewAuction {
                title: "lot".into(),
                seller_id: 7,
                start_price: Money::from_cents(10_000),
                min_increment: Money::from_cents(500),
                starts_at: t.plus_secs(-10),
                ends_at: t.plus_secs(3_600),
                extension_seconds: 0,
            },
        )
        .unwrap()
        .id;
        let before = bids::place_bids(
            &old,
            &[
                bid(a, 8, 10_000, Some(("first", 1))),
                bid(a, 9, 10_000, Some(("low", 2))),
                bid(a, 9, 11_000, None),
                bid(a, 10, 12_000, Some(("aged", 3))),
            ],
        )
        .unwrap();
        let first = fresh(&before[0].answer);
        let low = fresh(&before[1].answer);
        assert!(matches!(first, BidOutcome::Accepted(_)), "{first:?}");
        assert!(matches!(low, BidOutcome::TooLow { .. }), "{low:?}");
        drop(old);
        common::psql(
            &db,
            "UPDATE idempotency_keys SET created_at = created_at - interval '25 hours' \
             WHERE key = 'aged'",
        );

        // The upgrade: only what is missing is applied (0005 and every later one).
        assert_eq!(
            migrate::run(&bare).unwrap(),
            migrate::MIGRATIONS.len() - BEFORE_SET_BASED as usize
        );
        assert_eq!(migrate::run(&bare).unwrap(), 0);
        assert_eq!(
            common::psql(
                &db,
                "SELECT collation_name FROM information_schema.columns \
                 WHERE table_name = 'idempotency_keys' AND column_name = 'key'"
            ),
            "C"
        );
        let new = Client::connect_now(cfg, STATEMENTS, 0).unwrap();
        let after = bids::place_bids(
            &new,
            &[
                bid(a, 8, 10_000, Some(("first", 1))), // a replay of an old answer
                bid(a, 9, 10_000, Some(("low", 2))),   // the old rejection, replayed
                bid(a, 9, 99_000, Some(("low", 9))),   // an old key with another body
                bid(a, 10, 12_000, Some(("aged", 3))), // past its 24 hours: decided afresh
                bid(a, 11, 12_500, None),              // on the state the old Gavel left
                bid(a, 11, 13_000, None),
            ],
        )
        .unwrap();
        assert_eq!(after[0].answer, Keyed::Replayed(first));
        assert_eq!(after[1].answer, Keyed::Replayed(low));
        assert_eq!(after[2].answer, Keyed::Reused);
        // 12 000 was accepted before the upgrade, so the same bid again is too low now.
        assert!(matches!(fresh(&after[3].answer), BidOutcome::TooLow { .. }));
        for (i, cents) in [(4, 12_500), (5, 13_000)] {
            match fresh(&after[i].answer) {
                BidOutcome::Accepted(b) => assert_eq!(b.amount, Money::from_cents(cents)),
                other => panic!("expected the bid of {cents} cents accepted, got {other:?}"),
            }
        }
        assert_eq!(
            common::psql(
                &db,
                &format!("SELECT bid_count, current_price FROM auctions WHERE id = {a}")
            ),
            "5|130.00"
        );
        assert_eq!(
            common::psql(
                &db,
                &format!("SELECT count(*) FROM bids WHERE auction_id = {a}")
            ),
            "5"
        );
    });
}
