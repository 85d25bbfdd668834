//! The Redis sink: the serving layer of live dashboards.
//!
//! Every row becomes one command, chosen by `'mode'`, on a key rendered from the
//! `'key'` template (`'bids:{auction}'`: `{column}` is replaced by the row's value):
//!
//! | mode | command per row | read it with |
//! |---|---|---|
//! | `hash` (default) | `HSET key col value ...` (`HDEL` for null values) | `HGETALL bids:42` |
//! | `string` | `SET key value` (`DEL` when the value is null) | `GET clicks:home` |
//! | `zset` | `ZADD key score member` (`ZREM` when the score is null) | `ZREVRANGE top:2024-01-01 00:01:00.000 0 9 WITHSCORES` |
//! | `stream` | `XADD key * col value ...` | `XRANGE events - +` |
//! | `list` | `RPUSH key {json row}` | `LRANGE recent 0 -1` |
//!
//! `hash`, `string` and `zset` overwrite: writing the same window twice (a replay)
//! leaves the same final state. `stream` and `list` append, so a replay appends
//! again (at-least-once). `'ttl'` adds a `PEXPIRE` after every write of a key.
//!
//! Each batch goes out as pipelines of up to `'sink.batch-rows'` rows, one round
//! trip each. The connection reconnects by itself; a write that fails on the
//! connection (server down, restarting, loading) is retried with exponential
//! backoff up to `'sink.max-retries'` times, then the pipeline fails with the
//! server's error. Refusals that a retry cannot fix (wrong password, a key of the
//! wrong type) fail at once with Redis's own message.
//!
//! Rows are upserts: a window's row is written once when the window closes, and a
//! continuous `GROUP BY` (no window, unbounded source) sends each changed group's
//! new row at every checkpoint, which overwrites the old one under its key.
//!
//! A hash table is also the table of a lookup join (`JOIN users FOR SYSTEM_TIME
//! AS OF o.proc_time AS u ON o.user_id = u.id`): see [`lookup`].
//!
//! `'sink.delivery-guarantee' = 'exactly-once'` makes appends (streams, lists)
//! exact across crashes too: rows are held until the checkpoint they belong to
//! is saved, then written in one `MULTI`/`EXEC` transaction together with an epoch
//! marker (`'sink.epoch-key'`, the run and the checkpoint id). The held rows are
//! saved with the checkpoint, so a restarted pipeline writes them again unless the
//! marker shows that transaction already happened. Rows become visible once per
//! checkpoint interval instead of at once.

mod lookup;

use std::sync::Arc;
use std::time::Duration;

use crate::epochs::{self, already_written, HeldEpochs};
use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{ErrorKind, Pipeline, RedisError, RetryMethod};
use async_trait::async_trait;
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type, SchemaRef};
use datafusion::arrow::util::display::ArrayFormatter;
use eddy_engine::lookup::{Lookup, Lookups};
use eddy_engine::table::TableDef;
use eddy_engine::{BoxError, Capabilities, ChangeBatch, Connector, ConnectorInfo, MetadataColumns, OptionSpec, Resume, Roles, Sink, SinkChanges, TableUse};

use crate::error::ConnectorError;
use crate::format::{common_timestamp_format, formatters, json_rows};
use crate::options::{opt, parse_duration, parse_positive, parse_u64, retry_delay};

/// The options of `'connector' = 'redis'`, with what each means.
pub const OPTIONS: &[OptionSpec] = &[
    OptionSpec::required("url", "the server, e.g. 'redis://127.0.0.1:6379', 'redis://user:password@host:6379/2' (database 2)"),
    OptionSpec::optional("mode", "hash (default) | string | zset | stream | list: what each row writes (see docs/SQL.md)"),
    OptionSpec::optional("key", "key template, '{column}' replaced by the row's value, e.g. 'bids:{auction}' or 'top:{window_start}' (default: the table name)"),
    OptionSpec::optional("value.fields", "hash and stream modes: comma-separated columns written as fields (default: every column)"),
    OptionSpec::optional("value.field", "string mode: the column stored as the value (default: the only column not in the key)"),
    OptionSpec::optional("zset.score", "zset mode: the numeric column used as the score"),
    OptionSpec::optional("zset.member", "zset mode: member template, e.g. '{bidder}'"),
    OptionSpec::optional("stream.max-length", "stream mode: trim the stream to about this many entries (XADD MAXLEN ~)"),
    OptionSpec::optional("ttl", "expire each written key after this long, e.g. '1 h' (default: never)"),
    OptionSpec::optional("sink.batch-rows", "rows per pipelined round trip (default 10000)"),
    OptionSpec::optional("sink.max-retries", "retries of a failed write, with exponential backoff up to 10 s, before the pipeline fails (default 10)"),
    OptionSpec::optional("sink.delivery-guarantee", "at-least-once (default: rows are written at once; a replay after a crash writes rows after the last checkpoint again) | exactly-once (rows are written when their checkpoint is saved, in a transaction guarded by an epoch marker)"),
    OptionSpec::optional("sink.epoch-key", "with exactly-once: the key of the epoch marker (default 'eddy:epoch:<table>'); one per sink table"),
];

