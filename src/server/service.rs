//! The gRPC face of the server (`eddy.v1.Eddy`): turns requests into [`Server`]
//! calls and [`EddyError`]s into status codes a client can act on.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use eddy_proto::eddy_server::{Eddy, EddyServer};
use eddy_proto::{
    execute_sql_response, subscribe_response, ExecuteSqlRequest, ExecuteSqlResponse, ListPipelinesRequest, ListPipelinesResponse, Pipeline, PipelineRef,
    RestartPipelineRequest, StatementDone, StopPipelineRequest, SubscribeRequest, SubscribeResponse,
};
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};

use crate::error::EddyError;
use crate::ipc::IpcEncoder;
use crate::server::{Reply, Server};

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The gRPC service over one [`Server`].
pub struct EddyService {
    server: Arc<Server>,
}

/// Maps an error to the gRPC code that says whose move it is; SQL errors carry
/// their position as `eddy-line` / `eddy-column` metadata for the client's caret.
pub fn status_of(error: &EddyError) -> Status {
    let message = abbreviate(&error.to_string());
    let mut status = match error {
        EddyError::Sql(_) | EddyError::Connector { .. } | EddyError::Setting { .. } => Status::invalid_argument(message),
        EddyError::NotFound(_) => Status::not_found(message),
        EddyError::AlreadyExists(_) => Status::already_exists(message),
        EddyError::Unsupported(_) | EddyError::Conflict(_) | EddyError::DataDirInUse { .. } | EddyError::ViewFailed { .. } | EddyError::NothingValid { .. } => {
            Status::failed_precondition(message)
        }
        EddyError::ResultTooLarge { .. } => Status::resource_exhausted(message),
        EddyError::Cluster(_) => Status::unavailable(message),
        EddyError::Pipeline { .. } | EddyError::Io { .. } | EddyError::StdoutClosed | EddyError::Internal(_) => Status::internal(message),
    };
    let location = match error {
        EddyError::Sql(e) => Some(e.location()),
        EddyError::Connector { location, .. } => Some(*location),
        _ => None,
    };
    if let Some(l) = location {
        status.metadata_mut().insert("eddy-line", MetadataValue::from(l.line));
        status.metadata_mut().insert("eddy-column", MetadataValue::from(l.column));
    }
    status
}

/// The most characters of an error message sent to a client. gRPC carries the
/// message in a trailer, and HTTP/2 peers drop header blocks past 16 KiB (after
/// percent-encoding), which left the client an empty `ERROR:` for a statement
/// with a 20,000-character identifier.
const STATUS_MESSAGE_CHARS_MAX: usize = 2_000;

/// `message`, with its middle elided when it is too long to send.
fn abbreviate(message: &str) -> String {
    let chars = message.chars().count();
    if chars <= STATUS_MESSAGE_CHARS_MAX {
        return message.to_string();
    }
    let (head, tail) = (STATUS_MESSAGE_CHARS_MAX * 3 / 4, STATUS_MESSAGE_CHARS_MAX / 4);
    let start: String = message.chars().take(head).collect();
    let end: String = message.chars().skip(chars - tail).collect();
    format!("{start} … ({} characters elided) … {end}", chars - head - tail)
}

#[tonic::async_trait]
impl Eddy for EddyService {
    type ExecuteSqlStream = ResponseStream<ExecuteSqlResponse>;
    type SubscribeStream = ResponseStream<SubscribeResponse>;

