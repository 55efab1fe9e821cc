//! Warm CLIP / X-CLIP forward passes allocate nothing: a counting global allocator
//! around repeated calls with the same (or a smaller) batch in a grown workspace.
//! (Tokenizing allocates — the tokenizer crate lower-cases into a new string — but
//! prompts are tokenized once per prompt set, not per frame.)

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::shared;
use vigil_engine::clip::{
    ClipModel, ClipWorkspace, ReferenceFile, RgbFrame, XClipModel, XClipWorkspace,
};

struct Counting;
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn allocations(f: impl FnOnce()) -> usize {
    let before = ALLOCS.load(Ordering::SeqCst);
    f();
    ALLOCS.load(Ordering::SeqCst) - before
}

#[test]
fn warm_calls_do_not_allocate() {
    let dir = shared().join("fixtures/clip");
    // CLIP: pixel_values, frames (with preprocessing) and prompts
    let m = ClipModel::load(&dir.join("clip_tiny"), 2).unwrap();
    let r = ReferenceFile::load(&dir.join("clip_tiny_reference.safetensors")).unwrap();
    let (pix, shape) = r.f32("pixel_values").unwrap();
    let (frames, fs) = r.u8("frames_u8").unwrap();
    let (h, w) = (fs[1], fs[2]);
    let frames: Vec<RgbFrame> = (0..fs[0])
        .map(|i| RgbFrame::packed(&frames[i * h * w * 3..(i + 1) * h * w * 3], w, h))
        .collect();
    let prompts = r.prompts().unwrap();
    let ids = m.tokenizer.encode_batch(&prompts);
    let mut ws = ClipWorkspace::default();
    let per = pix.len() / shape[0];
    for _ in 0..2 {
        m.encode_pixels(pix, shape[0], &mut ws).unwrap();
        m.encode_frames(&frames, &mut ws).unwrap();
        m.encode_ids(&ids, prompts.len(), &mut ws).unwrap();
    }
    let n = allocations(|| {
        for _ in 0..3 {
            m.encode_pixels(pix, shape[0], &mut ws).unwrap();
            m.encode_pixels(&pix[..2 * per], 2, &mut ws).unwrap();
            m.encode_frames(&frames[..3], &mut ws).unwrap();
            m.encode_ids(&ids[..2 * 77], 2, &mut ws).unwrap();
        }
    });
    assert_eq!(n, 0, "warm CLIP calls allocated {n} times");

    // X-CLIP: clips and prompt conditioning
    let m = XClipModel::load(&dir.join("xclip_tiny"), 2).unwrap();
    let r = ReferenceFile::load(&dir.join("xclip_tiny_reference.safetensors")).unwrap();
    let (pix, shape) = r.f32("pixel_values").unwrap();
    let clips = shape[0];
    let mut ws = XClipWorkspace::default();
    let visual = m
        .encode_pixels(pix, clips, &mut ws)
        .unwrap()
        .prompt_visual
        .to_vec();
    let text = m
        .encode_ids(&ids, prompts.len(), &mut ws)
        .unwrap()
        .projected
        .to_vec();
    m.condition_text(&visual, &text, clips, prompts.len(), &mut ws)
        .unwrap();
    let n = allocations(|| {
        for _ in 0..3 {
            m.encode_pixels(pix, clips, &mut ws).unwrap();
            m.encode_ids(&ids, prompts.len(), &mut ws).unwrap();
            m.condition_text(&visual, &text, clips, prompts.len(), &mut ws)
                .unwrap();
        }
    });
    assert_eq!(n, 0, "warm X-CLIP calls allocated {n} times");
}
