//! Schema migrations: `migrations/NNNN_name.sql`, applied at start-up in order, each once, with a checksum.

use super::pg::{Client, PgError};
use sha2::{Digest, Sha256};
use std::fmt;

pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, in order. A unit test checks this list against the `migrations/` folder.
pub static MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "schema",
        sql: include_str!("../../migrations/0001_schema.sql"),
    },
    Migration {
        version: 2,
        name: "bid_state",
        sql: include_str!("../../migrations/0002_bid_state.sql"),
    },
    Migration {
        version: 3,
        name: "bid_batches",
        sql: include_str!("../../migrations/0003_bid_batches.sql"),
    },
    Migration {
        version: 4,
        name: "idempotency",
        sql: include_str!("../../migrations/0004_idempotency.sql"),
    },
    Migration {
        version: 5,
        name: "set_based_bids",
        sql: include_str!("../../migrations/0005_set_based_bids.sql"),
    },
    Migration {
        version: 6,
        name: "live_updates",
        sql: include_str!("../../migrations/0006_live_updates.sql"),
    },
];

/// Serializes migrations across every server starting at once against the same database.
const MIGRATION_LOCK_KEY: i64 = 0x6761_7665_6c00;

#[derive(Debug)]
pub enum MigrateError {
    /// An applied migration's file changed since: the schema no longer matches the code.
    Changed {
        version: i32,
        name: String,
    },
    Db(PgError),
}

impl fmt::Display for MigrateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MigrateError::Changed { version, name } => write!(
                f,
                "migration {version:04}_{name}.sql was changed after it was applied; \
                 restore the applied file and add a new migration instead"
            ),
            MigrateError::Db(e) => write!(f, "migration failed: {e}"),
        }
    }
}

impl From<PgError> for MigrateError {
    fn from(e: PgError) -> Self {
        MigrateError::Db(e)
    }
}