/// What a row writes; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisMode {
    /// A hash per key, one field per value column.
    Hash,
    /// One value per key (counters, latest values).
    String,
    /// A sorted set per key, one member per row (leaderboards).
    Zset,
    /// A stream entry per row (event feeds).
    Stream,
    /// A JSON row appended to a list per key.
    List,
}

/// A key or member template: literal text and column values.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Column(usize),
}

/// `'bids:{auction}'` split into pieces, columns resolved against the sink schema.
#[derive(Debug, Clone, PartialEq)]
struct Template(Vec<Piece>);

impl Template {
    fn parse(option: &str, text: &str, schema: &SchemaRef) -> Result<Self, ConnectorError> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_string()));
            }
            let close = rest[open..].find('}').ok_or_else(|| ConnectorError::invalid(option, text, "a '{' has no closing '}'; write '{column}'"))?;
            let name = rest[open + 1..open + close].trim();
            let index = schema
                .index_of(name)
                .map_err(|_| ConnectorError::invalid(option, text, format!("'{{{name}}}' names no column; columns: {}", column_names(schema))))?;
            pieces.push(Piece::Column(index));
            rest = &rest[open + close + 1..];
        }
        if rest.contains('}') {
            return Err(ConnectorError::invalid(option, text, "a '}' has no opening '{'"));
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_string()));
        }
        Ok(Template(pieces))
    }

    fn columns(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().filter_map(|p| match p {
            Piece::Column(i) => Some(*i),
            Piece::Text(_) => None,
        })
    }

    /// The `SCAN ... MATCH` pattern of the keys the template renders: its text,
    /// glob characters escaped, with `*` for each column.
    fn pattern(&self) -> String {
        let mut pattern = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Text(text) => {
                    for c in text.chars() {
                        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                            pattern.push('\\');
                        }
                        pattern.push(c);
                    }
                }
                Piece::Column(_) => pattern.push('*'),
            }
        }
        pattern
    }

    /// The column values in `key`, a key the template rendered, as (column, text);
    /// `None` when the key does not fit, or two columns meet with no text between
    /// them to tell where one ends.
    fn values_in(&self, key: &str) -> Option<Vec<(usize, String)>> {
        let mut values = Vec::new();
        let mut rest = key;
        for (i, piece) in self.0.iter().enumerate() {
            match piece {
                Piece::Text(text) => rest = rest.strip_prefix(text.as_str())?,
                Piece::Column(column) => {
                    let end = match self.0.get(i + 1) {
                        None => rest.len(),
                        Some(Piece::Text(next)) => rest.find(next.as_str())?,
                        Some(Piece::Column(_)) => return None,
                    };
                    values.push((*column, rest[..end].to_string()));
                    rest = &rest[end..];
                }
            }
        }
        rest.is_empty().then_some(values)
    }

    fn render(&self, values: &[ArrayFormatter<'_>], row: usize, out: &mut String) {
        use std::fmt::Write as _;
        out.clear();
        for piece in &self.0 {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Column(i) => {
                    let _ = write!(out, "{}", values[*i].value(row));
                }
            }
        }
    }
}

/// The text of one cell, rendered into `buf` (reused: no allocation per value).
fn render<'b>(formatter: &ArrayFormatter<'_>, row: usize, buf: &'b mut String) -> &'b str {
    use std::fmt::Write as _;
    buf.clear();
    let _ = write!(buf, "{}", formatter.value(row));
    buf.as_str()
}

fn column_names(schema: &SchemaRef) -> String {
    schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ")
}

