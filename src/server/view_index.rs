//! A hash index on one column of an append-only materialized view, so a point
//! lookup (`SELECT ... FROM view WHERE column = value`, what a dashboard or a
//! service sends per request) reads the few matching rows instead of planning a
//! query and scanning every row.
//!
//! The index is a vector of (hash of the value, row position) sorted by hash:
//! 16 bytes a row, searched by bisection. It is built on the column's first
//! lookup and then kept up as rows are appended: the new rows' entries are
//! sorted on their own and merged in, in time linear in the index. A hash only
//! narrows the search; each candidate row's value is compared with the one
//! looked up, so a collision never answers a wrong row.

use datafusion::arrow::array::{Array, ArrayRef};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::hash_utils::{create_hashes, RandomState};
use datafusion::common::ScalarValue;

/// Where a row is: its batch and its place in the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RowPosition {
    pub batch: u32,
    pub row: u32,
}

/// The index of one column over a view's batches, in the order they were appended.
#[derive(Debug, Default)]
pub struct ColumnIndex {
    /// How many of the view's batches are indexed (the first ones).
    indexed_batches: usize,
    /// (value hash, position), sorted.
    entries: Vec<(u64, RowPosition)>,
}

/// One fixed hasher, so a value's hash is the same when indexed and when looked up.
fn hasher() -> RandomState {
    RandomState::with_seed(0x6564_6479)
}

/// The hashes of every value of `column`.
fn hashes(column: &ArrayRef) -> Result<Vec<u64>, ArrowError> {
    let mut hashes = vec![0; column.len()];
    create_hashes([column], &hasher(), &mut hashes).map_err(|e| ArrowError::ComputeError(e.to_string()))?;
    Ok(hashes)
}

impl ColumnIndex {
    /// True when `batches` (the view's, all of them) hold rows not yet indexed.
    pub fn is_behind(&self, batches: &[RecordBatch]) -> bool {
        self.indexed_batches < batches.len()
    }

    /// Indexes column `column` of the batches appended since the last call.
    pub fn catch_up(&mut self, batches: &[RecordBatch], column: usize) -> Result<(), ArrowError> {
        let mut added = Vec::new();
        for (number, batch) in batches.iter().enumerate().skip(self.indexed_batches) {
            let batch_number = u32::try_from(number).map_err(|_| ArrowError::ComputeError("a view of more than 2^32 batches cannot be indexed".into()))?;
            for (row, hash) in hashes(batch.column(column))?.into_iter().enumerate() {
                let row = u32::try_from(row).map_err(|_| ArrowError::ComputeError("a batch of more than 2^32 rows cannot be indexed".into()))?;
                added.push((hash, RowPosition { batch: batch_number, row }));
            }
        }
        self.indexed_batches = batches.len();
        if added.is_empty() {
            return Ok(());
        }
        added.sort_unstable();
        if self.entries.is_empty() {
            self.entries = added;
            return Ok(());
        }
        let old = std::mem::take(&mut self.entries);
        self.entries = merge(old, added);
        Ok(())
    }

    /// The memory the index holds.
    pub fn bytes(&self) -> u64 {
        (self.entries.capacity() * std::mem::size_of::<(u64, RowPosition)>()) as u64
    }

    /// The positions of the rows whose value in `column` equals `value` (of the
    /// column's type), in the order they were appended.
    pub fn find(&self, batches: &[RecordBatch], column: usize, value: &ScalarValue) -> Result<Vec<RowPosition>, ArrowError> {
        let wanted = value.to_array_of_size(1).map_err(|e| ArrowError::ComputeError(e.to_string()))?;
        let hash = hashes(&wanted)?[0];
        let start = self.entries.partition_point(|(h, _)| *h < hash);
        let mut found = Vec::new();
        for (_, position) in self.entries[start..].iter().take_while(|(h, _)| *h == hash) {
            let values = batches[position.batch as usize].column(column);
            let candidate = ScalarValue::try_from_array(values, position.row as usize).map_err(|e| ArrowError::ComputeError(e.to_string()))?;
            if !values.is_null(position.row as usize) && &candidate == value {
                found.push(*position);
            }
        }
        found.sort_unstable();
        Ok(found)
    }
}

/// Two sorted vectors as one.
fn merge<T: Ord + Copy>(left: Vec<T>, right: Vec<T>) -> Vec<T> {
    let mut merged = Vec::with_capacity(left.len() + right.len());
    let (mut l, mut r) = (left.into_iter().peekable(), right.into_iter().peekable());
    loop {
        let next = match (l.peek(), r.peek()) {
            (Some(a), Some(b)) if a <= b => l.next(),
            (Some(_), Some(_)) => r.next(),
            (Some(_), None) => l.next(),
            (None, Some(_)) => r.next(),
            (None, None) => return merged,
        };
        merged.extend(next);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn batch(ids: &[Option<i64>], names: &[&str]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true), Field::new("name", DataType::Utf8, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(ids.to_vec())), Arc::new(StringArray::from(names.to_vec()))])
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn found(index: &ColumnIndex, batches: &[RecordBatch], column: usize, value: ScalarValue) -> Vec<(u32, u32)> {
        index.find(batches, column, &value).unwrap_or_else(|e| panic!("{e}")).iter().map(|p| (p.batch, p.row)).collect()
    }

    #[test]
    fn finds_every_row_with_the_value_across_appended_batches_and_none_for_null() {
        let mut batches = vec![batch(&[Some(1), Some(2), None, Some(2)], &["a", "b", "c", "b"])];
        let mut index = ColumnIndex::default();
        index.catch_up(&batches, 0).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(found(&index, &batches, 0, ScalarValue::Int64(Some(2))), vec![(0, 1), (0, 3)]);
        assert!(found(&index, &batches, 0, ScalarValue::Int64(Some(7))).is_empty());
        assert!(found(&index, &batches, 0, ScalarValue::Int64(None)).is_empty(), "NULL equals nothing");

        batches.push(batch(&[Some(2), Some(9)], &["x", "y"]));
        assert!(index.is_behind(&batches));
        index.catch_up(&batches, 0).unwrap_or_else(|e| panic!("{e}"));
        assert!(!index.is_behind(&batches));
        assert_eq!(found(&index, &batches, 0, ScalarValue::Int64(Some(2))), vec![(0, 1), (0, 3), (1, 0)]);
        assert_eq!(found(&index, &batches, 0, ScalarValue::Int64(Some(9))), vec![(1, 1)]);
        assert!(index.bytes() >= 6 * 16, "6 rows of 16 bytes: {}", index.bytes());
    }

    #[test]
    fn string_columns_are_indexed_by_value() {
        let batches = vec![batch(&[Some(1), Some(2)], &["alpha", "beta"]), batch(&[Some(3)], &["alpha"])];
        let mut index = ColumnIndex::default();
        index.catch_up(&batches, 1).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(found(&index, &batches, 1, ScalarValue::Utf8(Some("alpha".into()))), vec![(0, 0), (1, 0)]);
        assert!(found(&index, &batches, 1, ScalarValue::Utf8(Some("Alpha".into()))).is_empty());
    }

    #[test]
    fn merging_keeps_order() {
        assert_eq!(merge(vec![1, 3, 5, 7], vec![2, 3, 8]), vec![1, 2, 3, 3, 5, 7, 8]);
        assert_eq!(merge(Vec::<u8>::new(), vec![1]), vec![1]);
    }
}
