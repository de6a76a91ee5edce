//! Open-loop load whose request bodies change with every request: accepted bids at a fixed rate.
//!
//! oha keeps a fixed rate and corrects for coordinated omission, but sends one body (or a random
//! line of a file), so on `POST /api/bids` it measures rejected bids. This sends bids that are
//! always accepted, as `wrk/bid.lua` does (connection c bids only on the auctions whose offset is
//! c modulo the connections, with amounts rising by 1.00 a request), each at its scheduled time,
//! and measures every latency from that scheduled time, not from when it was sent: a server that
//! stalls is charged for every request that should have left meanwhile.
//!
//! Usage: gavel-openloop ADDR RATE SECONDS [CONNECTIONS] [FIRST_AUCTION] [AUCTIONS] [AMOUNT_BASE]
//! Prints one line: `OPENLOOP sent=.. ok=.. non2xx=.. errors=.. p50_us=.. p99_us=.. p999_us=..
//! max_us=.. achieved=..`. Loopback only: ADDR must be in 127.0.0.0/8.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Longest a single answer may take before the connection counts it as an error and stops:
/// far above any latency worth measuring, low enough to end a run against a hung server.
const ANSWER_TIMEOUT_SECS: u64 = 5;

struct Args {
    addr: SocketAddr,
    rate: f64,
    seconds: f64,
    connections: usize,
    first: u64,
    auctions: u64,
    amount_base: u64,
}

fn args() -> Result<Args, String> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.len() < 3 {
        return Err(
            "usage: gavel-openloop ADDR RATE SECONDS [CONNECTIONS] [FIRST_AUCTION] \
                    [AUCTIONS] [AMOUNT_BASE]"
                .into(),
        );
    }
    let num = |i: usize, default: u64| -> Result<u64, String> {
        a.get(i).map_or(Ok(default), |s| {
            s.parse().map_err(|_| format!("not a number: {s}"))
        })
    };
    let addr: SocketAddr = a[0]
        .parse()
        .map_err(|_| format!("not an address: {}", a[0]))?;
    match addr {
        SocketAddr::V4(v4) if v4.ip().is_loopback() => {}
        _ => return Err("ADDR must be in 127.0.0.0/8".into()),
    }
    let rate: f64 = a[1]
        .parse()
        .map_err(|_| "RATE: requests a second".to_string())?;
    let seconds: f64 = a[2]
        .parse()
        .map_err(|_| "SECONDS: run length".to_string())?;
    if !(rate > 0.0 && seconds > 0.0 && seconds <= 600.0) {
        return Err("RATE must be positive and SECONDS in (0, 600]".into());
    }
    Ok(Args {
        addr,
        rate,
        seconds,
        connections: num(3, 64)?.max(1) as usize,
        first: num(4, 1)?,
        auctions: num(5, 10_000)?.max(1),
        amount_base: num(6, 100)?,
    })
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    ok: u64,
    non2xx: u64,
    errors: u64,
}

/// One connection: its share of the rate, on its own auctions, with its own rising amounts.
fn connection(a: &Args, c: usize, start: Instant) -> Tally {
    let mut t = Tally::default();
    let interval = Duration::from_secs_f64(a.connections as f64 / a.rate);
    let count = (a.seconds * a.rate / a.connections as f64) as u64;
    // Connections start spread over one interval, so the load is even from the first moment.
    let offset = interval.mul_f64(c as f64 / a.connections as f64);
    let mut stream = match open(a.addr) {
        Ok(s) => s,
        Err(_) => {
            t.errors += count;
            return t;
        }
    };
    let mine = a.auctions.div_ceil(a.connections as u64).max(1);
    for k in 0..count {
        let due = start + offset + interval.mul_f64(k as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let slot = (k * 7_919) % mine;
        let auction = a.first + (slot * a.connections as u64 + c as u64) % a.auctions;
        let body = format!(
            "{{\"auction_id\":{auction},\"amount\":\"{}.00\",\"bidder_id\":{}}}",
            a.amount_base + k,
            1_000 + c
        );
        match exchange(&mut stream, &body) {
            Ok(status) => {
                t.latencies_us.push(due.elapsed().as_micros() as u64);
                if (200..300).contains(&status) {
                    t.ok += 1;
                } else {
                    t.non2xx += 1;
                }
            }
            Err(_) => {
                t.errors += count - k;
                return t;
            }
        }
    }
    t
}

fn open(addr: SocketAddr) -> std::io::Result<BufReader<TcpStream>> {
    let s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(ANSWER_TIMEOUT_SECS)))?;
    Ok(BufReader::new(s))
}

/// Sends one bid and reads its whole answer; returns the status.
fn exchange(stream: &mut BufReader<TcpStream>, body: &str) -> std::io::Result<u16> {
    let request = format!(
        "POST /api/bids HTTP/1.1\r\nHost: gavel\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.get_mut().write_all(request.as_bytes())?;
    let mut line = String::new();
    stream.read_line(&mut line)?;
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    let mut length = 0usize;
    loop {
        line.clear();
        stream.read_line(&mut line)?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut rest = vec![0u8; length];
    stream.read_exact(&mut rest)?;
    Ok(status)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[i.clamp(1, sorted.len()) - 1]
}

fn main() {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("gavel-openloop: {e}");
            std::process::exit(2);
        }
    };
    let start = Instant::now() + Duration::from_millis(100);
    let tallies: Vec<Tally> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..a.connections)
            .map(|c| {
                let a = &a;
                s.spawn(move || connection(a, c, start))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    let mut all: Vec<u64> = tallies
        .iter()
        .flat_map(|t| t.latencies_us.iter().copied())
        .collect();
    all.sort_unstable();
    let sum = |f: fn(&Tally) -> u64| tallies.iter().map(f).sum::<u64>();
    println!(
        "OPENLOOP sent={} ok={} non2xx={} errors={} p50_us={} p99_us={} p999_us={} max_us={} \
         achieved={:.0}",
        all.len(),
        sum(|t| t.ok),
        sum(|t| t.non2xx),
        sum(|t| t.errors),
        percentile(&all, 50.0),
        percentile(&all, 99.0),
        percentile(&all, 99.9),
        all.last().copied().unwrap_or(0),
        all.len() as f64 / elapsed,
    );
}
