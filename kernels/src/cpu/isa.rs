//! Instruction-set dispatch for the CPU twins.
//!
//! [`Isa`] names the three levels the kernels are compiled for — [`Isa::Scalar`] (portable
//! code for the build target), [`Isa::Avx2`] (AVX2 + FMA, 8 lanes) and [`Isa::Avx512`]
//! (AVX-512 F/BW/DQ/VL, 16 lanes) — and picks one at run time: the best the CPU has
//! ([`Isa::detected`]), lowered by the `VIGIL_CPU_ISA` environment variable
//! (`scalar|avx2|avx512`) so tests and benchmarks can force each path ([`Isa::active`]).
//! AVX-512 BF16 (`vdpbf16ps`) is a separate capability on top of [`Isa::Avx512`]
//! ([`Isa::has_bf16`]).
//!
//! Two macros compile one kernel body per level, so no kernel logic is written twice:
//! - [`simd_dispatch!`] — a plain body, autovectorized by the compiler for each level;
//! - [`vector_dispatch!`] — a body generic over the vector type ([`super::simd::F32Vec`]):
//!   16-lane `__m512`, 8-lane `__m256` or the portable 8-lane array.
//!
//! Every dispatching function takes an `Isa` and clamps it to what the CPU has, so a
//! caller asking for more than the machine supports gets the best it has, never an
//! illegal instruction.

use std::sync::OnceLock;

/// An instruction-set level the CPU kernels are compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// No hand-written SIMD: portable code compiled for the build target (SSE2 on
    /// x86-64, NEON on aarch64, by autovectorization).
    Scalar,
    /// AVX2 + FMA: 8 lanes of f32, 16 vector registers.
    Avx2,
    /// AVX-512 F/BW/DQ/VL (+ AVX2, FMA): 16 lanes of f32, 32 vector registers, masks.
    Avx512,
}

/// What the CPU has, probed once.
#[derive(Debug, Clone, Copy)]
struct Detected {
    isa: Isa,
    bf16: bool,
}

fn probe() -> Detected {
    #[cfg(target_arch = "x86_64")]
    {
        use std::is_x86_feature_detected as has;
        let avx2 = has!("avx2") && has!("fma");
        let avx512 =
            avx2 && has!("avx512f") && has!("avx512bw") && has!("avx512dq") && has!("avx512vl");
        let isa = if avx512 {
            Isa::Avx512
        } else if avx2 {
            Isa::Avx2
        } else {
            Isa::Scalar
        };
        Detected {
            isa,
            bf16: avx512 && has!("avx512bf16"),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        Detected {
            isa: Isa::Scalar,
            bf16: false,
        }
    }
}

fn detected() -> Detected {
    static D: OnceLock<Detected> = OnceLock::new();
    *D.get_or_init(probe)
}

/// The environment variable that lowers the instruction set the kernels use.
pub const ISA_ENV: &str = "VIGIL_CPU_ISA";

impl Isa {
    /// Every level, lowest first.
    pub const ALL: [Isa; 3] = [Isa::Scalar, Isa::Avx2, Isa::Avx512];

    /// The name `VIGIL_CPU_ISA` takes: `scalar`, `avx2` or `avx512`.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// Parse a level name (as [`Isa::name`] writes it).
    pub fn parse(s: &str) -> Option<Isa> {
        Isa::ALL
            .into_iter()
            .find(|i| i.name().eq_ignore_ascii_case(s.trim()))
    }

    /// The best level this CPU supports.
    pub fn detected() -> Isa {
        detected().isa
    }

    /// Whether this CPU can run code compiled for `self`.
    pub fn is_supported(self) -> bool {
        self <= Isa::detected()
    }

    /// The supported levels, lowest first (tests run each kernel on every one).
    pub fn supported() -> impl Iterator<Item = Isa> {
        Isa::ALL.into_iter().filter(|i| i.is_supported())
    }

    /// `self`, lowered to what the CPU supports.
    pub fn clamp(self) -> Isa {
        self.min(Isa::detected())
    }

    /// `VIGIL_CPU_ISA` as set: `Ok(None)` when unset or empty, an error naming the value
    /// when it is not a level name or asks for more than this CPU has (for callers that
    /// want to report it; [`Isa::active`] ignores a bad value and clamps a high one).
    pub fn env_override() -> Result<Option<Isa>, String> {
        let Ok(v) = std::env::var(ISA_ENV) else {
            return Ok(None);
        };
        if v.trim().is_empty() {
            return Ok(None);
        }
        match Isa::parse(&v) {
            None => Err(format!(
                "{ISA_ENV}={v:?} is not an instruction set — use scalar, avx2 or avx512"
            )),
            Some(i) if !i.is_supported() => Err(format!(
                "{ISA_ENV}={v}: this CPU has only {} — use {} or lower",
                Isa::detected().name(),
                Isa::detected().name()
            )),
            Some(i) => Ok(Some(i)),
        }
    }

    /// The level the kernels run at: [`Isa::detected`], lowered by `VIGIL_CPU_ISA`
    /// (read once per process).
    pub fn active() -> Isa {
        static A: OnceLock<Isa> = OnceLock::new();
        *A.get_or_init(|| {
            let want = std::env::var(ISA_ENV)
                .ok()
                .and_then(|v| Isa::parse(&v))
                .unwrap_or(Isa::Avx512);
            want.clamp()
        })
    }

    /// Whether bf16 dot products (`vdpbf16ps`, AVX-512 BF16) run at this level on this
    /// CPU: only at [`Isa::Avx512`], on a CPU with AVX-512 BF16.
    pub fn has_bf16(self) -> bool {
        self == Isa::Avx512 && detected().bf16
    }
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Compiles a kernel body three times — for the build target, with AVX2 + FMA, and with
/// AVX-512 — and adds a leading `isa: Isa` argument that picks one (clamped to the CPU),
/// so the same loops vectorize 4, 8 or 16 wide.
macro_rules! simd_dispatch {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($a:ident: $t:ty),* $(,)?) $body:block) => {
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name(isa: $crate::cpu::Isa, $($a: $t),*) {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn imp($($a: $t),*) $body
            match isa.clamp() {
                #[cfg(target_arch = "x86_64")]
                $crate::cpu::Isa::Avx512 => {
                    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
                    #[allow(clippy::too_many_arguments)]
                    unsafe fn avx512($($a: $t),*) {
                        imp($($a),*)
                    }
                    // SAFETY: `clamp` keeps Avx512 only where the CPU has these features.
                    unsafe { avx512($($a),*) }
                }
                #[cfg(target_arch = "x86_64")]
                $crate::cpu::Isa::Avx2 => {
                    #[target_feature(enable = "avx2,fma")]
                    #[allow(clippy::too_many_arguments)]
                    unsafe fn avx2($($a: $t),*) {
                        imp($($a),*)
                    }
                    // SAFETY: `clamp` keeps Avx2 only where the CPU has AVX2 and FMA.
                    unsafe { avx2($($a),*) }
                }
                _ => imp($($a),*),
            }
        }
    };
}
pub(crate) use simd_dispatch;

