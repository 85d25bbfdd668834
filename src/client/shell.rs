//! The session `eddy sql` runs: the interactive prompt (line editing, history
//! saved as you go, tab completion) and the runner of `-c`, `-f` and piped
//! input, which share one query buffer and psql's backslash commands.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eddy_proto::{subscribe_response, ListPipelinesRequest, SubscribeRequest};
use rustyline::error::ReadlineError;
use rustyline::history::FileHistory;
use tonic::Status;

use super::complete::{Names, SqlHelper};
use super::format::{render, OutputFormat, PrintOptions};
use super::input::{arguments, Piece, QueryBuffer};
use super::interrupt::{self, Interrupt};
use super::output::{Output, Pager};
use super::{execute, exit_for, help, pipelines, print_error, Client, ClientExit, StatementResult};

/// Whether the session goes on after a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    /// `\q`.
    Quit,
}

/// The interactive session's and the script runner's state.
pub(crate) struct Shell {
    pub(crate) client: Client,
    /// The server's address, for `\conninfo`.
    host: String,
    /// Whether the session sends a token, for `\conninfo`.
    token: bool,
    print: PrintOptions,
    quiet: bool,
    timing: bool,
    /// Text typed since the last statement was sent.
    buffer: QueryBuffer,
    /// The last statement sent, for `\watch`, `\g`, `\p` and `\e`.
    last: Option<String>,
    /// `\set` variables.
    variables: BTreeMap<String, String>,
    /// Ctrl-C, which cancels what runs.
    interrupt: Interrupt,
    output: Output,
    /// Names for tab completion, refreshed after statements; only in an interactive session.
    names: Option<Arc<Mutex<Names>>>,
}

impl Shell {
    pub(crate) fn new(client: Client, host: &str, token: bool, print: PrintOptions, quiet: bool) -> Shell {
        Shell {
            client,
            host: host.to_string(),
            token,
            print,
            quiet,
            timing: false,
            buffer: QueryBuffer::default(),
            last: None,
            variables: BTreeMap::new(),
            interrupt: Interrupt::listen(),
            output: Output::new(),
            names: None,
        }
    }

    /// Runs text that may mix statements and backslash commands (a `-c`, a file,
    /// stdin); stops at the first error. Text left without a `;` at the end runs too.
    pub(crate) async fn run_input(&mut self, text: &str) -> Result<(), ClientExit> {
        for line in text.lines() {
            if self.line(line).await? == Flow::Quit {
                return Ok(());
            }
        }
        if self.buffer.is_empty() {
            self.buffer.take();
            return Ok(());
        }
        let rest = self.buffer.take();
        self.send(&rest).await
    }

    /// One line of input: runs the statements it ends and the backslash commands it holds.
    async fn line(&mut self, line: &str) -> Result<Flow, ClientExit> {
        for piece in self.buffer.push_line(line, &self.variables) {
            match piece {
                Piece::Statement(sql) => self.send(&sql).await?,
                Piece::Command(command) => {
                    if self.meta(&command).await? == Flow::Quit {
                        return Ok(Flow::Quit);
                    }
                }
            }
        }
        Ok(Flow::Continue)
    }

