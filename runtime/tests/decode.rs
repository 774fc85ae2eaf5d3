//! Decoding the real clips of `data/videos` and refusing bad input.
#![cfg(feature = "gstreamer")]

use std::path::PathBuf;

use runtime::decode::decode_all;

fn shared(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/videos").join(name).display().to_string()
}

#[test]
fn decodes_every_shared_clip_with_its_frame_count_and_size() {
    for (name, frames, w, h) in [
        ("archery_paddlevideo_example.avi", 131, 320, 240),
        ("mmaction2_test.avi", 165, 320, 240),
        ("mmaction2_demo.mp4", 280, 340, 256),
        ("mmaction2_test.mp4", 300, 340, 256),
    ] {
        let video = decode_all(&shared(name)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(video.frames.len(), frames, "{name}");
        let f = &video.frames[frames / 2];
        assert_eq!((f.width, f.height), (w, h), "{name}");
        assert_eq!(f.data.len(), w * h * 3, "{name}");
        assert!(video.fps.unwrap_or(0.0) > 1.0, "{name}");
        // Real pictures, not blank buffers.
        let mean = f.data.iter().map(|&v| v as f64).sum::<f64>() / f.data.len() as f64;
        assert!(mean > 10.0 && mean < 245.0, "{name}: mean pixel {mean}");
    }
}

#[test]
fn missing_file_is_named() {
    let err = decode_all("/nonexistent/clip.mp4").unwrap_err().to_string();
    assert!(err.contains("/nonexistent/clip.mp4") && err.contains("no such file"), "{err}");
}

#[test]
fn a_file_that_is_not_a_video_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.mp4");
    std::fs::write(&path, b"this is not a video at all, just some text").unwrap();
    let err = decode_all(&path.display().to_string()).unwrap_err().to_string();
    assert!(err.contains("notes.mp4"), "{err}");
    let empty = dir.path().join("empty.avi");
    std::fs::write(&empty, b"").unwrap();
    let err = decode_all(&empty.display().to_string()).unwrap_err().to_string();
    assert!(err.contains("empty.avi"), "{err}");
}

#[test]
fn seeking_delivers_the_same_frames_as_decoding_everything() {
    use runtime::decode::VideoReader;
    for (name, frames) in [("archery_paddlevideo_example.avi", 131), ("mmaction2_test.mp4", 300), ("mmaction2_test.avi", 165)] {
        let all = decode_all(&shared(name)).unwrap_or_else(|e| panic!("{e}")).frames;
        let mut reader = VideoReader::open(&shared(name)).unwrap_or_else(|e| panic!("{e}"));
        let probe = reader.probe().clone();
        assert!(probe.seekable, "{name}");
        // From the container's index or duration x fps: an AVI with packed
        // B-frames states one frame fewer than it decodes to.
        let stated = probe.frame_count.unwrap_or_else(|| panic!("{name}: no frame count: {probe:?}"));
        assert!(stated.abs_diff(frames) <= 1, "{name}: {probe:?}");
        // Two runs far apart (two seeks) and one frame near the end.
        let wanted: Vec<usize> = (10..20).chain(90..95).chain([frames - 2]).collect();
        let mut got = Vec::new();
        reader
            .read_frames(&wanted, |i, f| {
                got.push((i, f.data.clone()));
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), wanted, "{name}");
        for (i, data) in &got {
            let same: Vec<usize> = (0..all.len()).filter(|&j| all[j].data == *data).collect();
            assert!(data == &all[*i].data, "{name}: frame {i} differs from the fully decoded one (equal to {same:?})");
        }
    }
}
