//! Settings from flags and environment variables, a flag winning over its variable. The command
//! line itself (parsing, variables, help, version, subcommands) is clap's; this file holds what
//! Gavel decides: the names, defaults with their reasons, and what a value must be.

use crate::logging::Level;
use clap::{ArgAction, Args, CommandFactory, Parser, Subcommand};
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
    /// How long `/ready` answers 503 after a stop signal before the listener closes.
    pub drain_notice: Duration,
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

/// `gavel --version`: the crate's version, the commit it was built from and the build profile
/// (both set by `build.rs`).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("GAVEL_COMMIT"),
    ", ",
    env!("GAVEL_PROFILE"),
    " build)"
);

/// The command line: serving is the default, the rest are subcommands. `--help` never shows the
/// values of the variables that may hold a password or a secret (the URLs, the auth secret).
#[derive(Parser, Debug)]
#[command(
    name = "gavel",
    version = VERSION,
    about = "Gavel: an auction bidding HTTP API server",
    long_about = "Gavel: an auction bidding HTTP API server.\n\nWith no subcommand it serves. \
Every setting is a flag or its environment variable; a flag wins over its variable, and an \
empty variable counts as unset.",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Sub>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
pub enum Sub {
    /// Print a bearer token signed with the configured secret
    Token(crate::token::TokenArgs),
    /// Create the database when missing, apply the migrations, and exit
    Migrate(MigrateArgs),
}

#[derive(Args, Debug)]
pub struct MigrateArgs {
    /// PostgreSQL URL; the database is created when missing
    #[arg(long, env = "DATABASE_URL", value_name = "URL", hide_env_values = true, default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,
}

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/gavel";

/// The HS256 secret, inline or in a file; shared by serving and `gavel token`.
#[derive(Args, Debug, Default)]
pub struct SecretArgs {
    /// HS256 secret for the bearer tokens every POST then needs [default: none, the server is open]
    #[arg(
        long,
        env = "GAVEL_AUTH_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub auth_secret: Option<String>,
    /// File holding the HS256 secret (trailing newline ignored)
    #[arg(long, env = "GAVEL_AUTH_SECRET_FILE", value_name = "FILE")]
    pub auth_secret_file: Option<String>,
}

impl SecretArgs {
    /// The secret's bytes, read and checked; `None` when neither is given.
    pub fn load(self) -> Result<Option<Vec<u8>>, String> {
        auth_secret(self.auth_secret, self.auth_secret_file)
    }
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address and port to serve HTTP on
    #[arg(long, env = "GAVEL_LISTEN", value_name = "ADDR", default_value = "0.0.0.0:3000",
          value_parser = parse_listen)]
    pub listen: SocketAddr,
    /// Address and port for Prometheus metrics at /metrics, or `off` (no listener, no counting)
    #[arg(long, env = "GAVEL_ADMIN_LISTEN", value_name = "ADDR|off",
          default_value = DEFAULT_ADMIN_LISTEN, value_parser = parse_admin_listen)]
    pub admin_listen: AdminListen,
    /// PostgreSQL URL; the database is created when missing. Several hosts, tried in order at
    /// every (re)connection: postgres://user@h1:5432,h2:5432/gavel?target_session_attrs=read-write
    #[arg(long, env = "DATABASE_URL", value_name = "URL", hide_env_values = true, default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,
    /// Redis URL for the bid fast path (redis://[user:pass@]host[:port][/db]), or `off`
    #[arg(
        long,
        env = "REDIS_URL",
        value_name = "URL",
        hide_env_values = true,
        default_value = "redis://127.0.0.1:6379/0"
    )]
    pub redis_url: String,
    /// Worker threads, one per core, each pinned [default: the CPUs this process may run on]
    #[arg(long, env = "GAVEL_WORKERS", value_name = "N", value_parser = positive)]
    pub workers: Option<u64>,
    /// Log level: error, warn, info, debug, trace or off
    #[arg(long, env = "RUST_LOG", value_name = "LEVEL", default_value = "info",
          value_parser = parse_level)]
    pub log_level: LogLevel,
    /// Close keep-alive connections idle this long, in seconds
    #[arg(long, env = "GAVEL_IDLE_TIMEOUT_SECS", value_name = "SECS",
          default_value_t = DEFAULT_IDLE_TIMEOUT_SECS, value_parser = positive)]
    pub idle_timeout_secs: u64,
    /// On SIGTERM/SIGINT, how long in-flight requests may take, in seconds
    #[arg(long, env = "GAVEL_SHUTDOWN_TIMEOUT_SECS", value_name = "SECS",
          default_value_t = DEFAULT_SHUTDOWN_TIMEOUT_SECS, value_parser = positive)]
    pub shutdown_timeout_secs: u64,
    /// Longest wait for PostgreSQL before answering 503, in milliseconds
    #[arg(long, env = "GAVEL_DB_TIMEOUT_MS", value_name = "MS",
          default_value_t = DEFAULT_DB_TIMEOUT_MILLIS, value_parser = positive)]
    pub db_timeout_ms: u64,
    /// Share a port another Gavel already serves (a restart without downtime); else refuse it
    #[arg(long, env = "GAVEL_JOIN_PORT", value_name = "BOOL", default_value = "false",
          value_parser = parse_bool, action = ArgAction::Set)]
    pub join_port: bool,
    /// On SIGTERM/SIGINT, how long /ready answers 503 while requests are still served, before the
    /// listener closes: a load balancer's checks take the server out of rotation first (0: none)
    #[arg(long, env = "GAVEL_DRAIN_NOTICE_MS", value_name = "MS",
          default_value_t = 0, value_parser = drain_notice_millis)]
    pub drain_notice_ms: u64,
    /// Most live-update streams open at once (past it: 503)
    #[arg(long, env = "GAVEL_MAX_STREAMS", value_name = "N",
          default_value_t = DEFAULT_MAX_STREAMS as u64, value_parser = positive)]
    pub max_streams: u64,
    /// `*` or a comma-separated list of allowed origins
    #[arg(
        long,
        env = "GAVEL_CORS_ORIGINS",
        value_name = "ORIGINS",
        default_value = "*"
    )]
    pub cors_origins: String,
    #[command(flatten)]
    pub secret: SecretArgs,
    /// Pin each worker to its own core (false: let the kernel move them, for hosts whose cores
    /// other busy processes share)
    #[arg(long, env = "GAVEL_PIN_WORKERS", value_name = "BOOL", default_value = "true",
          value_parser = parse_bool, action = ArgAction::Set)]
    pub pin_workers: bool,
}

