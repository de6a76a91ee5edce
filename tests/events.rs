//! Live updates (API.md v1.1) on real servers over real sockets: `GET /api/auctions/{id}/events`
//! read byte by byte, de-chunked and parsed as the HTML Standard reads an event stream.

mod common;

use std::collections::BTreeSet;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{get, post, psql, spawn_server, test_db_name, Server};

/// How long a test waits for an event it expects.
const EVENT_WAIT_SECS: u64 = 15;

#[derive(Debug, Clone)]
struct Event {
    name: String,
    id: Option<i64>,
    data: Value,
}

/// One open stream, as a client reads it.
struct Stream {
    sock: TcpStream,
    raw: Vec<u8>,
    body: Vec<u8>,
    /// The chunked body's last chunk arrived: the server ended the stream.
    finished: bool,
    /// The connection closed (with or without the last chunk).
    closed: bool,
}

/// A response that is not a stream: status, head and body.
#[derive(Debug)]
struct Refused {
    status: u16,
    head: String,
    body: Value,
}

fn open(addr: SocketAddr, auction: i64, last_id: Option<&str>) -> Result<Stream, Refused> {
    open_with(addr, auction, last_id, |_| {})
}

fn open_with(
    addr: SocketAddr,
    auction: i64,
    last_id: Option<&str>,
    before_connect: impl FnOnce(&socket2::Socket),
) -> Result<Stream, Refused> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    before_connect(&socket);
    socket.connect(&addr.into()).unwrap();
    let mut sock: TcpStream = socket.into();
    let extra = last_id.map_or(String::new(), |id| format!("Last-Event-ID: {id}\r\n"));
    write!(
        sock,
        "GET /api/auctions/{auction}/events HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n{extra}\r\n"
    )
    .unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(EVENT_WAIT_SECS)))
        .unwrap();
    let mut raw = Vec::new();
    let head_end = loop {
        if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let mut buf = [0u8; 4096];
        let n = sock.read(&mut buf).expect("response head");
        assert!(n > 0, "closed before the head");
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8(raw[..head_end].to_vec()).unwrap();
    let status: u16 = head[9..12].parse().unwrap();
    let rest = raw[head_end..].to_vec();
    if status != 200 {
        let len: usize = header(&head, "content-length").unwrap().parse().unwrap();
        let mut body = rest;
        while body.len() < len {
            let mut buf = [0u8; 4096];
            let n = sock.read(&mut buf).unwrap();
            body.extend_from_slice(&buf[..n]);
        }
        return Err(Refused {
            status,
            head,
            body: serde_json::from_slice(&body).unwrap(),
        });
    }
    assert_eq!(header(&head, "content-type"), Some("text/event-stream"));
    assert_eq!(header(&head, "cache-control"), Some("no-store"));
    assert_eq!(header(&head, "transfer-encoding"), Some("chunked"));
    assert_eq!(header(&head, "content-length"), None);
    Ok(Stream {
        sock,
        raw: rest,
        body: Vec::new(),
        finished: false,
        closed: false,
    })
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

impl Stream {
    /// The next event (comments skipped), waiting `wait` at most; `None` if none came or the
    /// stream ended.
    fn next_within(&mut self, wait: Duration) -> Option<Event> {
        let deadline = Instant::now() + wait;
        let mut read_once = false;
        loop {
            self.dechunk();
            if let Some(event) = self.parse_one() {
                return Some(event);
            }
            if self.finished || self.closed {
                return None;
            }
            // Reads at least once, so a zero wait takes what has already arrived.
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() && read_once {
                return None;
            }
            read_once = true;
            self.sock
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            let mut buf = [0u8; 16 * 1024];
            match self.sock.read(&mut buf) {
                Ok(0) => self.closed = true,
                Ok(n) => self.raw.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return None
                }
                Err(_) => self.closed = true,
            }
        }
    }

    fn next(&mut self) -> Event {
        self.next_within(Duration::from_secs(EVENT_WAIT_SECS))
            .expect("an event in time")
    }

    /// Moves complete chunks from `raw` to `body`.
    fn dechunk(&mut self) {
        while !self.finished {
            let Some(line_end) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let size =
                usize::from_str_radix(std::str::from_utf8(&self.raw[..line_end]).unwrap(), 16)
                    .expect("chunk size");
            if size == 0 {
                self.finished = true;
                return;
            }
            let end = line_end + 2 + size + 2;
            if self.raw.len() < end {
                return;
            }
            self.body
                .extend_from_slice(&self.raw[line_end + 2..line_end + 2 + size]);
            assert_eq!(&self.raw[end - 2..end], b"\r\n");
            self.raw.drain(..end);
        }
    }

    /// One complete event from the body, as the HTML Standard reads fields (LF line ends here).
    fn parse_one(&mut self) -> Option<Event> {
        loop {
            let end = self.body.windows(2).position(|w| w == b"\n\n")?;
            let block: Vec<u8> = self.body.drain(..end + 2).collect();
            let text = String::from_utf8(block).unwrap();
            let (mut name, mut id, mut data) = (String::new(), None, Vec::new());
            for line in text.lines() {
                if line.starts_with(':') || line.is_empty() {
                    continue;
                }
                let (field, value) = line.split_once(": ").unwrap_or((line, ""));
                match field {
                    "event" => name = value.to_owned(),
                    "id" => id = Some(value.parse().unwrap()),
                    "data" => data.push(value.to_owned()),
                    other => panic!("unexpected field {other}"),
                }
            }
            if data.is_empty() {
                continue; // comments only
            }
            return Some(Event {
                name,
                id,
                data: serde_json::from_str(&data.join("\n")).unwrap(),
            });
        }
    }

    /// Reads until the server ends the stream; the events on the way.
    fn until_end(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        while let Some(e) = self.next_within(Duration::from_secs(EVENT_WAIT_SECS)) {
            events.push(e);
        }
        assert!(self.finished || self.closed, "the stream did not end");
        events
    }
}

