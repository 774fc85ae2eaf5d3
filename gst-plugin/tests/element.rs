//! `gst_check::Harness` tests of the `slowfast` element on the tiny model
//! the runtime tests use.

use std::path::PathBuf;
use std::sync::Once;

use gst::glib;
use gst::prelude::*;
use gst_check::Harness;

fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().expect("gst init");
        gstslowfast::plugin_register_static().expect("register slowfast");
    });
}

fn model() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../runtime/tests/fixtures/tiny_8x8.onnx")
}

const WIDTH: i32 = 96;
const HEIGHT: i32 = 64;

fn caps(format: &str, width: i32, height: i32) -> gst::Caps {
    gst::Caps::builder("video/x-raw")
        .field("format", format)
        .field("width", width)
        .field("height", height)
        .field("framerate", gst::Fraction::new(30, 1))
        .build()
}

/// A harness around one element with a bus of its own (a lone element has
/// none, and its messages are what several tests read).
fn harness(props: &[(&str, &dyn ToValue)]) -> (Harness, gst::Bus) {
    init();
    // Configured before the harness starts it: start() loads the model.
    let element = gst::ElementFactory::make("slowfast").build().expect("element");
    element.set_property("model", model().display().to_string());
    element.set_property_from_value("backend", &glib_enum_cpu(&element));
    element.set_property("threads", 1u32);
    for (name, value) in props {
        element.set_property_from_value(name, &value.to_value());
    }
    let bus = gst::Bus::new();
    element.set_bus(Some(&bus));
    let mut h = Harness::with_element(&element, Some("sink"), Some("src"));
    h.set_src_caps(caps("I420", WIDTH, HEIGHT));
    (h, bus)
}

fn glib_enum_cpu(element: &gst::Element) -> glib::Value {
    let pspec = element.find_property("backend").expect("backend property");
    let class = glib::EnumClass::with_type(pspec.value_type()).expect("enum");
    class.to_value_by_nick("cpu").expect("cpu backend")
}

/// Frames one window spans at 30 fps, from the model's metadata.
fn window() -> u64 {
    let info = runtime::model_info::ModelInfo::from_file(&model()).expect("tiny model");
    runtime::sampling::clip_size(info.fast_frames, info.sampling_rate, 30.0, info.target_fps).ceil() as u64
}

/// A frame whose content moves with `i`, so clips are not constant.
fn frame(i: u64, format_size: usize) -> gst::Buffer {
    let mut data = vec![0u8; format_size];
    for (k, v) in data.iter_mut().enumerate() {
        *v = ((k as u64 * 7 + i * 13) % 251) as u8;
    }
    let mut buf = gst::Buffer::from_mut_slice(data);
    {
        let b = buf.get_mut().expect("fresh buffer");
        b.set_pts(gst::ClockTime::from_mseconds(i * 1000 / 30));
        b.set_duration(gst::ClockTime::from_nseconds(1_000_000_000 / 30));
    }
    buf
}

fn i420_size(w: i32, h: i32) -> usize {
    let (w, h) = (w as usize, h as usize);
    w * h + 2 * w.div_ceil(2) * h.div_ceil(2)
}

fn predictions_on(bus: &gst::Bus) -> Vec<gst::Structure> {
    let mut out = Vec::new();
    while let Some(msg) = bus.pop() {
        if let gst::MessageView::Element(e) = msg.view()
            && let Some(s) = e.structure()
            && s.name() == "slowfast"
        {
            out.push(s.to_owned());
        }
    }
    out
}

fn errors_on(bus: &gst::Bus) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(msg) = bus.pop() {
        if let gst::MessageView::Error(e) = msg.view() {
            out.push(format!("{} ({})", e.error(), e.debug().unwrap_or_default()));
        }
    }
    out
}

