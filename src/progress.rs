//! Progress of long work: a bar on a terminal; plain lines (position, rate, ETA) every few
//! seconds when stderr is a file, a pipe or a Slurm log; nothing when quiet.
//!
//! Every long command (train, spectra, theory, compare, sweep, coord-check) reports through
//! [`Progress`], so the same job shows the same information wherever its output goes. The
//! interval of plain lines is 10 s, or `SPECDYN_PROGRESS_SECONDS`.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// A progress reporter over `total` units.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    plain: Option<Plain>,
}

struct Plain {
    label: String,
    total: u64,
    pos: u64,
    start: Instant,
    start_pos: u64,
    last: Instant,
    every: Duration,
    message: String,
}

/// Seconds between plain progress lines.
fn plain_interval() -> Duration {
    let s = std::env::var("SPECDYN_PROGRESS_SECONDS").ok().and_then(|v| v.parse::<f64>().ok()).unwrap_or(10.0);
    Duration::from_secs_f64(s.max(0.0))
}

/// "1 h 02 min", "3 min 05 s", "12 s".
pub fn duration_text(s: f64) -> String {
    if !s.is_finite() {
        return "?".into();
    }
    let s = s.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{} h {:02} min", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{} min {:02} s", s / 60, s % 60)
    } else {
        format!("{s} s")
    }
}

/// A reporter for `total` units of work, labelled `label` (e.g. "train", "DMFT").
pub fn bar(total: u64, quiet: bool, label: &str) -> Progress {
    if quiet {
        return Progress { bar: None, plain: None };
    }
    if std::io::stderr().is_terminal() {
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template(&format!(
                "{label} {{elapsed_precise}} [{{bar:30.cyan/blue}}] {{pos}}/{{len}} {{msg}} {{per_sec}} ETA {{eta}}"
            ))
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        return Progress { bar: Some(b), plain: None };
    }
    let now = Instant::now();
    Progress {
        bar: None,
        plain: Some(Plain {
            label: label.to_string(),
            total,
            pos: 0,
            start: now,
            start_pos: 0,
            last: now,
            every: plain_interval(),
            message: String::new(),
        }),
    }
}

impl Progress {
    /// A reporter that shows nothing.
    pub fn hidden() -> Self {
        Progress { bar: None, plain: None }
    }

    pub fn set_length(&mut self, total: u64) {
        if let Some(b) = &self.bar {
            b.set_length(total);
        }
        if let Some(p) = &mut self.plain {
            p.total = total;
        }
    }

    /// Where the work starts (a resumed run): the rate and ETA count from here.
    pub fn start_at(&mut self, pos: u64) {
        if let Some(b) = &self.bar {
            b.set_position(pos);
            b.reset_eta();
        }
        if let Some(p) = &mut self.plain {
            p.pos = pos;
            p.start_pos = pos;
            p.start = Instant::now();
        }
    }

    pub fn set_position(&mut self, pos: u64) {
        if let Some(b) = &self.bar {
            b.set_position(pos);
        }
        if let Some(p) = &mut self.plain {
            p.pos = pos;
            p.maybe_print(false);
        }
    }

    pub fn inc(&mut self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
        if let Some(p) = &mut self.plain {
            p.pos += n;
            p.maybe_print(false);
        }
    }

    pub fn set_message(&mut self, msg: impl Into<String>) {
        let msg = msg.into();
        if let Some(b) = &self.bar {
            b.set_message(msg.clone());
        }
        if let Some(p) = &mut self.plain {
            p.message = msg;
        }
    }

    /// Print a line above the bar (or as a plain line).
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(b) => b.println(line),
            None if self.plain.is_some() => eprintln!("{line}"),
            None => {}
        }
    }

    /// Remove the bar (a final plain line when not on a terminal).
    pub fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        if let Some(p) = &mut self.plain
            && p.pos > p.start_pos
        {
            p.maybe_print(true);
        }
        self.plain = None;
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

impl Plain {
    fn maybe_print(&mut self, force: bool) {
        let now = Instant::now();
        if !force && now.duration_since(self.last) < self.every {
            return;
        }
        self.last = now;
        let elapsed = now.duration_since(self.start).as_secs_f64();
        let done = self.pos.saturating_sub(self.start_pos) as f64;
        let rate = done / elapsed.max(1e-9);
        let left = self.total.saturating_sub(self.pos) as f64;
        let pct = if self.total > 0 { 100.0 * self.pos as f64 / self.total as f64 } else { 0.0 };
        let eta = if rate > 0.0 { duration_text(left / rate) } else { "?".into() };
        let msg = if self.message.is_empty() { String::new() } else { format!(", {}", self.message) };
        eprintln!(
            "{}: {}/{} ({pct:.0}%){msg}, {rate:.3}/s, elapsed {}, ETA {eta}",
            self.label,
            self.pos,
            self.total,
            duration_text(elapsed)
        );
    }
}
