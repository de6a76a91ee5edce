//! Start-up, migrations and shutdown of the real binary.

mod common;

use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

fn sigterm(server: &mut Server) -> std::process::ExitStatus {
    // SAFETY: kill only sends a signal to the child we started.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "server did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn two_servers_starting_at_once_migrate_once() {
    let db = test_db_name("race");
    let launched: Vec<Launched> = (0..2).map(|_| launch(&db, &[]).unwrap()).collect();
    let mut servers: Vec<Server> = launched
        .into_iter()
        .map(|l| l.wait_listening().unwrap())
        .collect();
    for s in &servers {
        assert_healthy(s.addr);
        let a = open_auction(s.addr, 1, "1", "1");
        assert_eq!(
            get(s.addr, &format!("/api/auctions/{}", a["id"])).status,
            200
        );
    }
    assert_eq!(
        psql(&db, "SELECT count(*) FROM gavel_migrations"),
        gavel::storage::migrate::MIGRATIONS.len().to_string()
    );
    for s in &mut servers {
        assert!(sigterm(s).success());
    }
}

/// The server's own connections to `db` (the listening one apart), once they stop changing.
fn worker_connections(db: &str, expected: usize) -> usize {
    let sql = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}' AND application_name = 'gavel'"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n: usize = psql(db, &sql).parse().unwrap();
        if n == expected || Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A restart on a database migrated long ago keeps the connections it opened before checking
/// the schema; one migrated within the last minute (by another server, perhaps still in
/// motion) opens them again after the check under the lock, and the first ones are closed. Both
/// serve bids and reads with the statements they prepared.
#[test]
fn a_settled_schema_keeps_the_first_connections_and_a_recent_one_reopens_them() {
    let db = test_db_name("settled");
    let mut first = spawn_server(&db, &[]);
    assert_eq!(first.listening["schema"], "prepared", "a new database");
    assert!(sigterm(&mut first).success());
    // Two workers, two connections each, and the key sweeper's.
    let expected = 2 * 2 + 1;
    for (applied, schema) in [
        ("now() - interval '2 minutes'", "settled"),
        ("now()", "prepared"),
    ] {
        psql(
            &db,
            &format!("UPDATE gavel_migrations SET applied_at = {applied}"),
        );
        let mut server = spawn_server(&db, &[]);
        assert_eq!(server.listening["schema"], schema, "{applied}");
        assert_healthy(server.addr);
        let id = started_auction(server.addr, "10.00", "1.00");
        let bid = post(
            server.addr,
            "/api/bids",
            &format!(r#"{{"auction_id":{id},"bidder_id":7,"amount":"10.00"}}"#),
        );
        assert_eq!(bid.status, 201, "{}", bid.json());
        assert_eq!(get(server.addr, &format!("/api/bids/{id}")).status, 200);
        assert_eq!(worker_connections(&db, expected), expected, "{applied}");
        assert!(sigterm(&mut server).success());
    }
}

#[test]
fn a_changed_migration_stops_the_start() {
    let db = test_db_name("changed");
    let mut first = spawn_server(&db, &[]);
    assert!(sigterm(&mut first).success());
    psql(
        &db,
        "UPDATE gavel_migrations SET checksum = 'tampered' WHERE version = 1",
    );
    let err = try_spawn_server(&db, &[]).err().expect("start must fail");
    assert!(err.contains("was changed after it was applied"), "{err}");
    assert!(err.contains("exit code Some(1)"), "{err}");
}

#[test]
fn unreachable_database_fails_the_start_fast() {
    let started = Instant::now();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gavel"));
    let out = cmd
        .env("GAVEL_LISTEN", "127.0.0.1:0")
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/gavel")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("start-up failed"));
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn bad_settings_exit_2_and_help_lists_every_setting() {
    let bin = env!("CARGO_BIN_EXE_gavel");
    let out = Command::new(bin)
        .args(["--workers", "zero"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let help = Command::new(bin).arg("--help").output().unwrap();
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for var in [
        "GAVEL_LISTEN",
        "DATABASE_URL",
        "REDIS_URL",
        "GAVEL_WORKERS",
        "RUST_LOG",
    ] {
        assert!(text.contains(var), "{var}");
    }
}

#[test]
fn sigterm_drains_and_exits_zero() {
    let db = test_db_name("term");
    let mut server = spawn_server(&db, &[]);
    let idle = connect(server.addr);
    assert_healthy(server.addr);
    let started = Instant::now();
    let status = sigterm(&mut server);
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "an idle connection does not hold shutdown"
    );
    drop(idle);
}

#[test]
fn a_port_another_server_serves_is_refused_unless_joining_is_asked() {
    let db = test_db_name("port_taken");
    let first = spawn_server(&db, &[]);
    let taken = first.addr.to_string();
    let refused = common::launch(&db, &[("GAVEL_LISTEN", taken.as_str())])
        .unwrap()
        .wait_listening()
        .err()
        .expect("a second server on a served port must not start");
    assert!(refused.contains("exit code Some(1)"), "{refused}");
    assert!(
        refused.contains("already served by another process"),
        "{refused}"
    );
    assert!(refused.contains("GAVEL_JOIN_PORT"), "{refused}");
    let joined = spawn_server(
        &db,
        &[
            ("GAVEL_LISTEN", taken.as_str()),
            ("GAVEL_JOIN_PORT", "true"),
        ],
    );
    assert_eq!(joined.addr, first.addr);
    assert_healthy(first.addr);
}

#[test]
fn redis_unreachable_at_start_up_is_said_in_the_log() {
    let db = test_db_name("redis_down");
    // Nothing listens on port 1 of loopback.
    let server = spawn_server(&db, &[("REDIS_URL", "redis://127.0.0.1:1/0")]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Ok(line) = server.log.recv_timeout(left) else {
            break;
        };
        if line.contains("redis unreachable") {
            assert!(line.contains("127.0.0.1:1"), "{line}");
            assert_healthy(server.addr);
            return;
        }
        seen.push(line);
    }
    panic!("no warning about Redis; log:\n{}", seen.join("\n"));
}
