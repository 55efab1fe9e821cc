//! [`FrameRing`]: one stream's bounded, lock-free hand-over of decoded frames from a
//! GStreamer streaming thread to the scheduler.
//!
//! Two [`ArrayQueue`]s hold the same fixed set of [`Frame`] buffers, allocated once: `filled`
//! (oldest first, waiting for the engine) and `free` (ready to be written). Buffers move
//! between them and are never reallocated, so the frame path does not allocate.
//!
//! The [`DropPolicy`] says what happens when the engine is behind:
//! - [`DropPolicy::DropOldest`] (live sources): the producer takes the oldest waiting frame
//!   back, overwrites it, and counts a drop — a live camera never blocks and memory stays flat.
//! - [`DropPolicy::Block`] (files): the producer waits (short sleeps, no lock) until the
//!   scheduler recycles a buffer — a file is processed completely, as fast as the engine goes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam::queue::ArrayQueue;
use crossbeam::sync::Unparker;

/// One decoded, model-sized RGB frame and where it came from.
#[derive(Debug)]
pub struct Frame {
    data: Box<[u8]>,
    /// Presentation timestamp in nanoseconds (0 when the buffer had none).
    pub pts_ns: u64,
    /// Index of this frame among the frames the resampler kept (gaps = drops).
    pub seq: u64,
    /// Start of the latency measurement: the capture time (by the pipeline clock) for a
    /// live source, the moment the frame reached the appsink for a file.
    pub arrived: Instant,
    /// Connection generation: changes when the source reconnected or looped.
    pub generation: u64,
}

impl Frame {
    fn new(bytes: usize) -> Frame {
        Frame {
            data: vec![0u8; bytes].into_boxed_slice(),
            pts_ns: 0,
            seq: 0,
            arrived: Instant::now(),
            generation: 0,
        }
    }
    /// The RGB bytes (H*W*3, tightly packed).
    pub fn data(&self) -> &[u8] {
        &self.data
    }
    /// The RGB bytes, for the producer to fill.
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }
}

/// What a full ring does with the next frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropPolicy {
    /// Overwrite the oldest waiting frame and count a drop (live sources).
    DropOldest,
    /// Wait until the consumer recycles a buffer (files).
    Block,
}

/// Bounded frame hand-over between one producer and one consumer.
pub struct FrameRing {
    filled: ArrayQueue<Frame>,
    free: ArrayQueue<Frame>,
    policy: DropPolicy,
    frame_bytes: usize,
    published: AtomicU64,
    dropped: AtomicU64,
    closed: AtomicBool,
    consumer: Option<Unparker>,
    epoch: Instant,
    /// when the last frame was published, in ns since `epoch` (0 = never)
    last_publish_ns: AtomicU64,
}

impl FrameRing {
    /// A ring of `capacity + 2` buffers of `frame_bytes` each: up to `capacity` waiting
    /// frames while one is being written and one read (more wait when the consumer holds
    /// none).
    /// `consumer` is woken after every published frame.
    pub fn new(
        capacity: usize,
        frame_bytes: usize,
        policy: DropPolicy,
        consumer: Option<Unparker>,
    ) -> FrameRing {
        let capacity = capacity.max(1);
        let total = capacity + 2;
        let free = ArrayQueue::new(total);
        for _ in 0..total {
            // the queue was sized for exactly these buffers, so this cannot fail
            let _ = free.push(Frame::new(frame_bytes));
        }
        FrameRing {
            // room for every buffer: a publish never fails, whatever the consumer holds
            filled: ArrayQueue::new(total),
            free,
            policy,
            frame_bytes,
            published: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            consumer,
            epoch: Instant::now(),
            last_publish_ns: AtomicU64::new(0),
        }
    }

    /// Bytes of one frame.
    pub fn frame_bytes(&self) -> usize {
        self.frame_bytes
    }

    /// The ring's policy.
    pub fn policy(&self) -> DropPolicy {
        self.policy
    }