fn column(option: &str, name: &str, schema: &SchemaRef) -> Result<usize, ConnectorError> {
    schema.index_of(name.trim()).map_err(|_| ConnectorError::invalid(option, name, format!("no such column; columns: {}", column_names(schema))))
}

/// `'connector' = 'redis'`: rows written under key templates for dashboards,
/// overwriting by key so it takes updating results.
#[derive(Debug, Clone, Copy)]
pub struct RedisConnector;

impl Connector for RedisConnector {
    fn info(&self) -> &'static ConnectorInfo {
        const INFO: ConnectorInfo = ConnectorInfo {
            name: "redis",
            description:
                "Redis for live dashboards: a hash or string per row under a key template, a sorted set per window (leaderboards), or a stream/list append",
            options: OPTIONS,
            capabilities: Capabilities { roles: Roles::Sink, changes: SinkChanges::Updates, resume: Resume::Never, metadata: MetadataColumns::Unsupported },
        };
        &INFO
    }

    fn validate(&self, def: &TableDef, _table_use: TableUse) -> Result<(), BoxError> {
        RedisOptions::parse(def, &def.sink_schema())?;
        Ok(())
    }

    fn create_sink(&self, def: &TableDef, schema: SchemaRef) -> Result<Box<dyn Sink>, BoxError> {
        Ok(Box::new(RedisSink::try_new(def, schema)?))
    }

    fn lookups(&self) -> Lookups {
        Lookups::Supported
    }

    fn create_lookup(&self, def: &TableDef, schema: SchemaRef, keys: &[usize]) -> Result<Box<dyn Lookup>, BoxError> {
        Ok(Box::new(lookup::RedisLookup::try_new(def, schema, keys)?))
    }
}

/// The parsed `WITH` options of a Redis sink.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// The connection URL as written (it may hold a password: never log it).
    url: String,
    /// `host:port/db`, for messages.
    display_url: String,
    /// What each row writes.
    pub mode: RedisMode,
    key: Template,
    /// Columns written as hash fields / stream fields, or the string value / zset score.
    values: Vec<usize>,
    member: Option<Template>,
    stream_max_length: Option<u64>,
    /// Expiry of written keys.
    pub ttl: Option<Duration>,
    /// Rows per pipeline.
    pub batch_rows: usize,
    /// Retries of a failed write before giving up.
    pub max_retries: u32,
    /// `exactly-once`: the key of the epoch marker; `None` writes at once (at-least-once).
    pub epoch_key: Option<String>,
}

