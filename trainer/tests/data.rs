//! The data pipeline: deterministic parallel loading, frame folders, and
//! unreadable videos skipped, counted and named without stopping.

use std::path::Path;

use runtime::preprocess::Normalization;
use runtime::sampling::ClipPosition;
use tch::Tensor;
use trainer::data::source::{Source, Temporal};
use trainer::data::{Loader, LoaderOptions, Mode, Sample};
use trainer::synth::{Split, SynthSpec};

fn options(mode: Mode, workers: usize) -> LoaderOptions {
    LoaderOptions {
        mode,
        batch_size: 3,
        workers,
        prefetch: 2,
        max_retries: 20,
        seed: 9,
        temporal: Temporal { num_frames: 8, sampling_rate: 2, target_fps: 30.0 },
        jitter: [32, 40],
        crop: 32,
        flip: true,
        normalize: Normalization { mean: [0.45; 3], std: [0.225; 3] },
        alpha: 4,
        shard: Default::default(),
    }
}

fn synthetic(count: usize) -> Source {
    Source::Synthetic { spec: SynthSpec { size: 32, frames: 20, seed: 1 }, split: Split::Train, count }
}

fn epoch_tensors(loader: &Loader, epoch: u64) -> Vec<(Tensor, Tensor, Vec<usize>)> {
    loader.epoch(epoch).map(|b| b.map(|b| (b.fast, b.labels, b.samples)).unwrap()).collect()
}

#[test]
fn loading_is_deterministic_for_any_number_of_workers() {
    let one = Loader::new(synthetic(13), options(Mode::Train, 1));
    let three = Loader::new(synthetic(13), options(Mode::Train, 3));
    assert_eq!(one.batches_per_epoch(), 4, "13 clips in batches of 3, last one dropped");
    let (a, b) = (epoch_tensors(&one, 2), epoch_tensors(&three, 2));
    assert_eq!(a.len(), 4);
    for ((fa, la, sa), (fb, lb, sb)) in a.iter().zip(&b) {
        assert_eq!(sa, sb);
        assert!(fa.equal(fb) && la.equal(lb));
        assert_eq!(fa.size(), [3, 3, 8, 32, 32]);
    }
    let other = epoch_tensors(&one, 3);
    assert_ne!(a.iter().map(|x| x.2.clone()).collect::<Vec<_>>(), other.iter().map(|x| x.2.clone()).collect::<Vec<_>>());
    // Each epoch visits distinct samples.
    let mut seen: Vec<usize> = a.iter().flat_map(|x| x.2.clone()).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 12);
}

#[test]
fn validation_batches_cover_every_sample_in_order() {
    let loader = Loader::new(synthetic(7), options(Mode::Val, 2));
    let batches = epoch_tensors(&loader, 0);
    let samples: Vec<usize> = batches.iter().flat_map(|b| b.2.clone()).collect();
    assert_eq!(samples, (0..7).collect::<Vec<_>>());
    let slow = loader.epoch(0).next().unwrap().unwrap().slow;
    assert_eq!(slow.size(), [3, 3, 2, 32, 32], "slow pathway: 8 / alpha 4 frames");
}

#[test]
fn frame_folders_are_videos() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip");
    std::fs::create_dir(&clip).unwrap();
    for i in 0..10u8 {
        let img = image::RgbImage::from_pixel(40, 30, image::Rgb([i * 20, 0, 0]));
        img.save(clip.join(format!("img_{:05}.png", i + 1))).unwrap();
    }
    std::fs::write(clip.join("notes.txt"), "not a frame").unwrap();
    let source = Source::List(vec![Sample { path: clip.clone(), label: 0 }]);
    source.check(0).unwrap();
    let t = Temporal { num_frames: 5, sampling_rate: 2, target_fps: 30.0 };
    let raw = source.clips(0, t, &[ClipPosition::View { index: 0, count: 1 }]).unwrap().remove(0);
    assert_eq!((raw.frames, raw.height, raw.width), (5, 30, 40));
    let reds: Vec<u8> = (0..5).map(|f| raw.data[f * 30 * 40 * 3]).collect();
    // 10 frames span the clip: linspace(0, 9, 5) truncated, as PySlowFast.
    assert_eq!(reds, vec![0, 40, 80, 120, 180]);
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let bad = Source::List(vec![Sample { path: empty, label: 0 }]);
    assert!(bad.check(0).unwrap_err().to_string().contains("no jpg/png/bmp frames"));
}

#[cfg(feature = "video")]
mod video {
    use super::*;
    use trainer::synth::{render_clip, write::write_mp4};

