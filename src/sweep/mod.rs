//! `specdyn sweep`: widths × learning rates × anything, each cell a normal run directory,
//! run on this machine (a pool of processes) or as a Slurm job array.
//!
//! ```text
//! SWEEP/
//!   sweep.toml            the sweep config (base run config + [sweep]) of the last launch
//!   cells.json            the cells: index, id, name, coordinates (grows when the grid grows)
//!   cells/NAME/           one run directory per cell (+ cell.toml: sweep, id, coordinates)
//!   logs/NAME.log         each local cell's output; slurm/ for job arrays
//!   report/               `specdyn sweep report`: cells.csv, summary.csv, spectra.h5, figures
//! ```
//!
//! A cell is the base config with one `--set key=value` per axis ([`grid`]); its id is a hash
//! of its effective config, so re-running the same command finds the same cells: finished
//! ones (completed **or diverged** — divergence is a result) are skipped, interrupted ones
//! resume from their checkpoints, and a grown grid adds cells. [`run_cell`] is what one
//! process (a local worker or a Slurm array task) does for one cell; it exits 0 for a
//! diverged run so that neither `--jobs` nor Slurm counts it as a failed job.

pub mod grid;
pub mod local;
pub mod report;
pub mod slurm;

pub use grid::{Cell, SweepConfig};

