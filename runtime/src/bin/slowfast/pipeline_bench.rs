//! `slowfast bench-pipeline`: what the `slowfast` element costs a video
//! pipeline.
//!
//! 1. Frame path: a generated 1080p H.264 file decoded without sync through
//!    `identity`, `slowfast draw=false` and `slowfast draw=true` in the same
//!    run (interleaved rounds): throughput and the time each buffer spends
//!    between the element's sink and src pads (pad probes). Targets:
//!    throughput >= 0.9x identity, added median latency < 1 ms.
//! 2. Live: a 720p30 `videotestsrc is-live=true` for N seconds: frames in
//!    versus out of the element (none may be lost) and predictions made
//!    versus due at the requested stride.
//! 3. Many cameras (`--streams 1,2,4,8`, instead of 1 and 2): see
//!    `multi_stream`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args as ClapArgs;
use gst::prelude::*;
use runtime::model_info::ModelInfo;
use runtime::ring::{ClipRing, RingConfig};
use serde::Serialize;

use super::multi_stream;
use super::probe::{drain_to_eos, instrument, launch, lock, pipeline_error, predictions_due, quantile};

#[derive(ClapArgs)]
pub struct Args {
    /// ONNX model [default: the tiny test model].
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny_8x8.onnx"))]
    pub model: PathBuf,
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "cuda", "tensorrt", "openvino", "auto"])]
    pub backend: String,
    /// Inference threads.
    #[arg(long, default_value_t = 1)]
    pub threads: u32,
    /// Frames between predictions.
    #[arg(long, default_value_t = 32)]
    pub stride: u32,
    /// Live streams per run, comma-separated (e.g. 1,2,4,8): runs the
    /// many-cameras benchmark instead of the frame path and single live run.
    #[arg(long, value_delimiter = ',')]
    pub streams: Vec<usize>,
    /// Clips the shared engine runs together at most (the element's max-batch).
    #[arg(long, default_value_t = 8)]
    pub max_batch: u32,
    /// Frames of the generated 1080p file.
    #[arg(long, default_value_t = 300)]
    frames: u32,
    /// Decode this H.264 MP4 instead of generating one.
    #[arg(long)]
    video: Option<PathBuf>,
    /// Rounds of the frame-path runs (each round runs every variant once).
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Seconds of the live run (0: skip it).
    #[arg(long, default_value_t = 60.0)]
    pub live_seconds: f64,
}

#[derive(Serialize, Clone)]
struct PathRun {
    bench: &'static str,
    element: String,
    frames: u64,
    fps: f64,
    latency_median_ms: f64,
    latency_p90_ms: f64,
    latency_p99_ms: f64,
    latency_max_ms: f64,
    predictions: Option<u64>,
    skipped: Option<u64>,
}

#[derive(Serialize)]
struct PathSummary {
    bench: &'static str,
    variant: String,
    fps_median: f64,
    throughput_vs_identity: f64,
    latency_median_ms: f64,
    added_latency_median_ms: f64,
    meets_throughput_target: bool,
    meets_latency_target: bool,
}

#[derive(Serialize)]
struct LiveRun {
    bench: &'static str,
    seconds: f64,
    expected_frames: u64,
    frames_in: u64,
    frames_out: u64,
    frames_lost: u64,
    window_frames: usize,
    stride: u32,
    predictions_due: u64,
    predictions: u64,
    skipped: u64,
    latency_median_ms: f64,
    latency_p99_ms: f64,
    latency_max_ms: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    quantile(&v, 0.5)
}

/// Plays `pipeline` until EOS (or error), within `limit`.
fn play_to_eos(pipeline: &gst::Pipeline, limit: Duration) -> anyhow::Result<()> {
    let bus = pipeline.bus().context("pipeline without a bus")?;
    pipeline.set_state(gst::State::Playing).map_err(|_| pipeline_error(&bus, "cannot start the pipeline"))?;
    let deadline = Instant::now() + limit;
    let result = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break Err(anyhow::anyhow!("no EOS within {limit:?}"));
        }
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_nseconds(left.as_nanos() as u64)) else { continue };
        match msg.view() {
            gst::MessageView::Eos(_) => break Ok(()),
            gst::MessageView::Error(e) => break Err(anyhow::anyhow!("{}: {}", msg.src().map(|s| s.name()).unwrap_or_default(), e.error())),
            _ => {}
        }
    };
    let _ = pipeline.set_state(gst::State::Null);
    result
}

fn make_1080p(path: &std::path::Path, frames: u32) -> anyhow::Result<()> {
    let p = launch(&format!(
        "videotestsrc num-buffers={frames} pattern=ball ! video/x-raw,format=I420,width=1920,height=1080,framerate=30/1 \
         ! x264enc speed-preset=ultrafast tune=zerolatency key-int-max=60 ! h264parse ! mp4mux ! filesink location=\"{}\"",
        path.display()
    ))?;
    play_to_eos(&p, Duration::from_secs(600)).context("generating the 1080p file")
}

