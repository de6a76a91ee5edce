//! Settings from flags and environment variables, a flag winning over its variable.

use crate::logging::Level;
use std::net::SocketAddr;
use std::time::Duration;

/// Where metrics are served: loopback, so they are never public unless asked for, on the port
/// OpenTelemetry's Prometheus exporter made the usual one for an application's own metrics.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9464";
/// How long a keep-alive connection may sit idle (API.md's default).
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 60;
/// How long shutdown waits for in-flight requests: long enough for any request that can still
/// succeed (they are bounded by the database timeout), short next to the unit's stop timeout (20 s).
pub const DEFAULT_SHUTDOWN_TIMEOUT_SECS: u64 = 10;
/// How long a request waits for PostgreSQL before a 503. API.md wants the 503 "within a second";
/// 800 ms leaves room for the rest of the request on a loaded box.
pub const DEFAULT_DB_TIMEOUT_MILLIS: u64 = 800;
/// Most live-update streams one process holds. A quiet stream costs about what an idle
/// connection does (a few KiB, kernel buffers included); 20 000 keep a full server's streams well
/// inside the memory of the smallest box Gavel is sized for, beside its keep-alive connections.
pub const DEFAULT_MAX_STREAMS: usize = 20_000;
/// How much sooner than the request's wait the server-side statement timeout fires, so PostgreSQL
/// gives up (and frees the connection) before the request answers 503.
pub const STATEMENT_TIMEOUT_MARGIN_MILLIS: u64 = 100;

#[derive(Clone, Debug, PartialEq)]
pub enum CorsSetting {
    Any,
    Origins(Vec<String>),
}

#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    /// Where `/metrics` is served; `None` (`off`) also turns counting off.
    pub admin_listen: Option<SocketAddr>,
    pub database_url: String,
    pub redis_url: String,
    pub workers: usize,
    pub log_level: Option<Level>,
    pub idle_timeout: Duration,
    pub shutdown_timeout: Duration,
    pub db_timeout: Duration,
    /// Most live-update streams open at once; past it a new one gets 503.
    pub max_streams: usize,
    /// Share the listen port with a process already serving it.
    pub join_port: bool,
    pub cors: CorsSetting,
    pub pin_workers: bool,
    /// The HS256 secret for bearer tokens; `None` runs the server open.
    pub auth_secret: Option<Vec<u8>>,
}

struct Setting {
    flag: &'static str,
    env: &'static str,
    default: &'static str,
    help: &'static str,
}

const SETTINGS: &[Setting] = &[
    Setting {
        flag: "listen",
        env: "GAVEL_LISTEN",
        default: "0.0.0.0:3000",
        help: "address and port to serve HTTP on",
    },
    Setting {
        flag: "admin-listen",
        env: "GAVEL_ADMIN_LISTEN",
        default: DEFAULT_ADMIN_LISTEN,
        help: "address and port for Prometheus metrics at /metrics, or `off` (no listener, no counting)",
    },
    Setting {
        flag: "database-url",
        env: "DATABASE_URL",
        default: "postgres://postgres@127.0.0.1:5432/gavel",
        help: "PostgreSQL URL; the database is created when missing",
    },
    Setting {
        flag: "redis-url",
        env: "REDIS_URL",
        default: "redis://127.0.0.1:6379/0",
        help: "Redis URL for the bid fast path (redis://[user:pass@]host[:port][/db]), or `off`",
    },
    Setting {
        flag: "workers",
        env: "GAVEL_WORKERS",
        default: "the CPUs this process may run on",
        help: "worker threads, one per core, each pinned",
    },
    Setting {
        flag: "log-level",
        env: "RUST_LOG",
        default: "info",
        help: "error, warn, info, debug, trace or off",
    },
    Setting {
        flag: "idle-timeout-secs",
        env: "GAVEL_IDLE_TIMEOUT_SECS",
        default: "60",
        help: "close keep-alive connections idle this long",
    },
    Setting {
        flag: "shutdown-timeout-secs",
        env: "GAVEL_SHUTDOWN_TIMEOUT_SECS",
        default: "10",
        help: "on SIGTERM/SIGINT, how long in-flight requests may take",
    },
    Setting {
        flag: "db-timeout-ms",
        env: "GAVEL_DB_TIMEOUT_MS",
        default: "800",
        help: "longest wait for PostgreSQL before answering 503",
    },
    Setting {
        flag: "join-port",
        env: "GAVEL_JOIN_PORT",
        default: "false",
        help: "share a port another Gavel already serves (restart without downtime); else refuse it",
    },
    Setting {
        flag: "max-streams",
        env: "GAVEL_MAX_STREAMS",
        default: "20000",
        help: "most live-update streams open at once (past it: 503)",
    },
    Setting {
        flag: "cors-origins",
        env: "GAVEL_CORS_ORIGINS",
        default: "*",
        help: "`*` or a comma-separated list of allowed origins",
    },
    Setting {
        flag: "auth-secret",
        env: "GAVEL_AUTH_SECRET",
        default: "(none: open)",
        help: "HS256 secret for the bearer tokens every POST then needs",
    },
    Setting {
        flag: "auth-secret-file",
        env: "GAVEL_AUTH_SECRET_FILE",
        default: "(none)",
        help: "file holding the HS256 secret (trailing newline ignored)",
    },
    Setting {
        flag: "pin-workers",
        env: "GAVEL_PIN_WORKERS",
        default: "true",
        help: "pin each worker to its own core (off: let the kernel move them, for hosts whose cores other busy processes share)",
    },
];

