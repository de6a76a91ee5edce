//! `gavel token`: prints a bearer token for operators and load tests.
//!
//! `gavel token --sub 42 --role bidder --ttl 1h`, signed with the secret the server uses
//! (`--auth-secret`/`--auth-secret-file` or `GAVEL_AUTH_SECRET`/`GAVEL_AUTH_SECRET_FILE`).

use crate::api::auth::{issue, Role};
use crate::config::SecretArgs;
use crate::domain::parse_id;
use clap::Args;

/// Longest lifetime a token may be given: a day keeps a leaked load-test token short-lived.
pub const MAX_TOKEN_TTL_SECS: u64 = 86_400;

#[derive(Args, Debug)]
pub struct TokenArgs {
    /// The caller's id, the token's subject
    #[arg(long, value_name = "ID", value_parser = parse_sub)]
    pub sub: i64,
    /// What the caller may do
    #[arg(long, value_parser = ["bidder", "seller", "admin"])]
    pub role: String,
    /// How long the token lasts: 90s, 15m, 1h or 1d, at most a day
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    pub ttl: u64,
    #[command(flatten)]
    pub secret: SecretArgs,
}

fn parse_sub(text: &str) -> Result<i64, String> {
    parse_id(text).ok_or_else(|| "must be an id (a whole number above 0)".to_owned())
}

/// Runs the subcommand: the token on success, a message for standard error otherwise.
pub fn run(args: TokenArgs) -> Result<String, String> {
    let role = Role::parse(&args.role).ok_or("--role must be bidder, seller or admin")?;
    let secret = args
        .secret
        .load()?
        .ok_or("no secret: give --auth-secret, --auth-secret-file or GAVEL_AUTH_SECRET")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| "the clock is before 1970")?
        .as_secs();
    Ok(issue(&secret, args.sub, role, now + args.ttl))
}

/// `90`, `90s`, `15m`, `1h`, `1d`: seconds, 1 up to `MAX_TOKEN_TTL_SECS`.
pub fn parse_ttl(text: &str) -> Result<u64, String> {
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, "s"),
    };
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => 0,
    };
    let secs = digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .filter(|s| (1..=MAX_TOKEN_TTL_SECS).contains(s));
    secs.ok_or_else(|| {
        format!("--ttl must be like 90s, 15m, 1h or 1d, at most {MAX_TOKEN_TTL_SECS}s")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls() {
        assert_eq!(parse_ttl("90"), Ok(90));
        assert_eq!(parse_ttl("15m"), Ok(900));
        assert_eq!(parse_ttl("1h"), Ok(3_600));
        assert_eq!(parse_ttl("1d"), Ok(MAX_TOKEN_TTL_SECS));
        for bad in ["", "0", "0s", "2d", "86401", "h", "1x", "-1h", "1.5h"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn makes_a_token_the_server_accepts() {
        let secret = "s".repeat(32);
        let args = |sub: i64| TokenArgs {
            sub,
            role: "bidder".into(),
            ttl: 3_600,
            secret: SecretArgs {
                auth_secret: Some(secret.clone()),
                auth_secret_file: None,
            },
        };
        let token = run(args(42)).unwrap();
        let auth = crate::api::auth::Auth::new(secret.as_bytes());
        let header = format!("Bearer {token}");
        let caller = auth.verify(Some(header.as_bytes())).unwrap();
        assert_eq!((caller.id, caller.role), (42, Role::Bidder));
        let mut none = args(42);
        none.secret = SecretArgs::default();
        assert!(run(none).is_err(), "no secret");
        assert!(parse_sub("0").is_err());
    }
}
