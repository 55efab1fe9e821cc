//! X-CLIP against the shared `transformers` references (`fixtures/clip/xclip_tiny`):
//! from `pixel_values` and `input_ids`, every intermediate (cross-frame encoder, MIT,
//! prompt generator) and `logits_per_video` within relative L2 1e-4 (float32; measured
//! errors are printed); from `frames_u8` through Vigil's BILINEAR preprocessing,
//! `pixel_values` bit-exact.

mod common;

use std::path::PathBuf;

use common::{rel_l2, shared};
use vigil_engine::clip::{ReferenceFile, RgbFrame, SlidingClip, XClipModel, XClipWorkspace};

const BOUND: f64 = 1e-4;

fn dir() -> PathBuf {
    shared().join("fixtures/clip")
}

fn load() -> (XClipModel, ReferenceFile) {
    let m = XClipModel::load(&dir().join("xclip_tiny"), 2).expect("load xclip_tiny");
    let r =
        ReferenceFile::load(&dir().join("xclip_tiny_reference.safetensors")).expect("reference");
    (m, r)
}

fn check(name: &str, got: &[f32], r: &ReferenceFile) {
    let (want, _) = r.f32(name).expect(name);
    let e = rel_l2(got, want);
    println!("{name:<16} rel L2 {e:.2e}");
    assert!(
        e <= BOUND,
        "{name}: relative L2 error {e:.3e} > {BOUND:.0e}"
    );
}

#[test]
fn xclip_matches_transformers_from_pixel_values() {
    let (m, r) = load();
    let (pix, shape) = r.f32("pixel_values").unwrap();
    assert_eq!(shape[1], m.num_frames());
    let clips = shape[0];
    let (ids, ishape) = r.ids("input_ids").unwrap();
    let p = ishape[0];
    assert_eq!(m.tokenizer.encode_batch(&r.prompts().unwrap()), ids);
    let mut ws = XClipWorkspace::default();
    let v = m.encode_pixels(pix, clips, &mut ws).unwrap();
    check("frame_pooled", v.frame_pooled, &r);
    check("frame_embeds", v.frame_embeds, &r);
    check("video_pooled", v.video_pooled, &r);
    check("video_embeds", v.video_embeds, &r);
    check("prompt_visual", v.prompt_visual, &r);
    let (video_embeds, prompt_visual) = (v.video_embeds.to_vec(), v.prompt_visual.to_vec());
    let t = m.encode_ids(&ids, p, &mut ws).unwrap();
    check("text_pooled", t.pooled, &r);
    check("text_projected", t.projected, &r);
    let projected = t.projected.to_vec();
    let c = m
        .condition_text(&prompt_visual, &projected, clips, p, &mut ws)
        .unwrap();
    check("prompt_delta", c.prompt_delta, &r);
    check("text_embeds", c.text_embeds, &r);
    let mut logits = vec![f32::NAN; clips * p];
    m.logits(&video_embeds, c.text_embeds, clips, p, &mut logits);
    check("logits_per_video", &logits, &r);
}

#[test]
fn xclip_clips_are_independent_in_a_batch() {
    // the second clip alone gives the batch's second row: message tokens never cross clips
    let (m, r) = load();
    let (pix, shape) = r.f32("pixel_values").unwrap();
    let per_clip = pix.len() / shape[0];
    let mut ws = XClipWorkspace::default();
    let both = m
        .encode_pixels(pix, 2, &mut ws)
        .unwrap()
        .video_embeds
        .to_vec();
    let one = m
        .encode_pixels(&pix[per_clip..], 1, &mut ws)
        .unwrap()
        .video_embeds
        .to_vec();
    let d = one.len();
    assert!(rel_l2(&one, &both[d..]) <= 1e-6);
}

#[test]
fn xclip_preprocessing_from_frames_is_exact() {
    let (m, r) = load();
    let (frames, fshape) = r.u8("frames_u8").unwrap();
    let (n, h, w) = (fshape[0] * fshape[1], fshape[2], fshape[3]);
    let (want, _) = r.f32("pixel_values").unwrap();
    let frames: Vec<RgbFrame> = (0..n)
        .map(|i| RgbFrame::packed(&frames[i * h * w * 3..(i + 1) * h * w * 3], w, h))
        .collect();
    let per = m.preprocessor.output_len();
    let mut pws = Default::default();
    let mut got = vec![f32::NAN; n * per];
    for (f, out) in frames.iter().zip(got.chunks_exact_mut(per)) {
        m.preprocessor.run(*f, &mut pws, out).unwrap();
    }
    let worst = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    println!("pixel_values from frames_u8: max |diff| {worst:e}");
    assert_eq!(worst, 0.0, "pixel_values differ from Pillow's");
    let mut ws = XClipWorkspace::default();
    let v = m.encode_frames(&frames, &mut ws).unwrap();
    check("video_embeds", v.video_embeds, &r);
}

#[test]
fn sliding_clips_score_like_logits_per_video() {
    // a stream's frames through a sliding clip (preprocessed on arrival) give the
    // reference clip's pixel_values, and score_clips gives its logits_per_video row
    let (m, r) = load();
    let (frames, fs) = r.u8("frames_u8").unwrap();
    let (fr, h, w) = (fs[1], fs[2], fs[3]);
    let frame = |i: usize| RgbFrame::packed(&frames[i * h * w * 3..(i + 1) * h * w * 3], w, h);
    let per = m.preprocessor.output_len();
    let (pix, _) = r.f32("pixel_values").unwrap();
    let mut pws = Default::default();
    let mut clip = SlidingClip::new(per, fr, 4).unwrap();
    let mut out = vec![f32::NAN; fr * per];
    let mut due = Vec::new();
    for i in 0..2 * fr {
        if clip
            .push(&m.preprocessor, frame(i), i as f64, &mut pws)
            .unwrap()
        {
            due.push(i);
            if i == fr - 1 {
                assert_eq!(clip.write_clip(&mut out), Some((0.0, (fr - 1) as f64)));
                assert_eq!(out, pix[..fr * per], "clip 0 differs from pixel_values");
            }
        }
    }
    // full after 8 frames, then every 4: frames 7, 11, 15
    assert_eq!(due, vec![fr - 1, fr + 3, 2 * fr - 1]);
    assert_eq!(
        clip.write_clip(&mut out),
        Some((fr as f64, (2 * fr - 1) as f64))
    );
    assert_eq!(out, pix[fr * per..2 * fr * per]);

    let prompts = r.prompts().unwrap();
    let set = m.prompt_set(&prompts[..3], &prompts[3..]).unwrap();
    let mut ws = XClipWorkspace::default();
    m.encode_pixels(pix, 2, &mut ws).unwrap();
    let (mut logits, mut probs) = (vec![f32::NAN; 10], vec![f32::NAN; 10]);
    m.score_clips(2, &set, &mut ws, &mut logits, &mut probs)
        .unwrap();
    check("logits_per_video", &logits, &r);
    for row in probs.chunks(5) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
}
