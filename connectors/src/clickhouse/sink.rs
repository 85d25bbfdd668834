//! The ClickHouse sink: buffers rows as RowBinary and inserts them in batches; see
//! the [module docs](super) for the guarantees.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::datatypes::SchemaRef;
use eddy_engine::table::TableDef;
use eddy_engine::{BoxError, ChangeBatch, Sink};

use super::client::{parse_tab_separated, quote_identifier, quote_string, Client, ServerVersion};
use super::rowbinary::{self, ChType, ColumnTarget};
use super::{is_merge_tree, is_replicated, ClickHouseOptions};
use crate::epochs::{self, HeldEpochs};
use crate::error::ConnectorError;

/// How many recent INSERTs tables made by `'sink.create-table'` remember to
/// recognise a retried one (ClickHouse's default for replicated tables).
const DEDUPLICATION_WINDOW: u32 = 100;

/// Writes rows into one ClickHouse table; see the [module docs](super).
pub struct ClickHouseSink {
    options: ClickHouseOptions,
    schema: SchemaRef,
    client: Client,
    /// `` `db`.`table` ``.
    table: String,
    /// Tells this sink's INSERTs apart from any other's in deduplication tokens.
    sink_id: String,
    next_sequence: u64,
    /// What the server said on the first use: set once connected.
    server: Option<Server>,
    /// Encoded rows not yet sent.
    buffer: Vec<u8>,
    buffered_rows: usize,
    /// When the oldest buffered row arrived.
    oldest_buffered: Option<Instant>,
    /// An INSERT that failed: sent again (same token) before anything else.
    pending: Option<PendingInsert>,
    /// `exactly-once`: rows held until their checkpoint is saved.
    epochs: Option<HeldEpochs>,
    /// `exactly-once` without checkpoints: commits so far, to tag each one's rows.
    commits: u64,
}

/// The facts about the server and table the sink learns when it connects.
struct Server {
    version: ServerVersion,
    /// The sink's columns with the types the ClickHouse table has.
    columns: Vec<ColumnTarget>,
    insert_query: String,
    /// `exactly-once`: the INSERT with the epoch column last.
    epoch_insert_query: Option<String>,
}

/// One encoded INSERT, kept until the server acknowledges it.
struct PendingInsert {
    body: Vec<u8>,
    rows: usize,
    token: String,
}

impl ClickHouseSink {
    /// Checks the options; connects on the first write or commit.
    pub fn try_new(def: &TableDef, schema: SchemaRef) -> Result<ClickHouseSink, ConnectorError> {
        let options = ClickHouseOptions::parse(def, &schema)?;
        let table = format!("{}.{}", quote_identifier(&options.database), quote_identifier(&options.table));
        let client = Client::new(options.url.clone(), table.clone(), options.username.clone(), options.password.clone(), options.max_retries)?;
        let readable: String = options.table.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(32).collect();
        let epochs = options.epoch_column.is_some().then(|| HeldEpochs::new(Arc::clone(&schema)));
        Ok(ClickHouseSink {
            epochs,
            sink_id: format!("eddy-{readable}-{:016x}", rand::random::<u64>()),
            options,
            schema,
            client,
            table,
            next_sequence: 0,
            server: None,
            buffer: Vec::new(),
            buffered_rows: 0,
            oldest_buffered: None,
            pending: None,
            commits: 0,
        })
    }

    /// `cannot write to ClickHouse table ... at URL`, the context of setup errors.
    fn setup_error(&self, reason: impl Into<String>) -> ConnectorError {
        ConnectorError::clickhouse(format!("cannot write to ClickHouse table {} at {}", self.table, self.client.label()), reason)
    }

