//! The built plugin as users load it: `gst-inspect-1.0` documents it and a
//! `gst-launch-1.0` pipeline runs it.

use std::path::PathBuf;
use std::process::Command;

/// `target/<profile>`, where cargo put `libgstslowfast.so`.
fn plugin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent().and_then(|deps| deps.parent()).expect("target dir").to_path_buf()
}

fn gst(tool: &str) -> Command {
    let mut cmd = Command::new(tool);
    let registry = tempfile::NamedTempFile::new().expect("temp registry");
    cmd.env("GST_PLUGIN_PATH", plugin_dir()).env("GST_REGISTRY", registry.path().with_extension("bin"));
    cmd
}

fn model() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../runtime/tests/fixtures/tiny_8x8.onnx").display().to_string()
}

#[test]
fn gst_inspect_documents_every_property_with_an_example() {
    assert!(plugin_dir().join("libgstslowfast.so").exists(), "plugin not built in {}", plugin_dir().display());
    let out = gst("gst-inspect-1.0").arg("slowfast").output().expect("gst-inspect-1.0");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    for prop in [
        "model",
        "labels",
        "backend",
        "strict",
        "fp16",
        "engine-cache-dir",
        "threads",
        "stride",
        "top-k",
        "threshold",
        "smoothing",
        "draw",
        "max-pending",
        "block",
        "predictions",
        "skipped",
        "provider",
    ] {
        assert!(text.contains(&format!("  {prop} ")), "property {prop} missing from gst-inspect:\n{text}");
    }
    assert!(text.contains("gst-launch-1.0"), "no example in the element docs");
    assert!(text.contains("): auto") && text.contains("): tensorrt"), "backend values undocumented");
}

#[test]
fn gst_launch_pipeline_posts_predictions() {
    let out = gst("gst-launch-1.0")
        .args(["-m", "videotestsrc", "num-buffers=100", "pattern=ball", "!"])
        .args(["video/x-raw,format=I420,width=96,height=64,framerate=30/1", "!"])
        .args(["slowfast", &format!("model={}", model()), "backend=cpu", "stride=16", "max-pending=64", "draw=true", "!"])
        .args(["videoconvert", "!", "fakesink"])
        .output()
        .expect("gst-launch-1.0");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let predictions = text.lines().filter(|l| l.contains("slowfast, index=")).count();
    // 100 frames, a 64-frame window, one prediction every 16 frames: 64, 80,
    // 96; max-pending is high enough that a busy machine skips none.
    assert_eq!(predictions, 3, "{text}");
}

#[test]
fn gst_launch_with_a_missing_model_fails_naming_it() {
    let out = gst("gst-launch-1.0")
        .args(["videotestsrc", "num-buffers=10", "!", "slowfast", "model=/nowhere/m.onnx", "!", "fakesink"])
        .output()
        .expect("gst-launch-1.0");
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success());
    assert!(all.contains("/nowhere/m.onnx"), "{all}");
}
