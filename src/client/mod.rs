//! `eddy sql`: a psql-like client for `eddy server`. Runs `-c` commands, `-f`
//! files or piped statements, or an interactive session with line editing,
//! history, multi-line statements ended by `;`, and psql's backslash commands.

pub mod complete;
pub mod format;
pub mod help;
pub mod input;
pub mod interrupt;
pub mod output;
pub mod pipelines;
mod shell;

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::time::Duration;

use eddy_proto::eddy_client::EddyClient;
use eddy_proto::{execute_sql_response, ExecuteSqlRequest};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use crate::ipc::IpcCollector;
use format::{OutputFormat, PrintOptions};
use shell::Shell;

/// What `eddy sql` was asked to do.
pub struct ClientOptions {
    pub host: String,
    pub token: Option<String>,
    /// `-c` commands, run in order.
    pub commands: Vec<String>,
    /// `-f` files, run after the commands.
    pub files: Vec<PathBuf>,
    pub csv: bool,
    pub expanded: bool,
    /// No command tags (`CREATE TABLE`) or footers, only rows.
    pub quiet: bool,
}

/// Why a client run failed: psql's exit codes (1: a statement failed, 2: no connection).
#[derive(Debug)]
pub enum ClientExit {
    StatementFailed,
    NoConnection,
}

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct Auth(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A connected client, as the CLI and tests use it.
pub type Client = EddyClient<InterceptedService<Channel, Auth>>;

/// Connects to a server at `host` (`http://` is assumed when no scheme is given).
pub async fn connect(host: &str, token: Option<&str>) -> Result<Client, String> {
    let url = if host.contains("://") { host.to_string() } else { format!("http://{host}") };
    let endpoint = tonic::transport::Endpoint::from_shared(url.clone()).map_err(|e| format!("bad --host {host}: {e}"))?;
    let channel = endpoint
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("cannot connect to {url}: {} (is `eddy server` running there?)", error_chain(&e)))?;
    let auth = match token {
        Some(t) => Some(format!("Bearer {t}").parse().map_err(|_| "the token has characters a header cannot carry".to_string())?),
        None => None,
    };
    Ok(EddyClient::with_interceptor(channel, Auth(auth))
        .max_decoding_message_size(eddy_proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(eddy_proto::MAX_MESSAGE_BYTES))
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// One statement's answer.
pub struct StatementResult {
    pub tag: String,
    pub pipeline_id: String,
    pub rows: Option<(datafusion::arrow::datatypes::SchemaRef, Vec<datafusion::arrow::record_batch::RecordBatch>)>,
}

/// Runs `sql` on the server and collects every statement's answer; the error
/// keeps the answers of the statements before it.
pub async fn execute(client: &mut Client, sql: &str) -> Result<Vec<StatementResult>, (Vec<StatementResult>, Status)> {
    let mut results = Vec::new();
    if sql.len() > eddy_proto::MAX_STATEMENT_BYTES {
        return Err((results, Status::invalid_argument(eddy_proto::statement_too_large(sql.len()))));
    }
    let mut stream = match client.execute_sql(ExecuteSqlRequest { sql: sql.to_string() }).await {
        Ok(r) => r.into_inner(),
        Err(status) => return Err((results, status)),
    };
    let mut collector = IpcCollector::default();
    loop {
        let message = match stream.message().await {
            Ok(Some(m)) => m,
            Ok(None) => return Ok(results),
            Err(status) => return Err((results, status)),
        };
        match message.result {
            Some(execute_sql_response::Result::ArrowSchema(bytes)) | Some(execute_sql_response::Result::ArrowBatch(bytes)) => collector.push(&bytes),
            Some(execute_sql_response::Result::Done(done)) => {
                let rows = if collector.has_schema() {
                    Some(collector.take().map_err(|e| (Vec::new(), Status::internal(format!("cannot decode the result: {e}"))))?)
                } else {
                    None
                };
                results.push(StatementResult { tag: done.tag, pipeline_id: done.pipeline_id, rows });
            }
            None => {}
        }
    }
}

/// Runs `eddy sql`.
pub async fn run(options: ClientOptions) -> Result<(), ClientExit> {
    let client = match connect(&options.host, options.token.as_deref()).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("eddy sql: {e}");
            return Err(ClientExit::NoConnection);
        }
    };
    let format = if options.csv { OutputFormat::Csv } else { OutputFormat::Aligned };
    let print = PrintOptions { format, expanded: options.expanded, footer: !options.quiet };
    let mut shell = Shell::new(client, &options.host, options.token.is_some(), print, options.quiet);
    if !options.commands.is_empty() || !options.files.is_empty() {
        for command in &options.commands {
            shell.run_input(command).await?;
        }
        for file in &options.files {
            let text = if file.as_os_str() == "-" {
                read_stdin()
            } else {
                std::fs::read_to_string(file).map_err(|e| {
                    eprintln!("eddy sql: cannot read {}: {e}", file.display());
                    ClientExit::StatementFailed
                })?
            };
            shell.run_input(&text).await?;
        }
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        let text = read_stdin();
        return shell.run_input(&text).await;
    }
    // The greeting says the session is ready, so it waits until the server has
    // taken the token: one cheap call, as psql authenticates before its banner.
    if let Err(status) = shell.client.list_pipelines(eddy_proto::ListPipelinesRequest {}).await {
        print_error("", &status);
        return Err(if status.code() == Code::Unauthenticated { ClientExit::NoConnection } else { exit_for(&status) });
    }
    shell.interactive().await;
    Ok(())
}

pub(crate) fn read_stdin() -> String {
    let mut text = String::new();
    let _ = std::io::stdin().read_to_string(&mut text);
    text
}

/// psql's exit code for a failed call: 2 when the server is gone, 1 otherwise.
pub(crate) fn exit_for(status: &Status) -> ClientExit {
    if status.code() == Code::Unavailable {
        ClientExit::NoConnection
    } else {
        ClientExit::StatementFailed
    }
}

/// Prints an error as psql does, with the statement's line and a caret under the column.
pub fn print_error(sql: &str, status: &Status) {
    eprintln!("{}", error_text(sql, status));
}

/// The text [`print_error`] prints.
pub fn error_text(sql: &str, status: &Status) -> String {
    let mut text = format!("ERROR:  {}", status.message());
    let position = |key: &str| status.metadata().get(key).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if let (Some(line), Some(column)) = (position("eddy-line"), position("eddy-column")) {
        if let Some(source) = sql.lines().nth(line.saturating_sub(1)) {
            let prefix = format!("LINE {line}: ");
            text.push_str(&format!("\n{prefix}{source}\n{}^", " ".repeat(prefix.len() + column.saturating_sub(1))));
        }
    }
    text
}
