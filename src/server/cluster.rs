//! Servers that share one catalog: `eddy server --cluster NAME --kafka BOOTSTRAP`.
//!
//! Every statement that changes the catalog (DDL, `SET`, new pipelines and
//! materialized views, a pipeline stopped or started again) is appended to one
//! Kafka topic, `eddy.NAME.commands`, and every member applies the topic's
//! commands in its order, its own included. Members that applied the same prefix
//! of the log hold the same catalog, pipeline ids included, with no coordinator
//! but the broker, as ksqlDB's command topic does.
//!
//! The protocol:
//! 1. A member given a changing statement appends `Command { member, request,
//!    change }` and waits until its own applier reaches that record; the applier
//!    answers the waiting client with what applying it did. So a client reads its
//!    own writes, and a statement that fails (a table two members created at once)
//!    fails alike on every member, reported by the member it was sent to.
//! 2. A member started again (or for the first time) reads the topic from its
//!    first record up to the end it had at start and applies it (it holds no slot
//!    yet, so it starts no pipeline), then joins the slot group, then applies new
//!    records as they come.
//! 3. Which member runs which pipeline is not in the log: Kafka's group protocol
//!    decides it (see [`super::slots`]). Members append which slots they hold
//!    (`Change::Owns`) so the others know where to send reads of a pipeline's
//!    view, and `STOP` / `RESTART PIPELINE` are run by the member running it,
//!    which appends the change (`Change::Running`) for the others.
//!
//! The topic has one partition (one order) and keeps its records for ever
//! (`retention.ms = -1`), deliberately not compacted: compaction keeps each key's
//! last record at its own offset, so a view defined before its table was dropped
//! and created again would be replayed before the table, and pipeline ids, which
//! count the pipelines in the log, would change on replay.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::Reply;
use crate::error::EddyError;

/// How a server joins a cluster (the `--cluster`, `--kafka` and `--advertise` options).
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// The cluster's name: members with the same name share a catalog.
    pub name: String,
    /// The Kafka brokers that carry the command log.
    pub bootstrap: String,
    /// This member's gRPC address as the other members reach it: it names the
    /// member, so it must stay the same when the member is started again.
    pub member: String,
    /// The token members send each other (every member is given the same `--token`).
    pub token: Option<String>,
    /// How long a member may go unheard before the group gives its pipelines to
    /// the others (Kafka's `session.timeout.ms`).
    pub session_timeout: Duration,
    /// Where every member keeps checkpoints (`--checkpoints`), as given: members
    /// that disagree cannot resume each other's pipelines, so they refuse to join.
    pub checkpoints: String,
    /// Kafka's `group.instance.id` (static membership, `--instance-id`): a member
    /// started again under the same id within the session timeout gets its share
    /// back as it was, and nothing moves; `None`: any restart moves work.
    pub instance: Option<String>,
}

impl ClusterOptions {
    /// The topic that holds the cluster's command log.
    pub fn topic(&self) -> String {
        format!("eddy.{}.commands", self.name)
    }

    /// Why the cluster's brokers could not be used, naming the cluster and the brokers.
    pub fn error(&self, message: impl std::fmt::Display) -> EddyError {
        EddyError::Cluster(format!("cluster `{}` (brokers {}): {message}", self.name, self.bootstrap))
    }
}

/// One record of the command log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Command {
    /// The member that appended it: a pipeline it creates runs there.
    pub member: String,
    /// Unique per statement sent, so the member that sent it knows its answer.
    pub request: String,
    pub change: Change,
}

/// What a command changes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Change {
    /// A statement that changes the catalog, as its sender received it.
    Statement { sql: String },
    /// A pipeline stopped or started again by its owner.
    Running { pipeline: String, running: bool, parallelism: Option<usize> },
    /// The slots (see [`super::slots`]) the sending member runs the pipelines of
    /// now, so the others know where each pipeline runs.
    Owns { slots: Vec<i32> },
    /// What every member must agree on, appended by the first member of the
    /// cluster (the first such record in the log is the one that holds).
    Founded(Terms),
}

/// What the members of one cluster must agree on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Terms {
    /// The checkpoint location of every pipeline (`--checkpoints`).
    pub checkpoints: String,
    /// How many slots pipelines are spread over (see [`super::slots::SLOTS`]).
    pub slots: i32,
}

impl Terms {
    /// The terms `options` asks for.
    pub fn of(options: &ClusterOptions) -> Terms {
        Terms { checkpoints: options.checkpoints.clone(), slots: super::slots::SLOTS }
    }

