//! The control loop of `annotate`: starts the output (and the RTSP server),
//! connects the source, reports predictions, notices a lost or stalled live
//! source and reconnects it with back-off, and finalises the output on end
//! of stream, on Ctrl-C, or when reconnection is given up.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use gst::prelude::*;
use serde::Serialize;

use super::Options;
use super::bridge::Bridge;
use super::error::AnnotateError;
use super::input::SourcePipeline;
use super::output::OutputPipeline;
use super::prediction::PredictionRecord;
use super::serve::Server;

/// What the command reports while it runs.
#[derive(Debug, Clone)]
pub enum Event {
    Serving {
        url: String,
    },
    Prediction(PredictionRecord),
    /// The live source stopped (or could not be reached): an outage starts.
    SourceLost {
        why: String,
    },
    /// Next connection attempt (`attempt` counts failures since the source
    /// last delivered frames).
    Retrying {
        attempt: u32,
        max_retries: Option<u32>,
        delay: Duration,
    },
    /// Frames flow again after an outage.
    SourceRestored {
        outage: Duration,
        attempts: u32,
    },
    Warning(String),
    /// Ctrl-C or SIGTERM: the output is being finalised.
    Interrupted,
}

/// Why the run ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Finish {
    EndOfStream,
    Interrupted,
    GaveUp,
    SourceError,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub input: String,
    pub finish: Finish,
    /// Frames annotated (pushed into the output pipeline).
    pub frames: u64,
    /// Live frames dropped because the output fell a second behind.
    pub dropped: u64,
    pub predictions: u64,
    /// Windows the element skipped because inference was still busy.
    pub skipped: u64,
    pub outages: u32,
    pub outage_s: f64,
    pub output: Option<PathBuf>,
}

struct Outage {
    since: Instant,
    /// Connection attempts that failed during this outage.
    failures: u32,
}

struct Supervisor<'a> {
    opts: &'a Options,
    output: OutputPipeline,
    bridge: Arc<Bridge>,
    source: Option<Live>,
    retry_at: Option<Instant>,
    outage: Option<Outage>,
    outages: u32,
    outage_total: Duration,
    /// Set once EOS was sent to the output: (why, deadline).
    finishing: Option<(Finish, Instant, Option<String>)>,
    on_event: &'a mut dyn FnMut(Event),
}

/// A connection and what is known about it.
struct Live {
    pipeline: SourcePipeline,
    started: Instant,
    connected: bool,
}

/// Polling period of the buses: bounds how late a loss or Ctrl-C is seen.
const TICK: Duration = Duration::from_millis(20);

/// Runs until the input ends, `interrupts` becomes non-zero (Ctrl-C), or a
/// live source is given up; the output is finalised in every case.
pub fn run(opts: &Options, interrupts: &AtomicUsize, on_event: &mut dyn FnMut(Event)) -> Result<Summary, AnnotateError> {
    if let Some(path) = &opts.output {
        check_output(path)?;
    }
    let mut server = match &opts.serve {
        Some(addr) => Some(Server::start(addr)?),
        None => None,
    };
    let output = OutputPipeline::build(opts, server.as_ref().map(|s| s.feeds.clone()))?;
    let bridge = Arc::new(Bridge::new(output.appsrc.clone(), opts.input.is_live(), output.encode_size.clone()));
    if output.pipeline.set_state(gst::State::Playing).is_err() {
        let why = first_error(&output.bus).unwrap_or_else(|| "the output pipeline did not start".into());
        let _ = output.pipeline.set_state(gst::State::Null);
        return Err(AnnotateError::Pipeline(why));
    }
    if let Some(s) = &server {
        on_event(Event::Serving { url: s.url.clone() });
    }
    let mut sv = Supervisor {
        opts,
        output,
        bridge,
        source: None,
        retry_at: None,
        outage: None,
        outages: 0,
        outage_total: Duration::ZERO,
        finishing: None,
        on_event,
    };
    let result = sv.run_loop(interrupts);
    let mut summary = sv.summary();
    let _ = sv.output.pipeline.set_state(gst::State::Null);
    if let Some(s) = server.as_mut() {
        s.stop();
    }
    // Nothing encoded, or the output pipeline failed before the muxer
    // finalised the file (its index is missing): a file left there would
    // only mislead. A source that failed after frames was finalised (EOS
    // went through the output), so that file stays.
    let broken = matches!(result, Err(AnnotateError::Pipeline(_) | AnnotateError::DrainTimeout(_)));
    if let Some(path) = &opts.output
        && (summary.frames == 0 || broken)
    {
        let _ = std::fs::remove_file(path);
    }
    summary.output = opts.output.clone().filter(|p| p.is_file());
    result.map(|()| summary)
}

