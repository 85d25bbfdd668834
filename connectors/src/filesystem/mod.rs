//! `'connector' = 'filesystem'`: JSON lines, CSV and Parquet files on the local
//! disk or in an S3 bucket, as a source and as a sink.
//!
//! As a source, `'path'` is a file, a directory (every visible file below it,
//! recursively, in sorted order) or a glob. Each file is one partition read in
//! order, or, when it is large next to the pipeline's parallelism, several: blocks
//! of byte ranges of JSON and CSV files, or row groups of Parquet files, dealt out
//! in turn (see [`split`]). Names starting with `.` or `_` are hidden and skipped, which is how
//! the sink keeps files that are still being written out of sight. An
//! `s3://bucket/prefix` source reads a local mirror of the objects ([`mirror`]).
//!
//! As a sink, `'path'` is a directory or `s3://bucket/prefix`; see [`sink::FileSink`].

mod lookup;
mod mirror;
mod parquet;
mod partition;
pub(crate) mod records;
pub mod sink;
mod split;
pub mod store;
pub(crate) mod text;
mod values;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use eddy_engine::table::TableDef;
use eddy_engine::{
    Boundedness, BoxError, Capabilities, Connector, ConnectorInfo, MetadataColumns, OptionSpec, Resume, Roles, Sink, SinkChanges, Source, SourcePosition,
    SourceReader, TableUse,
};

use crate::error::ConnectorError;
use crate::options::{batch_rows, opt, parse_bool, parse_duration, parse_size};

pub use sink::FileSink;

/// Default for `'sink.rolling-policy.file-size'`.
pub const DEFAULT_ROLLING_FILE_SIZE: u64 = 128 << 20;

/// A file format of the filesystem connector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// One JSON object per line.
    Json,
    /// Comma (or other delimiter) separated values.
    Csv,
    /// Apache Parquet.
    Parquet,
}

impl FileFormat {
    /// The file extension written by the sink.
    pub fn extension(self) -> &'static str {
        match self {
            FileFormat::Json => "json",
            FileFormat::Csv => "csv",
            FileFormat::Parquet => "parquet",
        }
    }
}

/// The filesystem connector's options, parsed and checked.
#[derive(Debug, Clone)]
pub struct FsOptions {
    /// `'path'`, with any `file://` prefix removed.
    pub path: String,
    /// `'format'`.
    pub format: FileFormat,
    /// `'csv.field-delimiter'` (default `,`).
    pub delimiter: u8,
    /// `'csv.header'` (default false): skip the first line when reading, write a header line.
    pub header: bool,
    /// `'scan.batch-rows'`.
    pub batch_rows: usize,
    /// `'scan.split.block-size'` in bytes: larger files are split between tasks in blocks of this size.
    pub block_size: u64,
    /// `'sink.rolling-policy.file-size'` in bytes.
    pub rolling_file_size: u64,
    /// `'sink.rolling-policy.rollover-interval'`: the longest a part file stays open.
    pub rollover_interval: Option<std::time::Duration>,
    /// `PARTITIONED BY` columns: directory names instead of file columns.
    pub partitioned_by: Vec<String>,
    /// Credentials and endpoint for `s3://` paths.
    pub s3: S3Options,
}

/// The `'s3.*'` options; unset ones fall back to the `AWS_*` environment variables.
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    /// `'s3.access-key'`.
    pub access_key: Option<String>,
    /// `'s3.secret-key'`.
    pub secret_key: Option<String>,
    /// `'s3.region'`.
    pub region: Option<String>,
    /// `'s3.endpoint'`: for S3-compatible stores (MinIO, R2, ...).
    pub endpoint: Option<String>,
    /// `'s3.allow-http'`: plain-HTTP endpoints (local MinIO).
    pub allow_http: Option<bool>,
    /// `'s3.path-style-access'`: `endpoint/bucket/key` URLs instead of `bucket.endpoint/key`.
    pub path_style: bool,
}

