//! What the machine offers (memory, cores) and what a job asks of it.
//!
//! Every command that allocates something sized by its input adds up what it will need in a
//! [`MemoryEstimate`] and calls [`MemoryEstimate::check`] **before** allocating, so a width of
//! 10⁹ is a one-paragraph error naming the estimate and the machine's memory instead of an
//! allocation failure with a backtrace. Estimates are in f64 bytes, so no size overflows.

use crate::error::{Error, Result};

/// Bytes needed by the parts of one job.
#[derive(Clone, Debug, Default)]
pub struct MemoryEstimate {
    pub parts: Vec<(String, f64)>,
}

impl MemoryEstimate {
    /// Add `count` elements of `bytes_each` bytes under `name`.
    pub fn add(&mut self, name: &str, count: f64, bytes_each: f64) {
        if count > 0.0 {
            self.parts.push((name.to_string(), count * bytes_each));
        }
    }

    pub fn total(&self) -> f64 {
        self.parts.iter().map(|(_, b)| b).sum()
    }

    /// "weights 4.0 GiB, optimizer 8.0 GiB, …" (largest first).
    pub fn breakdown(&self) -> String {
        let mut parts = self.parts.clone();
        parts.sort_by(|a, b| b.1.total_cmp(&a.1));
        let total = self.total();
        parts.retain(|(_, b)| *b >= 0.01 * total);
        parts.iter().map(|(n, b)| format!("{n} {}", crate::error::gib(*b))).collect::<Vec<_>>().join(", ")
    }

    /// Refuse when the job cannot fit: more than 90% of the available memory.
    pub fn check(&self, what: &str, hint: &str) -> Result<()> {
        let needed = self.total();
        let available = available_memory();
        let fits = match available {
            Some(a) => needed <= 0.9 * a,
            // Unknown machine: refuse only what no machine has (1 PiB).
            None => needed < 1024f64.powi(5),
        };
        if fits {
            return Ok(());
        }
        Err(Error::Memory {
            what: what.to_string(),
            needed,
            breakdown: self.breakdown(),
            available,
            hint: hint.to_string(),
        })
    }
}

/// Memory this process may still use, in bytes: `MemAvailable` from /proc/meminfo, capped by
/// the cgroup's limit (Slurm jobs and containers run in one). `SPECDYN_MEMORY_LIMIT` (bytes)
/// overrides both. None where neither is readable.
pub fn available_memory() -> Option<f64> {
    if let Some(v) = std::env::var("SPECDYN_MEMORY_LIMIT").ok().and_then(|s| s.trim().parse::<f64>().ok()) {
        return Some(v);
    }
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| {
        t.lines()
            .find(|l| l.starts_with("MemAvailable:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| kb * 1024.0)
    });
    let cgroup = cgroup_headroom();
    match (meminfo, cgroup) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Limit minus usage of this process's cgroup (v2, then v1), when a limit is set.
fn cgroup_headroom() -> Option<f64> {
    let read = |p: &str| std::fs::read_to_string(p).ok().and_then(|s| s.trim().parse::<f64>().ok());
    let (limit, used) = match read("/sys/fs/cgroup/memory.max") {
        Some(l) => (l, read("/sys/fs/cgroup/memory.current").unwrap_or(0.0)),
        None => (
            read("/sys/fs/cgroup/memory/memory.limit_in_bytes")?,
            read("/sys/fs/cgroup/memory/memory.usage_in_bytes").unwrap_or(0.0),
        ),
    };
    // v1 reports "no limit" as a huge number.
    (limit < 1e17).then(|| (limit - used).max(0.0))
}

/// Cores this process may use (affinity and cgroup quotas respected).
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// The thread count to use for a `--threads` request: 0 means all cores; more than the cores
/// available is clamped (with a note on stderr), since extra threads only contend.
pub fn thread_count(requested: usize) -> usize {
    let cores = available_cores();
    if requested == 0 {
        return cores;
    }
    if requested > cores {
        eprintln!("note: --threads {requested} exceeds the {cores} cores available; using {cores}");
        return cores;
    }
    requested
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_jobs_are_refused_with_the_breakdown() {
        let mut e = MemoryEstimate::default();
        e.add("weights", 1e15, 4.0);
        e.add("data", 10.0, 4.0);
        let err = e.check("training", "lower model.width").unwrap_err().to_string();
        assert!(err.contains("weights") && err.contains("GiB") && err.contains("model.width"), "{err}");
        let mut small = MemoryEstimate::default();
        small.add("weights", 1e3, 4.0);
        small.check("training", "").unwrap();
        assert!(thread_count(usize::MAX) <= available_cores());
    }
}
