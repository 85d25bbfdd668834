//! Leaves and nodes of DataFusion physical plans that stand for Eddy's sources
//! and window functions. They are never executed: the compiler reads them.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties, SendableRecordBatchStream};

use eddy_engine::plan::WindowKind;
pub(super) fn properties(schema: SchemaRef) -> Arc<PlanProperties> {
    Arc::new(PlanProperties::new(EquivalenceProperties::new(schema), Partitioning::UnknownPartitioning(1), EmissionType::Incremental, Boundedness::Bounded))
}

fn not_executable(name: &str) -> DataFusionError {
    DataFusionError::Internal(format!("{name} is a streaming placeholder and is run by the Eddy engine, not DataFusion"))
}

/// Leaf of a physical plan: rows of a source table. Compiled to a [`SourceNode`].
#[derive(Debug)]
pub struct StreamScanExec {
    pub(super) table: String,
    /// The table's columns (computed ones included) the plan above reads; `None`: all.
    pub(super) reads: Option<Vec<usize>>,
    /// The query's filters that read only the table's partition columns.
    pub(super) partition_filters: Vec<datafusion::logical_expr::Expr>,
    properties: Arc<PlanProperties>,
}

impl StreamScanExec {
    pub(super) fn new(table: String, schema: SchemaRef, reads: Option<Vec<usize>>) -> Self {
        StreamScanExec { table, reads, partition_filters: Vec::new(), properties: properties(schema) }
    }

    /// This scan, told the filters on partition columns alone.
    pub(super) fn with_partition_filters(mut self, filters: Vec<datafusion::logical_expr::Expr>) -> Self {
        self.partition_filters = filters;
        self
    }
}

impl DisplayAs for StreamScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "StreamScanExec: {}", self.table)
    }
}

impl ExecutionPlan for StreamScanExec {
    fn name(&self) -> &str {
        "StreamScanExec"
    }
    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }
    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }
    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> datafusion::error::Result<datafusion::common::tree_node::TreeNodeRecursion>,
    ) -> datafusion::error::Result<datafusion::common::tree_node::TreeNodeRecursion> {
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    }
    fn with_new_children(self: Arc<Self>, _children: Vec<Arc<dyn ExecutionPlan>>) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }
    fn execute(&self, _partition: usize, _context: Arc<TaskContext>) -> datafusion::error::Result<SendableRecordBatchStream> {
        Err(not_executable("StreamScanExec"))
    }
}

/// A window function over a source scan. Compiled to a [`StreamNode::WindowAssign`].
#[derive(Debug)]
pub struct WindowTvfExec {
    pub(super) input: Arc<dyn ExecutionPlan>,
    pub(super) window: WindowKind,
    pub(super) time_column: usize,
    pub(super) properties: Arc<PlanProperties>,
}

impl DisplayAs for WindowTvfExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "WindowTvfExec: {:?}", self.window)
    }
}

impl ExecutionPlan for WindowTvfExec {
    fn name(&self) -> &str {
        "WindowTvfExec"
    }
    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }
    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }
    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> datafusion::error::Result<datafusion::common::tree_node::TreeNodeRecursion>,
    ) -> datafusion::error::Result<datafusion::common::tree_node::TreeNodeRecursion> {
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    }
    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let input = children.into_iter().next().ok_or_else(|| DataFusionError::Internal("WindowTvfExec needs one child".into()))?;
        Ok(Arc::new(WindowTvfExec { input, window: self.window, time_column: self.time_column, properties: Arc::clone(&self.properties) }))
    }
    fn execute(&self, _partition: usize, _context: Arc<TaskContext>) -> datafusion::error::Result<SendableRecordBatchStream> {
        Err(not_executable("WindowTvfExec"))
    }
}
