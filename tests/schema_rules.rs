//! The catalog rules the Citus plan relies on ([ARCHITECTURE.md, "Past one PostgreSQL: a Citus
//! plan"](../ARCHITECTURE.md#past-one-postgresql-a-citus-plan)). A fresh database, migrated with
//! today's migrations, is read back from the catalog and held to where the plan puts each table,
//! so a change to the schema that the plan does not allow for fails here, on one PostgreSQL,
//! rather than on a cluster that refuses it.
//!
//! The rules are Citus's own
//! (<https://docs.citusdata.com/en/stable/develop/reference_ddl.html>), and one of the plan's:
//! - every table is placed by the plan (distributed by a column, a reference table, or a plain
//!   table on the coordinator), and every table the plan places exists;
//! - a distributed table has its distribution column, NOT NULL, of the type of its co-location
//!   group's first table's;
//! - every primary key, unique constraint, unique index and exclusion constraint of a
//!   distributed table has the distribution column among its key columns;
//! - a foreign key between distributed tables stays inside one co-location group and pairs the
//!   two distribution columns; a distributed table may reference a reference table, but no
//!   reference table and no table on the coordinator may reference a distributed one, nor a
//!   distributed table one on the coordinator;
//! - a function the plan runs on the workers (`create_distributed_function`) names only tables
//!   of its co-location group and reference tables (the plan's: no transaction spans two
//!   shards).
//!
//! Where today's schema breaks a rule because the plan changes it first, the break is listed in
//! [`KNOWN_EXCEPTIONS`], exactly: the test fails when a new one appears and when a listed one
//! is gone.

mod common;

use gavel::storage::pg::Config;
use std::collections::{BTreeMap, BTreeSet};
use Placement::{CoordinatorLocal, Distributed, Reference};

/// Where the plan puts a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Placement {
    /// Hash-distributed by `column`. `colocate_with` names the table whose co-location group it
    /// joins; `None` starts a group of its own (`colocate_with => 'none'`).
    Distributed {
        column: &'static str,
        colocate_with: Option<&'static str>,
    },
    /// One shard, replicated to every node (`create_reference_table`).
    Reference,
    /// A plain table on the coordinator, never distributed.
    CoordinatorLocal,
}

/// The plan, table by table: the `create_distributed_table` and `create_reference_table` calls
/// of ARCHITECTURE.md's plan say the same (`the_plan_in_architecture_md_places_the_same_tables`).
const PLAN: &[(&str, Placement)] = &[
    (
        "auctions",
        Distributed {
            column: "id",
            colocate_with: None,
        },
    ),
    (
        "bids",
        Distributed {
            column: "auction_id",
            colocate_with: Some("auctions"),
        },
    ),
    (
        "bid_keys",
        Distributed {
            column: "auction_id",
            colocate_with: Some("auctions"),
        },
    ),
    (
        "idempotency_keys",
        Distributed {
            column: "caller_id",
            colocate_with: None,
        },
    ),
    ("gavel_instance", Reference),
    ("gavel_migrations", CoordinatorLocal),
];

/// The functions the plan runs on the workers (`create_distributed_function`), each with the
/// table it is co-located with.
const ON_WORKERS: &[(&str, &str)] = &[
    ("gavel_place_bids", "auctions"),
    ("gavel_claim_bid_key", "idempotency_keys"),
];

/// Where today's schema breaks the plan's rules: each is a step of "What must change first" in
/// ARCHITECTURE.md ("Past one PostgreSQL: a Citus plan"), where a keyed bid writes its key by
/// caller in the transaction that writes its bid by auction, which would span two shards. The
/// change that takes a step strikes its line here, and the plan's text with it.
const KNOWN_EXCEPTIONS: &[&str] = &[
    // Bid keys move next to their bids, keyed (auction_id, caller_id, key).
    "bid_keys: placed by the plan, not in the schema",
    // The caller-scoped claim a keyed bid makes first, in a transaction of its own.
    "gavel_claim_bid_key: run on the workers by the plan, not in the schema",
    // The batch still looks up and writes its keys in idempotency_keys (by caller).
    "gavel_place_bids: runs with auctions but names idempotency_keys, a table distributed by \
     caller_id",
];