/// Unsets every variable of the command line that is set but empty, so that it counts as unset
/// (`GAVEL_WORKERS=` in a compose file means "the default", not "an empty number"). Runs before
/// parsing, while the process is still single-threaded.
pub fn forget_empty_variables() {
    let cli = Cli::command();
    let args = cli
        .get_arguments()
        .chain(cli.get_subcommands().flat_map(|sub| sub.get_arguments()));
    for name in args.filter_map(|arg| arg.get_env()) {
        if std::env::var_os(name).is_some_and(|v| v.is_empty()) {
            std::env::remove_var(name);
        }
    }
}

/// `--admin-listen`: an address, or `None` for `off`.
#[derive(Clone, Copy, Debug)]
pub struct AdminListen(pub Option<SocketAddr>);

/// `--log-level`: a level, or `None` for `off`.
#[derive(Clone, Copy, Debug)]
pub struct LogLevel(pub Option<Level>);

impl ServeArgs {
    /// The settings, once the values clap could not check alone (the secret file) are read.
    pub fn into_config(self) -> Result<Config, String> {
        Ok(Config {
            listen: self.listen,
            admin_listen: self.admin_listen.0,
            database_url: self.database_url,
            redis_url: self.redis_url,
            workers: self.workers.map_or_else(default_workers, |w| {
                usize::try_from(w).unwrap_or(usize::MAX)
            }),
            log_level: self.log_level.0,
            idle_timeout: Duration::from_secs(self.idle_timeout_secs),
            shutdown_timeout: Duration::from_secs(self.shutdown_timeout_secs),
            drain_notice: Duration::from_millis(self.drain_notice_ms),
            db_timeout: Duration::from_millis(self.db_timeout_ms),
            max_streams: usize::try_from(self.max_streams).unwrap_or(usize::MAX),
            join_port: self.join_port,
            cors: parse_cors(&self.cors_origins),
            pin_workers: self.pin_workers,
            auth_secret: self.secret.load()?,
        })
    }
}

fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    text.trim()
        .parse()
        .map_err(|_| "must be an address like 0.0.0.0:3000".to_owned())
}

fn parse_level(text: &str) -> Result<LogLevel, String> {
    Level::parse(text)
        .map(LogLevel)
        .ok_or_else(|| "must be error, warn, info, debug, trace or off".to_owned())
}

fn parse_admin_listen(text: &str) -> Result<AdminListen, String> {
    if text.trim().eq_ignore_ascii_case("off") {
        return Ok(AdminListen(None));
    }
    text.trim()
        .parse()
        .map(|a| AdminListen(Some(a)))
        .map_err(|_| "must be an address like 127.0.0.1:9464, or off".to_owned())
}

/// Longest drain notice: past a minute a stop would outlast any service manager's patience.
pub const MAX_DRAIN_NOTICE_MILLIS: u64 = 60_000;

fn drain_notice_millis(text: &str) -> Result<u64, String> {
    match text.trim().parse::<u64>() {
        Ok(n) if n <= MAX_DRAIN_NOTICE_MILLIS => Ok(n),
        _ => Err(format!(
            "must be a whole number from 0 to {MAX_DRAIN_NOTICE_MILLIS}"
        )),
    }
}

