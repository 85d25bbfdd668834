//! `--http ADDR`: the HTTP listener of `eddy run` and `eddy server`, which serves
//! `/metrics` in Prometheus' text format (docs/METRICS.md) so the people who run
//! a pipeline can watch it in their own tools.
//!
//! It listens on loopback unless told otherwise (`--http 9464` is
//! `127.0.0.1:9464`; `--http 0.0.0.0:9464` opens it to the network), and answers
//! `GET /metrics` only: one small request at a time per connection, over HTTP/1.1.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::error::EddyError;

/// Renders every figure in Prometheus' text format, at each scrape.
pub type RenderMetrics = Arc<dyn Fn() -> String + Send + Sync>;

/// The content type of Prometheus' text exposition format, version 0.0.4.
const EXPOSITION_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

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

/// Serves `/metrics` from `listener` until the process ends, each connection in a task of its own.
pub fn spawn(listener: TcpListener, render: RenderMetrics) -> tokio::task::JoinHandle<()> {
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
            let render = Arc::clone(&render);
            tokio::spawn(async move {
                let service = service_fn(move |request| answer(request, Arc::clone(&render)));
                if let Err(e) = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                    tracing::debug!("HTTP connection ended: {e}");
                }
            });
        }
    })
}

/// The answer to one request: the figures at `/metrics`, a pointer to them at `/`, 404 elsewhere.
async fn answer(request: Request<hyper::body::Incoming>, render: RenderMetrics) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status: StatusCode, content_type: &str, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        if let Ok(value) = content_type.parse() {
            response.headers_mut().insert(CONTENT_TYPE, value);
        }
        response
    };
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "only GET is served here\n".into());
        response.headers_mut().insert(ALLOW, hyper::header::HeaderValue::from_static("GET, HEAD"));
        return Ok(response);
    }
    Ok(match request.uri().path() {
        "/metrics" => reply(StatusCode::OK, EXPOSITION_TYPE, render()),
        "/" => reply(StatusCode::OK, "text/plain", "Eddy: Prometheus metrics at /metrics\n".into()),
        other => reply(StatusCode::NOT_FOUND, "text/plain", format!("nothing at {other}; Prometheus metrics are at /metrics\n")),
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
}
