//! Connection settings and their URL form.

use std::fmt;
use std::time::Duration;

use super::error::PgError;
use super::limits::{
    DEFAULT_CONNECT_TIMEOUT_SECS, DEFAULT_STATEMENT_TIMEOUT_MILLIS, QUERY_TIMEOUT_MARGIN_MILLIS,
};

/// PostgreSQL's default port.
const DEFAULT_PORT: u16 = 5432;
const DEFAULT_USER: &str = "postgres";
const DEFAULT_HOST: &str = "localhost";
const DEFAULT_APPLICATION_NAME: &str = "gavel";

/// Connection settings, usually parsed from
/// `postgres://user[:password]@host[:port][,host[:port]...]/dbname[?application_name=..&connect_timeout=secs]`.
///
/// Also accepted in the query string: `statement_timeout` and `query_timeout` (milliseconds),
/// `target_session_attrs=any|read-write|primary` and `sslmode=disable|allow|prefer` (this client
/// speaks plain TCP only). Unknown keys are rejected so that a typo does not silently fall back
/// to a default.
///
/// Several hosts are tried in order, as libpq does, at every (re)connection: a host that cannot
/// be reached, is starting up or shutting down, or (with `read-write`) accepts no writes is
/// passed over for the next.
#[derive(Clone)]
pub struct Config {
    /// At least one; each with its port (5432 when the URL gives none).
    pub hosts: Vec<(String, u16)>,
    /// Which server a connection may settle on.
    pub target_session_attrs: SessionAttrs,
    pub user: String,
    pub password: Option<String>,
    pub dbname: String,
    pub application_name: String,
    /// Bound on TCP connect plus start-up and authentication.
    pub connect_timeout: Duration,
    /// Sent at start-up as the session's `statement_timeout`; zero disables it.
    pub statement_timeout: Duration,
    /// How long a caller waits for one reply before getting `Timeout`.
    pub query_timeout: Duration,
}

/// libpq's `target_session_attrs`, the forms a primary-and-standby setup needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionAttrs {
    /// Any server that accepts the connection (libpq's default).
    Any,
    /// Only a server that accepts writes: not a standby, and not read-only by default
    /// (`read-write`, and `primary`, which differ only in the default's detail).
    ReadWrite,
}

/// Hand-written so that the password never reaches a log line.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("hosts", &self.hosts)
            .field("target_session_attrs", &self.target_session_attrs)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("dbname", &self.dbname)
            .field("application_name", &self.application_name)
            .field("connect_timeout", &self.connect_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .field("query_timeout", &self.query_timeout)
            .finish()
    }
}

/// A malformed URL means no connection can be made: `Unavailable`, with the reason.
fn invalid(why: impl fmt::Display) -> PgError {
    PgError::Unavailable(format!("invalid database url: {why}"))
}

impl Config {
    /// Parses a `postgres://` (or `postgresql://`) URL. The password never appears in errors.
    pub fn from_url(url: &str) -> Result<Config, PgError> {
        let rest = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
            .ok_or_else(|| invalid("it must start with postgres://"))?;
        let parts = crate::url::split(rest).map_err(invalid)?;
        let mut cfg = Config::defaults();
        if let Some(user) = parts.user {
            cfg.user = user;
        }
        cfg.password = parts.password;
        cfg.hosts = parts
            .hosts
            .into_iter()
            .map(|(host, port)| {
                (
                    host.unwrap_or_else(|| DEFAULT_HOST.to_owned()),
                    port.unwrap_or(DEFAULT_PORT),
                )
            })
            .collect();
        if cfg.hosts.is_empty() {
            cfg.hosts.push((DEFAULT_HOST.to_owned(), DEFAULT_PORT));
        }
        cfg.dbname = match percent_decode(parts.path)? {
            db if db.is_empty() => cfg.user.clone(),
            db => db,
        };
        let query = parts.query;
        parse_query(query, cfg)
    }

    /// The same settings for another database (tests, migrations that create databases).
    pub fn with_dbname(&self, db: &str) -> Config {
        Config {
            dbname: db.to_owned(),
            ..self.clone()
        }
    }

