//! Every endpoint and error code of API.md, over real sockets against the real server and database.

mod common;

use common::*;
use serde_json::Value;

fn auction_body(extra: &str) -> String {
    format!(r#"{{"title":"Vintage watch","seller_id":7,"start_price":"100.00"{extra}}}"#)
}

#[test]
fn health_and_ready() {
    let addr = shared();
    assert_healthy(addr);
    let r = get(addr, "/ready");
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["postgres"], "up");
    assert_eq!(v["redis"], "disabled");
    assert_eq!(v["status"], "degraded");
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
}

#[test]
fn create_and_get_an_auction() {
    let addr = shared();
    let r = post(
        addr,
        "/api/auctions",
        &auction_body(
            r#","min_increment":5,"duration_seconds":3600,"extension_seconds":30,"unknown":[1]"#,
        ),
    );
    assert_eq!(r.status, 201);
    let a = r.json();
    let id = a["id"].as_i64().unwrap();
    assert_eq!(
        r.header("location"),
        Some(format!("/api/auctions/{id}").as_str())
    );
    assert_eq!(a["title"], "Vintage watch");
    assert_eq!(a["seller_id"], 7);
    assert_eq!(a["start_price"], "100.00");
    assert_eq!(a["min_increment"], "5.00");
    assert_eq!(a["extension_seconds"], 30);
    assert_eq!(a["status"], "open");
    assert_eq!(a["current_price"], Value::Null);
    assert_eq!(a["leader_id"], Value::Null);
    assert_eq!(a["bid_count"], 0);
    assert_eq!(a["min_next_bid"], "100.00");
    for t in ["starts_at", "ends_at", "created_at"] {
        let s = a[t].as_str().unwrap();
        assert_eq!(s.len(), 27, "{t}: {s}");
        assert!(s.ends_with('Z'));
    }
    let g = get(addr, &format!("/api/auctions/{id}"));
    assert_eq!(g.status, 200);
    assert_eq!(g.json(), a);
}

#[test]
fn auction_defaults_and_explicit_times() {
    let addr = shared();
    let r = post(
        addr,
        "/api/auctions",
        &auction_body(
            r#","ends_at":"2999-01-01T00:00:00+01:00","starts_at":"2998-06-01t00:00:00z","min_increment":null"#,
        ),
    );
    assert_eq!(r.status, 201, "{:?}", r.json());
    let a = r.json();
    assert_eq!(a["min_increment"], "1.00");
    assert_eq!(a["extension_seconds"], 0);
    assert_eq!(a["status"], "scheduled");
    assert_eq!(a["starts_at"], "2998-06-01T00:00:00.000000Z");
    assert_eq!(a["ends_at"], "2998-12-31T23:00:00.000000Z");
}

