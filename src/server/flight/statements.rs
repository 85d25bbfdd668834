//! Statements over Flight SQL run through the server's one dispatcher
//! ([`Server::execute_for_client`]) exactly as gRPC and Postgres run them.
//!
//! Flight asks for a result in two calls: `GetFlightInfo` (the columns) and then
//! `DoGet` (the rows). A statement is started by the first: it runs in a task of
//! its own until it sends its columns, and its rows wait, unread, in a bounded
//! channel (so a running query waits for its reader instead of filling memory)
//! until the second call streams them as the dispatcher sent them. Dropping
//! unread [`Rows`] drops that channel, which stops a running `SELECT`.

use std::sync::Arc;

use arrow_flight::error::FlightError;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use futures::Stream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::EddyError;
use crate::server::service::status_of;
use crate::server::{Reply, Server};

/// How many replies of a running statement wait for their reader.
const REPLIES_WAITING_MAX: usize = 16;

/// What a started statement answers.
pub enum Started {
    /// A result set, whose rows are still to be read.
    Rows(Rows),
    /// A statement without rows (DDL, `INSERT INTO`, `SET`...), finished.
    Done,
}

/// The rows of a started statement, not yet read.
pub struct Rows {
    /// The columns of the rows.
    pub schema: SchemaRef,
    /// Which statement of the text the rows belong to.
    statement: usize,
    replies: mpsc::Receiver<(usize, Reply)>,
    task: JoinHandle<Result<(), (usize, EddyError)>>,
}

/// Starts `sql` and waits until it answers its columns (or finishes without
/// rows, or fails). Notices (a window that multiplies state) have no place in
/// Flight's answer and go to the server's log.
pub async fn start(server: &Arc<Server>, sql: &str) -> Result<Started, EddyError> {
    let (sender, mut replies) = mpsc::channel::<(usize, Reply)>(REPLIES_WAITING_MAX);
    let (server, text) = (Arc::clone(server), sql.to_string());
    let task = tokio::spawn(async move { server.execute_for_client(&text, &sender).await });
    while let Some((statement, reply)) = replies.recv().await {
        match reply {
            Reply::Schema(schema) => return Ok(Started::Rows(Rows { schema, statement, replies, task })),
            Reply::Notice(text) => tracing::info!(target: "eddy::flight", "notice: {text}"),
            Reply::Batch(_) | Reply::Done { .. } => {}
        }
    }
    finished(task).await?;
    Ok(Started::Done)
}

/// Runs `sql` to its end, for a client that wants no rows (`ExecuteUpdate`):
/// the rows a statement answers anyway are read and dropped.
pub async fn run(server: &Arc<Server>, sql: &str) -> Result<(), EddyError> {
    match start(server, sql).await? {
        Started::Done => Ok(()),
        Started::Rows(mut rows) => {
            while rows.replies.recv().await.is_some() {}
            finished(rows.task).await
        }
    }
}

/// The outcome of a statement's task.
async fn finished(task: JoinHandle<Result<(), (usize, EddyError)>>) -> Result<(), EddyError> {
    match task.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err((_, error))) => Err(error),
        Err(stopped) => Err(EddyError::Internal(format!("the statement's task stopped: {stopped}"))),
    }
}

impl Rows {
    /// The batches as the dispatcher sends them, without conversion; a
    /// statement that fails midway ends the stream with its error. The rest of a
    /// text of several statements runs to its end before the stream ends.
    pub fn into_stream(self) -> impl Stream<Item = Result<RecordBatch, FlightError>> + Send {
        futures::stream::unfold(Some(self), |state| async move {
            let mut rows = state?;
            while let Some((statement, reply)) = rows.replies.recv().await {
                if let (true, Reply::Batch(batch)) = (statement == rows.statement, reply) {
                    return Some((Ok(batch), Some(rows)));
                }
            }
            match finished(rows.task).await {
                Ok(()) => None,
                Err(error) => Some((Err(FlightError::Tonic(Box::new(status_of(&error)))), None)),
            }
        })
    }
}
