//! JSON responses written straight into the output buffer, without an intermediate value.

use crate::domain::auction::{Auction, Bid};
use crate::domain::money::Money;
use crate::domain::time::Timestamp;

pub fn write_json_str(out: &mut Vec<u8>, s: &str) {
    // Writing a str to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

pub fn write_money_or_null(out: &mut Vec<u8>, m: Option<Money>) {
    match m {
        None => out.extend_from_slice(b"null"),
        Some(m) => {
            out.push(b'"');
            out.extend_from_slice(m.to_string().as_bytes());
            out.push(b'"');
        }
    }
}

fn write_i64(out: &mut Vec<u8>, n: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

fn write_opt_i64(out: &mut Vec<u8>, n: Option<i64>) {
    match n {
        None => out.extend_from_slice(b"null"),
        Some(n) => write_i64(out, n),
    }
}

fn write_time(out: &mut Vec<u8>, t: Timestamp) {
    let mut s = String::with_capacity(27);
    t.write_rfc3339(&mut s);
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

/// Writes `"name":` preceded by a comma unless it is the first member.
fn key(out: &mut Vec<u8>, name: &str, first: bool) {
    if !first {
        out.push(b',');
    }
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

pub fn write_auction(out: &mut Vec<u8>, a: &Auction, now: Timestamp) {
    out.push(b'{');
    key(out, "id", true);
    write_i64(out, a.id);
    key(out, "title", false);
    write_json_str(out, &a.title);
    key(out, "seller_id", false);
    write_i64(out, a.seller_id);
    key(out, "start_price", false);
    write_money_or_null(out, Some(a.start_price));
    key(out, "min_increment", false);
    write_money_or_null(out, Some(a.min_increment));
    key(out, "starts_at", false);
    write_time(out, a.starts_at);
    key(out, "ends_at", false);
    write_time(out, a.ends_at);
    key(out, "extension_seconds", false);
    write_i64(out, i64::from(a.extension_seconds));
    key(out, "status", false);
    write_json_str(out, a.status(now).as_str());
    key(out, "current_price", false);
    write_money_or_null(out, a.current_price);
    key(out, "leader_id", false);
    write_opt_i64(out, a.leader_id);
    key(out, "bid_count", false);
    write_i64(out, a.bid_count);
    key(out, "min_next_bid", false);
    write_money_or_null(out, Some(a.min_next_bid()));
    key(out, "created_at", false);
    write_time(out, a.created_at);
    out.push(b'}');
}

pub fn write_bid(out: &mut Vec<u8>, b: &Bid) {
    out.push(b'{');
    key(out, "id", true);
    write_i64(out, b.id);
    key(out, "auction_id", false);
    write_i64(out, b.auction_id);
    key(out, "amount", false);
    write_money_or_null(out, Some(b.amount));
    key(out, "bidder_id", false);
    write_i64(out, b.bidder_id);
    key(out, "is_winning", false);
    out.extend_from_slice(if b.is_winning { b"true" } else { b"false" });
    key(out, "created_at", false);
    write_time(out, b.created_at);
    out.push(b'}');
}

/// `{"<name>":[items...],"<cursor>":n|null}`
pub fn write_page<T>(
    out: &mut Vec<u8>,
    name: &str,
    items: &[T],
    cursor_name: &str,
    cursor: Option<i64>,
    mut item: impl FnMut(&mut Vec<u8>, &T),
) {
    out.push(b'{');
    key(out, name, true);
    out.push(b'[');
    for (i, it) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        item(out, it);
    }
    out.push(b']');
    key(out, cursor_name, false);
    write_opt_i64(out, cursor);
    out.push(b'}');
}