impl FsOptions {
    /// Parses and checks the options of `def` (no file system access).
    pub fn parse(def: &TableDef) -> Result<Self, ConnectorError> {
        let path = def.option("path").ok_or_else(|| ConnectorError::MissingOption {
            option: "path".into(),
            connector: "filesystem".into(),
            doc: "a file, directory or glob, e.g. 'path' = 'data/events.json'".into(),
        })?;
        let path = parse_path(path)?;
        let format = match def.option("format") {
            None => {
                return Err(ConnectorError::MissingOption {
                    option: "format".into(),
                    connector: "filesystem".into(),
                    doc: "one of 'json', 'csv', 'parquet'".into(),
                })
            }
            Some(f) => match f.trim().to_ascii_lowercase().as_str() {
                "json" => FileFormat::Json,
                "csv" => FileFormat::Csv,
                "parquet" => FileFormat::Parquet,
                _ => return Err(ConnectorError::invalid("format", f, "expected one of 'json', 'csv', 'parquet'")),
            },
        };
        let delimiter = match def.option("csv.field-delimiter") {
            None => b',',
            Some(d) => parse_delimiter(d)?,
        };
        Ok(FsOptions {
            path,
            format,
            delimiter,
            header: opt(def, "csv.header", parse_bool)?.unwrap_or(false),
            batch_rows: batch_rows(def)?,
            block_size: opt(def, "scan.split.block-size", parse_size)?.unwrap_or(split::DEFAULT_BLOCK_SIZE),
            rolling_file_size: opt(def, "sink.rolling-policy.file-size", parse_size)?.unwrap_or(DEFAULT_ROLLING_FILE_SIZE),
            rollover_interval: opt(def, "sink.rolling-policy.rollover-interval", parse_duration)?,
            partitioned_by: def.partitioned_by.clone(),
            s3: S3Options {
                access_key: def.option("s3.access-key").map(str::to_string),
                secret_key: def.option("s3.secret-key").map(str::to_string),
                region: def.option("s3.region").map(str::to_string),
                endpoint: def.option("s3.endpoint").map(str::to_string),
                allow_http: opt(def, "s3.allow-http", parse_bool)?,
                path_style: opt(def, "s3.path-style-access", parse_bool)?.unwrap_or(false),
            },
        })
    }
}

/// One ASCII character, or `\t` spelled out.
fn parse_delimiter(d: &str) -> Result<u8, ConnectorError> {
    let bytes = match d {
        "\\t" => b"\t".as_slice(),
        _ => d.as_bytes(),
    };
    match bytes {
        [b] if b.is_ascii() && *b != b'\n' && *b != b'\r' && *b != b'"' => Ok(*b),
        _ => Err(ConnectorError::invalid("csv.field-delimiter", d, "expected a single ASCII character other than a quote or newline, e.g. ',' or '\\t'")),
    }
}

/// Strips `file://`; keeps `s3://`; rejects other URL schemes.
fn parse_path(path: &str) -> Result<String, ConnectorError> {
    if let Some(rest) = path.strip_prefix("file://") {
        return Ok(rest.to_string());
    }
    match store::scheme(path) {
        Some("s3") | None => {}
        Some(scheme) => {
            return Err(ConnectorError::UnsupportedPath {
                path: path.to_string(),
                reason: format!("{scheme}:// paths are not supported; use a local path or s3://bucket/prefix"),
            });
        }
    }
    if path.trim().is_empty() {
        return Err(ConnectorError::invalid("path", path, "the path is empty"));
    }
    Ok(path.to_string())
}

/// Names starting with `.` or `_` are hidden (in-progress sink files, `_SUCCESS` markers).
fn is_hidden(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.') || n.starts_with('_'))
}

/// The files `path` names, sorted: a file, every visible file under a directory, or a glob's matches.
pub fn list_files(path: &str) -> Result<Vec<PathBuf>, ConnectorError> {
    if path.contains(['*', '?', '[']) {
        let entries = glob::glob(path).map_err(|e| ConnectorError::invalid("path", path, format!("not a valid glob pattern: {e}")))?;
        let mut files = Vec::new();
        for entry in entries {
            let p = entry.map_err(|e| {
                let p = e.path().to_path_buf();
                ConnectorError::io("read", p, e.into())
            })?;
            if p.is_file() && !is_hidden(&p) {
                files.push(p);
            }
        }
        files.sort();
        if files.is_empty() {
            return Err(ConnectorError::NoFiles(path.to_string()));
        }
        return Ok(files);
    }
    let p = Path::new(path);
    let meta = match std::fs::metadata(p) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ConnectorError::PathNotFound(path.to_string())),
        Err(e) => return Err(ConnectorError::io("read", p, e)),
    };
    if !meta.is_dir() {
        return Ok(vec![p.to_path_buf()]);
    }
    let mut files = Vec::new();
    walk(p, &mut files)?;
    files.sort();
    if files.is_empty() {
        return Err(ConnectorError::EmptyDirectory(path.to_string()));
    }
    Ok(files)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ConnectorError> {
    let entries = std::fs::read_dir(dir).map_err(|e| ConnectorError::io("list", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| ConnectorError::io("list", dir, e))?;
        let p = entry.path();
        if is_hidden(&p) {
            continue;
        }
        let meta = std::fs::metadata(&p).map_err(|e| ConnectorError::io("read", &p, e))?;
        if meta.is_dir() {
            walk(&p, out)?;
        } else {
            out.push(p);
        }
    }
    Ok(())
}

