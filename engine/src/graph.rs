//! From a streaming plan to a dataflow graph of stages.
//!
//! A *stage* is a chain of operators that runs as one task per instance:
//!
//! - a source stage has one instance per source partition; its chain starts with
//!   [`SourcePrepOperator`] and holds every stateless operator up to the next exchange;
//! - a keyed stage runs an aggregate (or a join) with parallelism N behind a hash
//!   exchange on the group keys (each side's join keys), followed by the stateless
//!   operators above it;
//! - the sink stage has one instance that writes to the sink.
//!
//! Stateless operators are chained into the stage below them (as Flink chains
//! operators), so rows only cross a channel where the data must be re-partitioned.

use std::fmt::Write as _;
use std::sync::Arc;

use crate::plan::{AggregateKind, JoinBound, JoinSide, SourceNode, StreamNode, StreamPlan};
use datafusion::physical_expr::PhysicalExpr;

use crate::connector::Source;
use crate::error::{EngineError, Result};
use crate::lookup::LookupTable;
use crate::metrics::{PipelineMetrics, StageShape, StageShapeKind};
use crate::operator::Operator;
use crate::operators::filter::FilterOperator;
use crate::operators::interval_join::IntervalJoinOperator;
use crate::operators::lookup_join::LookupJoinOperator;
use crate::operators::over_aggregate::OverAggregateOperator;
use crate::operators::project::ProjectOperator;
use crate::operators::rank::RankOperator;
use crate::operators::regular_join::RegularJoinOperator;
use crate::operators::retract_aggregate::RetractAggregateOperator;
use crate::operators::session_aggregate::SessionAggregateOperator;
use crate::operators::source_prep::SourcePrepOperator;
use crate::operators::temporal_join::TemporalJoinOperator;
use crate::operators::window_aggregate::WindowAggregateOperator;
use crate::operators::window_assign::WindowAssignOperator;

/// Makes a fresh operator for each instance of a stage, so instances never share state.
pub type OperatorFactory = Arc<dyn Fn() -> Result<Box<dyn Operator>> + Send + Sync>;

/// What feeds a stage's chain.
#[allow(clippy::large_enum_variant)] // built once per pipeline, never moved on the hot path
pub enum StageKind {
    /// Reads a source; one instance per partition.
    Source { node: SourceNode, source: Arc<dyn Source> },
    /// Runs `head` (an aggregate or a join) on the rows whose keys hash to the
    /// instance: `keys[n]` are the keys of the rows that arrive as input `n` (one
    /// input for an aggregate, a join's two sides).
    Keyed { parallelism: usize, head: OperatorFactory, keys: Vec<Vec<Arc<dyn PhysicalExpr>>> },
    /// Writes to the pipeline's sink; one instance.
    Sink,
}

/// One stage: an input, a chain of operators, and where its output goes.
pub struct Stage {
    pub name: String,
    pub kind: StageKind,
    pub chain: Vec<OperatorFactory>,
    /// The stage this one sends to (`None` only for the sink stage).
    pub output: Option<Link>,
}

/// Where a stage's output goes: which stage, and as which of its inputs (a join's
/// side; 0 for every other stage).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    pub stage: usize,
    pub input: usize,
}

/// The dataflow graph of one pipeline.
pub struct Graph {
    pub stages: Vec<Stage>,
    /// The pipeline's parallelism: splittable sources (files, generators) are opened
    /// for this many tasks, so a pipeline without a keyed stage decodes on as many
    /// cores as one with.
    pub parallelism: usize,
}

impl Graph {
    /// Builds the graph of `plan`. `open_source` creates the connector for each
    /// source table, `open_lookup` for each table a lookup join reads (by the
    /// physical columns given).
    pub fn build(
        plan: &StreamPlan,
        parallelism: usize,
        metrics: &Arc<PipelineMetrics>,
        open_source: &mut dyn FnMut(&SourceNode) -> Result<Arc<dyn Source>>,
        open_lookup: &mut dyn FnMut(&SourceNode, &[usize]) -> Result<LookupTable>,
    ) -> Result<Graph> {
        let mut builder = Builder { stages: Vec::new(), parallelism: parallelism.max(1), metrics: Arc::clone(metrics), open_source, open_lookup };
        let flows = builder.flows(&plan.root)?;
        let sink = builder.stages.len();
        builder.stages.push(Stage { name: "Sink".to_string(), kind: StageKind::Sink, chain: Vec::new(), output: None });
        builder.connect(flows, Link { stage: sink, input: 0 });
        Ok(Graph { stages: builder.stages, parallelism: parallelism.max(1) })
    }

