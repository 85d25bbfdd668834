//! Flink's built-in functions where DataFusion lacks them or gives the same name
//! another meaning (`DATE_FORMAT`'s patterns, `MOD`'s result type). Each is a
//! DataFusion scalar UDF over Arrow arrays, registered over DataFusion's own, so
//! a Flink query gets Flink's answer. One module per category of Flink's
//! documentation.

mod aggregate;
mod arithmetic;
mod arrays;
mod calendar;
mod collect;
mod collections;
mod conditional;
mod conversion;
mod date_pattern;
mod exact;
mod flink_fn;
mod hashing;
mod json;
mod json_agg;
mod json_build;
mod json_clauses;
mod json_path;
mod percentile;
mod random;
mod string;
mod syntax;
mod temporal;
mod timezone;
mod unsupported;
mod url;

pub use json_agg::JSON_ARRAYAGG;
pub use syntax::{call, rewrite_query};
pub(crate) use syntax::{rewrite_expression_sql, rewrite_tokens};
pub use unsupported::refuse_unsupported;

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{plan_err, DFSchema, ScalarValue};
use datafusion::execution::context::SessionContext;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawFieldAccessExpr};
use datafusion::logical_expr::{Expr, ExprSchemable, GetFieldAccess, ScalarUDF};

/// Registers Flink's functions, replacing DataFusion's of the same name.
pub fn register(ctx: &SessionContext) {
    let functions = flink_functions();
    if let Some(substring) = functions.iter().find(|f| f.name() == "substring") {
        // DataFusion plans `SUBSTRING(...)` syntax straight to its own `substr`
        // through an expression planner, not by name: put Flink's planner first.
        // (Rebuilding the state re-registers every function in no set order, so
        // Flink's are registered after it, over DataFusion's.)
        let state = ctx.state_ref();
        let mut state = state.write();
        let mut planners: Vec<Arc<dyn ExprPlanner>> = vec![Arc::new(FlinkSyntax { substring: Arc::new(substring.clone()) })];
        planners.extend(state.expr_planners().iter().cloned());
        *state = SessionStateBuilder::new_from_existing(state.clone()).with_expr_planners(planners).build();
    }
    for udf in functions {
        ctx.register_udf(udf);
    }
    for udaf in aggregate::aggregates() {
        ctx.register_udaf(udaf);
    }
}

/// Plans SQL syntax that DataFusion maps to its own functions onto Flink's, and
/// refuses what Flink refuses when it plans (an array index below 1).
#[derive(Debug)]
struct FlinkSyntax {
    substring: Arc<ScalarUDF>,
}

impl ExprPlanner for FlinkSyntax {
    fn plan_substring(&self, args: Vec<Expr>) -> datafusion::common::Result<PlannerResult<Vec<Expr>>> {
        Ok(PlannerResult::Planned(Expr::ScalarFunction(ScalarFunction::new_udf(Arc::clone(&self.substring), args))))
    }

    /// `array[i]` with a constant `i` below 1: Flink refuses it when it plans the
    /// query (its arrays count from 1), where DataFusion would answer NULL. An
    /// index that is no constant is NULL outside the array, in both.
    fn plan_field_access(&self, access: RawFieldAccessExpr, schema: &DFSchema) -> datafusion::common::Result<PlannerResult<RawFieldAccessExpr>> {
        if let GetFieldAccess::ListIndex { key } = &access.field_access {
            let is_array = access.expr.get_type(schema).is_ok_and(|t| matches!(t, DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..)));
            let index = match key.as_ref() {
                Expr::Literal(value, _) => constant_integer(value),
                Expr::Negative(inner) => match inner.as_ref() {
                    Expr::Literal(value, _) => constant_integer(value).map(|i| -i),
                    _ => None,
                },
                _ => None,
            };
            if let Some(index) = index.filter(|i| is_array && *i < 1) {
                return plan_err!(
                    "array element access needs an index starting at 1, not {index}: Flink counts an array's elements from 1 (ARRAY[...][1] is the first)"
                );
            }
        }
        Ok(PlannerResult::Original(access))
    }
}

/// An integer constant's value.
fn constant_integer(value: &ScalarValue) -> Option<i128> {
    match value {
        ScalarValue::Int8(Some(v)) => Some(i128::from(*v)),
        ScalarValue::Int16(Some(v)) => Some(i128::from(*v)),
        ScalarValue::Int32(Some(v)) => Some(i128::from(*v)),
        ScalarValue::Int64(Some(v)) => Some(i128::from(*v)),
        ScalarValue::UInt8(Some(v)) => Some(i128::from(*v)),
        ScalarValue::UInt16(Some(v)) => Some(i128::from(*v)),
        ScalarValue::UInt32(Some(v)) => Some(i128::from(*v)),
        ScalarValue::UInt64(Some(v)) => Some(i128::from(*v)),
        _ => None,
    }
}

/// Every Flink function Eddy adds to DataFusion's.
pub fn flink_functions() -> Vec<ScalarUDF> {
    let mut all = temporal::functions();
    all.extend(arithmetic::functions());
    all.extend(string::functions());
    all.extend(conditional::functions());
    all.extend(hashing::functions());
    all.extend(calendar::functions());
    all.extend(json::functions());
    all.extend(json_build::functions());
    all.extend(conversion::functions());
    all.extend(random::functions());
    all.extend(url::functions());
    all.extend(timezone::functions());
    all.extend(collections::functions());
    all.extend(arrays::functions());
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rebuilding the state for the SUBSTRING planner re-registers DataFusion's
    /// functions in no set order; every name must still mean what it meant.
    #[test]
    fn registering_keeps_every_other_name_as_it_was() {
        let plain = SessionContext::new();
        let flink = SessionContext::new();
        register(&flink);
        let ours: Vec<String> = flink_functions().iter().flat_map(|f| std::iter::once(f.name().to_string()).chain(f.aliases().iter().cloned())).collect();
        let (before, after) = (plain.state(), flink.state());
        for (key, function) in before.scalar_functions() {
            if !ours.contains(key) {
                assert_eq!(after.scalar_functions().get(key).map(|f| f.name()), Some(function.name()), "scalar function {key}");
            }
        }
        for (key, function) in before.aggregate_functions() {
            assert_eq!(after.aggregate_functions().get(key).map(|f| f.name()), Some(function.name()), "aggregate function {key}");
        }
        for (key, function) in before.window_functions() {
            assert_eq!(after.window_functions().get(key).map(|f| f.name()), Some(function.name()), "window function {key}");
        }
        assert_eq!(after.scalar_functions().get("date_format").map(|f| f.name()), Some("date_format"));
    }
}
