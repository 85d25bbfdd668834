//! `eddy sql`: a psql-like client for `eddy server`. Runs `-c` commands, `-f`
//! files or piped statements, or an interactive session with line editing,
//! history, multi-line statements ended by `;`, and psql's backslash commands.

pub mod format;

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use eddy_proto::eddy_client::EddyClient;
use eddy_proto::{execute_sql_response, subscribe_response, ExecuteSqlRequest, SubscribeRequest};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use crate::ipc::IpcCollector;
use format::{render, OutputFormat, PrintOptions};

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
            Some(execute_sql_response::Result::Notice(text)) => eprintln!("WARNING:  {text}"),
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

/// The interactive session's and the script runner's settings.
struct Shell {
    client: Client,
    print: PrintOptions,
    quiet: bool,
    timing: bool,
    /// The last statement sent, for `\watch` and `\g`.
    last: Option<String>,
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
    let mut shell = Shell {
        client,
        print: PrintOptions { format, expanded: options.expanded, footer: !options.quiet },
        quiet: options.quiet,
        timing: false,
        last: None,
    };
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
    shell.interactive(&options.host).await;
    Ok(())
}

fn read_stdin() -> String {
    let mut text = String::new();
    let _ = std::io::stdin().read_to_string(&mut text);
    text
}

impl Shell {
    /// Runs text that may mix statements and backslash commands (a `-c`, a file, stdin).
    async fn run_input(&mut self, text: &str) -> Result<(), ClientExit> {
        // As psql: statements run in order with the backslash commands between them.
        let mut buffer = String::new();
        for line in text.lines() {
            if line.trim_start().starts_with('\\') {
                if !buffer.trim().is_empty() {
                    self.send(&std::mem::take(&mut buffer)).await?;
                }
                buffer.clear();
                if !self.meta(line.trim()).await? {
                    return Ok(());
                }
                continue;
            }
            buffer.push_str(line);
            buffer.push('\n');
        }
        if buffer.trim().is_empty() {
            return Ok(());
        }
        self.send(&buffer).await
    }

    /// Sends statements and prints their answers; Ctrl-C cancels the call.
    async fn send(&mut self, sql: &str) -> Result<(), ClientExit> {
        self.last = Some(sql.to_string());
        let started = Instant::now();
        let outcome = tokio::select! {
            r = execute(&mut self.client, sql) => r,
            _ = tokio::signal::ctrl_c() => Err((Vec::new(), Status::cancelled("canceling statement due to user request"))),
        };
        let (results, error) = match outcome {
            Ok(results) => (results, None),
            Err((results, status)) => (results, Some(status)),
        };
        for result in &results {
            self.print_result(result);
        }
        if self.timing {
            println!("Time: {:.3} ms", started.elapsed().as_secs_f64() * 1000.0);
        }
        match error {
            None => Ok(()),
            Some(status) => {
                print_error(sql, &status);
                Err(if status.code() == Code::Unavailable { ClientExit::NoConnection } else { ClientExit::StatementFailed })
            }
        }
    }

    fn print_result(&self, result: &StatementResult) {
        match &result.rows {
            Some((schema, batches)) => match render(schema, batches, &self.print) {
                Ok(text) => print!("{text}"),
                Err(e) => eprintln!("eddy sql: cannot print the result: {e}"),
            },
            None if self.quiet => {}
            None if !result.pipeline_id.is_empty() => println!("{} (pipeline {})", result.tag, result.pipeline_id),
            None => println!("{}", result.tag),
        }
    }

    /// A backslash command; false for `\q`.
    async fn meta(&mut self, line: &str) -> Result<bool, ClientExit> {
        let mut words = line.split_whitespace();
        let command = words.next().unwrap_or("");
        let argument = words.next();
        match (command, argument) {
            ("\\q", _) => return Ok(false),
            ("\\?", _) => print!("{HELP}"),
            ("\\x", setting) => {
                self.print.expanded = toggle(self.print.expanded, setting);
                println!("Expanded display is {}.", if self.print.expanded { "on" } else { "off" });
            }
            ("\\timing", setting) => {
                self.timing = toggle(self.timing, setting);
                println!("Timing is {}.", if self.timing { "on" } else { "off" });
            }
            ("\\pset", Some("format")) => match words.next() {
                Some("csv") => self.print.format = OutputFormat::Csv,
                Some("aligned") => self.print.format = OutputFormat::Aligned,
                other => eprintln!("\\pset: format must be aligned or csv, not {}", other.unwrap_or("nothing")),
            },
            ("\\d", None) => self.send("SHOW TABLES; SHOW VIEWS").await?,
            ("\\d", Some(name)) => self.send(&format!("DESCRIBE {name}")).await?,
            ("\\dt", _) => self.send("SHOW TABLES").await?,
            ("\\dv", _) => self.send("SHOW VIEWS").await?,
            ("\\dp", _) => self.send("SHOW PIPELINES").await?,
            ("\\i", Some(file)) => match std::fs::read_to_string(file) {
                Ok(text) => Box::pin(self.run_input(&text)).await?,
                Err(e) => eprintln!("\\i: cannot read {file}: {e}"),
            },
            ("\\watch", seconds) => self.watch(seconds).await?,
            ("\\subscribe", Some(view)) => self.subscribe(view).await?,
            _ => eprintln!("invalid command {line}; try \\? for help"),
        }
        Ok(true)
    }

