//! Statements over the Postgres protocol, simple and extended, run through the
//! server's one dispatcher ([`Server::execute_for_client`]) exactly as gRPC runs
//! them; only the answers' encoding differs.
//!
//! A statement runs in a task of its own while this side collects its answers.
//! A cancel request (or the client going away) drops the collecting side: a
//! running `SELECT` sees its client gone and stops, while a statement that
//! changes the catalog finishes, so the catalog is never left half-changed.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use futures::{Sink, SinkExt};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::response::NoticeResponse;
use pgwire::messages::PgWireBackendMessage;
use tokio::sync::mpsc;

use super::errors::{error_response, error_response_bound};
use super::params;
use super::session::{self, Named, NamedStatements};
use super::{catalog, subscribe, types};
use crate::error::EddyError;
use crate::server::{Reply, Server};

/// Answers both query protocols for every connection.
pub struct Statements {
    server: Arc<Server>,
    parser: Arc<Parser>,
}

impl Statements {
    /// The handler over `server`.
    pub fn new(server: Arc<Server>) -> Statements {
        Statements { parser: Arc::new(Parser { server: Arc::clone(&server) }), server }
    }
}

/// One statement's answer, as the dispatcher sent it.
enum Answer {
    /// A result set.
    Rows { schema: SchemaRef, batches: Vec<RecordBatch> },
    /// A statement without rows, and its command tag.
    Done { tag: String },
}

/// What a query string's statements answered, up to the first error.
struct Ran {
    answers: Vec<Answer>,
    notices: Vec<String>,
    error: Option<EddyError>,
}

/// Runs `sql` through the dispatcher in a task of its own and collects its answers.
async fn run(server: &Arc<Server>, sql: &str) -> Ran {
    let (replies, mut received) = mpsc::channel::<(usize, Reply)>(16);
    let (server, text) = (Arc::clone(server), sql.to_string());
    let task = tokio::spawn(async move { server.execute_for_client(&text, &replies).await });
    let (mut answers, mut notices, mut open) = (Vec::new(), Vec::new(), None::<(SchemaRef, Vec<RecordBatch>)>);
    while let Some((_, reply)) = received.recv().await {
        match reply {
            Reply::Schema(schema) => open = Some((schema, Vec::new())),
            Reply::Batch(batch) => {
                if let Some((_, batches)) = open.as_mut() {
                    batches.push(batch);
                }
            }
            Reply::Notice(text) => notices.push(text),
            Reply::Done { tag, .. } => answers.push(match open.take() {
                Some((schema, batches)) => Answer::Rows { schema, batches },
                None => Answer::Done { tag },
            }),
        }
    }
    let error = match task.await {
        Ok(Ok(())) => None,
        Ok(Err((_, error))) => Some(error),
        Err(stopped) => Some(EddyError::Internal(format!("the statement's task stopped: {stopped}"))),
    };
    Ran { answers, notices, error }
}

/// A result set as a pgwire response: `fields` describe the columns (the
/// batches' columns are cast to their types).
fn rows_response(batches: &[RecordBatch], fields: Vec<FieldInfo>) -> PgWireResult<Response> {
    let fields = Arc::new(fields);
    let mut rows = Vec::new();
    for batch in batches {
        rows.extend(types::encode_rows(batch, &fields)?.into_iter().map(Ok));
    }
    Ok(Response::Query(QueryResponse::new(fields, futures::stream::iter(rows))))
}

/// A statement's command tag as Postgres clients parse it (`INSERT oid rows`).
fn command_tag(tag: &str) -> Tag {
    match tag {
        "INSERT" => Tag::new("INSERT").with_oid(0).with_rows(0),
        other => Tag::new(other),
    }
}

/// Sends Eddy's notices (a window that multiplies state) as Postgres NOTICEs.
async fn send_notices<C>(client: &mut C, notices: Vec<String>) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    for text in notices {
        client.feed(PgWireBackendMessage::NoticeResponse(NoticeResponse::from(ErrorInfo::new("NOTICE".into(), "01000".into(), text)))).await?;
    }
    Ok(())
}

