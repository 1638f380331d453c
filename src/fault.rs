//! Fault injection for the crash tests: with `SPECDYN_FAULT=NAME:N` in the environment, the
//! process kills itself with SIGKILL the N-th time it reaches [`point`]`(NAME)` — in the middle
//! of an HDF5 write, say — so `tests/resume.rs` can check that no crash point loses data.
//! Without the variable a point costs one atomic load.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

static TARGET: OnceLock<Option<(String, u64)>> = OnceLock::new();
static HITS: AtomicU64 = AtomicU64::new(0);

fn target() -> &'static Option<(String, u64)> {
    TARGET.get_or_init(|| {
        let spec = std::env::var("SPECDYN_FAULT").ok()?;
        let (name, n) = spec.rsplit_once(':')?;
        Some((name.to_string(), n.parse().ok()?))
    })
}

/// A named crash point.
pub fn point(name: &str) {
    if let Some((want, n)) = target()
        && want == name
        && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *n
    {
        let _ = std::process::Command::new("kill").args(["-KILL", &std::process::id().to_string()]).status();
        std::process::abort();
    }
}

static DELAY: OnceLock<Option<(String, u64)>> = OnceLock::new();

/// A named slow point: with `SPECDYN_DELAY=NAME:MS` in the environment, [`delay`]`(NAME)`
/// sleeps MS milliseconds — e.g. to hold the spectra thread back so a test can crash a run
/// while its snapshots lag behind its checkpoints. Without the variable it does nothing.
pub fn delay(name: &str) {
    let target = DELAY.get_or_init(|| {
        let spec = std::env::var("SPECDYN_DELAY").ok()?;
        let (name, ms) = spec.rsplit_once(':')?;
        Some((name.to_string(), ms.parse().ok()?))
    });
    if let Some((want, ms)) = target
        && want == name
    {
        std::thread::sleep(std::time::Duration::from_millis(*ms));
    }
}
