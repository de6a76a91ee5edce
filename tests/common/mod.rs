//! Test harness: runs the real `gavel` binary against the real PostgreSQL, each test binary in a
//! database of its own, and talks to it over real sockets.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Where the test databases live; each test binary gets `gavel_test_<pid>_<name>` on it.
pub fn pg_base_url() -> String {
    std::env::var("GAVEL_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

pub fn test_db_name(tag: &str) -> String {
    format!("gavel_test_{}_{}", std::process::id(), tag)
}

/// How long a server may take to print its "listening" line.
const START_TIMEOUT_SECS: u64 = 30;

pub struct Server {
    pub addr: SocketAddr,
    pub child: Child,
    pub db: String,
    pub log: mpsc::Receiver<String>,
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
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gavel"));
    cmd.env("GAVEL_LISTEN", "127.0.0.1:0")
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
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Ok(line) = self.log.recv_timeout(left) else {
                break;
            };
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if v["msg"] == "listening" {
                    let addr = v["addr"].as_str().unwrap().parse().unwrap();
                    return Ok(Server {
                        addr,
                        child: self.child,
                        db: self.db,
                        log: self.log,
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
    let mut body = vec![0u8; len];
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

pub fn assert_healthy(addr: SocketAddr) {
    let r = get(addr, "/health");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "ok");
}
