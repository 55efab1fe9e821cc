//! criterion: the CPU kernels one at a time, on MoViNet-A0 layer shapes, single-threaded,
//! on every instruction set this CPU supports (and bf16 GEMMs where it has AVX-512 BF16),
//! so the ISA variants are compared in the same run. Throughput is reported in
//! multiply-adds (elements = MACs; the GEMMs' GMAC/s is criterion's "Gelem/s").
//!
//! `cargo bench -p vigil-kernels --bench cpu_kernels [-- FILTER]`, e.g. `-- gemm/` or
//! `-- avx512`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use vigil_kernels::cpu::{
    conv2d_on, depthwise2d_on, pointwise_packed, temporal_causal_on, GemmPrecision, Isa,
    PackedWeights,
};
use vigil_kernels::{Activation, Conv2dGeom};

fn values(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2654435761).max(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        })
        .collect()
}

fn one_thread() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a one-thread pool")
}

/// Every (label, isa, precision) to run: each supported ISA in fp32, plus bf16.
fn gemm_variants() -> Vec<(String, Isa, GemmPrecision)> {
    let mut v: Vec<_> = Isa::supported()
        .map(|i| (i.name().to_string(), i, GemmPrecision::F32))
        .collect();
    if Isa::detected().has_bf16() {
        v.push(("avx512-bf16".into(), Isa::Avx512, GemmPrecision::Bf16));
    }
    v
}

fn gemm(c: &mut Criterion) {
    let pool = one_thread();
    // (name, m, k, n): the int8 K600 model's 1x1 convolutions and dense layers
    for (name, m, k, n) in [
        ("b0-expand", 7396, 8, 24),
        ("b1l0-expand", 1849, 8, 80),
        ("b2l0-expand", 484, 32, 184),
        ("b3-expand", 121, 56, 184),
        ("b3-project", 121, 184, 56),
        ("b4-project", 36, 280, 104),
        ("head-dense1", 1, 480, 2048),
    ] {
        let mut group = c.benchmark_group(format!("gemm/{name}"));
        group
            .sample_size(20)
            .throughput(Throughput::Elements((m * k * n) as u64));
        let (x, w, bias) = (values(m * k, 1), values(n * k, 2), values(n, 3));
        let mut y = vec![0.0; m * n];
        for (label, isa, prec) in gemm_variants() {
            let Ok(packed) = PackedWeights::pack_for(isa, prec, &w, n, k) else {
                continue;
            };
            if packed.precision() != prec {
                continue; // too shallow for bf16: packed in fp32, already measured
            }
            group.bench_function(BenchmarkId::from_parameter(&label), |b| {
                pool.install(|| {
                    b.iter(|| {
                        pointwise_packed(&x, m, &packed, &bias, Activation::Relu6, None, &mut y)
                    })
                })
            });
        }
        group.finish();
    }
}

fn depthwise(c: &mut Criterion) {
    let pool = one_thread();
    // (name, input side, window, stride, channels)
    for (name, h, k, s, ch) in [
        ("b0-5x5s2", 86, 5, 2, 24),
        ("b1-3x3s1", 22, 3, 1, 80),
        ("b3-3x3s1", 11, 3, 1, 184),
        ("b4-5x5s1", 6, 5, 1, 280),
    ] {
        let g = Conv2dGeom::same(h, h, k, k, s);
        let mut group = c.benchmark_group(format!("depthwise/{name}"));
        group
            .sample_size(20)
            .throughput(Throughput::Elements((g.out_pixels() * ch * k * k) as u64));
        let (x, w, bias) = (values(h * h * ch, 4), values(k * k * ch, 5), values(ch, 6));
        let mut y = vec![0.0; g.out_pixels() * ch];
        for isa in Isa::supported() {
            group.bench_function(BenchmarkId::from_parameter(isa), |b| {
                pool.install(|| {
                    b.iter(|| {
                        depthwise2d_on(isa, &x, 1, &g, ch, &w, &bias, Activation::Relu6, &mut y)
                    })
                })
            });
        }
        group.finish();
    }
}

fn temporal(c: &mut Criterion) {
    let pool = one_thread();
    let (p, ch, kt) = (484, 80, 3);
    let mut group = c.benchmark_group("temporal/b1-22x22x80-kt3");
    group
        .sample_size(20)
        .throughput(Throughput::Elements((p * ch * kt) as u64));
    let (cur, w, bias) = (values(p * ch, 7), values(kt * ch, 8), values(ch, 9));
    let mut state = values((kt - 1) * p * ch, 10);
    let mut y = vec![0.0; p * ch];
    for isa in Isa::supported() {
        let mut t = 0u64;
        group.bench_function(BenchmarkId::from_parameter(isa), |b| {
            pool.install(|| {
                b.iter(|| {
                    t += 1;
                    temporal_causal_on(
                        isa,
                        &cur,
                        p,
                        ch,
                        kt,
                        &w,
                        &bias,
                        Activation::Relu6,
                        &[0],
                        &[t],
                        &mut state,
                        &mut y,
                    )
                })
            })
        });
    }
    group.finish();
}

fn stem(c: &mut Criterion) {
    let pool = one_thread();
    let g = Conv2dGeom::same(172, 172, 3, 3, 2);
    let (cin, cout) = (3, 8);
    let mut group = c.benchmark_group("stem/172-3x3s2-3to8");
    group.sample_size(20).throughput(Throughput::Elements(
        (g.out_pixels() * 9 * cin * cout) as u64,
    ));
    let (x, w, bias) = (
        values(172 * 172 * cin, 11),
        values(9 * cin * cout, 12),
        values(cout, 13),
    );
    let mut y = vec![0.0; g.out_pixels() * cout];
    for isa in Isa::supported() {
        group.bench_function(BenchmarkId::from_parameter(isa), |b| {
            pool.install(|| {
                b.iter(|| {
                    conv2d_on(
                        isa,
                        &x,
                        1,
                        &g,
                        cin,
                        &w,
                        &bias,
                        cout,
                        Activation::HardSwish,
                        &mut y,
                    )
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, gemm, depthwise, temporal, stem);
criterion_main!(benches);
