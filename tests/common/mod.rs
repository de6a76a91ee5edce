//! Test harness: runs the real `gavel` binary against the real PostgreSQL, each test binary in a
//! database of its own, and talks to it over real sockets.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Runs `f` in a coroutine on the shared two-worker runtime, re-raising its panic: the storage
/// clients must run in coroutines. The stack is the storage client's own (SCRAM's key derivation
/// needs it in unoptimised builds).
pub fn coroutine<F: FnOnce() + Send + 'static>(f: F) {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        may::config().set_workers(2);
    });
    let builder = may::coroutine::Builder::new()
        .stack_size(gavel::storage::pg::limits::LIMITS.coroutine_stack_words);
    if let Err(panic) = may::go!(builder, f).unwrap().join() {
        std::panic::resume_unwind(panic);
    }
}

/// The wall clock, as the database's timestamps are kept.
pub fn wall_clock() -> gavel::domain::time::Timestamp {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    gavel::domain::time::Timestamp::from_unix_micros(micros)
}

/// Where the test databases live; each test binary gets `gavel_test_<pid>_<name>` on it:
/// `GAVEL_TEST_PG` (a server URL without a database), else the server of `DATABASE_URL`, else
/// `postgres://postgres@127.0.0.1:5432`.
pub fn pg_base_url() -> String {
    if let Ok(url) = std::env::var("GAVEL_TEST_PG") {
        return url;
    }
    if let Ok(url) = std::env::var("DATABASE_URL") {
        // postgres://user[:password]@host[:port]/db[?params] without its database and params.
        if let Some((scheme, rest)) = url.split_once("://") {
            let server = rest.split(['/', '?']).next().unwrap_or(rest);
            return format!("{scheme}://{server}");
        }
    }
    "postgres://postgres@127.0.0.1:5432".into()
}

/// A database name of this test process. The first call also arranges for every database of
/// this process to be dropped when the process exits, so `cargo test` leaves none behind.
pub fn test_db_name(tag: &str) -> String {
    static CLEANUP: std::sync::Once = std::sync::Once::new();
    CLEANUP.call_once(|| {
        // SAFETY: registers a plain function with the C runtime; it runs once, at exit.
        unsafe {
            libc::atexit(drop_test_databases);
        }
    });
    format!("gavel_test_{}_{}", std::process::id(), tag)
}

/// Drops this process's test databases (servers still connected are disconnected). Runs at exit,
/// so it never panics: a database it cannot drop is left for the next CI run's sweep.
extern "C" fn drop_test_databases() {
    let admin = format!("{}/postgres", pg_base_url());
    let pattern = format!("gavel\\_test\\_{}\\_%", std::process::id());
    let Ok(out) = Command::new("psql")
        .args([
            admin.as_str(),
            "-Atc",
            &format!("SELECT datname FROM pg_database WHERE datname LIKE '{pattern}'"),
        ])
        .stderr(Stdio::null())
        .output()
    else {
        return;
    };
    for db in String::from_utf8_lossy(&out.stdout).lines() {
        let _ = Command::new("psql")
            .args([
                admin.as_str(),
                "-qc",
                &format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// How long a server may take to print its "listening" line.
const START_TIMEOUT_SECS: u64 = 30;

pub struct Server {
    pub addr: SocketAddr,
    /// The admin listener (`/metrics`), `None` when started with `GAVEL_ADMIN_LISTEN=off`.
    pub admin: Option<SocketAddr>,
    pub child: Child,
    pub db: String,
    pub log: mpsc::Receiver<String>,
    /// The "listening" log line.
    pub listening: Value,
}

/// Starts `gavel` with the given extra environment; returns once it listens.
pub fn spawn_server(db: &str, env: &[(&str, &str)]) -> Server {
    try_spawn_server(db, env).unwrap_or_else(|e| panic!("server did not start: {e}"))
}

pub fn try_spawn_server(db: &str, env: &[(&str, &str)]) -> Result<Server, String> {
    launch(db, env)?.wait_listening()
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A started process that has not yet said it listens.
pub struct Launched {
    child: Child,
    db: String,
    log: mpsc::Receiver<String>,
}

/// Starts `gavel` without waiting. The child is killed when the calling thread ends.
pub fn launch(db: &str, env: &[(&str, &str)]) -> Result<Launched, String> {
    // GAVEL_TEST_BIN runs the suite against another build (the release one, for figures).
    let bin =
        std::env::var("GAVEL_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_gavel").into());
    let mut cmd = Command::new(bin);
    // Port 0 for both listeners, so servers started side by side never collide.
    cmd.env("GAVEL_LISTEN", "127.0.0.1:0")
        .env("GAVEL_ADMIN_LISTEN", "127.0.0.1:0")
        .env("DATABASE_URL", format!("{}/{db}", pg_base_url()))
        .env("GAVEL_WORKERS", "2")
        .env("REDIS_URL", "off")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    kill_with_parent(&mut cmd);
    let mut child = cmd.spawn().map_err(|e| e.to_string())?;
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Ok(Launched {
        child,
        db: db.to_owned(),
        log: rx,
    })
}

impl Launched {
    pub fn wait_listening(mut self) -> Result<Server, String> {
        let deadline = Instant::now() + Duration::from_secs(START_TIMEOUT_SECS);
        let mut seen = Vec::new();
        let mut admin = None;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Ok(line) = self.log.recv_timeout(left) else {
                break;
            };
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                // Logged before "listening" when the admin listener is on.
                if v["msg"] == "admin listening" {
                    admin = v["addr"].as_str().and_then(|a| a.parse().ok());
                }
                if v["msg"] == "listening" {
                    let addr = v["addr"].as_str().unwrap().parse().unwrap();
                    return Ok(Server {
                        addr,
                        admin,
                        child: self.child,
                        db: self.db,
                        log: self.log,
                        listening: v,
                    });
                }
            }
            seen.push(line);
        }
        let _ = self.child.kill();
        let code = self.child.wait().ok().and_then(|s| s.code());
        Err(format!("exit code {code:?}; log:\n{}", seen.join("\n")))
    }
}

/// The server dies with the test process, even when a test aborts.
fn kill_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// One server shared by all tests of a binary, spawned from a thread that lives as long as the
/// process (PR_SET_PDEATHSIG fires when the spawning thread ends).
pub fn shared() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let tag = std::env::current_exe()
                .ok()
                .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
                .unwrap_or_default()
                .split('-')
                .next()
                .unwrap_or("t")
                .to_owned();
            let server = spawn_server(&test_db_name(&tag), &[]);
            tx.send(server.addr).unwrap();
            let _keep = server;
            loop {
                std::thread::park();
            }
        });
        rx.recv().expect("shared server")
    })
}