    /// Refuses a member whose terms differ from the cluster's, naming the difference.
    pub fn check(&self, cluster: &Terms, name: &str) -> Result<(), EddyError> {
        if self.checkpoints != cluster.checkpoints {
            return Err(EddyError::Conflict(format!(
                "cluster `{name}` keeps its checkpoints at {}, and this member was given --checkpoints {}: every member must use the same location, or another cluster name",
                cluster.checkpoints, self.checkpoints
            )));
        }
        if self.slots != cluster.slots {
            return Err(EddyError::Conflict(format!(
                "cluster `{name}` spreads pipelines over {} slots and this version of Eddy over {}: run the same version on every member",
                cluster.slots, self.slots
            )));
        }
        Ok(())
    }
}

/// How long a member waits for its own command to come back from the log before
/// telling its client it could not confirm it.
const APPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// A client waiting for its statement's command to be applied.
pub struct Waiter {
    /// Where the statement's replies go, with the statement's index in its request.
    pub replies: mpsc::Sender<(usize, Reply)>,
    pub index: usize,
    /// What applying it did.
    pub done: oneshot::Sender<Result<(), EddyError>>,
}

/// This member's end of the command log: it appends commands and reads them back.
pub struct CommandLog {
    pub options: ClusterOptions,
    topic: String,
    producer: FutureProducer,
    consumer: StreamConsumer,
    /// Distinguishes this process's requests from an earlier run's of the same member.
    nonce: u64,
    requests: std::sync::atomic::AtomicU64,
    waiting: Mutex<HashMap<String, Waiter>>,
}

