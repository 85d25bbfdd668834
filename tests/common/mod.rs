//! Helpers the end-to-end tests share.
#![allow(dead_code)] // each test binary uses a subset of these helpers

use std::path::Path;
use std::process::Command;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// The real `eddy` binary, run from the repository root.
pub fn eddy() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_eddy"));
    command.current_dir(env!("CARGO_MANIFEST_DIR"));
    command
}

/// Every row of every visible Parquet file under `dir`; fails if an in-progress file is visible.
pub fn read_parquet_dir(dir: &Path) -> Vec<RecordBatch> {
    let mut batches = Vec::new();
    for entry in std::fs::read_dir(dir).expect("output dir exists") {
        let path = entry.expect("dir entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        assert!(!name.ends_with(".inprogress"), "in-progress file left visible: {name}");
        if name.starts_with('.') || !name.ends_with(".parquet") {
            continue;
        }
        let file = std::fs::File::open(&path).expect("open parquet");
        let reader = ParquetRecordBatchReaderBuilder::try_new(file).expect("parquet").build().expect("reader");
        batches.extend(reader.map(|b| b.expect("batch")));
    }
    batches
}

/// A running `eddy` that is killed when this goes out of scope, so a failing test
/// leaves no pipeline behind.
pub struct Running(pub std::process::Child);

impl Running {
    /// Starts `command`.
    pub fn start(command: &mut Command) -> Self {
        Running(command.spawn().expect("start eddy"))
    }

    /// Kills it now, as SIGKILL does: no chance to flush or commit.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The newest complete checkpoint id under `dir` (0 when there is none).
pub fn newest_checkpoint(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .map(|p| match p.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_prefix("chk-")) {
            Some(id) if p.join("_COMPLETE").exists() => id.parse().unwrap_or(0),
            _ if p.is_dir() => newest_checkpoint(&p),
            _ => 0,
        })
        .max()
        .unwrap_or(0)
}

/// Every `id` in the visible JSON part files under `dir`, sorted (duplicates kept).
pub fn committed_ids(dir: &std::path::Path) -> Vec<i64> {
    let mut ids = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return ids };
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        for line in std::fs::read_to_string(entry.path()).expect("part file").lines() {
            let row: serde_json::Value = serde_json::from_str(line).expect("whole JSON rows only");
            ids.push(row["id"].as_i64().expect("id"));
        }
    }
    ids.sort_unstable();
    ids
}