fn new_auction(addr: SocketAddr, body: &str) -> i64 {
    let r = post(addr, "/api/auctions", body);
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    r.json()["id"].as_i64().unwrap()
}

fn long_auction(addr: SocketAddr) -> i64 {
    new_auction(
        addr,
        r#"{"title":"live","seller_id":1,"start_price":"1.00","min_increment":"1.00","duration_seconds":3600}"#,
    )
}

/// Places a bid; its answer's status and body.
fn bid(addr: SocketAddr, auction: i64, bidder: i64, cents: i64) -> (u16, Value) {
    let body = format!(
        r#"{{"auction_id":{auction},"bidder_id":{bidder},"amount":"{}.{:02}"}}"#,
        cents / 100,
        cents % 100
    );
    let r = post(addr, "/api/bids", &body);
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

fn bid_count(addr: SocketAddr, auction: i64) -> i64 {
    get(addr, &format!("/api/auctions/{auction}")).json()["bid_count"]
        .as_i64()
        .unwrap()
}

/// Places `n` accepted bids straight in the database, in one transaction.
fn store_bids(db: &str, auction: i64, n: i64) {
    psql(
        db,
        &format!(
            "SELECT count(*) FROM generate_series(1, {n}) AS g(i), LATERAL gavel_place_bids( \
             ARRAY[{auction}]::bigint[], ARRAY[2 + g.i % 5]::bigint[], \
             ARRAY[g.i * 10]::numeric[], \
             ARRAY[NULL]::bigint[], ARRAY[NULL]::text[], ARRAY[NULL]::bytea[]) AS b"
        ),
    );
}

/// Checks a stream's bid events: ids consecutive from `first`, each the auction's count after it.
fn assert_consecutive(events: &[Event], first: i64) {
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.name, "bid", "{e:?}");
        let id = e.id.unwrap();
        assert_eq!(id, first + i as i64, "a gap or a duplicate at {i}: {e:?}");
        assert_eq!(e.data["auction"]["bid_count"].as_i64(), Some(id));
        assert_eq!(e.data["auction"]["current_price"], e.data["bid"]["amount"]);
        assert_eq!(e.data["auction"]["leader_id"], e.data["bid"]["bidder_id"]);
        assert_eq!(e.data["auction"]["status"], "open");
    }
}