impl RedisOptions {
    /// Checks every option against the sink `schema` (no connection is made).
    pub fn parse(def: &TableDef, schema: &SchemaRef) -> Result<Self, ConnectorError> {
        let url = def.option("url").unwrap_or_default().trim().to_string();
        let info = ::redis::Client::open(url.as_str())
            .map_err(|e| ConnectorError::invalid("url", &url, format!("not a Redis URL ({e}); expected redis://host:port")))?;
        let display_url = info.get_connection_info().addr().to_string();
        let mode = match def.option("mode").unwrap_or("hash").trim().to_ascii_lowercase().as_str() {
            "hash" => RedisMode::Hash,
            "string" => RedisMode::String,
            "zset" => RedisMode::Zset,
            "stream" => RedisMode::Stream,
            "list" => RedisMode::List,
            other => return Err(ConnectorError::invalid("mode", other, "expected hash, string, zset, stream or list")),
        };
        let key = Template::parse("key", def.option("key").unwrap_or(&def.name), schema)?;
        let only = |option: &str, modes: &[RedisMode]| -> Result<(), ConnectorError> {
            match def.option(option) {
                Some(v) if !modes.contains(&mode) => Err(ConnectorError::invalid(option, v, format!("only used in mode {}", mode_names(modes)))),
                _ => Ok(()),
            }
        };
        only("value.fields", &[RedisMode::Hash, RedisMode::Stream])?;
        only("value.field", &[RedisMode::String])?;
        only("zset.score", &[RedisMode::Zset])?;
        only("zset.member", &[RedisMode::Zset])?;
        only("stream.max-length", &[RedisMode::Stream])?;
        let values = match mode {
            RedisMode::Hash | RedisMode::Stream => match def.option("value.fields") {
                Some(list) => list.split(',').map(|c| column("value.fields", c, schema)).collect::<Result<_, _>>()?,
                None => (0..schema.fields().len()).collect(),
            },
            RedisMode::String => match def.option("value.field") {
                Some(name) => vec![column("value.field", name, schema)?],
                None => {
                    let in_key: Vec<usize> = key.columns().collect();
                    let rest: Vec<usize> = (0..schema.fields().len()).filter(|i| !in_key.contains(i)).collect();
                    if rest.len() != 1 {
                        return Err(ConnectorError::invalid(
                            "value.field",
                            "",
                            format!("mode 'string' stores one column: name it with 'value.field' (columns: {})", column_names(schema)),
                        ));
                    }
                    rest
                }
            },
            RedisMode::Zset => {
                let name = def
                    .option("zset.score")
                    .ok_or_else(|| ConnectorError::invalid("zset.score", "", "mode 'zset' needs 'zset.score', the numeric column used as the score"))?;
                let index = column("zset.score", name, schema)?;
                let data_type = schema.field(index).data_type();
                if !(data_type.is_numeric()) {
                    return Err(ConnectorError::invalid("zset.score", name, format!("the score must be numeric, but the column is {data_type}")));
                }
                vec![index]
            }
            RedisMode::List => Vec::new(),
        };
        let member = match mode {
            RedisMode::Zset => {
                let text =
                    def.option("zset.member").ok_or_else(|| ConnectorError::invalid("zset.member", "", "mode 'zset' needs 'zset.member', e.g. '{bidder}'"))?;
                Some(Template::parse("zset.member", text, schema)?)
            }
            _ => None,
        };
        let ttl = opt(def, "ttl", parse_duration)?;
        if ttl.is_some_and(|t| t.as_millis() == 0) {
            return Err(ConnectorError::invalid("ttl", def.option("ttl").unwrap_or_default(), "must be at least 1 ms"));
        }
        Ok(RedisOptions {
            url,
            display_url,
            mode,
            key,
            values,
            member,
            stream_max_length: opt(def, "stream.max-length", parse_u64)?,
            ttl,
            batch_rows: opt(def, "sink.batch-rows", parse_positive)?.unwrap_or(10_000),
            max_retries: opt(def, "sink.max-retries", parse_u64)?.map_or(10, |n| n.min(u32::MAX as u64) as u32),
            epoch_key: match def.option("sink.delivery-guarantee").unwrap_or("at-least-once").trim() {
                "at-least-once" => None,
                "exactly-once" => Some(def.option("sink.epoch-key").map_or_else(|| format!("eddy:epoch:{}", def.name), str::to_string)),
                other => return Err(ConnectorError::invalid("sink.delivery-guarantee", other, "expected at-least-once or exactly-once")),
            },
        })
    }
}

fn mode_names(modes: &[RedisMode]) -> String {
    modes.iter().map(|m| format!("{m:?}").to_ascii_lowercase()).collect::<Vec<_>>().join(" or ")
}

/// Whether another attempt may succeed: the connection failed or the server is
/// busy, as opposed to a refusal (auth, wrong type, bad command).
fn retryable(e: &RedisError) -> bool {
    e.kind() != ErrorKind::AuthenticationFailed && !matches!(e.retry_method(), RetryMethod::NoRetry)
}

/// Writes rows to Redis; see the module docs.
pub struct RedisSink {
    options: RedisOptions,
    schema: SchemaRef,
    timestamp_format: String,
    client: ::redis::Client,
    connection: Option<ConnectionManager>,
    /// Exactly-once: rows held until their checkpoint is saved.
    epochs: HeldEpochs,
}

impl RedisSink {
    /// Checks the options; the connection is made on the first write.
    pub fn try_new(def: &TableDef, schema: SchemaRef) -> Result<Self, ConnectorError> {
        let options = RedisOptions::parse(def, &schema)?;
        let client = ::redis::Client::open(options.url.as_str()).map_err(|e| ConnectorError::redis(format!("Redis URL for table '{}'", def.name), e))?;
        Ok(RedisSink {
            timestamp_format: common_timestamp_format(&schema),
            epochs: HeldEpochs::new(Arc::clone(&schema)),
            options,
            schema,
            client,
            connection: None,
        })
    }

