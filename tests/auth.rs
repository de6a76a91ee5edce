//! Bearer-token authentication on the real server: every POST needs a valid HS256 token when a
//! secret is configured; GETs stay public. Tokens are made by `gavel token` itself.

mod common;

use base64::Engine;
use common::*;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::OnceLock;

const SECRET: &str = "an-auth-secret-of-at-least-32-bytes!";

fn server() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let s = spawn_server(&test_db_name("auth"), &[("GAVEL_AUTH_SECRET", SECRET)]);
            tx.send(s.addr).unwrap();
            let _keep = s;
            loop {
                std::thread::park();
            }
        });
        rx.recv().unwrap()
    })
}

fn token(sub: &str, role: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_gavel"))
        .args(["token", "--sub", sub, "--role", role, "--ttl", "1h"])
        .env("GAVEL_AUTH_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn post_as(addr: SocketAddr, path: &str, body: &str, token: Option<&str>) -> Reply {
    let mut s = connect(addr);
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    send(&mut s, "POST", path, Some(body), &headers);
    read_reply(&mut s).unwrap()
}

fn auction_body(seller: i64) -> String {
    format!(r#"{{"title":"lot","seller_id":{seller},"start_price":"10","duration_seconds":3600}}"#)
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A token with the given claims, signed with `key` (HS256).
fn hand_made(claims: &str, key: &[u8]) -> String {
    use jsonwebtoken::{encode, EncodingKey, Header};
    let claims: serde_json::Value = serde_json::from_str(claims).unwrap();
    encode(&Header::default(), &claims, &EncodingKey::from_secret(key)).unwrap()
}

#[test]
fn posts_need_a_valid_token_and_gets_stay_public() {
    let addr = server();
    let r = post_as(addr, "/api/auctions", &auction_body(7), None);
    assert_eq!((r.status, r.code()), (401, "unauthorized".into()));
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let r = post_as(
        addr,
        "/api/bids",
        r#"{"auction_id":1,"amount":"1","bidder_id":2}"#,
        None,
    );
    assert_eq!(r.status, 401);
    assert_eq!(get(addr, "/health").status, 200);
    assert_eq!(get(addr, "/api/auctions").status, 200);

    let forged = hand_made(
        &format!(r#"{{"sub":"7","role":"admin","exp":{}}}"#, now() + 600),
        b"not-the-secret",
    );
    let expired = hand_made(
        &format!(r#"{{"sub":"7","role":"admin","exp":{}}}"#, now() - 3_600),
        SECRET.as_bytes(),
    );
    let no_exp = hand_made(r#"{"sub":"7","role":"admin"}"#, SECRET.as_bytes());
    let bad_role = hand_made(
        &format!(r#"{{"sub":"7","role":"root","exp":{}}}"#, now() + 600),
        SECRET.as_bytes(),
    );
    let bad_sub = hand_made(
        &format!(r#"{{"sub":"0","role":"admin","exp":{}}}"#, now() + 600),
        SECRET.as_bytes(),
    );
    let claims = b64(format!(r#"{{"sub":"7","role":"admin","exp":{}}}"#, now() + 600).as_bytes());
    let alg_none = format!("{}.{claims}.", b64(br#"{"alg":"none","typ":"JWT"}"#));
    for (what, t) in [
        ("forged", forged.as_str()),
        ("expired", expired.as_str()),
        ("no exp", no_exp.as_str()),
        ("unknown role", bad_role.as_str()),
        ("sub not an id", bad_sub.as_str()),
        ("alg none", alg_none.as_str()),
        ("garbage", "abc.def.ghi"),
    ] {
        let r = post_as(addr, "/api/auctions", &auction_body(7), Some(t));
        assert_eq!((r.status, r.code()), (401, "unauthorized".into()), "{what}");
    }
}

#[test]
fn roles_and_subjects() {
    let addr = server();
    let seller = token("7", "seller");
    let r = post_as(addr, "/api/auctions", &auction_body(7), Some(&seller));
    assert_eq!(r.status, 201, "{}", r.json());
    let auction = r.json()["id"].as_i64().unwrap();
    let r = post_as(addr, "/api/auctions", &auction_body(8), Some(&seller));
    assert_eq!(
        (r.status, r.code()),
        (403, "forbidden".into()),
        "another seller's auction"
    );

    let bidder = token("42", "bidder");
    let r = post_as(addr, "/api/auctions", &auction_body(42), Some(&bidder));
    assert_eq!(r.status, 403, "bidders don't sell");
    let r = post_as(
        addr,
        "/api/bids",
        &format!(r#"{{"auction_id":{auction},"amount":"10"}}"#),
        Some(&bidder),
    );
    assert_eq!(r.status, 201, "bidder_id taken from sub: {}", r.json());
    assert_eq!(r.json()["bidder_id"], 42);
    let r = post_as(
        addr,
        "/api/bids",
        &format!(r#"{{"auction_id":{auction},"amount":"20","bidder_id":43}}"#),
        Some(&bidder),
    );
    assert_eq!(
        (r.status, r.code()),
        (403, "forbidden".into()),
        "another bidder's id"
    );
    let r = post_as(
        addr,
        "/api/bids",
        &format!(r#"{{"auction_id":{auction},"amount":"20","bidder_id":42}}"#),
        Some(&bidder),
    );
    assert_eq!(r.status, 201);
    let r = post_as(
        addr,
        "/api/bids",
        &format!(r#"{{"auction_id":{auction},"amount":"30","bidder_id":9}}"#),
        Some(&seller),
    );
    assert_eq!(r.status, 403, "a seller's token does not bid");

    let admin = token("1", "admin");
    assert_eq!(
        post_as(addr, "/api/auctions", &auction_body(99), Some(&admin)).status,
        201
    );
    let r = post_as(
        addr,
        "/api/bids",
        &format!(r#"{{"auction_id":{auction},"amount":"30","bidder_id":9}}"#),
        Some(&admin),
    );
    assert_eq!(r.status, 201);
    let r = post_as(
        addr,
        "/api/bids",
        &format!(r#"{{"auction_id":{auction},"amount":"40"}}"#),
        Some(&admin),
    );
    assert_eq!(
        (r.status, r.json()["error"]["field"].clone()),
        (400, "bidder_id".into()),
        "admin names the bidder"
    );
}

#[test]
fn token_command_refuses_bad_arguments() {
    let bin = env!("CARGO_BIN_EXE_gavel");
    for args in [
        vec!["token", "--sub", "0", "--role", "bidder"],
        vec!["token", "--sub", "1", "--role", "king"],
        vec!["token", "--sub", "1", "--role", "bidder", "--ttl", "2d"],
        vec!["token", "--nope"],
    ] {
        let out = Command::new(bin)
            .args(&args)
            .env("GAVEL_AUTH_SECRET", SECRET)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
    let out = Command::new(bin)
        .args(["token", "--sub", "1", "--role", "bidder"])
        .env_remove("GAVEL_AUTH_SECRET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "no secret");
}

#[test]
fn idempotency_keys_belong_to_the_token_subject() {
    let addr = server();
    let seller = token("70", "seller");
    let r = post_as(addr, "/api/auctions", &auction_body(70), Some(&seller));
    let auction = r.json()["id"].as_i64().unwrap();
    let body = format!(r#"{{"auction_id":{auction},"amount":"10"}}"#);
    let keyed = |token: &str| {
        let mut s = connect(addr);
        let auth = format!("Bearer {token}");
        let headers = [("Authorization", auth.as_str()), ("Idempotency-Key", "k")];
        send(&mut s, "POST", "/api/bids", Some(&body), &headers);
        read_reply(&mut s).unwrap()
    };
    let (first, second) = (token("420", "bidder"), token("421", "bidder"));
    let mine = keyed(&first);
    assert_eq!(mine.status, 201);
    assert_eq!(mine.json()["bidder_id"], 420);
    let theirs = keyed(&second);
    assert_eq!(theirs.status, 409, "decided for bidder 421, not replayed");
    assert_eq!(theirs.header("idempotent-replayed"), None);
    let again = keyed(&first);
    assert_eq!((again.status, &again.body), (201, &mine.body));
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
}
