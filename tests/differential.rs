//! The set-based bid batch against the per-bid loop it replaced: the same random batches, decided
//! by `gavel_place_bids` on one database and by `gavel_place_bids_per_bid` on a second one holding
//! the same data, must give the same outcomes, the same auction states and the same stored rows.
//!
//! Both databases take their bid ids from sequences that start equal and both functions draw ids
//! in the same order (by auction, then arrival), so ids compare exactly. Clocks cannot: each
//! function reads its own, so every instant is compared by what it is (one of the fixed times the
//! test wrote, the decision's clock, or that clock plus the one-hour extension), and an extended
//! close must lie exactly one extension past the bid that moved it.

mod common;

use gavel::domain::money::Money;
use gavel::domain::time::Timestamp;
use gavel::storage::pg::{Client, Config, Row, StatementDef, Statements, Type};
use serde_json::Value;

const BID_PARAMS: &[Type] = &[
    Type::INT8_ARRAY,
    Type::INT8_ARRAY,
    Type::NUMERIC_ARRAY,
    Type::INT8_ARRAY,
    Type::TEXT_ARRAY,
    Type::BYTEA_ARRAY,
];

static SET_BASED: StatementDef = StatementDef {
    name: "set_based",
    sql: "SELECT * FROM gavel_place_bids($1, $2, $3, $4, $5, $6) ORDER BY ord",
    param_types: BID_PARAMS,
};

static PER_BID: StatementDef = StatementDef {
    name: "per_bid",
    sql: "SELECT * FROM gavel_place_bids_per_bid($1, $2, $3, $4, $5, $6) ORDER BY ord",
    param_types: BID_PARAMS,
};

static INSERT_AUCTION: StatementDef = StatementDef {
    name: "insert_auction",
    sql: "INSERT INTO auctions (id, title, seller_id, start_price, min_increment, starts_at, \
          ends_at, extension_seconds) VALUES ($1, 'lot', $2, $3, $4, $5, $6, $7)",
    param_types: &[
        Type::INT8,
        Type::INT8,
        Type::NUMERIC,
        Type::NUMERIC,
        Type::TIMESTAMPTZ,
        Type::TIMESTAMPTZ,
        Type::INT4,
    ],
};

static AUCTIONS: StatementDef = StatementDef {
    name: "auctions",
    sql: "SELECT id, current_price, leader_id, bid_count, ends_at FROM auctions ORDER BY id",
    param_types: &[],
};

static BIDS: StatementDef = StatementDef {
    name: "bids",
    sql: "SELECT auction_id, id, bidder_id, amount, created_at FROM bids ORDER BY auction_id, id",
    param_types: &[],
};

static KEYS: StatementDef = StatementDef {
    name: "keys",
    sql: "SELECT caller_id, key, request_hash, coalesce(to_jsonb(bid_answer), answer)::text \
          FROM idempotency_keys \
          ORDER BY caller_id, key",
    param_types: &[],
};

static AGE_KEYS: StatementDef = StatementDef {
    name: "age_keys",
    sql: "UPDATE idempotency_keys SET created_at = created_at - interval '25 hours' \
          WHERE key = ANY($1)",
    param_types: &[Type::TEXT_ARRAY],
};

static STATEMENTS: Statements = &[
    &SET_BASED,
    &PER_BID,
    &INSERT_AUCTION,
    &AUCTIONS,
    &BIDS,
    &KEYS,
    &AGE_KEYS,
];

fn database(tag: &str) -> Client {
    let url = format!("{}/{}", common::pg_base_url(), common::test_db_name(tag));
    let cfg = Config::from_url(&url).unwrap();
    gavel::storage::prepare_database(&cfg).unwrap();
    Client::connect_now(cfg, STATEMENTS, 0).unwrap()
}

const HOUR_SECS: i64 = 3_600;
/// Auctions 1..=AUCTION_COUNT exist; bids also name the two ids after them, which do not.
const AUCTION_COUNT: i64 = 8;

/// An auction as the test writes it: (seller, starts_at, ends_at, extension seconds).
type Lot = (i64, Timestamp, Timestamp, i32);

/// Open, soft-close (inside its one-hour window, so every accepted bid extends it), open with an
/// extension window it is not inside, scheduled, closed. Sellers 1 to 3 also bid.
fn lots(base: Timestamp) -> Vec<Lot> {
    let at = |secs: i64| base.plus_secs(secs);
    vec![
        (1, at(-HOUR_SECS), at(HOUR_SECS), 0),
        (2, at(-HOUR_SECS), at(HOUR_SECS), 0),
        (1, at(-HOUR_SECS), at(300), HOUR_SECS as i32),
        (3, at(-HOUR_SECS), at(600), HOUR_SECS as i32),
        (2, at(-HOUR_SECS), at(2 * HOUR_SECS), 60),
        (3, at(HOUR_SECS), at(2 * HOUR_SECS), 0),
        (1, at(-2 * HOUR_SECS), at(-HOUR_SECS), 0),
        (2, at(-HOUR_SECS), at(3 * HOUR_SECS), 0),
    ]
}

