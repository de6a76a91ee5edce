//! Structured logs: one JSON object per line on standard error. No per-request line by default.

use crate::domain::time::Timestamp;
use std::fmt::Display;
use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
    Trace = 5,
}

impl Level {
    /// Accepts the plain `RUST_LOG` forms: `error`, `warn`, `info`, `debug`, `trace` (and `off`).
    pub fn parse(text: &str) -> Option<Option<Level>> {
        match text.trim().to_ascii_lowercase().as_str() {
            "off" => Some(None),
            "error" => Some(Some(Level::Error)),
            "warn" | "warning" => Some(Some(Level::Warn)),
            "info" => Some(Some(Level::Info)),
            "debug" => Some(Some(Level::Debug)),
            "trace" => Some(Some(Level::Trace)),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Trace => "trace",
        }
    }
}

static MAX_LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);

pub fn set_level(level: Option<Level>) {
    MAX_LEVEL.store(level.map_or(0, |l| l as u8), Ordering::Relaxed);
}

pub fn enabled(level: Level) -> bool {
    level as u8 <= MAX_LEVEL.load(Ordering::Relaxed)
}

pub type Fields<'a> = &'a [(&'a str, &'a dyn Display)];

pub fn log(level: Level, msg: &str, fields: Fields<'_>) {
    if !enabled(level) {
        return;
    }
    let line = format_line(now(), level, msg, fields);
    // One write per line keeps lines whole when workers log at once.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

fn now() -> Timestamp {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    Timestamp::from_unix_micros(micros)
}

fn format_line(ts: Timestamp, level: Level, msg: &str, fields: Fields<'_>) -> String {
    let mut out = String::with_capacity(128);
    out.push_str("{\"ts\":\"");
    ts.write_rfc3339(&mut out);
    out.push_str("\",\"level\":\"");
    out.push_str(level.as_str());
    out.push_str("\",\"msg\":");
    push_json_str(&mut out, msg);
    for (k, v) in fields {
        out.push(',');
        push_json_str(&mut out, k);
        out.push(':');
        push_json_str(&mut out, &v.to_string());
    }
    out.push_str("}\n");
    out
}

fn push_json_str(out: &mut String, s: &str) {
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
}

pub fn error(msg: &str, fields: Fields<'_>) {
    log(Level::Error, msg, fields);
}

pub fn warn(msg: &str, fields: Fields<'_>) {
    log(Level::Warn, msg, fields);
}

pub fn info(msg: &str, fields: Fields<'_>) {
    log(Level::Info, msg, fields);
}

pub fn debug(msg: &str, fields: Fields<'_>) {
    log(Level::Debug, msg, fields);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_json() {
        let line = format_line(
            Timestamp::from_unix_micros(0),
            Level::Warn,
            "a \"quoted\" msg",
            &[("addr", &"127.0.0.1:1"), ("n", &3)],
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["level"], "warn");
        assert_eq!(v["msg"], "a \"quoted\" msg");
        assert_eq!(v["n"], "3");
        assert_eq!(v["ts"], "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn levels_parse() {
        assert_eq!(Level::parse("DEBUG"), Some(Some(Level::Debug)));
        assert_eq!(Level::parse("off"), Some(None));
        assert_eq!(Level::parse("loud"), None);
    }
}
