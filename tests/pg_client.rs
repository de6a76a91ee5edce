//! The PostgreSQL client against a real server: 127.0.0.1:5432 (trust auth, user postgres), or
//! `GAVEL_TEST_PG_URL`. The authentication test starts a private cluster with the binaries in
//! /usr/lib/postgresql/15/bin (or `GAVEL_TEST_PG_BIN`) and needs to run as root.

mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gavel::storage::pg::limits::LIMITS;
use gavel::storage::pg::{Client, Config, Connection, PgError, StatementDef, Statements, Type};
use rust_decimal::Decimal;

static ECHO: StatementDef = StatementDef {
    name: "t_echo",
    sql: "SELECT $1::int8 + 1",
    param_types: &[Type::INT8],
};

static TYPES: StatementDef = StatementDef {
    name: "t_types",
    sql: "SELECT $1::int8, $2::text, $3::numeric, $4::timestamptz, $5::bool, $6::int8",
    param_types: &[
        Type::INT8,
        Type::TEXT,
        Type::NUMERIC,
        Type::TIMESTAMPTZ,
        Type::BOOL,
        Type::INT8,
    ],
};

static DIVIDE: StatementDef = StatementDef {
    name: "t_divide",
    sql: "SELECT 100 / $1::int8",
    param_types: &[Type::INT8],
};

static SLEEP: StatementDef = StatementDef {
    name: "t_sleep",
    sql: "SELECT pg_sleep($1::float8)::text",
    param_types: &[Type::FLOAT8],
};

static STATEMENTS: Statements = &[&ECHO, &TYPES, &DIVIDE, &SLEEP];

