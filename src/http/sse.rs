//! Server-Sent Events framing (the HTML Standard's `text/event-stream`): events and comments
//! appended to an output buffer as bytes. No IO; what an event means is the service's business.

/// The media type of an event stream.
pub const CONTENT_TYPE: &str = "text/event-stream";

/// Appends one event: `event:` (when `name` is not empty), `id:` (when given), one `data:` line
/// per line of `data`, and the blank line that dispatches it.
///
/// A line break inside `name` or `id` would end the field early and start another, so both are
/// written up to their first CR or LF (the HTML Standard also ignores an id holding NUL, so NUL
/// ends it too); the callers pass event names and decimal ids, which never hold one. Every line
/// ending in `data` (CRLF, CR or LF) splits it into `data:` lines, which a client joins back with
/// LF.
pub fn write_event(out: &mut Vec<u8>, name: &str, id: Option<&str>, data: &[u8]) {
    debug_assert!(!name.contains(['\r', '\n']), "event name with a line break");
    if !name.is_empty() {
        field(out, b"event", first_line(name.as_bytes()));
    }
    if let Some(id) = id {
        debug_assert!(
            !id.contains(['\r', '\n', '\0']),
            "event id with a line break"
        );
        let id = first_line(id.as_bytes());
        let end = id.iter().position(|&b| b == 0).unwrap_or(id.len());
        field(out, b"id", &id[..end]);
    }
    for line in lines(data) {
        field(out, b"data", line);
    }
    out.push(b'\n');
}

/// Appends a comment line (`: text`), which clients ignore: keeps a quiet stream alive through
/// proxies that drop idle connections.
pub fn write_comment(out: &mut Vec<u8>, text: &str) {
    field(out, b"", first_line(text.as_bytes()));
}

fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// `text` up to its first CR or LF.
fn first_line(text: &[u8]) -> &[u8] {
    let end = text
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(text.len());
    &text[..end]
}

/// The lines of `data`, split at CRLF, CR or LF; empty data is one empty line.
fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let text = rest?;
        match text.iter().position(|&b| b == b'\r' || b == b'\n') {
            None => {
                rest = None;
                Some(text)
            }
            Some(i) => {
                let skip = if text[i] == b'\r' && text.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                rest = Some(&text[i + skip..]);
                Some(&text[..i])
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An event as a client dispatches it.
    #[derive(Debug, Default, PartialEq)]
    struct Received {
        name: String,
        id: Option<String>,
        data: String,
    }

    /// The HTML Standard's event-stream interpretation, for UTF-8 streams: field lines up to each
    /// blank line, `:` lines ignored, one leading space after the colon dropped, `data` lines
    /// joined with LF. (The last event id persists across events in a client; here each event
    /// reports only its own.)
    fn parse(stream: &str) -> Vec<Received> {
        let mut events = Vec::new();
        let mut current = Received::default();
        let mut data: Option<String> = None;
        let stream = stream.replace("\r\n", "\n").replace('\r', "\n");
        for line in stream.split('\n') {
            if line.is_empty() {
                if let Some(d) = data.take() {
                    current.data = d;
                    events.push(std::mem::take(&mut current));
                } else {
                    current = Received::default();
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => current.name = value.to_owned(),
                "id" if !value.contains('\0') => current.id = Some(value.to_owned()),
                "data" => match &mut data {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(value);
                    }
                    None => data = Some(value.to_owned()),
                },
                _ => {}
            }
        }
        events
    }

    #[test]
    fn an_event_with_every_field() {
        let mut out = Vec::new();
        write_event(&mut out, "bid", Some("7"), br#"{"bid":{"id":1}}"#);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "event: bid\nid: 7\ndata: {\"bid\":{\"id\":1}}\n\n"
        );
    }

    #[test]
    fn a_comment_is_ignored_by_clients() {
        let mut out = Vec::new();
        write_comment(&mut out, "ping");
        write_event(&mut out, "closed", None, b"{}");
        assert!(out.starts_with(b": ping\n"));
        let events = parse(std::str::from_utf8(&out).unwrap());
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].name, "closed");
    }

    #[test]
    fn line_breaks_in_data_become_data_lines() {
        let mut out = Vec::new();
        write_event(&mut out, "", None, b"a\r\nb\rc\nd");
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "data: a\ndata: b\ndata: c\ndata: d\n\n"
        );
        assert_eq!(
            parse(std::str::from_utf8(&out).unwrap())[0].data,
            "a\nb\nc\nd"
        );
    }

    proptest! {
        /// Whatever the data, a client receives exactly the events written, each with its name,
        /// id and data (line breaks normalised to LF, as the standard says).
        #[test]
        fn clients_receive_what_was_written(
            events in proptest::collection::vec(
                ("[a-z]{1,8}", proptest::option::of(0u64..1_000_000), "[ -~\r\n]{0,40}"),
                0..6,
            )
        ) {
            let mut out = Vec::new();
            for (name, id, data) in &events {
                write_event(&mut out, name, id.map(|i| i.to_string()).as_deref(), data.as_bytes());
            }
            let got = parse(std::str::from_utf8(&out).unwrap());
            prop_assert_eq!(got.len(), events.len());
            for (got, (name, id, data)) in got.iter().zip(&events) {
                prop_assert_eq!(&got.name, name);
                prop_assert_eq!(&got.id, &id.map(|i| i.to_string()));
                let normalised = data.replace("\r\n", "\n").replace('\r', "\n");
                prop_assert_eq!(&got.data, &normalised);
            }
        }
    }
}
