//! Theoretical occupancy of a kernel on a GPU architecture, from its compiler-reported
//! resources (registers per thread, static shared memory) and its launch block size — the
//! CUDA Occupancy Calculator's arithmetic, with no device needed.
//!
//! Main items: [`ArchLimits`] (per-SM limits of one compute capability; [`ARCHS`] holds
//! sm_80, sm_86, sm_89 and sm_90), [`occupancy`] → [`Occupancy`] (resident blocks and warps
//! per SM, the fraction of the SM's warp slots, and which resource [`Limiter`] bounds it),
//! and [`launch_block_threads`] (the block size `launch.rs` launches each kernel with).
//!
//! # The rules (CUDA 12 `cuda_occupancy.h`, `cudaOccMaxActiveBlocksPerMultiprocessor`)
//! Resident blocks per SM = min of four limits, default shared-memory carveout, no dynamic
//! shared memory, partitioned global caching off (it does not exist on sm_80+):
//! - **warps**: `warps_per_block = ceil(threads / 32)`;
//!   limit `= (max_threads_per_sm / 32) / warps_per_block` (`cudaOccMaxBlocksPerSMWarpsLimit`).
//! - **blocks**: the hardware cap `max_blocks_per_sm` (`cudaOccMaxBlocksPerMultiprocessor`).
//! - **registers** (`cudaOccMaxBlocksPerSMRegsLimit`): registers are allocated per warp,
//!   `regs_per_warp = roundup(regs_per_thread * 32, 256)`, in each of the 4 SM
//!   sub-partitions: `warps_per_sub_partition = (regs_per_sm / 4) / regs_per_warp`,
//!   limit `= warps_per_sub_partition * 4 / warps_per_block`. A block cannot launch at all
//!   (limit 0) when `regs_per_warp * roundup(warps_per_block, 4) > regs_per_block` (the
//!   hardware check) or `regs_per_thread > 255`.
//! - **shared memory** (`cudaOccMaxBlocksPerSMSmemLimit`): per block
//!   `roundup(static_smem + reserved_smem_per_block, 128)` (sm_80+ reserve 1 KiB per block
//!   for the driver); limit `= smem_per_sm / that`, 0 when it exceeds the per-block limit
//!   (48 KiB static + the reserve). With the default carveout the calculator uses the
//!   whole `sharedMemPerMultiprocessor`.
//!
//! Occupancy = resident warps / `max_threads_per_sm / 32`. Per-SM figures are from the CUDA
//! C++ Programming Guide's "Technical Specifications per Compute Capability" table and
//! `cudaDeviceProp` of each architecture.

/// Per-SM resource limits of one compute capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchLimits {
    /// `sm_XY` as the number `XY` (80, 86, 89, 90).
    pub sm: u32,
    /// A GPU of this architecture, for tables.
    pub example_gpu: &'static str,
    pub max_threads_per_sm: u32,
    pub max_blocks_per_sm: u32,
    pub max_threads_per_block: u32,
    /// 32-bit registers per SM (`regsPerMultiprocessor`).
    pub regs_per_sm: u32,
    /// 32-bit registers one block may hold (`regsPerBlock`).
    pub regs_per_block: u32,
    /// Registers one thread may use (ptxas's `maxrregcount` ceiling).
    pub max_regs_per_thread: u32,
    /// Register allocation unit, per warp.
    pub reg_alloc_unit: u32,
    /// Register-file sub-partitions (warp schedulers) per SM.
    pub sub_partitions: u32,
    /// Shared memory per SM at the largest carveout (`sharedMemPerMultiprocessor`).
    pub smem_per_sm: u32,
    /// Shared memory a block may use without opting in (static limit, 48 KiB).
    pub smem_per_block: u32,
    /// Shared memory the driver reserves per resident block (`reservedSharedMemPerBlock`).
    pub smem_reserved_per_block: u32,
    /// Shared memory allocation unit.
    pub smem_alloc_unit: u32,
}