fn url() -> String {
    std::env::var("GAVEL_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn cfg() -> Config {
    Config::from_url(&url()).expect("test url")
}

fn connect() -> Arc<Connection> {
    Connection::connect(&cfg(), STATEMENTS, 0).expect("connect")
}

fn echo(conn: &Connection, v: i64) -> Result<i64, PgError> {
    conn.query(&ECHO, &[&v])?[0].get::<i64>(0)
}

#[test]
fn round_trips_typed_params_and_nulls() {
    common::coroutine(|| {
        let conn = connect();
        let price = Decimal::from_str("12345.6789").unwrap();
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros();
        let at = UNIX_EPOCH + Duration::from_micros(micros as u64);
        let none: Option<i64> = None;
        let rows = conn
            .query(
                &TYPES,
                &[&42i64, &"lot #7 — ünïcode", &price, &at, &true, &none],
            )
            .unwrap();
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!(r.len(), 6);
        assert_eq!(r.get::<i64>(0).unwrap(), 42);
        assert_eq!(r.get::<&str>(1).unwrap(), "lot #7 — ünïcode");
        assert_eq!(r.get::<Decimal>(2).unwrap(), price);
        assert_eq!(r.get::<SystemTime>(3).unwrap(), at);
        assert!(r.get::<bool>(4).unwrap());
        assert_eq!(r.get::<Option<i64>>(5).unwrap(), None);
        assert!(
            matches!(r.get::<i64>(5), Err(PgError::Protocol(_))),
            "NULL into i64"
        );
        assert!(
            matches!(r.get::<i32>(0), Err(PgError::Protocol(_))),
            "int8 into i32"
        );
        let wrong = conn.query(&ECHO, &[&"not a number"]).unwrap_err();
        assert!(matches!(wrong, PgError::Protocol(_)), "{wrong}");
        let missing = conn.query(&ECHO, &[]).unwrap_err();
        assert!(matches!(missing, PgError::Protocol(_)), "{missing}");
        static UNPREPARED: StatementDef = StatementDef {
            name: "t_unprepared",
            sql: "SELECT 1",
            param_types: &[],
        };
        assert!(matches!(
            conn.query(&UNPREPARED, &[]),
            Err(PgError::Protocol(_))
        ));
        assert_eq!(conn.in_flight(), 0);
    });
}

#[test]
fn simple_query_returns_text_rows_of_every_statement() {
    common::coroutine(|| {
        let conn = connect();
        let rows = conn
            .simple_query(
                "CREATE TEMP TABLE lots (id int8, name text);
                 INSERT INTO lots VALUES (1, 'vase'), (2, NULL);
                 SELECT id, name FROM lots ORDER BY id;
                 SELECT 'x';",
            )
            .unwrap();
        let expected = vec![
            vec![Some("1".to_string()), Some("vase".to_string())],
            vec![Some("2".to_string()), None],
            vec![Some("x".to_string())],
        ];
        assert_eq!(rows, expected);
        let e = conn
            .simple_query("SELECT * FROM no_such_table")
            .unwrap_err();
        assert_eq!(e.code(), Some("42P01"), "{e}");
        assert!(
            !e.to_string().contains("SELECT"),
            "no SQL text in errors: {e}"
        );
        assert!(conn.simple_query("").unwrap().is_empty());
    });
}

/// Requests pipelined behind a transaction left open would run inside it: the connection is
/// reset instead (rolling the transaction back) and the client reconnects.
#[test]
fn transaction_left_open_resets_the_connection() {
    common::coroutine(|| {
        let conn = connect();
        let e = conn.simple_query("BEGIN; SELECT 1").unwrap_err();
        assert!(matches!(e, PgError::Unavailable(_)), "{e}");
        assert!(conn.is_broken());
        let conn = connect();
        let e = conn
            .simple_query("BEGIN; SELECT 1 / 0; COMMIT")
            .unwrap_err();
        assert_eq!(e.code(), Some("22012"), "{e}");
        assert!(conn.is_broken());
        let committed = connect().simple_query("BEGIN; SELECT 1; COMMIT").unwrap();
        assert_eq!(committed, vec![vec![Some("1".to_string())]]);
    });
}

#[test]
fn five_hundred_pipelined_queries_from_fifty_coroutines() {
    common::coroutine(|| {
        let conn = connect();
        let deepest = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..50i64)
            .map(|c| {
                let (conn, deepest) = (conn.clone(), deepest.clone());
                may::go!(move || {
                    for i in 0..10i64 {
                        let v = c * 1000 + i;
                        deepest.fetch_max(conn.in_flight(), Ordering::Relaxed);
                        assert_eq!(echo(&conn, v).unwrap(), v + 1);
                    }
                })
            })
            .collect();
        for h in handles {
            if let Err(p) = h.join() {
                std::panic::resume_unwind(p);
            }
        }
        assert_eq!(conn.in_flight(), 0);
        assert!(
            deepest.load(Ordering::Relaxed) > 1,
            "requests were never pipelined"
        );
        // 500 queries plus the preparation batch went out in fewer writes than requests.
        let writes = conn.batches_written();
        assert!(writes < 500, "{writes} writes for 500 requests");
    });
}

/// may resumes a coroutine on the worker that wakes it (or that owns the socket it waited on):
/// connecting, replies and timeouts all leave a caller on the connection's worker.
#[test]
fn callers_on_the_connection_worker_stay_there() {
    common::coroutine(|| {
        for worker in 0..2 {
            let on_worker = may::coroutine::Builder::new().id(worker);
            let caller = may::go!(on_worker, move || {
                let home = std::thread::current().id();
                let at_home = |after: &str| {
                    let here = std::thread::current().id();
                    assert_eq!(here, home, "{after} moved the caller off worker {worker}");
                };
                let conn = Connection::connect(&cfg(), STATEMENTS, worker).unwrap();
                at_home("connect");
                for v in 0..20 {
                    assert_eq!(echo(&conn, v).unwrap(), v + 1);
                    at_home("a reply");
                }
                let mut impatient = cfg();
                impatient.query_timeout = Duration::from_millis(50);
                let slow = Connection::connect(&impatient, STATEMENTS, worker).unwrap();
                assert!(matches!(
                    slow.query(&SLEEP, &[&0.2f64]),
                    Err(PgError::Timeout)
                ));
                at_home("a timeout");
            })
            .unwrap();
            if let Err(p) = caller.join() {
                std::panic::resume_unwind(p);
            }
        }
    });
}

