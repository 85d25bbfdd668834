//! Which cluster member runs which pipeline, decided by Kafka's consumer-group
//! protocol, with no coordinator of ours.
//!
//! Each pipeline falls in one of [`SLOTS`] slots (a hash of its id). The slots
//! are the partitions of an empty topic, `eddy.NAME.slots`, that every member
//! subscribes to in the group `eddy.NAME.slots`: the partitions the group gives
//! a member are the slots whose pipelines it runs. When a member joins, leaves or
//! stops answering for the session timeout, the group moves slots, librdkafka
//! calls us back, and the member that lost a slot stops its pipelines (a view's
//! with a savepoint) before the one that gained it starts them from their last
//! checkpoint in the shared checkpoint location. The cooperative-sticky assignor
//! moves only the slots that must move.
//!
//! Nothing is ever written to the topic: its partitions only carry membership.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{ClientConfig, ClientContext};
use tokio::sync::mpsc;

use super::cluster::{create_topic, ClusterOptions};
use super::pipelines::RunsOn;
use crate::error::EddyError;

/// How many slots pipelines are spread over: more than members a cluster will
/// have, so slots spread evenly; fixed, so a pipeline's slot never changes.
pub const SLOTS: i32 = 64;

/// How long a member that loses slots may take to stop their pipelines before
/// the group goes on without it.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// The slot of pipeline `id` (FNV-1a of the id: the same on every member and release).
pub fn slot_of(id: &str) -> i32 {
    (eddy_connectors::kafka::shuffle::fnv1a(id.as_bytes()) % SLOTS as u64) as i32
}

/// Which member runs each slot, as far as this member knows: its own slots from
/// the group, the others' from the `Owns` commands they append to the log.
#[derive(Debug)]
pub struct SlotMap {
    member: String,
    mine: BTreeSet<i32>,
    others: BTreeMap<i32, String>,
}

impl SlotMap {
    /// The map of member `member`, which owns no slot yet.
    pub fn new(member: &str) -> Self {
        SlotMap { member: member.to_string(), mine: BTreeSet::new(), others: BTreeMap::new() }
    }

    /// Which member runs pipeline `id`.
    pub fn runs_on(&self, id: &str) -> RunsOn {
        let slot = slot_of(id);
        if self.mine.contains(&slot) {
            return RunsOn::Here;
        }
        self.others.get(&slot).map_or(RunsOn::Nobody, |member| RunsOn::Member(member.clone()))
    }

    /// The group gave this member `slots`.
    pub fn gain(&mut self, slots: &BTreeSet<i32>) {
        self.mine.extend(slots);
        self.others.retain(|slot, _| !slots.contains(slot));
    }

    /// The group took `slots` from this member.
    pub fn lose(&mut self, slots: &BTreeSet<i32>) {
        self.mine.retain(|slot| !slots.contains(slot));
    }

    /// Member `member` says it runs `slots` (and no others) now.
    pub fn owned_by(&mut self, member: &str, slots: &[i32]) {
        if member == self.member {
            return;
        }
        self.others.retain(|_, owner| owner != member);
        for slot in slots.iter().filter(|slot| !self.mine.contains(slot)) {
            self.others.insert(*slot, member.to_string());
        }
    }

    /// This member's slots.
    pub fn mine(&self) -> Vec<i32> {
        self.mine.iter().copied().collect()
    }
}

/// A change of the slots this member owns, for the server to act on.
pub enum SlotChange {
    /// These slots are this member's now.
    Gained(BTreeSet<i32>),
    /// These slots are no longer this member's: the server stops their pipelines,
    /// then answers on `stopped`, and only then may another member start them.
    Lost(BTreeSet<i32>, Handover, std::sync::mpsc::Sender<()>),
    /// The group will not have this member back (another member joined under its
    /// `--instance-id`): its slots are lost already, and no more will come. Why.
    Expelled(String),
}

/// How slots left this member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handover {
    /// The group moves them in order: their pipelines stop with a savepoint, so
    /// the next member resumes exactly there.
    Orderly,
    /// The group gave them away while this member was unheard: another member may
    /// run them already, so they stop at once, saving nothing.
    Lost,
}

/// Passes librdkafka's rebalance callbacks on as [`SlotChange`]s.
struct SlotContext {
    changes: mpsc::UnboundedSender<SlotChange>,
}

impl ClientContext for SlotContext {}

impl ConsumerContext for SlotContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            let slots: BTreeSet<i32> = partitions.elements().iter().map(|p| p.partition()).collect();
            if slots.is_empty() {
                return;
            }
            let how = if consumer.assignment_lost() { Handover::Lost } else { Handover::Orderly };
            let (stopped, wait) = std::sync::mpsc::channel();
            if self.changes.send(SlotChange::Lost(slots, how, stopped)).is_ok() && wait.recv_timeout(STOP_TIMEOUT).is_err() {
                tracing::warn!("pipelines of revoked slots did not stop within {} s", STOP_TIMEOUT.as_secs());
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                let slots: BTreeSet<i32> = partitions.elements().iter().map(|p| p.partition()).collect();
                if !slots.is_empty() {
                    let _ = self.changes.send(SlotChange::Gained(slots));
                }
            }
            Rebalance::Error(e) => tracing::warn!("the cluster's slot group: {e}"),
            Rebalance::Revoke(_) => {}
        }
    }
}

