//! CIFAR-10 from the official binary files: `data_batch_1.bin` … `data_batch_5.bin` and
//! `test_batch.bin`, each a sequence of records of 1 label byte (0–9) followed by 3,072 pixel
//! bytes (1,024 red, 1,024 green, 1,024 blue, row-major 32 × 32).
//!
//! Images stay as bytes in host memory (50,000 × 3,072 B = 154 MB for the full training set)
//! and are converted to f32 with per-channel normalization by the training set's mean and
//! standard deviation; training keeps the converted set on the device ([`super::DeviceSet`]).
//! With `data.augment`, each image of a batch gets a random horizontal flip and a random crop of
//! the image padded by 4 zero pixels ([`Crop`]), drawn from the counter-based stream
//! `(seed, Augment, step)` so a resumed run draws the same augmentations.

use super::HostData;
use crate::error::{Error, Result};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};

/// Channels, height, width.
pub const SHAPE: [usize; 3] = [3, 32, 32];
/// Bytes per image.
pub const PIXELS: usize = 3 * 32 * 32;
/// Bytes per record (label + image).
pub const RECORD: usize = 1 + PIXELS;
pub const CLASSES: usize = 10;
/// Training files, in order.
pub const TRAIN_FILES: [&str; 5] =
    ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"];
pub const TEST_FILE: &str = "test_batch.bin";
/// Records per file in the official release.
pub const OFFICIAL_RECORDS: usize = 10_000;
/// Crop padding of the augmentation, pixels.
pub const PAD: usize = 4;

/// Images as bytes, with labels and the normalization to apply.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageSet {
    /// [n, 3072] bytes, channel-major per image.
    pub pixels: Vec<u8>,
    pub labels: Vec<u8>,
    /// Per-channel mean and standard deviation (of the training images, in [0, 1] units).
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

/// What `specdyn data cifar10` reports about one file.
#[derive(Clone, Debug)]
pub struct FileReport {
    pub path: PathBuf,
    pub records: usize,
    pub class_counts: [usize; CLASSES],
    pub sha256: String,
}

fn hint() -> String {
    "download the official binary release again (datasets/README.md) and check it with `specdyn data cifar10 --dir DIR`"
        .to_string()
}

/// Read one batch file, checking its size and every label byte.
pub fn read_batch(path: &Path) -> Result<(Vec<u8>, Vec<u8>)> {
    let bytes = std::fs::read(path).map_err(|e| {
        let problem = match e.kind() {
            std::io::ErrorKind::NotFound => "is missing".to_string(),
            _ => format!("cannot be read: {e}"),
        };
        Error::data(path, problem, format!("data.dir must hold {} and {TEST_FILE}; {}", TRAIN_FILES.join(", "), hint()))
    })?;
    if bytes.is_empty() {
        return Err(Error::data(path, "is empty", hint()));
    }
    if bytes.len() % RECORD != 0 {
        let complete = bytes.len() / RECORD;
        return Err(Error::data(
            path,
            format!(
                "is truncated or not a CIFAR-10 binary file: {} bytes is {complete} complete records of {RECORD} bytes and {} bytes more (the record starting at byte offset {} is incomplete)",
                bytes.len(),
                bytes.len() % RECORD,
                complete * RECORD
            ),
            hint(),
        ));
    }
    let n = bytes.len() / RECORD;
    let mut pixels = Vec::with_capacity(n * PIXELS);
    let mut labels = Vec::with_capacity(n);
    for (i, rec) in bytes.chunks_exact(RECORD).enumerate() {
        if rec[0] as usize >= CLASSES {
            return Err(Error::data(
                path,
                format!("record {i} (byte offset {}) has label byte {}, not a class 0–9", i * RECORD, rec[0]),
                hint(),
            ));
        }
        labels.push(rec[0]);
        pixels.extend_from_slice(&rec[1..]);
    }
    Ok((pixels, labels))
}

/// Load the training files (in order) and the test file of `dir`, with normalization from
/// the training images.
pub fn load(dir: &Path) -> Result<(ImageSet, ImageSet)> {
    if !dir.is_dir() {
        return Err(Error::data(
            dir,
            if dir.exists() { "is not a directory" } else { "does not exist" },
            format!("set data.dir to the directory holding {} and {TEST_FILE} (datasets/README.md)", TRAIN_FILES[0]),
        ));
    }
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    for f in TRAIN_FILES {
        let (p, l) = read_batch(&dir.join(f))?;
        pixels.extend(p);
        labels.extend(l);
    }
    let (test_pixels, test_labels) = read_batch(&dir.join(TEST_FILE))?;
    let (mean, std) = channel_stats(&pixels);
    Ok((ImageSet { pixels, labels, mean, std }, ImageSet { pixels: test_pixels, labels: test_labels, mean, std }))
}

