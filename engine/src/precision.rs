//! [`ComputePrecision`]: the arithmetic a step runs in, as the user asks for it
//! (`--precision auto|fp32|fp16|bf16`), resolved by each backend into what its kernels
//! take — or refused with a hint:
//!
//! | asked | CPU | GPU |
//! |---|---|---|
//! | `auto` | fp32 | fp16 storage, fp32 accumulation |
//! | `fp32` | fp32 | fp32 (verification mode) |
//! | `fp16` | error: GPU only | fp16 storage |
//! | `bf16` | bf16 GEMM inputs, fp32 accumulation and state, on AVX-512 BF16 | error: CPU only |
//!
//! The CPU side is a [`GemmPrecision`] (what the packed 1x1 GEMMs multiply in), the GPU
//! side a storage [`Precision`].

use vigil_kernels::cpu::{GemmPrecision, Isa};
use vigil_kernels::Precision;

use crate::{EngineError, Result};

/// The arithmetic a step runs in, as requested; see the module docs for what each
/// backend makes of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum ComputePrecision {
    /// fp16 storage on a GPU, fp32 on the CPU.
    #[default]
    Auto,
    /// fp32 everywhere (the float oracle's arithmetic).
    Fp32,
    /// fp16 storage with fp32 accumulation: GPU only.
    Fp16,
    /// bf16 inputs to the CPU's 1x1 GEMMs (weights packed once, activations rounded at
    /// each GEMM), fp32 accumulation, fp32 state and pools: CPUs with AVX-512 BF16 only.
    Bf16,
}

impl ComputePrecision {
    /// Parse `auto`, `fp32`, `fp16` or `bf16` (`f32`, `f16` accepted).
    pub fn parse(s: &str) -> std::result::Result<ComputePrecision, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(ComputePrecision::Auto),
            "fp32" | "f32" => Ok(ComputePrecision::Fp32),
            "fp16" | "f16" => Ok(ComputePrecision::Fp16),
            "bf16" => Ok(ComputePrecision::Bf16),
            other => Err(format!(
                "unknown precision {other:?} — use auto, fp32, fp16 (GPU) or bf16 (CPU)"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ComputePrecision::Auto => "auto",
            ComputePrecision::Fp32 => "fp32",
            ComputePrecision::Fp16 => "fp16",
            ComputePrecision::Bf16 => "bf16",
        }
    }

    /// What the CPU backend runs at instruction set `isa` (see [`Isa::active`]).
    pub fn for_cpu(self, isa: Isa) -> Result<GemmPrecision> {
        match self {
            ComputePrecision::Auto | ComputePrecision::Fp32 => Ok(GemmPrecision::F32),
            ComputePrecision::Bf16 if isa.has_bf16() => Ok(GemmPrecision::Bf16),
            ComputePrecision::Bf16 => Err(EngineError::Precision {
                precision: "bf16",
                device: "cpu".into(),
                why: if Isa::detected().has_bf16() {
                    format!("VIGIL_CPU_ISA lowers the CPU kernels to {isa}, which has no bf16 dot products")
                } else {
                    format!("this CPU has no AVX-512 BF16 (its kernels run {isa})")
                },
                hint: "use --precision fp32",
            }),
            ComputePrecision::Fp16 => Err(EngineError::Precision {
                precision: "fp16",
                device: "cpu".into(),
                why: "fp16 storage is the GPU backend's".into(),
                hint: "use --precision fp32 or bf16 on the CPU, or auto",
            }),
        }
    }

    /// What the CUDA backend stores in.
    pub fn for_gpu(self) -> Result<Precision> {
        match self {
            ComputePrecision::Auto | ComputePrecision::Fp16 => Ok(Precision::F16),
            ComputePrecision::Fp32 => Ok(Precision::F32),
            ComputePrecision::Bf16 => Err(EngineError::Precision {
                precision: "bf16",
                device: "cuda".into(),
                why: "bf16 runs on the CPU backend only for now".into(),
                hint: "use --precision fp16 or fp32 on a GPU, or --device cpu",
            }),
        }
    }
}

impl From<Precision> for ComputePrecision {
    /// A GPU storage precision as the request that picks it.
    fn from(p: Precision) -> ComputePrecision {
        match p {
            Precision::F16 => ComputePrecision::Fp16,
            Precision::F32 => ComputePrecision::Fp32,
        }
    }
}

impl std::fmt::Display for ComputePrecision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_backend_resolves_or_refuses_with_a_hint() {
        for isa in Isa::supported() {
            assert_eq!(
                ComputePrecision::Auto.for_cpu(isa).unwrap(),
                GemmPrecision::F32
            );
            assert_eq!(
                ComputePrecision::Fp32.for_cpu(isa).unwrap(),
                GemmPrecision::F32
            );
            let fp16 = ComputePrecision::Fp16.for_cpu(isa).unwrap_err().to_string();
            assert!(
                fp16.contains("fp16") && fp16.contains("--precision fp32"),
                "{fp16}"
            );
            match ComputePrecision::Bf16.for_cpu(isa) {
                Ok(p) => assert!(isa.has_bf16() && p == GemmPrecision::Bf16),
                Err(e) => {
                    let e = e.to_string();
                    assert!(!isa.has_bf16());
                    assert!(
                        e.contains("bf16") && e.contains("use --precision fp32"),
                        "{e}"
                    );
                }
            }
        }
        // below AVX-512 there are no bf16 dot products, whatever the CPU
        let e = ComputePrecision::Bf16
            .for_cpu(Isa::Avx2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("use --precision fp32"), "{e}");
        assert_eq!(ComputePrecision::Auto.for_gpu().unwrap(), Precision::F16);
        assert_eq!(ComputePrecision::Fp32.for_gpu().unwrap(), Precision::F32);
        let e = ComputePrecision::Bf16.for_gpu().unwrap_err().to_string();
        assert!(e.contains("CPU backend only"), "{e}");
    }

    #[test]
    fn parses_the_cli_names() {
        for p in [
            ComputePrecision::Auto,
            ComputePrecision::Fp32,
            ComputePrecision::Fp16,
            ComputePrecision::Bf16,
        ] {
            assert_eq!(ComputePrecision::parse(p.name()).unwrap(), p);
        }
        assert_eq!(
            ComputePrecision::parse("F32").unwrap(),
            ComputePrecision::Fp32
        );
        assert!(ComputePrecision::parse("int8")
            .unwrap_err()
            .contains("bf16"));
    }
}
