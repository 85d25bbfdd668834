//! SQL conformance: runs every `tests/slt/**/*.slt` file with sqllogictest.
//!
//! Each file gets a fresh in-process session. `CREATE TABLE`, `CREATE VIEW` and
//! `SET` are statements; `INSERT INTO` runs its pipeline to the end of its bounded
//! sources and reports the rows written; a `SELECT` runs as a continuous query over
//! the bounded tables and returns every row it emitted (for a changelog, the rows
//! it holds once its changes are applied). Files may use
//! `control substitution on` and `$OUT` for a fresh per-file temporary directory.
//!
//! Run one file: `cargo test --test slt -- window/tumble`.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use eddy::session::answer_without_tables;
use eddy::{EddyError, Session};
use eddy_engine::changelog::RowKind;
use eddy_engine::metrics::PipelineGroup;
use eddy_engine::runtime::CollectSink;
use eddy_sql::Statement;
use sqllogictest::{DBOutput, DefaultColumnType};

struct EddyDb {
    session: Session,
}

/// The rows of `batches` as sqllogictest compares them: NULL as `NULL`, an empty
/// string as `(empty)` (an empty line would end the record), timestamps to the millisecond.
fn rows(schema: &Schema, batches: &[RecordBatch]) -> Result<DBOutput<DefaultColumnType>, EddyError> {
    let types = schema.fields().iter().map(|f| column_type(f.data_type())).collect();
    let options = FormatOptions::default().with_null("NULL").with_timestamp_format(Some("%Y-%m-%d %H:%M:%S%.3f"));
    let mut rows = Vec::new();
    for batch in batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| EddyError::Io { context: "formatting results".into(), source: std::io::Error::other(e) })?;
        for row in 0..batch.num_rows() {
            rows.push(
                formatters
                    .iter()
                    .map(|f| match f.value(row).to_string() {
                        empty if empty.is_empty() => "(empty)".to_string(),
                        value => value,
                    })
                    .collect(),
            );
        }
    }
    Ok(DBOutput::Rows { types, rows })
}

/// The rows a changelog holds once applied in order: `+I`/`+U` add a row, `-U`/`-D` take an equal one back.
fn final_rows(changes: impl IntoIterator<Item = (RowKind, Vec<String>)>) -> Vec<Vec<String>> {
    let mut held: Vec<Vec<String>> = Vec::new();
    for (kind, row) in changes {
        if kind.is_retraction() {
            match held.iter().position(|r| *r == row) {
                Some(i) => drop(held.swap_remove(i)),
                None => held.push(std::iter::once(format!("takes back a row it does not hold: {}", kind.short_string())).chain(row).collect()),
            }
        } else {
            held.push(row);
        }
    }
    held
}

fn column_type(data_type: &DataType) -> DefaultColumnType {
    match data_type {
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 | DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => {
            DefaultColumnType::Integer
        }
        DataType::Float16 | DataType::Float32 | DataType::Float64 | DataType::Decimal128(_, _) => DefaultColumnType::FloatingPoint,
        _ => DefaultColumnType::Text,
    }
}

#[async_trait]
impl sqllogictest::AsyncDB for EddyDb {
    type Error = EddyError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, EddyError> {
        // A SELECT that reads no table (`SELECT DATE_FORMAT(...)`) is answered at
        // once, as the client shows it; its rows are the answer.
        if let [parsed] = eddy_sql::parse_script(sql)?.as_slice() {
            if let Statement::Select { query } = &parsed.statement {
                if eddy_sql::referenced_tables(query).is_empty() {
                    let batch = answer_without_tables(query, parsed.location).await.map_err(|e| e.pointing_into(parsed))?;
                    return rows(&batch.schema(), &[batch]);
                }
            }
        }
        let pipelines = self.session.execute_script(sql).await?;
        let Some(spec) = pipelines.first() else { return Ok(DBOutput::StatementComplete(0)) };
        let (_stop_tx, stop) = tokio::sync::watch::channel(false);
        let metrics = PipelineGroup::new(pipelines.iter().map(|p| p.name.as_str()));
        // A changelog (a join or rank that takes rows back) shows the rows it holds at the end.
        let changelog = spec.plan.emits_retractions();
        let collect = if changelog { CollectSink::changelog() } else { CollectSink::default() };
        let summary = self.session.run(&pipelines, &metrics, stop, &mut |_| Box::new(collect.clone())).await?;
        if spec.sink.is_some() {
            return Ok(DBOutput::StatementComplete(summary.metrics.rows_out));
        }
        let output = rows(&spec.plan.schema(), &collect.batches())?;
        if !changelog {
            return Ok(output);
        }
        let DBOutput::Rows { types, rows: lines } = output else { return Ok(output) };
        let kinds = collect.changes().iter().flat_map(|c| (0..c.num_rows()).map(|i| c.kind(i)).collect::<Vec<_>>()).collect::<Vec<_>>();
        Ok(DBOutput::Rows { types, rows: final_rows(kinds.into_iter().zip(lines)) })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "eddy"
    }

    async fn sleep(duration: std::time::Duration) {
        tokio::time::sleep(duration).await;
    }
}

fn slt_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            slt_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "slt") {
            out.push(path);
        }
    }
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let mut files = Vec::new();
    slt_files(&root, &mut files);
    files.retain(|f| filters.is_empty() || filters.iter().any(|x| f.to_string_lossy().contains(x.as_str())));
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let (mut passed, mut failed) = (0usize, 0usize);
    for file in &files {
        let name = file.strip_prefix(&root).unwrap_or(file).display().to_string();
        let result = runtime.block_on(async {
            // A fresh directory per file, so sinks never see output of an earlier run.
            let dir = tempfile::tempdir().expect("temp dir");
            let mut runner = sqllogictest::Runner::new(|| async { Ok(EddyDb { session: Session::new() }) });
            runner.set_var("OUT".to_string(), dir.path().display().to_string());
            runner.run_file_async(file).await
        });
        match result {
            Ok(()) => {
                println!("test slt::{name} ... ok");
                passed += 1;
            }
            Err(e) => {
                println!("test slt::{name} ... FAILED\n{e}\n");
                failed += 1;
            }
        }
    }
    println!("\nslt: {passed} passed, {failed} failed");
    if failed > 0 || files.is_empty() {
        std::process::exit(1);
    }
}
