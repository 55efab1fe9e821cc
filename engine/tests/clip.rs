//! CLIP against the shared `transformers` references (`fixtures/clip`, tiny random-weight
//! model with the real key layout, vocabulary and 224/32 geometry): token ids equal;
//! from `pixel_values` and `input_ids`, every intermediate and output tensor within
//! relative L2 1e-4 (float32; measured errors are printed); from `frames_u8` through
//! Vigil's own preprocessing, `pixel_values` bit-exact.

mod common;

use std::path::PathBuf;

use common::{rel_l2, shared};
use vigil_engine::clip::{ClipModel, ClipWorkspace, ReferenceFile, RgbFrame};

const BOUND: f64 = 1e-4;

fn dir() -> PathBuf {
    shared().join("fixtures/clip")
}

fn load() -> (ClipModel, ReferenceFile) {
    let m = ClipModel::load(&dir().join("clip_tiny"), 2).expect("load clip_tiny");
    let r = ReferenceFile::load(&dir().join("clip_tiny_reference.safetensors")).expect("reference");
    (m, r)
}

fn check(name: &str, got: &[f32], r: &ReferenceFile) {
    let (want, _) = r.f32(name).expect(name);
    let e = rel_l2(got, want);
    println!("{name:<18} rel L2 {e:.2e}");
    assert!(
        e <= BOUND,
        "{name}: relative L2 error {e:.3e} > {BOUND:.0e}"
    );
}

#[test]
fn tokenizer_ids_equal_transformers() {
    let (m, r) = load();
    let prompts = r.prompts().expect("prompts in metadata");
    let (want, shape) = r.ids("input_ids").unwrap();
    assert_eq!(shape, &[prompts.len(), 77]);
    assert_eq!(m.tokenizer.encode_batch(&prompts), want);
    // the attention mask's ones are BOS..=EOT
    let (mask, _) = r.ids("attention_mask").unwrap();
    let mut row = Vec::new();
    for (i, p) in prompts.iter().enumerate() {
        row.clear();
        let real = m.tokenizer.encode_into(p, &mut row);
        assert_eq!(
            mask[i * 77..(i + 1) * 77]
                .iter()
                .filter(|&&v| v == 1)
                .count(),
            real
        );
    }
}

#[test]
fn tokenizer_truncates_like_transformers() {
    let (m, _) = load();
    let long = "a very long prompt ".repeat(40);
    let mut row = Vec::new();
    assert_eq!(m.tokenizer.encode_into(&long, &mut row), 77);
    assert_eq!(row.len(), 77);
    assert_eq!(row[0], 49406);
    assert_eq!(row[76], 49407);
    assert!(row[1..76].iter().all(|&t| t != 49407));
}

#[test]
fn clip_matches_transformers_from_pixel_values() {
    let (m, r) = load();
    let (pix, shape) = r.f32("pixel_values").unwrap();
    let n = shape[0];
    let (ids, ishape) = r.ids("input_ids").unwrap();
    let p = ishape[0];
    let mut ws = ClipWorkspace::default();
    let img = m.encode_pixels(pix, n, &mut ws).unwrap();
    check("vision_pooled", img.pooled, &r);
    check("image_embeds", img.embeds, &r);
    let image_embeds = img.embeds.to_vec();
    let txt = m.encode_ids(&ids, p, &mut ws).unwrap();
    check("text_pooled", txt.pooled, &r);
    check("text_embeds", txt.embeds, &r);
    let mut logits = vec![f32::NAN; n * p];
    m.logits(&image_embeds, txt.embeds, &mut logits);
    check("logits_per_image", &logits, &r);
}

#[test]
fn clip_batches_and_warm_calls_agree() {
    // one image at a time (as a single stream would) gives the batch's embeddings, and a
    // warm workspace gives the same as a fresh one
    let (m, r) = load();
    let (pix, shape) = r.f32("pixel_values").unwrap();
    let (n, per) = (shape[0], pix.len() / shape[0]);
    let mut ws = ClipWorkspace::default();
    let all = m.encode_pixels(pix, n, &mut ws).unwrap().embeds.to_vec();
    for i in (0..n).rev() {
        let one = m
            .encode_pixels(&pix[i * per..(i + 1) * per], 1, &mut ws)
            .unwrap()
            .embeds
            .to_vec();
        let d = one.len();
        assert!(rel_l2(&one, &all[i * d..(i + 1) * d]) <= 1e-6, "image {i}");
    }
}

#[test]
fn preprocessing_from_frames_is_exact() {
    // Pillow's fixed-point BICUBIC, crop and normalisation reproduced bit for bit
    let (m, r) = load();
    let (frames, fshape) = r.u8("frames_u8").unwrap();
    let (n, h, w) = (fshape[0], fshape[1], fshape[2]);
    let (want, _) = r.f32("pixel_values").unwrap();
    let per = m.preprocessor.output_len();
    let mut ws = Default::default();
    let mut got = vec![f32::NAN; n * per];
    for i in 0..n {
        let f = RgbFrame::packed(&frames[i * h * w * 3..(i + 1) * h * w * 3], w, h);
        m.preprocessor
            .run(f, &mut ws, &mut got[i * per..(i + 1) * per])
            .unwrap();
    }
    let worst = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    println!("pixel_values from frames_u8: max |diff| {worst:e}");
    assert_eq!(worst, 0.0, "pixel_values differ from Pillow's");
    // and the embeddings from frames equal those from pixel_values
    let frames: Vec<RgbFrame> = (0..n)
        .map(|i| RgbFrame::packed(&frames[i * h * w * 3..(i + 1) * h * w * 3], w, h))
        .collect();
    let mut cws = ClipWorkspace::default();
    let from_frames = m.encode_frames(&frames, &mut cws).unwrap().embeds.to_vec();
    check("image_embeds", &from_frames, &r);
}

#[test]
fn prompt_sets_score_like_logits_per_image() {
    // a window of one frame scores exactly like logits_per_image's row
    let (m, r) = load();
    let prompts = r.prompts().unwrap();
    let set = m.prompt_set(&prompts[..4], &prompts[4..]).unwrap();
    assert_eq!((set.len(), set.labels), (5, 4));
    let (pix, shape) = r.f32("pixel_values").unwrap();
    let per = pix.len() / shape[0];
    let mut ws = ClipWorkspace::default();
    let e = m
        .encode_pixels(&pix[per..2 * per], 1, &mut ws)
        .unwrap()
        .embeds
        .to_vec();
    let mut stream = vigil_engine::clip::ZeroShotStream::new(&set, 4, 4.0);
    let w = stream.push(0.0, &e, &set).unwrap();
    let (want, _) = r.f32("logits_per_image").unwrap();
    let err = rel_l2(w.logits, &want[5..10]);
    assert!(
        err <= BOUND,
        "window logits vs logits_per_image row 1: {err:.2e}"
    );
    assert!((w.probs.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    assert!(m.prompt_set(&["a dog", " "], &[]).is_err(), "empty prompt");
}
