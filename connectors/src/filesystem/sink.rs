//! The filesystem sink: part files that appear atomically on commit, on a local
//! disk or in an S3 bucket (through `object_store`).
//!
//! Rows go to a hidden `.part-{unique}-{n}.{ext}.inprogress` file. A file is
//! closed when it grows past `'sink.rolling-policy.file-size'`, when it has been
//! open for `'sink.rolling-policy.rollover-interval'`, or at the latest on
//! [`Sink::commit`]; the commit then renames every closed file to
//! `part-{unique}-{n}.{ext}`, so a reader never sees a partial file and a crash
//! before a commit leaves only hidden files behind. The engine commits on
//! checkpoint barriers and at the end of a bounded run, which is what will make
//! this sink transactional with checkpoints. `{unique}` combines the start time,
//! the process id and a random number, so runs never overwrite each other.
//!
//! A table `PARTITIONED BY (dt, hour)` writes each row under its Hive-style
//! directory, `dt=2024-01-01/hour=3/part-...`, without those columns in the file
//! (the source puts them back from the directory names).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::parquet::arrow::AsyncArrowWriter;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::WriterProperties;
use eddy_engine::{BoxError, ChangeBatch, Sink};
use object_store::buffered::BufWriter;
use object_store::path::{Path, PathPart};
use object_store::ObjectStoreExt;
use rand::Rng;
use tokio::io::AsyncWriteExt;

use super::partition::{row_directories, WithPartitionValues};
use super::store::Location;
use super::{FileFormat, FsOptions};
use crate::error::ConnectorError;
use crate::format::common_timestamp_format;

/// Upload buffer of a text part file: bytes beyond it go out as multipart parts.
const TEXT_BUFFER: usize = 8 << 20;

/// Writes a table's rows into part files under a directory; see the module docs.
pub struct FileSink {
    location: Location,
    options: FsOptions,
    /// The rows' schema (every column).
    schema: SchemaRef,
    /// The files' schema: without the partition columns.
    file_schema: SchemaRef,
    /// Indices of the partition columns in `schema`, in `PARTITIONED BY` order.
    partition_columns: Vec<usize>,
    /// Indices of the file columns in `schema`.
    file_columns: Vec<usize>,
    unique: String,
    next_index: u64,
    text: TextEncoding,
    /// Open part files by partition directory ("" when not partitioned).
    open: HashMap<String, OpenFile>,
    /// Closed files waiting for the next commit to become visible: (hidden, final).
    pending: Vec<(Path, Path)>,
    /// Files closed at checkpoint barriers (two-phase commit), by checkpoint,
    /// waiting for the checkpoint to be saved.
    prepared: std::collections::BTreeMap<u64, Vec<(Path, Path)>>,
}

/// How rows become text (JSON lines, CSV), apart from the sink so that
/// appending borrows only this while it awaits the upload.
struct TextEncoding {
    format: FileFormat,
    header: bool,
    delimiter: u8,
    timestamp_format: String,
    /// The sink's location, for messages.
    location: String,
}

struct OpenFile {
    tmp: Path,
    target: Path,
    writer: FileWriter,
    opened: Instant,
}

enum FileWriter {
    Text { out: Box<BufWriter>, bytes: u64, wrote_header: bool, scratch: Vec<u8> },
    Parquet(Box<AsyncArrowWriter<BufWriter>>),
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
    /// Opens the store (creating a local directory if missing); no file is
    /// created before the first row.
    pub fn try_new(options: FsOptions, schema: SchemaRef) -> Result<Self, ConnectorError> {
        let location = Location::open(&options)?;
        let mut partition_columns = Vec::new();
        for name in &options.partitioned_by {
            let index = schema.index_of(name).map_err(|_| ConnectorError::invalid("PARTITIONED BY", name, "the sink's rows have no such column"))?;
            partition_columns.push(index);
        }
        let file_columns = (0..schema.fields().len()).filter(|i| !partition_columns.contains(i)).collect();
        let millis = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
        let unique = format!("{millis}-{}-{:08x}", std::process::id(), rand::thread_rng().gen::<u32>());
        Ok(FileSink {
            file_schema: WithPartitionValues::file_schema(&schema, &options.partitioned_by),
            text: TextEncoding {
                format: options.format,
                header: options.header,
                delimiter: options.delimiter,
                timestamp_format: common_timestamp_format(&schema),
                location: location.display.clone(),
            },
            location,
            options,
            schema,
            partition_columns,
            file_columns,
            unique,
            next_index: 0,
            open: HashMap::new(),
            pending: Vec::new(),
            prepared: Default::default(),
        })
    }

    /// Where the part files go, as the user wrote it.
    pub fn location(&self) -> &str {
        &self.location.display
    }