    /// Producer: a buffer to write the next frame into. Under [`DropPolicy::DropOldest`]
    /// this may evict the oldest waiting frame (counted as dropped). Under
    /// [`DropPolicy::Block`] it waits for the consumer; it returns `None` when the ring is
    /// closed or `abort` becomes true while waiting.
    pub fn acquire(&self, abort: &AtomicBool) -> Option<Frame> {
        let mut spins = 0u32;
        loop {
            if let Some(f) = self.free.pop() {
                return Some(f);
            }
            if self.closed.load(Ordering::Acquire) || abort.load(Ordering::Acquire) {
                return None;
            }
            if self.policy == DropPolicy::DropOldest {
                if let Some(f) = self.filled.pop() {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    return Some(f);
                }
                // the consumer holds the only other buffers for a moment
                spins += 1;
                if spins < 64 {
                    std::hint::spin_loop();
                    continue;
                }
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Producer: hand a written frame to the consumer.
    pub fn publish(&self, frame: Frame) {
        match self.filled.push(frame) {
            Ok(()) => {
                let t = self.epoch.elapsed().as_nanos() as u64;
                self.last_publish_ns.store(t.max(1), Ordering::Release);
                self.published.fetch_add(1, Ordering::Release);
            }
            Err(frame) => {
                // cannot happen with one producer (buffers = capacity + 2), but never lose a buffer
                self.dropped.fetch_add(1, Ordering::Relaxed);
                let _ = self.free.push(frame);
            }
        }
        if let Some(u) = &self.consumer {
            u.unpark();
        }
    }

    /// Producer: give back a buffer that was acquired but not published.
    pub fn release(&self, frame: Frame) {
        let _ = self.free.push(frame);
    }

    /// Consumer: the oldest waiting frame.
    pub fn pop(&self) -> Option<Frame> {
        self.filled.pop()
    }

    /// Consumer: is a frame waiting?
    pub fn has_frame(&self) -> bool {
        !self.filled.is_empty()
    }

    /// Consumer: return a frame's buffer for reuse.
    pub fn recycle(&self, frame: Frame) {
        let _ = self.free.push(frame);
    }

    /// Drop every waiting frame (counted as dropped) and say how many there were.
    pub fn clear(&self) -> u64 {
        let mut n = 0;
        while let Some(f) = self.filled.pop() {
            let _ = self.free.push(f);
            n += 1;
        }
        self.dropped.fetch_add(n, Ordering::Relaxed);
        n
    }

    /// When the producer last published a frame (`None` before the first).
    pub fn last_publish(&self) -> Option<Instant> {
        match self.last_publish_ns.load(Ordering::Acquire) {
            0 => None,
            ns => Some(self.epoch + Duration::from_nanos(ns)),
        }
    }

    /// Is the ring closed?
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Stop producers from waiting; later `acquire` calls return `None` once no buffer is free.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// Frames handed to the consumer so far.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Acquire)
    }

    /// Frames overwritten before the consumer saw them.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn drop_oldest_keeps_newest_and_counts() {
        let ring = FrameRing::new(2, 4, DropPolicy::DropOldest, None);
        let abort = AtomicBool::new(false);
        for seq in 0..10u64 {
            let mut f = ring.acquire(&abort).unwrap();
            f.seq = seq;
            ring.publish(f);
        }
        // 4 buffers and no reader: the newest 4 wait, the rest were overwritten
        let got: Vec<Frame> = std::iter::from_fn(|| ring.pop()).collect();
        assert_eq!(
            got.iter().map(|f| f.seq).collect::<Vec<_>>(),
            vec![6, 7, 8, 9]
        );
        assert_eq!(ring.dropped(), 6);
        got.into_iter().for_each(|f| ring.recycle(f));
    }

    #[test]
    fn block_waits_for_consumer_and_loses_nothing() {
        let ring = Arc::new(FrameRing::new(2, 16, DropPolicy::Block, None));
        let abort = Arc::new(AtomicBool::new(false));
        let producer = {
            let ring = ring.clone();
            let abort = abort.clone();
            std::thread::spawn(move || {
                for seq in 0..500u64 {
                    let mut f = ring.acquire(&abort).unwrap();
                    f.seq = seq;
                    f.data_mut()[0] = seq as u8;
                    ring.publish(f);
                }
            })
        };
        let mut next = 0u64;
        while next < 500 {
            if let Some(f) = ring.pop() {
                assert_eq!(f.seq, next);
                assert_eq!(f.data()[0], next as u8);
                next += 1;
                ring.recycle(f);
            } else {
                std::thread::yield_now();
            }
        }
        producer.join().unwrap();
        assert_eq!(ring.dropped(), 0);
        assert_eq!(ring.published(), 500);
    }

    #[test]
    fn block_acquire_aborts() {
        let ring = FrameRing::new(1, 4, DropPolicy::Block, None);
        let abort = AtomicBool::new(false);
        let held: Vec<Frame> = (0..3).map(|_| ring.acquire(&abort).unwrap()).collect();
        abort.store(true, Ordering::Release);
        assert!(ring.acquire(&abort).is_none());
        for f in held {
            ring.release(f);
        }
    }
}