#[test]
fn sql_error_mid_pipeline_fails_only_its_own_request() {
    common::coroutine(|| {
        let conn = connect();
        let handles: Vec<_> = (0..40i64)
            .map(|i| {
                let conn = conn.clone();
                may::go!(move || {
                    let divisor = if i % 4 == 0 { 0 } else { i };
                    (i, conn.query(&DIVIDE, &[&divisor]))
                })
            })
            .collect();
        for h in handles {
            let (i, result) = h.join().unwrap();
            match result {
                Ok(rows) if i % 4 != 0 => assert_eq!(rows[0].get::<i64>(0).unwrap(), 100 / i),
                Err(e) if i % 4 == 0 => assert_eq!(e.code(), Some("22012"), "{e}"),
                other => panic!("request {i}: unexpected {:?}", other.map(|r| r.len())),
            }
        }
        assert_eq!(echo(&conn, 1).unwrap(), 2);
    });
}

#[test]
fn statement_timeout_cancels_on_the_server() {
    common::coroutine(|| {
        let mut cfg = cfg();
        cfg.statement_timeout = Duration::from_millis(200);
        let conn = Connection::connect(&cfg, STATEMENTS, 1).unwrap();
        let t = Instant::now();
        let e = conn.simple_query("SELECT pg_sleep(5)").unwrap_err();
        assert_eq!(e.code(), Some("57014"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        assert_eq!(echo(&conn, 5).unwrap(), 6, "connection still usable");
    });
}

#[test]
fn timed_out_request_does_not_shift_later_replies() {
    common::coroutine(|| {
        let mut cfg = cfg();
        cfg.query_timeout = Duration::from_millis(150);
        let conn = Connection::connect(&cfg, STATEMENTS, 0).unwrap();
        let t = Instant::now();
        assert!(matches!(
            conn.query(&SLEEP, &[&0.4f64]),
            Err(PgError::Timeout)
        ));
        assert!(
            t.elapsed() < Duration::from_millis(350),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(conn.in_flight(), 1, "its reply is still owed");
        // Once the abandoned reply has arrived (and been discarded), each request gets its own.
        may::coroutine::sleep(Duration::from_millis(400));
        for v in [70, 80] {
            assert_eq!(echo(&conn, v).unwrap(), v + 1);
        }
        assert_eq!(conn.in_flight(), 0);
    });
}

/// Polls from a coroutine for up to 3 s.
fn wait_for(ok: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while !ok() {
        assert!(Instant::now() < deadline, "condition not reached in 3 s");
        may::coroutine::sleep(Duration::from_millis(2));
    }
}

/// An advisory lock held by another session parks the first request on the server, so the
/// pipeline fills deterministically behind it.
#[test]
fn full_pipeline_answers_busy_at_once() {
    common::coroutine(|| {
        let admin = connect();
        admin.simple_query("SELECT pg_advisory_lock(4242)").unwrap();
        let conn = connect();
        let blocker = conn.clone();
        let first = may::go!(move || {
            blocker
                .simple_query("SELECT pg_advisory_xact_lock(4242)")
                .map(|_| ())
        });
        wait_for(|| conn.in_flight() == 1);
        let waiters: Vec<_> = (1..LIMITS.max_in_flight as i64)
            .map(|v| {
                let conn = conn.clone();
                may::go!(move || echo(&conn, v).map(|r| r == v + 1))
            })
            .collect();
        wait_for(|| conn.in_flight() == LIMITS.max_in_flight);
        let t = Instant::now();
        assert!(matches!(conn.query(&ECHO, &[&1i64]), Err(PgError::Busy)));
        assert!(t.elapsed() < Duration::from_millis(50));
        admin
            .simple_query("SELECT pg_advisory_unlock(4242)")
            .unwrap();
        first.join().unwrap().unwrap();
        for w in waiters {
            assert!(w.join().unwrap().unwrap());
        }
        assert_eq!(conn.in_flight(), 0);
    });
}

#[test]
fn killed_backend_fails_fast_and_client_reconnects() {
    common::coroutine(|| {
        let admin = connect();
        // A bare connection: in-flight and later requests get Unavailable, promptly.
        let conn = connect();
        let pid = conn.backend_pid();
        let sleeper = conn.clone();
        let in_flight = may::go!(move || {
            let t = Instant::now();
            (sleeper.query(&SLEEP, &[&3.0f64]).map(|_| ()), t)
        });
        may::coroutine::sleep(Duration::from_millis(100));
        admin
            .simple_query(&format!("SELECT pg_terminate_backend({pid})"))
            .unwrap();
        let (result, started) = in_flight.join().unwrap();
        assert!(matches!(result, Err(PgError::Unavailable(_))), "{result:?}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        assert!(conn.is_broken());
        let t = Instant::now();
        assert!(matches!(echo(&conn, 1), Err(PgError::Unavailable(_))));
        assert!(t.elapsed() < Duration::from_millis(50));

        // A client: heals by itself, without anyone retrying.
        let client = Client::connect_now(cfg(), STATEMENTS, 1).unwrap();
        let pid = client.connection().unwrap().backend_pid();
        admin
            .simple_query(&format!("SELECT pg_terminate_backend({pid})"))
            .unwrap();
        // Every request is answered at once, Unavailable or not (reconnecting is often quicker
        // than the first retry), until the new connection answers.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let t = Instant::now();
            match client.query(&ECHO, &[&9i64]) {
                Ok(rows) if client.connection().unwrap().backend_pid() != pid => {
                    assert_eq!(rows[0].get::<i64>(0).unwrap(), 10);
                    break;
                }
                Ok(_) => {}
                Err(PgError::Unavailable(_)) => {}
                Err(e) => panic!("unexpected {e}"),
            }
            assert!(t.elapsed() < Duration::from_millis(200), "a request waited");
            assert!(Instant::now() < deadline, "no reconnection within 5 s");
            may::coroutine::sleep(Duration::from_millis(10));
        }
        assert!(client.is_up());
    });
}

/// A server that stops answering (here: its backend stopped with SIGSTOP) breaks the
/// connection once every caller has timed out, instead of filling the pipeline for ever.
#[test]
fn stalled_server_breaks_the_connection() {
    common::coroutine(|| {
        let mut cfg = cfg();
        cfg.query_timeout = Duration::from_millis(200);
        let conn = Connection::connect(&cfg, STATEMENTS, 0).unwrap();
        let stopped = Stopped::new(conn.backend_pid());
        assert!(matches!(echo(&conn, 1), Err(PgError::Timeout)));
        let limit = cfg.query_timeout
            + Duration::from_millis(LIMITS.stall_grace_millis + LIMITS.reader_poll_millis + 1_000);
        let t = Instant::now();
        while !conn.is_broken() {
            assert!(t.elapsed() < limit, "stall not detected");
            may::coroutine::sleep(Duration::from_millis(20));
        }
        assert!(matches!(echo(&conn, 1), Err(PgError::Unavailable(_))));
        drop(stopped);
    });
}

/// Keeps a backend stopped; continues it on drop, so a failed test leaves no frozen process.
struct Stopped(i32);

impl Stopped {
    fn new(pid: i32) -> Stopped {
        sh(Command::new("kill").args(["-STOP", &pid.to_string()]));
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.0.to_string()])
            .output();
    }
}

#[test]
fn dropping_a_connection_ends_its_session() {
    common::coroutine(|| {
        let admin = connect();
        let conn = connect();
        let sql = format!(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = {}",
            conn.backend_pid()
        );
        assert_eq!(
            admin.simple_query(&sql).unwrap()[0][0].as_deref(),
            Some("1")
        );
        drop(conn);
        wait_for(|| admin.simple_query(&sql).unwrap()[0][0].as_deref() == Some("0"));
    });
}

#[test]
fn unreachable_server_is_unavailable_within_the_connect_timeout() {
    common::coroutine(|| {
        let mut cfg = cfg();
        cfg.hosts = vec![("127.0.0.1".into(), 1)];
        cfg.connect_timeout = Duration::from_secs(1);
        let t = Instant::now();
        let e = Connection::connect(&cfg, STATEMENTS, 0).err().unwrap();
        assert!(matches!(e, PgError::Unavailable(_)), "{e}");
        assert!(
            t.elapsed() < Duration::from_millis(1500),
            "{:?}",
            t.elapsed()
        );

        let client = Client::new(cfg.clone(), STATEMENTS, 0);
        let t = Instant::now();
        assert!(matches!(
            client.query(&ECHO, &[&1i64]),
            Err(PgError::Unavailable(_))
        ));
        assert!(matches!(
            client.simple_query("SELECT 1"),
            Err(PgError::Unavailable(_))
        ));
        assert!(!client.is_up());
        assert!(t.elapsed() < Duration::from_millis(100));
        assert!(matches!(
            Client::connect_now(cfg, STATEMENTS, 0),
            Err(PgError::Unavailable(_))
        ));
    });
}

#[test]
fn new_client_connects_in_the_background() {
    common::coroutine(|| {
        let client = Client::new(cfg(), STATEMENTS, 1);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !client.is_up() {
            assert!(Instant::now() < deadline, "never connected");
            may::coroutine::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            client.query(&ECHO, &[&41i64]).unwrap()[0]
                .get::<i64>(0)
                .unwrap(),
            42
        );
    });
}

#[test]
fn bad_statement_fails_the_connect_with_its_name() {
    static BAD: StatementDef = StatementDef {
        name: "t_bad",
        sql: "SELECT * FROM no_such_table",
        param_types: &[],
    };
    static ONLY_BAD: Statements = &[&BAD];
    common::coroutine(|| {
        let e = Connection::connect(&cfg(), ONLY_BAD, 0).err().unwrap();
        assert_eq!(e.code(), Some("42P01"));
        assert!(e.to_string().contains("t_bad"), "{e}");
    });
}

/// A private cluster (for the authentication and host-list tests), stopped and removed on drop.
struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
}