/// Like [`simd_dispatch!`], for a body generic over the vector type `V:`
/// [`F32Vec`](super::simd::F32Vec): instantiated with `F32x16` (AVX-512), `F32x8`
/// (AVX2) or `Portable8`, each inside a function compiled for its features. The body is
/// an `unsafe` context; its `// SAFETY:` comments state the bounds it relies on (the
/// vector types themselves are only created inside these instantiations). Written as
/// `unsafe fn`, the generated function is `unsafe` too (its callers vouch for raw
/// pointers it is given).
macro_rules! vector_dispatch {
    ($(#[$m:meta])* $vis:vis fn $name:ident<$V:ident>($($a:ident: $t:ty),* $(,)?) $body:block) => {
        $crate::cpu::isa::vector_dispatch!(@ [$(#[$m])*] [$vis] [] $name $V [$($a: $t),*] $body);
    };
    ($(#[$m:meta])* $vis:vis unsafe fn $name:ident<$V:ident>($($a:ident: $t:ty),* $(,)?) $body:block) => {
        $crate::cpu::isa::vector_dispatch!(@ [$(#[$m])*] [$vis] [unsafe] $name $V [$($a: $t),*] $body);
    };
    (@ [$($m:tt)*] [$vis:vis] [$($unsafe:tt)?] $name:ident $V:ident [$($a:ident: $t:ty),*] $body:block) => {
        $($m)*
        #[allow(clippy::too_many_arguments)]
        $vis $($unsafe)? fn $name(isa: $crate::cpu::Isa, $($a: $t),*) {
            #[inline(always)]
            #[allow(clippy::too_many_arguments, unused_unsafe)]
            unsafe fn imp<$V: $crate::cpu::simd::F32Vec>($($a: $t),*) $body
            match isa.clamp() {
                #[cfg(target_arch = "x86_64")]
                $crate::cpu::Isa::Avx512 => {
                    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
                    #[allow(clippy::too_many_arguments)]
                    unsafe fn avx512($($a: $t),*) {
                        // SAFETY: forwarded; AVX-512 is present (see the caller).
                        unsafe { imp::<$crate::cpu::simd::F32x16>($($a),*) }
                    }
                    // SAFETY: `clamp` keeps Avx512 only where the CPU has these features.
                    unsafe { avx512($($a),*) }
                }
                #[cfg(target_arch = "x86_64")]
                $crate::cpu::Isa::Avx2 => {
                    #[target_feature(enable = "avx2,fma")]
                    #[allow(clippy::too_many_arguments)]
                    unsafe fn avx2($($a: $t),*) {
                        // SAFETY: forwarded; AVX2 and FMA are present (see the caller).
                        unsafe { imp::<$crate::cpu::simd::F32x8>($($a),*) }
                    }
                    // SAFETY: `clamp` keeps Avx2 only where the CPU has AVX2 and FMA.
                    unsafe { avx2($($a),*) }
                }
                // SAFETY: the portable vector needs no CPU feature.
                _ => unsafe { imp::<$crate::cpu::simd::Portable8>($($a),*) },
            }
        }
    };
}
pub(crate) use vector_dispatch;
