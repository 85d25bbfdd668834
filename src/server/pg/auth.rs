//! Who may connect over the Postgres protocol: with `--token`, the token is the
//! password; without a token, everyone is trusted.
//!
//! The password is checked with SCRAM-SHA-256, as Postgres checks it by default:
//! the client proves it knows the token without sending it, so even without TLS
//! nobody listening learns it. With TLS (`--pg-tls-cert`), SCRAM-SHA-256-PLUS is
//! offered too: its channel binding ties the login to the TLS session.
//!
//! Either way the connection is registered for cancel requests (psql's Ctrl-C).

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::auth::sasl::scram::{gen_salted_password, ScramAuth};
use pgwire::api::auth::sasl::SASLAuthStartupHandler;
use pgwire::api::auth::{AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler};
use pgwire::api::{ClientInfo, ConnectionManager, METADATA_USER};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

/// SCRAM's hashing rounds: Postgres's default, so a login costs what it costs there.
const SCRAM_ITERATIONS: usize = 4096;

/// How a connection starts: trusted, or after proving it knows the token.
pub enum Startup {
    /// No `--token`: every client is let in.
    Trust(Trust),
    /// `--token`: the password must be the token, proven with SCRAM.
    Token(Box<Scram>),
}

/// SCRAM logins: channel binding is offered only over TLS, as Postgres does
/// (libpq refuses a server that offers it on a plain connection).
pub struct Scram {
    plain: SASLAuthStartupHandler<DefaultServerParameterProvider>,
    /// With `--pg-tls-cert`: the logins of TLS connections, which may bind the channel.
    secure: Option<SASLAuthStartupHandler<DefaultServerParameterProvider>>,
}

impl Startup {
    /// The startup of a server with `token` (or none), registering connections
    /// with `connections`; `tls_certificate` (PEM) enables channel binding.
    pub fn new(token: Option<String>, connections: Arc<ConnectionManager>, tls_certificate: Option<&[u8]>) -> PgWireResult<Startup> {
        let Some(token) = token else { return Ok(Startup::Trust(Trust { connections })) };
        let source = Arc::new(TokenSource::new(&token));
        let handler = |certificate: Option<&[u8]>| -> PgWireResult<_> {
            let mut scram = ScramAuth::new(Arc::clone(&source) as Arc<dyn AuthSource>);
            scram.set_iterations(SCRAM_ITERATIONS);
            if let Some(certificate) = certificate {
                scram.configure_certificate(certificate)?;
            }
            let parameters = Arc::new(DefaultServerParameterProvider::default());
            Ok(SASLAuthStartupHandler::new(parameters).with_scram(scram).with_connection_manager(Arc::clone(&connections)))
        };
        let secure = tls_certificate.map(|certificate| handler(Some(certificate))).transpose()?;
        Ok(Startup::Token(Box::new(Scram { plain: handler(None)?, secure })))
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
        let scram = match self {
            Startup::Trust(trust) => return trust.on_startup(client, message).await,
            Startup::Token(scram) => scram,
        };
        let handler = match &scram.secure {
            Some(secure) if client.is_secure() => secure,
            _ => &scram.plain,
        };
        handler.on_startup(client, message).await.map_err(|e| match e {
            // SCRAM's own user name is empty (libpq sends `n=`): name the one the client logged in as.
            PgWireError::InvalidPassword(_) => PgWireError::InvalidPassword(client.metadata().get(METADATA_USER).cloned().unwrap_or_default()),
            e => e,
        })
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

/// The server's token, as every user's password, kept only as SCRAM's salted
/// hash: hashed once at start, not on every login.
pub struct TokenSource {
    salt: Vec<u8>,
    salted: Vec<u8>,
}

impl TokenSource {
    /// The source for `token`, under a salt of this run's own.
    fn new(token: &str) -> TokenSource {
        let salt: [u8; 16] = rand::random();
        TokenSource { salt: salt.to_vec(), salted: gen_salted_password(token, &salt, SCRAM_ITERATIONS) }
    }
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
        // SCRAM checks the client's proof, which changes with every login's nonce, against this hash.
        Ok(Password::new(Some(self.salt.clone()), self.salted.clone()))
    }
}