    /// Each stage's shape with `instances[i]` tasks for stage `i`, for the figures a console shows.
    pub fn shapes(&self, instances: &[usize]) -> Vec<StageShape> {
        self.stages
            .iter()
            .enumerate()
            .map(|(i, stage)| StageShape {
                name: stage.name.clone(),
                kind: match stage.kind {
                    StageKind::Source { .. } => StageShapeKind::Source,
                    StageKind::Keyed { .. } => StageShapeKind::Keyed,
                    StageKind::Sink => StageShapeKind::Sink,
                },
                tasks: instances.get(i).copied().unwrap_or(0),
                output: stage.output,
            })
            .collect()
    }

    /// A readable description of the stages, for logs and `EXPLAIN`.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for (i, stage) in self.stages.iter().enumerate() {
            let kind = match &stage.kind {
                StageKind::Source { .. } => "one task per source partition".to_string(),
                StageKind::Keyed { parallelism, .. } => format!("{parallelism} task(s), hash exchange on keys"),
                StageKind::Sink => "one task".to_string(),
            };
            let _ = writeln!(
                out,
                "stage {i}: {} ({kind}), {} chained operator(s){}",
                stage.name,
                stage.chain.len(),
                stage.output.map(|o| format!(" -> stage {}", o.stage)).unwrap_or_default()
            );
        }
        out
    }
}

/// A stage output that still has stateless operators to append before it is connected.
struct Flow {
    stage: usize,
    pending: Vec<OperatorFactory>,
}

struct Builder<'a> {
    stages: Vec<Stage>,
    parallelism: usize,
    metrics: Arc<PipelineMetrics>,
    open_source: &'a mut dyn FnMut(&SourceNode) -> Result<Arc<dyn Source>>,
    open_lookup: &'a mut dyn FnMut(&SourceNode, &[usize]) -> Result<LookupTable>,
}