impl Supervisor<'_> {
    fn run_loop(&mut self, interrupts: &AtomicUsize) -> Result<(), AnnotateError> {
        self.connect();
        loop {
            if interrupts.load(Ordering::SeqCst) > 0 && self.finishing.is_none() {
                (self.on_event)(Event::Interrupted);
                self.finish(Finish::Interrupted, None);
            }
            if self.output_messages()? {
                return self.outcome();
            }
            self.source_messages();
            self.watch_live_source();
            if let Some(at) = self.retry_at
                && Instant::now() >= at
                && self.finishing.is_none()
            {
                self.retry_at = None;
                self.connect();
            }
            if let Some((_, deadline, _)) = &self.finishing {
                if self.bridge.frames.load(Ordering::Relaxed) == 0 {
                    return self.outcome();
                }
                if Instant::now() > *deadline {
                    return Err(AnnotateError::DrainTimeout(self.opts.drain_timeout));
                }
            }
        }
    }

    /// Handles the output's messages; true once its EOS arrived.
    fn output_messages(&mut self) -> Result<bool, AnnotateError> {
        let mut wait = Some(gst::ClockTime::from_nseconds(TICK.as_nanos() as u64));
        while let Some(msg) = self.output.bus.timed_pop(wait) {
            wait = Some(gst::ClockTime::ZERO);
            match msg.view() {
                gst::MessageView::Element(e) => {
                    if let Some(record) = e.structure().and_then(PredictionRecord::from_structure) {
                        match record {
                            Ok(p) => (self.on_event)(Event::Prediction(p)),
                            Err(why) => (self.on_event)(Event::Warning(why)),
                        }
                    }
                }
                gst::MessageView::Warning(w) => {
                    (self.on_event)(Event::Warning(format!("{}: {}{}", source_name(&msg), w.error(), debug_tail(w.debug()))));
                }
                gst::MessageView::Error(e) => {
                    return Err(AnnotateError::Pipeline(format!(
                        "annotating {}: {}: {}{}",
                        self.opts.input.name(),
                        source_name(&msg),
                        e.error(),
                        debug_tail(e.debug())
                    )));
                }
                gst::MessageView::Eos(_) if self.finishing.is_some() => return Ok(true),
                _ => {}
            }
        }
        Ok(false)
    }

    fn source_messages(&mut self) {
        let Some(live) = &self.source else { return };
        let mut lost = None;
        let mut ended = false;
        while let Some(msg) = live.pipeline.bus.pop() {
            match msg.view() {
                gst::MessageView::Error(e) => {
                    lost = Some(format!("{}{}", e.error(), debug_tail(e.debug())));
                    break;
                }
                gst::MessageView::Eos(_) => {
                    ended = true;
                    break;
                }
                gst::MessageView::Warning(w) => {
                    (self.on_event)(Event::Warning(format!("{}: {}{}", source_name(&msg), w.error(), debug_tail(w.debug()))));
                }
                _ => {}
            }
        }
        if ended && !self.opts.input.is_live() {
            self.finish(Finish::EndOfStream, None);
        } else if ended {
            self.lost("the stream ended".into());
        } else if let Some(why) = lost {
            self.lost(why);
        }
    }

    /// First frames of a connection end an outage; a live source that
    /// stops delivering frames is lost even when it reports nothing.
    fn watch_live_source(&mut self) {
        if !self.opts.input.is_live() {
            return;
        }
        let Some(live) = &mut self.source else { return };
        if !live.connected && self.bridge.session_frames() > 0 {
            live.connected = true;
            if let Some(o) = self.outage.take() {
                let outage = o.since.elapsed();
                self.outage_total += outage;
                (self.on_event)(Event::SourceRestored { outage, attempts: o.failures });
            }
        }
        let stall = self.opts.stall_timeout;
        let why = if live.connected {
            let idle = self.bridge.last_frame().map(|t| t.elapsed()).unwrap_or_default();
            (idle > stall).then(|| format!("no frame for {:.1} s", idle.as_secs_f64()))
        } else {
            let connect_timeout = stall * 2;
            (live.started.elapsed() > connect_timeout)
                .then(|| format!("no video within {:.0} s of connecting", connect_timeout.as_secs_f64()))
        };
        if let Some(why) = why {
            self.lost(why);
        }
    }

    fn connect(&mut self) {
        self.bridge.new_session();
        let built = SourcePipeline::build(&self.opts.input, self.bridge.clone(), self.bridge.size());
        match built {
            Ok(pipeline) => match pipeline.start() {
                Ok(()) => self.source = Some(Live { pipeline, started: Instant::now(), connected: false }),
                Err(_) => {
                    let why = first_error(&pipeline.bus).unwrap_or_else(|| "the source pipeline did not start".into());
                    drop(pipeline);
                    self.lost(why);
                }
            },
            Err(e) => self.lost(e.to_string()),
        }
    }

    /// The source failed or went quiet: report it and schedule a retry, or
    /// finalise (files, or retries exhausted).
    fn lost(&mut self, why: String) {
        self.source = None;
        if self.finishing.is_some() {
            return;
        }
        if !self.opts.input.is_live() {
            self.finish(Finish::SourceError, Some(why));
            return;
        }
        let outage = match &mut self.outage {
            Some(o) => o,
            None => {
                self.outages += 1;
                (self.on_event)(Event::SourceLost { why: why.clone() });
                self.outage.insert(Outage { since: Instant::now(), failures: 0 })
            }
        };
        outage.failures += 1;
        let failures = outage.failures;
        if failures > 1 {
            (self.on_event)(Event::Warning(format!("reconnection {} failed: {why}", failures - 1)));
        }
        if self.opts.max_retries.is_some_and(|max| failures > max) {
            self.finish(Finish::GaveUp, Some(why));
            return;
        }
        let delay = self.opts.backoff.delay(failures);
        (self.on_event)(Event::Retrying { attempt: failures, max_retries: self.opts.max_retries, delay });
        self.retry_at = Some(Instant::now() + delay);
    }

    /// Stops the source and sends EOS through the output so the muxer
    /// writes its index (the MP4's moov atom).
    fn finish(&mut self, why: Finish, detail: Option<String>) {
        if let Some(live) = self.source.take() {
            // The streaming thread may sit in a blocking push: the output is
            // still consuming, so stopping here cannot deadlock.
            live.pipeline.stop();
        }
        self.retry_at = None;
        if let Some(o) = self.outage.take() {
            self.outage_total += o.since.elapsed();
        }
        if self.bridge.frames.load(Ordering::Relaxed) > 0 {
            let _ = self.output.appsrc.end_of_stream();
        }
        self.finishing = Some((why, Instant::now() + self.opts.drain_timeout, detail));
    }

    fn outcome(&self) -> Result<(), AnnotateError> {
        let input = self.opts.input.name();
        let frames = self.bridge.frames.load(Ordering::Relaxed);
        match &self.finishing {
            Some((Finish::GaveUp, _, why)) => Err(AnnotateError::SourceGivenUp {
                input,
                retries: self.opts.max_retries.unwrap_or(0),
                why: why.clone().unwrap_or_default(),
            }),
            Some((Finish::SourceError, _, why)) => Err(AnnotateError::Source { input, why: why.clone().unwrap_or_default() }),
            Some((Finish::EndOfStream, _, _)) if frames == 0 => {
                Err(AnnotateError::Source { input, why: "no video frame was decoded".into() })
            }
            _ => Ok(()),
        }
    }

    fn summary(&self) -> Summary {
        let counter = |name: &str| self.output.slowfast.property::<u64>(name);
        Summary {
            input: self.opts.input.name(),
            finish: self.finishing.as_ref().map(|f| f.0.clone()).unwrap_or(Finish::SourceError),
            frames: self.bridge.frames.load(Ordering::Relaxed),
            dropped: self.bridge.dropped.load(Ordering::Relaxed),
            predictions: counter("predictions"),
            skipped: counter("skipped"),
            outages: self.outages,
            outage_s: self.outage_total.as_secs_f64(),
            // Known once the output pipeline has stopped (see `run`).
            output: None,
        }
    }
}

