//! `'connector' = 'print'`: writes every row to stdout the way Flink's print
//! connector does (`+I[1, foo, 2024-01-01 00:00:00.000]`, prefixed with
//! `identifier> ` when `'print-identifier'` is set), for watching a pipeline.

use std::io::Write;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use eddy_engine::table::TableDef;
use eddy_engine::{BoxError, Capabilities, ChangeBatch, Connector, ConnectorInfo, MetadataColumns, OptionSpec, Resume, Roles, Sink, SinkChanges};

use crate::error::ConnectorError;
use crate::format::{formatters, write_row};

/// `'connector' = 'print'`: shows every change, so it takes any changelog.
#[derive(Debug, Clone, Copy)]
pub struct PrintConnector;

impl Connector for PrintConnector {
    fn info(&self) -> &'static ConnectorInfo {
        const OPTIONS: &[OptionSpec] = &[OptionSpec::optional("print-identifier", "prefix of every line, as 'identifier> '")];
        const INFO: ConnectorInfo = ConnectorInfo {
            name: "print",
            description: "prints every row to stdout like Flink: +I[1, foo, 2024-01-01 00:00:00.000]",
            options: OPTIONS,
            capabilities: Capabilities { roles: Roles::Sink, changes: SinkChanges::Retractions, resume: Resume::Never, metadata: MetadataColumns::Unsupported },
        };
        &INFO
    }

    fn create_sink(&self, def: &TableDef, _schema: SchemaRef) -> Result<Box<dyn Sink>, BoxError> {
        Ok(Box::new(PrintSink::try_new(def)?))
    }
}

/// Prints rows to stdout (or any writer, for tests).
pub struct PrintSink {
    prefix: String,
    out: Box<dyn Write + Send>,
}

impl PrintSink {
    /// A sink printing to stdout with the table's `'print-identifier'`.
    pub fn try_new(def: &TableDef) -> Result<Self, ConnectorError> {
        Ok(Self::with_writer(def.option("print-identifier"), Box::new(std::io::stdout())))
    }

    /// A sink printing to `out`.
    pub fn with_writer(identifier: Option<&str>, out: Box<dyn Write + Send>) -> Self {
        PrintSink { prefix: identifier.map(|i| format!("{i}> ")).unwrap_or_default(), out }
    }
}

/// The lines Flink would print for `batch` (every row is an insert, `+I`).
pub fn format_rows(batch: &RecordBatch, prefix: &str) -> Result<String, BoxError> {
    format_kind(batch, prefix, "+I")
}

/// The lines for rows of one row kind (`+I`, or `-D` for retractions).
fn format_kind(batch: &RecordBatch, prefix: &str, kind: &str) -> Result<String, BoxError> {
    let f = formatters(batch)?;
    let mut out = String::with_capacity(batch.num_rows() * 32);
    for row in 0..batch.num_rows() {
        out.push_str(prefix);
        out.push_str(kind);
        write_row(&mut out, &f, row)?;
        out.push('\n');
    }
    Ok(out)
}

#[async_trait]
impl Sink for PrintSink {
    /// Each row prints with its kind as Flink's short string (`+I`, `-U`, `+U`, `-D`).
    async fn write(&mut self, changes: ChangeBatch) -> Result<(), BoxError> {
        let mut text = String::new();
        for (kind, rows) in changes.runs() {
            text.push_str(&format_kind(&rows, &self.prefix, kind.short_string())?);
        }
        self.out.write_all(text.as_bytes()).map_err(closed_or_failed)
    }

    async fn commit(&mut self) -> Result<(), BoxError> {
        self.out.flush().map_err(closed_or_failed)
    }
}

/// A broken pipe means the reader of stdout went away ([`ConnectorError::StdoutClosed`],
/// which the binary turns into a quiet exit); any other write error is one.
fn closed_or_failed(error: std::io::Error) -> BoxError {
    if error.kind() == std::io::ErrorKind::BrokenPipe {
        Box::new(ConnectorError::StdoutClosed)
    } else {
        Box::new(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn prints_like_flink() {
        let batch = crate::testing::two_rows(["a", "b", "ts"], ["foo", "bar"], [1_704_067_200_000, 1_704_067_201_500]);
        let buf = Shared::default();
        let mut sink = PrintSink::with_writer(Some("out"), Box::new(buf.clone()));
        sink.write(ChangeBatch::inserts(batch.clone())).await.unwrap();
        sink.commit().await.unwrap();
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text, "out> +I[1, foo, 2024-01-01 00:00:00.000]\nout> +I[null, bar, 2024-01-01 00:00:01.500]\n");
        assert_eq!(format_rows(&batch, "").unwrap().lines().next().unwrap(), "+I[1, foo, 2024-01-01 00:00:00.000]");
    }
}
