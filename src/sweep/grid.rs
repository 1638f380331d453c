//! The `[sweep]` table: axes of config keys × value lists, optionally zipped, expanded into
//! cells; each cell is the base config with one `--set key=value` per axis.
//!
//! ```toml
//! [sweep]
//! zip = [["model.width", "data.train_size"]]        # optional: these axes vary together
//!
//! [sweep.axes]
//! "model.width" = [128, 256, 512]
//! "optimizer.lr" = { geomspace = [0.01, 1.0, 21] }   # 21 log-spaced values, 4 significant digits
//! "model.parameterization" = ["mup", "ntk"]
//! seed = [0, 1]
//!
//! [sweep.slurm]                                      # only for --slurm (see slurm.rs)
//! partition = "gpu"
//! ```

use crate::config::{RunConfig, apply_overrides, one_line};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// The `[sweep]` table as written.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepTable {
    /// Config key → values (a list, or `{ geomspace = [lo, hi, n] }`).
    #[serde(default)]
    pub axes: toml::Table,
    /// Groups of axes that vary together (equal lengths) instead of as a product.
    #[serde(default)]
    pub zip: Vec<Vec<String>>,
    #[serde(default)]
    pub slurm: super::slurm::SlurmSettings,
}

/// One axis: a config key and its values (as TOML values).
#[derive(Clone, Debug, PartialEq)]
pub struct Axis {
    pub key: String,
    pub values: Vec<toml::Value>,
}

/// A point of the grid: one value per axis, in axis order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// Stable id: a hash of the cell's effective config.
    pub id: String,
    /// Directory name under `cells/`: the coordinates, then the id.
    pub name: String,
    /// (key, value) per axis, values as TOML text (`1024`, `0.1`, `"mup"`).
    pub coordinates: Vec<(String, String)>,
}

impl Cell {
    /// `--set` overrides that turn the base config into this cell's.
    pub fn overrides(&self) -> Vec<String> {
        self.coordinates.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }

    /// The value of `key`, as TOML text.
    pub fn coordinate(&self, key: &str) -> Option<&str> {
        self.coordinates.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// A sweep config: the base run config and the grid.
#[derive(Clone, Debug)]
pub struct SweepConfig {
    /// The base config as TOML (the file without its `[sweep]` table).
    pub base_toml: String,
    pub base: RunConfig,
    pub axes: Vec<Axis>,
    pub zip: Vec<Vec<String>>,
    pub slurm: super::slurm::SlurmSettings,
}

/// Round to 4 significant digits (log grids print cleanly and are reproducible).
fn round4(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let e = x.abs().log10().floor() as i32;
    let scale = 10f64.powi(3 - e);
    (x * scale).round() / scale
}

fn axis_values(key: &str, v: &toml::Value) -> Result<Vec<toml::Value>> {
    let bad = |what: &str| {
        Error::config(
            format!("[sweep.axes] \"{key}\": {what}"),
            "give a list of values, e.g. \"optimizer.lr\" = [0.01, 0.1], or { geomspace = [0.01, 1.0, 21] }",
        )
    };
    match v {
        toml::Value::Array(a) if a.is_empty() => Err(bad("the list of values is empty")),
        toml::Value::Array(a) => Ok(a.clone()),
        toml::Value::Table(t) => {
            let Some(toml::Value::Array(g)) = t.get("geomspace") else { return Err(bad("unknown table form")) };
            let nums: Vec<f64> =
                g.iter().filter_map(|x| x.as_float().or_else(|| x.as_integer().map(|i| i as f64))).collect();
            let [lo, hi, n] = nums[..] else { return Err(bad("geomspace needs [low, high, count]")) };
            if !(lo > 0.0 && hi > 0.0 && lo.is_finite() && hi.is_finite())
                || n < 1.0
                || n.fract() != 0.0
                || n > 10_000.0
            {
                return Err(bad("geomspace needs positive low and high and a count from 1 to 10000"));
            }
            let n = n as usize;
            Ok((0..n)
                .map(|i| {
                    let t = if n == 1 { 0.0 } else { i as f64 / (n - 1) as f64 };
                    toml::Value::Float(round4(lo * (hi / lo).powf(t)))
                })
                .collect())
        }
        _ => Err(bad("not a list")),
    }
}

impl SweepConfig {
    /// Read a sweep config (a run config with a `[sweep]` table) and validate every cell.
    pub fn load(path: &std::path::Path) -> Result<Self> {
        let text = crate::config::read_config_text(path)?;
        Self::from_toml_str(&text).map_err(|e| e.in_file(path))
    }

    pub fn from_toml_str(text: &str) -> Result<Self> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| {
            Error::config(format!("not valid TOML: {}", one_line(&e.to_string())), "fix the syntax at the line shown")
        })?;
        let sweep: SweepTable = match table.remove("sweep") {
            Some(v) => v.try_into().map_err(|e: toml::de::Error| {
                Error::config(
                    format!("[sweep]: {}", one_line(&e.to_string())),
                    "[sweep] holds axes (a table of key = [values]), zip and slurm",
                )
            })?,
            None => {
                return Err(Error::config(
                    "this config has no [sweep] table",
                    "add [sweep.axes] with the keys to vary, e.g. \"model.width\" = [256, 512, 1024]",
                ));
            }
        };
        if sweep.axes.is_empty() {
            return Err(Error::config("[sweep.axes] is empty", "name at least one config key and its values"));
        }
        let base_toml = toml::to_string(&table).unwrap_or_default();
        let base = RunConfig::from_toml_str(&base_toml, &[])?;
        let mut axes = Vec::new();
        for (key, v) in &sweep.axes {
            // The key must be one `--set` accepts (same machinery, same suggestions).
            let mut probe = table.clone();
            apply_overrides(&mut probe, &[format!("{key}=0")])?;
            axes.push(Axis { key: key.clone(), values: axis_values(key, v)? });
        }
        for group in &sweep.zip {
            let lens: Vec<usize> = group
                .iter()
                .map(|k| {
                    axes.iter().find(|a| &a.key == k).map(|a| a.values.len()).ok_or_else(|| {
                        Error::config(
                            format!("[sweep] zip names \"{k}\", which is not an axis"),
                            "zip only keys listed in [sweep.axes]",
                        )
                    })
                })
                .collect::<Result<_>>()?;
            if lens.windows(2).any(|w| w[0] != w[1]) {
                return Err(Error::config(
                    format!("[sweep] zip {group:?}: the axes have {lens:?} values; zipped axes need equal lengths"),
                    "give the zipped axes the same number of values",
                ));
            }
        }
        let cfg = SweepConfig { base_toml, base, axes, zip: sweep.zip, slurm: sweep.slurm };
        for cell in cfg.cells()? {
            cfg.cell_config(&cell).map_err(|e| match e {
                Error::Config { message, hint, .. } => Error::config(format!("cell {}: {message}", cell.name), hint),
                other => other,
            })?;
        }
        Ok(cfg)
    }

    /// The effective config of a cell.
    pub fn cell_config(&self, cell: &Cell) -> Result<RunConfig> {
        RunConfig::from_toml_str(&self.base_toml, &cell.overrides())
    }

    /// Every cell: the product over axis groups (a zip group is one axis), in axis order.
    pub fn cells(&self) -> Result<Vec<Cell>> {
        // Groups of axis indices: each zip group, then every other axis alone.
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for (i, a) in self.axes.iter().enumerate() {
            match self.zip.iter().find(|g| g.contains(&a.key)) {
                Some(g) => {
                    let idx: Vec<usize> = g.iter().filter_map(|k| self.axes.iter().position(|x| &x.key == k)).collect();
                    if idx[0] == i {
                        groups.push(idx);
                    }
                }
                None => groups.push(vec![i]),
            }
        }
        let total: f64 = groups.iter().map(|g| self.axes[g[0]].values.len() as f64).product();
        if total > 100_000.0 {
            return Err(Error::config(
                format!("the sweep has {total} cells"),
                "shrink the axes (a sweep is a directory per cell; 100000 is the limit)",
            ));
        }
        let mut choice = vec![0usize; self.axes.len()];
        let mut out = Vec::new();
        let mut counters = vec![0usize; groups.len()];
        loop {
            for (g, &c) in groups.iter().zip(&counters) {
                for &a in g {
                    choice[a] = c;
                }
            }
            let coordinates: Vec<(String, String)> =
                self.axes.iter().zip(&choice).map(|(a, &c)| (a.key.clone(), a.values[c].to_string())).collect();
            out.push(self.make_cell(coordinates)?);
            // Odometer over groups, last group fastest.
            let mut g = groups.len();
            loop {
                if g == 0 {
                    return Ok(out);
                }
                g -= 1;
                counters[g] += 1;
                if counters[g] < self.axes[groups[g][0]].values.len() {
                    break;
                }
                counters[g] = 0;
            }
        }
    }