fn write_lots(client: &Client, lots: &[Lot]) {
    for (i, (seller, starts, ends, ext)) in lots.iter().enumerate() {
        let id = i as i64 + 1;
        let start = Money::from_cents(10_000);
        let inc = Money::from_cents(500);
        client
            .query(
                &INSERT_AUCTION,
                &[&id, seller, &start, &inc, starts, ends, ext],
            )
            .unwrap();
    }
}

/// Instants as the two databases can agree on them.
struct Clock {
    fixed: Vec<Timestamp>,
    base: Timestamp,
}

impl Clock {
    fn name(&self, t: Option<Timestamp>) -> String {
        let Some(t) = t else {
            return "null".into();
        };
        if let Some(i) = self.fixed.iter().position(|f| *f == t) {
            return format!("fixed{i}");
        }
        let window = 600 * 1_000_000;
        let since = t.unix_micros() - self.base.unix_micros();
        if (0..window).contains(&since) {
            "clock".into()
        } else if (0..window).contains(&(since - HOUR_SECS * 1_000_000)) {
            "clock+1h".into()
        } else {
            panic!("an instant neither fixed nor the clock: {t:?}")
        }
    }
}

struct Bid {
    auction: i64,
    bidder: i64,
    cents: i64,
    key: Option<(i64, String)>,
}

impl Bid {
    fn hash(&self) -> Option<Vec<u8>> {
        self.key
            .as_ref()
            .map(|_| format!("{}/{}/{}", self.auction, self.bidder, self.cents).into_bytes())
    }
}

fn random_batch(rng: &mut common::Lcg, round: u64, earlier: &mut Vec<Bid>) -> Vec<Bid> {
    let size = 1 + rng.next(40) as usize;
    let mut batch = Vec::with_capacity(size);
    for _ in 0..size {
        // Now and then the very same keyed request again: a replay.
        if !earlier.is_empty() && rng.next(8) == 0 {
            let b = &earlier[rng.next(earlier.len() as u64) as usize];
            batch.push(Bid {
                auction: b.auction,
                bidder: b.bidder,
                cents: b.cents,
                key: b.key.clone(),
            });
            continue;
        }
        let auction = 1 + rng.next(AUCTION_COUNT as u64 + 2) as i64;
        let bidder = 1 + rng.next(6) as i64;
        // Prices climb with the rounds, so bids keep landing above, at and below the minimum.
        let cents = 10_000 + 250 * rng.next(4 + 6 * round) as i64;
        // A small pool of keys, so keys meet again with other bodies too.
        let key =
            (rng.next(3) == 0).then(|| (1 + rng.next(2) as i64, format!("k{}", rng.next(40))));
        let bid = Bid {
            auction,
            bidder,
            cents,
            key,
        };
        if bid.key.is_some() {
            earlier.push(Bid {
                auction,
                bidder,
                cents,
                key: bid.key.clone(),
            });
        }
        batch.push(bid);
    }
    batch
}

fn decide(client: &Client, statement: &StatementDef, batch: &[Bid]) -> Vec<Row> {
    let auctions: Vec<i64> = batch.iter().map(|b| b.auction).collect();
    let bidders: Vec<i64> = batch.iter().map(|b| b.bidder).collect();
    let amounts: Vec<Money> = batch.iter().map(|b| Money::from_cents(b.cents)).collect();
    let callers: Vec<Option<i64>> = batch.iter().map(|b| b.key.as_ref().map(|k| k.0)).collect();
    let keys: Vec<Option<&str>> = batch
        .iter()
        .map(|b| b.key.as_ref().map(|k| k.1.as_str()))
        .collect();
    let hashes: Vec<Option<Vec<u8>>> = batch.iter().map(Bid::hash).collect();
    client
        .query(
            statement,
            &[&auctions, &bidders, &amounts, &callers, &keys, &hashes],
        )
        .unwrap()
}

