//! Start-up, migrations and shutdown of the real binary.

mod common;

use common::*;
use std::io::Write;
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

/// A database or Redis URL that cannot be used is a bad setting (exit 2) with the reason; a
/// host list in libpq's form is a good one.
#[test]
fn unusable_urls_are_bad_settings_and_a_host_list_is_good() {
    for (var, url) in [
        ("DATABASE_URL", "mysql://h/db"),
        ("DATABASE_URL", "postgres://h1,,h2/db"),
        ("DATABASE_URL", "postgres://h1:5432,h2:x/db"),
        (
            "DATABASE_URL",
            "postgres://h/db?target_session_attrs=standby",
        ),
        ("REDIS_URL", "redis://h1,h2"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_gavel"))
            .env("GAVEL_LISTEN", "127.0.0.1:0")
            .env("GAVEL_ADMIN_LISTEN", "off")
            .env(var, url)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}={url}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("{var} is not usable")), "{err}");
    }
    let db = test_db_name("hostlist");
    let base = pg_base_url();
    let rest = base.split_once("://").unwrap().1;
    let (userinfo, server) = match rest.rsplit_once('@') {
        Some((user, server)) => (format!("{user}@"), server),
        None => (String::new(), rest),
    };
    // A refused host first: the server settles on the second, which takes writes.
    let url =
        format!("postgres://{userinfo}127.0.0.1:1,{server}/{db}?target_session_attrs=read-write");
    let server = spawn_server(&db, &[("DATABASE_URL", &url)]);
    assert_healthy(server.addr);
}

fn gavel(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gavel"));
    cmd.args(args)
        .env_remove("GAVEL_WORKERS")
        .env_remove("GAVEL_AUTH_SECRET");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn bad_settings_exit_2_and_help_lists_every_setting() {
    let out = gavel(&["--workers", "zero"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--workers"), "{err}");
    for args in [&["--help"][..], &["-h"], &["help"]] {
        let help = gavel(args, &[]);
        assert!(help.status.success(), "{args:?}");
        let text = stdout(&help);
        for needle in [
            "GAVEL_LISTEN",
            "DATABASE_URL",
            "REDIS_URL",
            "GAVEL_WORKERS",
            "RUST_LOG",
            "token",
            "migrate",
        ] {
            assert!(text.contains(needle), "{args:?} lacks {needle}");
        }
    }
    // The help never shows a secret or a URL's password taken from the environment.
    let help = gavel(
        &["--help"],
        &[
            ("DATABASE_URL", "postgres://u:hunter2@db/gavel"),
            ("GAVEL_AUTH_SECRET", "hunter2hunter2hunter2hunter2hunter2"),
        ],
    );
    assert!(!stdout(&help).contains("hunter2"));
}

#[test]
fn version_names_the_commit_and_the_profile() {
    for flag in ["--version", "-V"] {
        let out = gavel(&[flag], &[]);
        assert!(out.status.success(), "{flag}");
        let text = stdout(&out);
        assert!(text.starts_with("gavel "), "{text}");
        assert!(text.contains(env!("CARGO_PKG_VERSION")), "{text}");
        assert!(text.contains("commit "), "{text}");
        assert!(
            text.contains("debug build") || text.contains("release build"),
            "{text}"
        );
    }
}

#[test]
fn an_unknown_flag_is_named_and_subcommands_answer_help() {
    let out = gavel(&["--nope"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--nope") && !err.contains("needs a value"),
        "{err}"
    );
    for sub in ["token", "migrate"] {
        let out = gavel(&[sub, "--help"], &[]);
        assert!(out.status.success(), "{sub} --help");
        assert!(
            stdout(&out).contains(&format!("Usage: gavel {sub}")),
            "{sub}"
        );
    }
}

/// A flag wins over its variable, and an empty variable counts as unset: the "listening" line
/// says how many workers were started.
#[test]
fn a_flag_beats_its_variable_and_an_empty_variable_is_unset() {
    let db = test_db_name("flags");
    let workers = |args: &[&str], env: &[(&str, &str)]| -> u64 {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gavel"));
        cmd.args(args)
            .env("GAVEL_LISTEN", "127.0.0.1:0")
            .env("GAVEL_ADMIN_LISTEN", "off")
            .env("DATABASE_URL", format!("{}/{db}", pg_base_url()))
            .env("REDIS_URL", "off")
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let lines = std::io::BufRead::lines(std::io::BufReader::new(child.stderr.take().unwrap()));
        let mut found = None;
        for line in lines.map_while(Result::ok) {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if v["msg"] == "listening" {
                found = v["workers"].as_str().and_then(|w| w.parse().ok());
                break;
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        found.expect("a listening line")
    };
    assert_eq!(workers(&["--workers", "1"], &[("GAVEL_WORKERS", "3")]), 1);
    assert_eq!(workers(&[], &[("GAVEL_WORKERS", "3")]), 3);
    let cpus = workers(&[], &[]);
    assert_eq!(workers(&[], &[("GAVEL_WORKERS", "")]), cpus);
}

/// `gavel migrate` makes and migrates a database, says so, and exits; a second run changes nothing.
#[test]
fn migrate_prepares_the_database_and_exits() {
    let db = test_db_name("migrate");
    let url = format!("{}/{db}", pg_base_url());
    for _ in 0..2 {
        let out = gavel(&["migrate", "--database-url", &url], &[]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stderr).contains("schema up to date"));
        assert_eq!(
            psql(&db, "SELECT count(*) FROM gavel_migrations"),
            gavel::storage::migrate::MIGRATIONS.len().to_string()
        );
    }
    let out = gavel(&["migrate", "--database-url", "mysql://nope"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let out = gavel(
        &[
            "migrate",
            "--database-url",
            "postgres://postgres@127.0.0.1:1/x",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
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

/// With a drain notice, SIGTERM first turns `/ready` to 503 while every other request, on a
/// kept-alive connection and on new ones, is still served; then the server stops as before.
#[test]
fn sigterm_with_a_notice_answers_ready_503_while_still_serving() {
    let db = test_db_name("notice");
    let mut server = spawn_server(&db, &[("GAVEL_DRAIN_NOTICE_MS", "1500")]);
    let id = started_auction(server.addr, "10.00", "1.00");
    assert_eq!(get(server.addr, "/ready").status, 200);
    let mut kept = connect(server.addr);
    let started = Instant::now();
    // SAFETY: kill only sends a signal to the child we started.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let ready = get(server.addr, "/ready");
        if ready.status == 503 {
            assert_eq!(ready.json()["status"], "unavailable");
            assert_eq!(ready.json()["postgres"], "up");
            assert!(ready.header("retry-after").is_some());
            break;
        }
        assert!(Instant::now() < deadline, "/ready turned 503 at once");
        std::thread::sleep(Duration::from_millis(10));
    }
    let bid = post(
        server.addr,
        "/api/bids",
        &format!(r#"{{"auction_id":{id},"bidder_id":7,"amount":"10.00"}}"#),
    );
    assert_eq!(bid.status, 201, "a new connection is still served");
    kept.write_all(format!("GET /api/auctions/{id} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    assert_eq!(
        read_reply(&mut kept).unwrap().status,
        200,
        "a kept-alive one too"
    );
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "still within the notice"
    );
    drop(kept);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the server stopped"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "the notice was given in full"
    );
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