/// Per-channel mean and standard deviation of byte images, in [0, 1] units.
fn channel_stats(pixels: &[u8]) -> ([f32; 3], [f32; 3]) {
    let plane = PIXELS / 3;
    let (mut sum, mut sq, mut count) = ([0f64; 3], [0f64; 3], 0f64);
    for img in pixels.chunks_exact(PIXELS) {
        for c in 0..3 {
            for &v in &img[c * plane..(c + 1) * plane] {
                let x = f64::from(v) / 255.0;
                sum[c] += x;
                sq[c] += x * x;
            }
        }
        count += plane as f64;
    }
    let mean = sum.map(|s| s / count.max(1.0));
    let std: Vec<f64> = (0..3).map(|c| (sq[c] / count.max(1.0) - mean[c] * mean[c]).max(1e-12).sqrt()).collect();
    (mean.map(|m| m as f32), [std[0] as f32, std[1] as f32, std[2] as f32])
}

impl ImageSet {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The first `n` images.
    pub fn first(&self, n: usize) -> ImageSet {
        ImageSet {
            pixels: self.pixels[..n * PIXELS].to_vec(),
            labels: self.labels[..n].to_vec(),
            mean: self.mean,
            std: self.std,
        }
    }

    /// Images `idx` as normalized f32 inputs [n, 3072] and one-hot targets [n, 10]; with an
    /// RNG, each image is flipped with probability ½ and cropped at a random offset
    /// ([`Crop::draw`], one draw per image in order).
    pub fn rows(&self, idx: &[usize], mut augment: Option<&mut ChaCha8Rng>) -> HostData {
        let pad = self.padding();
        let mut x = vec![0f32; idx.len() * PIXELS];
        let mut y = vec![0f32; idx.len() * CLASSES];
        for (row, &i) in idx.iter().enumerate() {
            let img = &self.pixels[i * PIXELS..(i + 1) * PIXELS];
            let crop = augment.as_deref_mut().map_or(Crop::CENTER, Crop::draw);
            let out = &mut x[row * PIXELS..(row + 1) * PIXELS];
            for (o, v) in out.iter_mut().enumerate() {
                let c = o / PLANE;
                *v = match crop.source(o) {
                    Some(s) => self.normalize(c, img[s]),
                    None => pad[c],
                };
            }
            y[row * CLASSES + self.labels[i] as usize] = 1.0;
        }
        HostData { x, y, n: idx.len(), d: PIXELS, c: CLASSES }
    }

    /// Byte `v` of channel `c` as a normalized input.
    fn normalize(&self, c: usize, v: u8) -> f32 {
        (f32::from(v) / 255.0 - self.mean[c]) / self.std[c]
    }

    /// The normalized value of a zero (padding) pixel, per channel.
    pub fn padding(&self) -> [f32; 3] {
        [0, 1, 2].map(|c| (0.0 - self.mean[c]) / self.std[c])
    }
}

/// Pixels per channel.
pub const PLANE: usize = 32 * 32;

/// One image's augmentation: a horizontal flip, then the 32 × 32 window at offset (dy, dx) of
/// the image padded by [`PAD`] zero pixels on every side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crop {
    pub flip: bool,
    pub dy: usize,
    pub dx: usize,
}

impl Crop {
    /// No augmentation: the window is the image itself.
    pub const CENTER: Crop = Crop { flip: false, dy: PAD, dx: PAD };
    /// Number of distinct crops: a flip or not, times (2·PAD + 1)² offsets.
    pub const VARIANTS: usize = 2 * (2 * PAD + 1) * (2 * PAD + 1);

    /// This crop's number in 0..VARIANTS (inverse of [`Crop::variant`]).
    pub fn index(self) -> usize {
        let side = 2 * PAD + 1;
        (usize::from(self.flip) * side + self.dy) * side + self.dx
    }

    /// Crop number `v` in 0..VARIANTS.
    pub fn variant(v: usize) -> Crop {
        let side = 2 * PAD + 1;
        Crop { flip: v / (side * side) == 1, dy: (v / side) % side, dx: v % side }
    }

    /// A random flip (probability ½) and offset (uniform in 0..=2·PAD each way).
    pub fn draw(rng: &mut ChaCha8Rng) -> Crop {
        let flip = rng.random_bool(0.5);
        let dy = rng.random_range(0..=2 * PAD);
        let dx = rng.random_range(0..=2 * PAD);
        Crop { flip, dy, dx }
    }

