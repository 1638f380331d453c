//! Bad input, as a table: every case runs one specdyn command in a fresh directory holding a
//! config, a finished run, data files and weights, and must
//! - exit with the code the README's table gives (2 bad input, 1 an operation failed, …),
//! - print exactly one `error:` paragraph that names the cause and a `Fix:`, and no panic,
//! - leave every file exactly as it was (the test hashes the directory before and after).
//!
//! Plus: the thread count is clamped, and a diverged run is a result (exit 3), not an error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

fn specdyn(dir: &Path, args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_specdyn"))
        .args(args)
        .current_dir(dir)
        .env("SPECDYN_PROGRESS_SECONDS", "1000")
        .output()
        .expect("run specdyn")
}

const SMALL: &str = "[model]\ndepth = 2\nwidth = 16\n[data]\ninput_dim = 4\ntrain_size = 8\ntest_size = 4\n\
                     [train]\nsteps = 6\n[checkpoint]\nlatest_every = 2\n";

/// A finished run of SMALL (trained once, copied into every case directory).
fn template() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("specdyn-bad-input-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("c.toml"), SMALL).unwrap();
        let out = specdyn(&d, &["train", "c.toml", "--out", "run", "-q"].map(String::from));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        // A second run with another seed (a source of foreign checkpoints) and a run with Adam.
        let out = specdyn(&d, &["train", "c.toml", "--out", "other", "-q", "--set", "seed=9"].map(String::from));
        assert!(out.status.success());
        let out = specdyn(
            &d,
            &["train", "c.toml", "--out", "adam", "-q", "--set", "optimizer.kind=\"adam\""].map(String::from),
        );
        assert!(out.status.success());
        d
    })
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// Every file under `dir` with a hash of its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, u64> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, u64>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.insert(p.strip_prefix(root).unwrap().to_path_buf(), 0);
                walk(root, &p, out);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                let mut h: u64 = 0xcbf2_9ce4_8422_2325;
                for b in bytes {
                    h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
                }
                out.insert(p.strip_prefix(root).unwrap().to_path_buf(), h);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn npy(path: &Path, shape: &[usize], data: &[f32]) {
    specdyn::data::write_npy(path, shape, data).unwrap();
}

