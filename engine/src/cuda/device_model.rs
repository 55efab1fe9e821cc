//! [`DeviceWeights`]: the plan's weight table on the device — uploaded once, when the
//! backend is built, one device allocation per tensor (so a kernel that reads past a
//! weight leaves its allocation, which a checking driver catches), in the storage type
//! for conv and GEMM weights and in fp32 for biases and scales.

use std::sync::Arc;

use vigil_kernels::cuda::cudarc::driver::{CudaSlice, CudaStream, DriverError};
use vigil_kernels::cuda::{KernelError, Storage};

use crate::plan::{Plan, WeightClass, WeightId};

/// One uploaded tensor.
enum DeviceTensor<T> {
    Storage(CudaSlice<T>),
    F32(CudaSlice<f32>),
}

/// The plan's weight table on the device, indexed by [`WeightId`].
pub(super) struct DeviceWeights<T> {
    tensors: Vec<DeviceTensor<T>>,
}

impl<T: Storage> DeviceWeights<T> {
    /// Upload every tensor of `plan`'s weight table on `stream` (asynchronous: the
    /// caller synchronises before the first step).
    pub(super) fn upload(stream: &Arc<CudaStream>, plan: &Plan) -> Result<Self, DriverError> {
        let mut tensors = Vec::with_capacity(plan.weights().len());
        for w in plan.weights() {
            tensors.push(match w.class {
                WeightClass::Storage => {
                    let host: Vec<T> = w.values.iter().map(|&v| T::from_f32(v)).collect();
                    DeviceTensor::Storage(stream.clone_htod(&host)?)
                }
                WeightClass::F32 => DeviceTensor::F32(stream.clone_htod(&w.values)?),
            });
        }
        Ok(DeviceWeights { tensors })
    }

    /// Weight `id`, stored in the storage type.
    pub(super) fn storage(&self, id: WeightId) -> Result<&CudaSlice<T>, KernelError> {
        match self.tensors.get(id.index()) {
            Some(DeviceTensor::Storage(t)) => Ok(t),
            _ => Err(missing(id, "storage-type")),
        }
    }

    /// Weight `id`, stored as fp32.
    pub(super) fn f32(&self, id: WeightId) -> Result<&CudaSlice<f32>, KernelError> {
        match self.tensors.get(id.index()) {
            Some(DeviceTensor::F32(t)) => Ok(t),
            _ => Err(missing(id, "fp32")),
        }
    }

    /// Device bytes of all weights.
    pub(super) fn bytes(&self) -> usize {
        self.tensors
            .iter()
            .map(|t| match t {
                DeviceTensor::Storage(s) => s.len() * std::mem::size_of::<T>(),
                DeviceTensor::F32(s) => s.len() * 4,
            })
            .sum()
    }
}

fn missing(id: WeightId, what: &str) -> KernelError {
    KernelError::Shape {
        op: "weights",
        detail: format!("weight {} is not an uploaded {what} tensor", id.index()),
    }
}