#[async_trait]
impl SimpleQueryHandler for Statements {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        tracing::debug!(target: "eddy::pg", "query: {query}");
        let named = client.session_extensions().get_or_insert_with(NamedStatements::default);
        let sql = match session::named(query).map_err(|e| error_response(&e, query))? {
            Some(Named::Begin) => return Ok(vec![Response::TransactionStart(Tag::new("BEGIN"))]),
            Some(Named::End { committed }) => return Ok(vec![Response::TransactionEnd(Tag::new(if committed { "COMMIT" } else { "ROLLBACK" }))]),
            Some(Named::SetSession) => return Ok(vec![Response::Execution(Tag::new("SET"))]),
            Some(Named::Subscribe { name }) => return subscribe::subscribe(&self.server, client, &name, query).await,
            Some(Named::Prepare { name, statement }) => {
                params::parameter_count(statement).map_err(|e| error_response(&e, query))?;
                named.prepare(&name, statement).map_err(|e| error_response(&e, query))?;
                return Ok(vec![Response::Execution(Tag::new("PREPARE"))]);
            }
            Some(Named::Deallocate { name }) => {
                named.deallocate(name.as_deref()).map_err(|e| error_response(&e, query))?;
                return Ok(vec![Response::Execution(Tag::new("DEALLOCATE"))]);
            }
            Some(Named::Execute { name, arguments }) => {
                let statement = named.get(&name).map_err(|e| error_response(&e, query))?;
                params::substitute(&statement, &arguments).map_err(|e| error_response(&e, query))?
            }
            None => query.to_string(),
        };
        if let Some(answer) = catalog::answer(&self.server, &sql).await {
            let fields = types::fields(&answer.schema(), &Format::UnifiedText);
            return Ok(vec![rows_response(&[answer], fields)?]);
        }
        let ran = run(&self.server, &sql).await;
        send_notices(client, ran.notices).await?;
        let error_of = |error: &EddyError| error_response_bound(error, &sql, query);
        let mut responses = Vec::with_capacity(ran.answers.len() + 1);
        for answer in ran.answers {
            responses.push(match answer {
                Answer::Rows { schema, batches } => rows_response(&batches, types::fields(&schema, &Format::UnifiedText))?,
                Answer::Done { tag } => Response::Execution(command_tag(&tag)),
            });
        }
        if let Some(error) = ran.error {
            let PgWireError::UserError(info) = error_of(&error) else {
                return Err(error_of(&error));
            };
            responses.push(Response::Error(info));
        }
        Ok(responses)
    }
}

/// A statement parsed for the extended protocol: its text with `$N`
/// placeholders, the types of its parameters, and the columns it answers.
#[derive(Clone, Debug)]
pub struct Prepared {
    sql: String,
    parameters: Vec<Type>,
    columns: Option<SchemaRef>,
}

/// Parses (describes) statements for the extended protocol.
pub struct Parser {
    server: Arc<Server>,
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = Prepared;

    async fn parse_sql<C>(&self, _client: &C, sql: &str, types: &[Option<Type>]) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        tracing::debug!(target: "eddy::pg", "parse: {}", eddy_sql::secrets::mask_statement(sql));
        if let Ok(Some(_)) = session::named(sql) {
            // Answered by the connection itself when executed; no rows.
            return Ok(Some(Prepared { sql: sql.to_string(), parameters: Vec::new(), columns: None }));
        }
        let count = params::parameter_count(sql).map_err(|e| error_response(&e, sql))?;
        let client_type = |i: usize| types.get(i).cloned().flatten().filter(|t| *t != Type::UNKNOWN);
        if let Some(answer) = catalog::answer(&self.server, sql).await {
            // Catalog queries compare their parameters with names: text unless the client says otherwise.
            let parameters = (0..count).map(|i| client_type(i).unwrap_or(Type::TEXT)).collect();
            return Ok(Some(Prepared { sql: sql.to_string(), parameters, columns: Some(answer.schema()) }));
        }
        let described = match self.server.describe(sql).await {
            Ok(described) => described,
            // The streaming planner (a SELECT over bounded tables) takes no
            // placeholders: its columns are those of the statement with sample values bound.
            Err(_) if count > 0 => {
                let samples = (0..count)
                    .map(|i| {
                        let ty = client_type(i).unwrap_or(Type::TEXT);
                        params::literal(Some(params::sample_value(&ty)), &ty)
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| error_response(&e, sql))?;
                let bound = params::substitute(sql, &samples).map_err(|e| error_response(&e, sql))?;
                self.server.describe(&bound).await.map_err(|e| error_response_bound(&e, &bound, sql))?
            }
            Err(e) => return Err(error_response(&e, sql)),
        };
        // The client's types first, then the plan's, else text (bound as a string literal).
        let parameters = (0..count)
            .map(|i| {
                client_type(i).unwrap_or_else(|| match described.parameters.get(i) {
                    Some(Some(data_type)) => types::pg_type(data_type),
                    _ => Type::TEXT,
                })
            })
            .collect();
        Ok(Some(Prepared { sql: sql.to_string(), parameters, columns: described.columns }))
    }

    fn get_parameter_types(&self, statement: &Prepared) -> PgWireResult<Vec<Type>> {
        Ok(statement.parameters.clone())
    }