    fn open_file(&mut self, directory: &str) -> Result<OpenFile, ConnectorError> {
        let ext = self.options.format.extension();
        let name = format!("part-{}-{}.{ext}", self.unique, self.next_index);
        self.next_index += 1;
        let mut dir = self.location.root.clone();
        for part in directory.split('/').filter(|p| !p.is_empty()) {
            // Already escaped (Hive style): taken as is, not percent-encoded again.
            let part = PathPart::parse(part).map_err(|e| ConnectorError::invalid("PARTITIONED BY", directory, format!("not a valid directory name: {e}")))?;
            dir = dir.clone().join(part);
        }
        let tmp = dir.clone().join(format!(".{name}.inprogress"));
        let target = dir.join(name);
        let store = Arc::clone(&self.location.store);
        let writer = match self.options.format {
            FileFormat::Json | FileFormat::Csv => FileWriter::Text {
                out: Box::new(BufWriter::with_capacity(store, tmp.clone(), TEXT_BUFFER)),
                bytes: 0,
                wrote_header: false,
                scratch: Vec::new(),
            },
            FileFormat::Parquet => {
                let props = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
                let w = AsyncArrowWriter::try_new(BufWriter::new(store, tmp.clone()), SchemaRef::clone(&self.file_schema), Some(props))
                    .map_err(|e| ConnectorError::parquet(format!("cannot write '{tmp}' in {}", self.location.display), e))?;
                FileWriter::Parquet(Box::new(w))
            }
        };
        Ok(OpenFile { tmp, target, writer, opened: Instant::now() })
    }

    async fn write_batch(&mut self, batch: &RecordBatch) -> Result<(), ConnectorError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        // Present the rows under the sink's own schema (names, nullability).
        let batch = RecordBatch::try_new(SchemaRef::clone(&self.schema), batch.columns().to_vec())
            .map_err(|e| ConnectorError::arrow(format!("rows do not match the sink table's columns ({})", self.location.display), e))?;
        if self.partition_columns.is_empty() {
            return self.write_to("", batch).await;
        }
        let names: Vec<&str> = self.partition_columns.iter().map(|&i| self.schema.field(i).name().as_str()).collect();
        let keys: Vec<ArrayRef> = self.partition_columns.iter().map(|&i| Arc::clone(batch.column(i))).collect();
        let directories = row_directories(&names, &keys)?;
        let data = batch.project(&self.file_columns).map_err(|e| ConnectorError::arrow("leaving out the partition columns", e))?;
        // Most batches of a time-partitioned table fall in one directory.
        if directories.iter().all(|d| *d == directories[0]) {
            return self.write_to(&directories[0], data).await;
        }
        let mut rows_by_directory: HashMap<&str, Vec<u32>> = HashMap::new();
        for (row, dir) in directories.iter().enumerate() {
            rows_by_directory.entry(dir).or_default().push(row as u32);
        }
        let mut groups: Vec<_> = rows_by_directory.into_iter().collect();
        groups.sort();
        for (dir, rows) in groups {
            let part = take_record_batch(&data, &UInt32Array::from(rows)).map_err(|e| ConnectorError::arrow("splitting rows by partition", e))?;
            self.write_to(dir, part).await?;
        }
        Ok(())
    }

    /// Appends `batch` (file columns only) to the open file of `directory`.
    async fn write_to(&mut self, directory: &str, batch: RecordBatch) -> Result<(), ConnectorError> {
        let mut file = match self.open.remove(directory) {
            Some(f) => f,
            None => self.open_file(directory)?,
        };
        let result = Self::append(&mut file, &batch, &self.text).await;
        let roll = file.writer.size() >= self.options.rolling_file_size || self.options.rollover_interval.is_some_and(|i| file.opened.elapsed() >= i);
        match result {
            Ok(()) if roll => self.close(file).await,
            Ok(()) => {
                self.open.insert(directory.to_string(), file);
                Ok(())
            }
            Err(e) => {
                self.open.insert(directory.to_string(), file);
                Err(e)
            }
        }
    }

    async fn append(file: &mut OpenFile, batch: &RecordBatch, text: &TextEncoding) -> Result<(), ConnectorError> {
        let ctx = || format!("cannot write '{}' in {}", file.tmp, text.location);
        match &mut file.writer {
            FileWriter::Text { out, bytes, wrote_header, scratch } => {
                scratch.clear();
                if text.format == FileFormat::Json {
                    let mut w = datafusion::arrow::json::WriterBuilder::new()
                        .with_timestamp_format(text.timestamp_format.clone())
                        .with_timestamp_tz_format(text.timestamp_format.clone())
                        .build::<_, datafusion::arrow::json::writer::LineDelimited>(&mut *scratch);
                    w.write(batch).map_err(|e| ConnectorError::arrow(ctx(), e))?;
                    w.finish().map_err(|e| ConnectorError::arrow(ctx(), e))?;
                } else {
                    let mut w = datafusion::arrow::csv::WriterBuilder::new()
                        .with_header(text.header && !*wrote_header)
                        .with_delimiter(text.delimiter)
                        .with_timestamp_format(text.timestamp_format.clone())
                        .with_timestamp_tz_format(text.timestamp_format.clone())
                        .build(&mut *scratch);
                    w.write(batch).map_err(|e| ConnectorError::arrow(ctx(), e))?;
                    *wrote_header = true;
                }
                out.write_all(scratch).await.map_err(|e| ConnectorError::io("write", format!("{} in {}", file.tmp, text.location), e))?;
                *bytes += scratch.len() as u64;
                if scratch.capacity() > 16 << 20 {
                    *scratch = Vec::new();
                }
            }
            FileWriter::Parquet(w) => {
                w.write(batch).await.map_err(|e| ConnectorError::parquet(ctx(), e))?;
            }
        }
        Ok(())
    }

    /// Finishes (uploads) `file`; it waits hidden for the next commit.
    async fn close(&mut self, file: OpenFile) -> Result<(), ConnectorError> {
        let ctx = || format!("cannot finish '{}' in {}", file.tmp, self.location.display);
        match file.writer {
            FileWriter::Text { mut out, .. } => {
                out.shutdown().await.map_err(|e| ConnectorError::io("finish", format!("{} in {}", file.tmp, self.location.display), e))?;
            }
            FileWriter::Parquet(w) => {
                w.close().await.map_err(|e| ConnectorError::parquet(ctx(), e))?;
            }
        }
        self.pending.push((file.tmp, file.target));
        Ok(())
    }

    async fn close_all(&mut self) -> Result<(), ConnectorError> {
        let mut open: Vec<(String, OpenFile)> = self.open.drain().collect();
        open.sort_by(|a, b| a.0.cmp(&b.0));
        for (_, file) in open {
            self.close(file).await?;
        }
        Ok(())
    }

    /// Renames closed files into place, oldest first; what is left on failure stays pending.
    async fn publish(&mut self) -> Result<(), ConnectorError> {
        while let Some((tmp, target)) = self.pending.first().cloned() {
            self.location
                .store
                .rename(&tmp, &target)
                .await
                .map_err(|e| ConnectorError::io("publish", format!("{target} in {}", self.location.display), std::io::Error::other(e)))?;
            self.pending.remove(0);
        }
        Ok(())
    }

    async fn commit_files(&mut self) -> Result<(), ConnectorError> {
        self.close_all().await?;
        let prepared: Vec<_> = std::mem::take(&mut self.prepared).into_values().flatten().collect();
        self.pending.splice(0..0, prepared);
        self.publish().await
    }
}

