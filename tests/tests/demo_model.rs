//! The bundled demo model (models/demo/model.onnx) recognises the motion in
//! a synthetic video it has never seen, end to end: `trainer synth-video`
//! writes one segment per class at a size the model was not trained at,
//! and `slowfast annotate` (no --model: the bundled default) runs it through
//! the GStreamer element. This is what the README's main command does.

use std::path::PathBuf;
use std::process::Command;

fn tool(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(|deps| deps.parent()).expect("target dir");
    let path = dir.join(name);
    assert!(path.exists(), "{} is not built: run `cargo test --workspace`", path.display());
    path
}

#[test]
fn bundled_demo_model_names_the_motion_in_a_new_video() {
    let dir = tempfile::tempdir().expect("temp dir");
    let video = dir.path().join("motion.mp4");
    let out = Command::new(tool("trainer"))
        .args(["synth-video", "--size", "128", "--seconds", "2.5", "--seed", "21", "--out"])
        .arg(&video)
        .output()
        .expect("trainer synth-video");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let truth: Vec<(f64, f64, String)> = std::fs::read_to_string(dir.path().join("motion.segments.txt"))
        .expect("ground truth written")
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].parse().expect("start"), f[1].parse().expect("end"), f[3].to_string())
        })
        .collect();
    assert_eq!(truth.len(), 11);

    let registry = dir.path().join("registry.bin");
    let out = Command::new(tool("slowfast"))
        .env("GST_REGISTRY", &registry)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("annotate")
        .arg(&video)
        .args(["--json", "--top-k", "1", "--stride", "8", "--threads", "1"])
        .output()
        .expect("slowfast annotate");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));

    let (mut inside, mut right, mut wrong) = (0, 0, Vec::new());
    for v in stdout.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()) {
        if v["event"] != "prediction" {
            continue;
        }
        let (Some(a), Some(b), Some(label)) = (v["clip_start_s"].as_f64(), v["clip_end_s"].as_f64(), v["top"][0]["label"].as_str()) else {
            panic!("prediction without times or label: {v}");
        };
        // Only a window inside one segment has a single right answer.
        if let Some((_, _, name)) = truth.iter().find(|(s, e, _)| a >= s - 1e-3 && b < e - 0.01) {
            inside += 1;
            if name == label {
                right += 1;
            } else {
                wrong.push(format!("[{a:.2}-{b:.2}] {label} (truth {name})"));
            }
        }
    }
    assert!(inside >= 22, "only {inside} windows inside a segment:\n{stdout}");
    let accuracy = right as f64 / inside as f64;
    eprintln!("{right}/{inside} windows right; wrong: {wrong:?}");
    assert!(accuracy >= 0.85, "{:.1}% of {inside} windows right; wrong: {wrong:?}", accuracy * 100.0);
}