pub fn checksum(sql: &str) -> String {
    let digest = Sha256::digest(sql.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// How long after a migration committed a start-up still treats the schema as in motion. Start-up
/// prepares its statements while it checks the schema; a migration another server committed in
/// between would leave them prepared against the old one. That window lasts at most a connection
/// attempt (seconds), so a minute covers it with room, and a database migrated longer ago than
/// that — every ordinary restart — takes the one-round-trip path.
pub const SETTLED_AFTER_SECS: u64 = 60;

/// SQLSTATE for "relation does not exist": a database that has never been migrated.
const UNDEFINED_TABLE: &str = "42P01";

/// What one round trip learns about the schema, without the migration lock.
#[derive(Debug, PartialEq)]
pub enum Schema {
    /// Every migration this binary knows is applied, unchanged, and none in the last
    /// [`SETTLED_AFTER_SECS`]: nothing to do, and statements prepared now are prepared against
    /// the schema that stays. Carries the database's instance id.
    Settled { instance: String },
    /// Anything else (missing, changed, recent or never migrated): take the lock and look again.
    Unsettled,
}

/// Reads the applied migrations and the instance id in one statement.
pub fn check(client: &Client) -> Result<Schema, PgError> {
    let sql = format!(
        "SELECT m.version::text, m.checksum, \
                (m.applied_at < clock_timestamp() - interval '{SETTLED_AFTER_SECS} seconds')::text, \
                (SELECT id FROM gavel_instance LIMIT 1) \
         FROM gavel_migrations m"
    );
    let rows = match client.simple_query(&sql) {
        Ok(rows) => rows,
        Err(PgError::Db { ref code, .. }) if code == UNDEFINED_TABLE => {
            return Ok(Schema::Unsettled)
        }
        Err(e) => return Err(e),
    };
    Ok(settled(&rows))
}

/// The decision of [`check`] on its rows: (version, checksum, old enough, instance id).
fn settled(rows: &[Vec<Option<String>>]) -> Schema {
    let cell = |row: &Vec<Option<String>>, i: usize| row.get(i).cloned().flatten();
    if rows.iter().any(|r| cell(r, 2).as_deref() != Some("true")) {
        return Schema::Unsettled;
    }
    let all_applied = MIGRATIONS.iter().all(|m| {
        rows.iter().any(|r| {
            cell(r, 0).as_deref() == Some(&*m.version.to_string())
                && cell(r, 1).as_deref() == Some(&*checksum(m.sql))
        })
    });
    match rows.first().and_then(|r| cell(r, 3)) {
        Some(instance) if all_applied => Schema::Settled { instance },
        _ => Schema::Unsettled,
    }
}

/// Applies what is missing; returns how many migrations it applied.
pub fn run(client: &Client) -> Result<usize, MigrateError> {
    run_through(client, i32::MAX)
}

/// Applies what is missing up to version `last`: what a Gavel that knew only those migrations
/// did. The upgrade tests make a database so, then let the full list upgrade it.
pub fn run_through(client: &Client, last: i32) -> Result<usize, MigrateError> {
    client.simple_query(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))?;
    let result = apply_missing(client, last);
    let unlock = client.simple_query(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"));
    let applied = result?;
    unlock?;
    Ok(applied)
}

fn apply_missing(client: &Client, last: i32) -> Result<usize, MigrateError> {
    client.simple_query(
        "CREATE TABLE IF NOT EXISTS gavel_migrations (
             version    integer PRIMARY KEY,
             name       text NOT NULL,
             checksum   text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now())",
    )?;
    let rows = client.simple_query("SELECT version::text, checksum FROM gavel_migrations")?;
    let applied: Vec<(i32, String)> = rows
        .into_iter()
        .filter_map(|r| {
            let version = r.first()?.as_deref()?.parse().ok()?;
            Some((version, r.get(1)?.clone()?))
        })
        .collect();
    let mut count = 0;
    for m in MIGRATIONS.iter().take_while(|m| m.version <= last) {
        let sum = checksum(m.sql);
        match applied.iter().find(|(v, _)| *v == m.version) {
            Some((_, stored)) if *stored == sum => continue,
            Some(_) => {
                return Err(MigrateError::Changed {
                    version: m.version,
                    name: m.name.to_owned(),
                })
            }
            None => {
                apply_one(client, m, &sum)?;
                count += 1;
            }
        }
    }
    Ok(count)
}

fn apply_one(client: &Client, m: &Migration, sum: &str) -> Result<(), MigrateError> {
    // Name and checksum come from this binary (a word and hex digits), never from input. The
    // time is taken at the insert, just before the commit, not at the transaction's start: a
    // long migration still counts as recent when it lands (see `SETTLED_AFTER_SECS`).
    let script = format!(
        "BEGIN;\n{}\n;INSERT INTO gavel_migrations (version, name, checksum, applied_at) \
         VALUES ({}, '{}', '{}', clock_timestamp());\nCOMMIT;",
        m.sql, m.version, m.name, sum
    );
    if let Err(e) = client.simple_query(&script) {
        let _ = client.simple_query("ROLLBACK");
        return Err(e.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_matches_the_folder() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        let listed: Vec<String> = MIGRATIONS
            .iter()
            .map(|m| format!("{:04}_{}.sql", m.version, m.name))
            .collect();
        assert_eq!(files, listed);
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1, "versions are consecutive from 1");
            assert!(m.name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        }
    }

    fn row(version: i32, sum: &str, old: bool) -> Vec<Option<String>> {
        vec![
            Some(version.to_string()),
            Some(sum.to_owned()),
            Some(old.to_string()),
            Some("inst".to_owned()),
        ]
    }

    fn all(old: bool) -> Vec<Vec<Option<String>>> {
        MIGRATIONS
            .iter()
            .map(|m| row(m.version, &checksum(m.sql), old))
            .collect()
    }

    #[test]
    fn settled_only_when_every_migration_is_applied_unchanged_and_old() {
        let settled = Schema::Settled {
            instance: "inst".into(),
        };
        assert_eq!(super::settled(&all(true)), settled);
        assert_eq!(super::settled(&all(true)[1..]), Schema::Unsettled);
        let mut recent = all(true);
        recent.last_mut().unwrap()[2] = Some("false".into());
        assert_eq!(super::settled(&recent), Schema::Unsettled);
        let mut changed = all(true);
        changed[0][1] = Some("0".repeat(64));
        assert_eq!(super::settled(&changed), Schema::Unsettled);
        // A newer binary's extra migration, long applied, changes nothing for this one.
        let mut newer = all(true);
        newer.push(row(MIGRATIONS.len() as i32 + 1, "x", true));
        assert_eq!(super::settled(&newer), settled);
        let mut no_instance = all(true);
        no_instance.iter_mut().for_each(|r| r[3] = None);
        assert_eq!(super::settled(&no_instance), Schema::Unsettled);
        assert_eq!(super::settled(&[]), Schema::Unsettled);
    }

    #[test]
    fn checksum_is_stable_hex() {
        assert_eq!(checksum("").len(), 64);
        assert_ne!(checksum("a"), checksum("b"));
    }
}
