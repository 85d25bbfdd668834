//! The `eddy` command line: `eddy run FILE.sql`, `eddy demo`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use eddy::{EddyError, Session};
use eddy_engine::metrics::{ExposedPipeline, PipelineGroup};

/// Eddy: continuous SQL over streams (Flink SQL dialect), compiled to incremental Arrow operators.
#[derive(Parser)]
#[command(name = "eddy", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start and matched once: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run a file of SQL statements in-process until bounded sources end (or Ctrl-C).
    ///
    /// CREATE TABLE declares sources and sinks; each INSERT INTO starts a pipeline and
    /// all pipelines run together; a bare SELECT prints its rows. At the end Eddy prints
    /// one summary line: rows in, rows out, late rows dropped, malformed records, wall time.
    /// When whatever reads stdout stops reading (`eddy run x.sql | head -3`), the run
    /// ends quietly with exit status 141, as a program that SIGPIPE ends.
    Run {
        /// The SQL script.
        file: PathBuf,
        /// Tasks per keyed operator (default: `SET 'parallelism'`, else the number of cores).
        #[arg(long)]
        parallelism: Option<usize>,
        /// Seconds between progress lines on stderr (0 turns them off). When stderr is
        /// a terminal and every source is a file, a progress bar (share of the input
        /// read, time left) takes their place.
        #[arg(long, default_value_t = 5)]
        progress_secs: u64,
        /// Save checkpoints (source positions, operator state) in this directory or
        /// s3://bucket/prefix, and resume from the last one when run again with the
        /// same script and location (as `SET 'state.checkpoints.dir'`).
        #[arg(long)]
        checkpoint_dir: Option<PathBuf>,
        /// Serve Prometheus metrics of the run's pipelines at http://ADDR/metrics
        /// while it runs: PORT (on 127.0.0.1) or HOST:PORT (port 0 picks a free one;
        /// the address is printed on stderr). With --cluster: the key groups and
        /// re-partitioners this member runs, labelled member="HOST:PID". See docs/METRICS.md.
        #[arg(long, value_name = "ADDR")]
        http: Option<String>,
        /// Share the script's pipelines with every process running it with the same
        /// NAME (on this machine or others): Kafka's consumer groups spread the source
        /// partitions and key groups over them, and move them when one joins, leaves
        /// or dies. Needs --checkpoint-dir, a location every member reads and writes;
        /// each pipeline must read one Kafka topic and aggregate by its columns. See
        /// docs/CLUSTER.md.
        #[arg(long, value_name = "NAME", requires = "checkpoint_dir")]
        cluster: Option<String>,
        /// With --cluster: the brokers of the cluster's own topics (default: those of
        /// the pipeline's source table).
        #[arg(long, value_name = "BOOTSTRAP", requires = "cluster")]
        kafka: Option<String>,
        /// With --cluster: how long a member may go unheard before the others take
        /// its share (Kafka's session.timeout.ms).
        #[arg(long, value_name = "DURATION", default_value = "45s", value_parser = humantime::parse_duration)]
        session_timeout: Duration,
        /// With --cluster: make this a static member named ID (Kafka's
        /// group.instance.id), unique in the cluster. Started again under the same ID
        /// within the session timeout, it gets its share back as it was and nothing
        /// moves; stopped, its share waits for it until the session timeout. A member
        /// whose ID another member takes stops, saying so.
        #[arg(long, value_name = "ID", requires = "cluster")]
        instance_id: Option<String>,
    },
    /// Run the long-lived engine: a gRPC API people submit continuous SQL to.
    ///
    /// Keeps its catalog (tables, views, settings, pipelines) and every pipeline's
    /// checkpoints under --data-dir; started again with the same directory it lists
    /// the same objects and resumes the pipelines that were running from their last
    /// checkpoints. Prints the address it listens on; stops cleanly on Ctrl-C or
    /// SIGTERM (pipelines commit their sinks first).
    Server {
        /// Address to serve gRPC on (port 0 picks a free port).
        #[arg(long, default_value = "127.0.0.1:50051")]
        listen: String,
        /// Where the catalog and checkpoints live.
        #[arg(long, default_value = "eddy-data")]
        data_dir: PathBuf,
        /// Keep checkpoints here instead of DATA_DIR/checkpoints: a directory or
        /// s3://bucket/prefix (credentials and endpoint from the AWS_* variables).
        /// With --cluster, a location every member reads and writes.
        #[arg(long)]
        checkpoints: Option<String>,
        /// Require `authorization: Bearer TOKEN` on every call (default: env EDDY_TOKEN, else no token).
        /// Over the Postgres protocol the token is the password.
        #[arg(long, env = "EDDY_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Serve the web console at http://ADDR/ and Prometheus metrics of every
        /// pipeline at http://ADDR/metrics: PORT (on 127.0.0.1) or HOST:PORT (port 0
        /// picks a free one; the first line printed names it). With --token, the
        /// console asks for it and /metrics needs it (Authorization: Bearer TOKEN).
        /// See docs/CONSOLE.md and docs/METRICS.md.
        #[arg(long, value_name = "ADDR")]
        http: Option<String>,
        /// Also serve the Postgres wire protocol on this address (e.g. 127.0.0.1:5432;
        /// port 0 picks a free port), for psql, Postgres drivers and tools. Off unless set.
        /// With --token, the token is the password, checked with SCRAM-SHA-256 (it is
        /// never sent). See docs/POSTGRES.md.
        #[arg(long)]
        pg: Option<String>,
        /// TLS for --pg: this PEM certificate chain (with --pg-tls-key). Clients asking
        /// for TLS (sslmode=require) get it, and SCRAM offers channel binding.
        #[arg(long, value_name = "PEM", requires_all = ["pg", "pg_tls_key"])]
        pg_tls_cert: Option<PathBuf>,
        /// The private key (PEM: PKCS#8, PKCS#1 or SEC1) of --pg-tls-cert.
        #[arg(long, value_name = "PEM", requires = "pg_tls_cert")]
        pg_tls_key: Option<PathBuf>,
        /// Also serve Arrow Flight SQL on this address (e.g. 127.0.0.1:32010; port 0
        /// picks a free port), for ADBC, pyarrow and JDBC's Flight SQL driver: results
        /// as Arrow batches. Off unless set. With --token, clients send it as
        /// `authorization: Bearer TOKEN` or as the password of a login. See docs/FLIGHT.md.
        #[arg(long)]
        flight: Option<String>,
        /// Join the cluster NAME: servers started with the same NAME, --kafka and
        /// --checkpoints share one catalog through the Kafka topic `eddy.NAME.commands`,
        /// so a table, view or pipeline created on any member exists on all. Kafka's
        /// consumer-group protocol spreads the pipelines over the members and moves
        /// those of a member that leaves or dies to the others, which resume them from
        /// their checkpoints; the others send reads of a view to the member running it.
        /// See docs/CLUSTER.md.
        #[arg(long, value_name = "NAME", requires_all = ["kafka", "checkpoints"])]
        cluster: Option<String>,
        /// The Kafka brokers that carry the cluster's command log (HOST:PORT[,...]).
        #[arg(long, value_name = "BOOTSTRAP", requires = "cluster")]
        kafka: Option<String>,
        /// The gRPC address the other members reach this one at (default: the
        /// --listen address). It names the member: keep it when starting it again.
        #[arg(long, value_name = "HOST:PORT", requires = "cluster")]
        advertise: Option<String>,
        /// How long a member may go unheard (stopped, cut off, dead) before its
        /// pipelines move to the others: Kafka's session.timeout.ms, within the
        /// broker's group.min/max.session.timeout.ms (6 s to 30 min by default).
        #[arg(long, value_name = "DURATION", default_value = "45s", value_parser = humantime::parse_duration, requires = "cluster")]
        session_timeout: Duration,
        /// Make this a static member named ID (Kafka's group.instance.id), unique in
        /// the cluster. Started again under the same ID within the session timeout, it
        /// gets its pipelines back and nothing moves; stopped, its pipelines wait for it
        /// until the session timeout.
        #[arg(long, value_name = "ID", requires = "cluster")]
        instance_id: Option<String>,
    },
    /// A psql-like client for `eddy server`.
    ///
    /// Runs -c commands and -f files (stopping at the first error, exit status 1),
    /// statements piped on stdin, or else an interactive session: line editing and
    /// history, statements end with ';', backslash commands (\? lists them).
    /// Exit status 2 means the server could not be reached.
    Sql {
        /// The server's address.
        #[arg(long, default_value = "http://127.0.0.1:50051", env = "EDDY_HOST")]
        host: String,
        /// The server's token, if it needs one.
        #[arg(long, env = "EDDY_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Run this command (statements and backslash commands); may be repeated.
        #[arg(short = 'c', long = "command", allow_hyphen_values = true)]
        commands: Vec<String>,
        /// Run the statements in this file ('-' for stdin); may be repeated.
        #[arg(short = 'f', long = "file")]
        files: Vec<PathBuf>,
        /// Print rows as CSV with a header line (as psql --csv).
        #[arg(long)]
        csv: bool,
        /// Expanded display: one line per column (as psql -x).
        #[arg(short = 'x', long)]
        expanded: bool,
        /// Print only rows: no command tags, no row-count footers.
        #[arg(short = 'q', long)]
        quiet: bool,
    },
    /// Run the built-in demo: Nexmark bids through windowed queries into Parquet, with live output.
    ///
    /// Needs no configuration and no external service. Writes Parquet under --out
    /// (./eddy-demo by default), prints window results and throughput as it runs, and
    /// stops at Ctrl-C or after --duration.
    Demo {
        /// How long to run, e.g. `30s`, `2m` (default: until Ctrl-C).
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: Option<Duration>,
        /// Where the Parquet output goes.
        #[arg(long, default_value = "eddy-demo")]
        out: PathBuf,
        /// Nexmark events per second (default: as fast as possible).
        #[arg(long)]
        rate: Option<u64>,
        /// Tasks per keyed operator (default: the number of cores).
        #[arg(long)]
        parallelism: Option<usize>,
        /// Print the SQL the demo runs and exit.
        #[arg(long)]
        show_sql: bool,
    },
}

