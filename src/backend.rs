//! The one place that names burn backends. Everything else is generic over
//! `B: AutodiffBackend`; a [`BackendJob`] is run on the backend the user picked at run time.
//!
//! CPU is burn's `flex` backend (pure Rust, gemm-based; measured faster than `ndarray` on
//! this project's MLP step, see BENCHMARKS.md). `cuda` and `wgpu` are cargo features.

use crate::error::{Error, Result};
use crate::kernels::Kernels;
use burn::tensor::backend::AutodiffBackend;

/// Compute device, chosen with `--device`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Device {
    /// burn's flex CPU backend (default; uses all cores unless --threads is given).
    #[default]
    Cpu,
    /// NVIDIA GPU through CUDA (build with `--features cuda`).
    Cuda,
    /// Any GPU through wgpu (Vulkan/Metal/DX12; build with `--features wgpu`).
    Wgpu,
    /// burn's ndarray CPU backend, for comparison (build with `--features ndarray`).
    Ndarray,
}

impl Device {
    pub fn name(self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
            Device::Wgpu => "wgpu",
            Device::Ndarray => "ndarray",
        }
    }
}

/// A backend with autodiff (for analyses that differentiate) whose inner backend has the
/// training [`Kernels`]. Training itself runs on `B::InnerBackend`.
pub trait ComputeBackend: AutodiffBackend<InnerBackend: Kernels> + Kernels {}

impl<T> ComputeBackend for T
where
    T: AutodiffBackend + Kernels,
    T::InnerBackend: Kernels,
{
}

/// Work that runs on whichever backend was chosen.
pub trait BackendJob {
    type Output;
    fn run<B: ComputeBackend>(self, device: B::Device) -> Result<Self::Output>;
}

fn not_compiled(device: Device) -> Error {
    Error::Device {
        device: device.name().to_string(),
        problem: "this binary was built without it".to_string(),
        hint: format!(
            "rebuild with `cargo build --release --features {0}` (or SPECDYN_FEATURES={0} scripts/specdyn …), or use --device cpu",
            device.name()
        ),
    }
}

/// Run `job` on `device` (GPU index `index` where it applies).
pub fn dispatch<J: BackendJob>(device: Device, index: usize, job: J) -> Result<J::Output> {
    let _ = index;
    match device {
        Device::Cpu => job.run::<burn::backend::Autodiff<burn::backend::Flex>>(Default::default()),
        #[cfg(feature = "cuda")]
        Device::Cuda => {
            job.run::<burn::backend::Autodiff<burn::backend::Cuda>>(burn::backend::cuda::CudaDevice::new(index))
        }
        #[cfg(feature = "wgpu")]
        Device::Wgpu => job.run::<burn::backend::Autodiff<burn::backend::Wgpu>>(if index == 0 {
            burn::backend::wgpu::WgpuDevice::default()
        } else {
            burn::backend::wgpu::WgpuDevice::DiscreteGpu(index)
        }),
        #[cfg(feature = "ndarray")]
        Device::Ndarray => job.run::<burn::backend::Autodiff<burn::backend::NdArray>>(Default::default()),
        #[allow(unreachable_patterns)]
        other => Err(not_compiled(other)),
    }
}

/// Use `threads` CPU threads for burn and faer (0: all cores; more than the machine has is
/// clamped). Call before any work.
pub fn set_threads(threads: usize) {
    if threads > 0 {
        let n = crate::resources::thread_count(threads);
        let _ = rayon::ThreadPoolBuilder::new().num_threads(n).build_global();
    }
}