/// Fixtures every case can use.
fn fixtures(d: &Path) {
    copy_dir(template(), d);
    std::fs::write(d.join("bad-key.toml"), "[model]\nwidht = 64\n").unwrap();
    std::fs::write(d.join("a-sweep.toml"), "[model]\nwidth = 8\n[sweep.axes]\n\"model.width\" = [8, 16]\n").unwrap();
    // A sweep directory of tanh networks (its config and manifest only).
    std::fs::create_dir_all(d.join("tanh-sweep")).unwrap();
    std::fs::write(d.join("tanh-sweep/sweep.toml"), "[model]\nwidth = 8\n[sweep.axes]\n\"model.width\" = [8, 16]\n")
        .unwrap();
    std::fs::write(d.join("tanh-sweep/cells.json"), "{}").unwrap();
    std::fs::write(d.join("bad-type.toml"), "[model]\nwidth = \"wide\"\n").unwrap();
    std::fs::write(d.join("bad-syntax.toml"), "[model\nwidth = 3\n").unwrap();
    std::fs::write(d.join("coord.toml"), format!("{SMALL}[coord]\nwidths = [8, 16]\nsteps = 1\nseeds = 1\n")).unwrap();
    npy(&d.join("X.npy"), &[10, 3], &[0.5; 30]);
    npy(&d.join("y9.npy"), &[9], &[1.0; 9]);
    npy(&d.join("y.npy"), &[10], &[1.0; 10]);
    npy(&d.join("X0.npy"), &[40, 0], &[]);
    npy(&d.join("y40.npy"), &[40], &[0.0; 40]);
    let mut nan = vec![0.5f32; 30];
    nan[7] = f32::NAN;
    npy(&d.join("Xnan.npy"), &[10, 3], &nan);
    let files = |x: &str, y: &str| format!("[data]\nkind = \"files\"\nx = \"{x}\"\ny = \"{y}\"\n");
    std::fs::write(d.join("files-missing.toml"), files("nope/X.npy", "nope/y.npy")).unwrap();
    std::fs::write(d.join("files-shapes.toml"), files("X.npy", "y9.npy")).unwrap();
    std::fs::write(d.join("files-zero.toml"), files("X0.npy", "y40.npy")).unwrap();
    std::fs::write(d.join("files-nan.toml"), files("Xnan.npy", "y.npy")).unwrap();
    // CIFAR-10 directories: one truncated file, one bad label byte, one missing batch file.
    for (name, damage) in [("cifar-trunc", 0), ("cifar-label", 1), ("cifar-missing", 2)] {
        let c = d.join(name);
        std::fs::create_dir_all(&c).unwrap();
        let record = |label: u8| {
            let mut r = vec![label];
            r.extend(std::iter::repeat_n(128u8, 3072));
            r
        };
        for f in ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"] {
            std::fs::write(c.join(f), [record(1), record(2)].concat()).unwrap();
        }
        std::fs::write(c.join("test_batch.bin"), [record(3), record(4)].concat()).unwrap();
        match damage {
            0 => std::fs::write(c.join("data_batch_3.bin"), &record(1)[..2000]).unwrap(),
            1 => std::fs::write(c.join("data_batch_2.bin"), [record(1), record(11)].concat()).unwrap(),
            _ => std::fs::remove_file(c.join("data_batch_5.bin")).unwrap(),
        }
    }
    let cifar = |dir: &str| {
        format!(
            "[model]\nkind = \"resnet\"\nwidth = 4\ndepth = 1\n[data]\nkind = \"cifar10\"\ndir = \"{dir}\"\ntrain_size = 2\ntest_size = 1\n[train]\nsteps = 2\n"
        )
    };
    for name in ["cifar-trunc", "cifar-label", "cifar-missing", "cifar-nowhere"] {
        std::fs::write(d.join(format!("{name}.toml")), cifar(name)).unwrap();
    }
    // External weights: a good file and one with a NaN.
    let tensors = |bad: bool| {
        let mut w = vec![0.1f32; 12 * 8];
        if bad {
            w[5] = f32::NAN;
        }
        specdyn::checkpoint::Checkpoint {
            step: 0,
            config: String::new(),
            specdyn_version: String::new(),
            elapsed_s: 0.0,
            initial_loss: 0.0,
            optimizer_steps: 0,
            fingerprint: String::new(),
            tensors: vec![specdyn::checkpoint::NamedTensor { name: "fc.weight".into(), shape: vec![12, 8], data: w }],
        }
    };
    tensors(false).save(&d.join("w.safetensors")).unwrap();
    tensors(true).save(&d.join("nan.safetensors")).unwrap();
    std::fs::write(d.join("not-weights.safetensors"), b"this is not a safetensors file").unwrap();
    std::fs::create_dir_all(d.join("empty")).unwrap();
    std::fs::write(d.join("a-file"), "").unwrap();
}

/// Damage the fixture directory before a case runs.
#[derive(Clone, Copy)]
enum Prep {
    None,
    TruncateCheckpoint(&'static str),
    FlipCheckpointByte(&'static str),
    CopyForeignCheckpoint(&'static str),
    GarbageSpectra,
    GarbageStoredConfig,
    CorruptTheoryCache,
}

struct Case {
    name: &'static str,
    args: &'static str,
    prep: Prep,
    code: i32,
    needles: &'static [&'static str],
}

const fn case(name: &'static str, args: &'static str, code: i32, needles: &'static [&'static str]) -> Case {
    Case { name, args, prep: Prep::None, code, needles }
}

const fn prepped(
    name: &'static str,
    args: &'static str,
    prep: Prep,
    code: i32,
    needles: &'static [&'static str],
) -> Case {
    Case { name, args, prep, code, needles }
}