fn plan_of(table: &str) -> Option<Placement> {
    PLAN.iter().find(|(t, _)| *t == table).map(|(_, p)| *p)
}

/// The first table of `table`'s co-location group: its group's name.
fn group_of(table: &str) -> Option<&'static str> {
    let mut at = PLAN.iter().find(|(t, _)| *t == table)?;
    for _ in 0..PLAN.len() {
        match at.1 {
            Distributed {
                colocate_with: Some(next),
                ..
            } => at = PLAN.iter().find(|(t, _)| *t == next)?,
            Distributed {
                colocate_with: None,
                ..
            } => return Some(at.0),
            _ => return None,
        }
    }
    None
}

fn describe(table: &str) -> String {
    match plan_of(table) {
        Some(Distributed { column, .. }) => match group_of(table) {
            Some(group) if group != table => {
                format!("a table distributed by {column}, co-located with {group}")
            }
            _ => format!("a table distributed by {column}"),
        },
        Some(Reference) => "a reference table".into(),
        Some(CoordinatorLocal) => "a table on the coordinator".into(),
        None => "not placed by the plan".into(),
    }
}

/// What the rules read of a database's catalog.
#[derive(Default)]
struct Catalog {
    /// Every table, with its columns: name → (type, NOT NULL).
    tables: BTreeMap<String, BTreeMap<String, (String, bool)>>,
    /// Primary keys, unique indexes (and so unique constraints) and exclusion constraints.
    unique: Vec<UniqueIndex>,
    foreign_keys: Vec<ForeignKey>,
    /// Each function's body (every overload's, joined), lower-cased, comments removed.
    functions: BTreeMap<String, String>,
}

struct UniqueIndex {
    table: String,
    kind: &'static str,
    name: String,
    /// Key columns only (no INCLUDE columns); an expression reads `(expression)`.
    columns: Vec<String>,
}

struct ForeignKey {
    table: String,
    name: String,
    columns: Vec<String>,
    references: String,
    referenced: Vec<String>,
}

/// Tables outside PostgreSQL's own schemas, named bare in `public` and qualified elsewhere.
const TABLE_NAME: &str = "CASE WHEN n.nspname = 'public' THEN c.relname::text \
                          ELSE n.nspname || '.' || c.relname END";
const USER_SCHEMAS: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema') \
                            AND n.nspname NOT LIKE 'pg\\_toast%' \
                            AND n.nspname NOT LIKE 'pg\\_temp\\_%'";

fn rows(db: &str, sql: &str) -> Vec<Vec<String>> {
    common::psql(db, sql)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split('|').map(str::to_owned).collect())
        .collect()
}

fn list(cell: &str) -> Vec<String> {
    cell.split(',')
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect()
}