    /// Sends statements and prints their answers; Ctrl-C cancels the call.
    async fn send(&mut self, sql: &str) -> Result<(), ClientExit> {
        self.last = Some(sql.to_string());
        let started = Instant::now();
        let outcome = tokio::select! {
            r = execute(&mut self.client, sql) => r,
            _ = self.interrupt.recv() => Err((Vec::new(), Status::cancelled("canceling statement due to user request"))),
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
        if !results.is_empty() && changes_the_catalog(sql) {
            self.refresh_names().await;
        }
        match error {
            None => Ok(()),
            Some(status) => {
                print_error(sql, &status);
                Err(exit_for(&status))
            }
        }
    }

    fn print_result(&mut self, result: &StatementResult) {
        match &result.rows {
            Some((schema, batches)) => match render(schema, batches, &self.print) {
                Ok(text) => self.output.write(&text),
                Err(e) => eprintln!("eddy sql: cannot print the result: {e}"),
            },
            None if self.quiet => {}
            None if !result.pipeline_id.is_empty() => self.output.write(&format!("{} (pipeline {})\n", result.tag, result.pipeline_id)),
            None => self.output.write(&format!("{}\n", result.tag)),
        }
    }

    /// A backslash command (without its backslash) and its arguments.
    async fn meta(&mut self, text: &str) -> Result<Flow, ClientExit> {
        let command: String = text.chars().take_while(|c| !c.is_whitespace()).collect();
        let rest = text[command.len()..].trim();
        let args = arguments(rest, &self.variables);
        let first = args.first().map(String::as_str);
        match command.as_str() {
            "q" | "quit" => return Ok(Flow::Quit),
            "?" => print!("{}", help::COMMANDS),
            "h" | "help" => print!("{}", help::statement_help(&args.join(" "))),
            "conninfo" => println!("You are connected to the eddy server at {}{}.", self.host, if self.token { " with a token" } else { " without a token" }),
            "g" => {
                let sql = if self.buffer.is_empty() { self.last.clone() } else { Some(self.buffer.take()) };
                match sql {
                    Some(sql) => self.send(&sql).await?,
                    None => eprintln!("\\g: the query buffer is empty and no statement was sent yet"),
                }
            }
            "p" | "print" => match (self.buffer.is_empty(), &self.last) {
                (false, _) => println!("{}", self.buffer.text().trim_end()),
                (true, Some(last)) => println!("{}", last.trim_end()),
                (true, None) => println!("Query buffer is empty."),
            },
            "r" | "reset" => {
                self.buffer.take();
                println!("Query buffer reset (cleared).");
            }
            "e" | "edit" => self.edit().await?,
            "echo" => println!("{}", args.join(" ")),
            "set" => match args.split_first() {
                None => {
                    for (name, value) in &self.variables {
                        println!("{name} = '{value}'");
                    }
                }
                Some((name, values)) if is_variable_name(name) => {
                    self.variables.insert(name.clone(), values.concat());
                }
                Some((name, _)) => eprintln!("\\set: invalid variable name: \"{name}\" (letters, digits and _ only)"),
            },
            "unset" => match first {
                Some(name) => {
                    self.variables.remove(name);
                }
                None => eprintln!("\\unset: missing required argument"),
            },
            "o" | "out" => {
                if let Err(e) = self.output.redirect(first) {
                    eprintln!("\\o: {e}");
                    return Err(ClientExit::StatementFailed);
                }
            }
            "x" => {
                self.print.expanded = toggle(self.print.expanded, first);
                println!("Expanded display is {}.", if self.print.expanded { "on" } else { "off" });
            }
            "timing" => {
                self.timing = toggle(self.timing, first);
                println!("Timing is {}.", if self.timing { "on" } else { "off" });
            }
            "pset" => self.pset(first, args.get(1).map(String::as_str)),
            "d" => match first {
                None => self.send("SHOW TABLES; SHOW VIEWS").await?,
                Some(name) => self.send(&format!("DESCRIBE {name}")).await?,
            },
            "dt" => self.send("SHOW TABLES").await?,
            "dv" => self.send("SHOW VIEWS").await?,
            "dp" => self.list_pipelines().await?,
            "i" | "include" => match first {
                Some(file) => match std::fs::read_to_string(file) {
                    Ok(text) => {
                        // The file's statements are its own: the buffer typed so far waits.
                        let typed = std::mem::take(&mut self.buffer);
                        let result = Box::pin(self.run_input(&text)).await;
                        self.buffer = typed;
                        result?;
                    }
                    Err(e) => eprintln!("\\i: cannot read {file}: {e}"),
                },
                None => eprintln!("\\i: missing required argument"),
            },
            "watch" => self.watch(first).await?,
            "subscribe" => match first {
                Some(view) => self.subscribe(view).await?,
                None => eprintln!("\\subscribe: name a materialized view (\\dv lists them)"),
            },
            _ => eprintln!("invalid command \\{command}; try \\? for help"),
        }
        Ok(Flow::Continue)
    }

    /// `\pset format aligned|csv`, `\pset pager on|off`.
    fn pset(&mut self, option: Option<&str>, value: Option<&str>) {
        match (option, value) {
            (Some("format"), Some("csv")) => self.print.format = OutputFormat::Csv,
            (Some("format"), Some("aligned")) => self.print.format = OutputFormat::Aligned,
            (Some("format"), other) => eprintln!("\\pset: format must be aligned or csv, not {}", other.unwrap_or("nothing")),
            (Some("pager"), setting) => {
                let on = toggle(self.output.pager == Pager::On, setting);
                self.output.pager = if on { Pager::On } else { Pager::Off };
                println!("Pager usage is {}.", if on { "on" } else { "off" });
            }
            (other, _) => eprintln!("\\pset: unknown option {}; there are format and pager", other.unwrap_or("(none)")),
        }
    }

    /// `\dp`: the pipelines with their progress, from `ListPipelines`.
    async fn list_pipelines(&mut self) -> Result<(), ClientExit> {
        let listed = tokio::select! {
            r = self.client.list_pipelines(ListPipelinesRequest {}) => r,
            _ = self.interrupt.recv() => Err(Status::cancelled("canceling statement due to user request")),
        };
        let pipelines = match listed {
            Ok(response) => response.into_inner().pipelines,
            Err(status) => {
                print_error("", &status);
                return Err(exit_for(&status));
            }
        };
        match pipelines::pipeline_table(&pipelines) {
            Ok((schema, batch)) => self.print_result(&StatementResult { tag: String::new(), pipeline_id: String::new(), rows: Some((schema, vec![batch])) }),
            Err(e) => eprintln!("eddy sql: cannot print the pipelines: {e}"),
        }
        Ok(())
    }

    /// `\e`: the query buffer (or the last statement) in `$EDITOR` (else `$VISUAL`,
    /// else `vi`); what comes back is typed in again, so a statement ended by `;` runs.
    async fn edit(&mut self) -> Result<(), ClientExit> {
        let text = if self.buffer.is_empty() { self.last.clone().unwrap_or_default() } else { self.buffer.take() };
        let path = std::env::temp_dir().join(format!("eddy-edit-{}.sql", std::process::id()));
        if let Err(e) = std::fs::write(&path, &text) {
            eprintln!("\\e: cannot write {}: {e}", path.display());
            return Ok(());
        }
        let editor = ["EDITOR", "VISUAL"].iter().find_map(|v| std::env::var(v).ok().filter(|e| !e.trim().is_empty())).unwrap_or_else(|| "vi".to_string());
        // Through the shell, as psql does, so EDITOR may carry arguments ("code --wait").
        let status = tokio::task::block_in_place(|| std::process::Command::new("sh").arg("-c").arg(format!("{editor} \"$1\"")).arg("sh").arg(&path).status());
        let edited = std::fs::read_to_string(&path);
        let _ = std::fs::remove_file(&path);
        match (status, edited) {
            (Err(e), _) => eprintln!("\\e: cannot start {editor}: {e}"),
            (Ok(status), _) if !status.success() => eprintln!("\\e: {editor} exited with {status}; nothing changed"),
            (Ok(_), Err(e)) => eprintln!("\\e: cannot read back {}: {e}", path.display()),
            (Ok(_), Ok(edited)) => {
                // Typed in again line by line (boxed: a line may hold another `\e`).
                for line in edited.lines() {
                    if Box::pin(self.line(line)).await? == Flow::Quit {
                        break;
                    }
                }
                if !self.buffer.is_empty() {
                    println!("{}", self.buffer.text().trim_end());
                }
            }
        }
        Ok(())
    }

    /// Re-runs the last statement every N seconds (2 by default) until Ctrl-C.
    async fn watch(&mut self, seconds: Option<&str>) -> Result<(), ClientExit> {
        let sql = if self.buffer.is_empty() { self.last.clone() } else { Some(self.buffer.take()) };
        let Some(sql) = sql else {
            eprintln!("\\watch cannot be used with an empty query");
            return Ok(());
        };
        let every = Duration::from_secs_f64(seconds.and_then(|s| s.parse().ok()).unwrap_or(2.0f64).max(0.1));
        // A page per round would stop the loop in the pager.
        let pager = std::mem::replace(&mut self.output.pager, Pager::Off);
        let result = async {
            loop {
                println!("{}", now());
                self.send(&sql).await?;
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = self.interrupt.recv() => return Ok(()),
                }
            }
        }
        .await;
        self.output.pager = pager;
        result
    }

