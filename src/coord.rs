//! Coordinate check (microsoft/mup's diagnostic): train the same network at several widths
//! for a few steps and record the typical size of every pre-activation h^ℓ and of the output f.
//! In μP every curve is flat in width; in SP the updates blow up with width.
//!
//! "Typical size" is the root mean square over neurons and batch, `‖h‖/√(B·N)`. Besides the
//! size we record the size of the change since step 0 on the same batch, `rms(h_t − h_0)`,
//! which isolates what training did. Curves are averaged over init seeds.
//!
//! A coord-check config is a run config plus a `[coord]` table:
//! ```toml
//! [coord]
//! widths = [128, 256, 512, 1024, 2048]
//! parameterizations = ["mup", "ntk", "sp"]
//! steps = 3        # records steps 0..=3
//! seeds = 3        # init seeds seed, seed+1, …
//! ```

use crate::backend::{BackendJob, ComputeBackend};
use crate::config::{RunConfig, one_line, parse_value};
use crate::data::{Batch, TrainSet};
use crate::error::{Error, Result};
use crate::kernels::Kernels;
use crate::model::{Parameterization, scalar};
use crate::report::{Figure, Panel, Series, save_figure};
use crate::train::Trainer;
use burn::tensor::{Tensor, backend::Backend};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The `[coord]` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoordSettings {
    pub widths: Vec<usize>,
    pub parameterizations: Vec<Parameterization>,
    pub steps: u64,
    pub seeds: u64,
}

impl Default for CoordSettings {
    fn default() -> Self {
        CoordSettings {
            widths: vec![128, 256, 512, 1024, 2048],
            parameterizations: vec![Parameterization::Mup, Parameterization::Ntk, Parameterization::Sp],
            steps: 3,
            seeds: 3,
        }
    }
}

/// A coord-check config: the base run and the sweep.
#[derive(Clone, Debug, PartialEq)]
pub struct CoordConfig {
    pub base: RunConfig,
    pub coord: CoordSettings,
}

impl CoordConfig {
    /// Read a TOML file with a `[coord]` table; `--set coord.steps=5` etc. work too.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = crate::config::read_config_text(path)?;
        Self::from_toml_str(&text, overrides).map_err(|e| e.in_file(path))
    }

    pub fn from_toml_str(text: &str, overrides: &[String]) -> Result<Self> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| {
            Error::config(format!("not valid TOML: {}", one_line(&e.to_string())), "fix the syntax at the line shown")
        })?;
        let (coord_over, run_over): (Vec<String>, Vec<String>) =
            overrides.iter().cloned().partition(|o| o.trim_start().starts_with("coord."));
        let mut coord_table = match table.remove("coord") {
            Some(toml::Value::Table(t)) => t,
            Some(_) => return Err(Error::config("[coord] must be a table", "write it as a [coord] section")),
            None => toml::Table::new(),
        };
        for o in &coord_over {
            let (k, v) = o.split_once('=').ok_or_else(|| {
                Error::config(format!("--set '{o}' is not of the form key=value"), "write e.g. --set coord.steps=5")
            })?;
            coord_table.insert(k.trim().trim_start_matches("coord.").to_string(), parse_value(v.trim()));
        }
        let mut coord: CoordSettings = CoordSettings::default();
        if !coord_table.is_empty() {
            let mut full = toml::Value::try_from(&coord).map_err(|e| Error::config(e.to_string(), ""))?;
            if let toml::Value::Table(f) = &mut full {
                f.extend(coord_table);
            }
            coord = full.try_into().map_err(|e: toml::de::Error| {
                Error::config(
                    format!("[coord]: {}", one_line(&e.to_string())),
                    "keys: widths, parameterizations, steps, seeds",
                )
            })?;
        }
        if coord.widths.is_empty()
            || coord.widths.contains(&0)
            || coord.parameterizations.is_empty()
            || coord.seeds == 0
        {
            return Err(Error::config(
                "[coord] needs non-empty widths (each ≥ 1), parameterizations and seeds ≥ 1",
                "e.g. widths = [128, 512, 2048], parameterizations = [\"mup\", \"sp\"], seeds = 3",
            ));
        }
        let base_text = toml::to_string(&table).unwrap_or_default();
        let base = RunConfig::from_toml_str(&base_text, &run_over)?;
        Ok(CoordConfig { base, coord })
    }
}

