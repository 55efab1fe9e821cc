//! Instruction-set dispatch for the CPU twins: [`simd_dispatch!`] compiles a row kernel
//! for the baseline target and again with AVX2 + FMA enabled, and picks one at run time.

/// Compiles a row kernel twice — for the baseline target and with AVX2 + FMA — and picks
/// one at run time, so the inner channel loops vectorize 8 wide where the CPU allows.
macro_rules! simd_dispatch {
    ($(#[$m:meta])* fn $name:ident($($a:ident: $t:ty),* $(,)?) $body:block) => {
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        fn $name($($a: $t),*) {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn imp($($a: $t),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2($($a: $t),*) {
                    imp($($a),*)
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU supports AVX2 and FMA (checked just above).
                    return unsafe { avx2($($a),*) };
                }
            }
            imp($($a),*)
        }
    };
}

pub(crate) use simd_dispatch;
