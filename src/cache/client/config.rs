//! Connection settings and their URL form.

use std::fmt;
use std::time::Duration;

use super::error::CacheError;
use super::limits::{DEFAULT_COMMAND_TIMEOUT_MILLIS, DEFAULT_CONNECT_TIMEOUT_MILLIS};

/// Redis's default port.
const DEFAULT_PORT: u16 = 6379;

/// The setting that turns the cache off instead of naming a server.
const OFF: &str = "off";

/// Connection settings, usually parsed from `redis://[user[:password]@]host[:port][/db]`.
///
/// Also accepted, as a query string: `connect_timeout` and `command_timeout` in milliseconds.
/// Unknown keys are rejected so that a typo does not silently fall back to a default.
#[derive(Clone)]
pub struct RedisConfig {
    pub host: String,
    pub port: u16,
    /// Selected after authentication when not 0.
    pub db: i64,
    /// With a username, AUTH names an ACL user; without, it authenticates the default user.
    pub username: Option<String>,
    pub password: Option<String>,
    /// Bound on TCP connect plus AUTH, SELECT and PING.
    pub connect_timeout: Duration,
    /// How long `query` waits for one reply before answering `Timeout`.
    pub command_timeout: Duration,
}

/// Hand-written so that the password never reaches a log line.
impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("db", &self.db)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .finish()
    }
}

/// A malformed URL means no connection can be made: `Unavailable`, with the reason.
fn invalid(why: impl fmt::Display) -> CacheError {
    CacheError::Unavailable(format!("invalid redis url: {why}"))
}

impl RedisConfig {
    /// Parses a `redis://` URL, or `off` (any case) for no cache at all. The password never
    /// appears in errors.
    pub fn from_url(url: &str) -> Result<Option<RedisConfig>, CacheError> {
        let url = url.trim();
        if url.eq_ignore_ascii_case(OFF) {
            return Ok(None);
        }
        if url.starts_with("rediss://") {
            return Err(invalid("TLS (rediss://) is not supported"));
        }
        let rest = url
            .strip_prefix("redis://")
            .ok_or_else(|| invalid("it must start with redis:// (or be \"off\")"))?;
        let parts = crate::url::split(rest).map_err(invalid)?;
        if parts.hosts.len() > 1 {
            return Err(invalid("one host only"));
        }
        let mut cfg = RedisConfig {
            host: parts.host.ok_or_else(|| invalid("no host"))?,
            port: parts.port.unwrap_or(DEFAULT_PORT),
            db: 0,
            username: parts.user,
            password: parts.password,
            connect_timeout: Duration::from_millis(DEFAULT_CONNECT_TIMEOUT_MILLIS),
            command_timeout: Duration::from_millis(DEFAULT_COMMAND_TIMEOUT_MILLIS),
        };
        let (path, query) = (parts.path, parts.query);
        cfg.db = parse_db(path)?;
        parse_query(query, &mut cfg)?;
        Ok(Some(cfg))
    }
}

fn parse_db(path: &str) -> Result<i64, CacheError> {
    if path.is_empty() {
        return Ok(0);
    }
    match path.parse::<i64>() {
        Ok(n) if path.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(invalid(format!(
            "database {path:?} is not a non-negative number"
        ))),
    }
}

fn parse_query(query: &str, cfg: &mut RedisConfig) -> Result<(), CacheError> {
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| invalid(format!("{pair:?} has no value")))?;
        let millis = || match value.parse::<u64>() {
            Ok(n) if n > 0 && value.bytes().all(|b| b.is_ascii_digit()) => {
                Ok(Duration::from_millis(n))
            }
            _ => Err(invalid(format!(
                "{key} must be a positive number of milliseconds"
            ))),
        };
        match key {
            "connect_timeout" => cfg.connect_timeout = millis()?,
            "command_timeout" => cfg.command_timeout = millis()?,
            _ => return Err(invalid(format!("unknown parameter {key:?}"))),
        }
    }
    Ok(())
}

