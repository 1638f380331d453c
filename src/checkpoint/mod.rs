//! Checkpoints: self-describing, atomic, verified.
//!
//! A checkpoint is one `.safetensors` file (readable by `safetensors.torch.load_file` and
//! `safetensors.numpy.load_file`) holding
//! - the weights `layers.{ℓ}.weight` in `[fan_out, fan_in]` layout (the paper's W^ℓ and
//!   PyTorch's `nn.Linear.weight`) and biases `layers.{ℓ}.bias`;
//! - the optimizer state, named as PyTorch names it: `optimizer.momentum_buffer.<param>` (SGD
//!   with momentum), `optimizer.exp_avg.<param>` and `optimizer.exp_avg_sq.<param>` (Adam);
//! - metadata (strings): the step, the effective config (TOML) and its fingerprint (a hash of the
//!   settings that determine the trajectory: resume refuses a checkpoint of another run), the
//!   crate version, the elapsed training time, the initial loss, the random-stream positions,
//!   and a CRC-32 of every tensor.
//!
//! Files are written to a temporary name in the same directory, fsynced, renamed over the
//! final name and the directory fsynced, so a crash leaves either the old file or the new one,
//! never a torn one. Loading checks the format, the checksum and the shapes, and names the file
//! and the problem.

mod schedule;

pub use schedule::log_spaced_steps;

use crate::error::{Error, Result};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Value of the `format` metadata key.
pub const FORMAT: &str = "specdyn-checkpoint-1";

/// One named host tensor (f32, row-major).
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Everything needed to resume a run exactly.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub step: u64,
    /// Effective run config, TOML.
    pub config: String,
    pub specdyn_version: String,
    /// Training wall time before this checkpoint, seconds.
    pub elapsed_s: f64,
    /// Loss at step 0 (the reference for divergence detection).
    pub initial_loss: f64,
    /// Adam's step counter (0 for SGD).
    pub optimizer_steps: u64,
    /// [`crate::config::RunConfig::fingerprint`] of the run (empty in checkpoints written
    /// before fingerprints existed: then the embedded config is compared).
    pub fingerprint: String,
    pub tensors: Vec<NamedTensor>,
}

impl Checkpoint {
    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<&NamedTensor> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Serialize and write atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes: Vec<(String, Vec<u8>, &NamedTensor)> = self
            .tensors
            .iter()
            .map(|t| (t.name.clone(), t.data.iter().flat_map(|v| v.to_le_bytes()).collect(), t))
            .collect();
        let mut views = Vec::with_capacity(bytes.len());
        for (name, b, t) in &bytes {
            let view = TensorView::new(Dtype::F32, t.shape.clone(), b).map_err(|e| {
                Error::checkpoint(
                    path,
                    format!("tensor '{name}' has an inconsistent shape: {e}"),
                    "this is a bug; please report it",
                )
            })?;
            views.push((name.clone(), view));
        }
        let meta = HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("step".to_string(), self.step.to_string()),
            ("config".to_string(), self.config.clone()),
            ("specdyn_version".to_string(), self.specdyn_version.clone()),
            ("elapsed_s".to_string(), format!("{:?}", self.elapsed_s)),
            ("initial_loss".to_string(), format!("{:?}", self.initial_loss)),
            ("optimizer_steps".to_string(), self.optimizer_steps.to_string()),
            ("fingerprint".to_string(), self.fingerprint.clone()),
            (
                "rng".to_string(),
                "counter-based streams (seed, purpose, index): nothing to restore beyond the seeds in the config and the step".to_string(),
            ),
            ("crc32".to_string(), checksum(&self.tensors).to_string()),
        ]);
        let data = safetensors::serialize(views, Some(meta)).map_err(|e| {
            Error::checkpoint(path, format!("cannot serialize: {e}"), "this is a bug; please report it")
        })?;
        atomic_write(path, &data)
    }

    /// Read and verify a checkpoint.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io("read checkpoint", path, e))?;
        let corrupt = |problem: String| {
            Error::checkpoint(
                path,
                problem,
                "delete this file to fall back to an earlier checkpoint in the same directory, or start the run again",
            )
        };
        let (_, header) = SafeTensors::read_metadata(&bytes)
            .map_err(|e| corrupt(format!("truncated or not a safetensors file ({e})")))?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| corrupt(format!("truncated or corrupt ({e})")))?;
        let meta = header.metadata().clone().unwrap_or_default();
        let get = |k: &str| meta.get(k).cloned().ok_or_else(|| corrupt(format!("metadata key '{k}' is missing")));
        if get("format")? != FORMAT {
            return Err(Error::checkpoint(
                path,
                format!("format '{}' is not '{FORMAT}'", meta.get("format").map_or("", |s| s.as_str())),
                "this is not a specdyn training checkpoint; to analyse external weights use `specdyn spectra --weights`",
            ));
        }
        let num = |k: &str| -> Result<f64> {
            get(k)?.parse::<f64>().map_err(|_| corrupt(format!("metadata '{k}' is not a number")))
        };
        let mut tensors = Vec::new();
        let mut names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
        names.sort();
        for name in names {
            let view = st.tensor(&name).map_err(|e| corrupt(format!("tensor '{name}': {e}")))?;
            if view.dtype() != Dtype::F32 {
                return Err(corrupt(format!("tensor '{name}' is {:?}, expected F32", view.dtype())));
            }
            let data = view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            tensors.push(NamedTensor { name, shape: view.shape().to_vec(), data });
        }
        let want: u32 = get("crc32")?.parse().map_err(|_| corrupt("metadata 'crc32' is not a number".into()))?;
        let got = checksum(&tensors);
        if want != got {
            return Err(corrupt(format!(
                "checksum mismatch (stored {want:08x}, computed {got:08x}): the data is corrupt"
            )));
        }
        Ok(Checkpoint {
            step: num("step")? as u64,
            config: get("config")?,
            specdyn_version: get("specdyn_version")?,
            elapsed_s: num("elapsed_s")?,
            initial_loss: num("initial_loss")?,
            optimizer_steps: num("optimizer_steps")? as u64,
            fingerprint: meta.get("fingerprint").cloned().unwrap_or_default(),
            tensors,
        })
    }
}

