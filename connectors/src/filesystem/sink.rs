//! The filesystem sink: part files that appear atomically on commit.
//!
//! Rows go to a hidden `.part-{unique}-{n}.{ext}.inprogress` file in the sink
//! directory. [`Sink::commit`] closes it, syncs it and renames it to
//! `part-{unique}-{n}.{ext}`, so a reader never sees a partial file and a crash
//! before a commit leaves only hidden files behind. `{unique}` combines the start
//! time, the process id and a random number, so runs never overwrite each other.
//! When a file grows past `'sink.rolling-policy.file-size'` it is closed and the
//! next rows go to a new file; closed files stay hidden until the next commit.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::WriterProperties;
use eddy_engine::{BoxError, Sink};
use rand::Rng;

use super::{FileFormat, FsOptions};
use crate::error::ConnectorError;
use crate::format::common_timestamp_format;

/// Writes a table's rows into part files under a directory; see the module docs.
pub struct FileSink {
    dir: PathBuf,
    options: FsOptions,
    schema: SchemaRef,
    unique: String,
    next_index: u64,
    timestamp_format: String,
    current: Option<OpenFile>,
    /// Closed (rolled) files waiting for the next commit to become visible.
    pending: Vec<(PathBuf, PathBuf)>,
}

struct OpenFile {
    tmp: PathBuf,
    target: PathBuf,
    writer: FileWriter,
}

enum FileWriter {
    Text {
        out: BufWriter<File>,
        bytes: u64,
        wrote_header: bool,
        scratch: Vec<u8>,
    },
    Parquet(Box<ArrowWriter<File>>),
}

impl FileWriter {
    fn size(&self) -> u64 {
        match self {
            FileWriter::Text { bytes, .. } => *bytes,
            FileWriter::Parquet(w) => (w.bytes_written() + w.in_progress_size()) as u64,
        }
    }
}

impl FileSink {
    /// Creates the sink directory if missing; no file is created before the first row.
    pub fn try_new(options: FsOptions, schema: SchemaRef) -> Result<Self, ConnectorError> {
        let dir = PathBuf::from(&options.path);
        if dir.is_file() {
            return Err(ConnectorError::invalid(
                "path",
                &options.path,
                "a filesystem sink writes into a directory, but this is an existing file",
            ));
        }
        std::fs::create_dir_all(&dir)
            .map_err(|e| ConnectorError::io("create directory", &dir, e))?;
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let unique = format!(
            "{millis}-{}-{:08x}",
            std::process::id(),
            rand::thread_rng().gen::<u32>()
        );
        Ok(FileSink {
            dir,
            timestamp_format: common_timestamp_format(&schema),
            options,
            schema,
            unique,
            next_index: 0,
            current: None,
            pending: Vec::new(),
        })
    }