#[test]
fn auction_field_errors_name_the_field() {
    let addr = shared();
    let cases: &[(&str, &str)] = &[
        (
            r#"{"seller_id":7,"start_price":"1","duration_seconds":60}"#,
            "title",
        ),
        (
            r#"{"title":"   ","seller_id":7,"start_price":"1","duration_seconds":60}"#,
            "title",
        ),
        (
            r#"{"title":"a\u0007b","seller_id":7,"start_price":"1","duration_seconds":60}"#,
            "title",
        ),
        (
            r#"{"title":5,"seller_id":7,"start_price":"1","duration_seconds":60}"#,
            "title",
        ),
        (
            r#"{"title":"x","seller_id":"7","start_price":"1","duration_seconds":60}"#,
            "seller_id",
        ),
        (
            r#"{"title":"x","seller_id":0,"start_price":"1","duration_seconds":60}"#,
            "seller_id",
        ),
        (
            r#"{"title":"x","seller_id":null,"start_price":"1","duration_seconds":60}"#,
            "seller_id",
        ),
        (
            r#"{"title":"x","seller_id":7,"start_price":"1.005","duration_seconds":60}"#,
            "start_price",
        ),
        (
            r#"{"title":"x","seller_id":7,"start_price":"0","duration_seconds":60}"#,
            "start_price",
        ),
        (
            r#"{"title":"x","seller_id":7,"start_price":"1","min_increment":"-1","duration_seconds":60}"#,
            "min_increment",
        ),
        (
            r#"{"title":"x","seller_id":7,"start_price":"1","starts_at":"tomorrow","duration_seconds":60}"#,
            "starts_at",
        ),
        (
            r#"{"title":"x","seller_id":7,"start_price":"1"}"#,
            "ends_at",
        ),
        (
            r#"{"title":"x","seller_id":7,"start_price":"1","duration_seconds":60,"ends_at":"2999-01-01T00:00:00Z"}"#,
            "duration_seconds",
        ),
        (
            r#"{"title":"x","seller_id":7,"start_price":"1","duration_seconds":0}"#,
            "duration_seconds",
        ),
        (
            r#"{"title":"x","seller_id":7,"start_price":"1","duration_seconds":31536001}"#,
            "duration_seconds",
        ),
        (
            r#"{"title":"x","seller_id":7,"start_price":"1","duration_seconds":1.5}"#,
            "duration_seconds",
        ),
        (
            r#"{"title":"x","seller_id":7,"start_price":"1","ends_at":"2001-01-01T00:00:00Z"}"#,
            "ends_at",
        ),
        (
            r#"{"title":"x","seller_id":7,"start_price":"1","ends_at":"2999-01-01T00:00:00"}"#,
            "ends_at",
        ),
        (
            r#"{"title":"x","seller_id":7,"start_price":"1","duration_seconds":60,"extension_seconds":3601}"#,
            "extension_seconds",
        ),
        (
            r#"{"title":"x","seller_id":7,"start_price":"1","duration_seconds":60,"extension_seconds":-1}"#,
            "extension_seconds",
        ),
    ];
    for (body, field) in cases {
        let r = post(addr, "/api/auctions", body);
        assert_eq!(r.status, 400, "{body}");
        let v = r.json();
        assert_eq!(v["error"]["code"], "invalid_field", "{body}");
        assert_eq!(v["error"]["field"], *field, "{body}");
        assert!(v["error"]["message"].is_string());
    }
    let title_200 = "é".repeat(200);
    let ok = post(
        addr,
        "/api/auctions",
        &format!(
            r#"{{"title":"{title_200}","seller_id":7,"start_price":"1","duration_seconds":60}}"#
        ),
    );
    assert_eq!(ok.status, 201);
    let title_201 = "é".repeat(201);
    let bad = post(
        addr,
        "/api/auctions",
        &format!(
            r#"{{"title":"{title_201}","seller_id":7,"start_price":"1","duration_seconds":60}}"#
        ),
    );
    assert_eq!(bad.json()["error"]["field"], "title");
}

#[test]
fn path_ids_that_are_not_ids_are_404() {
    let addr = shared();
    for path in [
        "/api/auctions/abc",
        "/api/auctions/0",
        "/api/auctions/1e3",
        "/api/auctions/-1",
        "/api/auctions/01",
        "/api/auctions/9223372036854775808",
        "/api/auctions/9223372036854775807",
        "/api/auctions/",
        "/api/bids/abc",
        "/api/bids/9223372036854775807",
        "/nope",
        "/",
    ] {
        let r = get(addr, path);
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.code(), "not_found", "{path}");
    }
}

#[test]
fn wrong_method_is_405_with_allow() {
    let addr = shared();
    for (method, path, allow) in [
        ("DELETE", "/api/auctions", "GET, HEAD, POST"),
        ("PUT", "/api/auctions/1", "GET, HEAD"),
        ("GET", "/api/bids", "POST"),
        ("POST", "/health", "GET, HEAD"),
        ("POST", "/api/bids/1", "GET, HEAD"),
    ] {
        let r = request(addr, method, path, None);
        assert_eq!(r.status, 405, "{method} {path}");
        assert_eq!(r.code(), "method_not_allowed");
        assert_eq!(r.header("allow"), Some(allow));
    }
}

