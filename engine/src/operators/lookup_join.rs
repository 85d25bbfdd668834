//! The lookup join (see [`crate::plan::JoinBound::Lookup`]): Flink's
//! `LookupJoin`, for `JOIN dim FOR SYSTEM_TIME AS OF o.proc_time ON o.k = dim.k`.
//! Each batch of probe rows asks the table for the keys it does not find in the
//! cache, all at once (see [`crate::lookup`]); every row then meets the rows its
//! key has, if the rest of the `ON` condition holds; a LEFT join pads a row that
//! meets none. The table's filters and projections in the query apply to the
//! rows it returns. Nothing is kept but the cache: the output is what the table
//! held when each row came (processing time), and a replay after a crash asks
//! again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{Array, ArrayRef, UInt32Array};
use datafusion::arrow::compute::{cast, filter_record_batch, take_record_batch};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};

use super::join_rows::{JoinRows, Picked, StoredBatches};
use super::rows::{RowBytes, RowMap};
use super::{evaluate, evaluate_predicate};
use crate::changelog::ChangeBatch;
use crate::error::{EngineError, Result};
use crate::lookup::{CacheMode, FullTableLoader, LookupCache, LookupClient, LookupTable};
use crate::operator::{Emitter, Operator};
use crate::plan::{JoinNode, JoinSide, SourceNode, StreamNode};

const NAME: &str = "LookupJoin";

/// One step from the table's stored rows to the rows the join sees.
enum Step {
    Filter(Arc<dyn datafusion::physical_expr::PhysicalExpr>),
    Project(Vec<Arc<dyn datafusion::physical_expr::PhysicalExpr>>, SchemaRef),
}

/// The lookup join operator; see the module docs.
pub struct LookupJoinOperator {
    join: JoinRows,
    probe: JoinSide,
    table: SourceNode,
    /// From the stored rows up: the table's filters and projections, in order.
    steps: Vec<Step>,
    /// The key columns as the store is asked for them.
    key_schema: SchemaRef,
    reads: Reads,
}

/// How the table's rows are read.
enum Reads {
    /// Keys are asked for as rows come, answers kept as the cache says.
    ByKey { client: LookupClient, cache: LookupCache },
    /// The whole table, loaded again from time to time (`'lookup.cache' = 'FULL'`),
    /// indexed once the first load is needed.
    Whole { loader: FullTableLoader, index: Option<WholeTable> },
}

/// A whole table's visible rows, and each key's rows among them.
struct WholeTable {
    rows: RecordBatch,
    by_key: RowMap<Vec<u32>>,
}

impl LookupJoinOperator {
    /// A lookup join for `node`, reading `table`.
    pub fn new(node: JoinNode, table: &LookupTable) -> Result<Self> {
        let probe = node.looked_up().map(JoinSide::other).ok_or_else(|| EngineError::Internal("a lookup join was planned for another join".into()))?;
        let (chain, source) = node.lookup_side().ok_or_else(|| EngineError::Internal("a lookup join without a table to look up".into()))?;
        let source = source.clone();
        let key_columns = node.lookup_key_columns().map_err(EngineError::Unsupported)?;
        let key_schema = Arc::new(Schema::new(key_columns.iter().map(|&i| source.physical_schema.field(i).clone()).collect::<Vec<Field>>()));
        // Applied from the stored rows up: the reverse of the join's view down.
        let steps = chain
            .into_iter()
            .rev()
            .filter_map(|step| match step {
                StreamNode::Filter { predicate, .. } => Some(Step::Filter(Arc::clone(predicate))),
                StreamNode::Project { exprs, schema, .. } => Some(Step::Project(exprs.clone(), Arc::clone(schema))),
                _ => None,
            })
            .collect();
        let lookup = (table.open)().map_err(|e| EngineError::Lookup { table: source.table.name.clone(), message: e.to_string() })?;
        let reads = match table.options.cache {
            CacheMode::Full => Reads::Whole { loader: FullTableLoader::start(lookup, &table.options, &source.table.name)?, index: None },
            CacheMode::None | CacheMode::Partial => {
                Reads::ByKey { client: LookupClient::start(lookup, &table.options, &source.table.name)?, cache: LookupCache::new(&table.options) }
            }
        };
        Ok(LookupJoinOperator { join: JoinRows::new(node, NAME)?, probe, table: source, steps, key_schema, reads })
    }