/// CRC-32 over every tensor's name, shape and bytes, in name order.
fn checksum(tensors: &[NamedTensor]) -> u32 {
    let sorted: BTreeMap<&str, &NamedTensor> = tensors.iter().map(|t| (t.name.as_str(), t)).collect();
    let mut h = crc32fast::Hasher::new();
    for (name, t) in sorted {
        h.update(name.as_bytes());
        for d in &t.shape {
            h.update(&(*d as u64).to_le_bytes());
        }
        for v in &t.data {
            h.update(&v.to_le_bytes());
        }
    }
    h.finalize()
}

/// Write `bytes` to `path` atomically: temp file in the same directory, fsync, rename, fsync
/// the directory. Readers see the old file or the new one, never a partial one.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    atomic_write_with(path, |tmp| {
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(tmp)?;
            f.write_all(bytes)?;
            crate::fault::point("atomic-write");
            Ok(())
        };
        write().map_err(|e| Error::io("write", path, e))
    })
}

/// The temporary name an atomic write of `path` uses: `.NAME.tmp-PID` beside it.
pub fn temp_path(path: &Path) -> PathBuf {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    dir.join(format!(".{name}.tmp-{}", std::process::id()))
}

/// Let `fill` write a complete file at a temporary path, then fsync it and rename it over
/// `path` (and fsync the directory). On any failure the temporary file is removed and `path`
/// is untouched.
pub fn atomic_write_with(path: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = temp_path(path);
    let result = fill(&tmp).and_then(|()| {
        let finish = || -> std::io::Result<()> {
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, path)?;
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
            Ok(())
        };
        finish().map_err(|e| Error::io("write", path, e))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        Checkpoint {
            step: 20,
            config: "seed = 1\n".into(),
            specdyn_version: "0.1.0".into(),
            elapsed_s: 1.5,
            initial_loss: 0.75,
            optimizer_steps: 20,
            fingerprint: "0123456789abcdef".into(),
            tensors: vec![
                NamedTensor {
                    name: "layers.0.weight".into(),
                    shape: vec![2, 3],
                    data: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
                },
                NamedTensor { name: "layers.1.weight".into(), shape: vec![1, 2], data: vec![-1.0, 0.5] },
            ],
        }
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.safetensors");
        let c = sample();
        c.save(&p).unwrap();
        assert_eq!(Checkpoint::load(&p).unwrap(), c);
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn truncation_and_bit_flips_are_detected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.safetensors");
        sample().save(&p).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 5]).unwrap();
        let e = Checkpoint::load(&p).unwrap_err().to_string();
        assert!(e.contains("c.safetensors") && e.contains("truncated"), "{e}");
        let mut flipped = bytes.clone();
        let last = flipped.len() - 2;
        flipped[last] ^= 0x10;
        std::fs::write(&p, &flipped).unwrap();
        let e = Checkpoint::load(&p).unwrap_err().to_string();
        assert!(e.contains("checksum mismatch"), "{e}");
    }
}