#[test]
fn frames_pass_unchanged_and_predictions_arrive_with_rois() {
    let (mut h, bus) = harness(&[("stride", &8u32)]);
    let size = i420_size(WIDTH, HEIGHT);
    let mut first = None;
    for i in 0..120 {
        let input = frame(i, size);
        let expected = input.map_readable().unwrap().as_slice().to_vec();
        let out = h.push_and_pull(input).expect("buffer out");
        assert_eq!(out.map_readable().unwrap().as_slice(), expected.as_slice(), "frame {i} changed");
        assert_eq!(out.pts(), Some(gst::ClockTime::from_mseconds(i * 1000 / 30)));
        let roi = out.meta::<gst_video::VideoRegionOfInterestMeta>();
        if first.is_some() {
            // Once a prediction exists, every buffer carries the latest one.
            let roi = roi.unwrap_or_else(|| panic!("frame {i} carries no prediction"));
            assert_eq!(roi.roi_type(), "slowfast");
            assert_eq!(roi.rect(), (0, 0, WIDTH as u32, HEIGHT as u32));
            let p = roi.param("slowfast").expect("parameter structure");
            assert_eq!(p.get::<gst::Array>("scores").unwrap().len(), 5);
            assert_eq!(p.get::<gst::Array>("labels").unwrap().len(), 5);
        } else if i + 1 == window() {
            // The first window is full: wait for its prediction.
            first = Some(wait_for_prediction(&bus));
        }
    }
    h.push_event(gst::event::Eos::new());
    let first = first.expect("no prediction");
    let start = first.get::<u64>("clip-start").unwrap();
    let end = first.get::<u64>("clip-end").unwrap();
    assert_eq!((start, end), (0, (window() - 1) * 1000 / 30 * 1_000_000), "clip PTS range");
    let messages = 1 + predictions_on(&bus).len() as u64;
    let element = h.element().unwrap();
    let made: u64 = element.property("predictions");
    let skipped: u64 = element.property("skipped");
    assert_eq!(made, messages);
    // Windows due: the first full one, then one every 8 frames.
    assert_eq!(made + skipped, (120 - window()) / 8 + 1);
    assert_eq!(element.property::<Option<String>>("provider").as_deref(), Some("CPU"));
}

#[test]
fn eos_waits_for_the_pending_prediction() {
    let (mut h, bus) = harness(&[("stride", &1000u32)]);
    let size = i420_size(WIDTH, HEIGHT);
    // Exactly one full window: the prediction is due on the last frame.
    let element = h.element().unwrap();
    for i in 0..window() {
        h.push(frame(i, size)).unwrap();
    }
    assert!(h.push_event(gst::event::Eos::new()));
    // EOS is downstream only after the prediction was posted.
    loop {
        match h.pull_event() {
            Ok(ev) if ev.type_() == gst::EventType::Eos => break,
            Ok(_) => continue,
            Err(_) => panic!("no EOS"),
        }
    }
    assert_eq!(predictions_on(&bus).len(), 1);
    assert_eq!(element.property::<u64>("predictions"), 1);
}

/// The predictions of a run whose window was broken at the frame stamped
/// `break_pts`: there must be some (the frames after the break fill a
/// window: the positive control), and none may take a frame from before.
fn assert_predictions_only_after(bus: &gst::Bus, break_pts: gst::ClockTime) {
    let predictions = predictions_on(bus);
    assert!(!predictions.is_empty(), "no prediction even from the full window after the break");
    for p in &predictions {
        let start = p.get::<u64>("clip-start").expect("clip-start");
        assert!(start >= break_pts.nseconds(), "a clip from {start} ns spans the break at {break_pts}");
    }
}

