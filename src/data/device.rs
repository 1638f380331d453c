//! The fixed training set kept on the device.
//!
//! A run on a fixed dataset uploads it once; every step's batch is then gathered on the device
//! from the step's sample indices (and, for augmented images, each image's flip and crop, as a
//! row of a table of every crop built once on the host): two integers per sample cross the bus
//! per step instead of the batch itself, and on a GPU the step
//! never waits for the host to build a batch. The batches are bit-identical to the host path
//! ([`super::Dataset::batch`]); `tests/resume.rs` checks it on the CPU and `tests/wgpu.rs` on wgpu.

use super::Samples;
use super::cifar::{Crop, PIXELS, PLANE};
use burn::tensor::{Int, Tensor, TensorData, backend::Backend};

/// The training set on the device.
pub struct DeviceSet<B: Backend> {
    inputs: Inputs<B>,
    /// Targets `[P, C]`.
    y: Tensor<B, 2>,
    /// Number of samples P.
    n: usize,
}

/// How the inputs are stored.
enum Inputs<B: Backend> {
    /// `[P, D]` (images normalized, not augmented).
    Plain(Tensor<B, 2>),
    /// Images to augment.
    Augmented {
        /// Image k's normalized pixels at `k·STRIDE`, followed by its 3 channels' padding values.
        flat: Tensor<B, 1>,
        /// `[VARIANTS, PIXELS]`: where each output pixel of crop variant v reads, relative to
        /// the image's start in `flat` ([`Crop::source`], or the channel's padding value).
        table: Tensor<B, 2, Int>,
    },
}

/// Values per image in [`Inputs::Augmented`]'s `flat`.
const STRIDE: usize = PIXELS + 3;

/// Indices as a device tensor.
fn indices<B: Backend>(idx: impl Iterator<Item = usize>, device: &B::Device) -> Tensor<B, 1, Int> {
    let v: Vec<i64> = idx.map(|i| i as i64).collect();
    let n = v.len();
    Tensor::from_data(TensorData::new(v, [n]), device)
}

impl<B: Backend> DeviceSet<B> {
    /// Upload `samples` (with the layout augmentation needs when `augment` is set).
    pub fn upload(samples: &Samples, augment: bool, device: &B::Device) -> Self {
        let host = samples.all();
        let y = Tensor::from_data(TensorData::new(host.y, [host.n, host.c]), device);
        let inputs = match samples {
            Samples::Images(images) if augment => {
                let pad = images.padding();
                let mut flat = Vec::with_capacity(host.n * STRIDE);
                for image in host.x.chunks_exact(PIXELS) {
                    flat.extend_from_slice(image);
                    flat.extend_from_slice(&pad);
                }
                let mut table = Vec::with_capacity(Crop::VARIANTS * PIXELS);
                for v in 0..Crop::VARIANTS {
                    let crop = Crop::variant(v);
                    table.extend((0..PIXELS).map(|o| crop.source(o).unwrap_or(PIXELS + o / PLANE) as i64));
                }
                Inputs::Augmented {
                    flat: Tensor::from_data(TensorData::new(flat, [host.n * STRIDE]), device),
                    table: Tensor::from_data(TensorData::new(table, [Crop::VARIANTS, PIXELS]), device),
                }
            }
            _ => Inputs::Plain(Tensor::from_data(TensorData::new(host.x, [host.n, host.d]), device)),
        };
        DeviceSet { inputs, y, n: host.n }
    }

    /// Number of samples P.
    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Samples `idx` in that order (every sample when None), without augmentation.
    pub fn rows(&self, idx: Option<&[usize]>) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let Inputs::Plain(x) = &self.inputs else { panic!("DeviceSet::rows on a set uploaded for augmentation") };
        match idx {
            None => (x.clone(), self.y.clone()),
            Some(idx) => (x.clone().select(0, self.indices(idx)), self.targets(idx)),
        }
    }

    /// Images `idx`, image k flipped and cropped by `crops[k]`: one row of the crop table per
    /// image, offset to the image, then one gather.
    pub fn augmented(&self, idx: &[usize], crops: &[Crop]) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let Inputs::Augmented { flat, table } = &self.inputs else {
            panic!("DeviceSet::augmented on a set uploaded without augmentation")
        };
        let (b, device) = (idx.len(), self.y.device());
        let start = indices::<B>(idx.iter().map(|&i| i * STRIDE), &device).reshape([b, 1]).expand([b, PIXELS]);
        let variants = indices::<B>(crops.iter().map(|c| c.index()), &device);
        let source = (table.clone().select(0, variants) + start).reshape([b * PIXELS]);
        (flat.clone().select(0, source).reshape([b, PIXELS]), self.targets(idx))
    }

    // One index tensor per `select`: on burn-wgpu 0.21, a second `select` with a clone of the
    // first one's index tensor (on a [P, 2+] tensor) read rows shifted by one (tests/wgpu.rs).
    fn indices(&self, idx: &[usize]) -> Tensor<B, 1, Int> {
        indices::<B>(idx.iter().copied(), &self.y.device())
    }

    fn targets(&self, idx: &[usize]) -> Tensor<B, 2> {
        self.y.clone().select(0, self.indices(idx))
    }
}