/// One decision row, every instant named; an accepted bid that extended its auction must have
/// moved the close exactly one extension past its own acceptance.
fn decision(row: &Row, clock: &Clock) -> String {
    let accepted: Option<Timestamp> = row.get(4).unwrap();
    let ends: Option<Timestamp> = row.get(12).unwrap();
    let outcome: Option<i16> = row.get(2).unwrap();
    let ends_name = clock.name(ends);
    if outcome == Some(0) && ends_name == "clock+1h" {
        assert_eq!(
            ends.unwrap(),
            accepted.unwrap().plus_secs(HOUR_SECS),
            "an extension not measured from the bid's own acceptance"
        );
    }
    format!(
        "ord={} replay={} outcome={:?} bid={:?} at={} state={:?} price={:?} min={:?} seller={:?} \
         start={:?} inc={:?} opens={} ends={} count={:?}",
        row.get::<i32>(0).unwrap(),
        row.get::<i16>(1).unwrap(),
        outcome,
        row.get::<Option<i64>>(3).unwrap(),
        clock.name(accepted),
        row.get::<Option<&str>>(5).unwrap(),
        row.get::<Option<Money>>(6).unwrap(),
        row.get::<Option<Money>>(7).unwrap(),
        row.get::<Option<i64>>(8).unwrap(),
        row.get::<Option<Money>>(9).unwrap(),
        row.get::<Option<Money>>(10).unwrap(),
        clock.name(row.get(11).unwrap()),
        ends_name,
        row.get::<Option<i64>>(13).unwrap(),
    )
}

/// Everything either database stores, instants named.
fn stored(client: &Client, clock: &Clock) -> Vec<String> {
    let mut out = Vec::new();
    for r in client.query(&AUCTIONS, &[]).unwrap() {
        out.push(format!(
            "auction {} price={:?} leader={:?} count={} ends={}",
            r.get::<i64>(0).unwrap(),
            r.get::<Option<Money>>(1).unwrap(),
            r.get::<Option<i64>>(2).unwrap(),
            r.get::<i64>(3).unwrap(),
            clock.name(r.get(4).unwrap()),
        ));
    }
    for r in client.query(&BIDS, &[]).unwrap() {
        out.push(format!(
            "bid {}/{} bidder={} amount={:?} at={}",
            r.get::<i64>(0).unwrap(),
            r.get::<i64>(1).unwrap(),
            r.get::<i64>(2).unwrap(),
            r.get::<Money>(3).unwrap(),
            clock.name(r.get(4).unwrap()),
        ));
    }
    for r in client.query(&KEYS, &[]).unwrap() {
        let answer: Option<&str> = r.get(3).unwrap();
        let answer = answer.map(|a| {
            let mut v: Value = serde_json::from_str(a).unwrap();
            for field in ["accepted_at", "ends_at", "starts_at"] {
                let t = v[field]
                    .as_str()
                    .map(|s| Timestamp::parse_rfc3339(s).unwrap());
                v[field] = Value::String(clock.name(t));
            }
            v.to_string()
        });
        out.push(format!(
            "key {}/{} hash={:?} answer={:?}",
            r.get::<i64>(0).unwrap(),
            r.get::<&str>(1).unwrap(),
            r.get::<&[u8]>(2).unwrap(),
            answer,
        ));
    }
    out
}

#[test]
fn set_based_batches_decide_and_store_what_the_per_bid_loop_did() {
    common::coroutine(|| {
        let set_based = database("diff_set_based");
        let per_bid = database("diff_per_bid");
        let base = common::wall_clock();
        let lots = lots(base);
        write_lots(&set_based, &lots);
        write_lots(&per_bid, &lots);
        let clock = Clock {
            fixed: lots.iter().flat_map(|l| [l.1, l.2]).collect(),
            base,
        };
        let seed = 0x6176_656c;
        let mut rng = common::Lcg(seed);
        let mut earlier = Vec::new();
        let (mut accepted, mut replays, mut reused) = (0, 0, 0);
        let mut outcomes = std::collections::BTreeSet::new();
        for round in 0..80 {
            // Now and then some keys pass their 24 hours, on both databases: the next request
            // with one of them is decided afresh.
            if round % 10 == 9 {
                let aged: Vec<String> = (0..8).map(|_| format!("k{}", rng.next(40))).collect();
                set_based.query(&AGE_KEYS, &[&aged]).unwrap();
                per_bid.query(&AGE_KEYS, &[&aged]).unwrap();
            }
            let batch = random_batch(&mut rng, round, &mut earlier);
            let new: Vec<String> = decide(&set_based, &SET_BASED, &batch)
                .iter()
                .map(|r| decision(r, &clock))
                .collect();
            let old: Vec<String> = decide(&per_bid, &PER_BID, &batch)
                .iter()
                .map(|r| decision(r, &clock))
                .collect();
            assert_eq!(new, old, "seed {seed:#x}, round {round}: decisions differ");
            assert_eq!(
                stored(&set_based, &clock),
                stored(&per_bid, &clock),
                "seed {seed:#x}, round {round}: stored rows differ"
            );
            for d in &new {
                outcomes.insert(
                    d.split(" bid=")
                        .next()
                        .unwrap()
                        .split("outcome=")
                        .nth(1)
                        .unwrap()
                        .to_string(),
                );
            }
            accepted += new.iter().filter(|d| d.contains("outcome=Some(0)")).count();
            replays += new.iter().filter(|d| d.contains("replay=1")).count();
            reused += new.iter().filter(|d| d.contains("replay=2")).count();
        }
        // The batches must have reached the cases they are meant to compare.
        let all = stored(&set_based, &clock).join("\n");
        assert!(accepted > 50, "only {accepted} accepted bids");
        assert!(replays > 10, "only {replays} replays");
        assert!(reused > 10, "only {reused} reused keys");
        assert!(all.contains("ends=clock+1h"), "no soft-close extension");
        // Accepted, not found, not open, the seller's own, too low: every rule was reached.
        for outcome in 0..=4 {
            assert!(
                outcomes.contains(&format!("Some({outcome})")),
                "no outcome {outcome} in {outcomes:?}"
            );
        }
    });
}