pub fn help() -> String {
    let mut out = String::from(
        "gavel: an auction bidding HTTP API server\n\nUsage: gavel [--flag value]...\n\nSettings (flag, environment variable, default):\n",
    );
    for s in SETTINGS {
        out.push_str(&format!(
            "  --{:<24} {:<28} {}\n      {}\n",
            s.flag, s.env, s.default, s.help
        ));
    }
    out.push_str("  --help                   print this text\n");
    out.push_str("\n  gavel token --sub ID --role bidder|seller|admin --ttl 1h\n      prints a bearer token signed with the configured secret\n");
    out
}

/// What the command line asked for.
// Made once per process and moved once: boxing the settings would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    Serve(Config),
    Help,
}

impl Config {
    pub fn from_args(
        args: &[String],
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Command, String> {
        let flags = parse_flags(args)?;
        if flags.iter().any(|(k, _)| k == "help") {
            return Ok(Command::Help);
        }
        let get = |flag: &str| -> Option<String> {
            let setting = SETTINGS.iter().find(|s| s.flag == flag)?;
            flags
                .iter()
                .rev()
                .find(|(k, _)| k == flag)
                .map(|(_, v)| v.clone())
                .or_else(|| env(setting.env).filter(|v| !v.is_empty()))
        };
        let or_default = |flag: &str| {
            get(flag).unwrap_or_else(|| {
                SETTINGS
                    .iter()
                    .find(|s| s.flag == flag)
                    .map_or("", |s| s.default)
                    .to_owned()
            })
        };
        let listen = or_default("listen")
            .parse()
            .map_err(|_| "--listen must be an address like 0.0.0.0:3000".to_owned())?;
        let admin_listen = parse_admin_listen(&or_default("admin-listen"))?;
        let workers = match get("workers") {
            Some(w) => positive(&w, "workers")? as usize,
            None => default_workers(),
        };
        let log_level = Level::parse(&or_default("log-level"))
            .ok_or("--log-level must be error, warn, info, debug, trace or off")?;
        Ok(Command::Serve(Config {
            listen,
            admin_listen,
            database_url: or_default("database-url"),
            redis_url: or_default("redis-url"),
            workers,
            log_level,
            idle_timeout: Duration::from_secs(positive(
                &or_default("idle-timeout-secs"),
                "idle-timeout-secs",
            )?),
            shutdown_timeout: Duration::from_secs(positive(
                &or_default("shutdown-timeout-secs"),
                "shutdown-timeout-secs",
            )?),
            db_timeout: Duration::from_millis(positive(
                &or_default("db-timeout-ms"),
                "db-timeout-ms",
            )?),
            join_port: parse_bool(&or_default("join-port"), "join-port")?,
            max_streams: usize::try_from(positive(&or_default("max-streams"), "max-streams")?)
                .unwrap_or(usize::MAX),
            cors: parse_cors(&or_default("cors-origins")),
            pin_workers: parse_bool(&or_default("pin-workers"), "pin-workers")?,
            auth_secret: auth_secret(get("auth-secret"), get("auth-secret-file"))?,
        }))
    }
}

fn parse_flags(args: &[String]) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let Some(flag) = arg.strip_prefix("--") else {
            return Err(format!("unexpected argument {arg:?}; see --help"));
        };
        if flag == "help" {
            out.push(("help".to_owned(), String::new()));
            continue;
        }
        let (name, value) = match flag.split_once('=') {
            Some((n, v)) => (n.to_owned(), v.to_owned()),
            None => {
                let v = it.next().ok_or_else(|| format!("--{flag} needs a value"))?;
                (flag.to_owned(), v.clone())
            }
        };
        if !SETTINGS.iter().any(|s| s.flag == name) {
            return Err(format!("unknown flag --{name}; see --help"));
        }
        out.push((name, value));
    }
    Ok(out)
}

