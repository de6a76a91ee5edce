//! Query-string parameters: percent-decoded, first occurrence wins, unknown names ignored.

use super::error::ApiError;
use super::fields::{int_in_range, range_error};

pub struct Params {
    pairs: Vec<(String, String)>,
}

/// More pairs than this are ignored: no route reads more than three.
const MAX_QUERY_PAIRS: usize = 32;

impl Params {
    pub fn parse(query: Option<&str>) -> Params {
        let pairs = query
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .take(MAX_QUERY_PAIRS)
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (decode(k), decode(v))
            })
            .collect();
        Params { pairs }
    }

    pub fn get(&self, name: &str) -> Option<String> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    /// A plain decimal integer within `min..=max`; anything else names the parameter in a 400.
    pub fn int(&self, name: &'static str, min: i64, max: i64) -> Result<Option<i64>, ApiError> {
        self.get(name)
            .map(|v| int_in_range(&v, min, max).ok_or_else(|| range_error(name, min, max)))
            .transpose()
    }
}

/// `%XX` escapes and `+` as space; a broken escape is kept as text (and then fails validation).
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_validates() {
        let p = Params::parse(Some("status=op%65n&limit=5&limit=7&x&after_id=%zz"));
        assert_eq!(p.get("status").as_deref(), Some("open"));
        assert_eq!(p.int("limit", 1, 200), Ok(Some(5)));
        assert_eq!(p.get("x").as_deref(), Some(""));
        assert!(p.int("after_id", 0, 10).is_err());
        assert_eq!(p.int("missing", 0, 1), Ok(None));
        assert!(Params::parse(Some("limit=201"))
            .int("limit", 1, 200)
            .is_err());
        assert!(Params::parse(Some("limit=0")).int("limit", 1, 200).is_err());
        assert!(Params::parse(Some("limit=")).int("limit", 1, 200).is_err());
        assert!(Params::parse(Some("limit=-1"))
            .int("limit", 1, 200)
            .is_err());
        assert_eq!(Params::parse(Some("a=%4")).get("a").as_deref(), Some("%4"));
        assert_eq!(Params::parse(Some("a=%")).get("a").as_deref(), Some("%"));
    }
}