/// Runs one SQL command on a test database with psql and returns its unaligned output.
pub fn psql(db: &str, sql: &str) -> String {
    let url = format!("{}/{db}", pg_base_url());
    let out = Command::new("psql")
        .args([url.as_str(), "-v", "ON_ERROR_STOP=1", "-Atc", sql])
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run psql ({e}): the tests need it on the PATH (apt-get install postgresql-client)")
        });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Reads one response (Content-Length framed).
pub fn read_reply(s: &mut TcpStream) -> std::io::Result<Reply> {
    read_reply_to(s, "GET")
}

/// Reads the response to a request made with `method`: an answer to HEAD has a `Content-Length`
/// but no body.
pub fn read_reply_to(s: &mut TcpStream, method: &str) -> std::io::Result<Reply> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_owned(), v.trim().to_owned())
        })
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = vec![0u8; if method == "HEAD" { 0 } else { len }];
    s.read_exact(&mut body)?;
    Ok(Reply {
        status,
        headers,
        body,
    })
}

pub fn raw(addr: SocketAddr, bytes: &[u8]) -> Reply {
    let mut s = connect(addr);
    s.write_all(bytes).unwrap();
    read_reply(&mut s).unwrap()
}

pub fn request(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> Reply {
    let mut s = connect(addr);
    send(&mut s, method, path, body, &[]);
    read_reply(&mut s).unwrap()
}

pub fn send(
    s: &mut TcpStream,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    if let Some(b) = body {
        req.push_str(b);
    }
    s.write_all(req.as_bytes()).unwrap();
}

pub fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path, None)
}

pub fn post(addr: SocketAddr, path: &str, body: &str) -> Reply {
    request(addr, "POST", path, Some(body))
}

/// Creates an open auction and returns its JSON.
pub fn open_auction(addr: SocketAddr, seller: i64, start: &str, inc: &str) -> Value {
    let body = format!(
        r#"{{"title":"lot","seller_id":{seller},"start_price":"{start}","min_increment":"{inc}","duration_seconds":3600}}"#
    );
    let r = post(addr, "/api/auctions", &body);
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

/// An auction that opened a minute ago, so the fast path (which steps aside near the start) applies.
pub fn started_auction(addr: SocketAddr, start: &str, inc: &str) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    let starts_at = gavel::domain::time::Timestamp::from_unix_micros(now - 60_000_000);
    let body = format!(
        r#"{{"title":"lot","seller_id":1,"start_price":"{start}","min_increment":"{inc}","starts_at":"{starts_at}","duration_seconds":3600}}"#
    );
    let r = post(addr, "/api/auctions", &body);
    assert_eq!(r.status, 201, "{}", r.json());
    r.json()["id"].as_i64().unwrap()
}

