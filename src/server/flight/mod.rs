//! The Arrow Flight SQL face of the server (`eddy server --flight HOST:PORT`),
//! beside gRPC and Postgres, over the same [`Server`]: ADBC drivers, pyarrow,
//! JDBC's Flight SQL driver and DBeaver run Eddy's statements and read its views
//! as Arrow batches, with no conversion to rows on the way.
//!
//! Built on `arrow-flight`'s [`FlightSqlService`], which speaks the protocol;
//! the modules here are Eddy's side of it:
//! - [`auth`]: no auth, or the `--token` as a bearer token or a login's password;
//! - [`statements`]: statements started by `GetFlightInfo`, read by `DoGet`;
//! - [`tickets`]: unread results under their tickets, bounded and expiring;
//! - [`prepared`]: prepared statements and their `$1` parameters, bound as literals;
//! - [`metadata`]: `GetSqlInfo`, `GetCatalogs`, `GetDbSchemas`, `GetTables`, `GetTableTypes`.
//!
//! Errors are the gRPC face's ([`status_of`]): the code says whose move it is
//! and the message is the one `eddy sql` prints.

pub mod auth;
pub mod metadata;
pub mod prepared;
pub mod statements;
pub mod tickets;

use std::pin::Pin;
use std::sync::Arc;

use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightServiceServer;
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult, Any, CommandGetCatalogs,
    CommandGetDbSchemas, CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandPreparedStatementQuery, CommandPreparedStatementUpdate,
    CommandStatementQuery, CommandStatementUpdate, DoPutPreparedStatementResult, ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage, SchemaAsIpc, Ticket};
use datafusion::arrow::datatypes::Schema;
use datafusion::arrow::ipc::writer::IpcWriteOptions;
use datafusion::arrow::record_batch::RecordBatch;
use futures::{Stream, TryStreamExt};
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

use crate::error::EddyError;
use crate::server::service::status_of;
use crate::server::Server;
use auth::Access;
use prepared::{Prepared, PreparedStatements};
use statements::{Rows, Started};
use tickets::Tickets;

/// The stream `DoGet` answers.
type DoGetStream = Pin<Box<dyn Stream<Item = Result<arrow_flight::FlightData, Status>> + Send + 'static>>;

/// The ticket of a statement that answered no rows: reading it reads nothing.
const NO_ROWS_TICKET: &str = "none";

/// The Flight SQL service over one [`Server`].
pub struct FlightSql {
    server: Arc<Server>,
    access: Access,
    tickets: Tickets,
    prepared: PreparedStatements,
}

impl FlightSql {
    /// The service over `server`, asking for `token` if there is one.
    pub fn new(server: Arc<Server>, token: Option<String>) -> FlightSql {
        FlightSql { server, access: Access::new(token), tickets: Tickets::default(), prepared: PreparedStatements::default() }
    }

    /// Starts `sql` and answers the `FlightInfo` whose one endpoint reads its rows.
    async fn start(&self, sql: &str, descriptor: FlightDescriptor) -> Result<Response<FlightInfo>, Status> {
        if sql.len() > eddy_proto::MAX_STATEMENT_BYTES {
            return Err(Status::invalid_argument(eddy_proto::statement_too_large(sql.len())));
        }
        tracing::debug!(target: "eddy::flight", "query: {}", eddy_sql::secrets::mask_statement(sql));
        let (schema, ticket) = match statements::start(&self.server, sql).await.map_err(|e| status_of(&e))? {
            Started::Rows(rows) => (Arc::clone(&rows.schema), self.tickets.keep(rows)),
            Started::Done => (Arc::new(Schema::empty()), NO_ROWS_TICKET.to_string()),
        };
        let ticket = Ticket::new(TicketStatementQuery { statement_handle: ticket.into() }.as_any().encode_to_vec());
        let info = FlightInfo::new().try_with_schema(&schema).map_err(internal)?.with_endpoint(FlightEndpoint::new().with_ticket(ticket));
        Ok(Response::new(info.with_descriptor(descriptor)))
    }

    /// The statement of a prepared statement's handle, with its bound values in place.
    fn bound(&self, handle: &[u8]) -> Result<String, Status> {
        self.prepared.get(handle_text(handle)?).and_then(|p| p.bound_sql()).map_err(|e| status_of(&e))
    }
}

/// A handle or ticket the server gave out, as text.
#[allow(clippy::result_large_err)] // tonic answers a `Status`.
fn handle_text(handle: &[u8]) -> Result<&str, Status> {
    std::str::from_utf8(handle).map_err(|_| Status::invalid_argument("the handle is not one this server gave out"))
}

/// A failure inside the server, such as an Arrow encoding error.
fn internal(error: impl std::fmt::Display) -> Status {
    Status::internal(format!("cannot encode the answer: {error}"))
}

/// `rows` as Flight data, batches as they are.
fn rows_stream(rows: Rows) -> DoGetStream {
    let schema = Arc::clone(&rows.schema);
    Box::pin(FlightDataEncoderBuilder::new().with_schema(schema).build(rows.into_stream()).map_err(Status::from))
}