    /// Learns the server version and the table's columns (creating the table when
    /// asked to), once.
    async fn connect(&mut self) -> Result<(), ConnectorError> {
        if self.server.is_some() {
            return Ok(());
        }
        let answer = self.client.query("cannot read the ClickHouse server version", "SELECT version()", &[]).await?;
        let version = ServerVersion::parse(&answer).ok_or_else(|| self.setup_error(format!("unexpected answer to SELECT version(): '{}'", answer.trim())))?;
        if self.options.create_table {
            self.create_table(version).await?;
        }
        let sql = format!(
            "SELECT name, type FROM system.columns WHERE database = {} AND table = {} FORMAT TabSeparated",
            quote_string(&self.options.database),
            quote_string(&self.options.table)
        );
        let what = format!("cannot read the columns of ClickHouse table {}", self.table);
        let rows = parse_tab_separated(&self.client.query(&what, &sql, &[]).await?);
        if rows.is_empty() {
            return Err(self.setup_error(if self.options.create_table {
                "the table does not exist after CREATE TABLE IF NOT EXISTS".to_string()
            } else {
                "the table does not exist; create it, or set 'sink.create-table' = 'true'".to_string()
            }));
        }
        let mut columns = Vec::with_capacity(self.schema.fields().len());
        for field in self.schema.fields() {
            let Some(server_type) = rows.iter().find(|r| r.first() == Some(field.name())).and_then(|r| r.get(1)) else {
                let known: Vec<&str> = rows.iter().filter_map(|r| r.first().map(String::as_str)).collect();
                return Err(self.setup_error(format!("column '{}' does not exist in the ClickHouse table, which has: {}", field.name(), known.join(", "))));
            };
            let ch_type = ChType::parse(server_type);
            rowbinary::check_compatible(field.data_type(), &ch_type).map_err(|e| self.setup_error(format!("column '{}': {e}", field.name())))?;
            columns.push(ColumnTarget { name: field.name().clone(), ch_type });
        }
        let mut names: Vec<String> = columns.iter().map(|c| quote_identifier(&c.name)).collect();
        let insert_query = format!("INSERT INTO {} ({}) FORMAT RowBinary", self.table, names.join(", "));
        let epoch_insert_query = match &self.options.epoch_column {
            Some(epoch) => {
                let server_type = rows.iter().find(|r| r.first() == Some(epoch)).and_then(|r| r.get(1)).map(|t| ChType::parse(t));
                let string = matches!(&server_type, Some(ChType::String))
                    || matches!(&server_type, Some(ChType::LowCardinality(inner)) if matches!(**inner, ChType::String));
                if !string {
                    return Err(self.setup_error(format!(
                        "exactly-once needs a String column '{epoch}' in the ClickHouse table to tag rows with their checkpoint; add it (ALTER TABLE {} ADD COLUMN {} String) or let 'sink.create-table' make the table",
                        self.table,
                        quote_identifier(epoch)
                    )));
                }
                names.push(quote_identifier(epoch));
                Some(format!("INSERT INTO {} ({}) FORMAT RowBinary", self.table, names.join(", ")))
            }
            None => None,
        };
        tracing::debug!(url = %self.client.label(), table = %self.table, major = version.major, minor = version.minor, "connected to ClickHouse");
        self.server = Some(Server { version, columns, insert_query, epoch_insert_query });
        Ok(())
    }

    /// `CREATE TABLE IF NOT EXISTS` from the sink's columns.
    async fn create_table(&self, version: ServerVersion) -> Result<(), ConnectorError> {
        let options = &self.options;
        let engine_columns = super::engine_columns(&options.table_engine)?;
        let mut columns = Vec::with_capacity(self.schema.fields().len());
        for field in self.schema.fields() {
            let name = field.name();
            let base = rowbinary::default_type(field.data_type(), version.has_datetime64()).ok_or_else(|| ConnectorError::UnsupportedType {
                connector: "clickhouse".to_string(),
                column: name.clone(),
                data_type: field.data_type().to_string(),
            })?;
            // Sorting keys and engine columns (versions, signs) cannot be Nullable:
            // a NULL in them is reported when it is written.
            let is_key = options.order_by.contains(name) || engine_columns.contains(name);
            let mut ch_type = if field.is_nullable() && !is_key { ChType::Nullable(Box::new(base)) } else { base };
            if options.low_cardinality.contains(name) {
                ch_type = ChType::LowCardinality(Box::new(ch_type));
            }
            columns.push(format!("{} {ch_type}", quote_identifier(name)));
        }
        if let Some(epoch) = &options.epoch_column {
            columns.push(format!("{} String", quote_identifier(epoch)));
        }
        let mut sql = format!("CREATE TABLE IF NOT EXISTS {} ({}) ENGINE = {}", self.table, columns.join(", "), options.table_engine);
        if is_merge_tree(&options.table_engine) {
            if options.order_by.is_empty() {
                sql.push_str(" ORDER BY tuple()");
            } else {
                let key: Vec<String> = options.order_by.iter().map(|c| quote_identifier(c)).collect();
                sql.push_str(&format!(" ORDER BY ({})", key.join(", ")));
            }
            if !is_replicated(&options.table_engine) && version.has_deduplication_token() {
                sql.push_str(&format!(" SETTINGS non_replicated_deduplication_window = {DEDUPLICATION_WINDOW}"));
            }
        }
        let mut settings = Vec::new();
        if !options.low_cardinality.is_empty() && version.low_cardinality_is_experimental() {
            settings.push(("allow_experimental_low_cardinality_type", "1"));
        }
        tracing::info!(url = %self.client.label(), %sql, "creating the ClickHouse table");
        self.client.query(&format!("cannot create ClickHouse table {}", self.table), &sql, &settings).await?;
        Ok(())
    }

