//! The aggregates of one group kept as running accumulators rather than as the
//! group's rows: what a session window folds its rows into once it has many, so
//! that a session that never ends holds a few accumulators, not every row it saw.
//!
//! Rows are folded in batches (a session's rows are gathered and folded together),
//! two partials merge through DataFusion's intermediate state (`state` then
//! `merge_batch`, as a two-phase aggregate merges them), and a partial is saved in
//! a checkpoint as that same intermediate state.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray};
use datafusion::arrow::compute::filter;
use datafusion::logical_expr::Accumulator;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::scalar::ScalarValue;

use super::arrow_error;
use crate::error::{EngineError, Result};

const NAME: &str = "SessionAggregate";

/// One group's aggregates over the rows folded in so far, with its key.
pub(crate) struct PartialAggregate {
    accumulators: Vec<Box<dyn Accumulator>>,
    /// The group's key columns, one row each (the rows that held it are gone).
    key: Vec<ArrayRef>,
}

impl PartialAggregate {
    /// An empty partial of `aggregates` for the group whose key is the one-row `key`.
    pub(crate) fn new(aggregates: &[Arc<AggregateFunctionExpr>], key: Vec<ArrayRef>) -> Result<Self> {
        let accumulators = aggregates.iter().map(|a| a.create_accumulator().map_err(|e| EngineError::execution(NAME, e))).collect::<Result<_>>()?;
        Ok(PartialAggregate { accumulators, key })
    }

    /// The group's key, one row per column.
    pub(crate) fn key(&self) -> &[ArrayRef] {
        &self.key
    }

    /// Folds in rows: per aggregate its argument arrays and its `FILTER` (a NULL
    /// filter value skips the row, as in SQL).
    pub(crate) fn update(&mut self, args: &[Vec<ArrayRef>], filters: &[Option<BooleanArray>]) -> Result<()> {
        for ((accumulator, values), keep) in self.accumulators.iter_mut().zip(args).zip(filters) {
            let values = match keep {
                None => values.clone(),
                Some(keep) => values.iter().map(|v| filter(v, keep).map_err(|e| arrow_error(NAME, e))).collect::<Result<Vec<_>>>()?,
            };
            accumulator.update_batch(&values).map_err(|e| EngineError::execution(NAME, e))?;
        }
        Ok(())
    }

    /// Takes in another partial of the same aggregates (two sessions became one).
    pub(crate) fn merge(&mut self, mut other: PartialAggregate) -> Result<()> {
        for (accumulator, theirs) in self.accumulators.iter_mut().zip(other.accumulators.iter_mut()) {
            let state = theirs.state().map_err(|e| EngineError::execution(NAME, e))?;
            let arrays = state.iter().map(|v| v.to_array().map_err(|e| EngineError::execution(NAME, e))).collect::<Result<Vec<_>>>()?;
            accumulator.merge_batch(&arrays).map_err(|e| EngineError::execution(NAME, e))?;
        }
        Ok(())
    }

    /// Takes in one row of intermediate state, as [`PartialAggregate::state`] gave it
    /// (per aggregate, its state columns).
    pub(crate) fn merge_state(&mut self, states: &[Vec<ArrayRef>]) -> Result<()> {
        for (accumulator, state) in self.accumulators.iter_mut().zip(states) {
            accumulator.merge_batch(state).map_err(|e| EngineError::execution(NAME, e))?;
        }
        Ok(())
    }

    /// The intermediate state, per aggregate, for a checkpoint. Taking an
    /// accumulator's state may consume it, so each is rebuilt from the state taken.
    pub(crate) fn checkpoint_state(&mut self, aggregates: &[Arc<AggregateFunctionExpr>]) -> Result<Vec<Vec<ScalarValue>>> {
        let mut states = Vec::with_capacity(self.accumulators.len());
        for (accumulator, aggregate) in self.accumulators.iter_mut().zip(aggregates) {
            let state = accumulator.state().map_err(|e| EngineError::execution(NAME, e))?;
            let arrays = state.iter().map(|v| v.to_array().map_err(|e| EngineError::execution(NAME, e))).collect::<Result<Vec<_>>>()?;
            let mut fresh = aggregate.create_accumulator().map_err(|e| EngineError::execution(NAME, e))?;
            fresh.merge_batch(&arrays).map_err(|e| EngineError::execution(NAME, e))?;
            *accumulator = fresh;
            states.push(state);
        }
        Ok(states)
    }

    /// The final value of each aggregate.
    pub(crate) fn evaluate(&mut self) -> Result<Vec<ScalarValue>> {
        self.accumulators.iter_mut().map(|a| a.evaluate().map_err(|e| EngineError::execution(NAME, e))).collect()
    }

    /// Bytes the accumulators and the key hold.
    pub(crate) fn size_bytes(&self) -> usize {
        self.accumulators.iter().map(|a| a.size()).sum::<usize>() + self.key.iter().map(|k| k.get_array_memory_size()).sum::<usize>()
    }
}

/// Turns one value per row into an array (a column of an output or a checkpoint).
pub(crate) fn scalars_to_array(values: Vec<ScalarValue>) -> Result<ArrayRef> {
    ScalarValue::iter_to_array(values).map_err(|e| EngineError::execution(NAME, e))
}
