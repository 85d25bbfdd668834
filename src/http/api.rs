//! The JSON API the web console calls (`/api/...` on `eddy server --http`): the
//! same pipelines, figures, views and statements as the gRPC API, with the same
//! semantics (a stop here is a `StopPipeline` there), shaped for a browser.
//!
//! - `GET /api/pipelines`: every pipeline's `GetPipeline` figures.
//! - `GET /api/pipelines/ID`: one pipeline with its operator graph and live
//!   figures (the counters `/metrics` and `EXPLAIN ANALYZE` show) and its history.
//! - `POST /api/pipelines/ID/stop` (`{"savepoint": true}`) and `.../restart` (`{"parallelism": N}`).
//! - `GET /api/relations`: tables, views and materialized views with their columns
//!   and the statement that made each (secrets masked, as `SHOW CREATE` shows it).
//! - `GET /api/views/NAME/rows?offset=O&limit=L`: a page of a view's current rows.
//! - `POST /api/sql` (`{"sql": "..."}`): runs statements as `eddy sql` does, and
//!   answers their results (at most [`ROWS_SHOWN`] rows each).
//!
//! Errors are `{"error": "..."}` with a status that says whose move it is; SQL
//! errors add the `line` and `column` of the offending token.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::Array;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use eddy_engine::metrics::{now_ms, StageShapeKind};
use eddy_proto::Pipeline as PipelineStatus;
use http_body_util::{BodyExt, Limited};
use hyper::{Method, Request, StatusCode};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::{reply, Reply};
use crate::error::EddyError;
use crate::server::analyze::stage_figures;
use crate::server::pipelines::PipelineHandle;
use crate::server::{RelationKind, Reply as StatementReply, Server};

/// The most rows of one statement's result the console is sent: a page of a
/// browser, not an export (`eddy sql` and the Postgres protocol stream any number).
pub const ROWS_SHOWN: usize = 1_000;

/// How long a statement from the console may run: a `SELECT` over an endless
/// source is stopped then, and what it answered so far is shown.
const STATEMENT_TIME_LIMIT: Duration = Duration::from_secs(30);

/// The most rows of a view one page may ask for.
const PAGE_ROWS_MAX: usize = 1_000;

/// An error as the console shows it: `{"error": message}` with `status`.
pub fn error_reply(status: StatusCode, message: &str) -> Reply {
    json_reply(status, &json!({ "error": message }))
}

fn json_reply(status: StatusCode, body: &Value) -> Reply {
    reply(status, "application/json", body.to_string())
}

fn ok(body: Value) -> Reply {
    json_reply(StatusCode::OK, &body)
}

