//! `'connector' = 'blackhole'`: a sink that drops every row, for measuring a
//! pipeline without the cost of any output.

use async_trait::async_trait;
use datafusion::arrow::record_batch::RecordBatch;
use eddy_engine::{BoxError, Sink};

/// Discards rows; does no work at all.
#[derive(Debug, Default, Clone, Copy)]
pub struct BlackholeSink;

#[async_trait]
impl Sink for BlackholeSink {
    async fn write(&mut self, _batch: RecordBatch) -> Result<(), BoxError> {
        Ok(())
    }

    async fn retract(&mut self, _batch: RecordBatch) -> Result<(), BoxError> {
        Ok(())
    }

    async fn commit(&mut self) -> Result<(), BoxError> {
        Ok(())
    }
}
