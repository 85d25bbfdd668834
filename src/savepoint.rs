//! A savepoint: a checkpoint taken now, on request, and waited for, so that a
//! pipeline stopped right after it resumes exactly there, reading nothing twice.
//! A server's `STOP PIPELINE ... WITH SAVEPOINT` and shutdown take one, and so
//! does a cluster member before it hands a key group over to another.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use eddy_engine::PipelineMetrics;
use tokio::sync::Notify;

/// How a savepoint ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Savepoint {
    /// Saved, as this checkpoint id.
    Saved(u64),
    /// The pipeline ended or stopped before the checkpoint was saved.
    PipelineEnded,
    /// It was not saved in time (a slow sink, a stuck source).
    TimedOut,
}

/// Asks the pipeline whose checkpoints `trigger` starts (see
/// [`crate::session::PreparedPipeline::with_checkpoint_trigger`]) for a checkpoint
/// now, and waits until `metrics` show it saved, while `running()` holds, for at
/// most `timeout`.
pub async fn take(trigger: &Notify, metrics: &PipelineMetrics, timeout: Duration, running: impl Fn() -> bool) -> Savepoint {
    // The savepoint is the checkpoint of the barrier the trigger injects, not one
    // already on its way; no periodic barrier follows it before the stop.
    let before = metrics.savepoint_id.load(Ordering::Relaxed);
    trigger.notify_one();
    let deadline = Instant::now() + timeout;
    loop {
        let savepoint = metrics.savepoint_id.load(Ordering::Relaxed);
        if savepoint > before && metrics.checkpoint_id.load(Ordering::Relaxed) >= savepoint {
            return Savepoint::Saved(savepoint);
        }
        if !running() {
            return Savepoint::PipelineEnded;
        }
        if Instant::now() > deadline {
            return Savepoint::TimedOut;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