/// The HTTP status that says whose move an error is (as `status_of` does for gRPC).
fn status_of(error: &EddyError) -> StatusCode {
    match error {
        EddyError::Sql(_) | EddyError::Connector { .. } | EddyError::Setting { .. } => StatusCode::BAD_REQUEST,
        EddyError::NotFound(_) => StatusCode::NOT_FOUND,
        EddyError::AlreadyExists(_)
        | EddyError::Unsupported(_)
        | EddyError::Conflict(_)
        | EddyError::DataDirInUse { .. }
        | EddyError::ViewFailed { .. }
        | EddyError::NothingValid { .. } => StatusCode::CONFLICT,
        EddyError::ResultTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        EddyError::Cluster(_) => StatusCode::SERVICE_UNAVAILABLE,
        EddyError::Pipeline { .. } | EddyError::Io { .. } | EddyError::StdoutClosed | EddyError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// `{"error", "line", "column"}` for `error`, with the position where there is one.
fn error_body(error: &EddyError) -> Value {
    let mut body = json!({ "error": error.to_string() });
    let location = match error {
        EddyError::Sql(e) => Some(e.location()),
        EddyError::Connector { location, .. } => Some(*location),
        _ => None,
    };
    if let Some(at) = location {
        body["line"] = json!(at.line);
        body["column"] = json!(at.column);
    }
    body
}

fn failed(error: &EddyError) -> Reply {
    json_reply(status_of(error), &error_body(error))
}

/// The answer to one `/api/...` request.
pub async fn answer(server: &Arc<Server>, request: Request<hyper::body::Incoming>) -> Reply {
    let method = request.method().clone();
    let path = request.uri().path().trim_start_matches("/api/").trim_end_matches('/').to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    let parts: Vec<String> = path.split('/').map(percent_decode).collect();
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    if method == Method::POST {
        if let Err((status, why)) = same_site(&request) {
            return error_reply(status, &why);
        }
    }
    match (&method, parts.as_slice()) {
        (&Method::GET, ["pipelines"]) => {
            let pipelines: Vec<Value> = server.pipelines().iter().map(|p| pipeline_json(&p.status())).collect();
            ok(json!({ "now_ms": now_ms(), "pipelines": pipelines }))
        }
        (&Method::GET, ["pipelines", id]) => match server.pipeline(id) {
            Ok(handle) => ok(pipeline_detail(&handle)),
            Err(e) => failed(&e),
        },
        (&Method::POST, ["pipelines", id, action @ ("stop" | "restart")]) => {
            let body = match read_json(request).await {
                Ok(body) => body,
                Err(reply) => return reply,
            };
            if *action == "stop" {
                let savepoint = body.get("savepoint").and_then(Value::as_bool).unwrap_or(false);
                match server.stop_pipeline(id, savepoint).await {
                    Ok((handle, saved)) => ok(json!({ "pipeline": pipeline_json(&handle.status()), "savepoint_id": saved })),
                    Err(e) => failed(&e),
                }
            } else {
                let parallelism = body.get("parallelism").and_then(Value::as_u64).filter(|n| *n > 0).map(|n| n as usize);
                match server.restart_pipeline(id, parallelism).await {
                    Ok(handle) => ok(json!({ "pipeline": pipeline_json(&handle.status()) })),
                    Err(e) => failed(&e),
                }
            }
        }
        (&Method::GET, ["relations"]) => {
            let mut relations = Vec::new();
            for relation in server.relations().await {
                // Secrets masked, as SHOW CREATE shows it.
                let definition = server.show_create(relation.kind, &relation.name).await.ok();
                relations.push(relation_json(&relation.name, relation.kind, &relation.columns, definition));
            }
            ok(json!({ "relations": relations }))
        }
        (&Method::GET, ["views", name, "rows"]) => view_page(server, name, &query),
        (&Method::POST, ["sql"]) => {
            let body = match read_json(request).await {
                Ok(body) => body,
                Err(reply) => return reply,
            };
            match body.get("sql").and_then(Value::as_str) {
                Some(sql) => run_sql(server, sql).await,
                None => error_reply(StatusCode::BAD_REQUEST, "send {\"sql\": \"STATEMENTS\"}"),
            }
        }
        (_, ["pipelines" | "relations" | "sql", ..] | ["views", _, "rows"]) => {
            error_reply(StatusCode::METHOD_NOT_ALLOWED, &format!("{method} is not served at /api/{path}"))
        }
        _ => error_reply(StatusCode::NOT_FOUND, &format!("nothing at /api/{path}; see docs/CONSOLE.md for the API")),
    }
}

/// `%XX` escapes decoded (a view named with a space), invalid ones kept as they are.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Refuses a POST another web site's page could have sent: a browser sends a
/// cross-site form or `no-cors` fetch without asking, but only with a form's
/// content types, and always with its `Origin`. Without a token (the default,
/// on loopback) this is what keeps a page the user visits from running
/// statements on their server.
fn same_site(request: &Request<hyper::body::Incoming>) -> Result<(), (StatusCode, String)> {
    let header = |name: hyper::header::HeaderName| request.headers().get(name).and_then(|v| v.to_str().ok());
    if !header(hyper::header::CONTENT_TYPE).is_some_and(|t| t.trim_start().to_ascii_lowercase().starts_with("application/json")) {
        return Err((StatusCode::UNSUPPORTED_MEDIA_TYPE, "send the request body as JSON, with Content-Type: application/json".into()));
    }
    if let Some(origin) = header(hyper::header::ORIGIN) {
        let from = origin.split_once("://").map_or(origin, |(_, authority)| authority);
        if header(hyper::header::HOST) != Some(from) {
            return Err((StatusCode::FORBIDDEN, format!("a page from {origin} may not call this server's API; open the console from the server itself")));
        }
    }
    Ok(())
}

/// A request's JSON body (`{}` when empty), or the reply that says what is wrong with it.
async fn read_json(request: Request<hyper::body::Incoming>) -> Result<Value, Reply> {
    let limit = eddy_proto::MAX_STATEMENT_BYTES + 1024;
    let bytes = match Limited::new(request.into_body(), limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => return Err(error_reply(StatusCode::PAYLOAD_TOO_LARGE, &format!("cannot read the request body (at most {limit} bytes): {e}"))),
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(&bytes).map_err(|e| error_reply(StatusCode::BAD_REQUEST, &format!("the request body is not JSON: {e}")))
}

/// A pipeline's `GetPipeline` figures as JSON, field for field.
fn pipeline_json(p: &PipelineStatus) -> Value {
    json!({
        "id": p.id, "name": p.name, "sql": p.sql, "status": p.status, "error": p.error,
        "started_at_ms": p.started_at_ms, "rows_in": p.rows_in, "rows_out": p.rows_out,
        "late_rows": p.late_rows, "malformed_rows": p.malformed_rows, "null_time_rows": p.null_time_rows,
        "watermark_ms": p.watermark_ms, "rows_in_per_second": p.rows_in_per_second,
        "state_rows": p.state_rows, "state_bytes": p.state_bytes,
        "checkpoint_id": p.checkpoint_id, "checkpoint_ms": p.checkpoint_ms, "checkpoint_bytes": p.checkpoint_bytes,
        "checkpoint_at_ms": p.checkpoint_at_ms, "parallelism": p.parallelism, "lag_rows": p.lag_rows,
        "view_as_of_ms": p.view_as_of_ms,
    })
}

/// One pipeline with its stages, each operator's figures summed over its tasks,
/// its sink's, and its history.
fn pipeline_detail(handle: &PipelineHandle) -> Value {
    let status = handle.status();
    let (metrics, _, _) = handle.figures();
    let mut figures = stage_figures(&metrics);
    let stages: Vec<Value> = metrics
        .stages()
        .iter()
        .enumerate()
        .map(|(index, shape)| {
            let stage = figures.remove(&index).unwrap_or_default();
            let operators: Vec<Value> = stage
                .operators
                .iter()
                .map(|op| {
                    json!({
                        "id": op.id, "name": op.name, "tasks": op.tasks, "rows_in": op.rows_in, "rows_out": op.rows_out,
                        "busy_ns": op.busy_ns, "state_bytes": op.state_bytes, "state_keys": op.state_keys, "watermark_ms": op.watermark_ms,
                    })
                })
                .collect();
            json!({
                "id": index,
                "name": shape.name,
                "kind": match shape.kind {
                    StageShapeKind::Source => "source",
                    StageShapeKind::Keyed => "keyed",
                    StageShapeKind::Sink => "sink",
                },
                "output": shape.output.map(|link| link.stage),
                "input": shape.output.map_or(0, |link| link.input),
                "tasks": shape.tasks,
                "backpressured_ns": stage.backpressured_ns,
                "operators": operators,
            })
        })
        .collect();
    let sink =
        metrics.sink().map(|s| json!({ "table": s.table, "rows_written": s.rows_written.load(Relaxed), "rows_committed": s.rows_committed.load(Relaxed) }));
    let history: Vec<Value> = handle
        .history()
        .iter()
        .map(|s| {
            json!({
                "at_ms": s.at_ms, "rows_in_per_second": s.rows_in_per_second, "watermark_lag_ms": s.watermark_lag_ms,
                "checkpoint_ms": s.checkpoint_ms, "late_rows": s.late_rows,
            })
        })
        .collect();
    let uptime_ms = if status.status == "RUNNING" { (now_ms() - status.started_at_ms).max(0) } else { 0 };
    json!({
        "now_ms": now_ms(),
        "pipeline": pipeline_json(&status),
        "uptime_ms": uptime_ms,
        "graph": { "stages": stages },
        "sink": sink,
        "history": history,
    })
}

fn relation_json(name: &str, kind: RelationKind, columns: &SchemaRef, definition: Option<String>) -> Value {
    let columns: Vec<Value> =
        columns.fields().iter().map(|f| json!({ "name": f.name(), "type": eddy_sql::sql_type_name(f.data_type()), "nullable": f.is_nullable() })).collect();
    json!({ "name": name, "kind": kind.name(), "columns": columns, "definition": definition })
}

/// `?offset=O&limit=L` of a page request, with defaults (0, 50) and `limit` capped.
fn page_of(query: &str) -> Result<(usize, usize), String> {
    let (mut offset, mut limit) = (0, 50);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let number = || value.parse::<usize>().map_err(|_| format!("{key}={value} is not a whole number"));
        match key {
            "offset" => offset = number()?,
            "limit" => limit = number()?.min(PAGE_ROWS_MAX),
            _ => {}
        }
    }
    Ok((offset, limit))
}

/// A page of a materialized view's current rows.
fn view_page(server: &Server, name: &str, query: &str) -> Reply {
    let (offset, limit) = match page_of(query) {
        Ok(page) => page,
        Err(message) => return error_reply(StatusCode::BAD_REQUEST, &message),
    };
    let page = server.view(name).and_then(|view| {
        server.check_view_readable(name)?;
        let batches = view.snapshot().map_err(|e| EddyError::Internal(format!("cannot read view {name}: {e}")))?;
        Ok((view.schema(), batches))
    });
    let (schema, batches) = match page {
        Ok(page) => page,
        Err(e) => return failed(&e),
    };
    let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let mut rows = Vec::new();
    let mut skip = offset;
    for batch in &batches {
        if rows.len() == limit {
            break;
        }
        if skip >= batch.num_rows() {
            skip -= batch.num_rows();
            continue;
        }
        let take = (batch.num_rows() - skip).min(limit - rows.len());
        match rows_json(&batch.slice(skip, take)) {
            Ok(more) => rows.extend(more),
            Err(e) => return failed(&e),
        }
        skip = 0;
    }
    let columns: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    ok(json!({ "columns": columns, "rows": rows, "total": total, "offset": offset, "limit": limit }))
}

/// Each row of `batch` as display strings (as `eddy sql` prints them), nulls as `null`.
fn rows_json(batch: &RecordBatch) -> Result<Vec<Value>, EddyError> {
    let options = FormatOptions::default();
    let formatters = batch
        .columns()
        .iter()
        .map(|column| ArrayFormatter::try_new(column.as_ref(), &options))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| EddyError::Internal(format!("cannot show a value: {e}")))?;
    // Logical nulls: a NullArray (an untyped `NULL`) has no validity buffer.
    let nulls: Vec<_> = batch.columns().iter().map(|column| column.logical_nulls()).collect();
    Ok((0..batch.num_rows())
        .map(|row| {
            let cells: Vec<Value> = nulls
                .iter()
                .zip(&formatters)
                .map(|(nulls, format)| match nulls {
                    Some(nulls) if nulls.is_null(row) => Value::Null,
                    _ => Value::String(format.value(row).to_string()),
                })
                .collect();
            Value::Array(cells)
        })
        .collect())
}

/// One statement's answer as the console shows it.
#[derive(Default)]
struct StatementResult {
    columns: Option<Vec<String>>,
    rows: Vec<Value>,
    truncated: bool,
    notices: Vec<String>,
    tag: Option<String>,
    pipeline_id: Option<String>,
}

impl StatementResult {
    fn json(&self) -> Value {
        json!({
            "columns": self.columns, "rows": self.rows, "truncated": self.truncated,
            "tag": self.tag, "pipeline_id": self.pipeline_id, "notices": self.notices,
        })
    }
}

/// Runs `sql` as `eddy sql` would and answers every statement's result; a
/// statement that fails answers the results before it and the error. A result
/// keeps its first [`ROWS_SHOWN`] rows; once every running statement's result
/// is full (or [`STATEMENT_TIME_LIMIT`] passed), the statement is stopped.
async fn run_sql(server: &Arc<Server>, sql: &str) -> Reply {
    let (replies_tx, mut replies_rx) = mpsc::channel::<(usize, StatementReply)>(16);
    let running = Arc::clone(server);
    let sql_owned = sql.to_string();
    let execution = tokio::spawn(async move { running.execute_for_client(&sql_owned, &replies_tx).await });
    let mut results: Vec<StatementResult> = Vec::new();
    let deadline = tokio::time::Instant::now() + STATEMENT_TIME_LIMIT;
    let mut stopped_early = None;
    loop {
        let next = tokio::select! {
            next = replies_rx.recv() => next,
            () = tokio::time::sleep_until(deadline) => {
                stopped_early = Some(format!("stopped after {} s; the rows so far are shown", STATEMENT_TIME_LIMIT.as_secs()));
                None
            }
        };
        let Some((index, reply)) = next else { break };
        while results.len() <= index {
            results.push(StatementResult::default());
        }
        let result = &mut results[index];
        match reply {
            StatementReply::Schema(schema) => result.columns = Some(schema.fields().iter().map(|f| f.name().clone()).collect()),
            StatementReply::Batch(batch) => {
                let room = ROWS_SHOWN.saturating_sub(result.rows.len());
                if batch.num_rows() > room {
                    result.truncated = true;
                }
                match rows_json(&batch.slice(0, batch.num_rows().min(room))) {
                    Ok(rows) => result.rows.extend(rows),
                    Err(e) => return failed(&e),
                }
                if result.truncated {
                    // Enough for a page: closing the replies tells the statement to stop.
                    stopped_early = Some(format!("only the first {ROWS_SHOWN} rows are shown"));
                    break;
                }
            }
            StatementReply::Notice(text) => result.notices.push(text),
            StatementReply::Done { tag, pipeline_id, .. } => {
                result.tag = Some(tag);
                result.pipeline_id = pipeline_id;
            }
        }
    }
    let outcome = if let Some(why) = stopped_early {
        // The statement sees its replies closed and stops on its own, as when a
        // gRPC client goes away; a statement that changes the catalog is never cut off halfway.
        replies_rx.close();
        drop(execution);
        if let Some(last) = results.last_mut() {
            last.truncated = true;
            last.notices.push(why);
        }
        Ok(())
    } else {
        match execution.await {
            Ok(outcome) => outcome.map_err(|(_, e)| e),
            Err(e) => Err(EddyError::Internal(format!("the statement stopped: {e}"))),
        }
    };
    let results: Vec<Value> = results.iter().map(StatementResult::json).collect();
    match outcome {
        Ok(()) => ok(json!({ "results": results })),
        Err(error) => {
            let mut body = error_body(&error);
            body["results"] = Value::Array(results);
            json_reply(status_of(&error), &body)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_default_to_the_first_fifty_rows_and_cap_the_limit() {
        assert_eq!(page_of(""), Ok((0, 50)));
        assert_eq!(page_of("offset=100&limit=20"), Ok((100, 20)));
        assert_eq!(page_of("limit=1000000"), Ok((0, PAGE_ROWS_MAX)));
        assert!(page_of("offset=-1").unwrap_err().contains("offset=-1"));
    }

    #[test]
    fn nulls_are_json_nulls_even_untyped_ones() {
        use datafusion::arrow::array::{ArrayRef, Int64Array, NullArray};
        let columns: Vec<(&str, ArrayRef)> =
            vec![("n", Arc::new(Int64Array::from(vec![Some(1), None])) as ArrayRef), ("m", Arc::new(NullArray::new(2)) as ArrayRef)];
        let batch = RecordBatch::try_from_iter(columns).unwrap();
        assert_eq!(rows_json(&batch).unwrap(), vec![json!(["1", null]), json!([null, null])]);
    }

    #[test]
    fn percent_escapes_are_decoded_and_broken_ones_kept() {
        assert_eq!(percent_decode("my%20view"), "my view");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
