//! `SUBSCRIBE view` over the Postgres protocol: the view's rows, then every
//! change as it is applied, as a never-ending `COPY ... TO STDOUT` in text format
//! (as Materialize's `SUBSCRIBE`), so psql prints them as they come and a
//! notebook follows them with psycopg's `cursor.copy("SUBSCRIBE v")`.
//!
//! Each line is the op (`+I`, `-U`, `+U`, `-D`) and the row's columns, tab-
//! separated, `\N` for NULL: the rows of gRPC's `Subscribe` stream, in its order.
//! It ends when the client cancels (psql's Ctrl-C), goes away (noticed at the
//! next change), or the server stops.

use std::fmt::Debug;

use datafusion::arrow::array::Array;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use futures::{Sink, SinkExt};
use pgwire::api::results::{Response, Tag};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::copy::{CopyData, CopyDone, CopyOutResponse};
use pgwire::messages::PgWireBackendMessage;
use tokio::sync::broadcast::error::RecvError;

use super::errors::error_response;
use crate::error::EddyError;
use crate::server::Server;

/// Streams `name`'s rows and changes to `client` until it ends (see the module docs).
pub async fn subscribe<C>(server: &Server, client: &mut C, name: &str, sql: &str) -> PgWireResult<Vec<Response>>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let refused = |e: EddyError| error_response(&e, sql);
    let view = server.view(name).map_err(refused)?;
    server.check_view_readable(name).map_err(refused)?;
    let (initial, mut changes) = view.subscribe(true).map_err(|e| refused(EddyError::Internal(format!("view `{name}`: {e}"))))?;
    let columns = view.changelog_schema().fields().len();
    client.send(PgWireBackendMessage::CopyOutResponse(CopyOutResponse::new(0, columns as i16, vec![0; columns]))).await?;
    let mut closing = server.closing();
    let mut next = initial.filter(|b| b.num_rows() > 0);
    let mut rows = 0;
    loop {
        let batch = match next.take() {
            Some(batch) => batch,
            None => tokio::select! {
                change = changes.recv() => match change {
                    Ok(batch) => batch,
                    Err(RecvError::Lagged(n)) => {
                        let lagged = EddyError::Conflict(format!("the subscriber fell {n} change batches behind; subscribe again"));
                        return Err(error_response(&lagged, sql));
                    }
                    Err(RecvError::Closed) => break,
                },
                _ = closing.wait_for(|c| *c) => break,
            },
        };
        for line in copy_lines(&batch).map_err(|e| refused(EddyError::Internal(format!("cannot send the change: {e}"))))? {
            client.feed(PgWireBackendMessage::CopyData(CopyData::new(line.into()))).await?;
            rows += 1;
        }
        // Each change goes out now, not when a buffer fills.
        client.flush().await?;
    }
    client.send(PgWireBackendMessage::CopyDone(CopyDone::new())).await?;
    Ok(vec![Response::Execution(Tag::new("SUBSCRIBE").with_rows(rows))])
}

/// The rows of `batch` as lines of `COPY`'s text format.
fn copy_lines(batch: &RecordBatch) -> Result<Vec<String>, datafusion::arrow::error::ArrowError> {
    let options = FormatOptions::default();
    let formatters = batch.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &options)).collect::<Result<Vec<_>, _>>()?;
    Ok((0..batch.num_rows())
        .map(|row| {
            let values: Vec<String> = batch
                .columns()
                .iter()
                .zip(&formatters)
                .map(|(column, formatter)| if column.is_null(row) { "\\N".to_string() } else { escape(&formatter.value(row).to_string()) })
                .collect();
            format!("{}\n", values.join("\t"))
        })
        .collect())
}

/// A value as `COPY`'s text format writes it: backslash, tab, newline and carriage return escaped.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('\t', "\\t").replace('\n', "\\n").replace('\r', "\\r")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    #[test]
    fn rows_become_tab_separated_lines_with_escapes_and_nulls() {
        let schema =
            Arc::new(Schema::new(vec![Field::new("op", DataType::Utf8, false), Field::new("k", DataType::Int64, true), Field::new("s", DataType::Utf8, true)]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["+I", "-U"])),
                Arc::new(Int64Array::from(vec![Some(1), None])),
                Arc::new(StringArray::from(vec![Some("a\tb\\c"), None])),
            ],
        )
        .unwrap();
        assert_eq!(copy_lines(&batch).unwrap(), vec!["+I\t1\ta\\tb\\\\c\n", "-U\t\\N\t\\N\n"]);
    }
}