#[test]
fn caps_change_starts_a_new_window() {
    let (mut h, bus) = harness(&[("stride", &1u32), ("max-pending", &64u32)]);
    let half = window() - 4;
    for i in 0..half {
        h.push(frame(i, i420_size(WIDTH, HEIGHT))).unwrap();
    }
    h.set_src_caps(caps("I420", 128, 96));
    // The old size does not fill a window; the new one does, later.
    for i in half..2 * half + window() {
        h.push(frame(i, i420_size(128, 96))).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    assert_predictions_only_after(&bus, frame(half, 1).pts().unwrap());
}

#[test]
fn pts_gap_starts_a_new_window() {
    let (mut h, bus) = harness(&[("stride", &1u32), ("max-pending", &64u32)]);
    let size = i420_size(WIDTH, HEIGHT);
    let half = window() - 4;
    for i in (0..half).chain(1000..1000 + half + window()) {
        h.push(frame(i, size)).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    assert_predictions_only_after(&bus, frame(1000, size).pts().unwrap());
}

/// Blocks until the element posts a prediction (inference is asynchronous).
fn wait_for_prediction(bus: &gst::Bus) -> gst::Structure {
    let msg = bus.timed_pop_filtered(gst::ClockTime::from_seconds(30), &[gst::MessageType::Element]).expect("no prediction within 30 s");
    msg.structure().expect("message structure").to_owned()
}

#[test]
fn draw_burns_the_label_into_the_frame() {
    let (mut h, bus) = harness(&[("stride", &1000u32), ("draw", &true)]);
    let size = i420_size(WIDTH, HEIGHT);
    for i in 0..window() {
        h.push_and_pull(frame(i, size)).unwrap();
    }
    assert_eq!(wait_for_prediction(&bus).name(), "slowfast");
    for i in window()..window() + 5 {
        let input = frame(i, size);
        let expected = input.map_readable().unwrap().as_slice().to_vec();
        let out = h.push_and_pull(input).unwrap();
        assert!(out.meta::<gst_video::VideoRegionOfInterestMeta>().is_some(), "frame {i} has no prediction");
        let got = out.map_readable().unwrap().as_slice().to_vec();
        assert_ne!(got, expected, "frame {i} carries a prediction but nothing was drawn");
        // Only the top-left box changes: the last luma row is intact.
        let last_row = (HEIGHT as usize - 1) * WIDTH as usize;
        assert_eq!(got[last_row..last_row + WIDTH as usize], expected[last_row..last_row + WIDTH as usize]);
    }
}

#[test]
fn accepts_rgb_nv12_rgba_bgrx() {
    for (format, bpp_size) in [
        ("RGB", (WIDTH * 3 * HEIGHT) as usize),
        ("RGBA", (WIDTH * 4 * HEIGHT) as usize),
        ("BGRx", (WIDTH * 4 * HEIGHT) as usize),
        ("NV12", i420_size(WIDTH, HEIGHT)),
    ] {
        let (mut h, bus) = harness(&[("stride", &4u32)]);
        h.set_src_caps(caps(format, WIDTH, HEIGHT));
        for i in 0..72 {
            h.push_and_pull(frame(i, bpp_size)).unwrap_or_else(|e| panic!("{format}: {e:?}"));
        }
        h.push_event(gst::event::Eos::new());
        assert!(!predictions_on(&bus).is_empty(), "{format}: no prediction");
    }
}

fn refuses_to_start(props: &[(&str, &dyn ToValue)], expect: &[&str]) {
    init();
    let element = gst::ElementFactory::make("slowfast").build().unwrap();
    element.set_property("model", model().display().to_string());
    for (name, value) in props {
        element.set_property_from_value(name, &value.to_value());
    }
    let bus = gst::Bus::new();
    element.set_bus(Some(&bus));
    assert!(element.set_state(gst::State::Paused).is_err(), "state change accepted");
    let errors = errors_on(&bus).join("\n");
    for e in expect {
        assert!(errors.contains(e), "error {errors:?} does not mention {e:?}");
    }
    let _ = element.set_state(gst::State::Null);
}

#[test]
fn missing_model_refuses_the_state_change() {
    refuses_to_start(&[("model", &"/nonexistent/model.onnx")], &["/nonexistent/model.onnx", "no such file"]);
}

#[test]
fn broken_model_refuses_the_state_change() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.onnx");
    std::fs::write(&path, b"definitely not protobuf").unwrap();
    refuses_to_start(&[("model", &path.display().to_string())], &["broken.onnx"]);
}

#[test]
fn int8_without_a_sibling_refuses_the_state_change() {
    refuses_to_start(&[("int8", &true)], &["tiny_8x8_int8.onnx", "trainer export", "--int8"]);
}

/// `int8=true` loads the bundled demo model's INT8 sibling, which predicts
/// like the fp32 model on the same frames.
#[test]
fn int8_loads_the_sibling_of_the_demo_model() {
    let demo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/demo/model.onnx");
    let frames: Vec<(u64, gst::ClockTime)> = (0..120).map(|i| (i, gst::ClockTime::from_mseconds(i * 1000 / 30))).collect();
    let props = |int8: bool| -> Vec<(&'static str, Box<dyn ToValue>)> {
        vec![
            ("model", Box::new(demo.display().to_string())),
            ("int8", Box::new(int8)),
            ("stride", Box::new(16u32)),
            ("block", Box::new(true)),
        ]
    };
    let run = |int8: bool| {
        let owned = props(int8);
        let refs: Vec<(&str, &dyn ToValue)> = owned.iter().map(|(n, v)| (*n, v.as_ref() as &dyn ToValue)).collect();
        predictions_for(&refs, &frames).0
    };
    let (fp32, int8) = (run(false), run(true));
    assert!(!fp32.is_empty() && fp32.len() == int8.len(), "{} against {}", fp32.len(), int8.len());
    let scores = |s: &gst::Structure| s.get::<gst::Array>("scores").unwrap().iter().map(|v| v.get::<f64>().unwrap()).collect::<Vec<_>>();
    let gap =
        fp32.iter().zip(&int8).flat_map(|(a, b)| scores(a).into_iter().zip(scores(b)).map(|(x, y)| (x - y).abs())).fold(0.0, f64::max);
    assert!(gap > 0.0 && gap < 0.1, "largest gap in the top scores {gap}");
}

#[test]
fn labels_that_do_not_match_refuse_the_state_change() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("labels.txt");
    std::fs::write(&path, "only\ntwo\n").unwrap();
    refuses_to_start(&[("labels", &path.display().to_string())], &["labels.txt", "2 classes"]);
}

