//! One changelog for the whole engine: a batch of rows, each carrying the kind of
//! change it is (Flink's `RowKind`, RisingWave's `Op`). Operators, sinks, views
//! and the server all pass [`ChangeBatch`]es, so an updating result (a view's
//! groups, later a join's or a Top-N's rows) travels the same way an append-only
//! one does. An append-only stream, the common case, is all inserts and pays
//! nothing per row for its kinds.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, StringArray, UInt32Array};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;

use crate::error::{EngineError, Result};

/// What a changelog row says about the row it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RowKind {
    /// A new row (`+I`).
    Insert,
    /// The old version of a row being updated (`-U`); its new version follows.
    UpdateBefore,
    /// The new version of an updated row (`+U`).
    UpdateAfter,
    /// A row that no longer holds (`-D`).
    Delete,
}

impl RowKind {
    /// Every kind, in the order of Flink's `RowKind` values.
    pub const ALL: [RowKind; 4] = [RowKind::Insert, RowKind::UpdateBefore, RowKind::UpdateAfter, RowKind::Delete];

    /// Flink's short string (`+I`, `-U`, `+U`, `-D`): what the `op` column of a
    /// view's changelog shows subscribers.
    pub fn short_string(self) -> &'static str {
        match self {
            RowKind::Insert => "+I",
            RowKind::UpdateBefore => "-U",
            RowKind::UpdateAfter => "+U",
            RowKind::Delete => "-D",
        }
    }

    /// The kind a short string names; `None` for anything else.
    pub fn from_short_string(op: &str) -> Option<RowKind> {
        RowKind::ALL.into_iter().find(|kind| kind.short_string() == op)
    }

    /// Whether the row takes back a row sent earlier (`-U`, `-D`) rather than adding one.
    pub fn is_retraction(self) -> bool {
        matches!(self, RowKind::UpdateBefore | RowKind::Delete)
    }
}

/// The kinds of a batch's rows: one for all of them when they agree (an
/// append-only stream), else one per row.
#[derive(Debug, Clone, PartialEq)]
enum Kinds {
    All(RowKind),
    Each(Arc<[RowKind]>),
}

/// Rows and the kind of change each one is: what flows between operators
/// ([`crate::Message::Rows`]), into sinks and views, and out of changelog sources.
#[derive(Debug, Clone)]
pub struct ChangeBatch {
    rows: RecordBatch,
    kinds: Kinds,
}

/// The name of the kind column in a changelog written out as rows (a view's
/// subscription, its saved state), Flink's short strings in the first column.
pub const OP_COLUMN: &str = "op";

impl ChangeBatch {
    /// New rows: what every append-only source and operator produces.
    pub fn inserts(rows: RecordBatch) -> Self {
        ChangeBatch { rows, kinds: Kinds::All(RowKind::Insert) }
    }

    /// Rows that are all changes of one kind.
    pub fn all(kind: RowKind, rows: RecordBatch) -> Self {
        ChangeBatch { rows, kinds: Kinds::All(kind) }
    }

    /// Rows with one kind each, in row order.
    pub fn new(rows: RecordBatch, kinds: Vec<RowKind>) -> Result<Self> {
        if kinds.len() != rows.num_rows() {
            return Err(EngineError::Internal(format!("a change batch of {} rows was given {} row kinds", rows.num_rows(), kinds.len())));
        }
        Ok(ChangeBatch::with_kinds(rows, kinds))
    }

    /// Rows with one kind each; collapses to one kind for all when they agree.
    fn with_kinds(rows: RecordBatch, kinds: Vec<RowKind>) -> Self {
        let kinds = match kinds.first() {
            Some(first) if kinds.iter().any(|k| k != first) => Kinds::Each(kinds.into()),
            Some(first) => Kinds::All(*first),
            None => Kinds::All(RowKind::Insert),
        };
        ChangeBatch { rows, kinds }
    }

    /// The rows, whatever their kinds.
    pub fn rows(&self) -> &RecordBatch {
        &self.rows
    }

    /// The rows, dropping their kinds: for a caller that knows what they are (a
    /// source's own reads, a test).
    pub fn into_rows(self) -> RecordBatch {
        self.rows
    }

    /// The rows' schema.
    pub fn schema(&self) -> SchemaRef {
        self.rows.schema()
    }

    /// How many rows (changes) the batch holds.
    pub fn num_rows(&self) -> usize {
        self.rows.num_rows()
    }

    /// The kind of row `row`.
    pub fn kind(&self, row: usize) -> RowKind {
        match &self.kinds {
            Kinds::All(kind) => *kind,
            Kinds::Each(kinds) => kinds[row],
        }
    }

    /// Whether every row is a new row, so a consumer that only appends can take it.
    pub fn is_inserts_only(&self) -> bool {
        self.kinds == Kinds::All(RowKind::Insert)
    }

    /// The rows of a batch that must be all inserts: what an append-only operator
    /// or sink takes. The planner puts only those behind append-only inputs, so
    /// anything else is `who`'s bug, not the user's.
    pub fn into_inserts(self, who: &str) -> Result<RecordBatch> {
        if self.is_inserts_only() {
            return Ok(self.rows);
        }
        Err(EngineError::Internal(format!("{who} only takes new rows, but was given updates or deletions")))
    }