    /// Re-runs the last statement every N seconds (2 by default) until Ctrl-C.
    async fn watch(&mut self, seconds: Option<&str>) -> Result<(), ClientExit> {
        let Some(sql) = self.last.clone() else {
            eprintln!("\\watch cannot be used with an empty query");
            return Ok(());
        };
        let every = Duration::from_secs_f64(seconds.and_then(|s| s.parse().ok()).unwrap_or(2.0f64).max(0.1));
        loop {
            println!("{}", chrono_now());
            self.send(&sql).await?;
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = tokio::signal::ctrl_c() => return Ok(()),
            }
        }
    }

    /// Prints a view's changes (with its current rows first) until Ctrl-C.
    async fn subscribe(&mut self, view: &str) -> Result<(), ClientExit> {
        let mut stream = match self.client.subscribe(SubscribeRequest { name: view.to_string(), snapshot: true }).await {
            Ok(r) => r.into_inner(),
            Err(status) => {
                print_error("", &status);
                return Err(ClientExit::StatementFailed);
            }
        };
        let mut header = Vec::new();
        let options = PrintOptions { footer: false, ..self.print };
        loop {
            let message = tokio::select! {
                m = stream.message() => m,
                _ = tokio::signal::ctrl_c() => return Ok(()),
            };
            match message {
                Ok(Some(m)) => match m.change {
                    Some(subscribe_response::Change::ArrowSchema(bytes)) => header = bytes,
                    Some(subscribe_response::Change::ArrowBatch(bytes)) => {
                        if let Ok((schema, batches)) = crate::ipc::decode_after(&header, &bytes) {
                            if let Ok(text) = render(&schema, &batches, &options) {
                                print!("{text}");
                            }
                        }
                        // Later batches of the same stream reuse the schema message.
                    }
                    None => {}
                },
                Ok(None) => return Ok(()),
                Err(status) => {
                    print_error("", &status);
                    return Err(ClientExit::StatementFailed);
                }
            }
        }
    }

    async fn interactive(&mut self, host: &str) {
        println!("eddy sql {} connected to {host}. Type \\? for help, \\q to quit.", env!("CARGO_PKG_VERSION"));
        // Ctrl-C must never end an interactive client (as in psql), even on a
        // terminal the line editor drives in cooked mode, where it arrives as
        // SIGINT rather than as a key: install the handler before the first prompt.
        #[cfg(unix)]
        let _sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt());
        let history = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".eddy_history"));
        let mut editor = match rustyline::DefaultEditor::new() {
            Ok(e) => e,
            Err(e) => {
                eprintln!("eddy sql: no line editor ({e}); reading plain lines");
                return;
            }
        };
        if let Some(path) = &history {
            let _ = editor.load_history(path);
        }
        let mut buffer = String::new();
        loop {
            let prompt = if buffer.is_empty() { "eddy=> " } else { "eddy-> " };
            let line = tokio::task::block_in_place(|| editor.readline(prompt));
            match line {
                Ok(line) => {
                    if buffer.is_empty() && line.trim_start().starts_with('\\') {
                        let _ = editor.add_history_entry(line.as_str());
                        match self.meta(line.trim()).await {
                            Ok(true) | Err(_) => continue,
                            Ok(false) => break,
                        }
                    }
                    buffer.push_str(&line);
                    buffer.push('\n');
                    if line.trim_end().ends_with(';') {
                        let statement = std::mem::take(&mut buffer);
                        let _ = editor.add_history_entry(statement.trim_end());
                        let _ = self.send(&statement).await;
                    }
                }
                // Ctrl-C drops the statement being typed, as in psql.
                Err(rustyline::error::ReadlineError::Interrupted) => buffer.clear(),
                Err(rustyline::error::ReadlineError::Eof) => break,
                Err(e) => {
                    eprintln!("eddy sql: {e}");
                    break;
                }
            }
        }
        if let Some(path) = &history {
            let _ = editor.save_history(path);
        }
    }
}

fn toggle(current: bool, setting: Option<&str>) -> bool {
    match setting {
        Some("on") => true,
        Some("off") => false,
        _ => !current,
    }
}

fn chrono_now() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    format!("{}", eddy_engine::EventTime(now))
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

const HELP: &str = r"General
  \q                 quit
  \? help            this help
Query buffer
  \watch [SEC]       run the last statement again every SEC seconds (default 2) until Ctrl-C
  \i FILE            run the statements in FILE
Informational
  \d                 list tables and views
  \d NAME            describe a table or view
  \dt                list tables
  \dv                list views (plain and materialized)
  \dp                list pipelines
Formatting
  \x [on|off]        expanded display
  \pset format aligned|csv
  \timing [on|off]   show how long each statement takes
Streaming
  \subscribe NAME    print a materialized view's rows, then its changes as they happen (or the rows an
                     INSERT INTO pipeline writes, by its id or table name), until Ctrl-C
Statements end with ';' and may span lines. Ctrl-C cancels the statement being typed or run.
";