/// A prepared commit as saved in a checkpoint: `[[hidden, final], ...]` as JSON.
fn encode_files(files: &[(Path, Path)]) -> Vec<u8> {
    let list: Vec<[&str; 2]> = files.iter().map(|(tmp, target)| [tmp.as_ref(), target.as_ref()]).collect();
    serde_json::to_vec(&list).unwrap_or_default()
}

#[async_trait]
impl Sink for FileSink {
    async fn write(&mut self, changes: ChangeBatch) -> Result<(), BoxError> {
        Ok(self.write_batch(&changes.into_inserts("the filesystem sink")?).await?)
    }

    async fn commit(&mut self) -> Result<(), BoxError> {
        Ok(self.commit_files().await?)
    }

    /// Closes the open files; they stay hidden until the checkpoint is saved. The
    /// prepared commit lists them and the files of earlier checkpoints not saved
    /// yet, so restoring this one publishes every file it covers (the run's last
    /// commit may be prepared while a periodic checkpoint is still being saved).
    async fn prepare(&mut self, checkpoint: u64) -> Result<Vec<u8>, BoxError> {
        self.close_all().await?;
        let files = std::mem::take(&mut self.pending);
        self.prepared.insert(checkpoint, files);
        let unsaved: Vec<(Path, Path)> = self.prepared.values().flatten().cloned().collect();
        Ok(encode_files(&unsaved))
    }

    async fn commit_checkpoint(&mut self, checkpoint: u64) -> Result<(), BoxError> {
        // Everything up to `checkpoint`; the run's last commit is the highest id.
        let later = match checkpoint.checked_add(1) {
            Some(next) => self.prepared.split_off(&next),
            None => Default::default(),
        };
        let due: Vec<_> = std::mem::replace(&mut self.prepared, later).into_values().flatten().collect();
        self.pending.splice(0..0, due);
        Ok(self.publish().await?)
    }

    /// Renames the files the restored checkpoint had prepared, unless that already happened.
    async fn recover(&mut self, prepared: &[u8]) -> Result<(), BoxError> {
        let list: Vec<[String; 2]> = serde_json::from_slice(prepared)
            .map_err(|e| ConnectorError::invalid("checkpoint", &self.location.display, format!("its prepared file list is unreadable: {e}")))?;
        for [tmp, target] in list {
            let parse = |p: &str| Path::parse(p).map_err(|e| ConnectorError::invalid("checkpoint", p, e.to_string()));
            let (tmp, target) = (parse(&tmp)?, parse(&target)?);
            if self.location.store.head(&tmp).await.is_ok() {
                self.pending.push((tmp, target));
            } else if self.location.store.head(&target).await.is_err() {
                tracing::warn!("{}: '{target}' of the restored checkpoint is missing", self.location.display);
            }
        }
        Ok(self.publish().await?)
    }
}