    /// The whole table as the join sees it, indexed by its side's join keys.
    fn index(&self, rows: RecordBatch) -> Result<WholeTable> {
        let count = rows.num_rows() as u32;
        let (rows, _) = self.visible(rows, (0..count).collect())?;
        let mut by_key: RowMap<Vec<u32>> = RowMap::default();
        for (row, key) in self.join.key_rows(self.probe.other(), &rows)?.into_iter().enumerate() {
            if let Some(key) = key {
                by_key.entry(key).or_default().push(row as u32);
            }
        }
        Ok(WholeTable { rows, by_key })
    }

    /// The whole table's rows for each key of `keys`, from its newest load.
    fn rows_from_whole(&mut self, keys: &[Option<RowBytes>]) -> Result<RowMap<RecordBatch>> {
        let Reads::Whole { loader, index } = &self.reads else { return Err(EngineError::Internal("a lookup join reads its table by key".into())) };
        let load = match index {
            None => Some(loader.first()?),
            Some(_) => loader.newer()?,
        };
        if let Some(load) = load {
            let whole = self.index(load)?;
            if let Reads::Whole { index, .. } = &mut self.reads {
                *index = Some(whole);
            }
        }
        let Reads::Whole { index: Some(whole), .. } = &self.reads else { return Err(EngineError::Internal("a lookup join's table was not loaded".into())) };
        let mut found: RowMap<RecordBatch> = RowMap::default();
        for key in keys.iter().flatten() {
            if found.contains_key(key) {
                continue;
            }
            if let Some(rows) = whole.by_key.get(key) {
                let rows = take_record_batch(&whole.rows, &UInt32Array::from(rows.clone())).map_err(|e| self.join.arrow(e))?;
                found.insert(key.clone(), rows);
            }
        }
        Ok(found)
    }

    /// The rows the join sees of the table's stored `rows`: computed columns, then
    /// the query's filters and projections; `key_of_row` follows the rows kept.
    fn visible(&self, rows: RecordBatch, mut key_of_row: Vec<u32>) -> Result<(RecordBatch, Vec<u32>)> {
        let mut columns: Vec<ArrayRef> = rows.columns().to_vec();
        for expr in &self.table.computed {
            columns.push(evaluate(expr, &rows, NAME)?);
        }
        let options = RecordBatchOptions::new().with_row_count(Some(rows.num_rows()));
        let mut batch = RecordBatch::try_new_with_options(Arc::clone(&self.table.schema), columns, &options).map_err(|e| self.join.arrow(e))?;
        for step in &self.steps {
            batch = match step {
                Step::Filter(predicate) => {
                    let keep = evaluate_predicate(predicate, &batch, NAME)?;
                    key_of_row = key_of_row.into_iter().enumerate().filter(|(i, _)| keep.is_valid(*i) && keep.value(*i)).map(|(_, k)| k).collect();
                    filter_record_batch(&batch, &keep).map_err(|e| self.join.arrow(e))?
                }
                Step::Project(exprs, schema) => {
                    let columns = exprs.iter().map(|e| evaluate(e, &batch, NAME)).collect::<Result<Vec<_>>>()?;
                    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
                    RecordBatch::try_new_with_options(Arc::clone(schema), columns, &options).map_err(|e| self.join.arrow(e))?
                }
            };
        }
        Ok((batch, key_of_row))
    }

