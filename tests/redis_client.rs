//! The Redis client against real servers. Every test starts its own `redis-server` (from PATH,
//! or `GAVEL_TEST_REDIS_SERVER`) on a free loopback port, since some stop, pause or restart it;
//! each is killed when its test ends, failed or not.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use gavel::cache::client::limits::{LIMITS, MAX_REPLY_BYTES};
use gavel::cache::client::{CacheError, Client, Connection, RedisConfig};
use redis::{cmd, Value};

/// Runs `f` in a coroutine on the shared two-worker runtime, re-raising its panic.
fn run<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        // Debug builds' assertion formatting wants more than may's default stack.
        may::config().set_workers(2).set_stack_size(0x8000);
    });
    match may::go!(f).join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// A private `redis-server`, killed on drop.
struct Server {
    port: u16,
    args: Vec<String>,
    child: Option<Child>,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        let mut s = Server {
            port: free_port(),
            args: args.iter().map(|a| a.to_string()).collect(),
            child: None,
        };
        // A port another test took between `free_port` and redis-server's bind: take another.
        for _ in 0..3 {
            if s.spawn().is_ok() {
                return s;
            }
            s.port = free_port();
        }
        s.spawn().unwrap();
        s
    }

    fn spawn(&mut self) -> Result<(), String> {
        let bin =
            std::env::var("GAVEL_TEST_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let dir: PathBuf = std::env::temp_dir();
        let child = Command::new(bin)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--loglevel", "warning", "--dir", dir.to_str().unwrap()])
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (or set GAVEL_TEST_REDIS_SERVER)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            // A port another test took between `free_port` and the bind makes redis-server exit;
            // a connect could then even reach that other listener. Checked after the connect too.
            self.still_running()?;
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                std::thread::sleep(Duration::from_millis(20));
                return self.still_running();
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// An error when the started redis-server has already exited (its port taken meanwhile).
    fn still_running(&mut self) -> Result<(), String> {
        let exited = self
            .child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
        if exited {
            return Err(format!(
                "redis-server exited at start (port {} taken?)",
                self.port
            ));
        }
        Ok(())
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn restart(&mut self) {
        self.stop();
        self.spawn().unwrap();
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn cfg(&self) -> RedisConfig {
        cfg(&self.url())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn cfg(url: &str) -> RedisConfig {
    RedisConfig::from_url(url).unwrap().unwrap()
}

/// Generous timeouts for tests that check answers rather than timing: debug builds on shared
/// cores can be slow.
fn patient(mut cfg: RedisConfig) -> RedisConfig {
    cfg.command_timeout = Duration::from_secs(2);
    cfg
}

fn bulk(s: &str) -> Value {
    Value::BulkString(s.as_bytes().to_vec())
}

fn wait_until(limit: Duration, mut ok: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if ok() {
            return Some(start.elapsed());
        }
        may::coroutine::sleep(Duration::from_millis(10));
    }
    None
}

#[test]
fn round_trips() {
    let server = Server::start(&[]);
    let (url, conf) = (server.url(), patient(server.cfg()));
    run(move || {
        let c = Connection::connect(&conf, 0).expect("connect");
        assert_eq!(
            c.query(cmd("SET").arg("k").arg("v 1")).unwrap(),
            Value::Okay
        );
        assert_eq!(c.query(cmd("GET").arg("k")).unwrap(), bulk("v 1"));
        assert_eq!(c.query(cmd("GET").arg("missing")).unwrap(), Value::Nil);
        let bin: Vec<u8> = (0..=255).collect();
        c.query(cmd("SET").arg("bin").arg(&bin)).unwrap();
        assert_eq!(
            c.query(cmd("GET").arg("bin")).unwrap(),
            Value::BulkString(bin)
        );

        let added = c.query(
            cmd("HSET")
                .arg("h")
                .arg("price")
                .arg("12.50")
                .arg("leader")
                .arg(7),
        );
        assert_eq!(added.unwrap(), Value::Int(2));
        let Value::Array(all) = c.query(cmd("HGETALL").arg("h")).unwrap() else {
            panic!("HGETALL is an array in RESP2")
        };
        let mut pairs: Vec<(Value, Value)> = all
            .chunks(2)
            .map(|p| (p[0].clone(), p[1].clone()))
            .collect();
        pairs.sort_by_key(|(k, _)| format!("{k:?}"));
        assert_eq!(
            pairs,
            vec![(bulk("leader"), bulk("7")), (bulk("price"), bulk("12.50"))]
        );

        let eval = c.query(
            cmd("EVAL")
                .arg("return {KEYS[1], ARGV[1], redis.call('INCRBY', KEYS[1], ARGV[1])}")
                .arg(1)
                .arg("n")
                .arg(5),
        );
        assert_eq!(
            eval.unwrap(),
            Value::Array(vec![bulk("n"), bulk("5"), Value::Int(5)])
        );

        // EVALSHA first, EVAL once on NOSCRIPT, EVALSHA from then on
        let script = redis::Script::new("return redis.call('INCR', KEYS[1])");
        let by_hash = || c.query(cmd("EVALSHA").arg(script.get_hash()).arg(1).arg("counter"));
        let e = by_hash().unwrap_err();
        assert_eq!(e.server_code(), Some("NOSCRIPT"), "{e}");
        let code = "return redis.call('INCR', KEYS[1])";
        let first = c.query(cmd("EVAL").arg(code).arg(1).arg("counter"));
        assert_eq!(first.unwrap(), Value::Int(1));
        assert_eq!(by_hash().unwrap(), Value::Int(2));
        assert!(!c.is_broken());
        assert_eq!(c.in_flight(), 0);

        // a database other than 0 is selected at connect time
        let db3 = patient(cfg(&format!("{url}/3")));
        let other = Connection::connect(&db3, 1).expect("connect db 3");
        other.query(cmd("SET").arg("in-db-3").arg("yes")).unwrap();
        assert_eq!(other.query(cmd("GET").arg("in-db-3")).unwrap(), bulk("yes"));
        assert_eq!(c.query(cmd("GET").arg("in-db-3")).unwrap(), Value::Nil);
    });
}

#[test]
fn concurrent_commands_share_one_connection() {
    let server = Server::start(&[]);
    let cfg = patient(server.cfg());
    run(move || {
        let c = Connection::connect(&cfg, 0).expect("connect");
        let before = c.batches_written();
        let handles: Vec<_> = (0..50)
            .map(|task| {
                let c = c.clone();
                may::go!(move || {
                    for i in 0..10 {
                        let word = format!("task {task} command {i}");
                        if i % 2 == 0 {
                            let r = c.query(cmd("ECHO").arg(&word)).unwrap();
                            assert_eq!(r, bulk(&word));
                        } else {
                            let r = c.query(cmd("INCR").arg(format!("t{task}"))).unwrap();
                            assert_eq!(r, Value::Int((i / 2 + 1) as i64), "{word}");
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            if let Err(panic) = h.join() {
                std::panic::resume_unwind(panic);
            }
        }
        let batches = c.batches_written() - before;
        assert!(batches < 500, "500 commands took {batches} writes");
        assert_eq!(c.in_flight(), 0);
        let total = c.query(
            cmd("EVAL")
                .arg(
                    "local n = 0 for _, k in ipairs(redis.call('KEYS', 't*')) do \
             n = n + redis.call('GET', k) end return n",
                )
                .arg(0),
        );
        assert_eq!(total.unwrap(), Value::Int(250));
    });
}

/// may resumes a coroutine on the worker that wakes it (or that owns the socket it waited on):
/// connecting, replies and timeouts all leave a caller on the connection's worker.
#[test]
fn callers_on_the_connection_worker_stay_there() {
    let server = Server::start(&[]);
    let (cfg, control) = (server.cfg(), patient(server.cfg()));
    run(move || {
        for worker in 0..2 {
            let (cfg, control) = (cfg.clone(), control.clone());
            let on_worker = may::coroutine::Builder::new().id(worker);
            let caller = may::go!(on_worker, move || {
                let home = std::thread::current().id();
                let at_home = |after: &str| {
                    let here = std::thread::current().id();
                    assert_eq!(here, home, "{after} moved the caller off worker {worker}");
                };
                let conn = Connection::connect(&patient(cfg.clone()), worker).unwrap();
                at_home("connect");
                for i in 0..20 {
                    assert_eq!(conn.query(cmd("INCR").arg("n")).unwrap(), Value::Int(i + 1));
                    at_home("a reply");
                }
                let impatient = Connection::connect(&cfg, worker).unwrap();
                let ctl = Connection::connect(&control, worker).unwrap();
                at_home("more connects");
                ctl.query(cmd("CLIENT").arg("PAUSE").arg(400).arg("ALL"))
                    .unwrap();
                at_home("a reply");
                // may's timer thread runs a timed-out coroutine: each must come back
                for _ in 0..5 {
                    assert!(matches!(
                        impatient.query(&cmd("PING")),
                        Err(CacheError::Timeout)
                    ));
                    at_home("a timeout");
                }
                conn.query(cmd("DEL").arg("n")).unwrap();
                at_home("a reply after a pause");
            })
            .unwrap();
            if let Err(p) = caller.join() {
                std::panic::resume_unwind(p);
            }
        }
    });
}

#[test]
fn error_reply_fails_only_its_own_command() {
    let server = Server::start(&[]);
    let cfg = patient(server.cfg());
    run(move || {
        let c = Connection::connect(&cfg, 0).expect("connect");
        c.query(cmd("SET").arg("s").arg("text")).unwrap();
        // three commands in one pipeline: the middle one fails
        let a = c.clone();
        let first = may::go!(move || a.query(cmd("GET").arg("s")));
        let b = c.clone();
        let second = may::go!(move || b.query(cmd("LPUSH").arg("s").arg("x")));
        let third = c.query(cmd("INCR").arg("fresh"));
        assert_eq!(first.join().unwrap().unwrap(), bulk("text"));
        let e = second.join().unwrap().unwrap_err();
        assert_eq!(e.server_code(), Some("WRONGTYPE"), "{e}");
        assert_eq!(third.unwrap(), Value::Int(1));

        let e = c.query(&cmd("NO-SUCH-COMMAND")).unwrap_err();
        assert!(
            matches!(&e, CacheError::Server(t) if t.starts_with("ERR unknown command")),
            "{e:?}"
        );
        let e = c.query(cmd("INCR").arg("s")).unwrap_err();
        assert!(
            matches!(&e, CacheError::Server(t) if t.contains("not an integer")),
            "{e:?}"
        );
        assert_eq!(
            c.query(&cmd("PING")).unwrap(),
            Value::SimpleString("PONG".into())
        );
        // an empty command would get no reply at all; it never reaches the server
        assert!(matches!(
            c.query(&redis::Cmd::new()),
            Err(CacheError::Protocol(_))
        ));
        assert!(!c.is_broken());
        assert_eq!(c.in_flight(), 0);
    });
}

#[test]
fn sends_keep_replies_in_order() {
    let server = Server::start(&[]);
    let cfg = patient(server.cfg());
    run(move || {
        let c = Connection::connect(&cfg, 0).expect("connect");
        for i in 0..100 {
            c.send(cmd("RPUSH").arg("list").arg(i)).unwrap();
        }
        c.send(cmd("SET").arg("k").arg("before")).unwrap();
        // an error reply to a send is dropped with it, and shifts nothing
        c.send(cmd("INCR").arg("k")).unwrap();
        c.send(cmd("SET").arg("k").arg("after")).unwrap();
        assert_eq!(c.query(cmd("GET").arg("k")).unwrap(), bulk("after"));
        let list = c.query(cmd("LRANGE").arg("list").arg(0).arg(-1)).unwrap();
        let expected: Vec<Value> = (0..100).map(|i| bulk(&i.to_string())).collect();
        assert_eq!(list, Value::Array(expected));
        assert_eq!(c.in_flight(), 0);
        assert!(!c.is_broken());
    });
}

#[test]
fn timeout_then_busy_then_recovery() {
    let server = Server::start(&[]);
    let (cfg, control) = (server.cfg(), patient(server.cfg()));
    run(move || {
        let c = Connection::connect(&cfg, 0).expect("connect");
        let ctl = Connection::connect(&control, 1).expect("connect");
        assert_eq!(cfg.command_timeout, Duration::from_millis(50));
        ctl.query(cmd("CLIENT").arg("PAUSE").arg(300).arg("ALL"))
            .unwrap();
        let start = Instant::now();
        assert!(matches!(c.query(&cmd("PING")), Err(CacheError::Timeout)));
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(50) && waited < Duration::from_millis(200),
            "timed out after {waited:?}"
        );
        // the pipeline is bounded: the timed-out PING still counts until its reply comes
        let mut accepted = 0;
        let busy = loop {
            match c.send(cmd("INCR").arg("n")) {
                Ok(()) => accepted += 1,
                Err(e) => break e,
            }
            assert!(accepted <= LIMITS.max_in_flight, "never Busy");
        };
        assert!(matches!(busy, CacheError::Busy), "{busy:?}");
        assert_eq!(accepted, LIMITS.max_in_flight - 1);
        assert!(wait_until(Duration::from_secs(3), || c.in_flight() == 0).is_some());
        assert!(!c.is_broken());
        assert_eq!(
            c.query(cmd("GET").arg("n")).unwrap(),
            bulk(&(LIMITS.max_in_flight - 1).to_string())
        );
    });
}

#[test]
fn stalled_server_breaks_the_connection_and_the_client_recovers() {
    let server = Server::start(&[]);
    let (cfg, control) = (server.cfg(), patient(server.cfg()));
    run(move || {
        let client = Client::new(cfg.clone(), 0);
        assert!(wait_until(Duration::from_secs(2), || client.is_up()).is_some());
        assert_eq!(client.generation(), 1);
        let ctl = Connection::connect(&control, 1).expect("connect");
        ctl.query(cmd("CLIENT").arg("PAUSE").arg(1500).arg("ALL"))
            .unwrap();
        let start = Instant::now();
        assert!(matches!(
            client.query(&cmd("PING")),
            Err(CacheError::Timeout)
        ));
        // silence past the timeout plus the grace drops the connection...
        let down = wait_until(Duration::from_secs(2), || !client.is_up()).expect("stall noticed");
        let limit = cfg.command_timeout + Duration::from_millis(LIMITS.stall_grace_millis + 400);
        assert!(down <= limit, "stall noticed after {down:?}");
        // ...so that callers fail fast instead of each waiting out its timeout
        let t = Instant::now();
        assert!(matches!(
            client.query(&cmd("PING")),
            Err(CacheError::Unavailable(_))
        ));
        assert!(t.elapsed() < Duration::from_millis(20));
        // and once the server answers again, the client is back by itself
        let up = wait_until(Duration::from_secs(4), || client.is_up()).expect("reconnected");
        assert!(
            start.elapsed() > Duration::from_millis(1400),
            "up during the pause"
        );
        assert!(up < Duration::from_secs(4));
        assert_eq!(client.generation(), 2);
        assert_eq!(
            client.query(&cmd("PING")).unwrap(),
            Value::SimpleString("PONG".into())
        );
    });
}

#[test]
fn outage_fails_fast_and_the_client_reconnects_after_a_restart() {
    let mut server = Server::start(&[]);
    let client = Arc::new(Client::new(server.cfg(), 0));
    let c = client.clone();
    run(move || {
        assert!(wait_until(Duration::from_secs(2), || c.is_up()).is_some());
        assert_eq!(c.generation(), 1);
        assert_eq!(c.query(cmd("SET").arg("k").arg("v")).unwrap(), Value::Okay);
    });

    server.stop();
    let c = client.clone();
    run(move || {
        for _ in 0..20 {
            let t = Instant::now();
            let r = c.query(cmd("GET").arg("k"));
            assert!(matches!(r, Err(CacheError::Unavailable(_))), "{r:?}");
            assert!(
                t.elapsed() < Duration::from_millis(100),
                "{:?}",
                t.elapsed()
            );
            may::coroutine::sleep(Duration::from_millis(10));
        }
        assert!(!c.is_up());
        assert_eq!(c.generation(), 1);
    });

    server.restart();
    let c = client.clone();
    run(move || {
        let up = wait_until(Duration::from_secs(4), || c.is_up()).expect("reconnected");
        assert!(up < Duration::from_secs(4));
        assert_eq!(c.generation(), 2);
        // the restarted server came back empty: why callers watch the generation
        assert_eq!(c.query(cmd("GET").arg("k")).unwrap(), Value::Nil);
        c.send(cmd("SET").arg("k").arg("again")).unwrap();
        assert_eq!(c.query(cmd("GET").arg("k")).unwrap(), bulk("again"));
    });
}

#[test]
fn passwords_and_acl_users() {
    let server = Server::start(&["--requirepass", "s3cret"]);
    let port = server.port;
    run(move || {
        let url = |auth: &str| patient(cfg(&format!("redis://{auth}127.0.0.1:{port}")));
        let c = Connection::connect(&url(":s3cret@"), 0).expect("right password");
        assert_eq!(
            c.query(&cmd("PING")).unwrap(),
            Value::SimpleString("PONG".into())
        );
        let e = Connection::connect(&url(":wrong@"), 0).err().unwrap();
        assert_eq!(e.server_code(), Some("WRONGPASS"), "{e}");
        let e = Connection::connect(&url(""), 0).err().unwrap();
        assert_eq!(e.server_code(), Some("NOAUTH"), "{e}");

        c.query(
            cmd("ACL")
                .arg("SETUSER")
                .arg("cache")
                .arg("on")
                .arg(">p@ss")
                .arg("~*")
                .arg("+@all"),
        )
        .unwrap();
        let user = Connection::connect(&url("cache:p%40ss@"), 1).expect("ACL user");
        let who = user.query(cmd("ACL").arg("WHOAMI")).unwrap();
        assert_eq!(who, bulk("cache"));
        let e = Connection::connect(&url("cache:nope@"), 0).err().unwrap();
        assert_eq!(e.server_code(), Some("WRONGPASS"), "{e}");

        // a client with a wrong password stays down and says why
        let client = Client::new(url(":wrong@"), 0);
        may::coroutine::sleep(Duration::from_millis(100));
        match client.query(&cmd("PING")) {
            Err(CacheError::Unavailable(why)) => assert!(why.contains("WRONGPASS"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(client.generation(), 0);
    });
}

#[test]
fn unreachable_servers_are_unavailable_within_the_connect_timeout() {
    let port = free_port();
    run(move || {
        let refused = cfg(&format!("redis://127.0.0.1:{port}"));
        let t = Instant::now();
        let e = Connection::connect(&refused, 0).err().unwrap();
        assert!(matches!(e, CacheError::Unavailable(_)), "{e:?}");
        assert!(t.elapsed() < refused.connect_timeout);

        // a client never blocks its caller, whatever the server does
        let t = Instant::now();
        let client = Client::new(refused, 0);
        let r = client.query(&cmd("PING"));
        assert!(matches!(r, Err(CacheError::Unavailable(_))), "{r:?}");
        assert!(t.elapsed() < Duration::from_millis(50));
        assert!(!client.is_up());
    });

    // accepts connections (the kernel does) but never answers PING
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    run(move || {
        let black_hole = cfg(&format!("redis://127.0.0.1:{port}?connect_timeout=200"));
        let t = Instant::now();
        let e = Connection::connect(&black_hole, 0).err().unwrap();
        assert!(matches!(e, CacheError::Unavailable(_)), "{e:?}");
        let waited = t.elapsed();
        assert!(
            waited >= Duration::from_millis(190) && waited < Duration::from_millis(400),
            "{waited:?}"
        );
    });
    drop(silent);
}

#[test]
fn an_oversized_reply_breaks_only_its_connection() {
    let server = Server::start(&[]);
    let cfg = patient(server.cfg());
    run(move || {
        let c = Connection::connect(&cfg, 0).expect("connect");
        let big = vec![b'x'; MAX_REPLY_BYTES + 1];
        c.query(cmd("SET").arg("big").arg(&big)).unwrap();
        c.query(cmd("SET").arg("small").arg("ok")).unwrap();
        let e = c.query(cmd("GET").arg("big")).unwrap_err();
        assert!(
            matches!(&e, CacheError::Protocol(why) if why.contains("larger than")),
            "{e:?}"
        );
        assert!(c.is_broken());
        assert!(matches!(
            c.query(&cmd("PING")),
            Err(CacheError::Unavailable(_))
        ));

        // a command queued behind the oversized reply learns that the connection is gone
        let c = Connection::connect(&cfg, 0).expect("connect");
        c.send(cmd("GET").arg("big")).unwrap();
        let behind = c.query(cmd("GET").arg("small"));
        assert!(
            matches!(behind, Err(CacheError::Unavailable(_))),
            "{behind:?}"
        );

        let fresh = Connection::connect(&cfg, 0).expect("connect");
        assert_eq!(fresh.query(cmd("GET").arg("small")).unwrap(), bulk("ok"));
        assert_eq!(
            fresh.query(cmd("STRLEN").arg("big")).unwrap(),
            Value::Int(big.len() as i64)
        );
    });
}