impl Args {
    fn slowfast(&self, draw: bool) -> String {
        self.slowfast_named("dut", draw)
    }

    pub fn slowfast_named(&self, name: &str, draw: bool) -> String {
        format!(
            "slowfast name={name} model=\"{}\" backend={} threads={} stride={} max-batch={} draw={draw}",
            self.model.display(),
            self.backend,
            self.threads,
            self.stride,
            self.max_batch
        )
    }
}

fn frame_path_run(video: &std::path::Path, element: &str, label: &str) -> anyhow::Result<PathRun> {
    let p =
        launch(&format!("filesrc location=\"{}\" ! qtdemux ! h264parse ! avdec_h264 ! {element} ! fakesink sync=false", video.display()))?;
    let dut = p.by_name("dut").context("no element named dut")?;
    let probe = instrument(&dut)?;
    play_to_eos(&p, Duration::from_secs(600)).with_context(|| format!("frame-path run with {label}"))?;
    let counter = |name: &str| dut.find_property(name).map(|_| dut.property::<u64>(name));
    let p = lock(&probe);
    let mut lat = p.latencies_ms.clone();
    lat.sort_by(f64::total_cmp);
    let wall = match (p.first_in, p.last_out) {
        (Some(a), Some(b)) if b > a => (b - a).as_secs_f64(),
        _ => bail!("{label}: no frame went through"),
    };
    Ok(PathRun {
        bench: "frame_path_1080p",
        element: label.into(),
        frames: p.frames_in,
        // Intervals between the first arrival and the last departure.
        fps: (p.frames_in.saturating_sub(1)) as f64 / wall,
        latency_median_ms: quantile(&lat, 0.5),
        latency_p90_ms: quantile(&lat, 0.9),
        latency_p99_ms: quantile(&lat, 0.99),
        latency_max_ms: lat.last().copied().unwrap_or(f64::NAN),
        predictions: counter("predictions"),
        skipped: counter("skipped"),
    })
}