    fn defaults() -> Config {
        let statement_timeout = Duration::from_millis(DEFAULT_STATEMENT_TIMEOUT_MILLIS);
        Config {
            hosts: vec![(DEFAULT_HOST.to_owned(), DEFAULT_PORT)],
            target_session_attrs: SessionAttrs::Any,
            user: DEFAULT_USER.to_owned(),
            password: None,
            dbname: DEFAULT_USER.to_owned(),
            application_name: DEFAULT_APPLICATION_NAME.to_owned(),
            connect_timeout: Duration::from_secs(DEFAULT_CONNECT_TIMEOUT_SECS),
            statement_timeout,
            query_timeout: default_query_timeout(statement_timeout),
        }
    }
}

/// Long enough for the server to cancel a statement itself before the client stops waiting.
fn default_query_timeout(statement_timeout: Duration) -> Duration {
    let base = if statement_timeout.is_zero() {
        Duration::from_millis(DEFAULT_STATEMENT_TIMEOUT_MILLIS)
    } else {
        statement_timeout
    };
    base + Duration::from_millis(QUERY_TIMEOUT_MARGIN_MILLIS)
}

fn parse_query(query: &str, mut cfg: Config) -> Result<Config, PgError> {
    let mut query_timeout = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| invalid(format_args!("parameter {pair:?} has no value")))?;
        let value = percent_decode(value)?;
        match key {
            "application_name" => cfg.application_name = value,
            "connect_timeout" => cfg.connect_timeout = Duration::from_secs(positive(key, &value)?),
            "statement_timeout" => {
                cfg.statement_timeout = Duration::from_millis(number(key, &value)?)
            }
            "query_timeout" => query_timeout = Some(Duration::from_millis(positive(key, &value)?)),
            "target_session_attrs" => {
                cfg.target_session_attrs = match value.as_str() {
                    "any" => SessionAttrs::Any,
                    "read-write" | "primary" => SessionAttrs::ReadWrite,
                    _ => {
                        return Err(invalid(format_args!(
                            "target_session_attrs must be any, read-write or primary, got {value:?}"
                        )))
                    }
                }
            }
            "sslmode" if matches!(value.as_str(), "disable" | "allow" | "prefer") => {}
            "sslmode" => return Err(invalid("TLS is not supported (use sslmode=disable)")),
            _ => return Err(invalid(format_args!("unknown parameter {key:?}"))),
        }
    }
    cfg.query_timeout =
        query_timeout.unwrap_or_else(|| default_query_timeout(cfg.statement_timeout));
    Ok(cfg)
}

fn number(key: &str, value: &str) -> Result<u64, PgError> {
    value
        .parse::<u64>()
        .map_err(|_| invalid(format_args!("{key} must be a whole number, got {value:?}")))
}

fn positive(key: &str, value: &str) -> Result<u64, PgError> {
    match number(key, value)? {
        0 => Err(invalid(format_args!("{key} must be at least 1"))),
        n => Ok(n),
    }
}

