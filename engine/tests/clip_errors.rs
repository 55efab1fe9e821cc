//! Issue 11 error cases for model folders: a wrong directory, a non-CLIP config, the other
//! family's folder, a missing tensor, a shape mismatch, a broken weights file — each a
//! clear `EngineError` naming the path, tensor and shapes, never a panic.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use common::shared;
use safetensors::tensor::TensorView;
use safetensors::SafeTensors;
use vigil_engine::clip::{ClipModel, XClipModel};
use vigil_engine::EngineError;

fn tiny(name: &str) -> PathBuf {
    shared().join("fixtures/clip").join(name)
}

/// A scratch copy of `clip_tiny` whose files a test then breaks.
fn scratch(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vigil-clip-errors-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    for f in [
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
    ] {
        std::fs::copy(tiny("clip_tiny").join(f), d.join(f)).unwrap();
    }
    d
}

/// Rewrite `dir/model.safetensors` through `edit` (name → (shape, bytes)).
fn rewrite_weights(dir: &Path, edit: impl FnOnce(&mut HashMap<String, (Vec<usize>, Vec<u8>)>)) {
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut t: HashMap<String, (Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, (v.shape().to_vec(), v.data().to_vec())))
        .collect();
    edit(&mut t);
    let views: Vec<(String, TensorView)> = t
        .iter()
        .map(|(n, (s, b))| {
            (
                n.clone(),
                TensorView::new(safetensors::Dtype::F32, s.clone(), b).unwrap(),
            )
        })
        .collect();
    let out = safetensors::serialize(views, None).unwrap();
    std::fs::write(dir.join("model.safetensors"), out).unwrap();
}

#[test]
fn wrong_directory_is_named() {
    let err = ClipModel::load(Path::new("/nonexistent/clip-dir"), 1).unwrap_err();
    assert!(matches!(err, EngineError::NotClip { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("/nonexistent/clip-dir") && msg.contains("no such directory"),
        "{msg}"
    );
    // a directory without config.json (a MoViNet models folder)
    let err = ClipModel::load(&shared().join("models"), 1).unwrap_err();
    assert!(err.to_string().contains("config.json"), "{err}");
}

#[test]
fn non_clip_config_is_rejected() {
    let d = scratch("nonclip");
    std::fs::write(
        d.join("config.json"),
        r#"{"model_type": "bert", "hidden_size": 768}"#,
    )
    .unwrap();
    let err = ClipModel::load(&d, 1).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, EngineError::NotClip { .. }) && msg.contains("\"bert\""),
        "{msg}"
    );
    std::fs::write(d.join("config.json"), "{ not json").unwrap();
    let err = ClipModel::load(&d, 1).unwrap_err();
    assert!(err.to_string().contains("invalid JSON"), "{err}");
    std::fs::write(
        d.join("config.json"),
        r#"{"model_type": "clip", "vision_config": {"hidden_size": 64, "num_attention_heads": 5}}"#,
    )
    .unwrap();
    let err = ClipModel::load(&d, 1).unwrap_err();
    assert!(
        err.to_string()
            .contains("not divisible by its 5 attention heads"),
        "{err}"
    );
    std::fs::write(
        d.join("config.json"),
        r#"{"model_type": "clip", "text_config": {"hidden_act": "swiglu"}}"#,
    )
    .unwrap();
    let err = ClipModel::load(&d, 1).unwrap_err();
    assert!(err.to_string().contains("text_config.hidden_act"), "{err}");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn the_other_family_says_which_flag() {
    let err = ClipModel::load(&tiny("xclip_tiny"), 1).unwrap_err();
    assert!(err.to_string().contains("--xclip"), "{err}");
    let err = XClipModel::load(&tiny("clip_tiny"), 1).unwrap_err();
    assert!(err.to_string().contains("--clip"), "{err}");
}

#[test]
fn missing_tensor_is_named() {
    let d = scratch("missing");
    rewrite_weights(&d, |t| {
        t.remove("vision_model.encoder.layers.1.mlp.fc2.bias");
    });
    let err = ClipModel::load(&d, 1).unwrap_err();
    assert!(matches!(err, EngineError::TensorMissing { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("`vision_model.encoder.layers.1.mlp.fc2.bias` is missing"),
        "{err}"
    );
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn shape_mismatch_names_tensor_and_shapes() {
    let d = scratch("shape");
    rewrite_weights(&d, |t| {
        let e = t.get_mut("text_projection.weight").unwrap();
        *e = (vec![16, 64], e.1[..16 * 64 * 4].to_vec());
    });
    let err = ClipModel::load(&d, 1).unwrap_err();
    match &err {
        EngineError::TensorShape {
            tensor,
            expected,
            found,
            ..
        } => {
            assert_eq!(tensor, "text_projection.weight");
            assert_eq!(expected, &[32, 64]);
            assert_eq!(found, &[16, 64]);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string().contains("[16, 64]") && err.to_string().contains("[32, 64]"),
        "{err}"
    );
    // a config that disagrees with the weights is the same error, from the other side
    let cfg = std::fs::read_to_string(d.join("config.json")).unwrap();
    std::fs::copy(
        tiny("clip_tiny/model.safetensors"),
        d.join("model.safetensors"),
    )
    .unwrap();
    std::fs::write(
        d.join("config.json"),
        cfg.replace("\"intermediate_size\": 128", "\"intermediate_size\": 256"),
    )
    .unwrap();
    let err = ClipModel::load(&d, 1).unwrap_err();
    assert!(matches!(err, EngineError::TensorShape { .. }), "{err:?}");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn broken_weights_file_is_an_error() {
    let d = scratch("broken");
    let bytes = std::fs::read(d.join("model.safetensors")).unwrap();
    for len in [0, 7, 100, bytes.len() / 2] {
        std::fs::write(d.join("model.safetensors"), &bytes[..len]).unwrap();
        let err = ClipModel::load(&d, 1).unwrap_err();
        assert!(err.to_string().contains("safetensors"), "{len}: {err}");
    }
    std::fs::remove_file(d.join("model.safetensors")).unwrap();
    let err = ClipModel::load(&d, 1).unwrap_err();
    assert!(err.to_string().contains("model.safetensors"), "{err}");
    std::fs::remove_dir_all(&d).unwrap();
}