fn read_catalog(db: &str) -> Catalog {
    let mut catalog = Catalog::default();
    // Tables of every kind that holds rows: plain, partitioned, materialized, foreign.
    for r in rows(
        db,
        &format!(
            "SELECT {TABLE_NAME} FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p', 'm', 'f') AND {USER_SCHEMAS}"
        ),
    ) {
        catalog.tables.insert(r[0].clone(), BTreeMap::new());
    }
    for r in rows(
        db,
        &format!(
            "SELECT {TABLE_NAME}, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull \
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p', 'm', 'f') AND {USER_SCHEMAS} \
               AND a.attnum > 0 AND NOT a.attisdropped"
        ),
    ) {
        if let Some(columns) = catalog.tables.get_mut(&r[0]) {
            columns.insert(r[1].clone(), (r[2].clone(), r[3] == "t"));
        }
    }
    for r in rows(
        db,
        &format!(
            "SELECT {TABLE_NAME}, \
                    CASE WHEN ix.indisprimary THEN 'primary key' \
                         WHEN ix.indisexclusion THEN 'exclusion constraint' \
                         ELSE 'unique index' END, \
                    i.relname, \
                    (SELECT string_agg(coalesce(a.attname::text, '(expression)'), ',' \
                                       ORDER BY k.ord) \
                       FROM unnest(ix.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
                       LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum \
                                               AND k.attnum > 0 \
                      WHERE k.ord <= ix.indnkeyatts) \
             FROM pg_index ix JOIN pg_class c ON c.oid = ix.indrelid \
             JOIN pg_class i ON i.oid = ix.indexrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE (ix.indisunique OR ix.indisexclusion) AND {USER_SCHEMAS}"
        ),
    ) {
        catalog.unique.push(UniqueIndex {
            table: r[0].clone(),
            kind: match r[1].as_str() {
                "primary key" => "primary key",
                "exclusion constraint" => "exclusion constraint",
                _ => "unique index",
            },
            name: r[2].clone(),
            columns: list(&r[3]),
        });
    }
    let columns_of = |rel: &str, key: &str| {
        format!(
            "(SELECT string_agg(a.attname, ',' ORDER BY k.ord) \
               FROM unnest(con.{key}) WITH ORDINALITY AS k(attnum, ord) \
               JOIN pg_attribute a ON a.attrelid = con.{rel} AND a.attnum = k.attnum)"
        )
    };
    for r in rows(
        db,
        &format!(
            "SELECT {TABLE_NAME}, con.conname, {}, \
                    CASE WHEN rn.nspname = 'public' THEN r.relname::text \
                         ELSE rn.nspname || '.' || r.relname END, {} \
             FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_class r ON r.oid = con.confrelid \
             JOIN pg_namespace rn ON rn.oid = r.relnamespace \
             WHERE con.contype = 'f' AND {USER_SCHEMAS}",
            columns_of("conrelid", "conkey"),
            columns_of("confrelid", "confkey"),
        ),
    ) {
        catalog.foreign_keys.push(ForeignKey {
            table: r[0].clone(),
            name: r[1].clone(),
            columns: list(&r[2]),
            references: r[3].clone(),
            referenced: list(&r[4]),
        });
    }
    // Bodies span lines and hold '|': hex keeps each on one line of psql's output.
    for r in rows(
        db,
        "SELECT p.proname, encode(convert_to(p.prosrc, 'UTF8'), 'hex') \
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
         WHERE n.nspname = 'public'",
    ) {
        let body = without_comments(&String::from_utf8(unhex(&r[1])).unwrap()).to_lowercase();
        let joined = catalog.functions.entry(r[0].clone()).or_default();
        joined.push_str(&body);
        joined.push('\n');
    }
    catalog
}

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// SQL without its `--` and `/* */` comments (string literals are kept whole: a table named in
/// dynamic SQL is still named).
fn without_comments(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        if quoted {
            quoted = c != '\'';
            out.push(c);
        } else if c == '\'' {
            quoted = true;
            out.push(c);
        } else if c == '-' && chars.peek() == Some(&'-') {
            for c in chars.by_ref() {
                if c == '\n' {
                    out.push('\n');
                    break;
                }
            }
        } else if c == '/' && chars.peek() == Some(&'*') {
            chars.next();
            let mut last = ' ';
            for c in chars.by_ref() {
                if last == '*' && c == '/' {
                    break;
                }
                last = c;
            }
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether `word` occurs in `text` as a whole identifier.
fn names(text: &str, word: &str) -> bool {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '$';
    text.match_indices(word).any(|(at, _)| {
        !text[..at].chars().next_back().is_some_and(ident)
            && !text[at + word.len()..].chars().next().is_some_and(ident)
    })
}

/// Every rule the plan relies on, broken: one line each, sorted.
fn violations(catalog: &Catalog) -> Vec<String> {
    let mut found = BTreeSet::new();
    for table in catalog.tables.keys() {
        if plan_of(table).is_none() {
            found.insert(format!("{table}: not placed by the plan"));
        }
    }
    for (table, placement) in PLAN {
        let Some(columns) = catalog.tables.get(*table) else {
            found.insert(format!("{table}: placed by the plan, not in the schema"));
            continue;
        };
        let Distributed { column, .. } = placement else {
            continue;
        };
        let Some((ty, not_null)) = columns.get(*column) else {
            found.insert(format!(
                "{table}: has no column {column} to be distributed by"
            ));
            continue;
        };
        if !not_null {
            found.insert(format!("{table}: distribution column {column} may be NULL"));
        }
        let leader = group_of(table).expect("a distributed table's group");
        if let Some(Distributed {
            column: leader_column,
            ..
        }) = plan_of(leader)
        {
            let leader_ty = catalog
                .tables
                .get(leader)
                .and_then(|c| c.get(leader_column))
                .map(|(ty, _)| ty);
            if leader_ty.is_some_and(|t| t != ty) {
                found.insert(format!(
                    "{table}: distribution column {column} is {ty}, not the {} of \
                     {leader}.{leader_column}",
                    leader_ty.unwrap()
                ));
            }
        }
    }
    for index in &catalog.unique {
        if let Some(Distributed { column, .. }) = plan_of(&index.table) {
            if !index.columns.iter().any(|c| c == column) {
                found.insert(format!(
                    "{}: {} {} ({}) lacks {column}",
                    index.table,
                    index.kind,
                    index.name,
                    index.columns.join(", ")
                ));
            }
        }
    }
    for fk in &catalog.foreign_keys {
        let (from, to) = (plan_of(&fk.table), plan_of(&fk.references));
        let refused = |why: &str| {
            format!(
                "{}: foreign key {} -> {}: {why}",
                fk.table, fk.name, fk.references
            )
        };
        match (from, to) {
            (
                Some(Distributed { column, .. }),
                Some(Distributed {
                    column: to_column, ..
                }),
            ) => {
                if group_of(&fk.table) != group_of(&fk.references) {
                    found.insert(refused("joins two co-location groups"));
                    continue;
                }
                let at = fk.columns.iter().position(|c| c == column);
                let to_at = fk.referenced.iter().position(|c| c == to_column);
                if at.is_none() || at != to_at {
                    found.insert(refused(&format!(
                        "({}) -> ({}) does not pair {column} with {to_column}",
                        fk.columns.join(", "),
                        fk.referenced.join(", ")
                    )));
                }
            }
            (Some(Distributed { .. }), Some(CoordinatorLocal))
            | (Some(Reference), Some(Distributed { .. }))
            | (Some(CoordinatorLocal), Some(Distributed { .. })) => {
                found.insert(refused(&format!(
                    "{} may not reference {}",
                    describe(&fk.table),
                    describe(&fk.references)
                )));
            }
            // Distributed or local to reference, reference to reference, local to local or
            // reference: allowed. Unplaced tables are reported once, above.
            _ => {}
        }
    }
    for (function, with) in ON_WORKERS {
        let Some(body) = catalog.functions.get(*function) else {
            found.insert(format!(
                "{function}: run on the workers by the plan, not in the schema"
            ));
            continue;
        };
        // The function and every function of the schema it calls, through any depth.
        let mut bodies = vec![body.as_str()];
        let mut seen = BTreeSet::from([function.to_string()]);
        let mut next = 0;
        while next < bodies.len() {
            let text = bodies[next];
            next += 1;
            for (name, called) in &catalog.functions {
                if names(text, name) && seen.insert(name.clone()) {
                    bodies.push(called);
                }
            }
        }
        let group = group_of(with);
        for table in catalog.tables.keys() {
            let allowed =
                plan_of(table) == Some(Reference) || (group.is_some() && group_of(table) == group);
            if !allowed && bodies.iter().any(|b| names(b, table)) {
                found.insert(format!(
                    "{function}: runs with {with} but names {table}, {}",
                    describe(table)
                ));
            }
        }
    }
    found.into_iter().collect()
}

/// Creates a database of this test process and applies today's migrations to it.
fn migrated(tag: &str) -> String {
    let db = common::test_db_name(tag);
    let cfg = Config::from_url(&format!("{}/{db}", common::pg_base_url())).unwrap();
    common::coroutine(move || {
        gavel::storage::prepare_database(&cfg).unwrap();
    });
    db
}

fn expected(exceptions: &[&str]) -> Vec<String> {
    let mut lines: Vec<String> = exceptions.iter().map(|s| s.to_string()).collect();
    lines.sort();
    lines
}

#[test]
fn todays_schema_breaks_the_plans_rules_only_where_the_plan_changes_it_first() {
    let db = migrated("schema_rules");
    let found = violations(&read_catalog(&db));
    assert_eq!(
        found,
        expected(KNOWN_EXCEPTIONS),
        "\nthe schema and the Citus plan (ARCHITECTURE.md, \"Past one PostgreSQL: a Citus \
         plan\") disagree: place a new table in the plan, keep the distribution column in every \
         unique key and foreign key, or, when a step of \"What must change first\" is done, \
         strike its line from KNOWN_EXCEPTIONS and the plan's text with it"
    );
}

/// The rules catch what they are for: on a scratch copy of today's schema, a unique index and
/// a unique constraint without the distribution column, a foreign key that does not pair the
/// distribution columns, a reference table referencing a distributed one and a table the plan
/// does not place are each reported; and a step of the plan taken (bid_keys created) strikes
/// its exception, so the list no longer matches.
#[test]
fn the_rules_catch_new_violations_and_fixed_exceptions() {
    let db = migrated("schema_rules_scratch");
    common::psql(
        &db,
        "CREATE UNIQUE INDEX bids_id_unique ON bids (id); \
         ALTER TABLE auctions ADD CONSTRAINT auctions_title_key UNIQUE (title); \
         ALTER TABLE bids ADD CONSTRAINT bids_id_fkey FOREIGN KEY (id) REFERENCES auctions (id) \
             NOT VALID; \
         ALTER TABLE gavel_instance ADD COLUMN auction_id bigint \
             CONSTRAINT gavel_instance_auction_fkey REFERENCES auctions (id); \
         CREATE TABLE gavel_scratch (id bigint PRIMARY KEY); \
         CREATE TABLE bid_keys ( \
             auction_id bigint NOT NULL, caller_id bigint NOT NULL, key text NOT NULL, \
             PRIMARY KEY (auction_id, caller_id, key))",
    );
    let found = violations(&read_catalog(&db));
    let mut want = expected(&[
        "auctions: unique index auctions_title_key (title) lacks id",
        "bids: unique index bids_id_unique (id) lacks auction_id",
        "bids: foreign key bids_id_fkey -> auctions: (id) -> (id) does not pair auction_id \
         with id",
        "gavel_instance: foreign key gavel_instance_auction_fkey -> auctions: a reference \
         table may not reference a table distributed by id",
        "gavel_scratch: not placed by the plan",
    ]);
    want.extend(
        KNOWN_EXCEPTIONS
            .iter()
            .filter(|e| !e.starts_with("bid_keys:"))
            .map(|e| e.to_string()),
    );
    want.sort();
    assert_eq!(found, want);
    assert_ne!(found, expected(KNOWN_EXCEPTIONS));
}

/// The section of ARCHITECTURE.md that holds the plan.
fn plan_text() -> String {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/ARCHITECTURE.md"))
        .expect("ARCHITECTURE.md");
    let start = doc
        .find("\n## Past one PostgreSQL: a Citus plan")
        .expect("ARCHITECTURE.md has the section \"Past one PostgreSQL: a Citus plan\"");
    let rest = &doc[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |e| e + 3);
    rest[..end].to_owned()
}

/// The arguments of every call of `function` in `text`: positional ones first, named ones as
/// `name => value`, quotes removed.
fn calls(text: &str, function: &str) -> Vec<(Vec<String>, BTreeMap<String, String>)> {
    let mut found = Vec::new();
    for (at, _) in text.match_indices(&format!("{function}(")) {
        let mut args = vec![String::new()];
        let (mut depth, mut quoted) = (0, false);
        for c in text[at + function.len() + 1..].chars() {
            match c {
                '\'' => quoted = !quoted,
                '(' if !quoted => depth += 1,
                ')' if !quoted && depth == 0 => break,
                ')' if !quoted => depth -= 1,
                ',' if !quoted && depth == 0 => {
                    args.push(String::new());
                    continue;
                }
                _ => {}
            }
            if c != '\'' {
                args.last_mut().unwrap().push(c);
            }
        }
        let (mut positional, mut named) = (Vec::new(), BTreeMap::new());
        for arg in args {
            let arg = arg.split_whitespace().collect::<Vec<_>>().join(" ");
            match arg.split_once("=>") {
                Some((name, value)) => {
                    named.insert(name.trim().to_owned(), value.trim().to_owned());
                }
                None => positional.push(arg),
            }
        }
        // A mention in prose (`f()`) is not a call.
        if positional.first().is_some_and(|a| !a.is_empty()) {
            found.push((positional, named));
        }
    }
    found
}

#[test]
fn the_plan_in_architecture_md_places_the_same_tables() {
    let text = plan_text();
    let colocation = |named: &BTreeMap<String, String>| match named.get("colocate_with") {
        Some(none) if none == "none" => None,
        Some(table) => Some(table.clone()),
        None => Some("(implicit)".to_owned()),
    };
    let mut distributed = BTreeSet::new();
    for (args, named) in calls(&text, "create_distributed_table") {
        let column = args.get(1).cloned().unwrap_or_default();
        distributed.insert((args[0].clone(), column, colocation(&named)));
    }
    let mut references = BTreeSet::new();
    for (args, _) in calls(&text, "create_reference_table") {
        references.insert(args[0].clone());
    }
    let mut functions = BTreeSet::new();
    for (args, named) in calls(&text, "create_distributed_function") {
        let name = args[0].split('(').next().unwrap().trim().to_owned();
        functions.insert((name, colocation(&named)));
    }

    let mut planned = BTreeSet::new();
    let mut planned_references = BTreeSet::new();
    for (table, placement) in PLAN {
        match placement {
            Distributed {
                column,
                colocate_with,
            } => {
                planned.insert((
                    table.to_string(),
                    column.to_string(),
                    colocate_with.map(str::to_owned),
                ));
            }
            Reference => {
                planned_references.insert(table.to_string());
            }
            CoordinatorLocal => {
                assert!(
                    names(&text, table),
                    "the plan does not say where {table} goes"
                );
                assert!(!distributed.iter().any(|(t, _, _)| t == table));
                assert!(!references.contains(*table));
            }
        }
    }
    assert_eq!(distributed, planned, "create_distributed_table calls");
    assert_eq!(
        references, planned_references,
        "create_reference_table calls"
    );
    let on_workers: BTreeSet<_> = ON_WORKERS
        .iter()
        .map(|(f, with)| (f.to_string(), Some(with.to_string())))
        .collect();
    assert_eq!(functions, on_workers, "create_distributed_function calls");
}

#[test]
fn comments_are_not_names_and_names_are_whole_words() {
    let body = without_comments(
        "SELECT 1 -- FROM idempotency_keys\n/* bids */ FROM auctions_x, 'bids' x, bid_keys_pkey",
    );
    assert!(!names(&body, "idempotency_keys"));
    assert!(!names(&body, "auctions"));
    assert!(!names(&body, "bid_keys"));
    assert!(names(&body, "bids"));
}
