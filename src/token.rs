//! `gavel token`: prints a bearer token for operators and load tests.
//!
//! `gavel token --sub 42 --role bidder --ttl 1h`, signed with the secret the server uses
//! (`--auth-secret`/`--auth-secret-file` or `GAVEL_AUTH_SECRET`/`GAVEL_AUTH_SECRET_FILE`).

use crate::api::auth::{issue, Role};
use crate::config::{Command, Config};
use crate::domain::parse_id;

/// Longest lifetime a token may be given: a day keeps a leaked load-test token short-lived.
pub const MAX_TOKEN_TTL_SECS: u64 = 86_400;

pub const USAGE: &str = "usage: gavel token --sub ID --role bidder|seller|admin --ttl 1h \
[--auth-secret S | --auth-secret-file F]";

/// Runs the subcommand: the token on success, a message for standard error otherwise.
pub fn run(args: &[String], env: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let (mut sub, mut role, mut ttl) = (None, None, None);
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) => (n, Some(v.to_owned())),
            None => (arg.as_str(), None),
        };
        let mut value = || inline.clone().or_else(|| it.next().cloned()).ok_or(USAGE);
        match name {
            "--sub" => sub = Some(value()?),
            "--role" => role = Some(value()?),
            "--ttl" => ttl = Some(value()?),
            "--auth-secret" | "--auth-secret-file" => {
                let v = value()?;
                rest.push(name.to_owned());
                rest.push(v);
            }
            _ => return Err(USAGE.to_owned()),
        }
    }
    let sub = sub
        .as_deref()
        .and_then(parse_id)
        .ok_or("--sub must be an id")?;
    let role = role
        .as_deref()
        .and_then(Role::parse)
        .ok_or("--role must be bidder, seller or admin")?;
    let ttl = parse_ttl(ttl.as_deref().unwrap_or("1h"))?;
    let secret = match Config::from_args(&rest, env)? {
        Command::Serve(cfg) => cfg.auth_secret,
        Command::Help => None,
    }
    .ok_or("no secret: give --auth-secret, --auth-secret-file or GAVEL_AUTH_SECRET")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| "the clock is before 1970")?
        .as_secs();
    Ok(issue(&secret, sub, role, now + ttl))
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
        let env = |k: &str| (k == "GAVEL_AUTH_SECRET").then(|| secret.clone());
        let args: Vec<String> = ["--sub", "42", "--role", "bidder", "--ttl", "1h"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let token = run(&args, env).unwrap();
        let auth = crate::api::auth::Auth::new(secret.as_bytes());
        let header = format!("Bearer {token}");
        let caller = auth.verify(Some(header.as_bytes())).unwrap();
        assert_eq!((caller.id, caller.role), (42, Role::Bidder));
        assert!(run(&args, |_| None).is_err(), "no secret");
        let bad: Vec<String> = ["--sub", "0", "--role", "bidder"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(run(&bad, env).is_err());
    }
}
