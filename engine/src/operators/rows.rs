//! Rows as bytes (Arrow's row format), for state that is looked up by value:
//! the groups of an aggregate over a changelog, and the rows an updating
//! aggregate emitted last, which it must retract when they change.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray, UInt32Array};
use datafusion::arrow::compute::{cast, take};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{Row, RowConverter, RowParser, Rows, SortField};

use super::arrow_error;
use super::project::make_batch;
use crate::changelog::{ChangeBatch, RowKind};
use crate::error::Result;
use crate::operator::Emitter;

const NAME: &str = "Rows";

fn arrow(e: datafusion::arrow::error::ArrowError) -> crate::error::EngineError {
    arrow_error(NAME, e)
}

/// An encoded Arrow row (`RowConverter` bytes): hashable, ordered and looked up without copying.
pub(crate) type RowBytes = Box<[u8]>;

/// State keyed by encoded rows. foldhash rather than std's SipHash: joins and
/// ranks look a key up for every row, and SipHash took 6 % of Nexmark q7's CPU.
/// Its per-process random seed still spreads keys an attacker cannot predict.
pub(crate) type RowMap<V> = HashMap<RowBytes, V, foldhash::fast::RandomState>;

/// The bytes of one encoded row.
pub(crate) fn bytes(row: Row<'_>) -> RowBytes {
    row.as_ref().into()
}

/// A row encoder with the parser that reads its bytes back.
pub(crate) struct Codec {
    converter: RowConverter,
    parser: RowParser,
}

impl Codec {
    pub(crate) fn new(types: impl IntoIterator<Item = DataType>) -> Result<Self> {
        let converter = RowConverter::new(types.into_iter().map(SortField::new).collect()).map_err(arrow)?;
        let parser = converter.parser();
        Ok(Codec { converter, parser })
    }

    pub(crate) fn encode(&self, columns: &[ArrayRef]) -> Result<Rows> {
        self.converter.convert_columns(columns).map_err(arrow)
    }

    /// The columns of `rows` (owned [`RowBytes`] or borrowed byte slices).
    pub(crate) fn decode<'a, R: AsRef<[u8]> + ?Sized + 'a>(&self, rows: impl IntoIterator<Item = &'a R>) -> Result<Vec<ArrayRef>> {
        let rows: Vec<_> = rows.into_iter().map(|r| self.parser.parse(r.as_ref())).collect();
        self.converter.convert_rows(rows).map_err(arrow)
    }
}

/// The row an aggregate emitted last for each group, so a change can leave as a
/// retraction of that row followed by the new one (what a HAVING, or an aggregate
/// over the aggregate, needs to stay right), and a group that is gone as a
/// retraction alone. Used by an updating aggregate read by such a consumer and by
/// the aggregate over a changelog.
pub(crate) struct EmittedRows {
    schema: SchemaRef,
    /// The group key: the output's leading columns, encoded as the key
    /// expressions' types (a constant when there are none).
    keys: Codec,
    key_types: Vec<DataType>,
    rows: Codec,
    last: RowMap<RowBytes>,
    /// Bytes of the keys and rows in `last`, kept as entries come and go.
    last_bytes: usize,
}

impl EmittedRows {
    /// For output rows of `schema`, which lead with group key columns of `key_types`.
    pub(crate) fn new(schema: &SchemaRef, key_types: Vec<DataType>) -> Result<Self> {
        let keys = Codec::new(if key_types.is_empty() { vec![DataType::Boolean] } else { key_types.clone() })?;
        let rows = Codec::new(schema.fields().iter().map(|f| f.data_type().clone()))?;
        Ok(EmittedRows { schema: Arc::clone(schema), keys, key_types, rows, last: RowMap::default(), last_bytes: 0 })
    }

    /// The group key of each output row, encoded as the caller's own key codec
    /// of the same types would encode it.
    fn key_rows(&self, batch: &RecordBatch) -> Result<Rows> {
        if self.key_types.is_empty() {
            return self.keys.encode(&[constant(batch.num_rows())]);
        }
        let columns = batch.columns()[..self.key_types.len()]
            .iter()
            .zip(&self.key_types)
            .map(|(c, t)| if c.data_type() == t { Ok(Arc::clone(c)) } else { cast(c, t).map_err(arrow) })
            .collect::<Result<Vec<_>>>()?;
        self.keys.encode(&columns)
    }

