//! What every join operator does with rows, whatever bounds its state: encode
//! each side's keys the same way, keep rows in the batches they arrived in,
//! evaluate the rest of the `ON` condition on candidate pairs, and build output
//! rows from picks of both sides (or one side padded with NULLs). The interval
//! join ([`super::interval_join`]) and the regular join ([`super::regular_join`])
//! differ only in when a stored row leaves and what a match emits.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{new_null_array, Array, ArrayRef, BooleanArray, UInt32Array};
use datafusion::arrow::compute::{cast, interleave, take};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::arrow::row::Rows;
use datafusion::common::JoinSide as FilterSide;

use super::rows::{Codec, RowBytes};
use super::{arrow_error, evaluate, evaluate_predicate};
use crate::error::{EngineError, Result};
use crate::plan::{JoinNode, JoinSide};

/// Stored rows of one side, in the batches they arrived in (shared, not copied):
/// a batch is dropped when its last stored row leaves.
#[derive(Default)]
pub(super) struct StoredBatches {
    batches: HashMap<u64, (RecordBatch, usize), foldhash::fast::RandomState>,
    next: u64,
    bytes: usize,
}

impl StoredBatches {
    /// Keeps `batch`, of which `rows` rows are stored; returns its id.
    pub(super) fn add(&mut self, batch: &RecordBatch, rows: usize) -> u64 {
        let id = self.next;
        self.next += 1;
        self.bytes += batch.get_array_memory_size();
        self.batches.insert(id, (batch.clone(), rows));
        id
    }

    /// One stored row of batch `id` left.
    pub(super) fn release(&mut self, id: u64) {
        if let Some((stored, live)) = self.batches.get_mut(&id) {
            *live -= 1;
            if *live == 0 {
                self.bytes = self.bytes.saturating_sub(stored.get_array_memory_size());
                self.batches.remove(&id);
            }
        }
    }

    /// Bytes of the batches kept.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The stored batches by id, and the `(batch index, row)` pairs that pick `rows` out of them.
    fn picks(&self, rows: &[(u64, u32)]) -> (Vec<&RecordBatch>, Vec<(usize, usize)>) {
        let mut order: HashMap<u64, usize> = HashMap::new();
        let mut batches = Vec::new();
        let picks = rows
            .iter()
            .map(|(batch, row)| {
                let index = *order.entry(*batch).or_insert_with(|| {
                    batches.push(&self.batches[batch].0);
                    batches.len() - 1
                });
                (index, *row as usize)
            })
            .collect();
        (batches, picks)
    }
}

/// Rows of one side picked for output: the incoming batch's rows by index, or
/// stored ones (the batches they are in, and which row of which).
pub(super) enum Picked<'a> {
    Incoming(&'a RecordBatch, &'a UInt32Array),
    Stored { batches: Vec<&'a RecordBatch>, picks: Vec<(usize, usize)> },
    Absent(usize),
}

impl<'a> Picked<'a> {
    /// Stored rows `rows` (batch id, row) of `stored`, located once for all the columns taken from them.
    pub(super) fn stored(stored: &'a StoredBatches, rows: &[(u64, u32)]) -> Self {
        let (batches, picks) = stored.picks(rows);
        Picked::Stored { batches, picks }
    }

    fn column(&self, schema: &SchemaRef, index: usize, name: &str) -> Result<ArrayRef> {
        match self {
            Picked::Incoming(batch, rows) => take(batch.column(index), rows, None).map_err(|e| arrow_error(name, e)),
            Picked::Stored { batches, picks } => {
                if picks.is_empty() {
                    return Ok(new_null_array(schema.field(index).data_type(), 0));
                }
                let arrays: Vec<&dyn Array> = batches.iter().map(|b| b.column(index).as_ref()).collect();
                interleave(&arrays, picks).map_err(|e| arrow_error(name, e))
            }
            Picked::Absent(rows) => Ok(new_null_array(schema.field(index).data_type(), *rows)),
        }
    }
}

/// A batch's join keys (see [`JoinRows::keys`]).
pub(super) struct EncodedKeys {
    /// `None` for a join without keys: every row's key is empty.
    rows: Option<Rows>,
    valid: Vec<bool>,
}

