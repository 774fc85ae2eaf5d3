//! Pad probes and pipeline helpers shared by the pipeline benchmarks
//! (`pipeline_bench`, `multi_stream`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use gst::prelude::*;

/// Sink-pad arrival times waiting for their buffer at the src pad.
#[derive(Default)]
pub struct Probe {
    arrivals: VecDeque<Instant>,
    pub latencies_ms: Vec<f64>,
    pub first_in: Option<Instant>,
    pub last_out: Option<Instant>,
    pub frames_in: u64,
}

pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Times every buffer from `dut`'s sink pad to its src pad. The element is
/// in-place and keeps order, so arrivals pair up first in, first out.
pub fn instrument(dut: &gst::Element) -> anyhow::Result<Arc<Mutex<Probe>>> {
    let probe = Arc::new(Mutex::new(Probe::default()));
    let (sink, src) = (dut.static_pad("sink").context("no sink pad")?, dut.static_pad("src").context("no src pad")?);
    let p = probe.clone();
    sink.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
        let now = Instant::now();
        let mut p = lock(&p);
        p.first_in.get_or_insert(now);
        p.arrivals.push_back(now);
        p.frames_in += 1;
        gst::PadProbeReturn::Ok
    });
    let p = probe.clone();
    src.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
        let now = Instant::now();
        let mut p = lock(&p);
        if let Some(t) = p.arrivals.pop_front() {
            p.latencies_ms.push((now - t).as_secs_f64() * 1e3);
        }
        p.last_out = Some(now);
        gst::PadProbeReturn::Ok
    });
    Ok(probe)
}

pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

pub fn pipeline_error(bus: &gst::Bus, default: &str) -> anyhow::Error {
    while let Some(msg) = bus.pop() {
        if let gst::MessageView::Error(e) = msg.view() {
            return anyhow::anyhow!("{}: {}", msg.src().map(|s| s.name()).unwrap_or_default(), e.error());
        }
    }
    anyhow::anyhow!("{default}")
}

pub fn launch(description: &str) -> anyhow::Result<gst::Pipeline> {
    gst::parse::launch(description)
        .with_context(|| format!("cannot build `{description}`"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| anyhow::anyhow!("`{description}` is not a pipeline"))
}

/// Sends EOS, which makes each `slowfast` element finish the clips still
/// in inference (so every due prediction counts), and waits within `limit`
/// for it to reach the bus. Other messages go to `seen`; an error fails.
pub fn drain_to_eos(p: &gst::Pipeline, limit: Duration, mut seen: impl FnMut(&gst::Message)) -> anyhow::Result<()> {
    let bus = p.bus().context("pipeline without a bus")?;
    p.send_event(gst::event::Eos::new());
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(100)) else { continue };
        match msg.view() {
            gst::MessageView::Eos(_) => return Ok(()),
            gst::MessageView::Error(e) => bail!("{}: {}", msg.src().map(|s| s.name()).unwrap_or_default(), e.error()),
            _ => seen(&msg),
        }
    }
    bail!("no EOS within {limit:?}")
}

/// Predictions due for `frames` frames: the first when a window of
/// `window` frames is full, then one every `stride` frames.
pub fn predictions_due(frames: u64, window: usize, stride: u32) -> u64 {
    let window = window as u64;
    if frames >= window { 1 + (frames - window) / u64::from(stride.max(1)) } else { 0 }
}