    /// Two good videos and one of each kind of broken one.
    fn make_list(dir: &Path) -> (Vec<Sample>, Vec<&'static str>) {
        let spec = SynthSpec { size: 32, frames: 20, seed: 4 };
        for i in 0..2 {
            write_mp4(&render_clip(&spec, Split::Train, i).frames, spec.size, &dir.join(format!("good{i}.mp4"))).unwrap();
        }
        let good = std::fs::read(dir.join("good0.mp4")).unwrap();
        std::fs::write(dir.join("empty.mp4"), b"").unwrap();
        std::fs::write(dir.join("truncated.mp4"), &good[..good.len() / 2]).unwrap();
        std::fs::write(dir.join("garbage.mp4"), vec![0x5au8; 4096]).unwrap();
        let status = std::process::Command::new("gst-launch-1.0")
            .args(["-q", "audiotestsrc", "num-buffers=10", "!", "audioconvert", "!", "wavenc", "!", "filesink"])
            .arg(format!("location={}", dir.join("audio.wav").display()))
            .status()
            .unwrap();
        assert!(status.success());
        let bad = vec!["empty.mp4", "truncated.mp4", "garbage.mp4", "audio.wav", "missing.mp4"];
        let mut samples: Vec<Sample> = (0..2).map(|i| Sample { path: dir.join(format!("good{i}.mp4")), label: i }).collect();
        samples.extend(bad.iter().map(|b| Sample { path: dir.join(b), label: 0 }));
        (samples, bad)
    }

    #[test]
    fn broken_videos_are_skipped_counted_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let (samples, bad) = make_list(dir.path());
        for (i, s) in samples.iter().enumerate() {
            let checked = Source::List(samples.clone()).check(i);
            let name = s.path.file_name().unwrap().to_string_lossy().to_string();
            assert_eq!(checked.is_err(), bad.contains(&name.as_str()), "{name}: {checked:?}");
            if let Err(e) = checked {
                assert!(e.to_string().contains(&name), "{e}");
            }
        }
        let mut opts = options(Mode::Train, 2);
        opts.batch_size = 2;
        let loader = Loader::new(Source::List(samples.clone()), opts);
        let (mut failures, mut used) = (Vec::new(), Vec::new());
        for epoch in 0..3 {
            for batch in loader.epoch(epoch) {
                let batch = batch.expect("training never stops for a bad video");
                assert_eq!(batch.fast.size(), [2, 3, 8, 32, 32]);
                failures.extend(batch.failures);
                used.extend(batch.samples);
            }
        }
        assert!(used.iter().all(|&i| i < 2), "only the good videos are used: {used:?}");
        assert!(!failures.is_empty());
        for f in &failures {
            assert!(bad.iter().any(|b| f.name.ends_with(b)), "{f:?}");
        }
    }

    #[test]
    fn check_data_writes_the_bad_videos() {
        let dir = tempfile::tempdir().unwrap();
        let (samples, bad) = make_list(dir.path());
        let list: String = samples.iter().map(|s| format!("{} {}\n", s.path.file_name().unwrap().to_string_lossy(), s.label)).collect();
        std::fs::write(dir.path().join("list.txt"), list).unwrap();
        let (run, text) = check_data(dir.path(), &[]);
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
        assert_eq!(text.lines().count(), bad.len(), "{text}");
        for b in bad {
            assert!(text.lines().any(|l| l.split('\t').next().unwrap().ends_with(b)), "{b} missing from {text}");
        }
        let why = |name: &str| text.lines().find(|l| l.contains(name)).and_then(|l| l.split('\t').nth(1)).unwrap_or("");
        assert!(why("audio.wav").starts_with("no video stream in it (it holds only audio/"), "{text}");
        assert_eq!(why("empty.mp4"), "empty file (0 bytes)", "{text}");
        assert!(String::from_utf8_lossy(&run.stdout).contains("2 of 7 videos readable"));
    }

    /// Runs `trainer check-data` on `dir/list.txt` (paths relative to
    /// `dir`); its output and the bad-video report.
    fn check_data(dir: &Path, env: &[(&str, &str)]) -> (std::process::Output, String) {
        let out = dir.join("bad.txt");
        let run = std::process::Command::new(env!("CARGO_BIN_EXE_trainer"))
            .envs(env.iter().copied())
            .args(["check-data", "--list"])
            .arg(dir.join("list.txt"))
            .arg("--root")
            .arg(dir)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        let text = std::fs::read_to_string(&out).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&run.stderr)));
        (run, text)
    }

    /// A video stream nothing installed can decode is named as such, not
    /// taken for a file without video (Theora with its decoders ranked
    /// out, as on a machine without them).
    #[test]
    fn a_missing_decoder_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let video = dir.path().join("theora.ogv");
        let status = std::process::Command::new("gst-launch-1.0")
            .args([
                "-q",
                "videotestsrc",
                "num-buffers=10",
                "!",
                "video/x-raw,width=64,height=48",
                "!",
                "theoraenc",
                "!",
                "oggmux",
                "!",
                "filesink",
            ])
            .arg(format!("location={}", video.display()))
            .status()
            .unwrap();
        assert!(status.success());
        std::fs::write(dir.path().join("list.txt"), "theora.ogv 0\n").unwrap();
        let (run, text) = check_data(dir.path(), &[("GST_PLUGIN_FEATURE_RANK", "theoradec:NONE,avdec_theora:NONE")]);
        assert!(text.contains("no decoder installed for video/x-theora"), "{text}");
        // Nothing readable at all fails the command, the report still written.
        assert!(!run.status.success());
        let err = String::from_utf8_lossy(&run.stderr);
        assert!(err.contains("none of the 1 videos") && err.contains("list.txt"), "{err}");
    }
}