/// A set of files read as one table; each file, or each split of a large one, is a partition.
pub struct FileSource {
    options: FsOptions,
    schema: SchemaRef,
    /// The columns the pipeline reads, when not all: JSON files decode only these.
    read: Option<Vec<usize>>,
    /// The local mirror of an `s3://` path, once copied.
    mirrored: std::sync::OnceLock<PathBuf>,
    /// Which partition directories the query can want rows from (all when `None`).
    partitions: Option<eddy_engine::PartitionFilter>,
}

impl FileSource {
    /// Checks the options and that the path names at least one file.
    pub fn try_new(def: &TableDef, schema: SchemaRef) -> Result<Self, ConnectorError> {
        let options = FsOptions::parse(def)?;
        match store::scheme(&options.path) {
            // Checked when opened: listing a bucket is a request, not for planning.
            Some(_) => {
                store::Location::open(&options)?;
            }
            None => {
                list_files(&options.path)?;
            }
        }
        Ok(FileSource { options, schema, read: None, mirrored: std::sync::OnceLock::new(), partitions: None })
    }

    /// The local path to read: `'path'` itself, or for `s3://` its mirror (see
    /// [`mirror`]), brought up to date once per source.
    fn local_path(&self) -> Result<String, ConnectorError> {
        if store::scheme(&self.options.path).is_none() {
            return Ok(self.options.path.clone());
        }
        if let Some(dir) = self.mirrored.get() {
            return Ok(dir.display().to_string());
        }
        let dir = mirror::mirror(&self.options, &|relative: &str| self.wanted(relative))?;
        Ok(self.mirrored.get_or_init(|| dir).display().to_string())
    }

    /// This source, skipping the partition directories `partitions` rules out.
    pub fn pruning(mut self, partitions: Option<&eddy_engine::PartitionFilter>) -> Self {
        self.partitions = partitions.cloned();
        self
    }

    /// Whether the file at `path` can hold rows the query wants: its directories'
    /// values of the table's partition columns pass the query's filter on them.
    fn wanted(&self, path: &str) -> bool {
        let Some(filter) = &self.partitions else { return true };
        let found = partition::values_in_path(path);
        let values: Vec<(String, Option<String>)> = self.options.partitioned_by.iter().filter_map(|c| found.get(c).map(|v| (c.clone(), v.clone()))).collect();
        filter.keeps(&values)
    }

    /// This source, decoding only the columns `read` of its schema (all when `None`) where the format allows.
    pub fn reading(mut self, read: Option<&[usize]>) -> Self {
        self.read = read.map(<[usize]>::to_vec);
        self
    }

    /// The partitions the files are read in by `parallelism` tasks: a file each,
    /// cut into splits where a file is large enough (see [`split::split_counts`]).
    fn splits(&self, parallelism: usize) -> Result<Vec<split::Split>, ConnectorError> {
        let o = &self.options;
        let files: Vec<PathBuf> = list_files(&self.local_path()?)?.into_iter().filter(|f| self.wanted(&f.to_string_lossy())).collect();
        let sizes = files.iter().map(|f| std::fs::metadata(f).map(|m| m.len()).map_err(|e| ConnectorError::io("read", f, e))).collect::<Result<Vec<_>, _>>()?;
        let counts = split::split_counts(&sizes, parallelism, o.block_size);
        let mut splits = Vec::with_capacity(files.len());
        for ((path, size), n) in files.into_iter().zip(sizes).zip(counts) {
            let extents: Vec<split::Extent> = match o.format {
                _ if n <= 1 => vec![split::Extent::Whole],
                FileFormat::Json => split::text_extents(size, n, o.block_size),
                FileFormat::Csv if split::csv_lines_are_records(&path, text::CSV_QUOTE)? => split::text_extents(size, n, o.block_size),
                FileFormat::Csv => vec![split::Extent::Whole],
                FileFormat::Parquet => split::row_group_extents(parquet::row_group_count(&path)?, n),
            };
            let extents = if extents.len() == 1 { vec![split::Extent::Whole] } else { extents };
            splits.extend(extents.into_iter().map(|extent| split::Split { path: path.clone(), extent }));
        }
        Ok(splits)
    }
}