const KIB: u32 = 1024;

const fn limits(
    sm: u32,
    example_gpu: &'static str,
    max_threads_per_sm: u32,
    max_blocks_per_sm: u32,
    smem_per_sm: u32,
) -> ArchLimits {
    ArchLimits {
        sm,
        example_gpu,
        max_threads_per_sm,
        max_blocks_per_sm,
        max_threads_per_block: 1024,
        regs_per_sm: 65536,
        regs_per_block: 65536,
        max_regs_per_thread: 255,
        reg_alloc_unit: 256,
        sub_partitions: 4,
        smem_per_sm,
        smem_per_block: 48 * KIB,
        smem_reserved_per_block: KIB,
        smem_alloc_unit: 128,
    }
}

/// A100 (sm_80): 2048 threads, 32 blocks, 164 KiB shared memory per SM.
pub const SM_80: ArchLimits = limits(80, "A100", 2048, 32, 164 * KIB);
/// RTX 30xx / A10 / A40 (sm_86): 1536 threads, 16 blocks, 100 KiB per SM.
pub const SM_86: ArchLimits = limits(86, "A10/A40", 1536, 16, 100 * KIB);
/// L4 / L40S / RTX 40xx (sm_89): 1536 threads, 24 blocks, 100 KiB per SM.
pub const SM_89: ArchLimits = limits(89, "L4/L40S", 1536, 24, 100 * KIB);
/// H100 / H200 (sm_90): 2048 threads, 32 blocks, 228 KiB per SM.
pub const SM_90: ArchLimits = limits(90, "H100", 2048, 32, 228 * KIB);

/// The architectures the resource gate checks.
pub const ARCHS: [ArchLimits; 4] = [SM_80, SM_86, SM_89, SM_90];

impl ArchLimits {
    /// The limits of `sm_XY` (e.g. `"sm_90"`), if it is one of [`ARCHS`].
    pub fn of(arch: &str) -> Option<ArchLimits> {
        let sm: u32 = arch.strip_prefix("sm_")?.parse().ok()?;
        ARCHS.iter().copied().find(|a| a.sm == sm)
    }

    /// `sm_XY`.
    pub fn name(&self) -> String {
        format!("sm_{}", self.sm)
    }

    /// Warp slots per SM.
    pub fn max_warps_per_sm(&self) -> u32 {
        self.max_threads_per_sm / WARP
    }
}

const WARP: u32 = 32;

/// Which resource bounds the resident blocks per SM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limiter {
    /// warp slots (threads per SM)
    Warps,
    /// the per-SM block cap
    Blocks,
    /// the register file
    Registers,
    /// shared memory
    SharedMemory,
}

impl Limiter {
    pub fn name(self) -> &'static str {
        match self {
            Limiter::Warps => "warps",
            Limiter::Blocks => "blocks",
            Limiter::Registers => "regs",
            Limiter::SharedMemory => "smem",
        }
    }
}

/// The theoretical occupancy of one kernel launch shape on one architecture.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Occupancy {
    pub block_threads: u32,
    /// Resident blocks per SM (0: the block cannot launch on this architecture).
    pub blocks_per_sm: u32,
    /// Resident warps per SM.
    pub warps_per_sm: u32,
    /// `warps_per_sm / max warps per SM`, in [0, 1].
    pub fraction: f64,
    /// The tightest limit (the first of warps, registers, shared memory, blocks that
    /// reaches the minimum).
    pub limiter: Limiter,
    /// Each limit, blocks per SM.
    pub by_warps: u32,
    pub by_blocks: u32,
    pub by_registers: u32,
    pub by_shared_memory: u32,
}

fn round_up(x: u32, unit: u32) -> u32 {
    x.div_ceil(unit) * unit
}