    /// Encodes `batch` into the buffer; on error the buffer is left as it was.
    fn encode(&mut self, batch: &RecordBatch) -> Result<(), ConnectorError> {
        let Some(server) = &self.server else {
            return Err(self.setup_error("not connected (this is a bug in Eddy)"));
        };
        let mark = self.buffer.len();
        if let Err(reason) = rowbinary::encode_batch(batch, &server.columns, &mut self.buffer) {
            self.buffer.truncate(mark);
            return Err(ConnectorError::clickhouse(format!("cannot write rows to ClickHouse table {}", self.table), reason));
        }
        self.buffered_rows += batch.num_rows();
        self.oldest_buffered.get_or_insert_with(Instant::now);
        Ok(())
    }

    /// Inserts every buffered row (and first any INSERT that failed before).
    async fn flush(&mut self) -> Result<(), ConnectorError> {
        if let Some(pending) = &self.pending {
            Self::send(&self.client, self.server.as_ref(), &self.table, pending).await?;
            self.pending = None;
        }
        if self.buffered_rows == 0 {
            return Ok(());
        }
        let token = format!("{}-{}", self.sink_id, self.next_sequence);
        self.next_sequence += 1;
        let pending = PendingInsert { body: std::mem::take(&mut self.buffer), rows: self.buffered_rows, token };
        self.buffered_rows = 0;
        self.oldest_buffered = None;
        // Kept until acknowledged: a failed INSERT is sent again, with its token, by
        // the next flush.
        let pending = self.pending.insert(pending);
        Self::send(&self.client, self.server.as_ref(), &self.table, pending).await?;
        self.pending = None;
        Ok(())
    }

    /// Sends one INSERT with its deduplication token (when the server knows them).
    async fn send(client: &Client, server: Option<&Server>, table: &str, pending: &PendingInsert) -> Result<(), ConnectorError> {
        let Some(server) = server else {
            return Err(ConnectorError::clickhouse(format!("cannot insert into ClickHouse table {table}"), "not connected (this is a bug in Eddy)"));
        };
        let mut params = vec![("query", server.insert_query.as_str())];
        if server.version.has_deduplication_token() {
            params.push(("insert_deduplication_token", pending.token.as_str()));
        }
        let what = format!("cannot insert {} rows into ClickHouse table {table}", pending.rows);
        client.send(&what, &params, &pending.body).await?;
        tracing::debug!(url = %client.label(), %table, rows = pending.rows, token = %pending.token, "inserted into ClickHouse");
        Ok(())
    }

    /// Exactly-once: inserts `writes` tagged `tag` in one INSERT of one block (so
    /// it lands whole or not at all), unless rows with that tag are there already
    /// when `check` is set (after a restart) or a failed attempt turns out to have landed.
    async fn insert_epoch(&mut self, tag: &str, writes: &[ChangeBatch], check: bool) -> Result<(), ConnectorError> {
        self.connect().await?;
        let rows: usize = writes.iter().map(ChangeBatch::num_rows).sum();
        if rows == 0 {
            return Ok(());
        }
        let (Some(server), Some(epoch_column)) = (&self.server, &self.options.epoch_column) else { return Ok(()) };
        let landed = landed_query(&self.table, epoch_column, tag);
        let mut targets = server.columns.clone();
        targets.push(ColumnTarget { name: epoch_column.clone(), ch_type: ChType::String });
        let mut body = Vec::new();
        for write in writes {
            let mut columns = write.rows().columns().to_vec();
            columns.push(Arc::new(StringArray::from(vec![tag; write.num_rows()])) as ArrayRef);
            let tagged = RecordBatch::try_from_iter(targets.iter().map(|t| t.name.clone()).zip(columns))
                .map_err(|e| ConnectorError::arrow("tagging rows with their checkpoint", e))?;
            rowbinary::encode_batch(&tagged, &targets, &mut body)
                .map_err(|reason| ConnectorError::clickhouse(format!("cannot write rows to ClickHouse table {}", self.table), reason))?;
        }
        let block = (rows + 1).to_string();
        let query = server.epoch_insert_query.clone().unwrap_or_default();
        let params = [("query", query.as_str()), ("max_insert_block_size", block.as_str()), ("min_insert_block_size_rows", block.as_str())];
        let what = format!("cannot insert {rows} rows of checkpoint {tag} into ClickHouse table {}", self.table);
        self.client.send_unless(&what, &params, &body, Some(&landed), check).await?;
        tracing::debug!(table = %self.table, rows, tag, "inserted a checkpoint's rows into ClickHouse");
        Ok(())
    }

