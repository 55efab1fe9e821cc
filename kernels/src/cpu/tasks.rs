//! How the CPU twins split work across rayon tasks: [`task_rows`] sizes row blocks for
//! the caller's pool, [`for_each_task`] / [`for_each_chunk`] run them (in order, without
//! rayon, in a one-thread pool), [`SendPtr`] hands disjoint output tiles to tasks.

use rayon::prelude::*;

/// Pointer wrapper to hand disjoint output tiles to rayon tasks.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub(crate) *mut f32);
// SAFETY: only used to write disjoint tiles of one output buffer, see `pointwise`.
unsafe impl Send for SendPtr {}
// SAFETY: as above; tasks never touch the same element.
unsafe impl Sync for SendPtr {}

/// How many tasks to aim for per worker thread (load balance vs. scheduling cost).
pub(crate) const TASKS_PER_THREAD: usize = 4;

pub(crate) fn task_rows(total: usize, min_rows: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    total
        .div_ceil(threads * TASKS_PER_THREAD)
        .max(min_rows)
        .max(1)
}

/// Run `f(0..n)`: as rayon tasks, or in a plain loop when the pool has one thread (no
/// scheduling cost on the single-stream latency path).
pub(crate) fn for_each_task(n: usize, f: impl Fn(usize) + Send + Sync) {
    if n <= 1 || rayon::current_num_threads() == 1 {
        (0..n).for_each(f);
    } else {
        (0..n).into_par_iter().for_each(f);
    }
}

/// Run `f(i, chunk)` over the `len`-long chunks of `y` (output rows): as rayon tasks,
/// or in a plain loop when the pool has one thread.
pub(crate) fn for_each_chunk(
    y: &mut [f32],
    len: usize,
    f: impl Fn(usize, &mut [f32]) + Send + Sync,
) {
    if rayon::current_num_threads() == 1 {
        y.chunks_mut(len).enumerate().for_each(|(i, ch)| f(i, ch));
    } else {
        y.par_chunks_mut(len)
            .enumerate()
            .for_each(|(i, ch)| f(i, ch));
    }
}
