//! Lookup joins' side of a connector: a table read by key, when a row asks
//! (`JOIN dim FOR SYSTEM_TIME AS OF o.proc_time ON o.k = dim.k`), rather than
//! read as a stream.
//!
//! A connector that can be looked up implements [`Lookup`]; the join operator
//! holds a [`LookupClient`], which runs the lookups on a thread of its own (the
//! operator is synchronous, the stores' clients are not): a batch's keys go out
//! in chunks of [`LookupOptions::batch_keys`], at most
//! [`LookupOptions::in_flight`] at once, and a failed chunk is retried with
//! exponential backoff up to [`LookupOptions::max_retries`] times before the
//! pipeline fails with the store's message. A [`LookupCache`] (Flink's
//! `'lookup.cache' = 'PARTIAL'`) keeps answers per key for a while.
//!
//! With `'lookup.cache' = 'FULL'` no key is asked for: a [`FullTableLoader`]
//! reads the whole table ([`Lookup::scan`]) on its own thread when the join
//! starts and again every `'lookup.full-cache.periodic-reload.interval'`, and
//! the join answers from the newest copy, as Flink's full cache does.

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::record_batch::RecordBatch;
use futures::{StreamExt, TryStreamExt};

use crate::error::{EngineError, Result};
use crate::BoxError;

/// The rows a lookup found: the table's physical columns, and for each row the
/// index (into the keys asked) of the key it was found under.
#[derive(Debug, Clone)]
pub struct LookupRows {
    pub rows: RecordBatch,
    pub key_of_row: Vec<u32>,
}

/// A table that answers "which rows have these keys".
#[async_trait]
pub trait Lookup: Send + Sync {
    /// The rows whose key columns equal each row of `keys` (the key columns, in
    /// the order the connector was opened with). A key with no row is simply absent.
    async fn lookup(&self, keys: RecordBatch) -> std::result::Result<LookupRows, BoxError>;

    /// Every row of the table, for `'lookup.cache' = 'FULL'`.
    async fn scan(&self) -> std::result::Result<RecordBatch, BoxError>;
}

/// Opens a [`Lookup`] for one task of a lookup join.
pub type LookupOpener = Arc<dyn Fn() -> std::result::Result<Box<dyn Lookup>, BoxError> + Send + Sync>;

/// A table a lookup join reads: how to open it, and its options.
#[derive(Clone)]
pub struct LookupTable {
    pub options: LookupOptions,
    pub open: LookupOpener,
}

/// Whether a connector's tables can be looked up by key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookups {
    Supported,
    Unsupported,
}

/// What a cached key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheMode {
    /// Every row asks the store (`'lookup.cache' = 'NONE'`, Flink's default).
    None,
    /// Answers are kept per key, up to a number of keys and for a time (`'PARTIAL'`).
    Partial,
    /// The whole table is read, and read again every `reload_interval` (`'FULL'`).
    Full,
}

/// Whether a key the store did not have is cached as absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingKeys {
    Cached,
    AskedAgain,
}

/// A lookup table's `WITH` options, with Flink's names (parsed by the connectors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupOptions {
    pub cache: CacheMode,
    /// `'lookup.partial-cache.max-rows'`: keys kept at most (default 10,000).
    pub max_rows: usize,
    /// `'lookup.partial-cache.expire-after-write'`: how long an answer is kept (default: until evicted).
    pub expire_after_write: Option<Duration>,
    /// `'lookup.partial-cache.cache-missing-key'` (default true).
    pub missing_keys: MissingKeys,
    /// `'lookup.max-retries'` (default 3).
    pub max_retries: u32,
    /// `'lookup.batch-keys'`: keys per request to the store (default 1000).
    pub batch_keys: usize,
    /// `'lookup.async.capacity'`: requests in flight at once (default 16).
    pub in_flight: usize,
    /// `'lookup.full-cache.periodic-reload.interval'`: with a full cache, how
    /// long after a load the table is read again (default 1 h, Flink's).
    pub reload_interval: Duration,
}

/// Cached answers by key (encoded key bytes): the rows found for it (empty when
/// the store had none), kept until `max_rows` keys are held (the oldest written
/// leaves first) or until they expire.
pub struct LookupCache {
    mode: CacheMode,
    max_rows: usize,
    expire_after_write: Option<Duration>,
    missing_keys: MissingKeys,
    entries: HashMap<Box<[u8]>, (Instant, RecordBatch)>,
    /// Keys in the order they were written, to evict the oldest; a key written
    /// again appears twice and is evicted by its newest write only.
    order: VecDeque<(Box<[u8]>, Instant)>,
}

