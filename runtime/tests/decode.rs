//! Decoding the real clips of `data/videos` and refusing bad input.
#![cfg(feature = "gstreamer")]

use std::path::{Path, PathBuf};

use runtime::decode::decode_all;

fn shared(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/videos").join(name)
}

#[test]
fn decodes_every_shared_clip_with_its_frame_count_and_size() {
    for (name, frames, w, h) in [
        ("archery_paddlevideo_example.avi", 131, 320, 240),
        ("mmaction2_test.avi", 165, 320, 240),
        ("mmaction2_demo.mp4", 280, 340, 256),
        ("mmaction2_test.mp4", 300, 340, 256),
    ] {
        let video = decode_all(shared(name)).unwrap_or_else(|e| panic!("{e}"));
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
    let err = decode_all(&path).unwrap_err().to_string();
    assert!(err.contains("notes.mp4"), "{err}");
    let empty = dir.path().join("empty.avi");
    std::fs::write(&empty, b"").unwrap();
    let err = decode_all(&empty).unwrap_err().to_string();
    assert!(err.contains("empty.avi"), "{err}");
}

/// Packed RGB of a frame read as RGBx.
fn rgb_of(f: &runtime::decode::Frame<'_>) -> Vec<u8> {
    (0..f.height).flat_map(|y| f.row(y).chunks_exact(4).flat_map(|px| px[..3].to_vec()).collect::<Vec<u8>>()).collect()
}

#[test]
fn seeking_delivers_the_same_frames_as_decoding_everything() {
    use runtime::decode::read_frames;
    for (name, frames) in [("archery_paddlevideo_example.avi", 131), ("mmaction2_test.mp4", 300), ("mmaction2_test.avi", 165)] {
        let all = decode_all(shared(name)).unwrap_or_else(|e| panic!("{e}")).frames;
        // Two runs far apart (two seeks) and one frame near the end.
        let wanted: Vec<usize> = (10..20).chain(90..95).chain([frames - 2]).collect();
        let mut got = Vec::new();
        let read = read_frames(
            shared(name),
            |stated, _| {
                // From the container's duration x fps: an AVI with packed
                // B-frames states one frame fewer than it decodes to.
                assert!(stated.abs_diff(frames) <= 1, "{name}: {stated} frames");
                wanted.clone()
            },
            |f| {
                got.push((f.index, rgb_of(&f)));
                Ok(())
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        // Runs more than two seconds apart get a seek each.
        assert!(read.seeks >= 2, "{name}: {read:?}");
        assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), wanted, "{name}");
        for (i, data) in &got {
            let same: Vec<usize> = (0..all.len()).filter(|&j| all[j].data == *data).collect();
            assert!(data == &all[*i].data, "{name}: frame {i} differs from the fully decoded one (equal to {same:?})");
        }
    }
}

/// A 40 s H.264 stream with key frames 10 s apart, in MP4 and in MPEG-TS
/// (the same packets), written to `dir`.
pub fn long_mp4_and_ts(dir: &std::path::Path) -> (PathBuf, PathBuf) {
    let (mp4, ts) = (dir.join("long.mp4"), dir.join("long.ts"));
    let args = format!(
        "videotestsrc pattern=ball num-buffers=1200 ! video/x-raw,format=I420,width=160,height=120,framerate=30/1 ! \
         x264enc key-int-max=300 bframes=2 speed-preset=ultrafast threads=1 ! tee name=t \
         t. ! queue ! h264parse ! mp4mux ! filesink location={} t. ! queue ! h264parse ! mpegtsmux ! filesink location={}",
        mp4.display(),
        ts.display()
    );
    let out = std::process::Command::new("gst-launch-1.0").arg("-q").args(args.split_whitespace()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (mp4, ts)
}

/// Views far apart in a long MPEG-TS need one seek each, and the demuxer
/// (without an index) may land them between key frames: the frames read
/// are still the MP4's, bit for bit.
#[test]
fn far_apart_frames_of_a_long_mpeg_ts_are_the_mp4s() {
    use runtime::decode::read_frames;
    let dir = tempfile::tempdir().unwrap();
    let (mp4, ts) = long_mp4_and_ts(dir.path());
    let wanted: Vec<usize> = (0..10).flat_map(|v| (v * 120 + 50..v * 120 + 58).step_by(2)).collect();
    let read = |video: &PathBuf| {
        let mut got = Vec::new();
        let r = read_frames(
            video,
            |_, _| wanted.clone(),
            |f| {
                got.push((f.index, rgb_of(&f)));
                Ok(())
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        (r, got)
    };
    let (from_mp4, frames_mp4) = read(&mp4);
    assert_eq!(from_mp4.seeks, 10, "{from_mp4:?}");
    let (_, frames_ts) = read(&ts);
    assert_eq!(frames_mp4.iter().map(|g| g.0).collect::<Vec<_>>(), wanted);
    assert_eq!(frames_ts.len(), frames_mp4.len());
    for ((i, a), (j, b)) in frames_mp4.iter().zip(&frames_ts) {
        assert_eq!(i, j);
        assert!(a == b, "frame {i} differs between the MP4 and the MPEG-TS");
    }
}

/// Seeking, and leaving unsampled frames undecoded, gives bit for bit
/// the frames a full decode gives: H.264 with B-frames, the sampled
/// frames either the reference frames or the skippable ones, after the
/// first key frame or a later one; MPEG-4 Part 2 in AVI with packed
/// B-frames (buffers without presentation times, numbered by counting)
/// and without. (Checked once against PyAV: the H.264 numbering is
/// PyAV's frame for frame; in the packed AVI it is the decoder's display
/// order, where PyAV's timestamps, which PySlowFast sorts by, swap each
/// B-frame with its neighbour.)
#[test]
fn seeking_gives_the_frames_a_full_decode_gives() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/videos");
    for (name, starts) in [
        ("mmaction2_test.mp4", [150, 151]),
        ("mmaction2_demo.mp4", [90, 201]),
        ("mmaction2_test.avi", [60, 97]),
        ("archery_paddlevideo_example.avi", [30, 61]),
    ] {
        let video = dir.join(name);
        let all = runtime::decode::decode_clips(&video, |total, _| vec![(0..total).collect()]).unwrap().remove(0);
        let probe = runtime::decode::probe(&video).unwrap();
        assert!(probe.frames.abs_diff(all.frames) <= 2, "{name}: {} vs {}", probe.frames, all.frames);
        let frame = all.height * all.width * all.packing.bytes();
        for start in starts {
            let want: Vec<usize> = (start..start + 64).step_by(2).collect();
            let clip = runtime::decode::decode_clips(&video, |_, _| vec![want.clone()]).unwrap().remove(0);
            for (k, &i) in want.iter().enumerate() {
                let same = |j: usize| clip.data[k * frame..(k + 1) * frame] == all.data[j * frame..(j + 1) * frame];
                if !same(i) {
                    let found: Vec<usize> = (0..all.frames).filter(|&j| same(j)).collect();
                    let diff = |j: usize| {
                        clip.data[k * frame..(k + 1) * frame]
                            .iter()
                            .zip(&all.data[j * frame..(j + 1) * frame])
                            .map(|(a, b)| a.abs_diff(*b) as u64)
                            .sum::<u64>() as f64
                            / frame as f64
                    };
                    let near: Vec<(usize, f64)> = (i.saturating_sub(3)..i + 4).map(|j| (j, diff(j))).collect();
                    panic!(
                        "{name}: frame {i} (clip frame {k}) differs after seeking; equal to full-decode frames {found:?}; mean abs difference to its neighbours {near:?}"
                    );
                }
            }
        }
    }
    let mp4 = dir.join("mmaction2_test.mp4");
    let all = runtime::decode::decode_clips(&mp4, |total, _| vec![(0..total).collect()]).unwrap().remove(0);
    assert!(all.frames >= 290, "{} frames", all.frames);
}

fn gst_launch_args(args: &[&str]) {
    let status = std::process::Command::new("gst-launch-1.0").arg("-q").args(args).status().unwrap();
    assert!(status.success(), "gst-launch-1.0 {args:?}");
}

/// The same H.264 remuxed into MPEG-TS (which exposes its streams
/// before their caps are settled, and seeks without an index, landing
/// between key frames) and Matroska gives the MP4's clip, bit for bit.
#[test]
fn remuxed_streams_give_the_frames_of_the_mp4() {
    let mp4 = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/videos/mmaction2_test.mp4");
    let dir = tempfile::tempdir().unwrap();
    let want: Vec<usize> = (100..164).step_by(2).collect();
    let clip = |path: &Path| runtime::decode::decode_clips(path, |_, _| vec![want.clone()]).unwrap().remove(0);
    let reference = clip(&mp4);
    for (muxer, name) in [("mpegtsmux", "remuxed.ts"), ("matroskamux", "remuxed.mkv")] {
        let out = dir.path().join(name);
        let (src, sink) = (format!("location={}", mp4.display()), format!("location={}", out.display()));
        gst_launch_args(&["filesrc", &src, "!", "qtdemux", "!", "h264parse", "!", muxer, "!", "filesink", &sink]);
        let got = clip(&out);
        assert_eq!((got.frames, got.width, got.height), (reference.frames, reference.width, reference.height), "{name}");
        assert!(got.data == reference.data, "the {name} clip differs from the MP4's");
    }
}

/// VP8 in WebM goes to the VP8 decoder, not to the higher-ranked one
/// for VP8 with an alpha channel, whose caps it also intersects.
#[test]
fn webm_vp8_is_decoded() {
    let dir = tempfile::tempdir().unwrap();
    let webm = dir.path().join("pattern.webm");
    let sink = format!("location={}", webm.display());
    let caps = "video/x-raw,width=96,height=64,framerate=30/1";
    gst_launch_args(&["videotestsrc", "num-buffers=90", "!", caps, "!", "vp8enc", "deadline=1", "!", "webmmux", "!", "filesink", &sink]);
    let want: Vec<usize> = (20..84).step_by(2).collect();
    let got = runtime::decode::decode_clips(&webm, |total, _| {
        assert_eq!(total, 90);
        vec![want.clone()]
    })
    .unwrap()
    .remove(0);
    assert_eq!((got.frames, got.width, got.height), (32, 96, 64));
}
