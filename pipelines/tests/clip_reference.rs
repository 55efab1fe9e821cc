//! Issue 11, checkable from outside: `vigil classify REFERENCE.safetensors --clip DIR
//! --prompts FILE` (X-CLIP: `--xclip DIR`) feeds the reference file's `pixel_values`,
//! tokenizes the prompts itself and prints one JSON line per image / clip whose
//! embeddings and logits match `transformers`' (`image_embeds`/`logits_per_image`,
//! `video_embeds`/`logits_per_video`) within relative L2 1e-4 — through the real binary.
//! Any reference file the generator makes must pass: set `VIGIL_CLIP_REFERENCE_DIRS` to
//! more generator output folders (`:`-separated) to check them too.
//!
//! And the user's mistakes — a wrong directory, a non-CLIP config, the other family's
//! folder, a missing tensor, a shape mismatch, a file that is no reference — are one
//! `vigil: <what> — <hint>` line and exit 2, never a panic.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{run_vigil, shared, Run};
use serde_json::Value;
use vigil_engine::clip::ReferenceFile;

const BOUND: f64 = 1e-4;
const LIMIT: Duration = Duration::from_secs(60);

fn fixtures() -> PathBuf {
    shared().join("fixtures/clip")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// Run the reference through vigil and compare every line; returns the worst errors.
fn check_reference(dir: &Path, xclip: bool, prompts: Option<&Path>) -> (f64, f64) {
    let (file, model, flag, key, embeds, logits) = if xclip {
        (
            "xclip_tiny_reference.safetensors",
            "xclip_tiny",
            "--xclip",
            "clip",
            "video_embeds",
            "logits_per_video",
        )
    } else {
        (
            "clip_tiny_reference.safetensors",
            "clip_tiny",
            "--clip",
            "frame",
            "image_embeds",
            "logits_per_image",
        )
    };
    let reference = dir.join(file);
    let mut args = vec![
        "classify".to_string(),
        s(&reference).into(),
        flag.into(),
        s(&dir.join(model)).into(),
    ];
    if let Some(p) = prompts {
        args.extend(["--prompts".into(), s(p).into()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = run_vigil(&args, LIMIT);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let r = ReferenceFile::load(&reference).unwrap();
    let (want_e, es) = r.f32(embeds).unwrap();
    let (want_l, ls) = r.f32(logits).unwrap();
    let (d, p) = (es[es.len() - 1], ls[1]);
    let lines = run.lines();
    assert_eq!(lines.len(), ls[0], "one line per {key}:\n{}", run.stdout);
    let (mut worst_e, mut worst_l) = (0f64, 0f64);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line[key], i, "{line}");
        let e = rel_l2(&floats(&line[embeds]), &want_e[i * d..(i + 1) * d]);
        let l = rel_l2(&floats(&line["logits"]), &want_l[i * p..(i + 1) * p]);
        worst_e = worst_e.max(e);
        worst_l = worst_l.max(l);
    }
    println!(
        "{}: {embeds} rel L2 {worst_e:.2e}, {logits} rel L2 {worst_l:.2e}",
        reference.display()
    );
    assert!(
        worst_e <= BOUND && worst_l <= BOUND,
        "{worst_e:.3e} {worst_l:.3e}"
    );
    (worst_e, worst_l)
}

#[test]
fn clip_reference_matches_transformers() {
    let d = fixtures();
    check_reference(&d, false, Some(&d.join("prompts.txt")));
}

#[test]
fn xclip_reference_matches_transformers() {
    let d = fixtures();
    check_reference(&d, true, Some(&d.join("prompts.txt")));
}

#[test]
fn more_generator_outputs_match_when_given() {
    let Some(dirs) = std::env::var_os("VIGIL_CLIP_REFERENCE_DIRS") else {
        println!("VIGIL_CLIP_REFERENCE_DIRS not set: only the shared fixtures are checked");
        return;
    };
    for dir in std::env::split_paths(&dirs) {
        let prompts = dir.join("prompts.txt");
        check_reference(&dir, false, Some(&prompts));
        check_reference(&dir, true, Some(&prompts));
    }
}

#[test]
fn prompts_default_to_the_references_own() {
    // no --prompts: the file's __metadata__ prompts, the same lines
    let d = fixtures();
    let a = run_vigil(
        &[
            "classify",
            s(&d.join("clip_tiny_reference.safetensors")),
            "--clip",
            s(&d.join("clip_tiny")),
        ],
        LIMIT,
    );
    let b = run_vigil(
        &[
            "classify",
            s(&d.join("clip_tiny_reference.safetensors")),
            "--clip",
            s(&d.join("clip_tiny")),
            "--prompts",
            s(&d.join("prompts.txt")),
        ],
        LIMIT,
    );
    assert_eq!(a.code, Some(0), "{}", a.stderr);
    assert_eq!(a.stdout, b.stdout);
    // a prompt given on the command line: one logit per prompt, in order
    let c = run_vigil(
        &[
            "classify",
            s(&d.join("clip_tiny_reference.safetensors")),
            "--clip",
            s(&d.join("clip_tiny")),
            "--prompt",
            "carving ice",
            "--prompt",
            "a dog running",
        ],
        LIMIT,
    );
    let (ca, la) = (&c.lines()[2], &a.lines()[2]);
    let (lc, l5) = (floats(&ca["logits"]), floats(&la["logits"]));
    assert_eq!(lc.len(), 2);
    assert!(
        (lc[0] - l5[1]).abs() < 1e-4 && (lc[1] - l5[4]).abs() < 1e-4,
        "{lc:?} {l5:?}"
    );
}

/// Exit 2 with one `vigil: <what> — <hint>` line naming `needle`.
fn user_error(run: &Run, needle: &str) {
    assert_eq!(
        run.code,
        Some(2),
        "stdout {}\nstderr {}",
        run.stdout,
        run.stderr
    );
    let line = run.stderr.trim_end();
    assert!(
        line.starts_with("vigil: ") && line.contains(" — ") && line.contains(needle),
        "{line}"
    );
    assert!(!line.contains("panicked"), "{line}");
    assert_eq!(line.lines().count(), 1, "{line}");
}

fn classify_with(model_flag: &str, dir: &Path, reference: &str) -> Run {
    run_vigil(
        &[
            "classify",
            s(&fixtures().join(reference)),
            model_flag,
            s(dir),
            "--prompt",
            "a dog",
        ],
        LIMIT,
    )
}

/// A scratch copy of `clip_tiny` with `edit` applied to its config.json.
fn scratch_model(test: &str, edit: impl FnOnce(String) -> String) -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix(&format!("vigil-clip-{test}-"))
        .tempdir()
        .unwrap();
    let src = fixtures().join("clip_tiny");
    for f in ["model.safetensors", "preprocessor_config.json"] {
        std::fs::copy(src.join(f), d.path().join(f)).unwrap();
    }
    let cfg = std::fs::read_to_string(src.join("config.json")).unwrap();
    std::fs::write(d.path().join("config.json"), edit(cfg)).unwrap();
    d
}

#[test]
fn wrong_directory_is_a_user_error() {
    let r = classify_with(
        "--clip",
        Path::new("/nonexistent/clip-vit-base-patch32"),
        "clip_tiny_reference.safetensors",
    );
    user_error(&r, "/nonexistent/clip-vit-base-patch32");
    assert!(r.stderr.contains("no such directory"), "{}", r.stderr);
    // a folder without config.json
    let r = classify_with(
        "--clip",
        &shared().join("models"),
        "clip_tiny_reference.safetensors",
    );
    user_error(&r, "config.json");
}

#[test]
fn non_clip_config_is_a_user_error() {
    let d = scratch_model("bert", |_| r#"{"model_type": "bert"}"#.into());
    let r = classify_with("--clip", d.path(), "clip_tiny_reference.safetensors");
    user_error(&r, "\"bert\"");
    // the other family's folder names the right flag
    let r = classify_with(
        "--clip",
        &fixtures().join("xclip_tiny"),
        "clip_tiny_reference.safetensors",
    );
    user_error(&r, "--xclip");
}

#[test]
fn missing_tensor_is_a_user_error() {
    // a config promising a third vision layer the weights do not have
    let d = scratch_model("missing", |c| {
        let v = c.find("\"vision_config\"").unwrap();
        let (head, tail) = c.split_at(v);
        format!(
            "{head}{}",
            tail.replacen("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3", 1)
        )
    });
    let r = classify_with("--clip", d.path(), "clip_tiny_reference.safetensors");
    user_error(&r, "`vision_model.encoder.layers.2.");
    assert!(r.stderr.contains("is missing"), "{}", r.stderr);
}

#[test]
fn shape_mismatch_is_a_user_error() {
    let d = scratch_model("shape", |c| {
        c.replace("\"intermediate_size\": 128", "\"intermediate_size\": 256")
    });
    let r = classify_with("--clip", d.path(), "clip_tiny_reference.safetensors");
    user_error(&r, "has shape");
    assert!(r.stderr.contains("fc1.weight"), "{}", r.stderr);
}

#[test]
fn a_file_that_is_no_reference_is_a_user_error() {
    // a MoViNet fixture has frames but no pixel_values
    let fixture = shared().join("fixtures/k600__arm_wrestling_5fps.safetensors");
    let r = run_vigil(
        &[
            "classify",
            s(&fixture),
            "--clip",
            s(&fixtures().join("clip_tiny")),
            "--prompt",
            "a dog",
        ],
        LIMIT,
    );
    user_error(&r, "pixel_values");
    // an X-CLIP reference (clips of frames) given to CLIP
    let r = classify_with(
        "--clip",
        &fixtures().join("clip_tiny"),
        "xclip_tiny_reference.safetensors",
    );
    user_error(&r, "[N, 3, 224, 224]");
    // prompts without a model, an empty prompt
    let r = run_vigil(&["classify", s(&fixture), "--prompt", "a dog"], LIMIT);
    user_error(&r, "--clip");
    let r = classify_with(
        "--clip",
        &fixtures().join("clip_tiny"),
        "clip_tiny_reference.safetensors",
    );
    assert_eq!(r.code, Some(0));
    let r = run_vigil(
        &[
            "classify",
            s(&fixtures().join("clip_tiny_reference.safetensors")),
            "--clip",
            s(&fixtures().join("clip_tiny")),
            "--prompt",
            " ",
        ],
        LIMIT,
    );
    user_error(&r, "empty");
}

#[test]
fn wrong_dtype_and_bad_prompt_files_are_user_errors() {
    // a weight stored as int32: same size as float32, but not a float
    let d = scratch_model("dtype", |c| c);
    let weights = d.path().join("model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(bytes[8..8 + header_len].to_vec()).unwrap();
    let at = header.find("\"F32\"").expect("a float32 tensor") + 8;
    bytes[at..at + 5].copy_from_slice(b"\"I32\"");
    std::fs::write(&weights, bytes).unwrap();
    let r = classify_with("--clip", d.path(), "clip_tiny_reference.safetensors");
    user_error(&r, "I32");

    let reference = fixtures().join("clip_tiny_reference.safetensors");
    let clip = fixtures().join("clip_tiny");
    let with_prompts = |file: &Path| {
        run_vigil(
            &[
                "classify",
                s(&reference),
                "--clip",
                s(&clip),
                "--prompts",
                s(file),
            ],
            LIMIT,
        )
    };
    let r = with_prompts(Path::new("/nonexistent/prompts.txt"));
    user_error(&r, "/nonexistent/prompts.txt");
    let empty = d.path().join("prompts.txt");
    std::fs::write(&empty, "# only a comment\n\n   \n").unwrap();
    let r = with_prompts(&empty);
    user_error(&r, "has no prompt");
    std::fs::write(&empty, [0xff, 0xfe, 0x00, b'\n']).unwrap();
    let r = with_prompts(&empty);
    user_error(&r, "prompts.txt");
}

#[test]
fn search_and_serve_mistakes_are_user_errors() {
    let clip = fixtures().join("clip_tiny");
    let nowhere = "/nonexistent/vigil-data";
    let search = |extra: &[&str]| {
        let mut args = vec!["search", "a person falling", "--clip", s(&clip)];
        args.extend_from_slice(extra);
        run_vigil(&args, LIMIT)
    };
    user_error(&search(&["--data-dir", nowhere]), "no Vigil store");
    user_error(&search(&["--since", "yesterday"]), "--since");
    user_error(
        &run_vigil(&["search", " ", "--clip", s(&clip)], LIMIT),
        "empty query",
    );
    let r = run_vigil(
        &[
            "search",
            "x",
            "--clip",
            "/nonexistent/clip",
            "--data-dir",
            nowhere,
        ],
        LIMIT,
    );
    assert_eq!(r.code, Some(2), "{}", r.stderr);

    // vigil serve refuses before it listens
    let serve = |extra: &[&str]| {
        let mut args = vec!["serve", "--listen", "127.0.0.1:1", "--data-dir", nowhere];
        args.extend_from_slice(extra);
        run_vigil(&args, LIMIT)
    };
    user_error(
        &serve(&["--clip", "/nonexistent/clip", "--prompt", "x"]),
        "/nonexistent/clip",
    );
    user_error(&serve(&["--clip", s(&clip)]), "no prompts");
    user_error(
        &serve(&["--clip", s(&clip), "--prompt", "x", "--labels", s(&clip)]),
        "--labels",
    );
    user_error(&serve(&["--prompt", "x"]), "--clip");
}