/// Theoretical occupancy of a kernel using `regs_per_thread` registers and
/// `static_smem` bytes of static shared memory, launched with `block_threads` threads per
/// block, on `arch` (the rules are in the module docs).
pub fn occupancy(
    arch: &ArchLimits,
    regs_per_thread: u32,
    static_smem: u32,
    block_threads: u32,
) -> Occupancy {
    let warps_per_block = block_threads.div_ceil(WARP).max(1);
    let by_warps = if block_threads > arch.max_threads_per_block {
        0
    } else {
        arch.max_warps_per_sm() / warps_per_block
    };
    let by_blocks = arch.max_blocks_per_sm;

    let regs_per_warp = round_up(regs_per_thread * WARP, arch.reg_alloc_unit);
    let by_registers = if regs_per_warp == 0 {
        u32::MAX
    } else if regs_per_thread > arch.max_regs_per_thread
        || regs_per_warp * round_up(warps_per_block, arch.sub_partitions) > arch.regs_per_block
        || regs_per_warp * warps_per_block > arch.regs_per_block
    {
        0
    } else {
        let per_sub_partition = (arch.regs_per_sm / arch.sub_partitions) / regs_per_warp;
        per_sub_partition * arch.sub_partitions / warps_per_block
    };

    let smem_per_block = round_up(
        static_smem + arch.smem_reserved_per_block,
        arch.smem_alloc_unit,
    );
    let by_shared_memory = if smem_per_block > arch.smem_per_block + arch.smem_reserved_per_block {
        0
    } else {
        arch.smem_per_sm / smem_per_block
    };

    let blocks_per_sm = by_warps
        .min(by_blocks)
        .min(by_registers)
        .min(by_shared_memory);
    let limiter = if blocks_per_sm == by_warps {
        Limiter::Warps
    } else if blocks_per_sm == by_registers {
        Limiter::Registers
    } else if blocks_per_sm == by_shared_memory {
        Limiter::SharedMemory
    } else {
        Limiter::Blocks
    };
    let warps_per_sm = blocks_per_sm * warps_per_block;
    Occupancy {
        block_threads,
        blocks_per_sm,
        warps_per_sm,
        fraction: warps_per_sm as f64 / arch.max_warps_per_sm() as f64,
        limiter,
        by_warps,
        by_blocks,
        by_registers,
        by_shared_memory,
    }
}