    async fn connection(&mut self) -> Result<&mut ConnectionManager, RedisError> {
        if self.connection.is_none() {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(5)))
                .set_response_timeout(Some(Duration::from_secs(60)))
                .set_number_of_retries(2)
                .set_max_delay(Duration::from_secs(1));
            self.connection = Some(ConnectionManager::new_with_config(self.client.clone(), config).await?);
        }
        self.connection.as_mut().ok_or_else(|| RedisError::from((ErrorKind::Client, "no connection")))
    }

    /// Sends `pipe`, retrying with backoff while the failure is one a retry can fix.
    async fn send(&mut self, pipe: &Pipeline, rows: usize) -> Result<(), ConnectorError> {
        let mut attempt = 0;
        loop {
            let result = match self.connection().await {
                Ok(connection) => pipe.query_async::<()>(connection).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => return Ok(()),
                Err(e) if retryable(&e) && attempt < self.options.max_retries => {
                    attempt += 1;
                    let delay = retry_delay(attempt);
                    tracing::warn!(
                        "redis {}: writing {rows} rows failed ({e}); retry {attempt} of {} in {delay:?}",
                        self.options.display_url,
                        self.options.max_retries
                    );
                    tokio::time::sleep(delay).await;
                }
                Err(e) => {
                    let tried = if attempt > 0 { format!(" after {attempt} retries") } else { String::new() };
                    return Err(ConnectorError::redis(format!("writing {rows} rows to Redis at {} failed{tried}", self.options.display_url), e));
                }
            }
        }
    }

    /// The commands for `batch`: pipelines of up to `'sink.batch-rows'` rows each, with their row counts.
    fn pipelines(&self, batch: &RecordBatch) -> Result<Vec<(Pipeline, usize)>, ConnectorError> {
        let ctx = "rendering rows for Redis";
        let values = formatters(batch).map_err(|e| ConnectorError::arrow(ctx, e))?;
        let json = match self.options.mode {
            RedisMode::List => json_rows(batch, &self.timestamp_format).map_err(|e| ConnectorError::arrow(ctx, e))?,
            _ => Vec::new(),
        };
        let scores = match self.options.mode {
            RedisMode::Zset => Some(cast(batch.column(self.options.values[0]), &DataType::Float64).map_err(|e| ConnectorError::arrow(ctx, e))?),
            _ => None,
        };
        let mut out = Vec::new();
        let mut from = 0;
        while from < batch.num_rows() {
            let to = (from + self.options.batch_rows).min(batch.num_rows());
            out.push((self.pipeline(batch, &values, &json, scores.as_deref(), from, to), to - from));
            from = to;
        }
        Ok(out)
    }

    /// The commands for rows `from..to` of `batch`.
    // `row` indexes the batch's columns, the formatters and the JSON rows alike.
    #[allow(clippy::needless_range_loop)]
    fn pipeline(&self, batch: &RecordBatch, values: &[ArrayFormatter<'_>], json: &[Vec<u8>], scores: Option<&dyn Array>, from: usize, to: usize) -> Pipeline {
        let options = &self.options;
        let fields = self.schema.fields();
        let ttl_ms = options.ttl.map(|t| t.as_millis() as u64);
        let mut pipe = ::redis::pipe();
        let mut key = String::new();
        let mut member = String::new();
        let mut value = String::new();
        for row in from..to {
            options.key.render(values, row, &mut key);
            match options.mode {
                RedisMode::Hash => {
                    let (mut set, mut del) = (::redis::cmd("HSET"), ::redis::cmd("HDEL"));
                    set.arg(&key);
                    del.arg(&key);
                    let (mut any_set, mut any_del) = (false, false);
                    for &c in &options.values {
                        if batch.column(c).is_null(row) {
                            del.arg(fields[c].name());
                            any_del = true;
                        } else {
                            set.arg(fields[c].name()).arg(render(&values[c], row, &mut value));
                            any_set = true;
                        }
                    }
                    if any_set {
                        pipe.add_command(set).ignore();
                    }
                    if any_del {
                        pipe.add_command(del).ignore();
                    }
                }
                RedisMode::String => {
                    let c = options.values[0];
                    if batch.column(c).is_null(row) {
                        pipe.del(&key).ignore();
                    } else {
                        pipe.set(&key, render(&values[c], row, &mut value)).ignore();
                    }
                }
                RedisMode::Zset => {
                    if let Some(template) = &options.member {
                        template.render(values, row, &mut member);
                    }
                    match scores.filter(|s| !s.is_null(row)) {
                        Some(s) => {
                            let score = s.as_primitive::<Float64Type>().value(row);
                            pipe.zadd(&key, &member, score).ignore();
                        }
                        None => {
                            pipe.zrem(&key, &member).ignore();
                        }
                    }
                }
                RedisMode::Stream => {
                    let mut xadd = ::redis::cmd("XADD");
                    xadd.arg(&key);
                    if let Some(max) = options.stream_max_length {
                        xadd.arg("MAXLEN").arg("~").arg(max);
                    }
                    xadd.arg("*");
                    let mut any = false;
                    for &c in &options.values {
                        if !batch.column(c).is_null(row) {
                            xadd.arg(fields[c].name()).arg(render(&values[c], row, &mut value));
                            any = true;
                        }
                    }
                    if any {
                        pipe.add_command(xadd).ignore();
                    }
                }
                RedisMode::List => {
                    pipe.rpush(&key, json[row].as_slice()).ignore();
                }
            }
            if let Some(ms) = ttl_ms {
                pipe.pexpire(&key, ms as i64).ignore();
            }
        }
        pipe
    }
}