    /// The rows of a batch that retracts nothing (new rows and `+U`s): what a sink
    /// that upserts by key and deletes nothing takes.
    pub fn into_upserts(self, who: &str) -> Result<RecordBatch> {
        let retracts = match &self.kinds {
            Kinds::All(kind) => kind.is_retraction(),
            Kinds::Each(kinds) => kinds.iter().any(|k| k.is_retraction()),
        };
        if retracts {
            return Err(EngineError::Internal(format!("{who} cannot delete rows, but was given retractions")));
        }
        Ok(self.rows)
    }

    /// The same changes with their rows replaced by `rows` (a projection of them:
    /// as many rows, in the same order).
    pub fn map_rows(self, rows: RecordBatch) -> Result<Self> {
        if rows.num_rows() != self.rows.num_rows() {
            return Err(EngineError::Internal(format!("a projection of {} changes returned {} rows", self.rows.num_rows(), rows.num_rows())));
        }
        Ok(ChangeBatch { rows, kinds: self.kinds })
    }

    /// The changes whose row is selected by `mask`, in order.
    pub fn filter(&self, mask: &BooleanArray) -> Result<Self> {
        let rows = filter_batch(&self.rows, mask)?;
        Ok(match &self.kinds {
            Kinds::All(kind) => ChangeBatch::all(*kind, rows),
            Kinds::Each(kinds) => {
                let kept = kinds.iter().zip(mask.iter()).filter(|(_, keep)| *keep == Some(true)).map(|(k, _)| *k).collect();
                ChangeBatch::with_kinds(rows, kept)
            }
        })
    }

    /// The changes at `indices`, in that order (a hash exchange's share of them).
    pub fn take(&self, indices: &UInt32Array) -> Result<Self> {
        let columns = self.rows.columns().iter().map(|c| take(c, indices, None)).collect::<Result<Vec<_>, _>>().map_err(arrow)?;
        let rows = RecordBatch::try_new(self.rows.schema(), columns).map_err(arrow)?;
        Ok(match &self.kinds {
            Kinds::All(kind) => ChangeBatch::all(*kind, rows),
            Kinds::Each(kinds) => ChangeBatch::with_kinds(rows, indices.values().iter().map(|i| kinds[*i as usize]).collect()),
        })
    }

    /// The changes as runs of consecutive rows of one kind, in order, each a
    /// zero-copy slice: how a consumer that adds and removes rows applies them.
    pub fn runs(&self) -> Vec<(RowKind, RecordBatch)> {
        let kinds = match &self.kinds {
            Kinds::All(kind) => return vec![(*kind, self.rows.clone())],
            Kinds::Each(kinds) => kinds,
        };
        let mut runs = Vec::new();
        let mut start = 0;
        for end in 1..=kinds.len() {
            if end == kinds.len() || kinds[end] != kinds[start] {
                runs.push((kinds[start], self.rows.slice(start, end - start)));
                start = end;
            }
        }
        runs
    }

    /// The changes as rows led by an [`OP_COLUMN`] of Flink's short strings, in
    /// `schema` (what [`changelog_schema`] makes of the table's): how a view or a
    /// pipeline shows its changelog to subscribers and keeps it in a checkpoint.
    pub fn to_changelog(&self, schema: &SchemaRef) -> Result<RecordBatch> {
        let ops: StringArray = (0..self.num_rows()).map(|i| Some(self.kind(i).short_string())).collect();
        let mut columns = vec![Arc::new(ops) as ArrayRef];
        columns.extend(self.rows.columns().iter().cloned());
        RecordBatch::try_new(Arc::clone(schema), columns).map_err(arrow)
    }

    /// Reads rows written by [`ChangeBatch::to_changelog`] back.
    pub fn from_changelog(batch: &RecordBatch) -> Result<Self> {
        let ops = batch
            .columns()
            .first()
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .ok_or_else(|| EngineError::State(format!("a changelog's first column is its `{OP_COLUMN}`")))?;
        let kinds = (0..ops.len())
            .map(|i| {
                RowKind::from_short_string(ops.value(i)).ok_or_else(|| EngineError::State(format!("`{}` is not a change kind (+I, -U, +U, -D)", ops.value(i))))
            })
            .collect::<Result<Vec<_>>>()?;
        let rows = batch.project(&(1..batch.num_columns()).collect::<Vec<_>>()).map_err(arrow)?;
        Ok(ChangeBatch::with_kinds(rows, kinds))
    }
}

/// The schema of a changelog written as rows ([`ChangeBatch::to_changelog`]):
/// the op column, then the table's.
pub fn changelog_schema(rows: &Schema) -> SchemaRef {
    let mut fields = vec![Arc::new(Field::new(OP_COLUMN, DataType::Utf8, false))];
    fields.extend(rows.fields().iter().cloned());
    Arc::new(Schema::new(fields))
}

