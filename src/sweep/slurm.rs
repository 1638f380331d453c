//! Slurm job arrays: `specdyn sweep CONFIG --out DIR --slurm` writes `DIR/slurm/array.sbatch`
//! (one array task per shard of cells; each task runs `specdyn sweep run-cell DIR --task $ID`),
//! submits it with `sbatch`, and records the job id in `DIR/slurm/jobs.txt`. A task that is
//! requeued or killed resumes its cells from their checkpoints when it runs again; a diverged
//! cell exits 0, so Slurm never reports it as FAILED. `specdyn sweep status` adds what `squeue`
//! knows (accounting, hence `sacct`, is often disabled).
//!
//! ```toml
//! [sweep.slurm]
//! partition = "gpu"          # --partition
//! time = "02:00:00"          # --time per array task
//! mem = "16G"                # --mem per task
//! cpus_per_task = 4          # --cpus-per-task (also the worker's --threads)
//! gpus_per_task = 1          # --gpus-per-task (the workers then use --device cuda)
//! array_limit = 8            # at most 8 tasks at once (--array=…%8)
//! cells_per_task = 1         # shards: several small cells per array task
//! extra = ["#SBATCH --account=myproject"]
//! ```

use super::SweepDir;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;

/// `[sweep.slurm]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlurmSettings {
    pub partition: Option<String>,
    pub time: Option<String>,
    pub mem: String,
    pub cpus_per_task: usize,
    pub gpus_per_task: usize,
    /// Concurrent array tasks (`%k`); 0: no limit.
    pub array_limit: usize,
    pub cells_per_task: usize,
    /// Extra lines for the script (`#SBATCH …` or shell).
    pub extra: Vec<String>,
}

impl Default for SlurmSettings {
    fn default() -> Self {
        SlurmSettings {
            partition: None,
            time: None,
            mem: "4G".into(),
            cpus_per_task: 1,
            gpus_per_task: 0,
            array_limit: 0,
            cells_per_task: 1,
            extra: Vec::new(),
        }
    }
}

impl SlurmSettings {
    pub fn validate(&self) -> Result<()> {
        if self.cpus_per_task == 0 || self.cells_per_task == 0 {
            return Err(Error::config(
                "[sweep.slurm] cpus_per_task and cells_per_task must be at least 1",
                "e.g. cpus_per_task = 2, cells_per_task = 1",
            ));
        }
        if self.extra.iter().any(|l| l.contains('\n')) {
            return Err(Error::config("[sweep.slurm] extra lines must be single lines", "give one string per line"));
        }
        Ok(())
    }
}

/// Is Slurm's `sbatch` on PATH?
pub fn available() -> bool {
    Command::new("sbatch").arg("--version").output().is_ok_and(|o| o.status.success())
}

fn shell_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}

/// The job-array script for the shards in `tasks` (each a list of cell indices).
pub fn script(dir: &SweepDir, exe: &Path, settings: &SlurmSettings, tasks: &[Vec<usize>], name: &str) -> String {
    let root = std::fs::canonicalize(&dir.root).unwrap_or_else(|_| dir.root.clone());
    let logs = root.join("slurm").join("logs");
    let limit = if settings.array_limit > 0 { format!("%{}", settings.array_limit) } else { String::new() };
    let mut s = String::from("#!/bin/bash\n");
    s.push_str(&format!("#SBATCH --job-name=specdyn-{name}\n"));
    s.push_str(&format!("#SBATCH --array=0-{}{limit}\n", tasks.len().saturating_sub(1)));
    s.push_str(&format!("#SBATCH --output={}/%A_%a.txt\n", logs.display()));
    s.push_str(&format!("#SBATCH --cpus-per-task={}\n", settings.cpus_per_task));
    s.push_str(&format!("#SBATCH --mem={}\n", settings.mem));
    if let Some(p) = &settings.partition {
        s.push_str(&format!("#SBATCH --partition={p}\n"));
    }
    if let Some(t) = &settings.time {
        s.push_str(&format!("#SBATCH --time={t}\n"));
    }
    if settings.gpus_per_task > 0 {
        s.push_str(&format!("#SBATCH --gpus-per-task={}\n", settings.gpus_per_task));
    }
    s.push_str("#SBATCH --requeue\n");
    for l in &settings.extra {
        s.push_str(l);
        s.push('\n');
    }
    let device = if settings.gpus_per_task > 0 { "cuda" } else { "cpu" };
    s.push_str("\n# Each task runs its cells (slurm/tasks.txt, line $SLURM_ARRAY_TASK_ID); finished cells are\n");
    s.push_str("# skipped and interrupted ones resume, so a requeued task picks up where it stopped.\n");
    s.push_str(&format!(
        "exec {} sweep run-cell {} --task \"$SLURM_ARRAY_TASK_ID\" --threads \"${{SLURM_CPUS_PER_TASK:-1}}\" --device {device}\n",
        shell_quote(exe),
        shell_quote(&root)
    ));
    s
}