impl RedisSink {
    async fn write_now(&mut self, batch: &RecordBatch) -> Result<(), ConnectorError> {
        // Commands are built first: the formatters borrow the batch and cannot
        // be held across the awaits of the round trips.
        let pipelines = self.pipelines(batch)?;
        for (pipe, rows) in pipelines {
            self.send(&pipe, rows).await?;
        }
        Ok(())
    }

    /// Writes the rows of checkpoint `epoch` and moves the marker to it in one
    /// transaction, unless the marker shows this run already did.
    async fn write_epoch(&mut self, epoch: u64, writes: &[ChangeBatch]) -> Result<(), ConnectorError> {
        let Some(marker) = self.options.epoch_key.clone() else { return Ok(()) };
        let done: Option<String> = {
            let connection = self.connection().await.map_err(|e| ConnectorError::redis(format!("reading {marker}"), e))?;
            ::redis::cmd("GET").arg(&marker).query_async(connection).await.map_err(|e| ConnectorError::redis(format!("reading {marker}"), e))?
        };
        if already_written(done.as_deref(), self.epochs.run(), epoch) {
            tracing::info!("redis {marker}: checkpoint {epoch} was already written; not again");
            return Ok(());
        }
        let mut all = ::redis::pipe();
        all.atomic();
        let mut rows = 0;
        for write in writes {
            for (pipe, n) in self.pipelines(write.rows())? {
                for command in pipe.cmd_iter() {
                    all.add_command(command.clone()).ignore();
                }
                rows += n;
            }
        }
        all.set(&marker, epochs::marker(self.epochs.run(), epoch)).ignore();
        self.send(&all, rows).await
    }
}

#[async_trait]
impl Sink for RedisSink {
    /// Upserts by key: the planner sends a Redis table no retractions.
    async fn write(&mut self, changes: ChangeBatch) -> Result<(), BoxError> {
        if self.options.epoch_key.is_some() {
            self.epochs.hold(changes);
            return Ok(());
        }
        Ok(self.write_now(&changes.into_upserts("the redis sink")?).await?)
    }

    /// Without checkpoints, held rows (exactly-once) go out now; other writes
    /// were acknowledged before `write` returned.
    async fn commit(&mut self) -> Result<(), BoxError> {
        // At the end of a bounded pipeline: what was prepared goes out first.
        let (prepared, held) = self.epochs.drain_all();
        for (epoch, writes) in prepared {
            self.write_epoch(epoch, &writes).await?;
        }
        for write in held {
            self.write_now(&write.into_upserts("the redis sink")?).await?;
        }
        Ok(())
    }

    /// Exactly-once: the rows of this checkpoint (and of earlier ones not yet
    /// written) are kept, and saved with the checkpoint with this run's name.
    async fn prepare(&mut self, checkpoint: u64) -> Result<Vec<u8>, BoxError> {
        if self.options.epoch_key.is_none() {
            return Ok(Vec::new());
        }
        self.epochs.prepare(checkpoint)
    }

    async fn commit_checkpoint(&mut self, checkpoint: u64) -> Result<(), BoxError> {
        for (epoch, writes) in self.epochs.saved(checkpoint) {
            self.write_epoch(epoch, &writes).await?;
        }
        Ok(())
    }

