//! The client side of authentication: trust, cleartext password, MD5 and SCRAM-SHA-256 (without
//! channel binding, as this client has no TLS). IO-free: it turns server messages into replies.

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;

use super::error::PgError;

/// What the handshake does after an authentication message.
#[derive(Debug)]
pub(crate) enum AuthStep {
    /// Send these bytes and wait for the next authentication message.
    Send(BytesMut),
    /// Nothing to send; the next authentication message follows.
    Wait,
    /// Authenticated: session start-up messages follow.
    Done,
}

/// Where the SCRAM exchange stands. `ScramSha256::message` panics once the exchange is over, so
/// the state tracks exactly when it may be called: a server sending steps out of order gets an
/// `Auth` error, never a panic.
enum Scram {
    NotStarted,
    /// Client-first sent, waiting for server-first.
    Started(Box<ScramSha256>),
    /// Client-final sent, waiting for the server's signature.
    Proved(Box<ScramSha256>),
    Verified,
    /// A step failed; everything after it is refused.
    Failed,
}

pub(crate) struct Authenticator<'a> {
    user: &'a str,
    password: Option<&'a str>,
    scram: Scram,
}

impl<'a> Authenticator<'a> {
    pub fn new(user: &'a str, password: Option<&'a str>) -> Self {
        Authenticator {
            user,
            password,
            scram: Scram::NotStarted,
        }
    }

    /// Handles one Authentication* message.
    pub fn step(&mut self, msg: &Message) -> Result<AuthStep, PgError> {
        match msg {
            Message::AuthenticationOk => self.ok(),
            Message::AuthenticationCleartextPassword => {
                let pw = self.password()?;
                password_message(pw.as_bytes())
            }
            Message::AuthenticationMd5Password(body) => {
                let hash = md5_hash(
                    self.user.as_bytes(),
                    self.password()?.as_bytes(),
                    body.salt(),
                );
                password_message(hash.as_bytes())
            }
            Message::AuthenticationSasl(body) => {
                let mechanisms: Vec<&str> = body
                    .mechanisms()
                    .collect()
                    .map_err(|e| PgError::Protocol(format!("malformed SASL mechanisms: {e}")))?;
                self.scram_start(&mechanisms)
            }
            Message::AuthenticationSaslContinue(body) => self.scram_continue(body.data()),
            Message::AuthenticationSaslFinal(body) => self.scram_final(body.data()),
            _ => Err(PgError::Auth(
                "the server asked for an authentication method this client does not support \
                 (Kerberos, GSSAPI, SSPI or SCM)"
                    .into(),
            )),
        }
    }

    fn password(&self) -> Result<&'a str, PgError> {
        self.password.ok_or_else(|| {
            PgError::Auth(format!(
                "the server requires a password for user {:?} and none was configured",
                self.user
            ))
        })
    }

    fn ok(&mut self) -> Result<AuthStep, PgError> {
        match self.scram {
            // Accepting OK before the server proved it knows the password would let an
            // impostor skip SCRAM's mutual authentication.
            Scram::Started(_) | Scram::Proved(_) | Scram::Failed => Err(PgError::Auth(
                "server ended SCRAM without proving its identity".into(),
            )),
            _ => Ok(AuthStep::Done),
        }
    }

    fn scram_start(&mut self, mechanisms: &[&str]) -> Result<AuthStep, PgError> {
        if !matches!(self.scram, Scram::NotStarted) {
            return Err(out_of_order());
        }
        if !mechanisms.contains(&SCRAM_SHA_256) {
            return Err(PgError::Auth(format!(
                "no supported SASL mechanism among {mechanisms:?}"
            )));
        }
        let scram = ScramSha256::new(self.password()?.as_bytes(), ChannelBinding::unsupported());
        let mut buf = BytesMut::new();
        frontend::sasl_initial_response(SCRAM_SHA_256, scram.message(), &mut buf)
            .map_err(|e| PgError::Auth(e.to_string()))?;
        self.scram = Scram::Started(Box::new(scram));
        Ok(AuthStep::Send(buf))
    }

    fn scram_continue(&mut self, data: &[u8]) -> Result<AuthStep, PgError> {
        let Scram::Started(mut scram) = std::mem::replace(&mut self.scram, Scram::Failed) else {
            return Err(out_of_order());
        };
        scram
            .update(data)
            .map_err(|e| PgError::Auth(format!("SCRAM: {e}")))?;
        let mut buf = BytesMut::new();
        frontend::sasl_response(scram.message(), &mut buf)
            .map_err(|e| PgError::Auth(e.to_string()))?;
        self.scram = Scram::Proved(scram);
        Ok(AuthStep::Send(buf))
    }

    fn scram_final(&mut self, data: &[u8]) -> Result<AuthStep, PgError> {
        let Scram::Proved(mut scram) = std::mem::replace(&mut self.scram, Scram::Failed) else {
            return Err(out_of_order());
        };
        scram
            .finish(data)
            .map_err(|e| PgError::Auth(format!("SCRAM: server signature rejected: {e}")))?;
        self.scram = Scram::Verified;
        Ok(AuthStep::Wait)
    }
}

fn out_of_order() -> PgError {
    PgError::Auth("SCRAM messages out of order".into())
}