impl CommandLog {
    /// Connects to the brokers, creates the topic when it does not exist yet, and
    /// positions the reader at the log's first record.
    pub async fn open(options: ClusterOptions) -> Result<CommandLog, EddyError> {
        let topic = options.topic();
        create_topic(&options, &topic, 1).await?;
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &options.bootstrap);
        let producer: FutureProducer =
            config.clone().set("enable.idempotence", "true").set("acks", "all").set("message.timeout.ms", "30000").create().map_err(|e| options.error(e))?;
        let consumer: StreamConsumer = config
            .clone()
            .set("group.id", format!("eddy.{}.{}", options.name, options.member))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .create()
            .map_err(|e| options.error(e))?;
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(&topic, 0, Offset::Beginning).map_err(|e| options.error(e))?;
        consumer.assign(&assignment).map_err(|e| options.error(e))?;
        let nonce = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64) ^ u64::from(std::process::id());
        Ok(CommandLog { options, topic, producer, consumer, nonce, requests: Default::default(), waiting: Mutex::default() })
    }

    /// The offset just past the log's last record now: catching up ends there.
    pub fn end(&self) -> Result<i64, EddyError> {
        // Called once, at start, before the member serves anyone: blocking a
        // runtime thread for one round trip holds nobody up.
        self.consumer
            .fetch_watermarks(&self.topic, 0, Duration::from_secs(30))
            .map(|(_, high)| high)
            .map_err(|e| self.error(&format!("cannot read the end of {}: {e}", self.topic)))
    }

    /// The next command in the log (waiting for one), skipping records that are
    /// not commands (reported: they were written by something else).
    pub async fn next(&self, read: &mut i64) -> Result<Command, EddyError> {
        loop {
            let message = self.consumer.recv().await.map_err(|e| self.error(&format!("cannot read {}: {e}", self.topic)))?;
            *read = message.offset() + 1;
            match message.payload().map(serde_json::from_slice::<Command>) {
                Some(Ok(command)) => return Ok(command),
                Some(Err(e)) => tracing::error!(offset = message.offset(), "record of {} skipped: not an Eddy command ({e})", self.topic),
                None => tracing::error!(offset = message.offset(), "record of {} skipped: it is empty", self.topic),
            }
        }
    }

    /// Appends `change` on behalf of a client, and waits until this member
    /// applied it; the client's replies are sent as it is applied.
    pub async fn submit(&self, change: Change, replies: &mpsc::Sender<(usize, Reply)>, index: usize) -> Result<(), EddyError> {
        let request = self.new_request();
        let (done, applied) = oneshot::channel();
        self.lock_waiting().insert(request.clone(), Waiter { replies: replies.clone(), index, done });
        let appended = self.append_as(&request, change).await;
        if let Err(e) = appended {
            self.lock_waiting().remove(&request);
            return Err(e);
        }
        match tokio::time::timeout(APPLY_TIMEOUT, applied).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(self.error("the member stopped applying the command log before it reached this statement")),
            Err(_) => {
                self.lock_waiting().remove(&request);
                Err(self.error(&format!(
                    "the statement was appended to {} but this member did not apply it within {} s; it takes effect when the log is read",
                    self.topic,
                    APPLY_TIMEOUT.as_secs()
                )))
            }
        }
    }

    /// Appends a change no client waits for (a pipeline its owner stopped).
    pub async fn append(&self, change: Change) -> Result<(), EddyError> {
        let request = self.new_request();
        self.append_as(&request, change).await
    }

    async fn append_as(&self, request: &str, change: Change) -> Result<(), EddyError> {
        let command = Command { member: self.options.member.clone(), request: request.to_string(), change };
        let payload = serde_json::to_vec(&command).map_err(|e| EddyError::Internal(format!("cannot encode a command: {e}")))?;
        let record = FutureRecord::<(), [u8]>::to(&self.topic).payload(&payload);
        self.producer
            .send(record, Duration::from_secs(30))
            .await
            .map(|_| ())
            .map_err(|(e, _)| self.error(&format!("cannot append to the command log {}: {e}; the statement did not take effect", self.topic)))
    }

    /// The client waiting for `command`, when it was sent by this process.
    pub fn take_waiter(&self, command: &Command) -> Option<Waiter> {
        if command.member != self.options.member {
            return None;
        }
        self.lock_waiting().remove(&command.request)
    }

    fn error(&self, message: &str) -> EddyError {
        self.options.error(message)
    }

    /// A request id no other statement of this member (in this run or another) has.
    fn new_request(&self) -> String {
        format!("{:x}-{}", self.nonce, self.requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    }

    fn lock_waiting(&self) -> std::sync::MutexGuard<'_, HashMap<String, Waiter>> {
        // A plain map: a panic elsewhere while holding it leaves nothing half-done.
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Creates `topic` with `partitions` partitions, keeping its records for ever,
/// unless it exists.
pub async fn create_topic(options: &ClusterOptions, topic: &str, partitions: i32) -> Result<(), EddyError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", &options.bootstrap).create().map_err(|e| options.error(e))?;
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(-1)).set("retention.ms", "-1").set("cleanup.policy", "delete");
    let created =
        admin.create_topics(&[new_topic], &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)))).await.map_err(|e| options.error(e))?;
    for result in created {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(options.error(format!("cannot create the topic {topic}: {code}"))),
        }
    }
    // A topic just created has no leader for a moment, and reading it then fails:
    // wait until every partition has one (metadata calls block, so off the runtime).
    let (bootstrap, name) = (options.bootstrap.clone(), topic.to_string());
    let led = tokio::task::spawn_blocking(move || {
        let Ok(client) = ClientConfig::new().set("bootstrap.servers", &bootstrap).create::<BaseConsumer>() else {
            return Err("cannot create a Kafka client".to_string());
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            let metadata = client.fetch_metadata(Some(&name), Duration::from_secs(5));
            if let Some(t) = metadata.as_ref().ok().and_then(|m| m.topics().iter().find(|t| t.name() == name).map(|t| t.partitions().len())) {
                // Made earlier with another count: members that disagree must not share it.
                if t != 0 && t != partitions as usize {
                    return Err(format!("the topic {name} exists with {t} partitions, not {partitions}: members started with other settings made it"));
                }
            }
            let led = metadata.is_ok_and(|m| {
                m.topics().iter().any(|t| t.name() == name && t.partitions().len() == partitions as usize && t.partitions().iter().all(|p| p.leader() >= 0))
            });
            if led {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!("the topic {name} has no leader 30 s after it was created"))
    });
    match led.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(message)) => Err(options.error(message)),
        Err(e) => Err(options.error(format!("the topic check failed: {e}"))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip_through_json() {
        let command = Command {
            member: "10.0.0.7:50051".into(),
            request: "abc-3".into(),
            change: Change::Running { pipeline: "p2".into(), running: false, parallelism: Some(4) },
        };
        let back: Command = serde_json::from_slice(&serde_json::to_vec(&command).unwrap()).unwrap();
        assert_eq!(back.member, "10.0.0.7:50051");
        assert!(matches!(back.change, Change::Running { ref pipeline, running: false, parallelism: Some(4) } if pipeline == "p2"));
        let options = ClusterOptions {
            name: "prod".into(),
            bootstrap: "b:9092".into(),
            member: "m".into(),
            token: None,
            session_timeout: Duration::from_secs(45),
            checkpoints: "s3://b/p".into(),
            instance: None,
        };
        assert_eq!(options.topic(), "eddy.prod.commands");
        // Members that would not find each other's checkpoints refuse to join.
        let ours = Terms::of(&options);
        assert!(ours.check(&ours.clone(), "prod").is_ok());
        let elsewhere = Terms { checkpoints: "/mnt/eddy".into(), ..ours.clone() };
        let refused = ours.check(&elsewhere, "prod").unwrap_err().to_string();
        assert!(refused.contains("/mnt/eddy") && refused.contains("s3://b/p"), "{refused}");
        let refused = ours.check(&Terms { slots: 32, ..ours.clone() }, "prod").unwrap_err().to_string();
        assert!(refused.contains("32 slots"), "{refused}");
    }
}