    async fn execute_sql(&self, request: Request<ExecuteSqlRequest>) -> Result<Response<Self::ExecuteSqlStream>, Status> {
        let sql = request.into_inner().sql;
        if sql.len() > eddy_proto::MAX_STATEMENT_BYTES {
            return Err(Status::invalid_argument(eddy_proto::statement_too_large(sql.len())));
        }
        let (replies_tx, mut replies_rx) = mpsc::channel::<(usize, Reply)>(16);
        let (out_tx, out_rx) = mpsc::channel::<Result<ExecuteSqlResponse, Status>>(16);
        let server = Arc::clone(&self.server);
        tokio::spawn(async move {
            // The statements run while their replies are relayed; an error goes out
            // only after every reply before it, so earlier results are not lost.
            let execute = async move {
                let result = server.execute_for_client(&sql, &replies_tx).await;
                drop(replies_tx);
                result
            };
            let relay = async {
                let mut encoder: Option<IpcEncoder> = None;
                loop {
                    let (index, reply) = tokio::select! {
                        reply = replies_rx.recv() => match reply {
                            Some(reply) => reply,
                            None => return,
                        },
                        // The client went away (Ctrl-C in eddy sql drops the stream):
                        // closing the replies tells a running SELECT to stop.
                        () = out_tx.closed() => {
                            replies_rx.close();
                            return;
                        }
                    };
                    let statement = index as u32;
                    let result = match reply {
                        Reply::Schema(schema) => IpcEncoder::new(&schema).map(|(e, header)| {
                            encoder = Some(e);
                            execute_sql_response::Result::ArrowSchema(header)
                        }),
                        Reply::Batch(batch) => match encoder.as_mut() {
                            Some(e) => e.encode(&batch).map(execute_sql_response::Result::ArrowBatch),
                            None => continue,
                        },
                        Reply::Notice(text) => Ok(execute_sql_response::Result::Notice(text)),
                        Reply::Done { tag, pipeline_id, rows } => {
                            encoder = None;
                            Ok(execute_sql_response::Result::Done(StatementDone { tag, pipeline_id: pipeline_id.unwrap_or_default(), rows }))
                        }
                    };
                    let message = result
                        .map(|r| ExecuteSqlResponse { statement, result: Some(r) })
                        .map_err(|e| Status::internal(format!("cannot encode the result: {e}")));
                    if out_tx.send(message).await.is_err() {
                        // The client went away; closing the replies stops the statements.
                        replies_rx.close();
                        return;
                    }
                }
            };
            let (result, ()) = tokio::join!(execute, relay);
            if let Err((_, error)) = result {
                let _ = out_tx.send(Err(status_of(&error))).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out_rx))))
    }

    async fn list_pipelines(&self, _request: Request<ListPipelinesRequest>) -> Result<Response<ListPipelinesResponse>, Status> {
        Ok(Response::new(ListPipelinesResponse { pipelines: self.server.pipelines().iter().map(|p| p.status()).collect() }))
    }

    async fn get_pipeline(&self, request: Request<PipelineRef>) -> Result<Response<Pipeline>, Status> {
        let handle = self.server.pipeline(&request.into_inner().id).map_err(|e| status_of(&e))?;
        Ok(Response::new(handle.status()))
    }

    async fn stop_pipeline(&self, request: Request<StopPipelineRequest>) -> Result<Response<Pipeline>, Status> {
        let request = request.into_inner();
        let (handle, _) = self.server.stop_pipeline(&request.id, request.savepoint).await.map_err(|e| status_of(&e))?;
        Ok(Response::new(handle.status()))
    }

    async fn restart_pipeline(&self, request: Request<RestartPipelineRequest>) -> Result<Response<Pipeline>, Status> {
        let request = request.into_inner();
        let parallelism = (request.parallelism > 0).then_some(request.parallelism as usize);
        let handle = self.server.restart_pipeline(&request.id, parallelism).await.map_err(|e| status_of(&e))?;
        Ok(Response::new(handle.status()))
    }

    async fn subscribe(&self, request: Request<SubscribeRequest>) -> Result<Response<Self::SubscribeStream>, Status> {
        let request = request.into_inner();
        // A view's changes, or else an INSERT INTO pipeline's output rows.
        let (schema, initial, mut changes) = match self.server.view(&request.name) {
            Ok(view) => {
                self.server.check_view_readable(&request.name).map_err(|e| status_of(&e))?;
                let (initial, changes) = view.subscribe(request.snapshot).map_err(|e| Status::internal(e.to_string()))?;
                (view.changelog_schema(), initial, changes)
            }
            Err(not_a_view) => {
                let handle = self.server.pipeline(&request.name).map_err(|_| status_of(&not_a_view))?;
                let (schema, changes) = handle.subscribe_output().ok_or_else(|| status_of(&not_a_view))?;
                (schema, None, changes)
            }
        };
        let (mut encoder, header) = IpcEncoder::new(&schema).map_err(|e| Status::internal(e.to_string()))?;
        let (tx, rx) = mpsc::channel::<Result<SubscribeResponse, Status>>(16);
        let mut closing = self.server.closing();
        tokio::spawn(async move {
            let message = |change| Ok(SubscribeResponse { change: Some(change) });
            if tx.send(message(subscribe_response::Change::ArrowSchema(header))).await.is_err() {
                return;
            }
            let mut next = initial.filter(|b| b.num_rows() > 0);
            loop {
                let batch = match next.take() {
                    Some(b) => b,
                    None => match tokio::select! {
                        change = changes.recv() => change,
                        // The client went away, or the server is stopping: end the stream.
                        _ = tx.closed() => return,
                        _ = closing.wait_for(|c| *c) => return,
                    } {
                        Ok(b) => b,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            let _ = tx
                                .send(Err(Status::resource_exhausted(format!(
                                    "the subscriber fell {n} change batches behind; subscribe again with a snapshot"
                                ))))
                                .await;
                            return;
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    },
                };
                let reply = encoder.encode(&batch).map(subscribe_response::Change::ArrowBatch).map_err(|e| Status::internal(e.to_string()));
                if tx.send(reply.map(|c| SubscribeResponse { change: Some(c) })).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Serves the API on `listener` until `shutdown` resolves; with a token, every call
/// must carry `authorization: Bearer <token>`.
pub async fn serve(
    server: Arc<Server>,
    listener: tokio::net::TcpListener,
    token: Option<String>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), EddyError> {
    let expected = token.map(|t| format!("Bearer {t}"));
    let check = move |request: Request<()>| -> Result<Request<()>, Status> {
        let Some(expected) = &expected else {
            return Ok(request);
        };
        match request.metadata().get("authorization").and_then(|v| v.to_str().ok()) {
            Some(given) if same_token(expected, given) => Ok(request),
            Some(_) => Err(Status::unauthenticated("wrong token")),
            None => Err(Status::unauthenticated("this server needs a token: pass --token (authorization: Bearer <token>)")),
        }
    };
    let service = EddyServer::new(EddyService { server })
        .max_decoding_message_size(eddy_proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(eddy_proto::MAX_MESSAGE_BYTES);
    let service = tonic::service::interceptor::InterceptedService::new(service, check);
    tonic::transport::Server::builder()
        .add_service(service)
        // Without TCP_NODELAY a small reply waits for the client's delayed ACK (~40 ms).
        .serve_with_incoming_shutdown(tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)), shutdown)
        .await
        .map_err(|e| EddyError::Io { context: "the gRPC server stopped".into(), source: std::io::Error::other(e) })
}

/// Whether `presented` is the `expected` token (or header), compared in time that
/// does not depend on where the first difference is, so a caller cannot find the
/// token one character at a time. Every face of the server checks tokens with it.
pub fn same_token(expected: &str, presented: &str) -> bool {
    let (expected, presented) = (expected.as_bytes(), presented.as_bytes());
    expected.len() == presented.len() && expected.iter().zip(presented).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// The HOST:PORT address given to `option` (`--listen`, `--pg`, `--flight`), with
/// an error that names the option and shows an example on its usual port.
pub fn parse_socket_address(option: &str, address: &str, usual_port: u16) -> Result<SocketAddr, EddyError> {
    address.parse().map_err(|e| EddyError::Setting {
        key: option.into(),
        value: address.into(),
        message: format!("{e}; expected HOST:PORT such as 127.0.0.1:{usual_port}"),
    })
}
