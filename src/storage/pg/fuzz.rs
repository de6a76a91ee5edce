//! Oracle over the PostgreSQL message splitter and the reply demultiplexer, for the fuzz target
//! and the property tests: any bytes from the server give answers or a connection error, never
//! a panic, and the same outcome however they arrive.

use std::collections::VecDeque;

use bytes::BytesMut;
use may::sync::mpsc::channel;
use postgres_types::Type;

use super::codec::next_message;
use super::demux::{Demux, Pending};

/// Message tags the backend sends (and one it never does), so most fuzzed messages are ones
/// the demultiplexer must look inside.
const TAGS: &[u8] = b"123ACDEGHIKnNRsStTZ?";

/// Turns fuzz input into a stream: with the first byte even, each message is a tag byte, a body
/// length byte and that many body bytes, framed with a correct length word; with it odd, the
/// rest is the stream as it is.
pub fn stream(data: &[u8]) -> Vec<u8> {
    let Some((&mode, mut rest)) = data.split_first() else {
        return Vec::new();
    };
    if mode % 2 == 1 {
        return rest.to_vec();
    }
    let mut out = Vec::new();
    while let [tag, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        out.push(TAGS[usize::from(*tag) % TAGS.len()]);
        out.extend_from_slice(&((n + 4) as u32).to_be_bytes());
        out.extend_from_slice(&tail[..n]);
        rest = &tail[n..];
    }
    out
}

/// Feeds `pieces` to a fresh demultiplexer with requests of several shapes waiting; returns
/// how many requests completed and whether the connection failed.
fn outcome(pieces: &[&[u8]]) -> (usize, bool) {
    let columns: [&[Type]; 3] = [
        &[Type::INT8, Type::NUMERIC, Type::TIMESTAMPTZ],
        &[Type::TEXT, Type::BOOL, Type::INT4],
        &[],
    ];
    let mut receivers = Vec::new();
    let mut queue: VecDeque<Pending> = VecDeque::new();
    for cols in columns {
        let (tx, rx) = channel();
        queue.push_back(Pending::rows(cols.to_vec().into(), tx));
        receivers.push(rx);
    }
    let (tx, text_rx) = channel();
    queue.push_back(Pending::text(tx));
    let mut demux = Demux::default();
    let mut buf = BytesMut::new();
    let mut done = 0;
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            let step = next_message(&mut buf).and_then(|m| {
                m.map(|m| demux.on_message(m, || queue.pop_front().map(waiting)))
                    .transpose()
            });
            match step {
                Ok(Some(completed)) => done += usize::from(completed),
                Ok(None) => break,
                Err(e) => {
                    demux.fail_current(e);
                    return (done, true);
                }
            }
        }
    }
    drop((receivers, text_rx));
    (done, false)
}

/// Any stream: the same outcome whole or split anywhere.
pub fn messages(data: &[u8]) {
    let bytes = stream(data);
    let whole = outcome(&[&bytes]);
    let cut = data.first().map_or(0, |&b| usize::from(b) * 7) % (bytes.len() + 1);
    let (a, b) = bytes.split_at(cut);
    assert_eq!(
        whole,
        outcome(&[a, b]),
        "outcome depends on where the stream is cut"
    );
    let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(
        whole,
        outcome(&bytewise),
        "outcome depends on how the stream arrives"
    );
}

/// A request as the pipeline hands it over; the patience plays no part in decoding.
fn waiting(p: Pending) -> crate::pipeline::Waiting<Pending> {
    crate::pipeline::Waiting::new(p, std::time::Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn message_oracles_hold(data in prop::collection::vec(any::<u8>(), 0..300)) {
            messages(&data);
        }
    }
}