fn password_message(pw: &[u8]) -> Result<AuthStep, PgError> {
    let mut buf = BytesMut::new();
    frontend::password_message(pw, &mut buf).map_err(|e| PgError::Auth(e.to_string()))?;
    Ok(AuthStep::Send(buf))
}

#[cfg(test)]
mod tests {
    use super::super::codec::tests::msg;
    use super::*;

    fn auth(code: i32, data: &[u8]) -> Message {
        let mut body = code.to_be_bytes().to_vec();
        body.extend_from_slice(data);
        let mut buf = BytesMut::from(&msg(b'R', &body)[..]);
        Message::parse(&mut buf).unwrap().unwrap()
    }

    fn sent(step: AuthStep) -> Vec<u8> {
        match step {
            AuthStep::Send(b) => b.to_vec(),
            other => panic!("expected bytes to send, got {other:?}"),
        }
    }

    #[test]
    fn trust_needs_nothing() {
        let mut a = Authenticator::new("u", None);
        assert!(matches!(a.step(&auth(0, &[])), Ok(AuthStep::Done)));
    }

    #[test]
    fn cleartext_and_missing_password() {
        let mut a = Authenticator::new("u", Some("pw"));
        assert_eq!(sent(a.step(&auth(3, &[])).unwrap()), msg(b'p', b"pw\0"));
        let mut a = Authenticator::new("u", None);
        assert!(matches!(a.step(&auth(3, &[])), Err(PgError::Auth(_))));
    }

    #[test]
    fn md5_reply_uses_user_password_and_salt() {
        // Known answer for user md5_user, password "password", salt 2a3d8fe0.
        let mut a = Authenticator::new("md5_user", Some("password"));
        let bytes = sent(a.step(&auth(5, &[0x2a, 0x3d, 0x8f, 0xe0])).unwrap());
        assert_eq!(bytes, msg(b'p', b"md562af4dd09bbb41884907a838a3233294\0"));
    }

    #[test]
    fn unsupported_methods_are_auth_errors() {
        for code in [2, 6, 7, 9] {
            let mut a = Authenticator::new("u", Some("p"));
            assert!(
                matches!(a.step(&auth(code, &[])), Err(PgError::Auth(_))),
                "{code}"
            );
        }
        let mut a = Authenticator::new("u", Some("p"));
        let plus_only = b"SCRAM-SHA-256-PLUS\0\0";
        assert!(matches!(
            a.step(&auth(10, plus_only)),
            Err(PgError::Auth(_))
        ));
    }

    /// Client-first carries no channel binding ("n,,") and a nonce; a server nonce that does not
    /// extend it, or steps out of order, end in `Auth`, never a panic.
    #[test]
    fn scram_steps() {
        let mut a = Authenticator::new("u", Some("pencil"));
        let first = sent(a.step(&auth(10, b"SCRAM-SHA-256\0\0")).unwrap());
        assert_eq!(first[0], b'p');
        let text = String::from_utf8_lossy(&first);
        let at = text.find("n,,n=,r=").expect("client-first message");
        let nonce = text[at + 8..].to_string();
        assert!(nonce.len() >= 18, "{nonce:?}");
        // final before continue
        assert!(matches!(
            a.step(&auth(12, b"v=AAAA")),
            Err(PgError::Auth(_))
        ));

        let mut a = Authenticator::new("u", Some("pencil"));
        a.step(&auth(10, b"SCRAM-SHA-256\0\0")).unwrap();
        let bad = auth(11, b"r=someone-else,s=c2FsdA==,i=4096");
        assert!(matches!(a.step(&bad), Err(PgError::Auth(_))));
        // once failed, the exchange stays failed
        assert!(matches!(a.step(&bad), Err(PgError::Auth(_))));
        assert!(matches!(
            a.step(&auth(12, b"v=AAAA")),
            Err(PgError::Auth(_))
        ));
        assert!(matches!(a.step(&auth(0, &[])), Err(PgError::Auth(_))));
    }

    #[test]
    fn scram_proof_then_wrong_server_signature() {
        let mut a = Authenticator::new("u", Some("pencil"));
        let first = sent(a.step(&auth(10, b"SCRAM-SHA-256\0\0")).unwrap());
        let text = String::from_utf8_lossy(&first).into_owned();
        let nonce = &text[text.find("r=").unwrap() + 2..];
        let server_first = format!("r={nonce}SERVER,s=c2FsdHNhbHQ=,i=4096");
        let proof = sent(a.step(&auth(11, server_first.as_bytes())).unwrap());
        let proof = String::from_utf8_lossy(&proof).into_owned();
        assert!(
            proof.contains(&format!("c=biws,r={nonce}SERVER,p=")),
            "{proof}"
        );
        // OK before the server's signature is refused
        let mut early = Authenticator::new("u", Some("pencil"));
        early.step(&auth(10, b"SCRAM-SHA-256\0\0")).unwrap();
        assert!(matches!(early.step(&auth(0, &[])), Err(PgError::Auth(_))));
        // a wrong signature is refused
        assert!(matches!(
            a.step(&auth(12, b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")),
            Err(PgError::Auth(_))
        ));
        assert!(matches!(
            a.step(&auth(12, b"v=AAAA")),
            Err(PgError::Auth(_))
        ));
    }
}