    /// Emits the groups of `gone` (keys, as encoded by [`EmittedRows::key_rows`]'s
    /// types) as deletions of their last rows (`-D`), and the changed groups' new
    /// rows (`changed`): a group seen before as an update (`-U` of its previous
    /// row, `+U` of the new one), a new group as an insert. Rows equal to the ones
    /// emitted before are left out; retractions go first, in key order.
    pub(crate) fn emit(&mut self, changed: Option<RecordBatch>, gone: impl IntoIterator<Item = RowBytes>, out: &mut Emitter) -> Result<()> {
        let mut retract: Vec<(RowBytes, RowBytes, RowKind)> =
            gone.into_iter().filter_map(|key| self.last.remove(&key).map(|old| (key, old, RowKind::Delete))).collect();
        self.last_bytes = self.last_bytes.saturating_sub(retract.iter().map(|(k, r, _)| entry_bytes(k, r)).sum());
        let mut kept = None;
        if let Some(batch) = changed {
            let keys = self.key_rows(&batch)?;
            let rows = self.rows.encode(batch.columns())?;
            let (mut keep, mut kinds) = (Vec::new(), Vec::new());
            for i in 0..batch.num_rows() {
                let (key, row) = (bytes(keys.row(i)), bytes(rows.row(i)));
                self.last_bytes += entry_bytes(&key, &row);
                match self.last.insert(key.clone(), row.clone()) {
                    Some(old) => {
                        self.last_bytes = self.last_bytes.saturating_sub(entry_bytes(&key, &old));
                        if old == row {
                            continue;
                        }
                        retract.push((key, old, RowKind::UpdateBefore));
                        kinds.push(RowKind::UpdateAfter);
                    }
                    None => kinds.push(RowKind::Insert),
                }
                keep.push(i as u32);
            }
            let keep = UInt32Array::from(keep);
            let columns = batch.columns().iter().map(|c| take(c, &keep, None).map_err(arrow)).collect::<Result<Vec<_>>>()?;
            kept = Some(ChangeBatch::new(RecordBatch::try_new(batch.schema(), columns).map_err(arrow)?, kinds)?);
        }
        if !retract.is_empty() {
            retract.sort_by(|a, b| a.0.cmp(&b.0));
            let columns = self.rows.decode(retract.iter().map(|(_, row, _)| row))?;
            let rows = make_batch(&self.schema, columns, retract.len(), NAME)?;
            out.changes(ChangeBatch::new(rows, retract.into_iter().map(|(_, _, kind)| kind).collect())?);
        }
        if let Some(changes) = kept {
            out.changes(changes);
        }
        Ok(())
    }

    /// Every row emitted last, for a snapshot.
    pub(crate) fn snapshot(&self) -> Result<RecordBatch> {
        make_batch(&self.schema, self.rows.decode(self.last.values())?, self.last.len(), NAME)
    }

    /// Adds rows saved by [`EmittedRows::snapshot`].
    pub(crate) fn restore(&mut self, batch: &RecordBatch) -> Result<()> {
        let keys = self.key_rows(batch)?;
        let rows = self.rows.encode(batch.columns())?;
        for i in 0..batch.num_rows() {
            let (key, row) = (bytes(keys.row(i)), bytes(rows.row(i)));
            let key_len = key.len();
            self.last_bytes += entry_bytes(&key, &row);
            if let Some(old) = self.last.insert(key, row) {
                self.last_bytes = self.last_bytes.saturating_sub(key_len + old.len() + ENTRY_OVERHEAD_BYTES);
            }
        }
        Ok(())
    }

    /// Bytes the remembered rows hold in memory (approximately: keys, rows and a
    /// fixed cost per hash map entry).
    pub(crate) fn size_bytes(&self) -> usize {
        self.last_bytes
    }
}

/// What one hash map entry of two boxed byte strings costs besides the bytes:
/// two fat pointers and the map's control byte, rounded up.
const ENTRY_OVERHEAD_BYTES: usize = 40;

fn entry_bytes(key: &RowBytes, row: &RowBytes) -> usize {
    key.len() + row.len() + ENTRY_OVERHEAD_BYTES
}

/// A constant column: the group key of an aggregate without GROUP BY.
pub(crate) fn constant(rows: usize) -> ArrayRef {
    Arc::new(BooleanArray::from(vec![true; rows]))
}
