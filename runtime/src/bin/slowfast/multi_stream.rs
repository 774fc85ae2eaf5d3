//! `slowfast bench-pipeline --streams 1,2,4,8`: many cameras on one box.
//!
//! For each N, one pipeline holds N live 720p30 `videotestsrc` branches,
//! each through its own `slowfast` element into a synchronised sink. The
//! elements share one engine and its batching worker (same model and
//! settings), as N cameras in one process do. Per stream: frames generated
//! against real time, frames through the element, predictions made against
//! due at the stride, windows skipped, and the latency each prediction
//! reports (window due to result: queueing behind the other streams plus
//! inference), with the process's CPU use over the run. A stream "holds"
//! when it loses no frame, skips no window and makes every due prediction.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use gst::prelude::*;
use runtime::schema::prediction as fields;
use serde::Serialize;

use super::probe::{drain_to_eos, instrument, launch, lock, pipeline_error, predictions_due, quantile};

/// What to run: the stream counts, for how long, and the element of each
/// stream (`slowfast name=NAME ...`).
pub struct Streams<'a> {
    pub counts: &'a [usize],
    pub live_seconds: f64,
    pub stride: u32,
    /// Model and settings, for the table's header.
    pub setup: String,
    pub element: &'a dyn Fn(&str) -> String,
}

#[derive(Serialize)]
pub struct StreamRun {
    bench: &'static str,
    streams: usize,
    stream: usize,
    expected_frames: u64,
    frames_in: u64,
    frames_out: u64,
    predictions_due: u64,
    predictions: u64,
    skipped: u64,
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    mean_batch: f64,
    holds: bool,
}

#[derive(Serialize)]
pub struct Summary {
    bench: &'static str,
    streams: usize,
    seconds: f64,
    /// Process CPU time over wall time, in cores.
    cpu_cores_used: f64,
    cores: usize,
    clips_per_s: f64,
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    mean_batch: f64,
    skipped: u64,
    frames_short: u64,
    all_hold: bool,
}

