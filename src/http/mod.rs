//! `--http ADDR`: the HTTP listener of `eddy run` and `eddy server`. Both serve
//! `/metrics` in Prometheus' text format (docs/METRICS.md) so the people who run
//! a pipeline can watch it in their own tools; `eddy server` also serves the web
//! console (`/`, docs/CONSOLE.md) and the JSON API it calls (`/api/...`, [`api`]).
//!
//! It listens on loopback unless told otherwise (`--http 9464` is
//! `127.0.0.1:9464`; `--http 0.0.0.0:9464` opens it to the network). With the
//! server's `--token`, `/metrics` and `/api/...` need `Authorization: Bearer
//! TOKEN`, as gRPC calls do; the console's own files are served to anyone, and
//! ask for the token.

pub mod api;

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::error::EddyError;
use crate::server::Server;

/// Renders every figure in Prometheus' text format, at each scrape.
pub type RenderMetrics = Arc<dyn Fn() -> String + Send + Sync>;

/// An HTTP response as every route builds it.
pub type Reply = Response<Full<Bytes>>;

/// The content type of Prometheus' text exposition format, version 0.0.4.
const EXPOSITION_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The console's files, built into the binary so it works without a network.
const CONSOLE_FILES: [(&str, &str, &str); 3] = [
    ("/", "text/html; charset=utf-8", include_str!("console/index.html")),
    ("/console.js", "text/javascript; charset=utf-8", include_str!("console/console.js")),
    ("/console.css", "text/css; charset=utf-8", include_str!("console/console.css")),
];

/// What one listener serves.
pub struct Routes {
    metrics: RenderMetrics,
    /// The server behind the console and its API; `None` for `eddy run`, which serves `/metrics` only.
    server: Option<Arc<Server>>,
    /// `Bearer TOKEN` when the server wants a token.
    expected_authorization: Option<String>,
}

impl Routes {
    /// `eddy run --http`: `/metrics` only, with no token (the run has none).
    pub fn metrics_only(metrics: RenderMetrics) -> Routes {
        Routes { metrics, server: None, expected_authorization: None }
    }

    /// `eddy server --http`: `/metrics`, the console and its API, behind the server's token.
    pub fn console(server: Arc<Server>, token: Option<&str>) -> Routes {
        let shown = Arc::clone(&server);
        Routes { metrics: Arc::new(move || shown.metrics_text()), server: Some(server), expected_authorization: token.map(|t| format!("Bearer {t}")) }
    }

    /// Whether `request` carries the token, when one is wanted.
    fn authorized(&self, request: &Request<hyper::body::Incoming>) -> Authorization {
        let Some(expected) = &self.expected_authorization else {
            return Authorization::Granted;
        };
        match request.headers().get(AUTHORIZATION).map(HeaderValue::as_bytes) {
            Some(given) if constant_time_eq(given, expected.as_bytes()) => Authorization::Granted,
            Some(_) => Authorization::Refused("wrong token"),
            None => Authorization::Refused("this server needs a token: send Authorization: Bearer TOKEN (the server's --token)"),
        }
    }
}

/// Whether a request may see figures and call the API.
enum Authorization {
    Granted,
    Refused(&'static str),
}

/// Compares a given token with the expected one in time that does not depend on
/// where they first differ, so the token cannot be guessed a byte at a time.
fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len() && given.iter().zip(expected).fold(0u8, |differ, (a, b)| differ | (a ^ b)) == 0
}

/// The address `--http` names: `PORT` alone means loopback, `HOST:PORT` is taken as given.
pub fn parse_address(address: &str) -> Result<SocketAddr, EddyError> {
    if let Ok(port) = address.parse::<u16>() {
        return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    }
    address.parse().map_err(|e| EddyError::Setting {
        key: "--http".into(),
        value: address.into(),
        message: format!("{e}; expected PORT (on 127.0.0.1) or HOST:PORT such as 127.0.0.1:9464"),
    })
}