impl CoordConfig {
    /// Refuse, before anything runs, a width whose network does not fit in memory.
    pub fn check_memory(&self) -> Result<()> {
        let data = crate::data::memory_estimate(&self.base);
        for &width in &self.coord.widths {
            let mut cfg = self.base.clone();
            cfg.model.width = width;
            let shape = crate::model::DataShape {
                input_dim: cfg.data.input_dim,
                image: (cfg.data.kind == crate::config::DataKind::Cifar10).then_some(crate::data::cifar::SHAPE),
                outputs: cfg.output_dim(),
            };
            let network = crate::model::Network::from_config(&cfg, shape)?;
            let mut need = crate::train::memory_estimate_for(&cfg, &network, cfg.data.train_size);
            need.parts.extend(data.parts.clone());
            need.check(&format!("the coord check at width {width}"), "remove the widest widths from [coord] widths")?;
        }
        Ok(())
    }
}

/// One measurement.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CoordRecord {
    pub parameterization: Parameterization,
    pub width: usize,
    pub seed: u64,
    pub step: u64,
    /// `h1` … `hL` or `output`.
    pub layer: String,
    pub rms: f64,
    pub delta_rms: f64,
}

fn rms<B: Backend>(t: Tensor<B, 2>) -> f64 {
    let n = t.dims().iter().product::<usize>() as f64;
    (scalar(t.powi_scalar(2).sum()) / n).sqrt()
}

/// Runs every (parameterization, width, seed) of a coord check on one backend.
pub struct CoordJob {
    pub config: CoordConfig,
    pub quiet: bool,
}

impl BackendJob for CoordJob {
    type Output = Vec<CoordRecord>;

    fn run<B: ComputeBackend>(self, device: B::Device) -> Result<Vec<CoordRecord>> {
        let c = &self.config.coord;
        let total = (c.parameterizations.len() * c.widths.len()) as u64 * c.seeds;
        let bar = if self.quiet { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(total) };
        bar.set_style(
            indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] run {pos}/{len} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let mut out = Vec::new();
        for &p in &c.parameterizations {
            for &width in &c.widths {
                for s in 0..c.seeds {
                    bar.set_message(format!("{} N={width} seed {s}", p.name()));
                    let mut cfg = self.config.base.clone();
                    cfg.model.parameterization = p;
                    cfg.model.width = width;
                    cfg.seed = self.config.base.seed + s;
                    cfg.train.steps = c.steps;
                    cfg.validate()?;
                    out.extend(coord_one::<B::InnerBackend>(cfg, c.steps, device.clone())?);
                    bar.inc(1);
                }
            }
        }
        bar.finish_and_clear();
        Ok(out)
    }
}

/// Train one network for `steps` steps, measuring on the first training batch.
fn coord_one<B: Kernels>(cfg: RunConfig, steps: u64, device: B::Device) -> Result<Vec<CoordRecord>> {
    let mut trainer = Trainer::<B>::new(cfg.clone(), device.clone())?;
    let probe = match (&trainer.data.train, trainer.data.batch(0, cfg.train.batch_size, cfg.seed)) {
        (TrainSet::Fixed(s), Batch::Full) => s.all(),
        (_, Batch::Samples(h)) => h,
        (TrainSet::Online, Batch::Full) => unreachable!("online data never yields a full batch"),
    };
    let (x, _) = probe.to_tensors::<B>(&device);
    let mut first: Option<Vec<Tensor<B, 2>>> = None;
    let mut out = Vec::new();
    for t in 0..=steps {
        let mut layers: Vec<Tensor<B, 2>> = trainer.model.features(x.clone());
        layers.push(trainer.model.forward(x.clone()));
        let base = first.get_or_insert_with(|| layers.clone());
        for (i, (h, h0)) in layers.iter().zip(base.iter()).enumerate() {
            let name = if i + 1 == layers.len() { "output".to_string() } else { format!("h{}", i + 1) };
            out.push(CoordRecord {
                parameterization: cfg.model.parameterization,
                width: cfg.model.width,
                seed: cfg.seed,
                step: t,
                layer: name,
                rms: rms(h.clone()),
                delta_rms: rms(h.clone() - h0.clone()),
            });
        }
        if t < steps {
            trainer.advance();
        }
    }
    Ok(out)
}

/// (parameterization, layer, step, width).
pub type CoordKey = (String, String, u64, usize);