/// Write the script and the task list, submit, and record the job id. Returns the job id.
pub fn submit(dir: &SweepDir, exe: &Path, settings: &SlurmSettings, todo: &[usize], name: &str) -> Result<String> {
    let slurm = dir.root.join("slurm");
    std::fs::create_dir_all(slurm.join("logs")).map_err(|e| Error::io("create", &slurm, e))?;
    let tasks: Vec<Vec<usize>> = todo.chunks(settings.cells_per_task).map(|c| c.to_vec()).collect();
    let list: String =
        tasks.iter().map(|t| t.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(" ") + "\n").collect();
    crate::checkpoint::atomic_write(&slurm.join("tasks.txt"), list.as_bytes())?;
    let script_path = slurm.join("array.sbatch");
    crate::checkpoint::atomic_write(&script_path, script(dir, exe, settings, &tasks, name).as_bytes())?;
    let out = Command::new("sbatch")
        .arg("--parsable")
        .arg(&script_path)
        .output()
        .map_err(|e| Error::io("run sbatch", Path::new("sbatch"), e))?;
    if !out.status.success() {
        return Err(Error::Io {
            action: "submit the job array",
            path: script_path,
            source: std::io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_string()),
            hint: "check the [sweep.slurm] settings (partition, time, mem) against `sinfo`".into(),
        });
    }
    let id = String::from_utf8_lossy(&out.stdout).trim().split(';').next().unwrap_or_default().to_string();
    let jobs = slurm.join("jobs.txt");
    let mut text = std::fs::read_to_string(&jobs).unwrap_or_default();
    text.push_str(&format!("{id}\n"));
    crate::checkpoint::atomic_write(&jobs, text.as_bytes())?;
    Ok(id)
}

/// The cell indices of array task `task` (from `slurm/tasks.txt`).
pub fn task_cells(dir: &SweepDir, task: usize) -> Result<Vec<usize>> {
    let path = dir.root.join("slurm").join("tasks.txt");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io("read", &path, e))?;
    let line = text.lines().nth(task).ok_or_else(|| {
        Error::config(
            format!("array task {task} is not in {}", path.display()),
            "the task list was replaced; resubmit the sweep",
        )
    })?;
    line.split_whitespace()
        .map(|v| {
            v.parse::<usize>().map_err(|_| Error::data(&path, format!("bad cell index '{v}'"), "resubmit the sweep"))
        })
        .collect()
}

/// The submitted job ids (`slurm/jobs.txt`).
pub fn jobs(dir: &SweepDir) -> Vec<String> {
    std::fs::read_to_string(dir.root.join("slurm").join("jobs.txt"))
        .map(|t| t.lines().map(str::to_string).filter(|l| !l.is_empty()).collect())
        .unwrap_or_default()
}

/// What `squeue` says about the sweep's jobs: (array task ids or ranges, state), e.g.
/// ("17_3", "RUNNING"), ("17_[4-9%2]", "PENDING"). Empty when Slurm is not reachable.
pub fn queue(dir: &SweepDir) -> Vec<(String, String)> {
    let ids = jobs(dir);
    if ids.is_empty() {
        return Vec::new();
    }
    let Ok(out) = Command::new("squeue").args(["-h", "-o", "%i %T", "-j", &ids.join(",")]).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(a, b)| (a.to_string(), b.trim().to_string())))
        .collect()
}

/// The array-task index in an squeue id like "17_3" (None for ranges like "17_[4-9%2]").
pub fn task_of(id: &str) -> Option<usize> {
    id.rsplit_once('_').and_then(|(_, t)| t.parse().ok())
}

/// Where the logs of array tasks go.
pub fn logs_dir(dir: &SweepDir) -> PathBuf {
    dir.root.join("slurm").join("logs")
}