/// Decodes `%XX` escapes, which a password with '@', ':' or '/' needs. The text is never
/// echoed in the error, since it may be the password.
#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> RedisConfig {
        RedisConfig::from_url(url).unwrap().unwrap()
    }

    fn rejected(url: &str) -> String {
        match RedisConfig::from_url(url) {
            Err(CacheError::Unavailable(why)) => why,
            other => panic!("{url:?} should be rejected, got {other:?}"),
        }
    }

    #[test]
    fn off_disables_the_cache() {
        for url in ["off", "OFF", " off "] {
            assert!(RedisConfig::from_url(url).unwrap().is_none(), "{url:?}");
        }
    }

    #[test]
    fn defaults() {
        let c = parse("redis://127.0.0.1");
        assert_eq!((c.host.as_str(), c.port, c.db), ("127.0.0.1", 6379, 0));
        assert_eq!((c.username, c.password), (None, None));
        assert_eq!(c.connect_timeout, Duration::from_millis(500));
        assert_eq!(c.command_timeout, Duration::from_millis(50));
        assert_eq!(parse("redis://cache/").db, 0);
    }

    #[test]
    fn port_db_and_ipv6() {
        let c = parse("redis://cache.internal:6380/3");
        assert_eq!((c.host.as_str(), c.port, c.db), ("cache.internal", 6380, 3));
        let c = parse("redis://[::1]:7000/15");
        assert_eq!((c.host.as_str(), c.port, c.db), ("::1", 7000, 15));
        assert_eq!(parse("redis://[::1]").port, 6379);
    }

    #[test]
    fn auth_forms() {
        let c = parse("redis://:s3cret@localhost");
        assert_eq!((c.username, c.password.as_deref()), (None, Some("s3cret")));
        let c = parse("redis://gavel:p%40ss%3Aw%2Frd@localhost:6379/2");
        assert_eq!(c.username.as_deref(), Some("gavel"));
        assert_eq!(c.password.as_deref(), Some("p@ss:w/rd"));
        assert_eq!(c.db, 2);
        // unencoded '@' and '/' in the password: the last '@' ends the user information
        let c = parse("redis://u:a@b/c@h:1/4");
        assert_eq!(c.password.as_deref(), Some("a@b/c"));
        assert_eq!((c.host.as_str(), c.port, c.db), ("h", 1, 4));
        let c = parse("redis://:@h");
        assert_eq!((c.username, c.password), (None, None));
        let c = parse("redis://acl-user@h");
        assert_eq!(
            (c.username.as_deref(), c.password),
            (Some("acl-user"), None)
        );
    }

    #[test]
    fn timeouts_from_the_query_string() {
        let c = parse("redis://h/1?connect_timeout=200&command_timeout=20");
        assert_eq!(c.connect_timeout, Duration::from_millis(200));
        assert_eq!(c.command_timeout, Duration::from_millis(20));
        assert_eq!(c.db, 1);
    }

    #[test]
    fn bad_urls() {
        for url in [
            "",
            "localhost:6379",
            "http://h",
            "redis://",
            "redis://:6379",
            "redis://h:0",
            "redis://h:65536",
            "redis://h:+1",
            "redis://h:port",
            "redis://h/-1",
            "redis://h/db",
            "redis://h/1/2",
            "redis://[::1",
            "redis://[::1]x",
            "redis://h?timeout=5",
            "redis://h?command_timeout=0",
            "redis://h?command_timeout",
            "redis://u:%zz@h",
            "redis+unix:///tmp/redis.sock",
        ] {
            rejected(url);
        }
        assert!(rejected("rediss://h").contains("TLS"));
    }

    #[test]
    fn password_never_shown() {
        let c = parse("redis://u:hunter2@h");
        let debug = format!("{c:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("<redacted>"));
        assert!(!rejected("redis://u:hunter2%zz@h").contains("hunter2"));
    }
}
