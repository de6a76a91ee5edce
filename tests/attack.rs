//! Memory under attack, against the real server: many connections that declare a body and send
//! a little of it, and a client that pipelines thousands of requests without reading answers.
//! RSS stays within the bounds the README states, during and after, and `/health` answers
//! throughout.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Connections holding a declared-but-unsent body at once.
const HELD_CONNECTIONS: usize = 2_000;
/// What each such connection may cost the server's RSS: its coroutine's touched stack, its read
/// buffer at the initial size, its bookkeeping (a debug build's stack frames are the larger).
const HELD_BYTES_PER_CONNECTION: u64 = 48 * 1024;
/// RSS over the idle baseline allowed once every attacking connection has closed.
const RETAINED_AFTER_CLOSE_BYTES: u64 = 8 * 1024 * 1024;
/// Requests the pipelining client sends without reading a single answer.
const PIPELINED_REQUESTS: usize = 1_000_000;
/// RSS over the baseline allowed while that client is stuck: its answers wait in socket
/// buffers (kernel memory), not in the server's.
const PIPELINING_EXTRA_BYTES: u64 = 8 * 1024 * 1024;
/// Slowest `/health` answer accepted during the attacks.
const HEALTH_DEADLINE: Duration = Duration::from_secs(2);

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    kib * 1024
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// This process needs a descriptor for each connection it holds.
fn raise_nofile_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
}

fn assert_health_in_time(addr: SocketAddr) {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(HEALTH_DEADLINE)).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let r = read_reply(&mut s).expect("/health answers during the attack");
    assert_eq!(r.status, 200);
    assert!(
        started.elapsed() < HEALTH_DEADLINE,
        "{:?}",
        started.elapsed()
    );
}

/// Waits until RSS stops moving (two samples 200 ms apart within 1 MiB) or `limit` passes.
fn settled_rss(pid: u32, limit: Duration) -> u64 {
    let deadline = Instant::now() + limit;
    let mut last = rss_bytes(pid);
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = rss_bytes(pid);
        if now.abs_diff(last) < 1024 * 1024 || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

#[test]
fn declared_but_unsent_bodies_cost_what_they_carry_and_memory_goes_back() {
    raise_nofile_limit();
    let server = spawn_server(&test_db_name("attack_bodies"), &[]);
    let (addr, pid) = (server.addr, server.child.id());
    assert_health_in_time(addr);
    let baseline = settled_rss(pid, Duration::from_secs(2));

    let head = b"POST /api/bids HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
                 Content-Length: 65536\r\n\r\n";
    let mut held = Vec::with_capacity(HELD_CONNECTIONS);
    for i in 0..HELD_CONNECTIONS {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.write_all(head).unwrap();
        s.write_all(&vec![b'{'; 1 + i % 100]).unwrap();
        held.push(s);
        if i % 500 == 499 {
            assert_health_in_time(addr);
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_health_in_time(addr);
    let during = settled_rss(pid, Duration::from_secs(3));
    let per_conn = during.saturating_sub(baseline) / HELD_CONNECTIONS as u64;
    drop(held);
    assert_health_in_time(addr);
    // Each worker gives memory back within two of its checks after connections go.
    std::thread::sleep(Duration::from_millis(
        2 * gavel::memory::TRIM_CHECK_MILLIS + 500,
    ));
    let after = settled_rss(pid, Duration::from_secs(5));
    println!(
        "declared bodies: RSS {:.1} MiB idle, {:.1} MiB holding {HELD_CONNECTIONS} \
         ({} bytes each), {:.1} MiB after they closed",
        mib(baseline),
        mib(during),
        per_conn,
        mib(after)
    );
    assert!(
        per_conn <= HELD_BYTES_PER_CONNECTION,
        "{per_conn} bytes a connection"
    );
    assert!(
        after <= baseline + RETAINED_AFTER_CLOSE_BYTES,
        "{:.1} MiB kept after close (idle {:.1} MiB)",
        mib(after),
        mib(baseline)
    );
}

#[test]
fn a_client_pipelining_without_reading_costs_the_server_little() {
    let server = spawn_server(&test_db_name("attack_pipeline"), &[]);
    let (addr, pid) = (server.addr, server.child.id());
    assert_health_in_time(addr);
    let baseline = settled_rss(pid, Duration::from_secs(2));

    let mut s = TcpStream::connect(addr).expect("connect");
    // The writes block once the server stops reading; a deadline ends them instead.
    s.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
    let request = b"GET /api/auctions?limit=200 HTTP/1.1\r\nHost: t\r\n\r\n";
    let mut sent = 0;
    let mut batch = Vec::new();
    for _ in 0..100 {
        batch.extend_from_slice(request);
    }
    while sent < PIPELINED_REQUESTS {
        if s.write_all(&batch).is_err() {
            break;
        }
        sent += 100;
    }
    assert!(
        sent < PIPELINED_REQUESTS,
        "the server kept reading what it could not answer"
    );
    assert_health_in_time(addr);
    let during = settled_rss(pid, Duration::from_secs(3));
    println!(
        "pipelining without reading: {sent} requests written before the server stopped \
         reading; RSS {:.1} MiB idle, {:.1} MiB while stuck",
        mib(baseline),
        mib(during)
    );
    assert!(
        during <= baseline + PIPELINING_EXTRA_BYTES,
        "{:.1} MiB while stuck (idle {:.1} MiB)",
        mib(during),
        mib(baseline)
    );
    // Reading now drains the answers in order: the connection was slowed, not broken.
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut first = [0u8; 12];
    s.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    drop(s);
    assert_health_in_time(addr);
}