/// Seed-averaged (size, size of the change) per [`CoordKey`].
pub fn seed_means(records: &[CoordRecord]) -> BTreeMap<CoordKey, (f64, f64)> {
    let mut acc: BTreeMap<CoordKey, (f64, f64, f64)> = BTreeMap::new();
    for r in records {
        let e = acc.entry((r.parameterization.name().to_string(), r.layer.clone(), r.step, r.width)).or_default();
        e.0 += r.rms;
        e.1 += r.delta_rms;
        e.2 += 1.0;
    }
    acc.into_iter().map(|(k, (a, b, n))| (k, (a / n, b / n))).collect()
}

/// Growth across widths: `size(widest) / size(narrowest)` of the seed-mean size, per
/// (parameterization, layer, step), and the max/min spread. Non-finite sizes count as ∞.
#[derive(Clone, Debug, Serialize)]
pub struct CoordSpread {
    pub parameterization: String,
    pub layer: String,
    pub step: u64,
    pub growth: f64,
    pub spread: f64,
}

pub fn spreads(records: &[CoordRecord]) -> Vec<CoordSpread> {
    let means = seed_means(records);
    let mut grouped: BTreeMap<(String, String, u64), Vec<(usize, f64)>> = BTreeMap::new();
    for ((p, l, s, w), (rms, _)) in means {
        grouped.entry((p, l, s)).or_default().push((w, if rms.is_finite() { rms } else { f64::INFINITY }));
    }
    grouped
        .into_iter()
        .map(|((p, l, s), mut v)| {
            v.sort_by_key(|x| x.0);
            let lo = v.iter().map(|x| x.1).fold(f64::INFINITY, f64::min);
            let hi = v.iter().map(|x| x.1).fold(0.0, f64::max);
            CoordSpread { parameterization: p, layer: l, step: s, growth: v[v.len() - 1].1 / v[0].1, spread: hi / lo }
        })
        .collect()
}

/// Write `coord.csv`, `coord-spread.csv` and the figure `coord.{png,svg}` into `out`.
pub fn write_outputs(records: &[CoordRecord], settings: &CoordSettings, out: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).map_err(|e| Error::io("create output directory", out, e))?;
    let mut files = Vec::new();
    let csv_path = out.join("coord.csv");
    let mut w =
        csv::Writer::from_path(&csv_path).map_err(|e| Error::io("write", &csv_path, std::io::Error::other(e)))?;
    for r in records {
        w.serialize(r).map_err(|e| Error::io("write", &csv_path, std::io::Error::other(e)))?;
    }
    w.flush().map_err(|e| Error::io("write", &csv_path, e))?;
    files.push(csv_path);
    let spread_path = out.join("coord-spread.csv");
    let mut w =
        csv::Writer::from_path(&spread_path).map_err(|e| Error::io("write", &spread_path, std::io::Error::other(e)))?;
    for s in spreads(records) {
        w.serialize(&s).map_err(|e| Error::io("write", &spread_path, std::io::Error::other(e)))?;
    }
    w.flush().map_err(|e| Error::io("write", &spread_path, e))?;
    files.push(spread_path);

    let means = seed_means(records);
    let layers: Vec<String> = {
        let mut l: Vec<String> = records.iter().map(|r| r.layer.clone()).collect();
        l.sort_by_key(|n| if n == "output" { usize::MAX } else { n[1..].parse().unwrap_or(0) });
        l.dedup();
        l
    };
    let shown_steps: Vec<u64> = (0..=settings.steps).collect();
    let mut panels = Vec::new();
    for p in &settings.parameterizations {
        for &t in &shown_steps {
            let series = layers
                .iter()
                .enumerate()
                .map(|(i, l)| Series {
                    label: l.clone(),
                    points: settings
                        .widths
                        .iter()
                        .filter_map(|w| means.get(&(p.name().to_string(), l.clone(), t, *w)).map(|m| (*w as f64, m.0)))
                        .collect(),
                    color: i,
                    ..Default::default()
                })
                .collect();
            panels.push(Panel {
                title: format!("{} — step {t}", p.name()),
                x_label: "width N".into(),
                y_label: "rms of coordinates".into(),
                log_x: true,
                log_y: true,
                series,
                ..Default::default()
            });
        }
    }
    let fig = Figure {
        title: "Coordinate check: pre-activation and output size vs width (flat = width-stable)".into(),
        panels,
        columns: shown_steps.len(),
        panel_size: (380, 300),
    };
    files.extend(save_figure(&fig, &out.join("coord"))?);
    Ok(files)
}