#[test]
fn a_new_stream_starts_with_the_state_and_gets_each_bid() {
    let db = test_db_name("events_basic");
    let s = spawn_server(&db, &[]);
    let auction = long_auction(s.addr);
    let mut stream = open(s.addr, auction, None).unwrap();
    let first = stream.next();
    assert_eq!(first.name, "auction");
    assert_eq!(first.id, Some(0));
    let state = get(s.addr, &format!("/api/auctions/{auction}")).json();
    assert_eq!(first.data, state, "the snapshot is what GET answers");
    let (status, placed) = bid(s.addr, auction, 7, 150);
    assert_eq!(status, 201);
    let e = stream.next();
    assert_eq!(e.name, "bid");
    assert_eq!(e.id, Some(1));
    assert_eq!(e.data["bid"], placed, "the event's bid is the 201's");
    let after = get(s.addr, &format!("/api/auctions/{auction}")).json();
    assert_eq!(
        e.data["auction"], after,
        "the auction as it stood right after the bid"
    );
}

#[test]
fn events_are_in_order_without_gap_or_duplicate_across_two_processes() {
    const BIDDERS: usize = 32;
    const ROUNDS: i64 = 12;
    let db = test_db_name("events_two");
    let a = spawn_server(&db, &[]);
    let b = spawn_server(&db, &[]);
    let auction = long_auction(a.addr);
    let mut streams: Vec<Stream> = [a.addr, b.addr, a.addr, b.addr]
        .iter()
        .map(|&addr| open(addr, auction, None).unwrap())
        .collect();
    for s in &mut streams {
        assert_eq!(s.next().name, "auction");
    }
    let start = Arc::new(Barrier::new(BIDDERS));
    let accepted: Vec<Vec<i64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..BIDDERS)
            .map(|i| {
                let (start, addr) = (start.clone(), [a.addr, b.addr][i % 2]);
                scope.spawn(move || {
                    start.wait();
                    let mut mine = Vec::new();
                    for round in 0..ROUNDS {
                        let cents = 100 + round * 10_000 + i as i64 * 100;
                        let (status, body) = bid(addr, auction, 10 + i as i64, cents);
                        if status == 201 {
                            mine.push(body["id"].as_i64().unwrap());
                        }
                    }
                    mine
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let accepted: BTreeSet<i64> = accepted.into_iter().flatten().collect();
    let total = bid_count(a.addr, auction);
    assert_eq!(total as usize, accepted.len());
    assert!(total > ROUNDS, "too few accepted bids: {total}");
    for (i, s) in streams.iter_mut().enumerate() {
        let events: Vec<Event> = (0..total).map(|_| s.next()).collect();
        assert_consecutive(&events, 1);
        let seen: BTreeSet<i64> = events
            .iter()
            .map(|e| e.data["bid"]["id"].as_i64().unwrap())
            .collect();
        assert_eq!(
            seen, accepted,
            "stream {i} saw other bids than were accepted"
        );
        let ids: Vec<i64> = events
            .iter()
            .map(|e| e.data["bid"]["id"].as_i64().unwrap())
            .collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "acceptance order");
        assert!(
            s.next_within(Duration::from_millis(300)).is_none(),
            "stream {i} got an event past the last bid"
        );
    }
}

#[test]
fn a_resumed_stream_gets_what_it_missed_and_no_state_first() {
    let db = test_db_name("events_resume");
    let s = spawn_server(&db, &[]);
    let auction = long_auction(s.addr);
    store_bids(&db, auction, 1_005);
    let count = bid_count(s.addr, auction);
    assert_eq!(count, 1_005);

    // Nothing missed: nothing until the next bid.
    let mut none_missed = open(s.addr, auction, Some(&count.to_string())).unwrap();
    assert!(none_missed
        .next_within(Duration::from_millis(300))
        .is_none());

    // Some missed: exactly those, then live ones.
    let mut some = open(s.addr, auction, Some(&(count - 3).to_string())).unwrap();
    let missed: Vec<Event> = (0..3).map(|_| some.next()).collect();
    assert_consecutive(&missed, count - 2);

    // At the bound: every one of them.
    let mut at_bound = open(s.addr, auction, Some(&(count - 1_000).to_string())).unwrap();
    let all: Vec<Event> = (0..1_000).map(|_| at_bound.next()).collect();
    assert_consecutive(&all, count - 999);

    // Past the bound: the state instead.
    let mut past = open(s.addr, auction, Some(&(count - 1_001).to_string())).unwrap();
    let state = past.next();
    assert_eq!((state.name.as_str(), state.id), ("auction", Some(count)));

    let (status, _) = bid(s.addr, auction, 99, 100_000_000);
    assert_eq!(status, 201);
    for stream in [&mut none_missed, &mut some, &mut at_bound, &mut past] {
        let e = stream.next();
        assert_consecutive(&[e], count + 1);
    }
}

#[test]
fn a_last_event_id_that_is_not_a_count_up_to_the_current_one_is_refused() {
    let db = test_db_name("events_bad_id");
    let s = spawn_server(&db, &[]);
    let auction = long_auction(s.addr);
    assert_eq!(bid(s.addr, auction, 5, 100).0, 201);
    for bad in ["abc", "-1", "2", "1.0", "99999999999999999999"] {
        let refused = open(s.addr, auction, Some(bad)).err().expect(bad);
        assert_eq!(refused.status, 400, "{bad}");
        assert_eq!(refused.body["error"]["code"], "invalid_field", "{bad}");
        assert_eq!(refused.body["error"]["field"], "Last-Event-ID", "{bad}");
    }
    let missing = open(s.addr, auction + 1_000, None).err().expect("404");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.body["error"]["code"], "not_found");
    assert!(open(s.addr, auction, Some("1")).is_ok());
}

#[test]
fn a_closed_auction_streams_its_state_then_closed_and_ends() {
    let db = test_db_name("events_closed");
    let s = spawn_server(&db, &[]);
    let auction = new_auction(
        s.addr,
        r#"{"title":"short","seller_id":1,"start_price":"1.00","duration_seconds":1}"#,
    );
    std::thread::sleep(Duration::from_millis(2_300));
    let mut stream = open(s.addr, auction, None).unwrap();
    let events = stream.until_end();
    let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["auction", "closed"]);
    assert_eq!(events[1].data["status"], "closed");
    assert!(stream.finished, "the body ends with its last chunk");
}