    /// Prints a view's changes (with its current rows first) until Ctrl-C.
    async fn subscribe(&mut self, view: &str) -> Result<(), ClientExit> {
        let subscribed = tokio::select! {
            r = self.client.subscribe(SubscribeRequest { name: view.to_string(), snapshot: true }) => r,
            _ = self.interrupt.recv() => return Ok(()),
        };
        let mut stream = match subscribed {
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
                _ = self.interrupt.recv() => return Ok(()),
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

    /// Fetches the tables, views and columns tab completion offers.
    async fn refresh_names(&mut self) {
        let Some(names) = self.names.clone() else { return };
        let first_column = |results: &[StatementResult]| -> Vec<String> {
            let mut values = Vec::new();
            for result in results {
                let Some((_, batches)) = &result.rows else { continue };
                for batch in batches {
                    let Some(column) = batch.columns().first() else { continue };
                    let Some(strings) = column.as_any().downcast_ref::<datafusion::arrow::array::StringArray>() else { continue };
                    values.extend(strings.iter().flatten().map(str::to_string));
                }
            }
            values
        };
        let Ok(listed) = execute(&mut self.client, "SHOW TABLES; SHOW VIEWS").await else { return };
        let mut relations = first_column(&listed);
        relations.sort();
        relations.dedup();
        let mut columns = Vec::new();
        for relation in &relations {
            if let Ok(described) = execute(&mut self.client, &format!("DESCRIBE {relation}")).await {
                columns.extend(first_column(&described));
            }
        }
        columns.sort();
        columns.dedup();
        let mut shared = names.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *shared = Names { relations, columns };
    }

    /// The interactive session, until `\q` or Ctrl-D.
    pub(crate) async fn interactive(&mut self) {
        println!("eddy sql {} connected to {}. Type \\? for help, \\q to quit.", env!("CARGO_PKG_VERSION"), self.host);
        // Ctrl-C never ends an interactive client (as in psql), even on a
        // terminal the line editor drives in cooked mode, where it arrives as
        // SIGINT rather than as a key: the shell's listener, made before the
        // first prompt, keeps it.
        let history = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".eddy_history"));
        let config = rustyline::Config::builder().auto_add_history(false).completion_type(rustyline::CompletionType::List).build();
        let mut editor = match interrupt::keep_sigint(|| rustyline::Editor::<SqlHelper, FileHistory>::with_config(config)) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("eddy sql: no line editor ({e}); reading plain lines");
                return;
            }
        };
        let names = Arc::new(Mutex::new(Names::default()));
        editor.set_helper(Some(SqlHelper { names: Arc::clone(&names) }));
        self.names = Some(names);
        self.refresh_names().await;
        if let Some(path) = &history {
            let _ = editor.load_history(path);
        }
        // The lines of the statement being typed, kept as one history entry once it is sent.
        let mut typed = String::new();
        loop {
            let prompt = format!("eddy{}> ", self.buffer.prompt_mark());
            let line = tokio::task::block_in_place(|| editor.readline(&prompt));
            // A Ctrl-C typed at a cooked terminal's prompt only cleared the line.
            self.interrupt.forget();
            match line {
                Ok(line) => {
                    typed.push_str(&line);
                    typed.push('\n');
                    let flow = self.line(&line).await;
                    if self.buffer.is_empty() {
                        let entry = std::mem::take(&mut typed);
                        if !entry.trim().is_empty() {
                            let _ = editor.add_history_entry(entry.trim_end());
                            // Saved as it is typed, so a session that dies keeps its history.
                            if let Some(path) = &history {
                                let _ = editor.append_history(path);
                            }
                        }
                    }
                    if matches!(flow, Ok(Flow::Quit)) {
                        break;
                    }
                }
                // Ctrl-C drops the statement being typed, as in psql.
                Err(ReadlineError::Interrupted) => {
                    self.buffer.take();
                    typed.clear();
                }
                Err(ReadlineError::Eof) => break,
                Err(e) => {
                    eprintln!("eddy sql: {e}");
                    break;
                }
            }
        }
    }
}

/// Whether a statement may add or remove names tab completion offers.
fn changes_the_catalog(sql: &str) -> bool {
    sql.split(';').any(|statement| matches!(statement.split_whitespace().next().map(str::to_ascii_uppercase).as_deref(), Some("CREATE" | "DROP")))
}

/// psql's variable names: letters, digits and underscores.
fn is_variable_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_')
}

fn toggle(current: bool, setting: Option<&str>) -> bool {
    match setting {
        Some("on") => true,
        Some("off") => false,
        _ => !current,
    }
}

fn now() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    format!("{}", eddy_engine::EventTime(now))
}
