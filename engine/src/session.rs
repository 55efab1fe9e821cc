//! What a stream carries from frame to frame.
//!
//! - [`StreamBuffer`]: for one causal temporal conv, the stream's ring of its last
//!   `kt - 1` inputs (`[kt - 1, pixels, c]`). Frame `f` sits at ring position
//!   `f % (kt - 1)`, so advancing a stream never shifts or copies the ring.
//! - [`CumulativePool`]: for one causal global pool (SE blocks and the head), the running
//!   channel sum; the frame count is [`StreamState::frames`], shared by all layers since
//!   they advance together.
//! - [`StreamState`]: all of one stream's buffers and pools.
//! - [`SlotPool`]: the CPU backend's slots, one [`StreamState`] each. A step moves the
//!   batch's states out (their buffers stay where they are: only the small headers move),
//!   runs, and puts them back.
//!
//! A session is one slot; opening or resetting it zeroes its state.

use crate::model::{Model, StreamBufferShape};

/// One temporal layer's ring for one stream.
#[derive(Debug, Clone)]
pub struct StreamBuffer {
    pub shape: StreamBufferShape,
    pub data: Vec<f32>,
}

/// One cumulative pool's running channel sums for one stream.
#[derive(Debug, Clone)]
pub struct CumulativePool {
    pub sums: Vec<f32>,
}

/// Everything one stream carries.
#[derive(Debug, Clone)]
pub struct StreamState {
    pub buffers: Vec<StreamBuffer>,
    pub pools: Vec<CumulativePool>,
    /// frames processed since the session was opened or reset
    pub frames: u64,
}

impl StreamState {
    /// A zero state for `model`.
    pub fn new(model: &Model) -> StreamState {
        StreamState {
            buffers: model
                .stream_buffers
                .iter()
                .map(|&shape| StreamBuffer {
                    shape,
                    data: vec![0.0; shape.values()],
                })
                .collect(),
            pools: model
                .cumulative_pools
                .iter()
                .map(|&c| CumulativePool { sums: vec![0.0; c] })
                .collect(),
            frames: 0,
        }
    }

    pub fn reset(&mut self) {
        self.buffers.iter_mut().for_each(|b| b.data.fill(0.0));
        self.pools.iter_mut().for_each(|p| p.sums.fill(0.0));
        self.frames = 0;
    }

    /// Float values carried.
    pub fn values(&self) -> usize {
        self.buffers.iter().map(|b| b.data.len()).sum::<usize>()
            + self.pools.iter().map(|p| p.sums.len()).sum::<usize>()
    }

    /// Bytes carried (values as f32 plus the frame count).
    pub fn bytes(&self) -> usize {
        self.values() * std::mem::size_of::<f32>() + std::mem::size_of::<u64>()
    }
}

/// Slots of stream states, `None` where no session is open.
#[derive(Debug, Default)]
pub struct SlotPool {
    slots: Vec<Option<StreamState>>,
}

impl SlotPool {
    /// Give `slot` a fresh zero state.
    pub fn open(&mut self, slot: usize, model: &Model) {
        if slot >= self.slots.len() {
            self.slots.resize_with(slot + 1, || None);
        }
        self.slots[slot] = Some(StreamState::new(model));
    }

    /// Zero an open slot; false when the slot is not open.
    pub fn reset(&mut self, slot: usize) -> bool {
        match self.slots.get_mut(slot) {
            Some(Some(s)) => {
                s.reset();
                true
            }
            _ => false,
        }
    }

    /// Drop a slot's state (its memory is freed).
    pub fn close(&mut self, slot: usize) {
        if let Some(s) = self.slots.get_mut(slot) {
            *s = None;
        }
    }

    pub fn is_open(&self, slot: usize) -> bool {
        matches!(self.slots.get(slot), Some(Some(_)))
    }

    /// Move a slot's state out for a step.
    pub fn take(&mut self, slot: usize) -> Option<StreamState> {
        self.slots.get_mut(slot).and_then(Option::take)
    }

    /// Put a state back after a step.
    pub fn put(&mut self, slot: usize, state: StreamState) {
        self.slots[slot] = Some(state);
    }
}