fn main() -> ExitCode {
    eddy::allocator::tune();
    // EDDY_LOG=info|debug|trace shows more of what the engine does; warnings are always shown.
    let level = std::env::var("EDDY_LOG").ok().and_then(|l| l.parse().ok()).unwrap_or(tracing::Level::WARN);
    // Colours only for a person at a terminal: escape codes in a log file or a pipe are noise.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_max_level(level).with_ansi(colour).with_writer(std::io::stderr).init();
    let cli = Cli::parse();
    if let Command::Sql { host, token, commands, files, csv, expanded, quiet } = cli.command {
        return run_client(eddy::client::ClientOptions { host, token, commands, files, csv, expanded, quiet });
    }
    // Statements are planned on the runtime's worker threads, whose stacks are
    // sized for the deepest statement Eddy accepts (see eddy_sql::limits): a
    // long AND or UNION ALL chain must not overflow a stack and abort the process.
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().thread_stack_size(eddy_sql::limits::PLANNING_STACK_BYTES).build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("eddy: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // On a worker, not on this thread (whose stack the OS sized).
    let main = runtime.spawn(run(cli));
    match runtime.block_on(main) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        // `eddy run x.sql | head -3`: the reader has what it wanted. 141 is the
        // status a shell shows for a program that SIGPIPE ended (128 + 13).
        Ok(Err(e)) if e.is_stdout_closed() => ExitCode::from(141),
        Ok(Err(e)) => {
            eprintln!("eddy: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("eddy: internal error, please report it: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), EddyError> {
    match cli.command {
        Command::Run { file, parallelism, progress_secs, checkpoint_dir, http, cluster, kafka, session_timeout, instance_id } => {
            // A wrong --http is said before anything runs.
            if let Some(address) = &http {
                eddy::http::parse_address(address)?;
            }
            let sql = std::fs::read_to_string(&file).map_err(|source| EddyError::Io { context: format!("cannot read {}", file.display()), source })?;
            let mut session = Session::new();
            if let Some(name) = &cluster {
                session.share_in_cluster(name);
            }
            let pipelines = session.execute_script(&sql).await?;
            if let Some(p) = parallelism {
                session.set("parallelism", &p.to_string())?;
            }
            if let Some(dir) = &checkpoint_dir {
                session.set("state.checkpoints.dir", &dir.to_string_lossy())?;
            }
            if pipelines.is_empty() {
                if session.answered() == 0 {
                    eprintln!("eddy: {} has no INSERT INTO or SELECT statement: nothing to run", file.display());
                }
                return Ok(());
            }
            if let (Some(name), Some(dir)) = (cluster, checkpoint_dir) {
                let options = eddy::run_cluster::RunCluster {
                    name,
                    bootstrap: kafka,
                    checkpoints: dir.to_string_lossy().into_owned(),
                    session_timeout,
                    instance: instance_id,
                    progress_every: (progress_secs > 0).then(|| Duration::from_secs(progress_secs)),
                    http,
                };
                let stop = eddy::console::stop_on_signal(None);
                eddy::run_cluster::run(&sql, &session, &pipelines, options, stop).await?;
                eddy_engine::failpoint::reach("exiting");
                return Ok(());
            }
            for spec in &pipelines {
                for warning in spec.plan.warnings() {
                    eprintln!("eddy: warning: {} (line {}): {warning}", spec.name, spec.location.line);
                }
            }
            // Each pipeline counts into its own figures (issue 20: one shared set made the watermark jump).
            let metrics = Arc::new(PipelineGroup::new(pipelines.iter().map(|p| p.name.as_str())));
            if let Some(address) = http {
                serve_run_metrics(&address, Arc::clone(&metrics)).await?;
            }
            let progress = eddy::console::spawn_progress(Arc::clone(&metrics), progress_secs, None);
            let stop = eddy::console::stop_on_signal(None);
            let summary = session.run(&pipelines, &metrics, stop, &mut |spec| eddy::console::print_sink(&spec.plan.schema())).await;
            progress.finish().await;
            let summary = summary?;
            eprintln!("eddy: {summary}");
            // Dropping what the run opened (Kafka consumers close) still takes a moment.
            eddy_engine::failpoint::reach("exiting");
            let nothing_valid = summary.sources_with_nothing_valid();
            if nothing_valid.is_empty() {
                return Ok(());
            }
            let tables: Vec<String> = nothing_valid.iter().map(|(table, n)| format!("`{table}` ({n} malformed records)")).collect();
            Err(EddyError::NothingValid { tables: tables.join(", ") })
        }
        Command::Server {
            listen,
            data_dir,
            checkpoints,
            token,
            http,
            pg,
            pg_tls_cert,
            pg_tls_key,
            flight,
            cluster,
            kafka,
            advertise,
            session_timeout,
            instance_id,
        } => {
            let pg_tls = match (&pg_tls_cert, &pg_tls_key) {
                (Some(cert), Some(key)) => Some(eddy::server::pg::tls::Tls::load(cert, key)?),
                _ => None,
            };
            let membership = cluster.zip(kafka).map(|(name, bootstrap)| Membership { name, bootstrap, advertise, session_timeout, instance: instance_id });
            let faces = Faces { pg: pg.as_deref(), pg_tls, flight: flight.as_deref(), http: http.as_deref(), membership };
            serve(&listen, &data_dir, checkpoints.as_deref(), token, faces).await
        }
        Command::Sql { .. } => unreachable!("handled before the runtime starts"),
        Command::Demo { duration, out, rate, parallelism, show_sql } => {
            eddy::demo::run(eddy::demo::DemoOptions { duration, out, rate, parallelism, show_sql }).await
        }
    }
}

/// `eddy sql` exits as psql does: 1 when a statement failed, 2 when the server is unreachable.
fn run_client(options: eddy::client::ClientOptions) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("eddy sql: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(eddy::client::run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(eddy::client::ClientExit::StatementFailed) => ExitCode::from(1),
        Err(eddy::client::ClientExit::NoConnection) => ExitCode::from(2),
    }
}

/// `eddy run --http`: the run's pipelines' figures at `/metrics`, until the run ends.
async fn serve_run_metrics(address: &str, metrics: Arc<PipelineGroup>) -> Result<(), EddyError> {
    let listener = eddy::http::bind(address).await?;
    let bound = listener.local_addr().map_err(|source| EddyError::Io { context: "cannot read the bound HTTP address".into(), source })?;
    eprintln!("eddy: metrics at http://{bound}/metrics");
    let render = move || {
        let shown: Vec<ExposedPipeline<'_>> =
            metrics.pipelines().iter().enumerate().map(|(i, (name, m))| ExposedPipeline { name, state: metrics.state(i), restarts: 0, metrics: m }).collect();
        eddy_engine::metrics::render(&shown, eddy_engine::metrics::now_ms())
    };
    eddy::http::spawn(listener, eddy::http::Routes::metrics_only(Arc::new(render)));
    Ok(())
}

/// The server's faces beside gRPC, each off unless its address is set.
struct Faces<'a> {
    /// `--pg`: the Postgres wire protocol.
    pg: Option<&'a str>,
    /// `--pg-tls-cert`/`--pg-tls-key`: TLS for it.
    pg_tls: Option<eddy::server::pg::tls::Tls>,
    /// `--flight`: Arrow Flight SQL.
    flight: Option<&'a str>,
    /// `--http`: the web console and /metrics.
    http: Option<&'a str>,
    /// `--cluster`: the cluster it joins.
    membership: Option<Membership>,
}

/// `--cluster NAME --kafka BOOTSTRAP [--advertise HOST:PORT]`.
struct Membership {
    name: String,
    bootstrap: String,
    advertise: Option<String>,
    session_timeout: Duration,
    instance: Option<String>,
}

async fn serve(listen: &str, data_dir: &std::path::Path, checkpoints: Option<&str>, token: Option<String>, faces: Faces<'_>) -> Result<(), EddyError> {
    let Faces { pg, pg_tls, flight, http, membership } = faces;
    let address = eddy::server::service::parse_socket_address("--listen", listen, 50051)?;
    let listener = bind(address).await?;
    let pg_listener = match pg {
        Some(pg) => Some(bind(eddy::server::service::parse_socket_address("--pg", pg, 5432)?).await?),
        None => None,
    };
    let flight_listener = match flight {
        Some(flight) => Some(bind(eddy::server::service::parse_socket_address("--flight", flight, 32010)?).await?),
        None => None,
    };
    let bound = listener.local_addr().map_err(|source| EddyError::Io { context: "cannot read the bound address".into(), source })?;
    let http = match http {
        Some(address) => Some(eddy::http::bind(address).await?),
        None => None,
    };
    let (server, joined) = match membership {
        Some(Membership { name, bootstrap, advertise, session_timeout, instance }) => {
            let member = match advertise {
                Some(address) => address,
                None if bound.ip().is_unspecified() => {
                    return Err(EddyError::Unsupported(format!(
                        "--listen {bound} is no one address the other members can reach; give --advertise HOST:PORT, this member's address as they reach it"
                    )))
                }
                None => bound.to_string(),
            };
            let joined = format!(", member {member} of cluster {name}");
            let location = checkpoints.unwrap_or_default().to_string();
            let options =
                eddy::server::cluster::ClusterOptions { name, bootstrap, member, token: token.clone(), session_timeout, checkpoints: location, instance };
            (eddy::server::Server::open_in_cluster(data_dir, checkpoints, options).await?, joined)
        }
        None => (eddy::server::Server::open_with_checkpoints(data_dir, checkpoints).await?, String::new()),
    };
    let mut metrics_at = String::new();
    if let Some(http) = http {
        let at = http.local_addr().map_err(|source| EddyError::Io { context: "cannot read the bound HTTP address".into(), source })?;
        metrics_at = format!(", console at http://{at}/, metrics at http://{at}/metrics");
        eddy::http::spawn(http, eddy::http::Routes::console(Arc::clone(&server), token.as_deref()));
    }
    let pg_bound = match &pg_listener {
        Some(l) => format!(
            ", postgres on {}{}",
            l.local_addr().map_err(|source| EddyError::Io { context: "cannot read the bound address".into(), source })?,
            if pg_tls.is_some() { " with TLS" } else { "" }
        ),
        None => String::new(),
    };
    let flight_bound = match &flight_listener {
        Some(l) => format!(", flight on {}", l.local_addr().map_err(|source| EddyError::Io { context: "cannot read the bound address".into(), source })?),
        None => String::new(),
    };
    let pg_service = match pg_listener {
        Some(listener) => Some((eddy::server::pg::Service::new(Arc::clone(&server), token.clone(), pg_tls)?, listener)),
        None => None,
    };
    println!(
        "eddy server listening on {bound} (data dir {}, {} pipeline(s) restored{pg_bound}{flight_bound}{}{metrics_at}{joined})",
        data_dir.display(),
        server.pipelines().len(),
        if token.is_some() { ", token required" } else { "" }
    );
    if let Some((pg_service, pg_listener)) = pg_service {
        let mut closing = server.closing();
        let stopped = async move {
            let _ = closing.wait_for(|c| *c).await;
        };
        tokio::spawn(pg_service.serve(pg_listener, stopped));
    }
    if let Some(flight_listener) = flight_listener {
        let mut closing = server.closing();
        let stopped = async move {
            let _ = closing.wait_for(|c| *c).await;
        };
        let flight = eddy::server::flight::serve(std::sync::Arc::clone(&server), flight_listener, token.clone(), stopped);
        tokio::spawn(async move {
            if let Err(e) = flight.await {
                eprintln!("eddy server: {e}");
            }
        });
    }
    let closing = std::sync::Arc::clone(&server);
    let shutdown = async move {
        eddy::console::stop_requested().await;
        eprintln!("eddy server: stopping; pipelines commit their sinks first");
        closing.begin_shutdown();
    };
    eddy::server::service::serve(std::sync::Arc::clone(&server), listener, token, shutdown).await?;
    server.shutdown().await;
    eprintln!("eddy server: stopped");
    Ok(())
}

async fn bind(address: std::net::SocketAddr) -> Result<tokio::net::TcpListener, EddyError> {
    tokio::net::TcpListener::bind(address).await.map_err(|source| EddyError::Io { context: format!("cannot listen on {address}"), source })
}