/// User plus system CPU time of this process so far.
fn cpu_time() -> Duration {
    // SAFETY: getrusage writes into the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec.max(0) as u64, (t.tv_usec.max(0) as u32) * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// One run with `n` live streams; returns the per-stream rows and the summary.
pub fn run_streams(a: &Streams<'_>, n: usize, window: usize) -> anyhow::Result<(Vec<StreamRun>, Summary)> {
    let branches: Vec<String> = (0..n)
        .map(|k| {
            format!(
                "videotestsrc is-live=true pattern=ball horizontal-speed={} ! video/x-raw,format=I420,width=1280,height=720,framerate=30/1 \
                 ! {} ! fakesink sync=true",
                k + 1,
                (a.element)(&format!("dut{k}"))
            )
        })
        .collect();
    let p = launch(&branches.join("  "))?;
    let mut probes = Vec::new();
    for k in 0..n {
        let dut = p.by_name(&format!("dut{k}")).with_context(|| format!("no element dut{k}"))?;
        probes.push((instrument(&dut)?, dut));
    }
    let bus = p.bus().context("pipeline without a bus")?;
    p.set_state(gst::State::Playing).map_err(|_| pipeline_error(&bus, "cannot start the live pipeline"))?;
    let (started, cpu_start) = (Instant::now(), cpu_time());
    let run_for = Duration::from_secs_f64(a.live_seconds);
    // Latency (ms) and batch of each prediction, by element name.
    let mut reported: HashMap<String, Vec<(f64, u32)>> = HashMap::new();
    let mut record = |msg: &gst::Message| {
        if let gst::MessageView::Element(e) = msg.view()
            && let (Some(s), Some(src)) = (e.structure(), msg.src())
            && s.name() == fields::NAME
        {
            let latency = s.get::<u64>(fields::LATENCY).unwrap_or(0) as f64 / 1e6;
            let batch = s.get::<u32>(fields::BATCH).unwrap_or(1);
            reported.entry(src.name().to_string()).or_default().push((latency, batch));
        }
    };
    while started.elapsed() < run_for {
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(100)) else { continue };
        if let gst::MessageView::Error(e) = msg.view() {
            let _ = p.set_state(gst::State::Null);
            bail!("{n} streams: {}: {}", msg.src().map(|s| s.name()).unwrap_or_default(), e.error());
        }
        record(&msg);
    }
    let (seconds, cpu) = (started.elapsed().as_secs_f64(), (cpu_time() - cpu_start).as_secs_f64());
    let drained = drain_to_eos(&p, Duration::from_secs(120), &mut record).with_context(|| format!("{n} streams"));
    if let Err(e) = drained {
        let _ = p.set_state(gst::State::Null);
        return Err(e);
    }
    let mut rows = Vec::new();
    for (k, (probe, dut)) in probes.iter().enumerate() {
        let name = dut.name().to_string();
        let (predictions, skipped) = (dut.property::<u64>("predictions"), dut.property::<u64>("skipped"));
        let pr = lock(probe);
        let (frames_in, frames_out) = (pr.frames_in, pr.latencies_ms.len() as u64);
        let due = predictions_due(frames_in, window, a.stride);
        let mut lat: Vec<f64> = reported.get(&name).map(|v| v.iter().map(|&(l, _)| l).collect()).unwrap_or_default();
        lat.sort_by(f64::total_cmp);
        let batches: Vec<u32> = reported.get(&name).map(|v| v.iter().map(|&(_, b)| b).collect()).unwrap_or_default();
        let expected = (seconds * 30.0).floor() as u64;
        rows.push(StreamRun {
            bench: "streams_720p30",
            streams: n,
            stream: k,
            expected_frames: expected,
            frames_in,
            frames_out,
            predictions_due: due,
            predictions,
            skipped,
            latency_p50_ms: quantile(&lat, 0.5),
            latency_p99_ms: quantile(&lat, 0.99),
            mean_batch: batches.iter().map(|&b| f64::from(b)).sum::<f64>() / batches.len().max(1) as f64,
            // A live source falls behind real time by a frame or two at start-up.
            holds: frames_out == frames_in && frames_in + 3 >= expected && skipped == 0 && predictions >= due,
        });
    }
    let _ = p.set_state(gst::State::Null);
    let mut all_lat: Vec<f64> = reported.values().flat_map(|v| v.iter().map(|&(l, _)| l)).collect();
    all_lat.sort_by(f64::total_cmp);
    let all_batches: Vec<f64> = reported.values().flat_map(|v| v.iter().map(|&(_, b)| f64::from(b))).collect();
    let summary = Summary {
        bench: "streams_720p30_summary",
        streams: n,
        seconds,
        cpu_cores_used: cpu / seconds,
        cores: std::thread::available_parallelism().map(|c| c.get()).unwrap_or(1),
        clips_per_s: rows.iter().map(|r| r.predictions).sum::<u64>() as f64 / seconds,
        latency_p50_ms: quantile(&all_lat, 0.5),
        latency_p99_ms: quantile(&all_lat, 0.99),
        mean_batch: all_batches.iter().sum::<f64>() / all_batches.len().max(1) as f64,
        skipped: rows.iter().map(|r| r.skipped).sum(),
        frames_short: rows.iter().map(|r| r.expected_frames.saturating_sub(r.frames_out)).sum(),
        all_hold: rows.iter().all(|r| r.holds),
    };
    Ok((rows, summary))
}

/// Runs every N of `--streams` and prints the table.
pub fn run_all(a: &Streams<'_>, window: usize) -> anyhow::Result<()> {
    let mut summaries = Vec::new();
    for &n in a.counts {
        let (rows, summary) = run_streams(a, n, window)?;
        for r in &rows {
            println!("{}", serde_json::to_string(r)?);
        }
        println!("{}", serde_json::to_string(&summary)?);
        summaries.push(summary);
    }
    println!();
    println!(
        "{} live 720p30 stream(s) per run, {:.0} s each, {}:",
        a.counts.iter().map(|n| n.to_string()).collect::<Vec<_>>().join("/"),
        a.live_seconds,
        a.setup
    );
    println!("  streams  holds  clips/s  latency p50 / p99 ms  mean batch  skipped  frames short  CPU (cores)");
    for s in &summaries {
        println!(
            "  {:>7}  {:>5}  {:>7.2}  {:>9.1} / {:<9.1}  {:>10.2}  {:>7}  {:>12}  {:>5.2} of {}",
            s.streams,
            if s.all_hold { "yes" } else { "NO" },
            s.clips_per_s,
            s.latency_p50_ms,
            s.latency_p99_ms,
            s.mean_batch,
            s.skipped,
            s.frames_short,
            s.cpu_cores_used,
            s.cores
        );
    }
    match summaries.iter().filter(|s| s.all_hold).map(|s| s.streams).max() {
        Some(n) => println!("  largest N that loses no frame and keeps the cadence: {n}"),
        None => println!("  no N held: every run lost frames or skipped windows"),
    }
    Ok(())
}