impl Cluster {
    fn start(tag: &str) -> Cluster {
        let bin = PathBuf::from(
            std::env::var("GAVEL_TEST_PG_BIN")
                .unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into()),
        );
        let dir = std::env::temp_dir().join(format!("gavel-pg-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sock")).unwrap();
        sh(Command::new("chown").args(["-R", "postgres:"]).arg(&dir));
        let port = free_port();
        let cluster = Cluster { dir, bin, port };
        let data = cluster.path("data");
        cluster.pg(
            "initdb",
            &["-A", "trust", "-U", "postgres", "--no-sync", "-D", &data],
        );
        std::fs::write(
            cluster.dir.join("data/pg_hba.conf"),
            "local all all trust\n\
             host all md5user 127.0.0.1/32 md5\n\
             host all scramuser 127.0.0.1/32 scram-sha-256\n\
             host all pwuser 127.0.0.1/32 password\n\
             host all all 127.0.0.1/32 trust\n",
        )
        .unwrap();
        cluster.ctl_start();
        cluster
    }

    fn ctl_start(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.path("sock")
        );
        let (log, data) = (self.path("log"), self.path("data"));
        self.pg(
            "pg_ctl",
            &["-w", "-l", &log, "-o", &opts, "-D", &data, "start"],
        );
    }

    fn ctl_stop(&self) {
        self.pg(
            "pg_ctl",
            &["-w", "-m", "fast", "-D", &self.path("data"), "stop"],
        );
    }

    fn path(&self, rel: &str) -> String {
        self.dir.join(rel).to_string_lossy().into_owned()
    }

    /// Runs a server binary as the postgres OS user, as initdb and pg_ctl refuse to run as root.
    fn pg(&self, program: &str, args: &[&str]) {
        sh(Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join(program))
            .args(args));
    }

    /// Makes the server read-only by default, as a standby is, or writable again.
    fn set_read_only(&self, read_only: bool) {
        let admin = Connection::connect(&self.url("postgres", None), &[], 0).unwrap();
        let sql = if read_only {
            "ALTER SYSTEM SET default_transaction_read_only = on"
        } else {
            "ALTER SYSTEM RESET default_transaction_read_only"
        };
        admin.simple_query(sql).unwrap();
        admin.simple_query("SELECT pg_reload_conf()").unwrap();
    }

    fn url(&self, user: &str, password: Option<&str>) -> Config {
        let auth = match password {
            Some(p) => format!("{user}:{p}"),
            None => user.to_string(),
        };
        Config::from_url(&format!(
            "postgres://{auth}@127.0.0.1:{}/postgres?connect_timeout=3",
            self.port
        ))
        .unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let stop = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-w", "-m", "immediate", "stop", "-D"])
            .arg(self.dir.join("data"))
            .output();
        drop(stop);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn sh(cmd: &mut Command) {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn check_logins(cluster: Arc<Cluster>) {
    let admin = Connection::connect(&cluster.url("postgres", None), &[], 0).unwrap();
    admin
        .simple_query(
            "SET password_encryption = 'md5';
             CREATE ROLE md5user LOGIN PASSWORD 'md5-secret';
             SET password_encryption = 'scram-sha-256';
             CREATE ROLE scramuser LOGIN PASSWORD 'scram-secret';
             CREATE ROLE pwuser LOGIN PASSWORD 'pw-secret';",
        )
        .unwrap();
    let stored = admin
        .simple_query("SELECT rolpassword LIKE 'md5%' FROM pg_authid WHERE rolname = 'md5user'")
        .unwrap();
    assert_eq!(stored[0][0].as_deref(), Some("t"));
    for (user, password) in [
        ("md5user", "md5-secret"),
        ("scramuser", "scram-secret"),
        ("pwuser", "pw-secret"),
    ] {
        let conn = Connection::connect(&cluster.url(user, Some(password)), &[], 0)
            .unwrap_or_else(|e| panic!("{user}: {e}"));
        let me = conn.simple_query("SELECT current_user").unwrap();
        assert_eq!(me[0][0].as_deref(), Some(user));
        for wrong in [Some("wrong"), None] {
            match Connection::connect(&cluster.url(user, wrong), &[], 0) {
                Err(PgError::Auth(_)) => {}
                Err(e) => panic!("{user} with {wrong:?}: {e}"),
                Ok(_) => panic!("{user} with {wrong:?} got in"),
            }
        }
    }
}

fn wait_until(what: &str, ok: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !ok() {
        assert!(Instant::now() < deadline, "{what} within 5 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Trust, cleartext, MD5 and SCRAM against per-user pg_hba lines; then a server restart, which
/// a client rides out by reconnecting on its own.
#[test]
fn authentication_methods_and_server_restart() {
    let cluster = Arc::new(Cluster::start("auth"));
    let c = cluster.clone();
    common::coroutine(move || check_logins(c));

    let client = Arc::new(
        Client::connect_now(
            cluster.url("scramuser", Some("scram-secret")),
            STATEMENTS,
            1,
        )
        .unwrap(),
    );
    cluster.ctl_stop();
    wait_until("client notices the stop", || !client.is_up());
    let c = client.clone();
    common::coroutine(move || {
        assert!(matches!(
            c.query(&ECHO, &[&1i64]),
            Err(PgError::Unavailable(_))
        ))
    });
    cluster.ctl_start();
    wait_until("client reconnects", || client.is_up());
    let c = client.clone();
    common::coroutine(move || {
        assert_eq!(
            c.query(&ECHO, &[&1i64]).unwrap()[0].get::<i64>(0).unwrap(),
            2
        )
    });
}

#[test]
fn a_listening_client_receives_notifications_in_commit_order_and_listens_again_after_a_reconnect() {
    use gavel::placement::WorkerId;
    common::coroutine(|| {
        let home = WorkerId::new(0);
        let wait = Duration::from_secs(5);
        let channel = format!("gavel test {}", std::process::id());
        let (listener, notes) = Client::listening(cfg(), &[], &[&channel], home).unwrap();
        let sender = Connection::connect(&cfg(), STATEMENTS, 0).unwrap();
        let notify = |what: &str| {
            sender
                .simple_query(&format!(
                    "SELECT pg_notify('{channel}', {what}) FROM generate_series(1, 3) g"
                ))
                .unwrap();
        };
        notify("g::text");
        for i in 1..=3 {
            let n = notes.recv_timeout(home, wait).expect("a notification");
            assert_eq!(
                (n.channel.as_str(), n.payload),
                (channel.as_str(), i.to_string())
            );
        }
        // The listening session is ended from outside: the client reconnects and listens again.
        let pid = listener.connection().unwrap().backend_pid();
        sender
            .simple_query(&format!("SELECT pg_terminate_backend({pid})"))
            .unwrap();
        let deadline = Instant::now() + wait;
        while listener.generation() < 2 {
            assert!(Instant::now() < deadline, "never reconnected");
            may::coroutine::sleep(Duration::from_millis(10));
        }
        notify("'after ' || g");
        for i in 1..=3 {
            let n = notes
                .recv_timeout(home, wait)
                .expect("a notification after the reconnect");
            assert_eq!(n.payload, format!("after {i}"));
        }
        assert!(!notes.take_overflow());
        assert_eq!(notes.pending(), 0);
    });
}

/// The server a connection landed on, by its port.
fn port_of(conn: &Connection) -> String {
    conn.simple_query("SELECT current_setting('port')").unwrap()[0][0]
        .clone()
        .unwrap()
}

/// libpq's host lists: hosts are tried in order, a refused one and (with `read-write`) a
/// read-only one are passed over, and a reconnection goes through the list again, so a client
/// whose writable server dies settles on the one made writable next, with fast 503s meanwhile.
#[test]
fn a_host_list_settles_on_the_first_server_that_takes_writes() {
    let (a, b) = (Cluster::start("hosts-a"), Cluster::start("hosts-b"));
    common::coroutine(move || {
        b.set_read_only(true);
        let list = |attrs: &str| {
            Config::from_url(&format!(
                "postgres://postgres@127.0.0.1:1,127.0.0.1:{},127.0.0.1:{}/postgres\
                 ?connect_timeout=3&target_session_attrs={attrs}",
                b.port, a.port
            ))
            .unwrap()
        };
        let any = Connection::connect(&list("any"), &[], 0).unwrap();
        assert_eq!(
            port_of(&any),
            b.port.to_string(),
            "any: the first that answers"
        );
        let rw = Connection::connect(&list("read-write"), &[], 0).unwrap();
        assert_eq!(
            port_of(&rw),
            a.port.to_string(),
            "read-write passes the read-only one"
        );
        drop((any, rw));

        // Every server read-only: the last one's answer, as it is (its SQLSTATE kept).
        a.set_read_only(true);
        let e = Connection::connect(&list("read-write"), &[], 0)
            .err()
            .unwrap();
        assert_eq!(e.code(), Some("25006"), "{e}");
        a.set_read_only(false);
        // Every server unreachable: the error names each host's reason.
        let down =
            Config::from_url("postgres://postgres@127.0.0.1:1,127.0.0.1:2/postgres").unwrap();
        let text = Connection::connect(&down, &[], 0)
            .err()
            .unwrap()
            .to_string();
        assert!(
            text.contains("127.0.0.1:1:") && text.contains("127.0.0.1:2:"),
            "{text}"
        );

        // A failover: the writable server goes away, the other is made writable.
        let client = Client::connect_now(list("read-write"), STATEMENTS, 0).unwrap();
        let port = || {
            client
                .simple_query("SELECT current_setting('port')")
                .map(|r| r[0][0].clone())
        };
        assert_eq!(port().unwrap().unwrap(), a.port.to_string());
        a.pg(
            "pg_ctl",
            &["-w", "-m", "immediate", "-D", &a.path("data"), "stop"],
        );
        let t = Instant::now();
        assert!(matches!(port(), Err(PgError::Unavailable(_))));
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
        b.set_read_only(false);
        let settles_on = |want: u16| {
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                if let Ok(Some(p)) = port() {
                    assert_eq!(p, want.to_string());
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the client found the new writable server"
                );
                may::coroutine::sleep(Duration::from_millis(50));
            }
        };
        settles_on(b.port);

        // A switchover: the server under an open connection turns read-only. Its first refused
        // write (25006) gives the connection up, and the client settles on the writable one.
        a.ctl_start();
        b.set_read_only(true);
        // The reload reaches the server's session between two of its statements.
        let deadline = Instant::now() + Duration::from_secs(5);
        let e = loop {
            match client.simple_query("CREATE TABLE IF NOT EXISTS probe (x int)") {
                Err(e) => break e,
                Ok(_) => assert!(Instant::now() < deadline, "the write was refused"),
            }
            may::coroutine::sleep(Duration::from_millis(20));
        };
        assert_eq!(e.code(), Some("25006"), "{e}");
        settles_on(a.port);
        client
            .simple_query("CREATE TABLE IF NOT EXISTS probe (x int)")
            .unwrap();
    });
}