fn parse_admin_listen(text: &str) -> Result<Option<SocketAddr>, String> {
    if text.trim().eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    text.trim()
        .parse()
        .map(Some)
        .map_err(|_| "--admin-listen must be an address like 127.0.0.1:9464, or off".to_owned())
}

fn positive(text: &str, name: &str) -> Result<u64, String> {
    match text.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("--{name} must be a whole number above 0")),
    }
}

/// Shortest secret accepted: HS256 wants a key at least as long as its 256-bit output.
pub const MIN_AUTH_SECRET_BYTES: usize = 32;

fn auth_secret(inline: Option<String>, file: Option<String>) -> Result<Option<Vec<u8>>, String> {
    let secret = match (inline, file) {
        (Some(_), Some(_)) => {
            return Err("give --auth-secret or --auth-secret-file, not both".to_owned())
        }
        (Some(s), None) => s.into_bytes(),
        (None, Some(path)) => {
            let mut bytes = std::fs::read(&path)
                .map_err(|e| format!("cannot read --auth-secret-file {path:?}: {e}"))?;
            while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                bytes.pop();
            }
            bytes
        }
        (None, None) => return Ok(None),
    };
    if secret.len() < MIN_AUTH_SECRET_BYTES {
        return Err(format!(
            "the auth secret must be at least {MIN_AUTH_SECRET_BYTES} bytes"
        ));
    }
    Ok(Some(secret))
}

fn parse_bool(text: &str, name: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!("--{name} must be true or false")),
    }
}

fn default_workers() -> usize {
    core_affinity::get_core_ids().map_or(1, |ids| ids.len().max(1))
}