/// The corpus. `args` are split on spaces.
const CASES: &[Case] = &[
    // --- train: the config ---
    case("unknown key", "train bad-key.toml --out new", 2, &["widht", "bad-key.toml"]),
    case("a sweep config given to train", "train a-sweep.toml --out new", 2, &["sweep config", "specdyn sweep"]),
    case(
        "unknown override",
        "train c.toml --out new --set model.widht=3",
        2,
        &["model.widht", "did you mean 'model.width'"],
    ),
    case("zero width", "train c.toml --out new --set model.width=0", 2, &["model.width = 0"]),
    case("wrong type", "train bad-type.toml --out new", 2, &["width"]),
    case("toml syntax", "train bad-syntax.toml --out new", 2, &["not valid TOML"]),
    case("missing config file", "train no/such/config.toml --out new", 2, &["no/such/config.toml", "configs/"]),
    case("config is a directory", "train empty --out new", 2, &["empty", "directory"]),
    case("override syntax", "train c.toml --out new --set model.width", 2, &["key=value"]),
    case("no out", "train c.toml", 2, &["--out"]),
    case("no config", "train --out new", 2, &["no config file given"]),
    case("out and resume differ", "train c.toml --out new --resume run", 2, &["--resume"]),
    case("negative lr", "train c.toml --out new --set optimizer.lr=-1", 2, &["optimizer.lr"]),
    case("momentum 1", "train c.toml --out new --set optimizer.momentum=1.0", 2, &["optimizer.momentum"]),
    case("batch over data", "train c.toml --out new --set train.batch_size=100", 2, &["train.batch_size"]),
    case("online without batch", "train c.toml --out new --set data.online=true", 2, &["train.batch_size"]),
    case("divergence factor", "train c.toml --out new --set train.divergence_factor=0.5", 2, &["divergence_factor"]),
    case(
        "warmup beyond steps",
        "train c.toml --out new --set optimizer.warmup_steps=10",
        2,
        &["warmup_steps", "train.steps"],
    ),
    case("per decade huge", "train c.toml --out new --set checkpoint.per_decade=4294967295", 2, &["per_decade"]),
    case("lanczos steps", "train c.toml --out new --set spectra.lanczos_steps=1", 2, &["lanczos_steps"]),
    case("nesterov without momentum", "train c.toml --out new --set optimizer.nesterov=true", 2, &["nesterov"]),
    case("resnet on vectors", "train c.toml --out new --set model.kind=\"resnet\"", 2, &["resnet", "image"]),
    case("norm on an mlp", "train c.toml --out new --set model.norm=\"layer\"", 2, &["model.norm"]),
    case("unknown activation", "train c.toml --out new --set model.activation=\"swish\"", 2, &["swish"]),
    // --- train: sizes ---
    case("width 1e9", "train c.toml --out new --set model.width=1000000000", 2, &["memory", "model.width"]),
    case("width 1e5", "train c.toml --out new --set model.width=100000", 2, &["memory", "GiB"]),
    case("depth 1e8", "train c.toml --out new --set model.depth=100000000", 2, &["memory"]),
    case(
        "train size 1e10",
        "train c.toml --out new --set data.train_size=10000000000",
        2,
        &["memory", "data.train_size"],
    ),
    case(
        "outputs 1e12",
        "train c.toml --out new --set data.kind=\"multi-output\" --set data.outputs=1000000000000",
        2,
        &["memory", "data.outputs"],
    ),
    case("input dim 1e11", "train c.toml --out new --set data.input_dim=100000000000", 2, &["memory"]),
    // --- train: data files ---
    case("missing data file", "train files-missing.toml --out new", 2, &["nope/X.npy", "cannot be read"]),
    case("mismatched shapes", "train files-shapes.toml --out new", 2, &["y9.npy", "[9]", "10 samples"]),
    case("zero-size data", "train files-zero.toml --out new", 2, &["X0.npy", "zero-size"]),
    case("nan in data", "train files-nan.toml --out new", 2, &["Xnan.npy", "NaN"]),
    case("overwrite with a missing data file", "train files-missing.toml --out run --overwrite", 2, &["nope/X.npy"]),
    // --- train: CIFAR-10 ---
    case("cifar truncated", "train cifar-trunc.toml --out new", 2, &["data_batch_3.bin", "byte offset"]),
    case("cifar bad label", "train cifar-label.toml --out new", 2, &["data_batch_2.bin", "label byte 11", "record 1"]),
    case("cifar missing file", "train cifar-missing.toml --out new", 2, &["data_batch_5.bin", "missing"]),
    case("cifar wrong directory", "train cifar-nowhere.toml --out new", 2, &["cifar-nowhere", "does not exist"]),
    case("data cifar10 truncated", "data cifar10 --dir cifar-trunc", 2, &["data_batch_3.bin", "truncated"]),
    case("data cifar10 nowhere", "data cifar10 --dir nowhere", 2, &["nowhere"]),
    // --- train: the run directory ---
    case("existing run", "train c.toml --out run", 2, &["already holds a run", "--resume", "--overwrite"]),
    case("foreign directory", "train c.toml --out cifar-trunc", 2, &["not a specdyn run"]),
    case("out under a file", "train c.toml --out a-file/run", 1, &["cannot create run directory", "a-file"]),
    case("gpu not compiled", "train c.toml --out new --device cuda", 2, &["cuda", "--features cuda"]),
    case("resume a non-run", "train --resume empty", 2, &["not a specdyn run"]),
    case("resume nowhere", "train --resume nowhere", 2, &["nowhere"]),
    case(
        "resume another config",
        "train --resume run --set model.width=32",
        2,
        &["different config", "model.width: 16 → 32"],
    ),
    case("resume beyond steps", "train --resume run --set train.steps=3", 2, &["beyond train.steps"]),
    prepped(
        "resume truncated checkpoint",
        "train --resume run",
        Prep::TruncateCheckpoint("step-00000006"),
        2,
        &["step-00000006.safetensors", "truncated"],
    ),
    prepped(
        "resume bit flip",
        "train --resume run",
        Prep::FlipCheckpointByte("step-00000006"),
        2,
        &["step-00000006.safetensors", "checksum mismatch"],
    ),
    prepped(
        "resume with an older corrupt checkpoint",
        "train --resume run --set train.steps=20",
        Prep::FlipCheckpointByte("step-00000002"),
        2,
        &["step-00000002.safetensors", "checksum"],
    ),
    prepped(
        "resume a foreign checkpoint",
        "train --resume run --set train.steps=20",
        Prep::CopyForeignCheckpoint("other"),
        2,
        &["step-00000006.safetensors", "belongs to another run", "seed"],
    ),
    prepped(
        "resume adam state into sgd",
        "train --resume run --set train.steps=20",
        Prep::CopyForeignCheckpoint("adam"),
        2,
        &["belongs to another run", "optimizer.kind"],
    ),
    prepped(
        "resume with garbage spectra.h5",
        "train --resume run --set train.steps=20",
        Prep::GarbageSpectra,
        2,
        &["spectra.h5", "specdyn spectra"],
    ),
    prepped("resume with garbage config.toml", "train --resume run", Prep::GarbageStoredConfig, 2, &["config.toml"]),
    // --- coord-check ---
    case("coord empty widths", "coord-check coord.toml --out co --set coord.widths=[]", 2, &["widths"]),
    case(
        "coord huge width",
        "coord-check coord.toml --out co --set coord.widths=[1000000000]",
        2,
        &["memory", "1000000000"],
    ),
    case("coord unknown key", "coord-check coord.toml --out co --set coord.width=[8]", 2, &["width"]),
    case("coord missing config", "coord-check nope.toml --out co", 2, &["nope.toml"]),
    case("coord into a run", "coord-check coord.toml --out run", 2, &["training run"]),
    // --- spectra and plot ---
    case("spectra of a non-run", "spectra empty", 2, &["config.toml"]),
    prepped(
        "spectra with a corrupt checkpoint",
        "spectra run",
        Prep::FlipCheckpointByte("step-00000002"),
        2,
        &["step-00000002.safetensors"],
    ),
    case("weights missing", "spectra --weights nope.safetensors --out ext", 2, &["nope.safetensors"]),
    case(
        "weights not safetensors",
        "spectra --weights not-weights.safetensors --out ext",
        2,
        &["not a valid safetensors"],
    ),
    case("weights with nan", "spectra --weights nan.safetensors --out ext", 2, &["fc.weight", "non-finite"]),
    case("weights without out", "spectra --weights w.safetensors", 2, &["--out"]),
    case("weights filter matches nothing", "spectra --weights w.safetensors --out ext --layers zzz", 2, &["--layers"]),
    case("weights top-k 0", "spectra --weights w.safetensors --out ext --top-k 0", 2, &["--top-k"]),
    case("weights into a run", "spectra --weights w.safetensors --out run", 2, &["training run"]),
    case("run and weights", "spectra run --weights w.safetensors", 2, &["cannot be used with"]),
    case("plot of an empty dir", "plot empty", 2, &["neither spectra.h5 nor metrics.csv"]),
    // --- theory ---
    case("mp negative aspect", "theory mp --aspect=-1 --out th", 2, &["--aspect"]),
    case("bbp zero theta", "theory bbp --theta 0 --out th", 2, &["--theta"]),
    case("wigner zero steps", "theory wigner --steps 0 --out th", 2, &["--steps"]),
    case("linear zero width ratio", "theory linear --nu 0 --out th", 2, &["--nu"]),
    case("linear too many steps", "theory linear --steps 100000 --out th", 2, &["--steps", "512"]),
    case("linear negative label noise", "theory linear --label-noise=-1 --out th", 2, &["--label-noise"]),
    case("linear zero depth", "theory linear --depth 0 --out th", 2, &["--depth"]),
    case("bench linear zero depth", "bench linear --depth 0", 2, &["--depth"]),
    case("extensive nu below one", "theory extensive --nu 0.5 --out th", 2, &["--nu", "ν = N/D > 1"]),
    case("extensive negative chi", "theory extensive --chi=-1 --out th", 2, &["--chi"]),
    case("extensive layer past the depth", "theory extensive --layers 2 --layer 2 --out th", 2, &["--layer", "0 … 1"]),
    case("extensive zero layers", "theory extensive --layers 0 --out th", 2, &["--layers", "1 to 6"]),
    case(
        "linear outputs of a deep network",
        "theory linear --depth 2 --teacher-scales 1,0.5 --out th",
        2,
        &["--teacher-scales", "L = 1"],
    ),
    case(
        "linear simulation that cannot fit",
        "theory linear --alpha 1000 --simulate 5000 --steps 1 --seeds 1 --out th",
        2,
        &["needs about", "--simulate"],
    ),
    case(
        "linear negative teacher scale",
        "theory linear --teacher-scales=1,-0.5 --out th",
        2,
        &["--teacher-scales", "s_c ≥ 0"],
    ),
    case(
        "linear outputs past the dense size",
        "theory linear --teacher-scales 1,0.5 --steps 600 --out th",
        2,
        &["super-indices", "--steps 511"],
    ),
    case(
        "extensive scan of a deep network",
        "theory extensive --layers 2 --scan-simulate 400 --out th",
        2,
        &["--scan-simulate", "two-layer"],
    ),
    case(
        "extensive scan with tiny D",
        "theory extensive --scan-simulate 2 --out th",
        2,
        &["--scan-simulate", "10 … 4000"],
    ),
    case(
        "extensive simulation with huge chi",
        "theory extensive --nu 2 --chi 2000 --simulate 4000 --out th",
        2,
        &["memory", "--chi"],
    ),
    case("extensive tiny simulation", "theory extensive --nu 8 --chi 0.01 --simulate 10 --out th", 2, &["--simulate"]),
    case("mp simulate huge", "theory mp --simulate 10000000 --out th", 2, &["memory", "--simulate"]),
    case("theory into a run", "theory mp --out run", 2, &["training run"]),
    case(
        "mup with adam",
        "theory mup c.toml --out th --set optimizer.kind=\"adam\"",
        2,
        &["does not describe this optimizer"],
    ),
    case(
        "compare of a sweep that is not of linear networks",
        "compare tanh-sweep --out cmp",
        2,
        &["linear networks", "sweep report"],
    ),
    case(
        "extensive law from a tanh config",
        "theory extensive c.toml --out th",
        2,
        &["extensive-output law", "model.proportional"],
    ),
    case(
        "proportional with adam",
        "train c.toml --out new --set model.proportional=true --set optimizer.kind=\"adam\"",
        2,
        &["model.proportional", "sgd"],
    ),
    case(
        "mup extensive outputs",
        "theory mup c.toml --out th --set data.kind=\"multi-output\" --set data.outputs=17",
        2,
        &["O(1) outputs", "17"],
    ),
    case("mup missing config", "theory mup nope.toml --out th", 2, &["nope.toml"]),
    case("mup zero samples", "theory mup c.toml --out th --samples 1", 2, &["--samples"]),
    case("mup zero response samples", "theory mup c.toml --out th --response-samples 0", 2, &["--response-samples"]),
    case("mup zero replicas", "theory mup c.toml --out th --replicas 0", 2, &["--replicas"]),
    case(
        "mup unknown response estimator",
        "theory mup c.toml --out th --responses median",
        2,
        &["--responses", "debiased"],
    ),
    case("bench dmft negative cutoff", "bench dmft --p 4 --steps 2 --outlier-tol=-1", 2, &["--outlier-tol"]),
    case("mup huge horizon", "theory mup c.toml --out th --set train.steps=10000000", 2, &["memory"]),
    case("mup scan of one value", "theory mup c.toml --out th --scan model.gamma0=1", 2, &["--scan", "KEY=V1,V2"]),
    case("mup scan without values", "theory mup c.toml --out th --scan model.gamma0", 2, &["--scan"]),
    case("mup scan of an unknown key", "theory mup c.toml --out th --scan model.gamm0=1,2", 2, &["gamm0"]),
    case("mup scan of a bad value", "theory mup c.toml --out th --scan model.gamma0=1,-2", 2, &["gamma0"]),
    // --- compare ---
    case("compare a non-run", "compare empty", 2, &["config.toml"]),
    case("compare a config without theory", "compare run adam --out cmp", 2, &["does not describe this optimizer"]),
    case("compare several runs without out", "compare run other", 2, &["--out"]),
    prepped(
        "compare with a corrupt theory cache",
        "compare run -q --samples 200 --response-samples 20",
        Prep::CorruptTheoryCache,
        2,
        &["loss.csv", "delete the theory/ directory"],
    ),
    // --- config and bench ---
    case("config unknown key", "config bad-key.toml", 2, &["widht"]),
    case("bench bad shape", "bench svd --shapes 10x", 2, &["ROWSxCOLS"]),
    case("bench huge shape", "bench svd --shapes 1000000x1000000", 2, &["memory"]),
];