    /// The directory the part files go to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn open_file(&mut self) -> Result<OpenFile, ConnectorError> {
        let ext = self.options.format.extension();
        let name = format!("part-{}-{}.{ext}", self.unique, self.next_index);
        self.next_index += 1;
        let tmp = self.dir.join(format!(".{name}.inprogress"));
        let target = self.dir.join(name);
        let file = File::create(&tmp).map_err(|e| ConnectorError::io("create", &tmp, e))?;
        let writer = match self.options.format {
            FileFormat::Json | FileFormat::Csv => FileWriter::Text {
                out: BufWriter::with_capacity(1 << 20, file),
                bytes: 0,
                wrote_header: false,
                scratch: Vec::new(),
            },
            FileFormat::Parquet => {
                let props = WriterProperties::builder()
                    .set_compression(Compression::SNAPPY)
                    .build();
                let w = ArrowWriter::try_new(file, SchemaRef::clone(&self.schema), Some(props))
                    .map_err(|e| {
                        ConnectorError::parquet(format!("cannot write '{}'", tmp.display()), e)
                    })?;
                FileWriter::Parquet(Box::new(w))
            }
        };
        Ok(OpenFile {
            tmp,
            target,
            writer,
        })
    }

    fn write_batch(&mut self, batch: &RecordBatch) -> Result<(), ConnectorError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        // Present the rows under the sink's own schema (names, nullability).
        let batch = RecordBatch::try_new(SchemaRef::clone(&self.schema), batch.columns().to_vec())
            .map_err(|e| {
                ConnectorError::arrow(
                    format!(
                        "rows do not match the sink table's columns ({})",
                        self.dir.display()
                    ),
                    e,
                )
            })?;
        let mut file = match self.current.take() {
            Some(f) => f,
            None => self.open_file()?,
        };
        let result = self.append(&mut file, &batch);
        let roll = file.writer.size() >= self.options.rolling_file_size;
        self.current = Some(file);
        result?;
        if roll {
            self.close_current()?;
        }
        Ok(())
    }

    fn append(&self, file: &mut OpenFile, batch: &RecordBatch) -> Result<(), ConnectorError> {
        let ctx = || format!("cannot write '{}'", file.tmp.display());
        match &mut file.writer {
            FileWriter::Text {
                out,
                bytes,
                wrote_header,
                scratch,
            } => {
                scratch.clear();
                if self.options.format == FileFormat::Json {
                    let mut w = datafusion::arrow::json::WriterBuilder::new()
                        .with_timestamp_format(self.timestamp_format.clone())
                        .with_timestamp_tz_format(self.timestamp_format.clone())
                        .build::<_, datafusion::arrow::json::writer::LineDelimited>(&mut *scratch);
                    w.write(batch)
                        .map_err(|e| ConnectorError::arrow(ctx(), e))?;
                    w.finish().map_err(|e| ConnectorError::arrow(ctx(), e))?;
                } else {
                    let mut w = datafusion::arrow::csv::WriterBuilder::new()
                        .with_header(self.options.header && !*wrote_header)
                        .with_delimiter(self.options.delimiter)
                        .with_timestamp_format(self.timestamp_format.clone())
                        .with_timestamp_tz_format(self.timestamp_format.clone())
                        .build(&mut *scratch);
                    w.write(batch)
                        .map_err(|e| ConnectorError::arrow(ctx(), e))?;
                    *wrote_header = true;
                }
                out.write_all(scratch)
                    .map_err(|e| ConnectorError::io("write", &file.tmp, e))?;
                *bytes += scratch.len() as u64;
                if scratch.capacity() > 16 << 20 {
                    *scratch = Vec::new();
                }
            }
            FileWriter::Parquet(w) => {
                w.write(batch)
                    .map_err(|e| ConnectorError::parquet(ctx(), e))?;
            }
        }
        Ok(())
    }

    /// Finishes and syncs the open file; it waits hidden for the next commit.
    fn close_current(&mut self) -> Result<(), ConnectorError> {
        let Some(file) = self.current.take() else {
            return Ok(());
        };
        let f = match file.writer {
            FileWriter::Text { out, .. } => out
                .into_inner()
                .map_err(|e| ConnectorError::io("write", &file.tmp, e.into_error()))?,
            FileWriter::Parquet(w) => w.into_inner().map_err(|e| {
                ConnectorError::parquet(format!("cannot finish '{}'", file.tmp.display()), e)
            })?,
        };
        f.sync_all()
            .map_err(|e| ConnectorError::io("sync", &file.tmp, e))?;
        self.pending.push((file.tmp, file.target));
        Ok(())
    }

    fn commit_files(&mut self) -> Result<(), ConnectorError> {
        self.close_current()?;
        if self.pending.is_empty() {
            return Ok(());
        }
        while let Some((tmp, target)) = self.pending.first().cloned() {
            std::fs::rename(&tmp, &target)
                .map_err(|e| ConnectorError::io("publish", &target, e))?;
            self.pending.remove(0);
        }
        // Make the renames durable too (best effort: not every platform can sync a directory).
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

#[async_trait]
impl Sink for FileSink {
    async fn write(&mut self, batch: RecordBatch) -> Result<(), BoxError> {
        Ok(self.write_batch(&batch)?)
    }

    async fn commit(&mut self) -> Result<(), BoxError> {
        Ok(self.commit_files()?)
    }
}