    /// The table's rows for each distinct key of `keys` (from the cache, or asked for).
    fn rows_by_key(&mut self, batch: &RecordBatch, keys: &[Option<RowBytes>]) -> Result<RowMap<RecordBatch>> {
        let Reads::ByKey { cache, .. } = &self.reads else { return self.rows_from_whole(keys) };
        let now = Instant::now();
        let mut found: RowMap<RecordBatch> = RowMap::default();
        // Each key not cached, once, with the first row that has it.
        let mut asked: Vec<(RowBytes, u32)> = Vec::new();
        let mut seen: std::collections::HashSet<&RowBytes> = std::collections::HashSet::new();
        for (i, key) in keys.iter().enumerate() {
            let Some(key) = key else { continue };
            if !seen.insert(key) {
                continue;
            }
            match cache.get(key, now) {
                Some(rows) => {
                    found.insert(key.clone(), rows.clone());
                }
                None => asked.push((key.clone(), i as u32)),
            }
        }
        if asked.is_empty() {
            return Ok(found);
        }
        // The keys asked, as the table's key columns, one row each.
        let rows = UInt32Array::from(asked.iter().map(|(_, i)| *i).collect::<Vec<_>>());
        let mut columns = Vec::new();
        for (expr, field) in self.join.node.keys(self.probe).iter().zip(self.key_schema.fields()) {
            let picked = datafusion::arrow::compute::take(&evaluate(expr, batch, NAME)?, &rows, None).map_err(|e| self.join.arrow(e))?;
            columns.push(if picked.data_type() == field.data_type() { picked } else { cast(&picked, field.data_type()).map_err(|e| self.join.arrow(e))? });
        }
        let key_batch = RecordBatch::try_new(Arc::clone(&self.key_schema), columns).map_err(|e| self.join.arrow(e))?;
        let Reads::ByKey { client, .. } = &self.reads else { return Err(EngineError::Internal("a lookup join reads its table whole".into())) };
        let answer = client.lookup(key_batch)?;
        let (visible, key_of_row) = self.visible(answer.rows, answer.key_of_row)?;
        let mut rows_of_key: Vec<Vec<u32>> = vec![Vec::new(); asked.len()];
        for (row, &key) in key_of_row.iter().enumerate() {
            if let Some(rows) = rows_of_key.get_mut(key as usize) {
                rows.push(row as u32);
            }
        }
        for ((key, _), mine) in asked.into_iter().zip(rows_of_key) {
            let rows = take_record_batch(&visible, &UInt32Array::from(mine)).map_err(|e| self.join.arrow(e))?;
            if let Reads::ByKey { cache, .. } = &mut self.reads {
                cache.put(key.clone(), rows.clone(), now);
            }
            found.insert(key, rows);
        }
        Ok(found)
    }

    /// The joined rows of one run of probe rows of one kind.
    fn join_rows(&mut self, batch: &RecordBatch) -> Result<Vec<RecordBatch>> {
        let keys = self.join.key_rows(self.probe, batch)?;
        let found = self.rows_by_key(batch, &keys)?;
        let mut stored = StoredBatches::default();
        let mut ids: HashMap<&RowBytes, u64> = HashMap::new();
        let (mut incoming, mut there) = (Vec::new(), Vec::new());
        for (i, key) in keys.iter().enumerate() {
            let Some(rows) = key.as_ref().and_then(|k| found.get(k).map(|rows| (k, rows))) else { continue };
            let (key, rows) = rows;
            if rows.num_rows() == 0 {
                continue;
            }
            let id = *ids.entry(key).or_insert_with(|| stored.add(rows, rows.num_rows()));
            for r in 0..rows.num_rows() {
                incoming.push(i as u32);
                there.push((id, r as u32));
            }
        }
        let incoming = UInt32Array::from(incoming);
        let kept: Vec<usize> = if incoming.is_empty() {
            Vec::new()
        } else {
            let keep = self.join.filter_pairs(self.probe, batch, &incoming, Picked::stored(&stored, &there))?;
            (0..keep.len()).filter(|&p| keep.is_valid(p) && keep.value(p)).collect()
        };
        let mut out = Vec::new();
        if !kept.is_empty() {
            let here = UInt32Array::from(kept.iter().map(|&p| incoming.value(p)).collect::<Vec<_>>());
            let pairs: Vec<(u64, u32)> = kept.iter().map(|&p| there[p]).collect();
            out.push(self.join.pairs(self.probe, Picked::Incoming(batch, &here), Picked::stored(&stored, &pairs), here.len())?);
        }
        if self.join.node.join_type.keeps_unmatched(self.probe) {
            let mut met = vec![false; batch.num_rows()];
            for &p in &kept {
                met[incoming.value(p) as usize] = true;
            }
            let alone = UInt32Array::from((0..batch.num_rows() as u32).filter(|&i| !met[i as usize]).collect::<Vec<_>>());
            if !alone.is_empty() {
                out.push(self.join.padded(self.probe, Picked::Incoming(batch, &alone), alone.len())?);
            }
        }
        Ok(out)
    }
}

impl Operator for LookupJoinOperator {
    fn name(&self) -> &str {
        NAME
    }

    /// Each run of rows of one kind is joined, and its output keeps the kind.
    fn on_rows(&mut self, rows: ChangeBatch, out: &mut Emitter) -> Result<()> {
        for (kind, batch) in rows.runs() {
            for joined in self.join_rows(&batch)? {
                out.changes(ChangeBatch::all(kind, joined));
            }
        }
        Ok(())
    }
}