fn prepare(d: &Path, prep: Prep) {
    let ckpt = |name: &str| d.join("run/checkpoints").join(format!("{name}.safetensors"));
    match prep {
        Prep::None => {}
        Prep::TruncateCheckpoint(name) => {
            let bytes = std::fs::read(ckpt(name)).unwrap();
            std::fs::write(ckpt(name), &bytes[..bytes.len() / 2]).unwrap();
        }
        Prep::FlipCheckpointByte(name) => {
            let mut bytes = std::fs::read(ckpt(name)).unwrap();
            let n = bytes.len();
            bytes[n - 7] ^= 0x40;
            std::fs::write(ckpt(name), bytes).unwrap();
        }
        Prep::CopyForeignCheckpoint(from) => {
            std::fs::copy(d.join(from).join("checkpoints/step-00000006.safetensors"), ckpt("step-00000006")).unwrap();
        }
        Prep::GarbageSpectra => std::fs::write(d.join("run/spectra.h5"), b"garbage, not HDF5").unwrap(),
        Prep::GarbageStoredConfig => std::fs::write(d.join("run/config.toml"), "[model\n").unwrap(),
        Prep::CorruptTheoryCache => {
            let out = specdyn(
                d,
                &"compare run -q --samples 200 --response-samples 20".split(' ').map(String::from).collect::<Vec<_>>(),
            );
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            std::fs::write(d.join("run/theory/loss.csv"), "step,train_loss,stderr\n0,abc,0\n").unwrap();
        }
    }
}