    fn make_cell(&self, coordinates: Vec<(String, String)>) -> Result<Cell> {
        let mut cell = Cell { id: String::new(), name: String::new(), coordinates };
        let cfg = self.cell_config(&cell)?;
        cell.id = hash_hex(&cfg.to_toml())[..10].to_string();
        let label: Vec<String> = cell
            .coordinates
            .iter()
            .map(|(k, v)| {
                let short = k.rsplit('.').next().unwrap_or(k);
                let v: String =
                    v.trim_matches('"').chars().filter(|c| c.is_ascii_alphanumeric() || ".-+".contains(*c)).collect();
                format!("{short}{v}")
            })
            .collect();
        let mut name = label.join("_");
        name.truncate(80);
        cell.name = format!("{name}-{}", &cell.id[..6]);
        Ok(cell)
    }

    /// What identifies a sweep directory: the base config and the axis keys (values may grow).
    pub fn identity(&self) -> String {
        let keys: Vec<&str> = self.axes.iter().map(|a| a.key.as_str()).collect();
        format!("{}\naxes = {keys:?}\nzip = {:?}\n", self.base.to_toml(), self.zip)
    }
}

/// 64-bit FNV-1a of `text`, as 16 hex digits.
pub fn hash_hex(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "[model]\ndepth = 2\nwidth = 16\n[data]\ninput_dim = 4\ntrain_size = 8\n[train]\nsteps = 5\n";

    #[test]
    fn product_zip_and_geomspace() {
        let text = format!(
            "{BASE}[sweep]\nzip = [[\"model.width\", \"data.train_size\"]]\n[sweep.axes]\n\"model.width\" = [8, 16]\n\"data.train_size\" = [4, 8]\n\"optimizer.lr\" = {{ geomspace = [0.01, 1.0, 3] }}\n"
        );
        let s = SweepConfig::from_toml_str(&text).unwrap();
        let cells = s.cells().unwrap();
        assert_eq!(cells.len(), 2 * 3);
        assert_eq!(cells[0].overrides(), vec!["model.width=8", "data.train_size=4", "optimizer.lr=0.01"]);
        assert_eq!(cells[1].coordinate("optimizer.lr"), Some("0.1"));
        assert_eq!(cells[5].overrides(), vec!["model.width=16", "data.train_size=8", "optimizer.lr=1.0"]);
        // Ids are stable and distinct.
        let again = SweepConfig::from_toml_str(&text).unwrap().cells().unwrap();
        assert_eq!(cells, again);
        let mut ids: Vec<&str> = cells.iter().map(|c| c.id.as_str()).collect();
        ids.dedup();
        assert_eq!(ids.len(), 6);
    }

    #[test]
    fn bad_axes_are_named() {
        let e = SweepConfig::from_toml_str(&format!("{BASE}[sweep.axes]\n\"model.widht\" = [8]\n")).unwrap_err();
        assert!(e.to_string().contains("model.width"), "{e}");
        let e = SweepConfig::from_toml_str(&format!("{BASE}[sweep.axes]\n\"model.width\" = []\n")).unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
        let e = SweepConfig::from_toml_str(&format!("{BASE}[sweep.axes]\n\"model.width\" = [0]\n")).unwrap_err();
        assert!(e.to_string().contains("model.width = 0"), "{e}");
    }
}
