//! Bearer tokens: HS256 JWTs with `sub` (the caller's id), `role` and `exp`, checked on every POST
//! when a secret is configured. Signing and verification are the `jsonwebtoken` crate's.

use super::error::ApiError;
use crate::domain::parse_id;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// Clock difference tolerated on `exp` between the token's issuer and this server.
pub const JWT_LEEWAY_SECS: u64 = 30;

/// Longest `Authorization` value looked at; a JWT with these three claims is far shorter, and a
/// longer one is refused before any decoding work.
pub const MAX_AUTHORIZATION_BYTES: usize = 4_096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Bidder,
    Seller,
    Admin,
}

impl Role {
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "bidder" => Some(Role::Bidder),
            "seller" => Some(Role::Seller),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Bidder => "bidder",
            Role::Seller => "seller",
            Role::Admin => "admin",
        }
    }
}

/// Who a verified token says is calling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    pub id: i64,
    pub role: Role,
}

#[derive(Serialize, Deserialize)]
struct Claims {
    sub: String,
    role: String,
    exp: u64,
}

/// The verifier, built once from the secret and shared read-only by every worker.
pub struct Auth {
    key: DecodingKey,
    validation: Validation,
}

impl Auth {
    pub fn new(secret: &[u8]) -> Auth {
        // Only HS256: a token naming any other algorithm, `none` included, is refused.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = JWT_LEEWAY_SECS;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Auth {
            key: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// Checks an `Authorization` header value: `Bearer <JWT>`, signed with the secret, unexpired,
    /// with a `sub` that is an ID and a known `role`.
    pub fn verify(&self, authorization: Option<&[u8]>) -> Result<Caller, ApiError> {
        let value = authorization.ok_or(ApiError::Unauthorized("a bearer token is required"))?;
        if value.len() > MAX_AUTHORIZATION_BYTES {
            return Err(ApiError::Unauthorized("the bearer token is malformed"));
        }
        let value = std::str::from_utf8(value)
            .map_err(|_| ApiError::Unauthorized("the bearer token is malformed"))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(ApiError::Unauthorized("the bearer token is malformed"))?;
        let data =
            decode::<Claims>(token, &self.key, &self.validation).map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    ApiError::Unauthorized("the bearer token has expired")
                }
                _ => ApiError::Unauthorized("the bearer token is not valid"),
            })?;
        let id = parse_id(&data.claims.sub).ok_or(ApiError::Unauthorized(
            "the bearer token's sub is not an id",
        ))?;
        let role = Role::parse(&data.claims.role).ok_or(ApiError::Unauthorized(
            "the bearer token's role is not known",
        ))?;
        Ok(Caller { id, role })
    }
}

/// Makes a token (for `gavel token`, operators and load tests).
pub fn issue(secret: &[u8], sub: i64, role: Role, expires_at_unix_secs: u64) -> String {
    let claims = Claims {
        sub: sub.to_string(),
        role: role.as_str().to_owned(),
        exp: expires_at_unix_secs,
    };
    // HS256 signing of a small struct cannot fail.
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"test-secret";

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn bearer(t: &str) -> Vec<u8> {
        format!("Bearer {t}").into_bytes()
    }

    #[test]
    fn accepts_a_good_token() {
        let auth = Auth::new(SECRET);
        let t = issue(SECRET, 42, Role::Bidder, now() + 60);
        assert_eq!(
            auth.verify(Some(&bearer(&t))),
            Ok(Caller {
                id: 42,
                role: Role::Bidder
            })
        );
    }

    #[test]
    fn refuses_bad_tokens() {
        let auth = Auth::new(SECRET);
        let forged = issue(b"other", 42, Role::Admin, now() + 60);
        let expired = issue(SECRET, 42, Role::Bidder, now() - JWT_LEEWAY_SECS - 10);
        for header in [
            None,
            Some(b"".to_vec()),
            Some(b"Basic abc".to_vec()),
            Some(b"Bearer ".to_vec()),
            Some(bearer("not.a.jwt")),
            Some(bearer(&forged)),
            Some(bearer(&expired)),
            Some(vec![b'a'; MAX_AUTHORIZATION_BYTES + 1]),
        ] {
            let r = auth.verify(header.as_deref());
            assert!(matches!(r, Err(ApiError::Unauthorized(_))), "{header:?}");
        }
    }
}