use crate::error::{Error, Result};
use crate::rundir::{RunDir, RunStatus};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The cells of a sweep directory, as stored in `cells.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    /// [`SweepConfig::identity`] of the config that made the directory.
    pub identity: String,
    pub axes: Vec<String>,
    pub cells: Vec<Cell>,
}

const MANIFEST_FORMAT: &str = "specdyn-sweep-1";

/// The files of one sweep directory.
#[derive(Clone, Debug)]
pub struct SweepDir {
    pub root: PathBuf,
}

/// Where a cell stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CellState {
    /// Not started.
    Pending,
    /// A live process holds the cell's lock.
    Running,
    Completed,
    Diverged,
    /// Stopped (Ctrl-C, SIGKILL, a requeued Slurm task) and resumable.
    Interrupted,
    /// Its last attempt ended in an error (logged in the cell's `error.txt`).
    Failed,
}

impl CellState {
    pub fn name(self) -> &'static str {
        match self {
            CellState::Pending => "pending",
            CellState::Running => "running",
            CellState::Completed => "completed",
            CellState::Diverged => "diverged",
            CellState::Interrupted => "interrupted",
            CellState::Failed => "failed",
        }
    }

    /// Done: nothing left to run.
    pub fn is_finished(self) -> bool {
        matches!(self, CellState::Completed | CellState::Diverged)
    }
}

impl SweepDir {
    pub fn new(root: &Path) -> Self {
        SweepDir { root: root.to_path_buf() }
    }
    pub fn manifest_path(&self) -> PathBuf {
        self.root.join("cells.json")
    }
    pub fn config_path(&self) -> PathBuf {
        self.root.join("sweep.toml")
    }
    pub fn cell_dir(&self, cell: &Cell) -> PathBuf {
        self.root.join("cells").join(&cell.name)
    }
    pub fn log_path(&self, cell: &Cell) -> PathBuf {
        self.root.join("logs").join(format!("{}.log", cell.name))
    }
    pub fn lock_path(&self) -> PathBuf {
        self.root.join(crate::rundir::LOCK_FILE)
    }

    /// The stored manifest, if this is a sweep directory.
    pub fn read_manifest(&self) -> Result<Manifest> {
        let path = self.manifest_path();
        let text = std::fs::read_to_string(&path).map_err(|_| {
            Error::run_dir(
                &self.root,
                "is not a specdyn sweep (it has no cells.json)",
                "pass the directory a `specdyn sweep CONFIG --out DIR` created",
            )
        })?;
        let m: Manifest = serde_json::from_str(&text).map_err(|e| {
            Error::data(
                &path,
                format!("is not a valid sweep manifest ({e})"),
                "re-run the sweep with --out into a new directory",
            )
        })?;
        if m.format != MANIFEST_FORMAT {
            return Err(Error::data(
                &path,
                format!("format '{}' is not '{MANIFEST_FORMAT}'", m.format),
                "use a sweep directory of this specdyn version",
            ));
        }
        Ok(m)
    }

    /// The stored sweep config.
    pub fn read_config(&self) -> Result<SweepConfig> {
        SweepConfig::load(&self.config_path())
    }

    /// Check that `cfg` may launch into this directory and return the merged manifest (old
    /// cells first, new cells appended). Writes nothing.
    pub fn plan(&self, cfg: &SweepConfig, source_text: &str) -> Result<(Manifest, String)> {
        let cells = cfg.cells()?;
        let fresh = Manifest {
            format: MANIFEST_FORMAT.into(),
            identity: cfg.identity(),
            axes: cfg.axes.iter().map(|a| a.key.clone()).collect(),
            cells,
        };
        if !self.root.exists() || std::fs::read_dir(&self.root).map(|mut d| d.next().is_none()).unwrap_or(false) {
            return Ok((fresh, source_text.to_string()));
        }
        if !self.manifest_path().exists() {
            return Err(Error::run_dir(
                &self.root,
                "exists, is not empty and is not a specdyn sweep",
                "choose a new --out directory for the sweep",
            ));
        }
        let old = self.read_manifest()?;
        if old.identity != fresh.identity {
            let old_cfg = self.read_config().ok();
            let what = match old_cfg {
                Some(o) if o.axes.iter().map(|a| &a.key).ne(cfg.axes.iter().map(|a| &a.key)) => format!(
                    "its axes are {:?}, this config's are {:?}",
                    o.axes.iter().map(|a| &a.key).collect::<Vec<_>>(),
                    cfg.axes.iter().map(|a| &a.key).collect::<Vec<_>>()
                ),
                Some(o) => crate::config::differences(&o.base, &cfg.base).join("; "),
                None => "its base config differs".into(),
            };
            return Err(Error::run_dir(
                &self.root,
                format!("was made by another sweep config ({what})"),
                "a sweep directory grows only by new axis values; use another --out for a different base config or other axes",
            ));
        }
        let mut merged = old;
        for c in fresh.cells {
            if !merged.cells.iter().any(|o| o.id == c.id) {
                merged.cells.push(c);
            }
        }
        Ok((merged, source_text.to_string()))
    }

    /// Write the manifest and the sweep config (atomically).
    pub fn write(&self, manifest: &Manifest, source_text: &str) -> Result<()> {
        std::fs::create_dir_all(self.root.join("cells"))
            .map_err(|e| Error::io("create sweep directory", &self.root, e))?;
        let json = serde_json::to_string_pretty(manifest).unwrap_or_default();
        crate::checkpoint::atomic_write(&self.manifest_path(), format!("{json}\n").as_bytes())?;
        crate::checkpoint::atomic_write(&self.config_path(), source_text.as_bytes())
    }

    /// Where a cell stands, from its run directory (and its `error.txt`).
    pub fn cell_state(&self, cell: &Cell) -> CellState {
        let run = RunDir::new(&self.cell_dir(cell));
        if run.is_locked() {
            return CellState::Running;
        }
        let failed = self.cell_dir(cell).join("error.txt").exists();
        match run.status() {
            Some(RunStatus::Completed) if !failed => CellState::Completed,
            Some(RunStatus::Diverged) if !failed => CellState::Diverged,
            _ if failed => CellState::Failed,
            Some(_) => CellState::Interrupted,
            None => CellState::Pending,
        }
    }
}

/// What [`run_cell`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CellOutcome {
    /// It was finished already.
    Skipped(CellState),
    /// It ran (or resumed) to this state.
    Ran(CellState),
}

/// Run one cell to its end in this process: skip it when finished, resume it when a run
/// exists, start it otherwise. A failure is recorded in the cell's `error.txt` (removed by the
/// next success) and returned. `train` is the training entry point (the backend is the
/// caller's choice).
pub fn run_cell(
    dir: &SweepDir,
    cfg: &SweepConfig,
    cell: &Cell,
    train: &mut dyn FnMut(crate::config::RunConfig, &Path, bool) -> Result<crate::rundir::Summary>,
) -> Result<CellOutcome> {
    let state = dir.cell_state(cell);
    if state.is_finished() {
        return Ok(CellOutcome::Skipped(state));
    }
    if state == CellState::Running {
        return Err(Error::Busy {
            path: dir.cell_dir(cell),
            holder: "another sweep worker".into(),
            hint: "it is being run elsewhere; `specdyn sweep status` follows it".into(),
        });
    }
    let run_dir = dir.cell_dir(cell);
    let config = cfg.cell_config(cell)?;
    let resume = RunDir::new(&run_dir).config_path().exists();
    std::fs::create_dir_all(&run_dir).map_err(|e| Error::io("create cell directory", &run_dir, e))?;
    write_cell_file(&run_dir, cell)?;
    let error_file = run_dir.join("error.txt");
    match train(config, &run_dir, resume) {
        Ok(summary) => {
            let _ = std::fs::remove_file(&error_file);
            Ok(CellOutcome::Ran(match summary.status {
                RunStatus::Completed => CellState::Completed,
                RunStatus::Diverged => CellState::Diverged,
                RunStatus::Interrupted | RunStatus::Running => CellState::Interrupted,
            }))
        }
        Err(e) => {
            if !matches!(e, Error::Busy { .. }) {
                let _ = crate::checkpoint::atomic_write(&error_file, format!("error: {e}\n").as_bytes());
            }
            Err(e)
        }
    }
}

/// `cell.toml` in a cell's run directory: the sweep's coordinates of this run.
fn write_cell_file(run_dir: &Path, cell: &Cell) -> Result<()> {
    let mut t = String::from("# This run is a cell of a specdyn sweep (specdyn sweep status ..).\n");
    t.push_str(&format!("id = \"{}\"\nname = \"{}\"\n\n[coordinates]\n", cell.id, cell.name));
    for (k, v) in &cell.coordinates {
        t.push_str(&format!("\"{k}\" = {v}\n"));
    }
    crate::checkpoint::atomic_write(&run_dir.join(CELL_FILE), t.as_bytes())
}

/// Name of the coordinates file in a cell's run directory.
pub const CELL_FILE: &str = "cell.toml";