pub fn assert_healthy(addr: SocketAddr) {
    let r = get(addr, "/health");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "ok");
}

// ---- a TCP proxy in front of PostgreSQL, to make outages ----

pub const FORWARD: u8 = 0;
/// Accepted connections are closed at once: the database looks down.
pub const REFUSE: u8 = 1;
/// Bytes are swallowed: the database looks hung.
pub const STALL: u8 = 2;

pub struct Proxy {
    pub addr: SocketAddr,
    mode: Arc<AtomicU8>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    pub fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mode = Arc::new(AtomicU8::new(FORWARD));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let (m, c) = (mode.clone(), conns.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                if m.load(Ordering::SeqCst) == REFUSE {
                    continue; // dropped: closed at once
                }
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                c.lock().unwrap().push(client.try_clone().unwrap());
                c.lock().unwrap().push(server.try_clone().unwrap());
                pump(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    m.clone(),
                );
                pump(server, client, m.clone());
            }
        });
        Proxy { addr, mode, conns }
    }

    pub fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }

    /// Ends every proxied connection, as a database restart or a network cut would.
    pub fn cut(&self) {
        for s in self.conns.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, mode: Arc<AtomicU8>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if mode.load(Ordering::SeqCst) == STALL {
                continue;
            }
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Both);
    });
}

/// Where PostgreSQL listens, from the test base URL.
pub fn upstream() -> SocketAddr {
    let base = pg_base_url();
    let hostport = base.rsplit('@').next().unwrap();
    std::net::ToSocketAddrs::to_socket_addrs(hostport)
        .unwrap()
        .next()
        .unwrap()
}

// ---- a private Redis, to stop, restart and flush at will ----

pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let mut r = RedisServer {
            port: free_port(),
            child: None,
        };
        r.restart();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts it (again) on the same port, empty.
    pub fn restart(&mut self) {
        self.stop();
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        kill_with_parent(&mut cmd);
        self.child = Some(cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start redis-server ({e}): the tests that stop and restart Redis run their \
                 own; install it (apt-get install redis-server) so that it is on the PATH"
            )
        }));
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.cli(&["PING"]).as_deref() != Some("PONG") {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Runs one command with redis-cli; `None` when it fails.
    pub fn cli(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Checks API.md's invariants for one auction against the bids the clients saw accepted
/// (`(auction, bid id)` pairs): strictly increasing by at least the increment, count, price and
/// leader consistent, every 201 stored and nothing else.
pub fn check_invariants(addr: SocketAddr, auction: i64, accepted: &[(i64, i64)]) {
    let a = get(addr, &format!("/api/auctions/{auction}")).json();
    let page = get(addr, &format!("/api/bids/{auction}?limit=500")).json();
    assert!(page["next_before_id"].is_null());
    let mut bids = page["bids"].as_array().unwrap().clone();
    bids.reverse(); // acceptance order
    let inc = cents(&a["min_increment"]);
    let mut prev: Option<i64> = None;
    for b in &bids {
        let amount = cents(&b["amount"]);
        match prev {
            None => assert!(amount >= cents(&a["start_price"])),
            Some(p) => assert!(amount >= p + inc, "{p} then {amount}"),
        }
        prev = Some(amount);
    }
    assert_eq!(a["bid_count"].as_u64().unwrap() as usize, bids.len());
    if let Some(last) = bids.last() {
        assert_eq!(a["current_price"], last["amount"]);
        assert_eq!(a["leader_id"], last["bidder_id"]);
        assert_eq!(last["is_winning"], true);
    }
    assert!(bids.iter().filter(|b| b["is_winning"] == true).count() <= 1);
    let stored: std::collections::HashSet<i64> =
        bids.iter().map(|b| b["id"].as_i64().unwrap()).collect();
    let mine: std::collections::HashSet<i64> = accepted
        .iter()
        .filter(|(a, _)| *a == auction)
        .map(|(_, id)| *id)
        .collect();
    assert_eq!(stored, mine, "every 201 is stored, and nothing else");
}

/// Cents of a money string such as "12.50".
pub fn cents(v: &Value) -> i64 {
    let s = v.as_str().unwrap();
    let (i, f) = s.split_once('.').unwrap();
    i.parse::<i64>().unwrap() * 100 + f.parse::<i64>().unwrap()
}

/// A small deterministic generator, so a failing run can be repeated from its seed.
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}