fn percent_decode(s: &str) -> Result<String, PgError> {
    crate::url::percent_decode(s).map_err(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_url() {
        let c = Config::from_url(
            "postgres://bidder:s%40cr%2Ft@db.local:6543/auctions?application_name=gavel%20w1&connect_timeout=3",
        )
        .unwrap();
        assert_eq!(c.user, "bidder");
        assert_eq!(c.password.as_deref(), Some("s@cr/t"));
        assert_eq!(c.hosts, vec![("db.local".to_owned(), 6543)]);
        assert_eq!(c.target_session_attrs, SessionAttrs::Any);
        assert_eq!(c.dbname, "auctions");
        assert_eq!(c.application_name, "gavel w1");
        assert_eq!(c.connect_timeout, Duration::from_secs(3));
    }

    #[test]
    fn defaults_apply() {
        let c = Config::from_url("postgres://127.0.0.1").unwrap();
        assert_eq!((c.user.as_str(), c.hosts[0].1), ("postgres", 5432));
        assert_eq!(c.dbname, "postgres");
        assert_eq!(c.password, None);
        assert_eq!(c.application_name, "gavel");
        let c = Config::from_url("postgresql://alice@h/").unwrap();
        assert_eq!(c.dbname, "alice", "dbname defaults to the user");
        let c = Config::from_url("postgres://@/").unwrap();
        assert_eq!(c.hosts, vec![("localhost".to_owned(), 5432)]);
    }

    #[test]
    fn timeouts_from_query_and_derived() {
        let c = Config::from_url("postgres://h/db?statement_timeout=200").unwrap();
        assert_eq!(c.statement_timeout, Duration::from_millis(200));
        assert_eq!(
            c.query_timeout,
            Duration::from_millis(200 + QUERY_TIMEOUT_MARGIN_MILLIS)
        );
        let c = Config::from_url("postgres://h/db?query_timeout=50&statement_timeout=0").unwrap();
        assert_eq!(c.query_timeout, Duration::from_millis(50));
        assert!(c.statement_timeout.is_zero());
    }

    #[test]
    fn password_with_raw_slash_and_at() {
        let c = Config::from_url("postgres://u:p/w@d@h:1/db").unwrap();
        assert_eq!(c.password.as_deref(), Some("p/w@d"));
        assert_eq!(c.hosts, vec![("h".to_owned(), 1)]);
        assert_eq!(c.dbname, "db");
    }

    #[test]
    fn ipv6_host() {
        let c = Config::from_url("postgres://u@[::1]:5433/db").unwrap();
        assert_eq!(c.hosts, vec![("::1".to_owned(), 5433)]);
        let c = Config::from_url("postgres://u@[::1]/db").unwrap();
        assert_eq!(c.hosts[0].1, 5432);
    }

    #[test]
    fn host_lists_as_libpq_writes_them() {
        let c = Config::from_url(
            "postgres://u@127.0.0.1:6001,127.0.0.1:6002,db3/gavel?target_session_attrs=read-write",
        )
        .unwrap();
        assert_eq!(
            c.hosts,
            vec![
                ("127.0.0.1".to_owned(), 6001),
                ("127.0.0.1".to_owned(), 6002),
                ("db3".to_owned(), 5432),
            ]
        );
        assert_eq!(c.target_session_attrs, SessionAttrs::ReadWrite);
        assert_eq!(c.dbname, "gavel");
        let c = Config::from_url("postgres://h/db?target_session_attrs=primary").unwrap();
        assert_eq!(c.target_session_attrs, SessionAttrs::ReadWrite);
        let c = Config::from_url("postgres://h/db?target_session_attrs=any").unwrap();
        assert_eq!(c.target_session_attrs, SessionAttrs::Any);
    }

    #[test]
    fn rejects_bad_urls() {
        for url in [
            "mysql://h/db",
            "postgres://h:notaport/db",
            "postgres://h:0/db",
            "postgres://h:70000/db",
            "postgres://h/db?connect_timeout=0",
            "postgres://h/db?connect_timeout=x",
            "postgres://h/db?sslmode=require",
            "postgres://h/db?colour=blue",
            "postgres://h/db?flag",
            "postgres://u%zz@h/db",
            "postgres://u%+1@h/db",
            "postgres://u%4@h/db",
            "postgres://u%ff@h/db",
            "postgres://[::1/db",
            "postgres://h1,,h2/db",
            "postgres://h1,/db",
            "postgres://h1:5432,h2:x/db",
            "postgres://h/db?target_session_attrs=standby",
            "postgres://h/db?target_session_attrs=",
        ] {
            assert!(
                matches!(Config::from_url(url), Err(PgError::Unavailable(_))),
                "{url}"
            );
        }
    }

    #[test]
    fn debug_hides_password_and_errors_never_show_it() {
        let c = Config::from_url("postgres://u:hunter2@h/db").unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        let e = Config::from_url("postgres://u:hunter2@h:bad/db").unwrap_err();
        assert!(!e.to_string().contains("hunter2"));
    }

    #[test]
    fn with_dbname_changes_only_the_database() {
        let c = Config::from_url("postgres://u:p@h:1/a").unwrap();
        let d = c.with_dbname("b");
        assert_eq!(d.dbname, "b");
        assert_eq!((d.user, d.password, d.hosts), (c.user, c.password, c.hosts));
    }
}