    /// Writes what the restored checkpoint held, as the run that held it, unless
    /// its marker shows it was written before the crash.
    async fn recover(&mut self, prepared: &[u8]) -> Result<(), BoxError> {
        if self.options.epoch_key.is_none() {
            return Ok(());
        }
        for (epoch, writes) in self.epochs.restore(prepared)? {
            self.write_epoch(epoch, &writes).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{Field, Schema};
    use std::sync::Arc;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("auction", DataType::Int64, false),
            Field::new("bidder", DataType::Utf8, true),
            Field::new("price", DataType::Float64, true),
        ]))
    }

    fn parse(opts: &[(&str, &str)]) -> Result<RedisOptions, ConnectorError> {
        let mut all = vec![("connector", "redis"), ("url", "redis://127.0.0.1:6379")];
        all.extend_from_slice(opts);
        let def = TableDef::from_fields("t", &schema().fields().iter().map(|f| f.as_ref().clone()).collect::<Vec<_>>(), &all);
        RedisOptions::parse(&def, &schema())
    }

    #[test]
    fn key_templates_resolve_columns() {
        let t = Template::parse("key", "bids:{auction}:{ bidder }!", &schema()).unwrap();
        assert_eq!(t.0, vec![Piece::Text("bids:".into()), Piece::Column(0), Piece::Text(":".into()), Piece::Column(1), Piece::Text("!".into())]);
        let e = Template::parse("key", "bids:{auctoin}", &schema()).unwrap_err().to_string();
        assert!(e.contains("'{auctoin}' names no column; columns: auction, bidder, price"), "{e}");
        assert!(Template::parse("key", "bids:{auction", &schema()).unwrap_err().to_string().contains("no closing"));
        assert!(Template::parse("key", "bids:auction}", &schema()).unwrap_err().to_string().contains("no opening"));
    }

    #[test]
    fn a_key_template_gives_its_scan_pattern_and_reads_its_columns_back() {
        let t = Template::parse("key", "bids[1]:{auction}:{bidder}!", &schema()).unwrap();
        assert_eq!(t.pattern(), "bids\\[1\\]:*:*!");
        assert_eq!(t.values_in("bids[1]:42:ann!"), Some(vec![(0, "42".to_string()), (1, "ann".to_string())]));
        assert_eq!(t.values_in("bids[1]:42:ann"), None, "the closing text is missing");
        assert_eq!(t.values_in("asks[1]:42:ann!"), None, "another prefix");
        let last = Template::parse("key", "user:{auction}", &schema()).unwrap();
        assert_eq!(last.values_in("user:7"), Some(vec![(0, "7".to_string())]));
        let adjacent = Template::parse("key", "{auction}{bidder}", &schema()).unwrap();
        assert_eq!(adjacent.values_in("42ann"), None, "no text tells where one column ends");
    }

    #[test]
    fn options_per_mode() {
        let o = parse(&[("key", "bids:{auction}")]).unwrap();
        assert_eq!((o.mode, o.values.clone()), (RedisMode::Hash, vec![0, 1, 2]));
        let o = parse(&[("mode", "hash"), ("key", "b:{auction}"), ("value.fields", "price, bidder")]).unwrap();
        assert_eq!(o.values, vec![2, 1]);
        let e = parse(&[("mode", "string"), ("key", "b:{auction}")]).unwrap_err().to_string();
        assert!(e.contains("name it with 'value.field'"), "{e}");
        let o = parse(&[("mode", "string"), ("key", "b:{auction}:{bidder}")]).unwrap();
        assert_eq!(o.values, vec![2], "the only column not in the key");
        let e = parse(&[("mode", "zset"), ("key", "top"), ("zset.member", "{bidder}")]).unwrap_err().to_string();
        assert!(e.contains("needs 'zset.score'"), "{e}");
        let e = parse(&[("mode", "zset"), ("key", "top"), ("zset.score", "bidder"), ("zset.member", "{bidder}")]).unwrap_err().to_string();
        assert!(e.contains("must be numeric"), "{e}");
        let e = parse(&[("mode", "hash"), ("zset.score", "price")]).unwrap_err().to_string();
        assert!(e.contains("only used in mode zset"), "{e}");
        let e = parse(&[("mode", "set")]).unwrap_err().to_string();
        assert!(e.contains("expected hash, string, zset, stream or list"), "{e}");
        let e = parse(&[("url", "http://x")]).unwrap_err().to_string();
        assert!(e.contains("not a Redis URL"), "{e}");
        assert_eq!(parse(&[("ttl", "1 h")]).unwrap().ttl, Some(Duration::from_secs(3600)));
    }
}
