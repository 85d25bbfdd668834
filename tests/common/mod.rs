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