fn check_output(path: &std::path::Path) -> Result<(), AnnotateError> {
    let bad = |why: &str| AnnotateError::BadOutput { path: path.into(), why: why.into() };
    if path.is_dir() {
        return Err(bad("is a directory"));
    }
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    if !parent.is_dir() {
        return Err(bad(&format!("directory {} does not exist", parent.display())));
    }
    Ok(())
}

/// The first error message waiting on `bus`, as text.
fn first_error(bus: &gst::Bus) -> Option<String> {
    while let Some(msg) = bus.pop() {
        if let gst::MessageView::Error(e) = msg.view() {
            return Some(format!("{}: {}{}", source_name(&msg), e.error(), debug_tail(e.debug())));
        }
    }
    None
}

fn source_name(msg: &gst::Message) -> String {
    msg.src().map(|s| s.name().to_string()).unwrap_or_else(|| "pipeline".into())
}

/// The last line of GStreamer's debug text, which usually says why; none
/// when the text is only the first line GStreamer writes (source file,
/// function and element path).
fn debug_tail(debug: Option<gst::glib::GString>) -> String {
    let Some(debug) = debug else { return String::new() };
    let lines: Vec<&str> = debug.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    match lines.as_slice() {
        [_, .., last] => format!(" ({last})"),
        _ => String::new(),
    }
}