impl LookupCache {
    /// A cache as `options` say.
    pub fn new(options: &LookupOptions) -> Self {
        LookupCache {
            mode: options.cache,
            max_rows: options.max_rows,
            expire_after_write: options.expire_after_write,
            missing_keys: options.missing_keys,
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// The rows cached for `key` at `now`, if any are and have not expired.
    pub fn get(&self, key: &[u8], now: Instant) -> Option<&RecordBatch> {
        let (written, rows) = self.entries.get(key)?;
        match self.expire_after_write {
            Some(ttl) if now.duration_since(*written) >= ttl => None,
            _ => Some(rows),
        }
    }

    /// Keeps `rows` (the answer for `key`, possibly empty) written at `now`.
    pub fn put(&mut self, key: Box<[u8]>, rows: RecordBatch, now: Instant) {
        if self.mode != CacheMode::Partial || (rows.num_rows() == 0 && self.missing_keys == MissingKeys::AskedAgain) {
            return;
        }
        self.order.push_back((key.clone(), now));
        self.entries.insert(key, (now, rows));
        while self.entries.len() > self.max_rows {
            let Some((oldest, written)) = self.order.pop_front() else { break };
            if self.entries.get(&oldest).is_some_and(|(w, _)| *w == written) {
                self.entries.remove(&oldest);
            }
        }
        // Writes of keys written again since leave stale entries in `order`; drop them when they pile up.
        if self.order.len() > 2 * self.max_rows.max(self.entries.len()) {
            let entries = &self.entries;
            self.order.retain(|(k, w)| entries.get(k).is_some_and(|(written, _)| written == w));
        }
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A request to the lookup thread: keys, and where the answer goes.
type Request = (RecordBatch, mpsc::Sender<std::result::Result<LookupRows, String>>);

/// Runs a [`Lookup`] on a thread of its own, for a synchronous operator: see the module docs.
pub struct LookupClient {
    requests: mpsc::Sender<Request>,
    table: String,
}

impl LookupClient {
    /// Starts the thread with `lookup`, for table `table` (named in errors).
    pub fn start(lookup: Box<dyn Lookup>, options: &LookupOptions, table: &str) -> Result<Self> {
        let (requests, incoming) = mpsc::channel::<Request>();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| EngineError::Internal(format!("lookup runtime: {e}")))?;
        let (batch_keys, in_flight, max_retries) = (options.batch_keys, options.in_flight, options.max_retries);
        let lookup: Arc<dyn Lookup> = Arc::from(lookup);
        std::thread::Builder::new()
            .name(format!("lookup {table}"))
            .spawn(move || {
                while let Ok((keys, reply)) = incoming.recv() {
                    let answer = runtime.block_on(lookup_all(&lookup, keys, batch_keys, in_flight, max_retries));
                    let _ = reply.send(answer);
                }
            })
            .map_err(|e| EngineError::Internal(format!("lookup thread: {e}")))?;
        Ok(LookupClient { requests, table: table.to_string() })
    }

    /// The rows for `keys` (see [`Lookup::lookup`]), waiting for them.
    pub fn lookup(&self, keys: RecordBatch) -> Result<LookupRows> {
        let (reply, answer) = mpsc::channel();
        let gone = || EngineError::Internal(format!("the lookup thread of `{}` stopped", self.table));
        self.requests.send((keys, reply)).map_err(|_| gone())?;
        answer.recv().map_err(|_| gone())?.map_err(|message| EngineError::Lookup { table: self.table.clone(), message })
    }
}

/// A load of the whole table, or the store's error after the retries.
pub type Load = std::result::Result<RecordBatch, String>;

/// Reads a table whole on a thread of its own, at once and then every reload
/// interval, for `'lookup.cache' = 'FULL'`: see the module docs. The thread ends
/// when the loader is dropped.
pub struct FullTableLoader {
    loads: mpsc::Receiver<Load>,
    table: String,
    /// Dropped with the loader, which wakes the thread from its wait to end.
    _stop: mpsc::Sender<()>,
}

impl FullTableLoader {
    /// Starts loading `lookup`'s table (`table`, named in errors).
    pub fn start(lookup: Box<dyn Lookup>, options: &LookupOptions, table: &str) -> Result<Self> {
        let (send, loads) = mpsc::sync_channel::<Load>(1);
        let (stop_sender, stop) = mpsc::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| EngineError::Internal(format!("lookup runtime: {e}")))?;
        let (every, max_retries) = (options.reload_interval, options.max_retries);
        let lookup: Arc<dyn Lookup> = Arc::from(lookup);
        std::thread::Builder::new()
            .name(format!("load {table}"))
            .spawn(move || loop {
                let load = runtime.block_on(retried(max_retries, || lookup.scan()));
                let failed = load.is_err();
                if send.send(load).is_err() || failed {
                    return;
                }
                // The reload interval, cut short when the loader is dropped.
                if let Err(mpsc::RecvTimeoutError::Disconnected) = stop.recv_timeout(every) {
                    return;
                }
            })
            .map_err(|e| EngineError::Internal(format!("lookup thread: {e}")))?;
        Ok(FullTableLoader { loads, table: table.to_string(), _stop: stop_sender })
    }

    /// The first load, waiting for it.
    pub fn first(&self) -> Result<RecordBatch> {
        self.answer(self.loads.recv().map_err(|_| self.gone()))
    }

    /// A newer load, if one finished since the last asked.
    pub fn newer(&self) -> Result<Option<RecordBatch>> {
        match self.loads.try_recv() {
            Ok(load) => self.answer(Ok(load)).map(Some),
            Err(mpsc::TryRecvError::Empty) => Ok(None),
            Err(mpsc::TryRecvError::Disconnected) => Err(self.gone()),
        }
    }

    fn answer(&self, load: Result<Load>) -> Result<RecordBatch> {
        load?.map_err(|message| EngineError::Lookup { table: self.table.clone(), message })
    }

    fn gone(&self) -> EngineError {
        EngineError::Internal(format!("the loading thread of `{}` stopped", self.table))
    }
}

/// Asks `lookup` for `keys` in chunks, `in_flight` at once, each retried with
/// backoff; the rows found, with key indices into `keys`.
async fn lookup_all(
    lookup: &Arc<dyn Lookup>,
    keys: RecordBatch,
    batch_keys: usize,
    in_flight: usize,
    max_retries: u32,
) -> std::result::Result<LookupRows, String> {
    let chunks: Vec<(usize, RecordBatch)> =
        (0..keys.num_rows()).step_by(batch_keys.max(1)).map(|from| (from, keys.slice(from, batch_keys.min(keys.num_rows() - from)))).collect();
    let answers: Vec<(usize, LookupRows)> = futures::stream::iter(chunks)
        .map(|(from, chunk)| async move { with_retries(lookup, chunk, max_retries).await.map(|rows| (from, rows)) })
        .buffered(in_flight.max(1))
        .try_collect()
        .await?;
    let Some(schema) = answers.first().map(|(_, a)| a.rows.schema()) else {
        return Err("a lookup of no keys".to_string());
    };
    let mut key_of_row = Vec::new();
    for (from, answer) in &answers {
        key_of_row.extend(answer.key_of_row.iter().map(|k| k + *from as u32));
    }
    let rows = concat_batches(&schema, answers.iter().map(|(_, a)| &a.rows)).map_err(|e| e.to_string())?;
    Ok(LookupRows { rows, key_of_row })
}

async fn with_retries(lookup: &Arc<dyn Lookup>, keys: RecordBatch, max_retries: u32) -> std::result::Result<LookupRows, String> {
    retried(max_retries, || lookup.lookup(keys.clone())).await
}

/// `request`'s answer, asked again with backoff (100 ms doubling to 5 s) up to
/// `max_retries` times; the last error, saying how many attempts were made.
async fn retried<T, F>(max_retries: u32, request: impl Fn() -> F) -> std::result::Result<T, String>
where
    F: std::future::Future<Output = std::result::Result<T, BoxError>>,
{
    let mut attempt = 0;
    loop {
        match request().await {
            Ok(rows) => return Ok(rows),
            Err(e) if attempt >= max_retries => return Err(format!("{e} (after {} attempts)", attempt + 1)),
            Err(e) => {
                let delay = Duration::from_millis(100u64.saturating_mul(1 << attempt.min(6))).min(Duration::from_secs(5));
                tracing::warn!(error = %e, attempt = attempt + 1, "lookup failed; retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    fn rows(values: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(values.to_vec()))]).unwrap()
    }

    fn options(cache: CacheMode, max_rows: usize, ttl: Option<u64>, missing_keys: MissingKeys) -> LookupOptions {
        LookupOptions {
            cache,
            max_rows,
            expire_after_write: ttl.map(Duration::from_millis),
            missing_keys,
            max_retries: 0,
            batch_keys: 10,
            in_flight: 1,
            reload_interval: Duration::from_secs(3600),
        }
    }

    /// A table whose every read is one row: the number of reads so far.
    struct CountedReads(Arc<std::sync::atomic::AtomicUsize>);

    #[async_trait]
    impl Lookup for CountedReads {
        async fn lookup(&self, _keys: RecordBatch) -> std::result::Result<LookupRows, BoxError> {
            Err("looked up by key".into())
        }

        async fn scan(&self) -> std::result::Result<RecordBatch, BoxError> {
            Ok(rows(&[self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst) as i64 + 1]))
        }
    }

    #[test]
    fn a_full_table_loader_reads_again_every_interval_and_ends_when_dropped() {
        let reads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut every_20_ms = options(CacheMode::Full, 1, None, MissingKeys::Cached);
        every_20_ms.reload_interval = Duration::from_millis(20);
        let loader = FullTableLoader::start(Box::new(CountedReads(Arc::clone(&reads))), &every_20_ms, "t").unwrap();
        assert_eq!(loader.first().unwrap().column(0).as_any().downcast_ref::<Int64Array>().unwrap().value(0), 1);
        let deadline = Instant::now() + Duration::from_secs(10);
        while loader.newer().unwrap().is_none() {
            assert!(Instant::now() < deadline, "no second read within 10 s");
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(loader);
        // An hour's interval: dropping the loader ends its thread at once (the
        // thread's table is dropped with it), not an hour later.
        let reads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let hourly = options(CacheMode::Full, 1, None, MissingKeys::Cached);
        let loader = FullTableLoader::start(Box::new(CountedReads(Arc::clone(&reads))), &hourly, "t").unwrap();
        loader.first().unwrap();
        drop(loader);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Arc::strong_count(&reads) > 1 {
            assert!(Instant::now() < deadline, "the loading thread still runs 10 s after its loader was dropped");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(reads.load(std::sync::atomic::Ordering::SeqCst), 1, "read once");
    }

    #[test]
    fn a_partial_cache_keeps_the_newest_keys_until_they_expire() {
        let now = Instant::now();
        let mut cache = LookupCache::new(&options(CacheMode::Partial, 2, Some(1000), MissingKeys::Cached));
        cache.put(Box::from(&b"a"[..]), rows(&[1]), now);
        cache.put(Box::from(&b"b"[..]), rows(&[]), now);
        assert_eq!(cache.get(b"a", now).map(|r| r.num_rows()), Some(1));
        assert_eq!(cache.get(b"b", now).map(|r| r.num_rows()), Some(0), "a missing key is cached as no rows");
        // Writing `a` again makes `b` the oldest: a third key evicts `b`.
        cache.put(Box::from(&b"a"[..]), rows(&[2]), now + Duration::from_millis(10));
        cache.put(Box::from(&b"c"[..]), rows(&[3]), now + Duration::from_millis(20));
        assert_eq!(cache.len(), 2);
        assert!(cache.get(b"b", now).is_none());
        assert_eq!(cache.get(b"a", now + Duration::from_millis(20)).map(|r| r.num_rows()), Some(1));
        // Expired after a second from its write.
        assert!(cache.get(b"a", now + Duration::from_millis(1010)).is_none());
        assert!(cache.get(b"c", now + Duration::from_millis(1010)).is_some());
    }

    #[test]
    fn no_cache_keeps_nothing_and_missing_keys_can_be_asked_again() {
        let now = Instant::now();
        let mut none = LookupCache::new(&options(CacheMode::None, 10, None, MissingKeys::Cached));
        none.put(Box::from(&b"a"[..]), rows(&[1]), now);
        assert!(none.is_empty());
        let mut again = LookupCache::new(&options(CacheMode::Partial, 10, None, MissingKeys::AskedAgain));
        again.put(Box::from(&b"a"[..]), rows(&[]), now);
        again.put(Box::from(&b"b"[..]), rows(&[1]), now);
        assert!(again.get(b"a", now).is_none() && again.get(b"b", now).is_some());
    }
}