/// This member's place in the slot group: a thread that polls the group (its
/// heartbeats and rebalances) until [`SlotGroup::leave`].
pub struct SlotGroup {
    leaving: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SlotGroup {
    /// Leaves the group now, so the other members take this one's slots at once
    /// instead of after the session timeout. Blocks until the group has taken them
    /// (the slots' pipelines are stopped first, through the usual [`SlotChange::Lost`]).
    pub fn leave(mut self) {
        self.leaving.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Joins the slot group of the cluster's servers: the returned receiver gets
/// every change of this member's slots until the member leaves.
pub async fn join(options: &ClusterOptions) -> Result<(mpsc::UnboundedReceiver<SlotChange>, SlotGroup), EddyError> {
    join_group(options, &format!("eddy.{}.slots", options.name), SLOTS).await
}

/// Joins the group named like `topic`, an empty topic of `slots` partitions
/// (made if missing) whose partitions the group spreads over its members as
/// slots: for servers, slots of pipelines; for `eddy run --cluster`, source
/// partitions and key groups. With [`ClusterOptions::instance`] the member is a
/// static one: closing does not leave the group, so its slots wait for it (up to
/// the session timeout) instead of moving.
pub async fn join_group(options: &ClusterOptions, topic: &str, slots: i32) -> Result<(mpsc::UnboundedReceiver<SlotChange>, SlotGroup), EddyError> {
    let topic = topic.to_string();
    create_topic(options, &topic, slots).await?;
    let (changes, received) = mpsc::unbounded_channel();
    let mut config = ClientConfig::new();
    if let Some(instance) = &options.instance {
        config.set("group.instance.id", instance);
    }
    let consumer: BaseConsumer<SlotContext> = config
        .set("bootstrap.servers", &options.bootstrap)
        .set("group.id", &topic)
        .set("client.id", format!("eddy {}", options.member))
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("session.timeout.ms", options.session_timeout.as_millis().to_string())
        // Members learn of a rebalance at their next heartbeat: Kafka's 3 s default
        // at most, however long the session timeout.
        .set("heartbeat.interval.ms", (options.session_timeout.as_millis() / 3).clamp(100, 3000).to_string())
        .set("enable.auto.commit", "false")
        .create_with_context(SlotContext { changes: changes.clone() })
        .map_err(|e| options.error(format!("cannot join the slot group: {e}")))?;
    consumer.subscribe(&[&topic]).map_err(|e| options.error(format!("cannot subscribe to {topic}: {e}")))?;
    let leaving = Arc::new(AtomicBool::new(false));
    let leave = Arc::clone(&leaving);
    let instance = options.instance.clone();
    let thread = std::thread::Builder::new()
        .name("eddy-slots".into())
        .spawn(move || {
            // The topic holds no records: a poll only serves heartbeats and rebalances.
            let mut expelled = None;
            while !changes.is_closed() && !leave.load(Ordering::Relaxed) {
                match consumer.poll(Duration::from_millis(100)) {
                    // Fenced, or another fatal error: this consumer will not be given slots again.
                    Some(Err(e @ KafkaError::MessageConsumptionFatal(code))) => {
                        expelled = Some(expelled_because(instance.as_deref(), code, &e));
                        break;
                    }
                    Some(Err(e)) => tracing::warn!("the cluster's slot group: {e}"),
                    _ => {}
                }
            }
            // Dropping the consumer closes it: its slots are revoked (served by the
            // callbacks above) and it leaves the group.
            drop(consumer);
            if let Some(why) = expelled {
                let _ = changes.send(SlotChange::Expelled(why));
            }
        })
        .map_err(|e| EddyError::Internal(format!("cannot start the slot group's thread: {e}")))?;
    Ok((received, SlotGroup { leaving, thread: Some(thread) }))
}

/// Why librdkafka's fatal error `code` (`error`) ended this member's place in the group.
fn expelled_because(instance: Option<&str>, code: RDKafkaErrorCode, error: &KafkaError) -> String {
    match instance {
        Some(id) if code == RDKafkaErrorCode::FencedInstanceId => {
            format!("another member joined with the same --instance-id {id}, and the group dropped this one ({error}); give each member an ID of its own")
        }
        _ => format!("the group dropped this member ({error})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_map_follows_the_group_here_and_the_log_for_the_others() {
        let id = "p7";
        let slot = slot_of(id);
        let mut map = SlotMap::new("a:1");
        assert_eq!(map.runs_on(id), RunsOn::Nobody);
        map.owned_by("b:1", &[slot, slot + 1]);
        assert_eq!(map.runs_on(id), RunsOn::Member("b:1".into()));
        // A member's claim replaces its earlier one.
        map.owned_by("b:1", &[slot + 1]);
        assert_eq!(map.runs_on(id), RunsOn::Nobody);
        map.owned_by("c:1", &[slot]);
        map.gain(&BTreeSet::from([slot]));
        assert_eq!(map.runs_on(id), RunsOn::Here);
        // Its own claims coming back from the log change nothing, nor do stale ones of others.
        map.owned_by("a:1", &[]);
        map.owned_by("c:1", &[slot]);
        assert_eq!(map.runs_on(id), RunsOn::Here);
        assert_eq!(map.mine(), vec![slot]);
        map.lose(&BTreeSet::from([slot]));
        assert_eq!(map.runs_on(id), RunsOn::Nobody);
        assert!(map.mine().is_empty());
    }

    #[test]
    fn slots_are_stable_and_spread() {
        assert_eq!(slot_of("p1"), slot_of("p1"));
        let used: BTreeSet<i32> = (1..=200).map(|n| slot_of(&format!("p{n}"))).collect();
        assert!(used.iter().all(|s| (0..SLOTS).contains(s)));
        assert!(used.len() > SLOTS as usize / 2, "200 ids fall in {} slots only", used.len());
        // Fixed by the hash: a release that changed it would move every pipeline.
        assert_eq!(slot_of("p1"), (0x08d5_9707_b575_eaba_u64 % 64) as i32);
    }
}