/// Threads per block `launch.rs` launches kernel `name` with (`{op}_{f16,f32}`), or `None`
/// for a name it does not launch. Kept beside the occupancy rules because occupancy is a
/// property of (kernel, block size); `tests` check it against `launch.rs`.
pub fn launch_block_threads(name: &str) -> Option<u32> {
    Some(match name {
        // tensor-core tile: 4 warps in a 2x2 grid (`__launch_bounds__(128)`)
        "pointwise_f16" => 128,
        // SIMT tile: 16x16 threads (`__launch_bounds__(256)`)
        "pointwise_f32" => 256,
        // transformer.rs: the same GEMM tiles; LN_THREADS; ATT_THREADS (4 per query row)
        "linear_f16" => 128,
        "linear_f32" => 256,
        "layer_norm_f16" | "layer_norm_f32" => 128,
        "attention_f16" | "attention_f32" => 128,
        // block (32, 8)
        "spatial_mean_f16" | "spatial_mean_f32" => 256,
        // the 1-D grid-stride kernels: BLOCK_1D
        "preprocess_u8_f16"
        | "preprocess_u8_f32"
        | "conv2d_f16"
        | "conv2d_f32"
        | "depthwise2d_f16"
        | "depthwise2d_f32"
        | "avg_pool2d_f16"
        | "avg_pool2d_f32"
        | "temporal_causal_f16"
        | "temporal_causal_f32"
        | "cumulative_pool_f16"
        | "cumulative_pool_f32"
        | "channel_gate_f16"
        | "channel_gate_f32" => 256,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cases worked by hand with the calculator's rules (each number is checked in the
    /// comment), covering every limiter.
    #[test]
    fn calculator_cases() {
        // 32 regs x 256 threads on sm_80: 1024 regs/warp, 16 warps per sub-partition,
        // 64 warps = 8 blocks; warps also allow 8 → 100%, limited by warps.
        let o = occupancy(&SM_80, 32, 0, 256);
        assert_eq!((o.blocks_per_sm, o.warps_per_sm), (8, 64));
        assert_eq!(o.limiter, Limiter::Warps);
        assert!((o.fraction - 1.0).abs() < 1e-12);

        // 70 regs x 128 threads on sm_80: 2240 → 2304 regs/warp, 16384/2304 = 7 warps per
        // sub-partition, 28 warps = 7 blocks (smem: 164 KiB / 11264 = 14) → 28/64.
        let o = occupancy(&SM_80, 70, 10240, 128);
        assert_eq!((o.by_registers, o.by_shared_memory), (7, 14));
        assert_eq!(o.blocks_per_sm, 7);
        assert_eq!(o.limiter, Limiter::Registers);
        assert!((o.fraction - 28.0 / 64.0).abs() < 1e-12);

        // 48 regs x 256 threads on sm_86: 1536 regs/warp, 10 warps per sub-partition,
        // 40 warps = 5 blocks; warps allow 48/8 = 6 → 40/48.
        let o = occupancy(&SM_86, 48, 0, 256);
        assert_eq!((o.by_warps, o.by_registers, o.blocks_per_sm), (6, 5, 5));
        assert!((o.fraction - 40.0 / 48.0).abs() < 1e-12);

        // 40 KiB static smem x 32 threads on sm_86: 41984 B per block, 102400/41984 = 2.
        let o = occupancy(&SM_86, 16, 40 * 1024, 32);
        assert_eq!((o.blocks_per_sm, o.limiter), (2, Limiter::SharedMemory));

        // 32 threads, few regs, no smem on sm_89: 48 warp-limited blocks but 24 block cap.
        let o = occupancy(&SM_89, 16, 0, 32);
        assert_eq!((o.blocks_per_sm, o.limiter), (24, Limiter::Blocks));
        assert!((o.fraction - 24.0 / 48.0).abs() < 1e-12);

        // 255 regs x 1024 threads cannot launch: 8160 → 8192 regs/warp x 32 warps > 65536.
        let o = occupancy(&SM_90, 255, 0, 1024);
        assert_eq!(o.blocks_per_sm, 0);
        // more than 48 KiB of static shared memory cannot launch either
        assert_eq!(occupancy(&SM_90, 32, 49 * 1024, 128).blocks_per_sm, 0);
    }

    #[test]
    fn arch_lookup() {
        assert_eq!(ArchLimits::of("sm_89"), Some(SM_89));
        assert_eq!(ArchLimits::of("sm_75"), None);
        assert_eq!(ArchLimits::of("compute_80"), None);
        assert_eq!(SM_86.max_warps_per_sm(), 48);
    }

    /// `launch_block_threads` mirrors the launch configurations in `launch.rs` and
    /// `transformer.rs`; this reads those files' text so a change to a block size there
    /// fails here until the table (and so the occupancy report) follows.
    #[test]
    fn block_sizes_match_launch_rs() {
        let src = include_str!("launch.rs");
        for needle in [
            "const BLOCK_1D: u32 = 256;",
            "Precision::F16 => 128,",
            "Precision::F32 => 256,",
            "block_dim: (32, 8, 1),",
        ] {
            assert!(
                src.contains(needle),
                "launch.rs no longer contains `{needle}`: update launch_block_threads"
            );
        }
        let src = include_str!("transformer.rs");
        for needle in [
            "const LN_THREADS: u32 = 128;",
            "const ATT_THREADS: u32 = 128;",
            "Precision::F16 => 128,",
            "Precision::F32 => 256,",
        ] {
            assert!(
                src.contains(needle),
                "transformer.rs no longer contains `{needle}`: update launch_block_threads"
            );
        }
        for k in super::super::nvrtc::KERNEL_NAMES {
            assert!(launch_block_threads(k).is_some(), "{k} has no block size");
        }
    }
}