impl Builder<'_> {
    fn connect(&mut self, flows: Vec<Flow>, target: Link) {
        for flow in flows {
            let stage = &mut self.stages[flow.stage];
            stage.chain.extend(flow.pending);
            stage.output = Some(target);
        }
    }

    fn push_all(flows: &mut [Flow], factory: OperatorFactory) {
        for flow in flows {
            flow.pending.push(Arc::clone(&factory));
        }
    }

    /// A stage running `head` (an aggregate, a rank) on `parallelism` tasks behind a
    /// hash exchange on `keys`, fed by `flows`: the flow that leaves it.
    fn keyed_stage(&mut self, flows: Vec<Flow>, name: &str, parallelism: usize, head: OperatorFactory, keys: Vec<Arc<dyn PhysicalExpr>>) -> Vec<Flow> {
        self.stages.push(Stage { name: name.to_string(), kind: StageKind::Keyed { parallelism, head, keys: vec![keys] }, chain: Vec::new(), output: None });
        let stage = self.stages.len() - 1;
        self.connect(flows, Link { stage, input: 0 });
        vec![Flow { stage, pending: Vec::new() }]
    }

    fn flows(&mut self, node: &StreamNode) -> Result<Vec<Flow>> {
        match node {
            StreamNode::Source(source_node) => {
                let source = (self.open_source)(source_node)?;
                let prep_node = source_node.clone();
                let metrics = Arc::clone(&self.metrics);
                let origin = source.watermark_origin();
                let prep: OperatorFactory = Arc::new(move || Ok(Box::new(SourcePrepOperator::new(prep_node.clone(), origin, Arc::clone(&metrics)))));
                self.stages.push(Stage {
                    name: format!("Source {}", source_node.table.name),
                    kind: StageKind::Source { node: source_node.clone(), source },
                    chain: Vec::new(),
                    output: None,
                });
                Ok(vec![Flow { stage: self.stages.len() - 1, pending: vec![prep] }])
            }
            StreamNode::Filter { input, predicate, filtered_out } => {
                let mut flows = self.flows(input)?;
                let (predicate, filtered_out) = (Arc::clone(predicate), *filtered_out);
                Self::push_all(&mut flows, Arc::new(move || Ok(Box::new(FilterOperator::new(Arc::clone(&predicate), filtered_out)))));
                Ok(flows)
            }
            StreamNode::Project { input, exprs, schema } => {
                let mut flows = self.flows(input)?;
                let (exprs, schema) = (exprs.clone(), Arc::clone(schema));
                Self::push_all(&mut flows, Arc::new(move || Ok(Box::new(ProjectOperator::new(exprs.clone(), Arc::clone(&schema))))));
                Ok(flows)
            }
            StreamNode::WindowAssign { input, window, time_column, slicing, schema, .. } => {
                let mut flows = self.flows(input)?;
                let (window, time_column, slicing, schema) = (*window, *time_column, *slicing, Arc::clone(schema));
                Self::push_all(&mut flows, Arc::new(move || Ok(Box::new(WindowAssignOperator::new(window, time_column, slicing, Arc::clone(&schema))))));
                Ok(flows)
            }
            StreamNode::Union { inputs, .. } => {
                let mut flows = Vec::new();
                for input in inputs {
                    flows.extend(self.flows(input)?);
                }
                Ok(flows)
            }
            StreamNode::WindowAggregate(aggregate) => {
                let flows = self.flows(&aggregate.input)?;
                let node = aggregate.clone();
                let metrics = Arc::clone(&self.metrics);
                let session = matches!(aggregate.kind, AggregateKind::Session { .. });
                let retracting = aggregate.kind == AggregateKind::Retracting;
                let head: OperatorFactory = Arc::new(move || {
                    if retracting {
                        Ok(Box::new(RetractAggregateOperator::new(node.clone())?))
                    } else if session {
                        Ok(Box::new(SessionAggregateOperator::new(node.clone(), Arc::clone(&metrics))?))
                    } else {
                        Ok(Box::new(WindowAggregateOperator::new(node.clone(), Arc::clone(&metrics))?))
                    }
                });
                let name = if retracting {
                    "RetractAggregate"
                } else if session {
                    "SessionAggregate"
                } else {
                    "WindowAggregate"
                };
                Ok(self.keyed_stage(flows, name, aggregate.tasks(self.parallelism), head, aggregate.key_exprs()))
            }
            StreamNode::Rank(rank) => {
                let flows = self.flows(&rank.input)?;
                let (node, metrics) = (rank.clone(), Arc::clone(&self.metrics));
                let head: OperatorFactory = Arc::new(move || Ok(Box::new(RankOperator::new(node.clone(), Arc::clone(&metrics))?)));
                Ok(self.keyed_stage(flows, rank.kind.operator_name(), rank.tasks(self.parallelism), head, rank.key_exprs()))
            }
            StreamNode::OverAggregate(over) => {
                let flows = self.flows(&over.input)?;
                let (node, metrics) = (over.clone(), Arc::clone(&self.metrics));
                let head: OperatorFactory = Arc::new(move || Ok(Box::new(OverAggregateOperator::new(node.clone(), Arc::clone(&metrics))?)));
                Ok(self.keyed_stage(flows, "OverAggregate", over.tasks(self.parallelism), head, over.partition_by.clone()))
            }
            StreamNode::Join(join) if join.looked_up().is_some() => {
                let probe = if join.looked_up() == Some(JoinSide::Right) { &join.left } else { &join.right };
                let mut flows = self.flows(probe)?;
                let table = join.lookup_table().ok_or_else(|| EngineError::Internal("a lookup join without a table to look up".into()))?;
                let keys = join.lookup_key_columns().map_err(EngineError::Unsupported)?;
                let lookup = (self.open_lookup)(table, &keys)?;
                let node = join.clone();
                Self::push_all(&mut flows, Arc::new(move || Ok(Box::new(LookupJoinOperator::new(node.clone(), &lookup)?))));
                Ok(flows)
            }
            StreamNode::Join(join) => {
                let left = self.flows(&join.left)?;
                let right = self.flows(&join.right)?;
                let node = join.clone();
                let head: OperatorFactory = match join.bounded_by {
                    JoinBound::Unbounded { .. } => Arc::new(move || Ok(Box::new(RegularJoinOperator::new(node.clone())?))),
                    JoinBound::Interval(_) | JoinBound::Window { .. } => Arc::new(move || Ok(Box::new(IntervalJoinOperator::new(node.clone())?))),
                    JoinBound::Temporal(_) => Arc::new(move || Ok(Box::new(TemporalJoinOperator::new(node.clone())?))),
                    JoinBound::Lookup { .. } => return Err(EngineError::Internal("a lookup join planned as a two-input join".into())),
                };
                let keys = vec![join.keys(JoinSide::Left).to_vec(), join.keys(JoinSide::Right).to_vec()];
                self.stages.push(Stage {
                    name: join.operator_name().to_string(),
                    kind: StageKind::Keyed { parallelism: join.tasks(self.parallelism), head, keys },
                    chain: Vec::new(),
                    output: None,
                });
                let stage = self.stages.len() - 1;
                self.connect(left, Link { stage, input: JoinSide::Left as usize });
                self.connect(right, Link { stage, input: JoinSide::Right as usize });
                Ok(vec![Flow { stage, pending: Vec::new() }])
            }
        }
    }
}
