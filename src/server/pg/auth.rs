//! Who may connect over the Postgres protocol: with `--token`, the token is the
//! password (asked for in cleartext, so off loopback the connection needs TLS in
//! front of it, e.g. a TLS-terminating proxy); without a token, everyone is trusted.
//!
//! Either way the connection is registered for cancel requests (psql's Ctrl-C).

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::auth::cleartext::CleartextPasswordAuthStartupHandler;
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::auth::{AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler};
use pgwire::api::{ClientInfo, ConnectionManager};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

/// How a connection starts: trusted, or after the token was given as the password.
pub enum Startup {
    /// No `--token`: every client is let in.
    Trust(Trust),
    /// `--token`: the password must be the token.
    Token(Box<CleartextPasswordAuthStartupHandler<TokenSource, DefaultServerParameterProvider>>),
}

impl Startup {
    /// The startup of a server with `token` (or none), registering connections with `connections`.
    pub fn new(token: Option<String>, connections: Arc<ConnectionManager>) -> Startup {
        match token {
            None => Startup::Trust(Trust { connections }),
            Some(token) => Startup::Token(Box::new(
                CleartextPasswordAuthStartupHandler::new(TokenSource { token }, DefaultServerParameterProvider::default()).with_connection_manager(connections),
            )),
        }
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(&self, client: &mut C, message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match self {
            Startup::Trust(trust) => trust.on_startup(client, message).await,
            Startup::Token(token) => token.on_startup(client, message).await,
        }
    }
}

/// The startup of a server without a token.
pub struct Trust {
    connections: Arc<ConnectionManager>,
}

impl NoopStartupHandler for Trust {
    fn connection_manager(&self) -> Option<Arc<ConnectionManager>> {
        Some(Arc::clone(&self.connections))
    }
}

/// The server's token, as every user's password.
pub struct TokenSource {
    token: String,
}

impl Debug for TokenSource {
    // The token stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSource")
    }
}

#[async_trait]
impl AuthSource for TokenSource {
    async fn get_password(&self, _login: &LoginInfo) -> PgWireResult<Password> {
        Ok(Password::new(None, self.token.as_bytes().to_vec()))
    }

    async fn verify_password(&self, login: &LoginInfo, presented: &[u8]) -> PgWireResult<Option<()>> {
        if std::str::from_utf8(presented).is_ok_and(|presented| crate::server::service::same_token(&self.token, presented)) {
            Ok(None)
        } else {
            Err(PgWireError::InvalidPassword(login.user().unwrap_or_default().to_owned()))
        }
    }
}
