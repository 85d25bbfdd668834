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

/// The point and file from `EDDY_PAUSE_AT=<point>:<file>`, read once.
fn pause_armed() -> Option<&'static (String, std::path::PathBuf)> {
    static ARMED: OnceLock<Option<(String, std::path::PathBuf)>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let value = std::env::var("EDDY_PAUSE_AT").ok()?;
            let (point, file) = value.split_once(':')?;
            Some((point.to_string(), std::path::PathBuf::from(file)))
        })
        .as_ref()
}

/// Pause points for concurrency tests: with `EDDY_PAUSE_AT=<point>:<file>`, the
/// first task to reach `<point>` while `<file>` says `armed` writes `paused` into
/// it and waits (without holding a thread) until the test removes it, so a test
/// can hold a statement at an exact step (say, planning) and check what other
/// clients can do meanwhile. Unset, a point costs one load.
pub async fn pause(point: &str) {
    static PAUSED: AtomicU64 = AtomicU64::new(0);
    let Some((armed_point, file)) = pause_armed() else { return };
    if armed_point != point || std::fs::read_to_string(file).ok().as_deref() != Some("armed") || PAUSED.fetch_add(1, Ordering::SeqCst) != 0 {
        return;
    }
    if let Err(e) = std::fs::write(file, "paused") {
        eprintln!("eddy: EDDY_PAUSE_AT={point}: cannot write {}: {e}", file.display());
        return;
    }
    while file.exists() {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