impl EncodedKeys {
    /// Row `i`'s key; `None` where a key column is NULL.
    pub(super) fn get(&self, i: usize) -> Option<&[u8]> {
        if !self.valid[i] {
            return None;
        }
        Some(self.rows.as_ref().map_or(&[][..], |rows| rows.row(i).data()))
    }
}

/// The join's shape, as its operators use it: each side's schema, the key encoder, the output.
pub(super) struct JoinRows {
    pub(super) node: JoinNode,
    pub(super) name: &'static str,
    schemas: [SchemaRef; 2],
    keys: Codec,
    key_types: Vec<DataType>,
}

impl JoinRows {
    /// The rows of `node`'s join, for operator `name` (which errors name).
    pub(super) fn new(node: JoinNode, name: &'static str) -> Result<Self> {
        let schemas = [node.left.schema(), node.right.schema()];
        let key_types = node.left_keys.iter().map(|k| k.data_type(&schemas[0]).map_err(|e| EngineError::execution(name, e))).collect::<Result<Vec<_>>>()?;
        let keys = Codec::new(if key_types.is_empty() { vec![DataType::Boolean] } else { key_types.clone() })?;
        Ok(JoinRows { node, name, schemas, keys, key_types })
    }

    pub(super) fn arrow(&self, e: datafusion::arrow::error::ArrowError) -> EngineError {
        arrow_error(self.name, e)
    }

    pub(super) fn schema(&self, side: JoinSide) -> &SchemaRef {
        &self.schemas[side as usize]
    }

    /// Each row's key, encoded the same for both sides; `None` where a key is NULL
    /// (which equals nothing, as in SQL).
    pub(super) fn key_rows(&self, side: JoinSide, batch: &RecordBatch) -> Result<Vec<Option<RowBytes>>> {
        let keys = self.keys(side, batch)?;
        Ok((0..batch.num_rows()).map(|i| keys.get(i).map(Box::from)).collect())
    }

    /// Each row's key, as [`JoinRows::key_rows`] encodes it, borrowed from one
    /// buffer: for operators that copy a key only when they keep a new one.
    pub(super) fn keys(&self, side: JoinSide, batch: &RecordBatch) -> Result<EncodedKeys> {
        let rows = batch.num_rows();
        if self.key_types.is_empty() {
            return Ok(EncodedKeys { rows: None, valid: vec![true; rows] });
        }
        let mut arrays = Vec::with_capacity(self.key_types.len());
        for (expr, data_type) in self.node.keys(side).iter().zip(&self.key_types) {
            let array = evaluate(expr, batch, self.name)?;
            arrays.push(if array.data_type() == data_type { array } else { cast(&array, data_type).map_err(|e| self.arrow(e))? });
        }
        let encoded = self.keys.encode(&arrays)?;
        let valid = (0..rows).map(|i| arrays.iter().all(|a| a.is_valid(i))).collect();
        Ok(EncodedKeys { rows: Some(encoded), valid })
    }

    /// Output rows from the two sides' picks: the left columns, the right ones, projected.
    pub(super) fn output(&self, left: Picked<'_>, right: Picked<'_>, rows: usize) -> Result<RecordBatch> {
        let width = self.schemas[0].fields().len();
        let columns = self
            .node
            .projection
            .iter()
            .map(|&i| if i < width { left.column(&self.schemas[0], i, self.name) } else { right.column(&self.schemas[1], i - width, self.name) })
            .collect::<Result<Vec<_>>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        RecordBatch::try_new_with_options(Arc::clone(&self.node.schema), columns, &options).map_err(|e| self.arrow(e))
    }

    /// Output rows of `side`'s picks `here` with the other side's `there`, in the join's column order.
    pub(super) fn pairs(&self, side: JoinSide, here: Picked<'_>, there: Picked<'_>, rows: usize) -> Result<RecordBatch> {
        match side {
            JoinSide::Left => self.output(here, there, rows),
            JoinSide::Right => self.output(there, here, rows),
        }
    }

    /// Rows of `side` alone: without a partner, with NULLs for the other side's
    /// columns (an outer join), or with none of them (a semi or anti join).
    pub(super) fn padded(&self, side: JoinSide, rows: Picked<'_>, count: usize) -> Result<RecordBatch> {
        self.pairs(side, rows, Picked::Absent(count), count)
    }

