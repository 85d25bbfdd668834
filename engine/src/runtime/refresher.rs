//! The refresher: every interval it publishes the time, increasing, for every
//! source task to pass on as a [`crate::Message::Refresh`], so a sink that can show
//! rows before their checkpoint (a materialized view) is that fresh.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

/// A running refresher and the refresh times it publishes.
pub(super) struct Refresher {
    /// The newest refresh's time (ms since the Unix epoch), for source tasks to clone.
    pub(super) times: watch::Receiver<u64>,
    /// The refresher's task, aborted when the pipeline ends.
    pub(super) task: JoinHandle<()>,
}

/// Starts a refresher ticking every `every`; `None` (no refreshes) without an interval.
pub(super) fn spawn_refresher(every: Option<Duration>) -> Option<Refresher> {
    let every = every?;
    let (refresh_tx, times) = watch::channel(0u64);
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
            refresh_tx.send_modify(|at| *at = (*at + 1).max(now));
        }
    });
    Some(Refresher { times, task })
}
