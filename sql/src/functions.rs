//! Flink SQL functions that DataFusion does not have under the same name.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Int64Array, TimestampMillisecondArray};
use datafusion::arrow::compute::kernels::cast;
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{create_udf, ColumnarValue, Volatility};

/// Registers Flink's names: `TO_TIMESTAMP_LTZ(epoch, precision)`.
pub fn register(ctx: &SessionContext) {
    let millis = DataType::Timestamp(TimeUnit::Millisecond, None);
    let to_timestamp_ltz = create_udf("TO_TIMESTAMP_LTZ", vec![DataType::Int64, DataType::Int64], millis, Volatility::Immutable, Arc::new(to_timestamp_ltz));
    ctx.register_udf(to_timestamp_ltz.clone().with_aliases(["to_timestamp_ltz"]));
}

/// `TO_TIMESTAMP_LTZ(n, 0)` reads epoch seconds, `TO_TIMESTAMP_LTZ(n, 3)` epoch milliseconds.
fn to_timestamp_ltz(args: &[ColumnarValue]) -> datafusion::error::Result<ColumnarValue> {
    let precision = match &args[1] {
        ColumnarValue::Scalar(ScalarValue::Int64(Some(p))) => *p,
        _ => return Err(DataFusionError::Plan("TO_TIMESTAMP_LTZ: the precision must be the literal 0 or 3".to_string())),
    };
    let factor = match precision {
        0 => 1000,
        3 => 1,
        other => return Err(DataFusionError::Plan(format!("TO_TIMESTAMP_LTZ: precision {other} is not supported; use 0 (seconds) or 3 (milliseconds)"))),
    };
    let convert = |array: &ArrayRef| -> datafusion::error::Result<ArrayRef> {
        let array = cast::cast(array, &DataType::Int64)?;
        let ints = array.as_any().downcast_ref::<Int64Array>().ok_or_else(|| DataFusionError::Internal("expected Int64".into()))?;
        let out: TimestampMillisecondArray = ints.iter().map(|v| v.and_then(|v| v.checked_mul(factor))).collect();
        Ok(Arc::new(out))
    };
    match &args[0] {
        ColumnarValue::Array(array) => Ok(ColumnarValue::Array(convert(array)?)),
        ColumnarValue::Scalar(scalar) => {
            let array = convert(&scalar.to_array()?)?;
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&array, 0)?))
        }
    }
}