#[test]
fn a_soft_close_extension_moves_the_closed_event() {
    let db = test_db_name("events_soft_close");
    let s = spawn_server(&db, &[]);
    let auction = new_auction(
        s.addr,
        r#"{"title":"soft","seller_id":1,"start_price":"1.00","duration_seconds":2,"extension_seconds":3}"#,
    );
    let mut stream = open(s.addr, auction, None).unwrap();
    let first = stream.next();
    let first_end = first.data["ends_at"].as_str().unwrap().to_owned();
    let (status, _) = bid(s.addr, auction, 5, 100);
    assert_eq!(status, 201);
    let e = stream.next();
    let extended = e.data["auction"]["ends_at"].as_str().unwrap().to_owned();
    assert!(extended > first_end, "the bid extended the auction");
    let rest = stream.until_end();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].name, "closed");
    assert_eq!(rest[0].data["ends_at"], extended.as_str());
    assert_eq!(rest[0].data["leader_id"], 5);
    let closed_at = common::wall_clock();
    let mut closed_text = String::new();
    closed_at.write_rfc3339(&mut closed_text);
    assert!(
        closed_text >= extended,
        "closed at {closed_text}, before the end {extended}"
    );
}

#[test]
fn a_subscriber_that_does_not_read_is_cut_off_while_others_keep_receiving() {
    let db = test_db_name("events_slow");
    let s = spawn_server(&db, &[]);
    let auction = long_auction(s.addr);
    let mut slow = open_with(s.addr, auction, None, |sock| {
        sock.set_recv_buffer_size(4 * 1024).unwrap();
    })
    .unwrap();
    let mut reader = open(s.addr, auction, None).unwrap();
    reader.next();
    // Well past what the server keeps for one stream and the two sockets' buffers hold.
    let bids = 600;
    let mut received = 0;
    for i in 0..bids {
        assert_eq!(bid(s.addr, auction, 5 + i % 3, 100 + i * 100).0, 201);
        while reader.next_within(Duration::from_millis(0)).is_some() {
            received += 1;
        }
    }
    while received < bids {
        reader.next();
        received += 1;
    }
    let events = slow.until_end();
    assert!(slow.closed && !slow.finished, "cut off, not ended");
    assert!(
        (events.len() as i64) < bids,
        "the slow stream got all {} events",
        events.len()
    );
    assert_eq!(bid(s.addr, auction, 9, 1_000_000).0, 201);
    assert_consecutive(&[reader.next()], bids + 1);
}