/// Binds `--http`'s address; a port taken or an address not on this machine is a clear error.
pub async fn bind(address: &str) -> Result<TcpListener, EddyError> {
    let address = parse_address(address)?;
    TcpListener::bind(address).await.map_err(|source| EddyError::Io { context: format!("cannot listen for HTTP on {address}"), source })
}

/// Serves `routes` on `listener` until the process ends, each connection in a task of its own.
pub fn spawn(listener: TcpListener, routes: Routes) -> tokio::task::JoinHandle<()> {
    let routes = Arc::new(routes);
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, say: the next accept may work again.
                    tracing::warn!("HTTP listener: cannot accept a connection: {e}");
                    tokio::task::yield_now().await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let routes = Arc::clone(&routes);
            tokio::spawn(async move {
                let service = service_fn(move |request| answer(request, Arc::clone(&routes)));
                if let Err(e) = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                    tracing::debug!("HTTP connection ended: {e}");
                }
            });
        }
    })
}

/// A response with `status`, `content_type` and `body`.
pub fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Reply {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response.headers_mut().insert(CONTENT_TYPE, value);
    }
    response
}

/// The answer to one request.
async fn answer(request: Request<hyper::body::Incoming>, routes: Arc<Routes>) -> Result<Reply, Infallible> {
    let path = request.uri().path().to_string();
    let is_api = path.starts_with("/api/");
    if !is_api && request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "only GET is served here\n");
        response.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Ok(response);
    }
    if path == "/metrics" || is_api {
        if let Authorization::Refused(why) = routes.authorized(&request) {
            let mut response =
                if is_api { api::error_reply(StatusCode::UNAUTHORIZED, why) } else { reply(StatusCode::UNAUTHORIZED, "text/plain", format!("{why}\n")) };
            response.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"eddy\""));
            return Ok(response);
        }
    }
    if path == "/metrics" {
        return Ok(reply(StatusCode::OK, EXPOSITION_TYPE, (routes.metrics)()));
    }
    let Some(server) = &routes.server else {
        return Ok(match path.as_str() {
            "/" => reply(StatusCode::OK, "text/plain", "Eddy: Prometheus metrics at /metrics\n"),
            other => reply(StatusCode::NOT_FOUND, "text/plain", format!("nothing at {other}; Prometheus metrics are at /metrics\n")),
        });
    };
    if is_api {
        return Ok(api::answer(server, request).await);
    }
    Ok(match CONSOLE_FILES.iter().find(|(at, _, _)| *at == path) {
        Some((_, content_type, body)) => {
            let mut response = reply(StatusCode::OK, content_type, *body);
            // The files change only with the binary; a restarted server may be a new one.
            response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            response
        }
        None => reply(StatusCode::NOT_FOUND, "text/plain", format!("nothing at {path}; the console is at /, Prometheus metrics at /metrics\n")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_alone_listens_on_loopback() {
        assert_eq!(parse_address("9464").unwrap(), "127.0.0.1:9464".parse().unwrap());
        assert_eq!(parse_address("0.0.0.0:9464").unwrap(), "0.0.0.0:9464".parse().unwrap());
        let error = parse_address("localhost:x").unwrap_err().to_string();
        assert!(error.contains("--http") && error.contains("HOST:PORT"), "{error}");
    }

    #[test]
    fn a_token_matches_only_in_full() {
        assert!(constant_time_eq(b"Bearer s3cret", b"Bearer s3cret"));
        assert!(!constant_time_eq(b"Bearer s3cre", b"Bearer s3cret"));
        assert!(!constant_time_eq(b"Bearer s3creT", b"Bearer s3cret"));
    }

    #[test]
    fn the_console_is_light() {
        let bytes: usize = CONSOLE_FILES.iter().map(|(_, _, body)| body.len()).sum();
        assert!(bytes < 500_000, "the console's files weigh {bytes} bytes; the issue allows under 500 kB");
    }
}