/// The partitions a filesystem source of `def` is read in by `parallelism` tasks,
/// one line each (the file, and the part of it when split), for `EXPLAIN`.
pub fn describe_partitions(def: &TableDef, parallelism: usize, partitions: Option<&eddy_engine::PartitionFilter>) -> Result<Vec<String>, ConnectorError> {
    if store::scheme(def.option("path").unwrap_or_default()).is_some() {
        return Err(ConnectorError::UnsupportedPath {
            path: def.option("path").unwrap_or_default().to_string(),
            reason: "its objects are listed only when the pipeline starts, which copies them to a local mirror".to_string(),
        });
    }
    let source = FileSource::try_new(def, def.physical_schema())?.pruning(partitions);
    Ok(source.splits(parallelism)?.iter().map(split::Split::describe).collect())
}

impl Source for FileSource {
    fn schema(&self) -> SchemaRef {
        SchemaRef::clone(&self.schema)
    }

    fn is_bounded(&self) -> bool {
        true
    }

    fn open(&self, parallelism: usize) -> Result<Vec<Box<dyn SourceReader>>, BoxError> {
        Ok(self.open_from(self.splits(parallelism)?, &HashMap::new())?)
    }

    /// Each split resumes at its saved offset (a byte offset in a text file, a row
    /// number in a Parquet one); a split without one (a file new since) starts at
    /// its beginning. A saved position that names no split now means the files were
    /// cut differently when it was saved: resuming would read some records twice and
    /// skip others, so it is refused.
    fn open_at(&self, parallelism: usize, positions: &[SourcePosition]) -> Result<Vec<Box<dyn SourceReader>>, BoxError> {
        let splits = self.splits(parallelism)?;
        let ids: HashSet<String> = splits.iter().map(split::Split::id).collect();
        if let Some(lost) = positions.iter().find(|p| !ids.contains(&p.partition)) {
            return Err(ConnectorError::Resume {
                partition: lost.partition.clone(),
                reason: "the files are not cut into the same partitions as when the checkpoint was taken (a split file changed size, or the parallelism or 'scan.split.block-size' changed); run at the parallelism of the checkpoint, or remove the checkpoint directory to read the files again from the start".to_string(),
            }
            .into());
        }
        let offsets = positions.iter().map(|p| (p.partition.clone(), u64::try_from(p.offset).unwrap_or(0))).collect();
        Ok(self.open_from(splits, &offsets)?)
    }
}

impl FileSource {
    /// Readers of `splits`, each from its offset in `offsets` (by [`split::Split::id`]) or its start.
    fn open_from(&self, splits: Vec<split::Split>, offsets: &HashMap<String, u64>) -> Result<Vec<Box<dyn SourceReader>>, ConnectorError> {
        let o = &self.options;
        let partitioned = &o.partitioned_by;
        // Files of a partitioned table hold every column but the partition ones.
        let file_schema =
            if partitioned.is_empty() { SchemaRef::clone(&self.schema) } else { partition::WithPartitionValues::file_schema(&self.schema, partitioned) };
        // Partitioned files hold fewer columns than the table: they decode them all.
        let read = if partitioned.is_empty() { self.read.as_deref() } else { None };
        let mut readers = Vec::new();
        for split in splits {
            let label = split.path.to_string_lossy().into_owned();
            let schema = SchemaRef::clone(&file_schema);
            let from = offsets.get(&split.id()).copied().unwrap_or(0);
            let text = |format| text::TextFileReader::resuming(&split, format, SchemaRef::clone(&schema), read, o.batch_rows, from);
            let reader: Box<dyn SourceReader> = match o.format {
                FileFormat::Json => Box::new(text(text::TextFormat::Json)),
                FileFormat::Csv => Box::new(text(text::TextFormat::Csv { delimiter: o.delimiter, header: o.header })),
                FileFormat::Parquet => Box::new(parquet::ParquetFileReader::resuming(&split, schema, o.batch_rows, from)),
            };
            readers.push(if partitioned.is_empty() {
                reader
            } else {
                Box::new(partition::WithPartitionValues::try_new(reader, SchemaRef::clone(&self.schema), partitioned, &label)?)
            });
        }
        Ok(readers)
    }
}

/// `'connector' = 'filesystem'`: files are read once, in order, and written in part files
/// committed at checkpoints.
#[derive(Debug, Clone, Copy)]
pub struct FilesystemConnector;

