//! Who may call the Flight SQL face: with `--token`, every call carries
//! `authorization: Bearer TOKEN`, or a basic login whose password is the token
//! (ADBC's `username`/`password` options send that to `Handshake` and then use
//! the bearer token it answers); without a token, everyone is let in.

use base64::Engine;
use tonic::metadata::MetadataValue;
use tonic::{Request, Status};

use crate::server::service::same_token;

/// The credential a server asks of its Flight clients.
#[derive(Clone)]
pub enum Access {
    /// No `--token`: every call is let in.
    Open,
    /// `--token`: every call must present it.
    Token(String),
}

impl std::fmt::Debug for Access {
    // The token stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Access::Open => "Access::Open",
            Access::Token(_) => "Access::Token",
        })
    }
}

impl Access {
    /// The access of a server started with `token` (or none).
    pub fn new(token: Option<String>) -> Access {
        token.map_or(Access::Open, Access::Token)
    }

    /// Lets `request` through if it presents the token (as a bearer token or a
    /// basic login's password); else `Unauthenticated` saying what to send.
    #[allow(clippy::result_large_err)] // tonic's interceptors answer a `Status`.
    pub fn check(&self, request: Request<()>) -> Result<Request<()>, Status> {
        let Access::Token(token) = self else {
            return Ok(request);
        };
        let Some(header) = request.metadata().get("authorization") else {
            return Err(Status::unauthenticated(
                "this server needs a token: send `authorization: Bearer TOKEN`, or log in with any user name and the token as the password",
            ));
        };
        let presented = header.to_str().ok().and_then(presented_token);
        if presented.is_some_and(|presented| same_token(token, &presented)) {
            Ok(request)
        } else {
            Err(Status::unauthenticated("wrong token: the server's --token is the bearer token, or the password of a basic login"))
        }
    }

    /// The `Handshake` answer: the token to send as `Bearer` from now on (the
    /// caller was already let through by [`Access::check`]), or nothing without a token.
    pub fn handshake_token(&self) -> Option<(&str, MetadataValue<tonic::metadata::Ascii>)> {
        let Access::Token(token) = self else {
            return None;
        };
        let header = MetadataValue::try_from(format!("Bearer {token}")).ok()?;
        Some((token.as_str(), header))
    }
}

/// The token in an `authorization` header: a bearer token, or a basic login's password.
fn presented_token(header: &str) -> Option<String> {
    let (scheme, credential) = header.trim().split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(credential.trim().to_string());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        // Go's Flight client (under ADBC) leaves out the padding; others send it.
        let engine = base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new().with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
        );
        let decoded = engine.decode(credential.trim()).ok()?;
        let login = String::from_utf8(decoded).ok()?;
        let (_user, password) = login.split_once(':')?;
        return Some(password.to_string());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_header(value: &str) -> Request<()> {
        let mut request = Request::new(());
        request.metadata_mut().insert("authorization", MetadataValue::try_from(value).unwrap());
        request
    }

    #[test]
    fn bearer_and_basic_logins_carry_the_token() {
        let access = Access::new(Some("s3cret".into()));
        assert!(access.check(with_header("Bearer s3cret")).is_ok());
        let basic = base64::engine::general_purpose::STANDARD.encode("anyone:s3cret");
        assert!(access.check(with_header(&format!("Basic {basic}"))).is_ok());
        let unpadded = base64::engine::general_purpose::STANDARD_NO_PAD.encode("anyone:s3cret");
        assert!(access.check(with_header(&format!("Basic {unpadded}"))).is_ok());
        let wrong = base64::engine::general_purpose::STANDARD.encode("anyone:guess");
        assert_eq!(access.check(with_header(&format!("Basic {wrong}"))).unwrap_err().code(), tonic::Code::Unauthenticated);
        assert_eq!(access.check(with_header("Bearer s3cre")).unwrap_err().code(), tonic::Code::Unauthenticated);
        assert_eq!(access.check(Request::new(())).unwrap_err().code(), tonic::Code::Unauthenticated);
        assert!(Access::new(None).check(Request::new(())).is_ok());
    }
}
