//! The ad-hoc `SELECT`s a server runs for its clients over bounded tables.
//!
//! Each runs as a pipeline of its own until its sources end, or until its client
//! goes away (Ctrl-C in `eddy sql` drops the stream): then it is stopped, so a
//! cancelled query does not go on reading. `SHOW PIPELINES` lists those running,
//! as psql users look for theirs in `pg_stat_activity`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use eddy_engine::PipelineMetrics;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::EddyError;

/// The queries running now, by number.
#[derive(Default)]
pub struct Queries {
    next: AtomicU64,
    running: Mutex<BTreeMap<u64, Running>>,
}

/// What `SHOW PIPELINES` shows of a running query.
struct Running {
    name: String,
    sql: String,
    metrics: Arc<PipelineMetrics>,
}

impl Queries {
    /// Lists a query until the returned entry is dropped (when its run ends).
    pub fn register(self: &Arc<Self>, name: &str, sql: &str, metrics: Arc<PipelineMetrics>) -> Listed {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.lock().insert(id, Running { name: name.to_string(), sql: sql.to_string(), metrics });
        Listed { id, queries: Arc::clone(self) }
    }

    /// `SHOW PIPELINES` rows of the running queries: id (`q1`), name, status,
    /// rows in, rows out, view lag (none), SQL, error (none).
    pub fn rows(&self) -> Vec<Vec<String>> {
        self.lock()
            .iter()
            .map(|(id, q)| {
                let m = q.metrics.snapshot();
                vec![
                    format!("q{id}"),
                    q.name.clone(),
                    "RUNNING".into(),
                    m.rows_in.to_string(),
                    m.rows_out.to_string(),
                    String::new(),
                    q.sql.clone(),
                    String::new(),
                ]
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Running>> {
        self.running.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A query's place in the list; dropping it takes the query off.
pub struct Listed {
    id: u64,
    queries: Arc<Queries>,
}

impl Drop for Listed {
    fn drop(&mut self) {
        self.queries.lock().remove(&self.id);
    }
}

/// A running query's task. Dropping it (the statement that streams the rows
/// stopped, most often because its client went away) stops the query.
pub struct QueryRun {
    task: JoinHandle<Result<(), EddyError>>,
    stop: watch::Sender<bool>,
}

impl QueryRun {
    /// Wraps the task of a query that stops when `stop` turns true.
    pub fn new(task: JoinHandle<Result<(), EddyError>>, stop: watch::Sender<bool>) -> Self {
        QueryRun { task, stop }
    }

    /// Waits for the query to end (its rows all sent), with its error if it failed.
    pub async fn finished(&mut self) -> Result<(), EddyError> {
        (&mut self.task).await.map_err(|e| EddyError::Unsupported(format!("the query stopped: {e}")))?
    }
}

impl Drop for QueryRun {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}
