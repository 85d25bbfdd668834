//! Crash points for recovery tests: with `EDDY_KILL_AT=<point>:<n>` the process
//! kills itself with SIGKILL the `n`-th time any task reaches `<point>`, so a test
//! can crash the engine at an exact moment of the commit protocol (a checkpoint
//! prepared but not saved, saved but not committed, a transaction half written)
//! instead of hoping a random kill lands there. Unset, a point costs one load.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The point and count from `EDDY_KILL_AT`, read once.
fn armed() -> Option<&'static (String, u64)> {
    static ARMED: OnceLock<Option<(String, u64)>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let value = std::env::var("EDDY_KILL_AT").ok()?;
            let (point, n) = value.rsplit_once(':').unwrap_or((value.as_str(), "1"));
            Some((point.to_string(), n.parse().unwrap_or(1)))
        })
        .as_ref()
}

/// Marks `point`; kills the process if `EDDY_KILL_AT` says this is the moment.
pub fn reach(point: &str) {
    static REACHED: AtomicU64 = AtomicU64::new(0);
    let Some((armed_point, n)) = armed() else { return };
    if armed_point == point && REACHED.fetch_add(1, Ordering::SeqCst) + 1 == *n {
        eprintln!("eddy: EDDY_KILL_AT={point}:{n} reached; killing the process");
        // SAFETY: kill(2) with this process's own id and a valid signal number has no memory effects.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}