    /// Which pixel of the source image output pixel `o` (channel-major index) reads, or None
    /// where the window lies on the padding.
    pub fn source(self, o: usize) -> Option<usize> {
        let (h, w) = (SHAPE[1], SHAPE[2]);
        let (c, r, col) = (o / PLANE, (o % PLANE) / w, o % w);
        // Output (r, col) reads the padded image at (r + dy, col + dx).
        let (sr, sc) = ((r + self.dy).checked_sub(PAD)?, (col + self.dx).checked_sub(PAD)?);
        if sr >= h || sc >= w {
            return None;
        }
        let sc = if self.flip { w - 1 - sc } else { sc };
        Some(c * PLANE + sr * w + sc)
    }
}

/// Check a CIFAR-10 directory: every file's records, class counts and SHA-256.
pub fn check_dir(dir: &Path) -> Result<Vec<FileReport>> {
    let mut out = Vec::new();
    for f in TRAIN_FILES.iter().chain(std::iter::once(&TEST_FILE)) {
        let path = dir.join(f);
        let (_, labels) = read_batch(&path)?;
        let bytes = std::fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
        let mut class_counts = [0usize; CLASSES];
        labels.iter().for_each(|l| class_counts[*l as usize] += 1);
        out.push(FileReport { path, records: labels.len(), class_counts, sha256: super::sha256_hex(&bytes) });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(label: u8, fill: u8) -> Vec<u8> {
        let mut r = vec![label];
        r.extend(std::iter::repeat_n(fill, PIXELS));
        r
    }

    #[test]
    fn truncated_files_and_bad_labels_are_named_with_the_offset() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("data_batch_1.bin");
        let mut bytes = [record(3, 10), record(7, 20)].concat();
        std::fs::write(&p, &bytes).unwrap();
        let (px, lab) = read_batch(&p).unwrap();
        assert_eq!((px.len(), lab), (2 * PIXELS, vec![3, 7]));
        bytes.truncate(RECORD + 100);
        std::fs::write(&p, &bytes).unwrap();
        let e = read_batch(&p).unwrap_err().to_string();
        assert!(e.contains("data_batch_1.bin") && e.contains(&format!("byte offset {RECORD}")), "{e}");
        let bad = [record(3, 10), record(12, 20)].concat();
        std::fs::write(&p, bad).unwrap();
        let e = read_batch(&p).unwrap_err().to_string();
        assert!(e.contains("record 1") && e.contains("label byte 12"), "{e}");
    }

    #[test]
    fn crop_numbers_cover_every_crop_once() {
        let mut seen = std::collections::HashSet::new();
        for v in 0..Crop::VARIANTS {
            let c = Crop::variant(v);
            assert!(c.dy <= 2 * PAD && c.dx <= 2 * PAD, "{c:?}");
            assert_eq!(c.index(), v);
            seen.insert((c.flip, c.dy, c.dx));
        }
        assert_eq!(seen.len(), Crop::VARIANTS);
        assert_eq!(Crop::variant(Crop::CENTER.index()), Crop::CENTER);
    }

    #[test]
    fn crops_and_flips_move_pixels_as_described() {
        // One image whose red channel encodes the column: pixel (r, c) = c.
        let mut px = vec![0u8; PIXELS];
        for r in 0..32 {
            for c in 0..32 {
                px[r * 32 + c] = c as u8;
            }
        }
        let set = ImageSet { pixels: px, labels: vec![4], mean: [0.0; 3], std: [1.0; 3] };
        let plain = set.rows(&[0], None);
        assert_eq!(plain.x[5], 5.0 / 255.0);
        assert_eq!(plain.y[4], 1.0);
        // Every augmented row is a shifted (and maybe mirrored) copy: columns move by ≤ 4.
        let mut rng = crate::rng::stream(0, crate::rng::Purpose::Augment, 3);
        let aug = set.rows(&[0], Some(&mut rng));
        let row: Vec<f32> = aug.x[10 * 32..11 * 32].iter().map(|v| v * 255.0).collect();
        let nonzero: Vec<f32> = row.iter().copied().filter(|v| *v > 0.5).collect();
        assert!(nonzero.len() >= 23, "{row:?}");
        let steps: Vec<f32> = nonzero.windows(2).map(|w| (w[1] - w[0]).abs()).collect();
        assert!(steps.iter().all(|s| (*s - 1.0).abs() < 1e-3), "{row:?}");
    }
}