/// The `WITH` options of `'connector' = 'filesystem'`.
const OPTIONS: &[OptionSpec] = &[
    OptionSpec::required(
        "path",
        "source: a file, a directory (all visible files below it, sorted), a glob or s3://bucket/prefix (copied to a local mirror first); sink: a directory or s3://bucket/prefix",
    ),
    OptionSpec::required("format", "json (one object per line) | csv | parquet"),
    OptionSpec::optional("csv.field-delimiter", "one character between CSV fields, '\\t' for tab (default ',')"),
    OptionSpec::optional("csv.header", "'true' when CSV files have a header line: skipped when reading, written by the sink (default 'false', as Flink)"),
    OptionSpec::optional("scan.batch-rows", "rows per batch read, at most (default 8192)"),
    OptionSpec::optional(
        "scan.split.block-size",
        "source: files larger than this are read by several tasks, in blocks of this size dealt out in turn, e.g. '16MB' (default 4MB)",
    ),
    OptionSpec::optional("sink.rolling-policy.file-size", "start a new part file after this size, e.g. '128MB' (default 128MB)"),
    OptionSpec::optional(
        "sink.rolling-policy.rollover-interval",
        "start a new part file after it has been open this long, e.g. '15 min' (default: only by size and on commit)",
    ),
    OptionSpec::optional("s3.access-key", "s3:// paths: access key id (default: AWS_ACCESS_KEY_ID)"),
    OptionSpec::optional("s3.secret-key", "s3:// paths: secret access key (default: AWS_SECRET_ACCESS_KEY)"),
    OptionSpec::optional("s3.region", "s3:// paths: region (default: AWS_REGION or us-east-1)"),
    OptionSpec::optional("s3.endpoint", "s3:// paths: endpoint of an S3-compatible store, e.g. 'http://127.0.0.1:9000' (default: AWS)"),
    OptionSpec::optional("s3.allow-http", "s3:// paths: 'true' allows a plain-HTTP endpoint"),
    OptionSpec::optional("s3.path-style-access", "s3:// paths: 'true' for path-style URLs (MinIO)"),
];

impl Connector for FilesystemConnector {
    fn info(&self) -> &'static ConnectorInfo {
        const INFO: ConnectorInfo = ConnectorInfo {
            name: "filesystem",
            description: "JSON-lines, CSV or Parquet files on the local disk or in S3",
            options: OPTIONS,
            capabilities: Capabilities {
                roles: Roles::SourceAndSink,
                changes: SinkChanges::Appends,
                resume: Resume::Always,
                metadata: MetadataColumns::Unsupported,
            },
        };
        &INFO
    }

    fn validate(&self, def: &TableDef, _table_use: TableUse) -> Result<(), BoxError> {
        FsOptions::parse(def)?;
        Ok(())
    }

    fn boundedness(&self, _def: &TableDef) -> Boundedness {
        Boundedness::Bounded
    }

    fn create_source(&self, def: &TableDef, schema: SchemaRef, read: Option<&[usize]>) -> Result<Arc<dyn Source>, BoxError> {
        Ok(Arc::new(FileSource::try_new(def, schema)?.reading(read)))
    }

    fn create_pruned_source(
        &self,
        def: &TableDef,
        schema: SchemaRef,
        read: Option<&[usize]>,
        partitions: &eddy_engine::PartitionFilter,
    ) -> Result<Arc<dyn Source>, BoxError> {
        Ok(Arc::new(FileSource::try_new(def, schema)?.reading(read).pruning(Some(partitions))))
    }

    fn create_sink(&self, def: &TableDef, schema: SchemaRef) -> Result<Box<dyn Sink>, BoxError> {
        Ok(create_sink(def, schema)?)
    }

    fn lookups(&self) -> eddy_engine::lookup::Lookups {
        eddy_engine::lookup::Lookups::Supported
    }

    fn create_lookup(&self, def: &TableDef, schema: SchemaRef, keys: &[usize]) -> Result<Box<dyn eddy_engine::lookup::Lookup>, BoxError> {
        Ok(Box::new(lookup::FileLookup::try_new(def, schema, keys)?))
    }
}

/// The filesystem source for `def`.
pub fn create_source(def: &TableDef, schema: SchemaRef) -> Result<Arc<dyn Source>, ConnectorError> {
    Ok(Arc::new(FileSource::try_new(def, schema)?))
}

/// The filesystem sink for `def`.
pub fn create_sink(def: &TableDef, schema: SchemaRef) -> Result<Box<dyn Sink>, ConnectorError> {
    let options = FsOptions::parse(def)?;
    Ok(Box::new(FileSink::try_new(options, schema)?))
}

#[cfg(test)]
mod tests;
