//! `slowfast` end to end on the shared clips with the tiny fixture model
//! (`fixtures/tiny_8x8.onnx`: SlowFast 8x8 topology at width 8, 5 classes,
//! random weights, crop 32, made by `trainer export`'s exporter).
#![cfg(feature = "gstreamer")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny_8x8.onnx")
}

fn shared(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/videos").join(name).display().to_string()
}

const CLIPS: [&str; 4] = ["archery_paddlevideo_example.avi", "mmaction2_demo.mp4", "mmaction2_test.mp4", "mmaction2_test.avi"];

fn slowfast(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_slowfast")).args(args).output().expect("the slowfast binary runs")
}

fn json_lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn classify(videos: &[String], model: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["classify".to_string()];
    args.extend(videos.iter().cloned());
    args.extend(["--model".into(), model.display().to_string(), "--json".into(), "--threads".into(), "2".into()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    slowfast(&refs)
}

fn check_result(r: &Value, views: u64) {
    assert!(r.get("error").is_none(), "{r}");
    assert_eq!(r["views"], views, "{r}");
    assert_eq!(r["provider"], "CPU", "{r}");
    let top = r["top"].as_array().unwrap();
    assert_eq!(top.len(), 5, "{r}");
    let scores: Vec<f64> = top.iter().map(|c| c["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{r}");
    assert!(scores.iter().all(|s| (0.0..=1.0).contains(s)), "{r}");
    // top-5 of 5 classes: the whole averaged distribution.
    assert!((scores.iter().sum::<f64>() - 1.0).abs() < 1e-4, "{r}");
    let mut classes: Vec<u64> = top.iter().map(|c| c["class"].as_u64().unwrap()).collect();
    classes.sort();
    assert_eq!(classes, vec![0, 1, 2, 3, 4]);
    assert!(top.iter().all(|c| !c["label"].as_str().unwrap().is_empty()), "{r}");
    assert!(r["frames"].as_u64().unwrap() > 100 && r["fps"].as_f64().unwrap() > 20.0, "{r}");
}

#[test]
fn classifies_the_shared_clips_with_one_and_thirty_views() {
    let videos: Vec<String> = CLIPS.iter().map(|c| shared(c)).collect();
    for (views, count) in [("1x1", 1), ("10x3", 30)] {
        let out = classify(&videos, &fixture(), &["--views", views, "--top-k", "5"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let results = json_lines(&out);
        assert_eq!(results.len(), 4);
        for (r, v) in results.iter().zip(&videos) {
            assert_eq!(r["video"], v.as_str());
            check_result(r, count);
        }
        assert!(stderr(&out).contains("execution provider: CPU"), "{}", stderr(&out));
    }
}

#[test]
fn results_are_deterministic_and_views_change_them() {
    let videos = vec![shared(CLIPS[0])];
    let a = classify(&videos, &fixture(), &["--views", "1x1"]);
    let b = classify(&videos, &fixture(), &["--views", "1x1"]);
    assert!(a.status.success(), "{}", stderr(&a));
    assert_eq!(a.stdout, b.stdout);
    let c = classify(&videos, &fixture(), &["--views", "10x1"]);
    let (one, ten) = (&json_lines(&a)[0], &json_lines(&c)[0]);
    assert_eq!(ten["views"], 10);
    assert_ne!(one["top"], ten["top"], "averaging ten clips should not reproduce the first clip exactly");
}

#[test]
fn bad_videos_are_reported_and_the_others_still_classified() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.mp4");
    std::fs::write(&text, b"not a video, just some words").unwrap();
    let empty = dir.path().join("empty.avi");
    std::fs::write(&empty, b"").unwrap();
    let videos = vec![
        shared(CLIPS[0]),
        "/nonexistent/missing.mp4".to_string(),
        text.display().to_string(),
        empty.display().to_string(),
        shared(CLIPS[2]),
    ];
    let out = classify(&videos, &fixture(), &["--views", "1x1"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let results = json_lines(&out);
    assert_eq!(results.len(), 5);
    check_result(&results[0], 1);
    check_result(&results[4], 1);
    let err = stderr(&out);
    for (r, name) in results[1..4].iter().zip(["missing.mp4", "notes.mp4", "empty.avi"]) {
        let e = r["error"].as_str().unwrap_or_else(|| panic!("{r}"));
        assert!(e.contains(name), "{e}");
        assert!(err.contains(name), "{err}");
    }
    assert!(err.contains("3 of 5 videos failed"), "{err}");
}

/// The fixture's bytes with every top-level `metadata_props` entry (ONNX
/// `ModelProto` field 14) removed, then `extra` entries appended.
fn rewrite_metadata(model: &[u8], extra: &[(&str, &str)]) -> Vec<u8> {
    fn varint(b: &[u8], pos: &mut usize) -> u64 {
        let mut v = 0;
        for shift in (0..64).step_by(7) {
            let byte = b[*pos];
            *pos += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                break;
            }
        }
        v
    }
    fn put_varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    fn put_bytes(out: &mut Vec<u8>, field: u64, body: &[u8]) {
        put_varint(out, (field << 3) | 2);
        put_varint(out, body.len() as u64);
        out.extend_from_slice(body);
    }
    let (mut out, mut pos) = (Vec::new(), 0);
    while pos < model.len() {
        let start = pos;
        let key = varint(model, &mut pos);
        match key & 7 {
            0 => drop(varint(model, &mut pos)),
            1 => pos += 8,
            5 => pos += 4,
            _ => {
                let n = varint(model, &mut pos) as usize;
                pos += n;
            }
        }
        if key >> 3 != 14 {
            out.extend_from_slice(&model[start..pos]);
        }
    }
    for (k, v) in extra {
        let mut entry = Vec::new();
        put_bytes(&mut entry, 1, k.as_bytes());
        put_bytes(&mut entry, 2, v.as_bytes());
        put_bytes(&mut out, 14, &entry);
    }
    out
}

#[test]
fn models_without_metadata_or_with_wrong_labels_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture()).unwrap();
    let bare = dir.path().join("bare.onnx");
    std::fs::write(&bare, rewrite_metadata(&bytes, &[])).unwrap();
    let out = classify(&[shared(CLIPS[0])], &bare, &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("bare.onnx") && err.contains("slowfast.format_version") && err.contains("no SlowFast metadata"), "{err}");

    // Keep the real metadata but claim six classes.
    let info = runtime::model_info::ModelInfo::from_file(&fixture()).unwrap();
    let props = runtime::onnx_meta::metadata_props(&bytes).unwrap();
    let mut entries: Vec<(&str, &str)> = props.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    entries.retain(|(k, _)| *k != "slowfast.num_classes");
    entries.push(("slowfast.num_classes", "6"));
    let wrong = dir.path().join("wrong_labels.onnx");
    std::fs::write(&wrong, rewrite_metadata(&bytes, &entries)).unwrap();
    let out = classify(&[shared(CLIPS[0])], &wrong, &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("wrong_labels.onnx") && err.contains("slowfast.labels"), "{err}");
    assert!(err.contains(&format!("{} labels for 6 classes", info.labels.len())), "{err}");
}

#[test]
fn strict_mode_fails_on_a_missing_provider_and_plain_mode_falls_back_to_cpu() {
    let videos = vec![shared(CLIPS[0])];
    for (backend, name) in [("cuda", "CUDA"), ("tensorrt", "TensorRT")] {
        let out = classify(&videos, &fixture(), &["--views", "1x1", "--backend", backend, "--strict"]);
        assert_eq!(out.status.code(), Some(2), "{backend}");
        let err = stderr(&out);
        assert!(err.contains(&format!("{name} execution provider unavailable")) && err.contains("onnxruntime-gpu"), "{err}");
        assert!(out.stdout.is_empty());

        let out = classify(&videos, &fixture(), &["--views", "1x1", "--backend", backend]);
        assert!(out.status.success(), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("falling back") && err.contains("execution provider: CPU"), "{err}");
        check_result(&json_lines(&out)[0], 1);
    }
    let out = classify(&videos, &fixture(), &["--views", "1x1", "--backend", "auto", "--strict"]);
    assert_eq!(out.status.code(), Some(2), "auto + strict needs one accelerator");
    // Without a GPU provider, auto ends on OpenVINO (x86-64), after saying
    // why TensorRT and CUDA were skipped.
    let out = classify(&videos, &fixture(), &["--views", "1x1", "--backend", "auto"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    let expected = if cfg!(target_arch = "x86_64") { "execution provider: OpenVINO CPU" } else { "execution provider: CPU" };
    assert!(err.matches("falling back").count() == 2 && err.contains(expected), "{err}");
    let r = &json_lines(&out)[0];
    assert_eq!(r["provider"], expected.trim_start_matches("execution provider: "), "{r}");
    assert_eq!(r["top"].as_array().map(Vec::len), Some(5), "{r}");
}

#[test]
fn build_engine_without_tensorrt_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("engines");
    let out = slowfast(&["build-engine", &fixture().display().to_string(), "--fp16", "--out", &out_dir.display().to_string()]);
    assert_ne!(out.status.code(), Some(0));
    let err = stderr(&out);
    assert!(err.contains("cannot build a TensorRT engine") && err.contains("TensorRT execution provider unavailable"), "{err}");
    assert!(!out_dir.join("tiny_8x8_ctx.onnx").exists());
}

#[test]
fn a_missing_onnx_runtime_library_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_slowfast"))
        .args(["classify", &shared(CLIPS[0]), "--model", &fixture().display().to_string()])
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("/nonexistent/libonnxruntime.so") && err.contains("scripts/setup.sh") && err.contains("pip install onnxruntime"),
        "{err}"
    );
}

/// Runs `gst-launch-1.0 -q` with `args`, asserting success.
fn gst_launch(args: &str) {
    let out = Command::new("gst-launch-1.0").arg("-q").args(args.split_whitespace()).output().expect("gst-launch-1.0 runs");
    assert!(out.status.success(), "gst-launch-1.0 {args}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn audio_only_and_truncated_files_say_what_is_wrong_with_them() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("tone.wav");
    gst_launch(&format!("audiotestsrc num-buffers=20 ! wavenc ! filesink location={}", wav.display()));
    // mp4mux writes its index last: the first half of the file has none.
    let whole = dir.path().join("whole.mp4");
    gst_launch(&format!(
        "videotestsrc num-buffers=60 ! video/x-raw,format=I420,width=64,height=48,framerate=30/1 ! x264enc ! mp4mux ! filesink location={}",
        whole.display()
    ));
    let bytes = std::fs::read(&whole).unwrap();
    let cut = dir.path().join("cut.mp4");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    // With the index first (faststart), the index outlives the data.
    let indexed = dir.path().join("indexed.mp4");
    gst_launch(&format!(
        "videotestsrc num-buffers=300 ! video/x-raw,format=I420,width=64,height=48,framerate=30/1 ! x264enc ! mp4mux faststart=true ! filesink location={}",
        indexed.display()
    ));
    let bytes = std::fs::read(&indexed).unwrap();
    let short = dir.path().join("short.mp4");
    std::fs::write(&short, &bytes[..bytes.len() * 3 / 10]).unwrap();
    let videos = [wav.display().to_string(), cut.display().to_string(), short.display().to_string()];
    let out = classify(&videos, &fixture(), &["--views", "10x3"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let results = json_lines(&out);
    let errors: Vec<&str> = results.iter().map(|r| r["error"].as_str().unwrap_or_else(|| panic!("{r}"))).collect();
    assert!(errors[0].contains("tone.wav") && errors[0].contains("no video stream in it (it holds only audio/"), "{}", errors[0]);
    assert!(errors[1].contains("cut.mp4") && errors[1].contains("truncated"), "{}", errors[1]);
    assert!(errors[2].contains("short.mp4") && errors[2].contains("truncated: its index lists 300 frames"), "{}", errors[2]);
    // The whole files classify.
    let out = classify(&[whole.display().to_string(), indexed.display().to_string()], &fixture(), &["--views", "10x3"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn top_k_zero_is_refused() {
    for command in ["classify", "annotate"] {
        let out = slowfast(&[command, "x.mp4", "--model", &fixture().display().to_string(), "--top-k", "0"]);
        assert_eq!(out.status.code(), Some(2), "{command}: {}", stderr(&out));
        assert!(stderr(&out).contains("--top-k"), "{command}: {}", stderr(&out));
    }
}

/// Ten views of a 60 s video lie far apart, one seek each. In MPEG-TS,
/// which has no index, a seek can land between key frames; the decoder
/// notices and decodes from the start instead, so the scores are the
/// MP4's (same packets), not those of frames built on missing references.
#[test]
fn ten_views_of_a_long_mpeg_ts_score_as_the_mp4() {
    let dir = tempfile::tempdir().unwrap();
    let (mp4, ts) = (dir.path().join("long.mp4"), dir.path().join("long.ts"));
    gst_launch(&format!(
        "videotestsrc pattern=ball num-buffers=1800 ! video/x-raw,format=I420,width=160,height=120,framerate=30/1 ! \
         x264enc key-int-max=300 bframes=0 speed-preset=ultrafast threads=1 ! tee name=t \
         t. ! queue ! h264parse ! mp4mux ! filesink location={} t. ! queue ! h264parse ! mpegtsmux ! filesink location={}",
        mp4.display(),
        ts.display()
    ));
    let out = classify(&[mp4.display().to_string(), ts.display().to_string()], &fixture(), &["--views", "10x1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let results = json_lines(&out);
    let (from_mp4, from_ts) = (&results[0], &results[1]);
    assert_eq!(from_mp4["seeked"], true, "{from_mp4}");
    // MPEG-TS states no frame count; its packets were counted.
    assert_eq!(from_mp4["frames"], 1800, "{from_mp4}");
    assert_eq!(from_ts["frames"], 1800, "{from_ts}");
    for (a, b) in from_mp4["top"].as_array().unwrap().iter().zip(from_ts["top"].as_array().unwrap()) {
        assert_eq!(a["class"], b["class"], "{from_mp4}\n{from_ts}");
        let (a, b) = (a["score"].as_f64().unwrap(), b["score"].as_f64().unwrap());
        assert!((a - b).abs() < 1e-6, "{from_mp4}\n{from_ts}");
    }
}
