//! What the window and session aggregates do alike on a watermark: emit the
//! results it closes, once, then pass the watermark on.

use crate::error::Result;
use crate::message::EventTime;
use crate::operator::Emitter;

/// An aggregate whose results wait for the watermark to close them (windows, sessions).
pub(crate) trait ClosedByWatermark {
    /// The highest watermark the aggregate has seen.
    fn watermark_mut(&mut self) -> &mut EventTime;

    /// Emits every result a watermark of `watermark` ms closes, and forgets its state.
    fn fire(&mut self, watermark: i64, out: &mut Emitter) -> Result<()>;
}

/// The `on_watermark` of such an aggregate: a newer watermark closes what it passed;
/// every watermark goes on.
pub(crate) fn advance_watermark(aggregate: &mut impl ClosedByWatermark, watermark: EventTime, out: &mut Emitter) -> Result<()> {
    if watermark > *aggregate.watermark_mut() {
        *aggregate.watermark_mut() = watermark;
        aggregate.fire(watermark.0, out)?;
    }
    out.watermark(watermark);
    Ok(())
}
