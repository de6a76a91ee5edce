//! The `Date` header value (IMF-fixdate), formatted at most once per second per thread.

use crate::calendar::civil_from_days;
use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// `Sun, 06 Nov 1994 08:49:37 GMT`
pub(crate) const DATE_LEN: usize = 29;

thread_local! {
    // A worker thread serves many responses per second; formatting once per second and copying
    // 29 bytes afterwards keeps the header off the hot path. A thread-local needs no
    // synchronisation; it is only read without yielding, so a coroutine never holds it while it
    // might move to another thread.
    static CACHE: RefCell<(u64, [u8; DATE_LEN])> =
        const { RefCell::new((u64::MAX, [0; DATE_LEN])) };
}

/// Appends the current date in IMF-fixdate form.
pub(crate) fn append_now(out: &mut Vec<u8>) {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.0 != secs {
            *cache = (secs, format(secs));
        }
        out.extend_from_slice(&cache.1);
    });
}

/// Formats seconds since the Unix epoch as IMF-fixdate (RFC 9110 §5.6.7).
pub(crate) fn format(secs: u64) -> [u8; DATE_LEN] {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days as i64);
    let (year, month, day) = (year as u64, month as u64, day as u64);
    let mut out = [b' '; DATE_LEN];
    out[..3].copy_from_slice(DAYS[(days % 7) as usize]);
    out[3] = b',';
    put2(&mut out[5..7], day);
    out[8..11].copy_from_slice(MONTHS[(month - 1) as usize]);
    put4(&mut out[12..16], year);
    put2(&mut out[17..19], rem / 3600);
    out[19] = b':';
    put2(&mut out[20..22], rem % 3600 / 60);
    out[22] = b':';
    put2(&mut out[23..25], rem % 60);
    out[26..29].copy_from_slice(b"GMT");
    out
}

fn put2(dst: &mut [u8], v: u64) {
    dst[0] = b'0' + (v / 10 % 10) as u8;
    dst[1] = b'0' + (v % 10) as u8;
}

fn put4(dst: &mut [u8], v: u64) {
    put2(&mut dst[..2], v / 100);
    put2(&mut dst[2..], v % 100);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(&format(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(&format(784_111_777), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(&format(951_782_400), b"Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(&format(4_102_444_799), b"Thu, 31 Dec 2099 23:59:59 GMT");
    }

    #[test]
    fn appends_twenty_nine_bytes() {
        let mut out = Vec::new();
        append_now(&mut out);
        append_now(&mut out);
        assert_eq!(out.len(), 2 * DATE_LEN);
        assert!(out.ends_with(b" GMT"));
    }
}
