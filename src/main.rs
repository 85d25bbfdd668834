//! The `eddy` command line: `eddy run FILE.sql`, `eddy demo`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use eddy::{EddyError, Session};
use eddy_engine::PipelineMetrics;

/// Eddy: continuous SQL over streams (Flink SQL dialect), compiled to incremental Arrow operators.
#[derive(Parser)]
#[command(name = "eddy", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a file of SQL statements in-process until bounded sources end (or Ctrl-C).
    ///
    /// CREATE TABLE declares sources and sinks; each INSERT INTO starts a pipeline and
    /// all pipelines run together; a bare SELECT prints its rows. At the end Eddy prints
    /// one summary line: rows in, rows out, late rows dropped, malformed records, wall time.
    Run {
        /// The SQL script.
        file: PathBuf,
        /// Tasks per keyed operator (default: `SET 'parallelism'`, else the number of cores).
        #[arg(long)]
        parallelism: Option<usize>,
        /// Seconds between progress lines on stderr (0 turns them off).
        #[arg(long, default_value_t = 5)]
        progress_secs: u64,
        /// Save checkpoints (source positions, operator state) here, and resume from
        /// the last one when run again with the same script and directory
        /// (as `SET 'state.checkpoints.dir'`).
        #[arg(long)]
        checkpoint_dir: Option<PathBuf>,
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
    // EDDY_LOG=info|debug|trace shows more of what the engine does; warnings are always shown.
    let level = std::env::var("EDDY_LOG").ok().and_then(|l| l.parse().ok()).unwrap_or(tracing::Level::WARN);
    tracing_subscriber::fmt().with_max_level(level).with_writer(std::io::stderr).init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("eddy: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("eddy: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), EddyError> {
    match cli.command {
        Command::Run { file, parallelism, progress_secs, checkpoint_dir } => {
            let sql = std::fs::read_to_string(&file)
                .map_err(|source| EddyError::Io { context: format!("cannot read {}", file.display()), source })?;
            let mut session = Session::new();
            let pipelines = session.execute_script(&sql).await?;
            if let Some(p) = parallelism {
                session.set("parallelism", &p.to_string())?;
            }
            if let Some(dir) = checkpoint_dir {
                session.set("state.checkpoints.dir", &dir.to_string_lossy())?;
            }
            if pipelines.is_empty() {
                eprintln!("eddy: {} has no INSERT INTO or SELECT statement: nothing to run", file.display());
                return Ok(());
            }
            let metrics = Arc::new(PipelineMetrics::default());
            let progress = eddy::console::spawn_progress(Arc::clone(&metrics), progress_secs, None);
            let stop = eddy::console::stop_on_ctrl_c(None);
            let summary = session
                .run(&pipelines, Arc::clone(&metrics), stop, &mut |spec| eddy::console::print_sink(&spec.plan.schema()))
                .await;
            progress.abort();
            let summary = summary?;
            eprintln!("eddy: {summary}");
            Ok(())
        }
        Command::Demo { duration, out, rate, parallelism, show_sql } => {
            eddy::demo::run(eddy::demo::DemoOptions { duration, out, rate, parallelism, show_sql }).await
        }
    }
}
