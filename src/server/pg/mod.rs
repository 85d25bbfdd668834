//! The Postgres wire protocol face of the server (`eddy server --pg HOST:PORT`),
//! beside gRPC, over the same [`Server`]: psql, psycopg, JDBC, Grafana and every
//! other Postgres driver run Eddy's statements and read its views.
//!
//! Built on the `pgwire` crate, which speaks the protocol (startup, simple and
//! extended queries, cancel requests); the modules here are Eddy's side of it:
//! - [`auth`]: trust, or the `--token` as the password, proven with SCRAM;
//! - [`tls`]: TLS with `--pg-tls-cert`/`--pg-tls-key`;
//! - [`query`]: both query protocols, through the server's one dispatcher;
//! - [`params`]: `$1` parameters bound as literals;
//! - [`session`]: what a connection answers itself: psql's `PREPARE`/`EXECUTE`,
//!   `BEGIN`/`COMMIT` (accepted, no transactions), drivers' session `SET`s;
//! - [`subscribe`]: `SUBSCRIBE view`, a view's changes as a `COPY` stream;
//! - [`types`]: Arrow columns as Postgres types, in text or binary format;
//! - [`errors`]: Eddy's errors as `ErrorResponse`s with SQLSTATE and position;
//! - [`catalog`]: the `pg_catalog` queries psql's `\d` commands send.
//!
//! A connection that sends garbage gets an error or is closed: each runs in a
//! task of its own, so it never takes the server or another connection down.

pub mod auth;
pub mod catalog;
pub mod errors;
pub mod params;
pub mod query;
pub mod session;
pub mod subscribe;
pub mod tls;
pub mod types;

use std::sync::Arc;

use pgwire::api::cancel::DefaultCancelHandler;
use pgwire::api::{ConnectionManager, PgWireServerHandlers};

use crate::error::EddyError;
use crate::server::Server;

/// Everything a connection needs: the statements' handler, the startup
/// (authentication) and the cancel handler, shared by all connections.
struct Handlers {
    statements: Arc<query::Statements>,
    startup: Arc<auth::Startup>,
    cancel: Arc<DefaultCancelHandler>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl pgwire::api::query::SimpleQueryHandler> {
        Arc::clone(&self.statements)
    }

    fn extended_query_handler(&self) -> Arc<impl pgwire::api::query::ExtendedQueryHandler> {
        Arc::clone(&self.statements)
    }

    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        Arc::clone(&self.startup)
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        Arc::clone(&self.cancel)
    }
}

/// The Postgres protocol's side of a server, ready to accept connections.
pub struct Service {
    handlers: Arc<Handlers>,
    tls: Option<pgwire::tokio::TlsAcceptor>,
}

impl Service {
    /// The service over `server`: with a token, it is every user's password; with
    /// `tls`, clients that ask for TLS get it.
    pub fn new(server: Arc<Server>, token: Option<String>, tls: Option<tls::Tls>) -> Result<Service, EddyError> {
        let connections = Arc::new(ConnectionManager::new());
        let certificate = tls.as_ref().map(|tls| tls.certificate_pem.as_slice());
        let startup = auth::Startup::new(token, Arc::clone(&connections), certificate).map_err(|e| EddyError::Setting {
            key: "--pg-tls-cert".into(),
            value: String::new(),
            message: format!("cannot be used for SCRAM channel binding: {e}"),
        })?;
        let handlers = Arc::new(Handlers {
            statements: Arc::new(query::Statements::new(server)),
            startup: Arc::new(startup),
            cancel: Arc::new(DefaultCancelHandler::new(connections)),
        });
        Ok(Service { handlers, tls: tls.map(|tls| tls.acceptor) })
    }

    /// Serves the Postgres protocol on `listener` until `shutdown` resolves.
    pub async fn serve(self, listener: tokio::net::TcpListener, shutdown: impl std::future::Future<Output = ()> + Send) {
        let shutdown = std::pin::pin!(shutdown);
        let mut shutdown = shutdown;
        loop {
            let (socket, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: the next accept may work.
                        tracing::warn!("postgres listener: cannot accept a connection: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = shutdown.as_mut() => return,
            };
            // Without TCP_NODELAY a small reply waits for the client's delayed ACK (~40 ms).
            let _ = socket.set_nodelay(true);
            let (handlers, tls) = (Arc::clone(&self.handlers), self.tls.clone());
            tokio::spawn(async move {
                if let Err(e) = pgwire::tokio::process_socket(socket, tls, handlers).await {
                    tracing::debug!(target: "eddy::pg", "connection from {peer} ended: {e}");
                }
            });
        }
    }
}