#[test]
fn the_listening_connection_cut_mid_stream_loses_no_event() {
    let db = test_db_name("events_listener_cut");
    let s = spawn_server(&db, &[]);
    let auction = long_auction(s.addr);
    let mut stream = open(s.addr, auction, None).unwrap();
    stream.next();
    for i in 0..3 {
        assert_eq!(bid(s.addr, auction, 5, 100 + i * 100).0, 201);
    }
    let terminated = psql(
        &db,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name LIKE '%-live'",
    );
    assert_eq!(terminated.trim(), "1", "one listening connection");
    // Bids while it reconnects: their notifications go nowhere.
    for i in 3..8 {
        assert_eq!(bid(s.addr, auction, 6, 100 + i * 100).0, 201);
    }
    let events: Vec<Event> = (0..8).map(|_| stream.next()).collect();
    assert_consecutive(&events, 1);
    assert_eq!(bid(s.addr, auction, 7, 100_000).0, 201);
    assert_consecutive(&[stream.next()], 9);
}

#[test]
fn past_the_stream_cap_a_stream_is_refused_with_503() {
    let db = test_db_name("events_cap");
    let s = spawn_server(&db, &[("GAVEL_MAX_STREAMS", "2")]);
    let auction = long_auction(s.addr);
    let mut first = open(s.addr, auction, None).unwrap();
    let _second = open(s.addr, auction, None).unwrap();
    let refused = open(s.addr, auction, None).err().expect("503 at the cap");
    let metrics = String::from_utf8(get(s.admin.unwrap(), "/metrics").body).unwrap();
    assert!(
        metrics.lines().any(|l| l == "gavel_live_streams_open 2"),
        "the gauge counts the open streams"
    );
    assert_eq!(refused.status, 503);
    assert_eq!(refused.body["error"]["code"], "unavailable");
    assert!(header(&refused.head, "retry-after").is_some());
    first.next();
    drop(first);
    // The server sees the hang-up and frees the place.
    let deadline = Instant::now() + Duration::from_secs(EVENT_WAIT_SECS);
    loop {
        match open(s.addr, auction, None) {
            Ok(_) => break,
            Err(r) if r.status == 503 && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(r) => panic!("{r:?}"),
        }
    }
}

