//! `'connector' = 'blackhole'`: a sink that drops every row, for measuring a
//! pipeline without the cost of any output.

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use eddy_engine::table::TableDef;
use eddy_engine::{BoxError, Capabilities, ChangeBatch, Connector, ConnectorInfo, MetadataColumns, Resume, Roles, Sink, SinkChanges};

/// `'connector' = 'blackhole'`: drops every change, so it takes any changelog.
#[derive(Debug, Clone, Copy)]
pub struct BlackholeConnector;

impl Connector for BlackholeConnector {
    fn info(&self) -> &'static ConnectorInfo {
        const INFO: ConnectorInfo = ConnectorInfo {
            name: "blackhole",
            description: "discards every row (for benchmarks)",
            options: &[],
            capabilities: Capabilities { roles: Roles::Sink, changes: SinkChanges::Retractions, resume: Resume::Never, metadata: MetadataColumns::Unsupported },
        };
        &INFO
    }

    fn create_sink(&self, _def: &TableDef, _schema: SchemaRef) -> Result<Box<dyn Sink>, BoxError> {
        Ok(Box::new(BlackholeSink))
    }
}

/// Discards rows; does no work at all.
#[derive(Debug, Default, Clone, Copy)]
pub struct BlackholeSink;

#[async_trait]
impl Sink for BlackholeSink {
    async fn write(&mut self, _changes: ChangeBatch) -> Result<(), BoxError> {
        Ok(())
    }

    async fn commit(&mut self) -> Result<(), BoxError> {
        Ok(())
    }
}
