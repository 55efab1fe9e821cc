//! What a stream carries from frame to frame, stored in slot pools.
//!
//! - [`StreamBuffer`]: for one causal temporal conv, every slot's ring of its last
//!   `kt - 1` inputs (`[slots, kt - 1, pixels, c]`). Frame `f` sits at ring position
//!   `f % (kt - 1)`, so advancing a stream never shifts or copies the ring.
//! - [`CumulativePool`]: for one causal global pool (SE blocks and the head), every
//!   slot's running channel sum (`[slots, c]`); the frame count is the slot's
//!   [`SlotPool::frames`] entry, shared by all layers since they advance together.
//! - [`SlotPool`]: all of a model's stream buffers and pools plus per-slot frame counts.
//!
//! A session is one slot of this pool; opening or resetting it zeroes its state.

use crate::model::{Model, StreamBufferShape};

/// One temporal layer's rings for every slot.
#[derive(Debug, Clone)]
pub struct StreamBuffer {
    pub shape: StreamBufferShape,
    pub data: Vec<f32>,
}

/// One cumulative pool's running sums for every slot.
#[derive(Debug, Clone)]
pub struct CumulativePool {
    pub c: usize,
    pub sums: Vec<f32>,
}

/// The carried state of every slot.
#[derive(Debug, Clone)]
pub struct SlotPool {
    pub buffers: Vec<StreamBuffer>,
    pub pools: Vec<CumulativePool>,
    /// frames each slot has processed since it was opened or reset
    pub frames: Vec<u64>,
    open: Vec<bool>,
}

impl SlotPool {
    pub fn new(model: &Model) -> SlotPool {
        SlotPool {
            buffers: model.stream_buffers.iter().map(|&shape| StreamBuffer { shape, data: Vec::new() }).collect(),
            pools: model.cumulative_pools.iter().map(|&c| CumulativePool { c, sums: Vec::new() }).collect(),
            frames: Vec::new(),
            open: Vec::new(),
        }
    }

    /// Slots the pool has room for.
    pub fn capacity(&self) -> usize {
        self.frames.len()
    }

    /// Float values carried per slot.
    pub fn values_per_slot(&self) -> usize {
        self.buffers.iter().map(|b| b.shape.values()).sum::<usize>() + self.pools.iter().map(|p| p.c).sum::<usize>()
    }

    /// Give `slot` a zero state, growing the pool (doubling) when needed.
    pub fn open(&mut self, slot: usize) {
        if slot >= self.capacity() {
            let cap = (slot + 1).max(self.capacity() * 2).max(4);
            for b in &mut self.buffers {
                b.data.resize(cap * b.shape.values(), 0.0);
            }
            for p in &mut self.pools {
                p.sums.resize(cap * p.c, 0.0);
            }
            self.frames.resize(cap, 0);
            self.open.resize(cap, false);
        }
        self.open[slot] = true;
        self.reset(slot);
    }

    /// Zero a slot's state.
    pub fn reset(&mut self, slot: usize) {
        for b in &mut self.buffers {
            let n = b.shape.values();
            b.data[slot * n..(slot + 1) * n].fill(0.0);
        }
        for p in &mut self.pools {
            p.sums[slot * p.c..(slot + 1) * p.c].fill(0.0);
        }
        self.frames[slot] = 0;
    }

    pub fn close(&mut self, slot: usize) {
        if let Some(o) = self.open.get_mut(slot) {
            *o = false;
        }
    }

    pub fn is_open(&self, slot: usize) -> bool {
        self.open.get(slot).copied().unwrap_or(false)
    }
}