#[test]
fn shutdown_ends_every_stream() {
    let db = test_db_name("events_shutdown");
    let s: Server = spawn_server(&db, &[]);
    let auction = long_auction(s.addr);
    let mut stream = open(s.addr, auction, None).unwrap();
    stream.next();
    // SAFETY: plain syscall on the child we started.
    unsafe {
        libc::kill(s.child.id() as i32, libc::SIGTERM);
    }
    let started = Instant::now();
    assert!(stream.until_end().is_empty());
    assert!(stream.finished, "ended with the last chunk");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn head_and_cors_work_like_the_other_gets() {
    let db = test_db_name("events_head");
    let s = spawn_server(&db, &[]);
    let auction = long_auction(s.addr);
    let mut sock = TcpStream::connect(s.addr).unwrap();
    write!(
        sock,
        "HEAD /api/auctions/{auction}/events HTTP/1.1\r\nHost: t\r\nOrigin: http://elsewhere.test\r\n\r\nGET /health HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    .unwrap();
    let head = common::read_reply_to(&mut sock, "HEAD").unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    assert_eq!(
        head.header("access-control-allow-origin"),
        Some("*"),
        "an EventSource from another origin may read it"
    );
    let health = common::read_reply(&mut sock).unwrap();
    assert_eq!(
        health.status, 200,
        "HEAD opens no stream: the connection goes on"
    );
}

#[test]
fn a_batch_too_large_for_one_notification_makes_every_stream_catch_up() {
    const AUCTIONS: i64 = 1_200;
    let db = test_db_name("events_big_batch");
    let s = spawn_server(&db, &[]);
    psql(
        &db,
        &format!(
            "INSERT INTO auctions (title, seller_id, start_price, min_increment, starts_at, ends_at) \
             SELECT 'bulk', 1, 1, 1, now() - interval '1 minute', now() + interval '1 hour' \
             FROM generate_series(1, {AUCTIONS})"
        ),
    );
    let mut streams: Vec<Stream> = [1, AUCTIONS / 2, AUCTIONS]
        .iter()
        .map(|&a| open(s.addr, a, None).unwrap())
        .collect();
    for stream in &mut streams {
        stream.next();
    }
    // One batch with a bid on each auction: its notification would not fit a payload.
    let out = psql(
        &db,
        &format!(
            "LISTEN gavel_bids; SELECT count(*) FROM gavel_place_bids( \
             ARRAY(SELECT generate_series(1, {AUCTIONS}))::bigint[], \
             array_fill(5::bigint, ARRAY[{AUCTIONS}]), array_fill(10::numeric, ARRAY[{AUCTIONS}]), \
             array_fill(NULL::bigint, ARRAY[{AUCTIONS}]), array_fill(NULL::text, ARRAY[{AUCTIONS}]), \
             array_fill(NULL::bytea, ARRAY[{AUCTIONS}]))"
        ),
    );
    assert!(out.contains(r#"with payload "*""#), "{out}");
    for stream in &mut streams {
        assert_consecutive(&[stream.next()], 1);
    }
}

#[test]
fn many_streams_ending_at_once_are_all_released() {
    // Several times what one report of the watch holds, all hanging up together.
    const STREAMS: usize = 300;
    let db = test_db_name("events_mass_hangup");
    let cap = STREAMS.to_string();
    let s = spawn_server(&db, &[("GAVEL_MAX_STREAMS", cap.as_str())]);
    let auction = long_auction(s.addr);
    for round in 0..2 {
        let mut streams: Vec<Stream> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(EVENT_WAIT_SECS);
        while streams.len() < STREAMS {
            match open(s.addr, auction, None) {
                Ok(stream) => streams.push(stream),
                // The last round's streams are still being released.
                Err(r) if r.status == 503 && round > 0 && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(r) => panic!("round {round}: {r:?}"),
            }
        }
        for stream in &mut streams {
            assert_eq!(stream.next().name, "auction");
        }
        drop(streams);
        assert_eq!(get(s.addr, "/health").status, 200, "round {round}");
    }
    assert_eq!(bid(s.addr, auction, 5, 100).0, 201);
}