#[test]
fn content_type_rules() {
    let addr = shared();
    let body = r#"{"auction_id":9223372036854775806,"amount":"1","bidder_id":2}"#;
    for (ct, want) in [
        ("text/plain", 415),
        ("application/x-www-form-urlencoded", 415),
        ("application/json; charset=utf-8", 404),
        ("application/problem+json", 404),
        ("APPLICATION/JSON", 404),
    ] {
        let req = format!(
            "POST /api/bids HTTP/1.1\r\nHost: t\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let r = raw(addr, req.as_bytes());
        assert_eq!(r.status, want, "{ct}");
        if want == 415 {
            assert_eq!(r.code(), "unsupported_media_type");
        }
    }
    let req = format!(
        "POST /api/bids HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(
        raw(addr, req.as_bytes()).status,
        404,
        "a missing Content-Type is JSON"
    );
}

#[test]
fn bid_rules_in_order() {
    let addr = shared();
    let a = open_auction(addr, 7, "100.00", "5.00");
    let id = a["id"].as_i64().unwrap();
    let bid = |amount: &str, bidder: i64| {
        post(
            addr,
            "/api/bids",
            &format!(r#"{{"auction_id":{id},"amount":{amount},"bidder_id":{bidder}}}"#),
        )
    };
    let unknown = post(
        addr,
        "/api/bids",
        r#"{"auction_id":9223372036854775807,"amount":"1","bidder_id":2}"#,
    );
    assert_eq!((unknown.status, unknown.code()), (404, "not_found".into()));

    let own = bid("\"500\"", 7);
    assert_eq!((own.status, own.code()), (403, "forbidden".into()));

    let low = bid("\"99.99\"", 42);
    assert_eq!(low.status, 409);
    let e = low.json();
    assert_eq!(e["error"]["code"], "bid_too_low");
    assert_eq!(e["error"]["current_price"], Value::Null);
    assert_eq!(e["error"]["min_next_bid"], "100.00");

    let ok = bid("100", 42);
    assert_eq!(ok.status, 201);
    let b = ok.json();
    assert_eq!(b["auction_id"], id);
    assert_eq!(b["amount"], "100.00");
    assert_eq!(b["bidder_id"], 42);
    assert_eq!(b["is_winning"], true);
    assert_eq!(b["created_at"].as_str().unwrap().len(), 27);

    let low2 = bid("104.99", 43);
    let e = low2.json();
    assert_eq!(e["error"]["current_price"], "100.00");
    assert_eq!(e["error"]["min_next_bid"], "105.00");
    assert_eq!(bid("105", 43).status, 201);

    let a = get(addr, &format!("/api/auctions/{id}")).json();
    assert_eq!(a["current_price"], "105.00");
    assert_eq!(a["leader_id"], 43);
    assert_eq!(a["bid_count"], 2);
    assert_eq!(a["min_next_bid"], "110.00");
}

#[test]
fn bids_on_scheduled_and_closed_auctions() {
    let addr = shared();
    let s = post(
        addr,
        "/api/auctions",
        &auction_body(r#","starts_at":"2999-01-01T00:00:00Z","duration_seconds":60"#),
    )
    .json();
    let r = post(
        addr,
        "/api/bids",
        &format!(
            r#"{{"auction_id":{},"amount":"500","bidder_id":7}}"#,
            s["id"]
        ),
    );
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["error"]["code"], "auction_not_open");
    assert_eq!(
        r.json()["error"]["status"],
        "scheduled",
        "not-open is checked before the seller rule"
    );

    let c = post(
        addr,
        "/api/auctions",
        &auction_body(r#","duration_seconds":1"#),
    )
    .json();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let r = post(
        addr,
        "/api/bids",
        &format!(
            r#"{{"auction_id":{},"amount":"500","bidder_id":8}}"#,
            c["id"]
        ),
    );
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["error"]["status"], "closed");
    assert_eq!(
        get(addr, &format!("/api/auctions/{}", c["id"])).json()["status"],
        "closed"
    );
}

#[test]
fn bid_field_errors() {
    let addr = shared();
    for (body, field) in [
        (r#"{"amount":"1","bidder_id":2}"#, "auction_id"),
        (r#"{"auction_id":1,"bidder_id":2}"#, "amount"),
        (r#"{"auction_id":1,"amount":"1"}"#, "bidder_id"),
        (
            r#"{"auction_id":1,"amount":"12.500","bidder_id":2}"#,
            "amount",
        ),
        (
            r#"{"auction_id":1,"amount":12.500,"bidder_id":2}"#,
            "amount",
        ),
        (r#"{"auction_id":1,"amount":"12.","bidder_id":2}"#, "amount"),
        (r#"{"auction_id":1,"amount":".5","bidder_id":2}"#, "amount"),
        (r#"{"auction_id":1,"amount":"1e3","bidder_id":2}"#, "amount"),
        (r#"{"auction_id":1,"amount":1e3,"bidder_id":2}"#, "amount"),
        (r#"{"auction_id":1,"amount":"-5","bidder_id":2}"#, "amount"),
        (r#"{"auction_id":1,"amount":" 5","bidder_id":2}"#, "amount"),
        (
            r#"{"auction_id":1,"amount":"1000000000000","bidder_id":2}"#,
            "amount",
        ),
        (r#"{"auction_id":1,"amount":true,"bidder_id":2}"#, "amount"),
        (
            r#"{"auction_id":"1","amount":"1","bidder_id":2}"#,
            "auction_id",
        ),
        (
            r#"{"auction_id":1.0,"amount":"1","bidder_id":2}"#,
            "auction_id",
        ),
        (
            r#"{"auction_id":1,"amount":"1","bidder_id":-2}"#,
            "bidder_id",
        ),
        (
            r#"{"auction_id":1,"amount":"1","bidder_id":9223372036854775808}"#,
            "bidder_id",
        ),
    ] {
        let r = post(addr, "/api/bids", body);
        assert_eq!(r.status, 400, "{body}");
        assert_eq!(r.json()["error"]["code"], "invalid_field", "{body}");
        assert_eq!(r.json()["error"]["field"], field, "{body}");
    }
}

#[test]
fn money_at_the_maximum() {
    let addr = shared();
    let a = open_auction(addr, 7, "999999999999.99", "0.01");
    let id = a["id"].as_i64().unwrap();
    let r = post(
        addr,
        "/api/bids",
        &format!(r#"{{"auction_id":{id},"amount":999999999999.99,"bidder_id":2}}"#),
    );
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["amount"], "999999999999.99");
    let a = get(addr, &format!("/api/auctions/{id}")).json();
    assert_eq!(a["min_next_bid"], "1000000000000.00");
    let r = post(
        addr,
        "/api/bids",
        &format!(r#"{{"auction_id":{id},"amount":"999999999999.99","bidder_id":3}}"#),
    );
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["error"]["min_next_bid"], "1000000000000.00");
}

#[test]
fn soft_close_extends_the_end() {
    let addr = shared();
    let a = post(
        addr,
        "/api/auctions",
        &auction_body(r#","duration_seconds":60,"extension_seconds":600"#),
    )
    .json();
    let id = a["id"].as_i64().unwrap();
    let b = post(
        addr,
        "/api/bids",
        &format!(r#"{{"auction_id":{id},"amount":"100","bidder_id":2}}"#),
    )
    .json();
    let created = b["created_at"].as_str().unwrap();
    let after = get(addr, &format!("/api/auctions/{id}")).json();
    let ends = after["ends_at"].as_str().unwrap();
    // ends_at = created_at + 600 s: compare through the server's own formatting.
    let c = common_time(created) + 600_000_000;
    assert_eq!(common_time(ends), c, "{created} -> {ends}");

    let far = post(
        addr,
        "/api/auctions",
        &auction_body(r#","duration_seconds":7200,"extension_seconds":600"#),
    )
    .json();
    let fid = far["id"].as_i64().unwrap();
    post(
        addr,
        "/api/bids",
        &format!(r#"{{"auction_id":{fid},"amount":"100","bidder_id":2}}"#),
    );
    let same = get(addr, &format!("/api/auctions/{fid}")).json();
    assert_eq!(
        same["ends_at"], far["ends_at"],
        "no extension when the end is far"
    );
}

/// Microseconds since the epoch of a `YYYY-MM-DDTHH:MM:SS.ffffffZ` string.
fn common_time(s: &str) -> i64 {
    gavel::domain::time::Timestamp::parse_rfc3339(s)
        .unwrap()
        .unix_micros()
}

#[test]
fn listing_auctions_pages_and_filters() {
    let addr = shared();
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(open_auction(addr, 9, "1", "1")["id"].as_i64().unwrap());
    }
    let after = ids[0] - 1;
    let p1 = get(addr, &format!("/api/auctions?limit=2&after_id={after}")).json();
    let got: Vec<i64> = p1["auctions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_i64().unwrap())
        .collect();
    assert_eq!(got, ids[..2]);
    assert_eq!(p1["next_after_id"], ids[1]);
    let p2 = get(
        addr,
        &format!("/api/auctions?limit=200&after_id={}", ids[1]),
    )
    .json();
    assert!(p2["next_after_id"].is_null(), "last page");
    let listed: Vec<i64> = p2["auctions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_i64().unwrap())
        .collect();
    assert!(listed.windows(2).all(|w| w[0] < w[1]));
    for id in &ids[2..] {
        assert!(listed.contains(id));
    }
    let open = get(addr, "/api/auctions?status=open&limit=200").json();
    assert!(open["auctions"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["status"] == "open"));
    let sched = get(addr, "/api/auctions?status=scheduled&limit=200").json();
    assert!(sched["auctions"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["status"] == "scheduled"));
    let dflt = get(addr, "/api/auctions").json();
    assert!(dflt["auctions"].as_array().unwrap().len() <= 50);
    for (q, field) in [
        ("status=done", "status"),
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=abc", "limit"),
        ("limit=", "limit"),
        ("after_id=-1", "after_id"),
        ("after_id=1.5", "after_id"),
    ] {
        let r = get(addr, &format!("/api/auctions?{q}"));
        assert_eq!(r.status, 400, "{q}");
        assert_eq!(r.json()["error"]["field"], field, "{q}");
    }
    assert_eq!(get(addr, "/api/auctions?limit=200").status, 200);
    assert_eq!(get(addr, "/api/auctions?limit=1").status, 200);
}

#[test]
fn listing_bids_newest_first() {
    let addr = shared();
    let a = open_auction(addr, 7, "10", "1");
    let id = a["id"].as_i64().unwrap();
    let mut bid_ids = Vec::new();
    for i in 0..5 {
        let r = post(
            addr,
            "/api/bids",
            &format!(
                r#"{{"auction_id":{id},"amount":"{}","bidder_id":{}}}"#,
                10 + i,
                20 + i
            ),
        );
        assert_eq!(r.status, 201);
        bid_ids.push(r.json()["id"].as_i64().unwrap());
    }
    let p1 = get(addr, &format!("/api/bids/{id}?limit=2")).json();
    let bids = p1["bids"].as_array().unwrap();
    assert_eq!(bids.len(), 2);
    assert_eq!(bids[0]["id"], bid_ids[4]);
    assert_eq!(bids[0]["is_winning"], true);
    assert_eq!(bids[1]["is_winning"], false);
    assert_eq!(bids[0]["amount"], "14.00");
    assert_eq!(p1["next_before_id"], bid_ids[3]);
    let p2 = get(
        addr,
        &format!("/api/bids/{id}?limit=500&before_id={}", bid_ids[3]),
    )
    .json();
    let rest: Vec<i64> = p2["bids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_i64().unwrap())
        .collect();
    assert_eq!(rest, vec![bid_ids[2], bid_ids[1], bid_ids[0]]);
    assert!(p2["next_before_id"].is_null());
    let empty = open_auction(addr, 7, "10", "1");
    let e = get(addr, &format!("/api/bids/{}", empty["id"])).json();
    assert_eq!(e["bids"], serde_json::json!([]));
    assert!(e["next_before_id"].is_null());
    assert_eq!(get(addr, "/api/bids/9223372036854775806").status, 404);
    for q in ["limit=0", "limit=501", "before_id=0", "before_id=x"] {
        let r = get(addr, &format!("/api/bids/{id}?{q}"));
        assert_eq!(r.status, 400, "{q}");
        assert_eq!(r.code(), "invalid_field");
    }
}

#[test]
fn head_and_cors_and_gzip() {
    let addr = shared();
    let r = raw(
        addr,
        b"GET /health HTTP/1.1\r\nHost: t\r\nOrigin: https://example.com\r\n\r\n",
    );
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    let mut s = connect(addr);
    std::io::Write::write_all(
        &mut s,
        b"OPTIONS /api/bids HTTP/1.1\r\nHost: t\r\nOrigin: https://x.example\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\n\r\n",
    )
    .unwrap();
    let pre = read_reply(&mut s).unwrap();
    assert_eq!(pre.status, 204);
    assert!(pre
        .header("access-control-allow-methods")
        .unwrap()
        .contains("POST"));
    let big = get(addr, "/api/auctions?limit=200");
    let len = big.body.len();
    if len > 1024 {
        let mut s = connect(addr);
        send(
            &mut s,
            "GET",
            "/api/auctions?limit=200",
            None,
            &[("Accept-Encoding", "gzip")],
        );
        let z = read_reply(&mut s).unwrap();
        assert_eq!(z.header("content-encoding"), Some("gzip"));
        assert!(z.body.len() < len);
    }
}

#[test]
fn every_response_carries_a_request_id() {
    let addr = shared();
    let hex32 = |v: Option<&str>| {
        let v = v.expect("X-Request-Id present");
        assert_eq!(v.len(), 32, "{v}");
        assert!(v.bytes().all(|b| b.is_ascii_hexdigit()), "{v}");
        v.to_owned()
    };
    let a = hex32(get(addr, "/health").header("x-request-id"));
    let b = hex32(get(addr, "/nope").header("x-request-id"));
    assert_ne!(a, b);

    let mut s = connect(addr);
    send(
        &mut s,
        "GET",
        "/health",
        None,
        &[("X-Request-Id", "trace-42:abc")],
    );
    assert_eq!(
        read_reply(&mut s).unwrap().header("x-request-id"),
        Some("trace-42:abc")
    );
    send(
        &mut s,
        "GET",
        "/health",
        None,
        &[("X-Request-Id", "two words")],
    );
    hex32(read_reply(&mut s).unwrap().header("x-request-id"));

    let many: String = (0..100).map(|i| format!("X-H{i}: v\r\n")).collect();
    let r = raw(
        addr,
        format!("GET /health HTTP/1.1\r\nHost: t\r\n{many}\r\n").as_bytes(),
    );
    assert_eq!(r.status, 431);
    hex32(r.header("x-request-id"));
    let pre = raw(
        addr,
        b"OPTIONS /api/bids HTTP/1.1\r\nHost: t\r\nOrigin: https://x.example\r\nAccess-Control-Request-Method: POST\r\nX-Request-Id: pre-1\r\n\r\n",
    );
    assert_eq!(pre.header("x-request-id"), Some("pre-1"));
}
