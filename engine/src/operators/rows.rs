//! Rows as bytes (Arrow's row format), for state that is looked up by value:
//! the groups of an aggregate over a changelog, and the rows an updating
//! aggregate emitted last, which it must retract when they change.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray, UInt32Array};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{Row, RowConverter, RowParser, Rows, SortField};

use super::arrow_error;
use crate::error::Result;
use crate::operator::Emitter;

const NAME: &str = "Rows";

fn arrow(e: datafusion::arrow::error::ArrowError) -> crate::error::EngineError {
    arrow_error(NAME, e)
}

/// An encoded Arrow row (`RowConverter` bytes): hashable, ordered and looked up without copying.
pub(crate) type RowBytes = Box<[u8]>;

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

    pub(crate) fn decode<'a>(&self, rows: impl IntoIterator<Item = &'a RowBytes>) -> Result<Vec<ArrayRef>> {
        let rows: Vec<_> = rows.into_iter().map(|r| self.parser.parse(r)).collect();
        self.converter.convert_rows(rows).map_err(arrow)
    }
}

/// The row an updating aggregate emitted last for each group, so a change can
/// leave as a retraction of that row followed by the new one (what a HAVING, or an
/// aggregate over the aggregate, needs to stay right).
pub(crate) struct EmittedRows {
    /// The output's leading group columns (a constant when there are none).
    keys: Codec,
    key_count: usize,
    rows: Codec,
    last: HashMap<RowBytes, RowBytes>,
}

impl EmittedRows {
    /// For output rows of `types`, whose first `key_count` columns are the group key.
    pub(crate) fn new(types: &[DataType], key_count: usize) -> Result<Self> {
        let key_types = if key_count == 0 { vec![DataType::Boolean] } else { types[..key_count].to_vec() };
        Ok(EmittedRows { keys: Codec::new(key_types)?, key_count, rows: Codec::new(types.iter().cloned())?, last: HashMap::new() })
    }

    fn key_rows(&self, batch: &RecordBatch) -> Result<Rows> {
        if self.key_count == 0 {
            self.keys.encode(&[Arc::new(BooleanArray::from(vec![true; batch.num_rows()])) as ArrayRef])
        } else {
            self.keys.encode(&batch.columns()[..self.key_count])
        }
    }

    /// Emits the changed groups' new rows, each after a retraction of its previous
    /// row; a row equal to the one emitted before is left out.
    pub(crate) fn emit(&mut self, batch: RecordBatch, out: &mut Emitter) -> Result<()> {
        let keys = self.key_rows(&batch)?;
        let rows = self.rows.encode(batch.columns())?;
        let (mut keep, mut retract) = (Vec::new(), Vec::new());
        for i in 0..batch.num_rows() {
            let row = bytes(rows.row(i));
            match self.last.insert(bytes(keys.row(i)), row.clone()) {
                Some(old) if old == row => continue,
                Some(old) => retract.push(old),
                None => {}
            }
            keep.push(i as u32);
        }
        if !retract.is_empty() {
            out.retract(RecordBatch::try_new(batch.schema(), self.rows.decode(retract.iter())?).map_err(arrow)?);
        }
        let keep = UInt32Array::from(keep);
        let columns = batch.columns().iter().map(|c| take(c, &keep, None).map_err(arrow)).collect::<Result<Vec<_>>>()?;
        out.batch(RecordBatch::try_new(batch.schema(), columns).map_err(arrow)?);
        Ok(())
    }

    /// Every row emitted last, as columns of the output schema, for a snapshot.
    pub(crate) fn snapshot(&self) -> Result<Vec<ArrayRef>> {
        self.rows.decode(self.last.values())
    }

    /// Adds rows saved by [`EmittedRows::snapshot`].
    pub(crate) fn restore(&mut self, batch: &RecordBatch) -> Result<()> {
        let keys = self.key_rows(batch)?;
        let rows = self.rows.encode(batch.columns())?;
        for i in 0..batch.num_rows() {
            self.last.insert(bytes(keys.row(i)), bytes(rows.row(i)));
        }
        Ok(())
    }
}