#[test]
fn the_bad_input_corpus() {
    assert!(CASES.len() >= 60, "the corpus has {} cases", CASES.len());
    let mut failures = Vec::new();
    for c in CASES {
        let d = tempfile::tempdir().unwrap();
        fixtures(d.path());
        prepare(d.path(), c.prep);
        let before = snapshot(d.path());
        let args: Vec<String> = c.args.split(' ').map(String::from).collect();
        let t0 = std::time::Instant::now();
        let out = specdyn(d.path(), &args);
        eprintln!("{:>6.2} s  {}", t0.elapsed().as_secs_f64(), c.name);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        let mut problems = Vec::new();
        if out.status.code() != Some(c.code) {
            problems.push(format!("exit code {:?}, want {}", out.status.code(), c.code));
        }
        if err.contains("panicked") || err.contains("RUST_BACKTRACE") || err.contains("internal error") {
            problems.push("panic text".into());
        }
        let paragraphs: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
        // clap's own usage errors have their own format (one `error:` line and a usage hint).
        if paragraphs.len() != 1 {
            problems.push(format!("{} `error:` paragraphs", paragraphs.len()));
        } else if !paragraphs[0].contains("Fix:") && !err.contains("Usage:") {
            problems.push("no Fix:".into());
        }
        for n in c.needles {
            if !err.contains(n) {
                problems.push(format!("message lacks '{n}'"));
            }
        }
        let after = snapshot(d.path());
        if before != after {
            let changed: Vec<_> = after
                .iter()
                .filter(|(k, v)| before.get(*k) != Some(v))
                .map(|(k, _)| k.display().to_string())
                .chain(before.keys().filter(|k| !after.contains_key(*k)).map(|k| format!("removed {}", k.display())))
                .collect();
            problems.push(format!("files changed: {changed:?}"));
        }
        if !problems.is_empty() {
            failures.push(format!("{}: {}\n    stderr: {}", c.name, problems.join("; "), err.trim()));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), CASES.len(), failures.join("\n"));
}

#[test]
fn thread_counts_beyond_the_machine_are_clamped() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("c.toml"), SMALL).unwrap();
    let out =
        specdyn(d.path(), &"train c.toml --out r -q --threads 100000".split(' ').map(String::from).collect::<Vec<_>>());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("--threads 100000 exceeds"), "{err}");
}

#[test]
fn divergence_is_recorded_not_panicked() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("c.toml"), SMALL).unwrap();
    let args = "train c.toml --out r --set optimizer.lr=1e6 --set train.steps=50";
    let out = specdyn(d.path(), &args.split(' ').map(String::from).collect::<Vec<_>>());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("diverged at step") && err.contains("lower optimizer.lr"), "{err}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.path().join("r/summary.json")).unwrap()).unwrap();
    assert_eq!(summary["status"], "diverged");
    assert!(summary["diverged_at_step"].as_u64().is_some());
    assert!(summary["last_finite_loss"].as_f64().is_some_and(f64::is_finite));
}
