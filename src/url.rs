//! The parts of a `scheme://[user[:password]@]host[:port][/path][?query]` URL, as the PostgreSQL
//! and Redis clients read their settings from one. Error texts never include the password.

/// What follows `scheme://`, taken apart; user, password and host are percent-decoded, path and
/// query are left raw for the caller's own rules.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Parts<'a> {
    pub user: Option<String>,
    /// `None` also for an empty password (`user:@host`), which no server accepts as a password.
    pub password: Option<String>,
    /// The first host of the list, and its port.
    pub host: Option<String>,
    pub port: Option<u16>,
    /// Every `host[:port]` of a comma-separated list (libpq's form), the first one included.
    pub hosts: Vec<(Option<String>, Option<u16>)>,
    pub path: &'a str,
    pub query: &'a str,
}

pub fn split(rest: &str) -> Result<Parts<'_>, String> {
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    // The authority ends at the first '/' after the last '@', so an unencoded '/' in a password
    // does not cut the URL short.
    let at = rest.rfind('@').map_or(0, |i| i + 1);
    let (authority, path) = match rest[at..].find('/') {
        Some(i) => (&rest[..at + i], &rest[at + i + 1..]),
        None => (rest, ""),
    };
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(i) => (&authority[..i], &authority[i + 1..]),
        None => ("", authority),
    };
    let mut parts = Parts {
        path,
        query,
        ..Parts::default()
    };
    userinfo_into(userinfo, &mut parts)?;
    hostport_into(hostport, &mut parts)?;
    Ok(parts)
}

fn userinfo_into(userinfo: &str, parts: &mut Parts<'_>) -> Result<(), String> {
    if userinfo.is_empty() {
        return Ok(());
    }
    let (user, password) = match userinfo.split_once(':') {
        Some((u, p)) => (u, Some(p)),
        None => (userinfo, None),
    };
    let user = percent_decode(user)?;
    parts.user = (!user.is_empty()).then_some(user);
    parts.password = match password.map(percent_decode).transpose()? {
        Some(p) if !p.is_empty() => Some(p),
        _ => None,
    };
    Ok(())
}

fn hostport_into(hostport: &str, parts: &mut Parts<'_>) -> Result<(), String> {
    let list: Vec<&str> = hostport.split(',').collect();
    for one in &list {
        if one.is_empty() && list.len() > 1 {
            return Err("an empty host in the host list".to_owned());
        }
        parts.hosts.push(one_hostport(one)?);
    }
    if let Some((host, port)) = parts.hosts.first() {
        parts.host = host.clone();
        parts.port = *port;
    }
    Ok(())
}

fn one_hostport(hostport: &str) -> Result<(Option<String>, Option<u16>), String> {
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or("unclosed '[' in host")?;
        match after {
            "" => (host, None),
            p => (
                host,
                Some(p.strip_prefix(':').ok_or("junk after ']' in host")?),
            ),
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    let host = if host.is_empty() {
        None
    } else {
        Some(percent_decode(host)?)
    };
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n != 0 && p.bytes().all(|b| b.is_ascii_digit()) => Some(n),
            _ => return Err(format!("bad port {p:?}")),
        },
    };
    Ok((host, port))
}

/// Decodes %XX escapes; '+' stays '+' (these are not form-encoded).
pub fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("bad %-escape")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "%-escapes do not decode to UTF-8".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_urls_apart() {
        let p = split("u%40x:p%2Fw/d@[::1]:6380/db/x?a=b").unwrap();
        assert_eq!(p.user.as_deref(), Some("u@x"));
        assert_eq!(p.password.as_deref(), Some("p/w/d"));
        assert_eq!(p.host.as_deref(), Some("::1"));
        assert_eq!(p.port, Some(6380));
        assert_eq!((p.path, p.query), ("db/x", "a=b"));
        let bare = split("host").unwrap();
        assert_eq!(bare.host.as_deref(), Some("host"));
        assert_eq!((bare.user, bare.port, bare.path), (None, None, ""));
        assert_eq!(split("u:@h").unwrap().password, None);
    }

    #[test]
    fn takes_host_lists_apart() {
        let p = split("u@h1:5433,[::1],h3:6000/db").unwrap();
        assert_eq!(
            p.hosts,
            vec![
                (Some("h1".into()), Some(5433)),
                (Some("::1".into()), None),
                (Some("h3".into()), Some(6000)),
            ]
        );
        assert_eq!((p.host.as_deref(), p.port), (Some("h1"), Some(5433)));
        assert_eq!(split("h").unwrap().hosts.len(), 1);
        for bad in ["h1,,h2", "h1,", ",h2", "h1:5432,h2:0", "h1,[::1"] {
            assert!(split(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn refuses_bad_parts_without_showing_the_password() {
        for bad in [
            "h:0",
            "h:99999",
            "h:x",
            "[::1",
            "[::1]x",
            "u:secret%zz@h",
            "%ff@h",
        ] {
            let e = split(bad).unwrap_err();
            assert!(!e.contains("secret"), "{bad}: {e}");
        }
    }
}
