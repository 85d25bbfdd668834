//! Flink's built-in functions where DataFusion lacks them or gives the same name
//! another meaning (`DATE_FORMAT`'s patterns, `MOD`'s result type). Each is a
//! DataFusion scalar UDF over Arrow arrays, registered over DataFusion's own, so
//! a Flink query gets Flink's answer. One module per category of Flink's
//! documentation.

mod arithmetic;
mod conditional;
mod date_pattern;
mod flink_fn;
mod hashing;
mod string;
mod temporal;
mod unsupported;

pub use unsupported::refuse_unsupported;

use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::ScalarUDF;

/// Registers Flink's functions, replacing DataFusion's of the same name.
pub fn register(ctx: &SessionContext) {
    for udf in flink_functions() {
        ctx.register_udf(udf);
    }
}

/// Every Flink function Eddy adds to DataFusion's.
pub fn flink_functions() -> Vec<ScalarUDF> {
    let mut all = temporal::functions();
    all.extend(arithmetic::functions());
    all.extend(string::functions());
    all.extend(conditional::functions());
    all.extend(hashing::functions());
    all
}