fn live_run(a: &Args, window: usize) -> anyhow::Result<LiveRun> {
    let p = launch(&format!(
        "videotestsrc is-live=true pattern=ball ! video/x-raw,format=I420,width=1280,height=720,framerate=30/1 \
         ! {} ! fakesink sync=true",
        a.slowfast(true)
    ))?;
    let dut = p.by_name("dut").context("no element named dut")?;
    let probe = instrument(&dut)?;
    let bus = p.bus().context("pipeline without a bus")?;
    p.set_state(gst::State::Playing).map_err(|_| pipeline_error(&bus, "cannot start the live pipeline"))?;
    let started = Instant::now();
    let run_for = Duration::from_secs_f64(a.live_seconds);
    while started.elapsed() < run_for {
        if let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(100))
            && let gst::MessageView::Error(e) = msg.view()
        {
            let _ = p.set_state(gst::State::Null);
            bail!("live run: {}", e.error());
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    drain_to_eos(&p, Duration::from_secs(60), |_| {}).context("live run")?;
    let (predictions, skipped) = (dut.property::<u64>("predictions"), dut.property::<u64>("skipped"));
    let _ = p.set_state(gst::State::Null);
    let pr = lock(&probe);
    let mut lat = pr.latencies_ms.clone();
    lat.sort_by(f64::total_cmp);
    let frames_in = pr.frames_in;
    let frames_out = lat.len() as u64;
    let due = predictions_due(frames_in, window, a.stride);
    Ok(LiveRun {
        bench: "live_720p30",
        seconds,
        expected_frames: (seconds * 30.0).round() as u64,
        frames_in,
        frames_out,
        frames_lost: frames_in.saturating_sub(frames_out),
        window_frames: window,
        stride: a.stride,
        predictions_due: due,
        predictions,
        skipped,
        latency_median_ms: quantile(&lat, 0.5),
        latency_p99_ms: quantile(&lat, 0.99),
        latency_max_ms: lat.last().copied().unwrap_or(f64::NAN),
    })
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    if a.rounds == 0 || a.frames < 2 || a.stride == 0 {
        bail!("--rounds, --stride must be at least 1 and --frames at least 2");
    }
    if !a.model.is_file() {
        bail!("model {}: no such file", a.model.display());
    }
    let info = ModelInfo::from_file(&a.model).with_context(|| format!("model {}", a.model.display()))?;
    let window = ClipRing::new(RingConfig::from_model(&info), 30.0).capacity();
    gst::init().context("cannot initialise GStreamer")?;
    runtime::annotate::ensure_element(&crate::annotate::plugin_dirs())?;
    if !a.streams.is_empty() {
        if a.streams.contains(&0) || a.live_seconds <= 0.0 {
            bail!("--streams must be at least 1 each, with --live-seconds above 0");
        }
        let spec = multi_stream::Streams {
            counts: &a.streams,
            live_seconds: a.live_seconds,
            stride: a.stride,
            setup: format!(
                "model {} ({} backend, {} thread(s), stride {}, max-batch {})",
                a.model.display(),
                a.backend,
                a.threads,
                a.stride,
                a.max_batch
            ),
            element: &|name: &str| a.slowfast_named(name, true),
        };
        multi_stream::run_all(&spec, window)?;
        return Ok(ExitCode::SUCCESS);
    }

    let generated = a.video.is_none();
    let video = match &a.video {
        Some(v) if v.is_file() => v.clone(),
        Some(v) => bail!("video {}: no such file", v.display()),
        None => {
            let path = std::env::temp_dir().join(format!("slowfast-bench-1080p-{}.mp4", std::process::id()));
            eprintln!("bench-pipeline: generating {} frames of 1080p H.264 into {}", a.frames, path.display());
            make_1080p(&path, a.frames)?;
            path
        }
    };
    let variants = [
        ("identity".to_string(), "identity name=dut".to_string()),
        ("slowfast draw=false".to_string(), a.slowfast(false)),
        ("slowfast draw=true".to_string(), a.slowfast(true)),
    ];
    let mut runs: Vec<PathRun> = Vec::new();
    let mut failure = None;
    'rounds: for _ in 0..a.rounds {
        for (label, element) in &variants {
            match frame_path_run(&video, element, label) {
                Ok(r) => {
                    println!("{}", serde_json::to_string(&r)?);
                    runs.push(r);
                }
                Err(e) => {
                    failure = Some(e);
                    break 'rounds;
                }
            }
        }
    }
    if generated {
        let _ = std::fs::remove_file(&video);
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let per = |label: &str| -> Vec<&PathRun> { runs.iter().filter(|r| r.element == label).collect() };
    let base = per("identity");
    let base_fps = median(base.iter().map(|r| r.fps).collect());
    let base_lat = median(base.iter().map(|r| r.latency_median_ms).collect());
    let mut summaries = Vec::new();
    for (label, _) in variants.iter().skip(1) {
        let rs = per(label);
        let fps = median(rs.iter().map(|r| r.fps).collect());
        let lat = median(rs.iter().map(|r| r.latency_median_ms).collect());
        let s = PathSummary {
            bench: "frame_path_1080p_summary",
            variant: label.clone(),
            fps_median: fps,
            throughput_vs_identity: fps / base_fps,
            latency_median_ms: lat,
            added_latency_median_ms: lat - base_lat,
            meets_throughput_target: fps / base_fps >= 0.9,
            meets_latency_target: lat - base_lat < 1.0,
        };
        println!("{}", serde_json::to_string(&s)?);
        summaries.push(s);
    }
    let live = if a.live_seconds > 0.0 {
        let l = live_run(&a, window)?;
        println!("{}", serde_json::to_string(&l)?);
        Some(l)
    } else {
        None
    };

    println!();
    println!(
        "frame path, 1080p H.264 decoded without sync, {} frames x {} rounds, model {} ({} backend, {} thread(s), stride {}):",
        runs.first().map(|r| r.frames).unwrap_or(0),
        a.rounds,
        a.model.display(),
        a.backend,
        a.threads,
        a.stride
    );
    println!("  {:<22} {:>9.1} fps  median {:.3} ms in the element", "identity", base_fps, base_lat);
    for s in &summaries {
        println!(
            "  {:<22} {:>9.1} fps  median {:.3} ms in the element  ({:.2}x identity [{}], +{:.3} ms [{}])",
            s.variant,
            s.fps_median,
            s.latency_median_ms,
            s.throughput_vs_identity,
            if s.meets_throughput_target { "ok >= 0.9" } else { "MISSES 0.9" },
            s.added_latency_median_ms,
            if s.meets_latency_target { "ok < 1 ms" } else { "MISSES 1 ms" },
        );
    }
    if let Some(l) = &live {
        println!(
            "live 720p30, {:.1} s: {} frames in (expected {}), {} out, {} lost; predictions {} of {} due \
             (window {} frames, stride {}), {} windows skipped; element latency median {:.3} ms, p99 {:.3} ms, max {:.3} ms",
            l.seconds,
            l.frames_in,
            l.expected_frames,
            l.frames_out,
            l.frames_lost,
            l.predictions,
            l.predictions_due,
            l.window_frames,
            l.stride,
            l.skipped,
            l.latency_median_ms,
            l.latency_p99_ms,
            l.latency_max_ms
        );
    }
    Ok(ExitCode::SUCCESS)
}