fn filter_batch(batch: &RecordBatch, mask: &BooleanArray) -> Result<RecordBatch> {
    datafusion::arrow::compute::filter_record_batch(batch, mask).map_err(arrow)
}

fn arrow(e: ArrowError) -> EngineError {
    EngineError::execution("changelog", e.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;

    fn numbers(values: &[i64]) -> RecordBatch {
        RecordBatch::try_from_iter([("n", Arc::new(Int64Array::from(values.to_vec())) as ArrayRef)]).unwrap()
    }

    fn text(batch: &ChangeBatch) -> Vec<String> {
        let n = batch.rows().column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        (0..batch.num_rows()).map(|i| format!("{} {}", batch.kind(i).short_string(), n.value(i))).collect()
    }

    #[test]
    fn short_strings_are_flinks_and_read_back() {
        let strings: Vec<&str> = RowKind::ALL.iter().map(|k| k.short_string()).collect();
        assert_eq!(strings, vec!["+I", "-U", "+U", "-D"]);
        for kind in RowKind::ALL {
            assert_eq!(RowKind::from_short_string(kind.short_string()), Some(kind));
        }
        assert_eq!(RowKind::from_short_string("+X"), None);
        assert_eq!(RowKind::ALL.iter().filter(|k| k.is_retraction()).copied().collect::<Vec<_>>(), vec![RowKind::UpdateBefore, RowKind::Delete]);
    }

    #[test]
    fn kinds_that_agree_are_one_kind_for_all() {
        let batch = ChangeBatch::new(numbers(&[1, 2]), vec![RowKind::Insert, RowKind::Insert]).unwrap();
        assert!(batch.is_inserts_only());
        assert_eq!(batch.into_inserts("test").unwrap().num_rows(), 2);
        let mixed = ChangeBatch::new(numbers(&[1, 2]), vec![RowKind::Insert, RowKind::Delete]).unwrap();
        assert!(!mixed.is_inserts_only());
        assert!(mixed.into_inserts("the test sink").unwrap_err().to_string().contains("the test sink only takes new rows"));
        assert!(ChangeBatch::new(numbers(&[1]), vec![]).is_err());
        let upserts = ChangeBatch::new(numbers(&[1, 2]), vec![RowKind::Insert, RowKind::UpdateAfter]).unwrap();
        assert_eq!(upserts.into_upserts("test").unwrap().num_rows(), 2);
        let with_delete = ChangeBatch::new(numbers(&[1, 2]), vec![RowKind::UpdateAfter, RowKind::Delete]).unwrap();
        assert!(with_delete.into_upserts("the upsert sink").unwrap_err().to_string().contains("the upsert sink cannot delete rows"));
    }

    #[test]
    fn filter_and_take_keep_each_rows_kind() {
        use RowKind::*;
        let batch = ChangeBatch::new(numbers(&[1, 2, 3, 4]), vec![UpdateBefore, UpdateAfter, Delete, Insert]).unwrap();
        let kept = batch.filter(&BooleanArray::from(vec![true, false, true, true])).unwrap();
        assert_eq!(text(&kept), vec!["-U 1", "-D 3", "+I 4"]);
        let taken = batch.take(&UInt32Array::from(vec![3, 1])).unwrap();
        assert_eq!(text(&taken), vec!["+I 4", "+U 2"]);
        let uniform = ChangeBatch::all(Delete, numbers(&[5, 6])).take(&UInt32Array::from(vec![1])).unwrap();
        assert_eq!(text(&uniform), vec!["-D 6"]);
    }

    #[test]
    fn runs_are_consecutive_rows_of_one_kind_in_order() {
        use RowKind::*;
        let batch = ChangeBatch::new(numbers(&[1, 2, 3, 4, 5]), vec![UpdateBefore, UpdateBefore, UpdateAfter, UpdateAfter, Delete]).unwrap();
        let runs: Vec<(RowKind, usize)> = batch.runs().iter().map(|(k, r)| (*k, r.num_rows())).collect();
        assert_eq!(runs, vec![(UpdateBefore, 2), (UpdateAfter, 2), (Delete, 1)]);
        assert_eq!(ChangeBatch::inserts(numbers(&[1, 2])).runs().len(), 1);
    }

    #[test]
    fn a_changelog_written_as_rows_reads_back() {
        use RowKind::*;
        let batch = ChangeBatch::new(numbers(&[1, 2, 3]), vec![Insert, UpdateBefore, UpdateAfter]).unwrap();
        let rows = batch.to_changelog(&changelog_schema(&batch.schema())).unwrap();
        assert_eq!(rows.schema().field(0).name(), OP_COLUMN);
        let ops = rows.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(ops.iter().flatten().collect::<Vec<_>>(), vec!["+I", "-U", "+U"]);
        assert_eq!(text(&ChangeBatch::from_changelog(&rows).unwrap()), vec!["+I 1", "-U 2", "+U 3"]);
        let bad = RecordBatch::try_from_iter([("op", Arc::new(StringArray::from(vec!["+X"])) as ArrayRef)]).unwrap();
        assert!(ChangeBatch::from_changelog(&bad).unwrap_err().to_string().contains("`+X` is not a change kind"));
    }
}