#[test]
fn strict_mode_without_the_provider_refuses_the_state_change() {
    init();
    let element = gst::ElementFactory::make("slowfast").build().unwrap();
    let pspec = element.find_property("backend").unwrap();
    let class = glib::EnumClass::with_type(pspec.value_type()).unwrap();
    let cuda = class.to_value_by_nick("cuda").unwrap();
    refuses_to_start(&[("backend", &cuda), ("strict", &true)], &["CUDA"]);
}

#[test]
fn two_elements_share_one_engine_and_both_predict() {
    let (mut a, bus_a) = harness(&[("stride", &8u32)]);
    let (mut b, bus_b) = harness(&[("stride", &8u32)]);
    let size = i420_size(WIDTH, HEIGHT);
    for i in 0..80 {
        a.push(frame(i, size)).unwrap();
        b.push(frame(i + 5, size)).unwrap();
    }
    a.push_event(gst::event::Eos::new());
    b.push_event(gst::event::Eos::new());
    assert!(!predictions_on(&bus_a).is_empty());
    assert!(!predictions_on(&bus_b).is_empty());
}

#[test]
fn restarts_after_going_back_to_null() {
    let (mut h, bus) = harness(&[("stride", &8u32)]);
    let size = i420_size(WIDTH, HEIGHT);
    for i in 0..70 {
        h.push(frame(i, size)).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    let element = h.element().unwrap();
    let before = predictions_on(&bus).len();
    assert!(before > 0);
    element.set_state(gst::State::Null).unwrap();
    element.set_state(gst::State::Playing).unwrap();
    assert_eq!(element.property::<u64>("predictions"), 0);
}

#[test]
fn flush_starts_a_new_window() {
    let (mut h, bus) = harness(&[("stride", &1u32)]);
    let size = i420_size(WIDTH, HEIGHT);
    let half = window() - 4;
    for i in 0..half {
        h.push(frame(i, size)).unwrap();
    }
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    h.push_event(gst::event::Segment::new(&gst::FormattedSegment::<gst::ClockTime>::new()));
    for i in half..2 * half + window() {
        h.push(frame(i, size)).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    assert_predictions_only_after(&bus, frame(half, size).pts().unwrap());
}

/// Frame `i` of [`frame`] stamped `pts` instead of its place at 30 fps.
fn frame_at(i: u64, pts: gst::ClockTime, size: usize) -> gst::Buffer {
    let mut buf = frame(i, size);
    buf.get_mut().expect("fresh buffer").set_pts(pts);
    buf
}

/// Pushes `frames` (index, PTS) and returns the predictions posted.
fn predictions_for(props: &[(&str, &dyn ToValue)], frames: &[(u64, gst::ClockTime)]) -> (Vec<gst::Structure>, gst::Element) {
    let (mut h, bus) = harness(props);
    let size = i420_size(WIDTH, HEIGHT);
    for &(i, pts) in frames {
        h.push(frame_at(i, pts, size)).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    (predictions_on(&bus), h.element().unwrap())
}

/// Clip span of a prediction, in ticks of the model's 30 fps.
fn span_ticks(p: &gst::Structure) -> u64 {
    let (start, end) = (p.get::<u64>("clip-start").unwrap(), p.get::<u64>("clip-end").unwrap());
    ((end - start) as f64 * 30.0 / 1e9).round() as u64
}

#[test]
fn frames_dropped_at_random_give_predictions_on_time() {
    // A 30 fps camera losing each frame with probability 1/2 (caps still
    // say 30 fps): 8 s of it.
    let mut rng = 99u64;
    let frames: Vec<(u64, gst::ClockTime)> = (0..240u64)
        .filter(|_| {
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            rng >> 63 == 1
        })
        .map(|i| (i, gst::ClockTime::from_nseconds(i * 1_000_000_000 / 30)))
        .collect();
    assert!(frames.len() < 150, "{} frames kept", frames.len());
    let (predictions, element) = predictions_for(&[("stride", &16u32), ("block", &true)], &frames);
    // Windows span the model's 64 ticks of time and come every 16 ticks
    // from the first full one, whatever the drops.
    let first = frames[0].0;
    let last = frames.last().unwrap().0;
    let due = (last - first + 1 - window()) / 16 + 1;
    assert_eq!(predictions.len() as u64, due, "{} predictions", predictions.len());
    assert_eq!(element.property::<u64>("skipped"), 0);
    for p in &predictions {
        assert_eq!(span_ticks(p), window() - 1, "{p}");
    }
}

#[test]
fn a_2_fps_stream_into_a_30_fps_model_gives_predictions() {
    // Caps say 30 fps (as the sparse files seen say 15), frames come every
    // 0.5 s for 10 s; then the same with a variable rate in the caps.
    let frames: Vec<(u64, gst::ClockTime)> = (0..21u64).map(|i| (i, gst::ClockTime::from_mseconds(i * 500))).collect();
    for rate in [gst::Fraction::new(30, 1), gst::Fraction::new(0, 1)] {
        let (mut h, bus) = harness(&[("stride", &16u32), ("block", &true)]);
        h.set_src_caps(
            gst::Caps::builder("video/x-raw")
                .field("format", "I420")
                .field("width", WIDTH)
                .field("height", HEIGHT)
                .field("framerate", rate)
                .build(),
        );
        let size = i420_size(WIDTH, HEIGHT);
        for &(i, pts) in &frames {
            h.push(frame_at(i, pts, size)).unwrap();
        }
        h.push_event(gst::event::Eos::new());
        let predictions = predictions_on(&bus);
        // 10 s are 300 ticks: windows end on ticks 63 + 16k up to 287, each
        // made due by the frame at or just after it (frames are 15 ticks
        // apart, so none makes two due).
        assert_eq!(predictions.len(), 15, "{rate}: {} predictions", predictions.len());
        for p in &predictions {
            assert_eq!(span_ticks(p), window() - 1, "{p}");
        }
    }
}

#[test]
fn discont_flag_starts_a_new_window() {
    let (mut h, bus) = harness(&[("stride", &1u32), ("max-pending", &64u32)]);
    let size = i420_size(WIDTH, HEIGHT);
    let half = window() - 4;
    for i in 0..2 * half + window() {
        let mut buf = frame(i, size);
        if i == half {
            buf.get_mut().unwrap().set_flags(gst::BufferFlags::DISCONT);
        }
        h.push(buf).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    assert_predictions_only_after(&bus, frame(half, size).pts().unwrap());
}

#[test]
fn block_waits_for_inference_instead_of_skipping() {
    // A window due on every frame with one clip in inference at a time:
    // without `block` most would be skipped.
    let frames: Vec<(u64, gst::ClockTime)> =
        (0..window() + 20).map(|i| (i, gst::ClockTime::from_nseconds(i * 1_000_000_000 / 30))).collect();
    let props: [(&str, &dyn ToValue); 3] = [("stride", &1u32), ("max-pending", &1u32), ("block", &true)];
    let (predictions, element) = predictions_for(&props, &frames);
    assert_eq!(element.property::<u64>("skipped"), 0);
    assert_eq!(predictions.len() as u64, 21);
}

#[test]
fn a_video_too_small_for_the_model_is_refused_with_one_message() {
    let (mut h, bus) = harness(&[]);
    h.set_src_caps(caps("I420", 4, 4));
    assert!(h.push(frame(0, i420_size(4, 4))).is_err());
    let errors = errors_on(&bus).join("\n");
    assert!(errors.contains("4x4 video is too small for model") && errors.contains("tiny_8x8.onnx"), "{errors}");
}

/// Four cameras on one engine: four elements (same model and settings, so
/// one shared engine and its batching worker) fed at once from four
/// threads, each stream with its own content and its own clock. Every
/// stream gets all its predictions, in order, for its own clips only:
/// each equals what the same stream gives alone (to 1e-5: a batch of
/// several clips sums in another order than one clip).
#[test]
fn four_streams_share_one_engine_without_mixing_predictions() {
    const STREAMS: u64 = 4;
    const FRAMES: u64 = 120;
    // Stream k: content shifted by 1000 k, timestamps from k x 100 s.
    let frames_of = |k: u64| -> Vec<(u64, gst::ClockTime)> {
        (0..FRAMES).map(|i| (i + 1000 * k, gst::ClockTime::from_mseconds(k * 100_000 + i * 1000 / 30))).collect()
    };
    let props = || -> Vec<(&'static str, Box<dyn ToValue + Send>)> {
        vec![("stride", Box::new(8u32)), ("block", Box::new(true)), ("max-pending", Box::new(4u32)), ("top-k", Box::new(3u32))]
    };
    init();
    let threads: Vec<_> = (0..STREAMS)
        .map(|k| {
            let frames = frames_of(k);
            std::thread::spawn(move || {
                let owned = props();
                let refs: Vec<(&str, &dyn ToValue)> = owned.iter().map(|(n, v)| (*n, v.as_ref() as &dyn ToValue)).collect();
                let (predictions, element) = predictions_for(&refs, &frames);
                let stats = element.property::<gst::Structure>("stats");
                (predictions, stats)
            })
        })
        .collect();
    let together: Vec<(Vec<gst::Structure>, gst::Structure)> = threads.into_iter().map(|t| t.join().expect("stream thread")).collect();
    let due = 1 + (FRAMES - window()) / 8;
    for (k, (predictions, stats)) in together.iter().enumerate() {
        let k = k as u64;
        assert_eq!(predictions.len() as u64, due, "stream {k}: every due window predicted");
        assert_eq!(stats.get::<u64>("predictions").unwrap(), due, "stream {k}: {stats}");
        assert_eq!(stats.get::<u64>("skipped").unwrap(), 0, "stream {k}: {stats}");
        assert!(stats.get::<u64>("latency-p50").unwrap() > 0 && stats.get::<f64>("mean-batch").unwrap() >= 1.0, "{stats}");
        let (first_pts, last_pts) = (k * 100_000_000_000, k * 100_000_000_000 + (FRAMES - 1) * 1_000_000_000 / 30);
        let mut last_start = None;
        for (n, p) in predictions.iter().enumerate() {
            assert_eq!(p.get::<u64>("index").unwrap(), n as u64, "stream {k}: in order");
            let (start, end) = (p.get::<u64>("clip-start").unwrap(), p.get::<u64>("clip-end").unwrap());
            assert!(first_pts <= start && end <= last_pts + 1_000_000, "stream {k}: clip {start}..{end} is another stream's");
            assert!(last_start.is_none_or(|s| s < start), "stream {k}: clips in order");
            last_start = Some(start);
            assert!(p.get::<u64>("latency").unwrap() > 0 && p.get::<u32>("batch").unwrap() >= 1, "{p}");
        }
        let owned = props();
        let refs: Vec<(&str, &dyn ToValue)> = owned.iter().map(|(n, v)| (*n, v.as_ref() as &dyn ToValue)).collect();
        let (alone, _) = predictions_for(&refs, &frames_of(k));
        assert_eq!(alone.len(), predictions.len());
        for (a, b) in alone.iter().zip(predictions) {
            assert_eq!(a.get::<gst::Array>("class-ids").unwrap().as_slice().len(), 3);
            let ids =
                |s: &gst::Structure| s.get::<gst::Array>("class-ids").unwrap().iter().map(|v| v.get::<u32>().unwrap()).collect::<Vec<_>>();
            let scores =
                |s: &gst::Structure| s.get::<gst::Array>("scores").unwrap().iter().map(|v| v.get::<f64>().unwrap()).collect::<Vec<_>>();
            assert_eq!(ids(a), ids(b), "stream {k}: the classes of its own clip");
            assert!(scores(a).iter().zip(scores(b)).all(|(x, y)| (x - y).abs() < 1e-5), "stream {k}: {a} vs {b}");
        }
    }
    // The streams' contents differ, so mixing them up would show above.
    let first_ids: Vec<String> = together.iter().map(|(p, _)| format!("{:?}", p[0].get::<gst::Array>("scores").unwrap())).collect();
    assert!(first_ids.windows(2).all(|w| w[0] != w[1]), "{first_ids:?}");
}

/// The element runs on OpenVINO, and says so.
#[test]
fn runs_on_openvino() {
    init();
    let element = gst::ElementFactory::make("slowfast").build().expect("element");
    let pspec = element.find_property("backend").expect("backend property");
    let class = glib::EnumClass::with_type(pspec.value_type()).expect("enum");
    let openvino = class.to_value_by_nick("openvino").expect("openvino backend");
    let (mut h, bus) = harness(&[("backend", &openvino), ("strict", &true), ("stride", &8u32)]);
    let size = i420_size(WIDTH, HEIGHT);
    for i in 0..80 {
        h.push(frame(i, size)).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    assert!(!predictions_on(&bus).is_empty());
    assert_eq!(h.element().unwrap().property::<Option<String>>("provider").as_deref(), Some("OpenVINO CPU"));
}