/// `gavel_place_bids` keeps one generic plan per statement for a connection's life, made at its
/// first calls, when a new database is empty or nearly so. Those plans must still probe primary
/// keys once the tables have grown: no statement inside may scan a whole table or index.
fn assert_plans_probe_primary_keys(tag: &str, analyzed: bool) {
    let db = common::test_db_name(tag);
    drop(database(tag));
    let setup = "INSERT INTO auctions (title, seller_id, start_price, min_increment, starts_at, \
                 ends_at) SELECT 'lot', 7, 1, 1, now() - interval '1 hour', now() + interval '1 hour' \
                 FROM generate_series(1, 2); \
                 INSERT INTO idempotency_keys (caller_id, key, request_hash, answer, created_at) \
                 SELECT 1, 'x' || i, '\\x02', '{}', now() - interval '30 hours' \
                 FROM generate_series(1, 7) AS i;";
    let analyze = if analyzed {
        "VACUUM ANALYZE"
    } else {
        "SELECT 1;"
    };
    let mut calls = String::from(
        "LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0; \
         SET auto_explain.log_nested_statements = on; SET auto_explain.log_level = notice;\n",
    );
    // Past the five custom plans PostgreSQL would otherwise try first; each call takes over a
    // key past its 24 hours, so the keys' DELETE is planned too.
    for i in 1..=7 {
        calls.push_str(&format!(
            "SELECT count(*) FROM gavel_place_bids(ARRAY[1, 2]::bigint[], ARRAY[8, 9]::bigint[], \
             ARRAY[{i}00, 100]::numeric[], ARRAY[1, 1]::bigint[], ARRAY['x{i}', NULL]::text[], \
             ARRAY['\\x01', NULL]::bytea[]);\n"
        ));
    }
    let url = format!("{}/{db}", common::pg_base_url());
    let mut args = vec![url.as_str(), "-v", "ON_ERROR_STOP=1", "-qAt"];
    // Separate commands: VACUUM cannot run inside the one transaction of a multi-statement -c.
    for command in [setup, analyze, calls.as_str()] {
        args.extend(["-c", command]);
    }
    let out = std::process::Command::new("psql")
        .args(&args)
        .output()
        .unwrap();
    let plans = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{plans}");
    for node in [
        "Index Scan using idempotency_keys_pkey",
        "Index Scan using auctions_pkey",
        "Insert on bids",
        "Update on auctions",
        "Delete on idempotency_keys",
    ] {
        assert!(plans.contains(node), "{tag}: no {node:?} in:\n{plans}");
    }
    for scan in ["Seq Scan", "Hash Join", "Merge Join", "Index Only Scan"] {
        assert!(!plans.contains(scan), "{tag}: a {scan} in:\n{plans}");
    }
    // An index scan without an index condition walks the whole index.
    let lines: Vec<&str> = plans.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.contains("Index Scan using") || line.contains("Bitmap Index Scan on") {
            let next = lines.get(i + 1).copied().unwrap_or("");
            assert!(
                next.contains("Index Cond"),
                "{tag}: a whole-index scan: {line}\n{next}\nin:\n{plans}"
            );
        }
    }
}

#[test]
fn set_based_batches_probe_primary_keys_when_planned_on_an_empty_database() {
    common::coroutine(|| assert_plans_probe_primary_keys("diff_plans_empty", false));
}

#[test]
fn set_based_batches_probe_primary_keys_when_planned_on_tiny_analyzed_tables() {
    common::coroutine(|| assert_plans_probe_primary_keys("diff_plans_tiny", true));
}
