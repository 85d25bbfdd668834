//! The checkpoint coordinator: it bumps the checkpoint id every interval, or at
//! once when a savepoint is triggered; every source task watches the id and
//! injects a barrier for each new one.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::metrics::PipelineMetrics;

/// How long periodic checkpoints wait after a savepoint, whose pipeline is being
/// stopped; only a stop that gives up (a savepoint that never completes) lets them resume.
const SAVEPOINT_HOLD: Duration = Duration::from_secs(180);

/// The coordinator of a running pipeline, and the checkpoint ids it sends.
pub(super) struct Coordinator {
    /// The newest checkpoint id; sources inject a barrier for every id up to it.
    pub(super) barriers: watch::Receiver<u64>,
    /// The coordinator's task, aborted when the pipeline ends; `None` when nothing
    /// takes checkpoints (the sources then see the ids' sender gone).
    pub(super) task: Option<JoinHandle<()>>,
}

/// Starts the coordinator: ids continue after `resumed_id` (the restored checkpoint's).
pub(super) fn spawn_coordinator(resumed_id: u64, interval: Option<Duration>, trigger: Option<Arc<Notify>>, metrics: Arc<PipelineMetrics>) -> Coordinator {
    let (barrier_tx, barriers) = watch::channel(resumed_id);
    if interval.is_none() && trigger.is_none() {
        return Coordinator { barriers, task: None };
    }
    let task = tokio::spawn(async move {
        let mut tick = interval.map(|every| {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            tick
        });
        if let Some(tick) = tick.as_mut() {
            tick.tick().await;
        }
        let mut held_until: Option<Instant> = None;
        loop {
            let ticked = async {
                match tick.as_mut() {
                    Some(tick) => {
                        tick.tick().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let triggered = async {
                match &trigger {
                    Some(notify) => notify.notified().await,
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = ticked => {
                    if held_until.is_some_and(|until| Instant::now() < until) {
                        continue;
                    }
                }
                // A savepoint: the pipeline stops right after it, so no periodic
                // checkpoint may follow it (a restart must resume exactly there).
                _ = triggered => {
                    held_until = Some(Instant::now() + SAVEPOINT_HOLD);
                    barrier_tx.send_modify(|id| *id += 1);
                    metrics.savepoint_id.store(*barrier_tx.borrow(), Ordering::Relaxed);
                    continue;
                }
            }
            barrier_tx.send_modify(|id| *id += 1);
        }
    });
    Coordinator { barriers, task: Some(task) }
}
