//! The synthetic motion set: deterministic, balanced, labelled only by
//! motion, and written as real H.264 MP4 files that decode back to the
//! clips rendered in memory.

use trainer::synth::{CLASSES, Split, SynthSpec, label_of, render_clip};

const SPEC: SynthSpec = SynthSpec { size: 32, frames: 12, seed: 3 };

fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| (x as f64 - y as f64).abs()).sum::<f64>() / a.len() as f64
}

#[test]
fn clips_are_deterministic_balanced_and_sized() {
    let a = render_clip(&SPEC, Split::Train, 4);
    let b = render_clip(&SPEC, Split::Train, 4);
    assert_eq!(a.frames, b.frames);
    assert_eq!(a.frames.len(), 12);
    assert!(a.frames.iter().all(|f| f.len() == 32 * 32 * 3));
    let counts = (0..CLASSES.len() * 3).fold(vec![0; CLASSES.len()], |mut c, i| {
        c[label_of(i)] += 1;
        c
    });
    assert!(counts.iter().all(|&c| c == 3));
}

#[test]
fn classes_differ_in_time_not_in_a_frame() {
    // "still" does not change apart from noise; every moving class does.
    let spec = SynthSpec { size: 48, frames: 24, seed: 11 };
    for i in 0..CLASSES.len() {
        let clip = render_clip(&spec, Split::Train, i);
        let change = mean_abs_diff(&clip.frames[0], &clip.frames[23]);
        if CLASSES[clip.label] == "still" {
            assert!(change < 12.0, "still clip changed by {change}");
        } else {
            assert!(change > 0.5, "{} clip barely changed ({change})", CLASSES[clip.label]);
        }
    }
    // First frames of all classes look alike on average: no class has its
    // own colours or brightness.
    let brightness: Vec<f64> = (0..CLASSES.len() * 8)
        .map(|i| {
            let c = render_clip(&spec, Split::Train, i);
            c.frames[0].iter().map(|&v| v as f64).sum::<f64>() / c.frames[0].len() as f64
        })
        .collect();
    let per_class: Vec<f64> = (0..CLASSES.len()).map(|c| brightness.iter().skip(c).step_by(CLASSES.len()).sum::<f64>() / 8.0).collect();
    let spread = per_class.iter().cloned().fold(f64::MIN, f64::max) - per_class.iter().cloned().fold(f64::MAX, f64::min);
    assert!(spread < 60.0, "class brightness spread {spread}: {per_class:?}");
}

#[cfg(feature = "video")]
#[test]
fn written_mp4s_decode_back_to_the_rendered_clips() {
    use runtime::sampling::ClipPosition;
    use trainer::data::source::{Source, Temporal};
    use trainer::data::{Sample, read_list};
    use trainer::recipe::ListFormat;

    let dir = tempfile::tempdir().unwrap();
    let w = trainer::synth::write::write_dataset(dir.path(), &SPEC, 12, 3, 2).unwrap();
    assert_eq!(w.clips, 15);
    let train = read_list(&w.train_list, Some(dir.path()), ListFormat::PathLabel, CLASSES.len()).unwrap();
    assert_eq!(train.len(), 12);
    assert_eq!(train[1], Sample { path: dir.path().join("train/move_left/000001.mp4"), label: 1 });
    let labels = std::fs::read_to_string(&w.labels).unwrap();
    assert_eq!(labels.lines().next(), Some("0 move_right"));
    assert_eq!(labels.lines().count(), CLASSES.len());

    // Every frame of clip 1, decoded from the file, against the render.
    let source = Source::List(train);
    let temporal = Temporal { num_frames: 12, sampling_rate: 1, target_fps: 30.0 };
    let clip = source.clips(1, temporal, &[ClipPosition::View { index: 0, count: 1 }]).unwrap().remove(0);
    assert_eq!((clip.frames, clip.height, clip.width), (12, 32, 32));
    let rendered: Vec<u8> = render_clip(&SPEC, Split::Train, 1).frames.concat();
    // Videos decode to RGBx: the fourth byte of each pixel is padding.
    let rgb: Vec<u8> = clip.data.chunks_exact(clip.packing.bytes()).flat_map(|p| [p[0], p[1], p[2]]).collect();
    let diff = mean_abs_diff(&rgb, &rendered);
    assert!(diff < 12.0, "decoded clip differs from the render by {diff} per channel");
}