    /// Whether rows tagged `tag` are in the table.
    async fn has_tag(&mut self, tag: &str) -> Result<bool, ConnectorError> {
        self.connect().await?;
        let Some(epoch_column) = &self.options.epoch_column else { return Ok(false) };
        let what = format!("cannot read the checkpoint tags of ClickHouse table {}", self.table);
        let answer = self.client.query(&what, &landed_query(&self.table, epoch_column, tag), &[]).await?;
        Ok(super::client::counts_rows(&answer))
    }

    /// Whether the oldest buffered row has waited `'sink.flush-interval'`.
    fn interval_passed(&self) -> bool {
        self.oldest_buffered.is_some_and(|since| since.elapsed() >= self.options.flush_interval)
    }
}

/// `SELECT count()` of the rows of `table` tagged `tag` in `column`: whether an epoch's INSERT landed.
fn landed_query(table: &str, column: &str, tag: &str) -> String {
    format!("SELECT count() FROM {table} WHERE {} = {}", quote_identifier(column), quote_string(tag))
}

#[async_trait]
impl Sink for ClickHouseSink {
    /// Upserts by key (a ReplacingMergeTree keeps the last): the planner sends a
    /// ClickHouse table no retractions.
    async fn write(&mut self, changes: ChangeBatch) -> Result<(), BoxError> {
        let batch = changes.into_upserts("the clickhouse sink")?;
        if batch.num_rows() > 0 && batch.num_columns() != self.schema.fields().len() {
            return Err(self.setup_error(format!("a batch has {} columns, the table {}", batch.num_columns(), self.schema.fields().len())).into());
        }
        if let Some(epochs) = &mut self.epochs {
            epochs.hold(ChangeBatch::inserts(batch));
            return Ok(());
        }
        if batch.num_rows() > 0 {
            self.connect().await?;
            let mut offset = 0;
            while offset < batch.num_rows() {
                let rows = (batch.num_rows() - offset).min(self.options.batch_rows.saturating_sub(self.buffered_rows).max(1));
                self.encode(&batch.slice(offset, rows))?;
                offset += rows;
                if self.buffered_rows >= self.options.batch_rows {
                    self.flush().await?;
                }
            }
        }
        if self.interval_passed() {
            self.flush().await?;
        }
        Ok(())
    }

    /// Exactly-once: what was prepared, then what was written since, each
    /// checkpoint's rows in one tagged INSERT.
    async fn commit(&mut self) -> Result<(), BoxError> {
        self.connect().await?;
        let Some(epochs) = &mut self.epochs else {
            self.flush().await?;
            return Ok(());
        };
        let run = epochs.run().to_string();
        let (prepared, held) = epochs.drain_all();
        for (epoch, writes) in prepared {
            self.insert_epoch(&epochs::marker(&run, epoch), &writes, false).await?;
        }
        self.commits += 1;
        self.insert_epoch(&format!("{run}:commit-{}", self.commits), &held, false).await?;
        Ok(())
    }

    async fn prepare(&mut self, checkpoint: u64) -> Result<Vec<u8>, BoxError> {
        match &mut self.epochs {
            Some(epochs) => epochs.prepare(checkpoint),
            None => {
                self.commit().await?;
                Ok(Vec::new())
            }
        }
    }

    async fn commit_checkpoint(&mut self, checkpoint: u64) -> Result<(), BoxError> {
        let Some(epochs) = &mut self.epochs else { return Ok(()) };
        let run = epochs.run().to_string();
        for (epoch, writes) in epochs.saved(checkpoint) {
            self.insert_epoch(&epochs::marker(&run, epoch), &writes, false).await?;
        }
        Ok(())
    }

    /// Inserts the restored checkpoints' rows unless rows with their tag are there.
    async fn recover(&mut self, prepared: &[u8]) -> Result<(), BoxError> {
        let Some(epochs) = &mut self.epochs else { return Ok(()) };
        let restored = epochs.restore(prepared)?;
        let run = epochs.run().to_string();
        if !restored.is_empty() && self.has_tag(&epochs::marker(&run, epochs::FINAL)).await? {
            tracing::info!(table = %self.table, "the run's last INSERT landed before the restart; what it replays is not inserted again");
            if let Some(epochs) = &mut self.epochs {
                epochs.mark_replayed();
            }
            return Ok(());
        }
        for (epoch, writes) in restored {
            self.insert_epoch(&epochs::marker(&run, epoch), &writes, true).await?;
        }
        Ok(())
    }
}