    fn get_result_schema(&self, statement: &Prepared, format: Option<&Format>) -> PgWireResult<Vec<FieldInfo>> {
        Ok(statement.columns.as_ref().map(|schema| types::fields(schema, format.unwrap_or(&Format::UnifiedText))).unwrap_or_default())
    }
}

/// Parameter `index` of `portal`, as text to make a literal of (`None`: NULL).
fn parameter_text(portal: &Portal<Prepared>, index: usize, ty: &Type) -> PgWireResult<Option<String>> {
    Ok(match *ty {
        Type::INT2 => portal.parameter::<i16>(index, ty)?.map(|v| v.to_string()),
        Type::INT4 => portal.parameter::<i32>(index, ty)?.map(|v| v.to_string()),
        Type::INT8 => portal.parameter::<i64>(index, ty)?.map(|v| v.to_string()),
        Type::FLOAT4 => portal.parameter::<f32>(index, ty)?.map(|v| v.to_string()),
        Type::FLOAT8 => portal.parameter::<f64>(index, ty)?.map(|v| v.to_string()),
        Type::BOOL => portal.parameter::<bool>(index, ty)?.map(|v| v.to_string()),
        Type::DATE => portal.parameter::<chrono::NaiveDate>(index, ty)?.map(|v| v.to_string()),
        Type::TIMESTAMP => portal.parameter::<chrono::NaiveDateTime>(index, ty)?.map(|v| v.format("%Y-%m-%d %H:%M:%S%.f").to_string()),
        Type::TIMESTAMPTZ => {
            portal.parameter::<chrono::DateTime<chrono::FixedOffset>>(index, ty)?.map(|v| v.naive_utc().format("%Y-%m-%d %H:%M:%S%.f").to_string())
        }
        _ if portal.parameter_format.is_binary(index) && !matches!(*ty, Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN) => {
            return Err(error_response(
                &EddyError::Unsupported(format!("parameter ${} of type {} in binary format: send it in text format", index + 1, ty.name())),
                &portal.statement.statement.sql,
            ))
        }
        _ => match portal.parameters.get(index).ok_or(PgWireError::ParameterIndexOutOfBound(index))? {
            Some(bytes) => Some(String::from_utf8(bytes.to_vec()).map_err(|_| {
                error_response(&EddyError::Unsupported(format!("parameter ${} is not UTF-8 text", index + 1)), &portal.statement.statement.sql)
            })?),
            None => None,
        },
    })
}

#[async_trait]
impl ExtendedQueryHandler for Statements {
    type Statement = Prepared;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        Arc::clone(&self.parser)
    }

    async fn do_query<C>(&self, client: &mut C, portal: &Portal<Prepared>, _max_rows: usize) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let prepared = &portal.statement.statement;
        match session::named(&prepared.sql).map_err(|e| error_response(&e, &prepared.sql))? {
            Some(Named::Begin) => return Ok(Response::TransactionStart(Tag::new("BEGIN"))),
            Some(Named::End { committed }) => return Ok(Response::TransactionEnd(Tag::new(if committed { "COMMIT" } else { "ROLLBACK" }))),
            Some(Named::SetSession) => return Ok(Response::Execution(Tag::new("SET"))),
            Some(_) => {
                let refused = EddyError::Unsupported("PREPARE, EXECUTE, DEALLOCATE and SUBSCRIBE run as simple queries, not prepared statements".into());
                return Err(error_response(&refused, &prepared.sql));
            }
            None => {}
        }
        let mut literals = Vec::with_capacity(portal.parameter_len());
        for index in 0..portal.parameter_len() {
            let ty = prepared.parameters.get(index).cloned().unwrap_or(Type::TEXT);
            let value = parameter_text(portal, index, &ty)?;
            literals.push(params::literal(value.as_deref(), &ty).map_err(|e| error_response(&e, &prepared.sql))?);
        }
        let sql = params::substitute(&prepared.sql, &literals).map_err(|e| error_response(&e, &prepared.sql))?;
        let described = |schema: &SchemaRef| types::fields(prepared.columns.as_ref().unwrap_or(schema), &portal.result_column_format);
        if let Some(answer) = catalog::answer(&self.server, &sql).await {
            return rows_response(std::slice::from_ref(&answer), described(&answer.schema()));
        }
        let ran = run(&self.server, &sql).await;
        send_notices(client, ran.notices).await?;
        if let Some(error) = ran.error {
            return Err(error_response_bound(&error, &sql, &prepared.sql));
        }
        match ran.answers.into_iter().next() {
            Some(Answer::Rows { schema, batches }) => rows_response(&batches, described(&schema)),
            Some(Answer::Done { tag }) => Ok(Response::Execution(command_tag(&tag))),
            None => Ok(Response::EmptyQuery),
        }
    }
}
