//! Flink's built-in functions where DataFusion lacks them or gives the same name
//! another meaning (`DATE_FORMAT`'s patterns, `MOD`'s result type). Each is a
//! DataFusion scalar UDF over Arrow arrays, registered over DataFusion's own, so
//! a Flink query gets Flink's answer. One module per category of Flink's
//! documentation.

mod aggregate;
mod arithmetic;
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
pub use syntax::rewrite_query;
pub(crate) use syntax::{rewrite_expression_sql, rewrite_tokens};
pub use unsupported::refuse_unsupported;

use std::sync::Arc;

use datafusion::execution::context::SessionContext;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult};
use datafusion::logical_expr::{Expr, ScalarUDF};

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
    for name in collections::UNVERIFIED {
        ctx.deregister_udf(name);
    }
    for udf in functions {
        ctx.register_udf(udf);
    }
    for udaf in aggregate::aggregates() {
        ctx.register_udaf(udaf);
    }
}

/// Plans SQL syntax that DataFusion maps to its own functions onto Flink's.
#[derive(Debug)]
struct FlinkSyntax {
    substring: Arc<ScalarUDF>,
}

impl ExprPlanner for FlinkSyntax {
    fn plan_substring(&self, args: Vec<Expr>) -> datafusion::common::Result<PlannerResult<Vec<Expr>>> {
        Ok(PlannerResult::Planned(Expr::ScalarFunction(ScalarFunction::new_udf(Arc::clone(&self.substring), args))))
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
        // DataFusion's functions left out under a Flink name, with every name they go by.
        let left_out: Vec<&str> = before
            .scalar_functions()
            .values()
            .filter(|f| std::iter::once(f.name()).chain(f.aliases().iter().map(String::as_str)).any(|n| collections::UNVERIFIED.contains(&n)))
            .flat_map(|f| std::iter::once(f.name()).chain(f.aliases().iter().map(String::as_str)))
            .collect();
        for name in collections::UNVERIFIED {
            assert!(after.scalar_functions().get(*name).is_none(), "{name} is left out");
        }
        for (key, function) in before.scalar_functions() {
            if !ours.contains(key) && !left_out.contains(&key.as_str()) {
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