    /// Which candidate pairs (incoming rows of `side` with the other side's stored
    /// rows `there`) satisfy the whole `ON` condition.
    pub(super) fn filter_pairs(&self, side: JoinSide, batch: &RecordBatch, incoming: &UInt32Array, there: Picked<'_>) -> Result<BooleanArray> {
        let Some(filter) = &self.node.filter else { return Ok(BooleanArray::from(vec![true; incoming.len()])) };
        let here = Picked::Incoming(batch, incoming);
        let mut columns = Vec::with_capacity(filter.column_indices().len());
        for c in filter.column_indices() {
            let from = match c.side {
                FilterSide::Left => JoinSide::Left,
                _ => JoinSide::Right,
            };
            let picked = if from == side { &here } else { &there };
            columns.push(picked.column(&self.schemas[from as usize], c.index, self.name)?);
        }
        let options = RecordBatchOptions::new().with_row_count(Some(incoming.len()));
        let pairs = RecordBatch::try_new_with_options(Arc::clone(filter.schema()), columns, &options).map_err(|e| self.arrow(e))?;
        evaluate_predicate(filter.expression(), &pairs, self.name)
    }

    /// `side`'s stored `rows` (batch id, row) as one batch of the side's columns.
    pub(super) fn stored_rows(&self, side: JoinSide, stored: &StoredBatches, rows: &[(u64, u32)]) -> Result<RecordBatch> {
        let schema = self.schema(side);
        let picked = Picked::stored(stored, rows);
        let columns = (0..schema.fields().len()).map(|i| picked.column(schema, i, self.name)).collect::<Result<Vec<ArrayRef>>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(rows.len()));
        RecordBatch::try_new_with_options(Arc::clone(schema), columns, &options).map_err(|e| self.arrow(e))
    }

    /// A checkpoint part of `side`'s stored `rows`: the key columns (which the
    /// exchange hashes when restoring with another parallelism), the side's
    /// columns, then `extra` columns of the operator's own.
    pub(super) fn state_part(&self, side: JoinSide, stored: &StoredBatches, rows: &[(u64, u32)], extra: Vec<(Field, ArrayRef)>) -> Result<RecordBatch> {
        let schema = self.schema(side);
        let side_rows = self.stored_rows(side, stored, rows)?;
        let options = RecordBatchOptions::new().with_row_count(Some(rows.len()));
        let mut fields: Vec<Field> = Vec::new();
        let mut all: Vec<ArrayRef> = Vec::new();
        for (i, key) in self.node.keys(side).iter().enumerate() {
            let array = evaluate(key, &side_rows, self.name)?;
            fields.push(Field::new(format!("key{i}"), array.data_type().clone(), true));
            all.push(array);
        }
        for (field, column) in schema.fields().iter().zip(side_rows.columns()) {
            fields.push(field.as_ref().clone().with_nullable(true));
            all.push(Arc::clone(column));
        }
        for (field, column) in extra {
            fields.push(field);
            all.push(column);
        }
        RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), all, &options).map_err(|e| self.arrow(e))
    }

    /// The side and rows of checkpoint part `name` written by [`JoinRows::state_part`]
    /// with `extra` columns of the operator's own, which follow the rows.
    pub(super) fn restored_part(&self, name: &str, part: &RecordBatch, extra: usize) -> Result<(JoinSide, RecordBatch, Vec<ArrayRef>)> {
        let side = match name {
            "left" => JoinSide::Left,
            "right" => JoinSide::Right,
            other => return Err(EngineError::State(format!("a join's checkpoint has an unknown part `{other}`"))),
        };
        let keys = self.node.keys(side).len();
        let schema = Arc::clone(self.schema(side));
        let width = schema.fields().len();
        if part.num_columns() != keys + width + extra {
            return Err(EngineError::State("the checkpoint does not match the join's inputs (was its SQL changed?)".into()));
        }
        let options = RecordBatchOptions::new().with_row_count(Some(part.num_rows()));
        let rows = RecordBatch::try_new_with_options(schema, part.columns()[keys..keys + width].to_vec(), &options).map_err(|e| self.arrow(e))?;
        Ok((side, rows, part.columns()[keys + width..].to_vec()))
    }

    /// How many leading columns of checkpoint part `part` are its key.
    pub(super) fn state_key_columns(&self, part: &str) -> usize {
        match part {
            "left" => self.node.left_keys.len(),
            "right" => self.node.right_keys.len(),
            _ => 0,
        }
    }
}