fn positive(text: &str) -> Result<u64, String> {
    match text.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("must be a whole number above 0".to_owned()),
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

fn parse_bool(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("must be true or false".to_owned()),
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

    /// Parses flags alone: the variables these tests could meet are cleared by
    /// `without_environment`, so that the machine's own cannot leak in.
    fn serve(a: &[&str]) -> Result<Config, String> {
        let cli = Cli::try_parse_from(std::iter::once("gavel").chain(a.iter().copied()))
            .map_err(|e| e.to_string())?;
        assert!(cli.command.is_none());
        cli.serve.into_config()
    }

    /// The flags every test passes so that no variable of the machine running them counts.
    const EXPLICIT: &[&str] = &[
        "--listen=0.0.0.0:3000",
        "--database-url=postgres://postgres@127.0.0.1:5432/gavel",
    ];

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults() {
        let c = serve(EXPLICIT).unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:3000");
        assert_eq!(c.database_url, DEFAULT_DATABASE_URL);
        if std::env::var_os("GAVEL_IDLE_TIMEOUT_SECS").is_none() {
            assert_eq!(
                c.idle_timeout,
                Duration::from_secs(DEFAULT_IDLE_TIMEOUT_SECS)
            );
        }
        assert!(c.workers >= 1);
    }

    #[test]
    fn admin_listen_off_or_an_address() {
        let c = serve(&["--admin-listen", "OFF"]).unwrap();
        assert_eq!(c.admin_listen, None);
        let c = serve(&["--admin-listen=0.0.0.0:9100"]).unwrap();
        assert_eq!(c.admin_listen.map(|a| a.port()), Some(9100));
        assert!(serve(&["--admin-listen", "localhost"]).is_err());
    }

    #[test]
    fn auth_secret_sources() {
        let long = "k".repeat(MIN_AUTH_SECRET_BYTES);
        let c = serve(&["--auth-secret", &long]).unwrap();
        assert_eq!(c.auth_secret.as_deref(), Some(long.as_bytes()));
        let short = "k".repeat(MIN_AUTH_SECRET_BYTES - 1);
        assert!(serve(&["--auth-secret", &short]).is_err());
        let path = std::env::temp_dir().join(format!("gavel-secret-{}", std::process::id()));
        std::fs::write(&path, format!("{long}\n")).unwrap();
        let file = path.to_string_lossy().into_owned();
        let c = serve(&["--auth-secret-file", &file]).unwrap();
        assert_eq!(c.auth_secret.as_deref(), Some(long.as_bytes()));
        assert!(serve(&["--auth-secret-file", &file, "--auth-secret", &long]).is_err());
        std::fs::remove_file(path).unwrap();
        assert!(serve(&["--auth-secret-file", "/nonexistent/secret"]).is_err());
    }

    #[test]
    fn flags_take_both_forms() {
        let c = serve(&[
            "--listen",
            "127.0.0.1:1",
            "--workers=3",
            "--cors-origins",
            "https://a, https://b",
        ])
        .unwrap();
        assert_eq!(c.listen.port(), 1);
        assert_eq!(c.workers, 3);
        assert_eq!(
            c.cors,
            CorsSetting::Origins(vec!["https://a".into(), "https://b".into()])
        );
        assert!(!serve(&["--pin-workers", "false"]).unwrap().pin_workers);
        assert!(serve(&["--join-port=yes"]).unwrap().join_port);
        let c = serve(&["--drain-notice-ms", "60000"]).unwrap();
        assert_eq!(
            c.drain_notice,
            Duration::from_millis(MAX_DRAIN_NOTICE_MILLIS)
        );
    }

    #[test]
    fn bad_values_are_refused() {
        for bad in [
            &["--workers", "0"][..],
            &["--listen", "nowhere"],
            &["--nope", "1"],
            &["--listen"],
            &["--log-level", "loud"],
            &["--pin-workers", "maybe"],
            &["--db-timeout-ms", "-5"],
            &["stray"],
            &["--drain-notice-ms", "60001"],
        ] {
            assert!(serve(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn help_and_version_are_answers_not_errors() {
        for (flag, kind) in [
            ("--help", clap::error::ErrorKind::DisplayHelp),
            ("-h", clap::error::ErrorKind::DisplayHelp),
            ("--version", clap::error::ErrorKind::DisplayVersion),
            ("-V", clap::error::ErrorKind::DisplayVersion),
        ] {
            let e = Cli::try_parse_from(["gavel", flag]).unwrap_err();
            assert_eq!(e.kind(), kind, "{flag}");
            assert_eq!(e.exit_code(), 0, "{flag}");
        }
        let help = Cli::command().render_long_help().to_string();
        for needle in [
            "DATABASE_URL",
            "GAVEL_WORKERS",
            "token",
            "migrate",
            "RUST_LOG",
        ] {
            assert!(help.contains(needle), "{needle}");
        }
        assert!(VERSION.contains("commit "), "{VERSION}");
    }
}
