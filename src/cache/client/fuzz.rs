//! Oracle over the RESP framer and decoder, for the fuzz target and the property tests: any
//! bytes from the server give replies or a connection error, never a panic; the same however
//! they arrive; and the replies Gavel decodes itself are the ones the `redis` crate decodes.

use super::resp::{decode, Framer};

/// Every reply in the stream, fed in `pieces`, as debug text; the last entry is the error that
/// stopped it, if one did.
fn replies(pieces: &[&[u8]]) -> Vec<String> {
    let mut framer = Framer::default();
    let mut buf = Vec::new();
    let mut out = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            match framer.frame(&buf) {
                Ok(Some(len)) => {
                    let frame = &buf[..len];
                    let reply = decode(frame);
                    if let (Ok(Ok(value)), Some(b'$' | b'+')) = (&reply, frame.first()) {
                        let theirs = redis::parse_redis_value(frame);
                        assert!(
                            theirs.as_ref().is_ok_and(|v| v == value),
                            "{frame:?}: {value:?} but the redis crate says {theirs:?}"
                        );
                    }
                    out.push(format!("{reply:?}"));
                    buf.drain(..len);
                }
                Ok(None) => break,
                Err(e) => {
                    out.push(format!("error: {e}"));
                    return out;
                }
            }
        }
    }
    out
}

/// Any stream gives the same replies whole, split in two, or a byte at a time.
pub fn resp(data: &[u8]) {
    let whole = replies(&[data]);
    let cut = data.first().map_or(0, |&b| usize::from(b)) % (data.len() + 1);
    let (a, b) = data.split_at(cut);
    assert_eq!(
        whole,
        replies(&[a, b]),
        "replies depend on where the stream is cut"
    );
    let bytewise: Vec<&[u8]> = data.chunks(1).collect();
    assert_eq!(
        whole,
        replies(&bytewise),
        "replies depend on how the stream arrives"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn resp_oracles_hold(data in prop::collection::vec(
            prop::sample::select(b"+-:$*%~_,#(!=>|0123456789\r\n\r\nabOK".to_vec()), 0..80)
        ) {
            resp(&data);
        }

        #[test]
        fn resp_survives_arbitrary_bytes(data in prop::collection::vec(any::<u8>(), 0..80)) {
            resp(&data);
        }
    }
}