fn parse_cors(text: &str) -> CorsSetting {
    if text.trim() == "*" {
        return CorsSetting::Any;
    }
    CorsSetting::Origins(
        text.split(',')
            .map(|o| o.trim().to_owned())
            .filter(|o| !o.is_empty())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn serve(a: &[&str], env: &[(&str, &str)]) -> Result<Config, String> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        match Config::from_args(&args(a), |k| {
            env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        })? {
            Command::Serve(c) => Ok(c),
            Command::Help => Err("help".into()),
        }
    }

    #[test]
    fn defaults() {
        let c = serve(&[], &[]).unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:3000");
        assert_eq!(c.database_url, "postgres://postgres@127.0.0.1:5432/gavel");
        assert_eq!(c.idle_timeout, Duration::from_secs(60));
        assert_eq!(c.cors, CorsSetting::Any);
        assert!(c.workers >= 1);
        assert!(c.pin_workers);
        assert_eq!(
            c.admin_listen.map(|a| a.to_string()).as_deref(),
            Some(DEFAULT_ADMIN_LISTEN)
        );
    }

    #[test]
    fn admin_listen_off_or_an_address() {
        let c = serve(&[], &[("GAVEL_ADMIN_LISTEN", "off")]).unwrap();
        assert_eq!(c.admin_listen, None);
        let c = serve(&["--admin-listen", "OFF"], &[]).unwrap();
        assert_eq!(c.admin_listen, None);
        let c = serve(&[], &[("GAVEL_ADMIN_LISTEN", "0.0.0.0:9100")]).unwrap();
        assert_eq!(c.admin_listen.map(|a| a.port()), Some(9100));
        assert!(serve(&["--admin-listen", "localhost"], &[]).is_err());
    }

    #[test]
    fn help_defaults_match_the_constants() {
        let default = |flag: &str| SETTINGS.iter().find(|s| s.flag == flag).unwrap().default;
        assert_eq!(
            default("idle-timeout-secs"),
            DEFAULT_IDLE_TIMEOUT_SECS.to_string()
        );
        assert_eq!(
            default("shutdown-timeout-secs"),
            DEFAULT_SHUTDOWN_TIMEOUT_SECS.to_string()
        );
        assert_eq!(
            default("db-timeout-ms"),
            DEFAULT_DB_TIMEOUT_MILLIS.to_string()
        );
        let c = serve(&[], &[]).unwrap();
        assert_eq!(
            c.db_timeout,
            Duration::from_millis(DEFAULT_DB_TIMEOUT_MILLIS)
        );
        assert_eq!(
            c.shutdown_timeout,
            Duration::from_secs(DEFAULT_SHUTDOWN_TIMEOUT_SECS)
        );
    }

    #[test]
    fn auth_secret_sources() {
        let long = "k".repeat(MIN_AUTH_SECRET_BYTES);
        let c = serve(&[], &[("GAVEL_AUTH_SECRET", long.as_str())]).unwrap();
        assert_eq!(c.auth_secret.as_deref(), Some(long.as_bytes()));
        assert!(serve(&[], &[]).unwrap().auth_secret.is_none());
        let short = "k".repeat(MIN_AUTH_SECRET_BYTES - 1);
        assert!(serve(&["--auth-secret", &short], &[]).is_err());
        let path = std::env::temp_dir().join(format!("gavel-secret-{}", std::process::id()));
        std::fs::write(&path, format!("{long}\n")).unwrap();
        let file = path.to_string_lossy().into_owned();
        let c = serve(&["--auth-secret-file", &file], &[]).unwrap();
        assert_eq!(c.auth_secret.as_deref(), Some(long.as_bytes()));
        assert!(serve(&["--auth-secret-file", &file, "--auth-secret", &long], &[]).is_err());
        std::fs::remove_file(path).unwrap();
        assert!(serve(&["--auth-secret-file", "/nonexistent/secret"], &[]).is_err());
    }

    #[test]
    fn flag_beats_env() {
        let c = serve(
            &["--listen", "127.0.0.1:1", "--workers=3"],
            &[
                ("GAVEL_LISTEN", "127.0.0.1:2"),
                ("GAVEL_WORKERS", "5"),
                ("GAVEL_CORS_ORIGINS", "https://a, https://b"),
            ],
        )
        .unwrap();
        assert_eq!(c.listen.port(), 1);
        assert_eq!(c.workers, 3);
        assert_eq!(
            c.cors,
            CorsSetting::Origins(vec!["https://a".into(), "https://b".into()])
        );
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(serve(&["--workers", "0"], &[]).is_err());
        assert!(serve(&["--listen", "nowhere"], &[]).is_err());
        assert!(serve(&["--nope", "1"], &[]).is_err());
        assert!(serve(&["--listen"], &[]).is_err());
        assert!(serve(&["--log-level", "loud"], &[]).is_err());
        assert!(serve(&["--pin-workers", "maybe"], &[]).is_err());
        assert!(
            !serve(&[], &[("GAVEL_PIN_WORKERS", "false")])
                .unwrap()
                .pin_workers
        );
        assert!(serve(&["--help"], &[]).is_err());
        assert!(help().contains("DATABASE_URL"));
    }
}