/// A catalog command's one batch (or its error) as Flight data.
fn batch_stream((schema, batch): metadata::Answer) -> DoGetStream {
    Box::pin(FlightDataEncoderBuilder::new().with_schema(schema).build(futures::stream::once(async { batch })).map_err(Status::from))
}

/// An answer without rows.
fn empty_stream() -> DoGetStream {
    Box::pin(FlightDataEncoderBuilder::new().with_schema(Arc::new(Schema::empty())).build(futures::stream::empty()).map_err(Status::from))
}

/// The `FlightInfo` of a catalog command: one endpoint whose ticket is the command itself.
fn command_info(command: Any, schema: &Schema, descriptor: FlightDescriptor) -> Result<Response<FlightInfo>, Status> {
    let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(command.encode_to_vec()));
    Ok(Response::new(FlightInfo::new().try_with_schema(schema).map_err(internal)?.with_endpoint(endpoint).with_descriptor(descriptor)))
}

/// A schema as Flight SQL sends it in a prepared statement's description.
fn schema_bytes(schema: &Schema) -> Result<bytes::Bytes, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default()).try_into().map_err(internal)?;
    Ok(bytes)
}

#[tonic::async_trait]
impl FlightSqlService for FlightSql {
    type FlightService = FlightSql;

    async fn do_handshake(
        &self,
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>, Status> {
        // The interceptor let the call through, so its credential is the token.
        let (payload, header) = match self.access.handshake_token() {
            Some((token, header)) => (bytes::Bytes::copy_from_slice(token.as_bytes()), Some(header)),
            None => (bytes::Bytes::new(), None),
        };
        let answer = futures::stream::once(async move { Ok(HandshakeResponse { protocol_version: 0, payload }) });
        let mut response: Response<Pin<Box<dyn Stream<Item = _> + Send>>> = Response::new(Box::pin(answer));
        if let Some(header) = header {
            response.metadata_mut().insert("authorization", header);
        }
        Ok(response)
    }

    async fn get_flight_info_statement(&self, query: CommandStatementQuery, request: Request<FlightDescriptor>) -> Result<Response<FlightInfo>, Status> {
        self.start(&query.query, request.into_inner()).await
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let sql = self.bound(&query.prepared_statement_handle)?;
        self.start(&sql, request.into_inner()).await
    }

    async fn get_flight_info_catalogs(&self, query: CommandGetCatalogs, request: Request<FlightDescriptor>) -> Result<Response<FlightInfo>, Status> {
        command_info(query.as_any(), &query.into_builder().schema(), request.into_inner())
    }

    async fn get_flight_info_schemas(&self, query: CommandGetDbSchemas, request: Request<FlightDescriptor>) -> Result<Response<FlightInfo>, Status> {
        command_info(query.as_any(), &query.into_builder().schema(), request.into_inner())
    }

    async fn get_flight_info_tables(&self, query: CommandGetTables, request: Request<FlightDescriptor>) -> Result<Response<FlightInfo>, Status> {
        command_info(query.as_any(), &query.into_builder().schema(), request.into_inner())
    }

    async fn get_flight_info_table_types(&self, query: CommandGetTableTypes, request: Request<FlightDescriptor>) -> Result<Response<FlightInfo>, Status> {
        command_info(query.as_any(), &query.into_builder().schema(), request.into_inner())
    }

    async fn get_flight_info_sql_info(&self, query: CommandGetSqlInfo, request: Request<FlightDescriptor>) -> Result<Response<FlightInfo>, Status> {
        command_info(query.as_any(), &query.into_builder(metadata::sql_info()).schema(), request.into_inner())
    }

    async fn do_get_statement(&self, ticket: TicketStatementQuery, _request: Request<Ticket>) -> Result<Response<DoGetStream>, Status> {
        let ticket = handle_text(&ticket.statement_handle)?;
        if ticket == NO_ROWS_TICKET {
            return Ok(Response::new(empty_stream()));
        }
        let rows = self.tickets.take(ticket).ok_or_else(|| {
            Status::not_found(format!(
                "no result under ticket `{ticket}`: a ticket is read once, within {} s of GetFlightInfo; run the statement again",
                tickets::TICKET_TTL.as_secs()
            ))
        })?;
        Ok(Response::new(rows_stream(rows)))
    }

    async fn do_get_prepared_statement(&self, query: CommandPreparedStatementQuery, _request: Request<Ticket>) -> Result<Response<DoGetStream>, Status> {
        let sql = self.bound(&query.prepared_statement_handle)?;
        match statements::start(&self.server, &sql).await.map_err(|e| status_of(&e))? {
            Started::Rows(rows) => Ok(Response::new(rows_stream(rows))),
            Started::Done => Ok(Response::new(empty_stream())),
        }
    }

    async fn do_get_catalogs(&self, query: CommandGetCatalogs, _request: Request<Ticket>) -> Result<Response<DoGetStream>, Status> {
        Ok(Response::new(batch_stream(metadata::catalogs(query))))
    }

    async fn do_get_schemas(&self, query: CommandGetDbSchemas, _request: Request<Ticket>) -> Result<Response<DoGetStream>, Status> {
        Ok(Response::new(batch_stream(metadata::db_schemas(query))))
    }

    async fn do_get_tables(&self, query: CommandGetTables, _request: Request<Ticket>) -> Result<Response<DoGetStream>, Status> {
        Ok(Response::new(batch_stream(metadata::tables(&self.server, query).await)))
    }

    async fn do_get_table_types(&self, query: CommandGetTableTypes, _request: Request<Ticket>) -> Result<Response<DoGetStream>, Status> {
        Ok(Response::new(batch_stream(metadata::table_types(query))))
    }

    async fn do_get_sql_info(&self, query: CommandGetSqlInfo, _request: Request<Ticket>) -> Result<Response<DoGetStream>, Status> {
        let builder = query.into_builder(metadata::sql_info());
        Ok(Response::new(batch_stream((builder.schema(), builder.build()))))
    }

    async fn do_put_statement_update(&self, command: CommandStatementUpdate, _request: Request<PeekableFlightDataStream>) -> Result<i64, Status> {
        if command.query.len() > eddy_proto::MAX_STATEMENT_BYTES {
            return Err(Status::invalid_argument(eddy_proto::statement_too_large(command.query.len())));
        }
        tracing::debug!(target: "eddy::flight", "update: {}", eddy_sql::secrets::mask_statement(&command.query));
        statements::run(&self.server, &command.query).await.map_err(|e| status_of(&e))?;
        // Eddy's statements do not count the rows they change (an INSERT INTO starts a pipeline).
        Ok(0)
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let handle = handle_text(&query.prepared_statement_handle)?;
        let values: Vec<RecordBatch> = FlightRecordBatchStream::new_from_flight_data(request.into_inner().map_err(FlightError::from))
            .try_collect()
            .await
            .map_err(|e| Status::invalid_argument(format!("cannot read the parameter values: {e}")))?;
        self.prepared.bind(handle, &values).map_err(|e| status_of(&e))?;
        Ok(DoPutPreparedStatementResult { prepared_statement_handle: Some(query.prepared_statement_handle) })
    }

    async fn do_put_prepared_statement_update(&self, query: CommandPreparedStatementUpdate, request: Request<PeekableFlightDataStream>) -> Result<i64, Status> {
        let handle = handle_text(&query.prepared_statement_handle)?;
        let values: Vec<RecordBatch> = FlightRecordBatchStream::new_from_flight_data(request.into_inner().map_err(FlightError::from))
            .try_collect()
            .await
            .map_err(|e| Status::invalid_argument(format!("cannot read the parameter values: {e}")))?;
        if values.iter().any(|b| b.num_rows() > 0) {
            self.prepared.bind(handle, &values).map_err(|e| status_of(&e))?;
        }
        let sql = self.bound(&query.prepared_statement_handle)?;
        statements::run(&self.server, &sql).await.map_err(|e| status_of(&e))?;
        Ok(0)
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        _request: Request<arrow_flight::Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        if query.query.len() > eddy_proto::MAX_STATEMENT_BYTES {
            return Err(Status::invalid_argument(eddy_proto::statement_too_large(query.query.len())));
        }
        // A text of several statements cannot be prepared, but it can run: ADBC
        // drivers take `Unimplemented` as the cue to execute it unprepared.
        if eddy_sql::parse_script(&query.query).is_ok_and(|statements| statements.len() > 1) {
            return Err(Status::unimplemented("a prepared statement holds one statement: run a text of several statements unprepared (CommandStatementQuery)"));
        }
        let prepared = Prepared::describe(&self.server, &query.query).await.map_err(|e| status_of(&e))?;
        let dataset_schema = match &prepared.columns {
            Some(columns) => schema_bytes(columns)?,
            None => bytes::Bytes::new(),
        };
        let parameter_schema = schema_bytes(&prepared.parameters)?;
        let handle = self.prepared.keep(prepared);
        Ok(ActionCreatePreparedStatementResult { prepared_statement_handle: handle.into(), dataset_schema, parameter_schema })
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        _request: Request<arrow_flight::Action>,
    ) -> Result<(), Status> {
        self.prepared.close(handle_text(&query.prepared_statement_handle)?);
        Ok(())
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

/// Serves Flight SQL on `listener` until `shutdown` resolves; with a token,
/// every call must present it (see [`auth`]).
pub async fn serve(
    server: Arc<Server>,
    listener: tokio::net::TcpListener,
    token: Option<String>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), EddyError> {
    let service = FlightSql::new(server, token);
    let access = service.access.clone();
    let service =
        FlightServiceServer::new(service).max_decoding_message_size(eddy_proto::MAX_MESSAGE_BYTES).max_encoding_message_size(eddy_proto::MAX_MESSAGE_BYTES);
    let service = tonic::service::interceptor::InterceptedService::new(service, move |request| access.check(request));
    tonic::transport::Server::builder()
        .add_service(service)
        // Without TCP_NODELAY a small reply waits for the client's delayed ACK (~40 ms).
        .serve_with_incoming_shutdown(tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)), shutdown)
        .await
        .map_err(|e| EddyError::Io { context: "the Flight SQL server stopped".into(), source: std::io::Error::other(e) })
}
