//! The `slowfast` element: frames go into a clip ring buffer and on
//! downstream at once; every `stride` ticks the latest window is handed
//! to a shared inference worker, and its result is attached to the buffers
//! that follow.
//!
//! Windows are built from time, as training samples clips: the ring has one
//! slot per tick at the model's target fps, each taking the frame nearest
//! to it by timestamp (`runtime::ring::TimedRing`), so cameras that drop
//! frames and sparse or variable-rate files predict like steady streams. A
//! window restarts only on a real discontinuity: a DISCONT buffer, a gap
//! longer than the window, a flush, a caps change.
//!
//! ```text
//! gst-launch-1.0 rtspsrc location=rtsp://cam/stream ! decodebin ! videoconvert ! \
//!     slowfast model=model.onnx draw=true ! videoconvert ! autovideosink
//! ```
//!
//! Drop policy: at most `max-pending` clips wait for (or are in) inference
//! per element. When a new window is due while that many are pending, the
//! new window is skipped and counted in `skipped`; frames are never held
//! back or dropped because inference is slow. With `block=true` (files,
//! where nothing is lost by waiting) the streaming thread waits for room
//! instead, so predictions do not depend on the machine's speed.
//!
//! Many cameras: elements with the same model and settings share one engine
//! whose worker runs their clips together (`max-batch`). Each element still
//! reports its own figures (`runtime::schema::stats`): the `stats`
//! property, `latency` and `batch` in every prediction message, and a
//! `slowfast-skipped` message per skipped window, so the camera that falls
//! behind is named by its element.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;
use gst_video::subclass::prelude::*;
use runtime::preprocess::SpatialCrop;
use runtime::ring::{RingConfig, TimedRing};
use runtime::schema::{prediction as fields, stats};

use super::draw;
use super::engines::{DEFAULT_MAX_BATCH, EngineKey, Job, Scored, SharedEngine};
use super::frame::{self, FORMATS};
use super::prediction::{NAME, Prediction, Smoother};

static CAT: LazyLock<gst::DebugCategory> =
    LazyLock::new(|| gst::DebugCategory::new("slowfast", gst::DebugColorFlags::empty(), Some("SlowFast action recognition")));

/// How long EOS waits for the clips still in inference.
const EOS_DRAIN_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for room with `block=true`: an inference taking longer is
/// stuck, and the window is skipped rather than the stream stopped for good.
const BLOCK_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstSlowFastBackend")]
pub enum Backend {
    #[default]
    #[enum_value(name = "Auto: TensorRT, then CUDA, then OpenVINO (x86-64), then ONNX Runtime's CPU provider", nick = "auto")]
    Auto,
    #[enum_value(name = "TensorRT execution provider", nick = "tensorrt")]
    TensorRt,
    #[enum_value(name = "CUDA execution provider", nick = "cuda")]
    Cuda,
    #[enum_value(name = "ONNX Runtime's CPU execution provider", nick = "cpu")]
    Cpu,
    #[enum_value(name = "OpenVINO's CPU plugin", nick = "openvino")]
    OpenVino,
}

impl From<Backend> for runtime::engine::Backend {
    fn from(b: Backend) -> Self {
        match b {
            Backend::Auto => Self::Auto,
            Backend::TensorRt => Self::TensorRt,
            Backend::Cuda => Self::Cuda,
            Backend::Cpu => Self::Cpu,
            Backend::OpenVino => Self::OpenVino,
        }
    }
}

const DEFAULT_STRIDE: u32 = 16;
const DEFAULT_TOP_K: u32 = 5;
const DEFAULT_SMOOTHING: u32 = 1;
const DEFAULT_MAX_PENDING: u32 = 2;

#[derive(Debug, Clone)]
struct Settings {
    model: Option<PathBuf>,
    int8: bool,
    labels: Option<PathBuf>,
    backend: Backend,
    strict: bool,
    fp16: bool,
    engine_cache_dir: Option<PathBuf>,
    threads: u32,
    max_batch: u32,
    /// What the streaming thread reads for every frame.
    stream: StreamSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            model: None,
            int8: false,
            labels: None,
            backend: Backend::default(),
            strict: false,
            fp16: true,
            engine_cache_dir: None,
            threads: 0,
            max_batch: DEFAULT_MAX_BATCH as u32,
            stream: StreamSettings {
                stride: DEFAULT_STRIDE,
                top_k: DEFAULT_TOP_K,
                threshold: 0.0,
                smoothing: DEFAULT_SMOOTHING,
                draw: false,
                max_pending: DEFAULT_MAX_PENDING,
                block: false,
            },
        }
    }
}

/// The settings the streaming thread reads for every frame, copied out
/// without allocating (`Settings::stream`).
#[derive(Debug, Clone, Copy)]
struct StreamSettings {
    stride: u32,
    top_k: u32,
    threshold: f64,
    smoothing: u32,
    draw: bool,
    max_pending: u32,
    block: bool,
}

/// Streaming-thread state, from `start` to `stop`.
struct State {
    engine: Arc<SharedEngine>,
    labels: Arc<Vec<String>>,
    ring_config: RingConfig,
    ring: TimedRing,
    info: Option<gst_video::VideoInfo>,
}

impl State {
    /// Starts a new window (caps change, flush, discontinuity).
    fn reset_window(&mut self) {
        self.ring.reset();
    }
}

/// The latest prediction as buffers carry it, built once per prediction
/// rather than once per frame.
struct Latest {
    structure: gst::Structure,
    caption: String,
}

#[derive(Default)]
struct Results {
    latest: Option<Latest>,
    smoother: Smoother,
    next_index: u64,
    /// Bumped on flush and stop: results of older clips are dropped.
    generation: u64,
}

/// What the inference worker's callbacks share with the element.
#[derive(Default)]
struct Shared {
    results: Mutex<Results>,
    pending: Mutex<usize>,
    drained: Condvar,
    predictions: AtomicU64,
    skipped: AtomicU64,
    /// Latency (ns) and batch size of the recent predictions, for `stats`.
    recent: Mutex<VecDeque<(u64, u32)>>,
    provider: Mutex<Option<String>>,
    /// Set from flush-start until flush-stop and while stopping: a
    /// streaming thread waiting for room (`block`) must let go.
    flushing: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Default)]
pub struct SlowFast {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    shared: Arc<Shared>,
}

#[glib::object_subclass]
impl ObjectSubclass for SlowFast {
    const NAME: &'static str = "GstSlowFast";
    type Type = super::SlowFast;
    type ParentType = gst_video::VideoFilter;
}

impl ObjectImpl for SlowFast {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("model")
                    .nick("Model")
                    .blurb("SlowFast ONNX file exported by `trainer export`; clip shape, sampling rate, normalisation and labels come from its metadata")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("int8")
                    .nick("INT8")
                    .blurb("Load the INT8 sibling of `model` (NAME_int8.onnx beside NAME.onnx, written by `trainer export --int8`); fastest on backend=openvino")
                    .default_value(false)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("labels")
                    .nick("Labels")
                    .blurb("Class names file (`id name` or `name` per line) replacing the model's own labels; must list as many classes as the model")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("backend", Backend::default())
                    .nick("Backend")
                    .blurb("Execution provider; with strict=false an unavailable one falls back to the next (CPU last)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("strict")
                    .nick("Strict")
                    .blurb("Fail the state change instead of falling back to CPU when the requested provider is unavailable")
                    .default_value(false)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("fp16")
                    .nick("FP16")
                    .blurb("Build TensorRT engines in FP16")
                    .default_value(true)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("engine-cache-dir")
                    .nick("Engine cache directory")
                    .blurb("Where TensorRT engines, timing caches and EP-context models, and OpenVINO's compiled networks, are kept between runs (none: TensorRT builds in memory at every start; OpenVINO uses ~/.cache/slowfast/openvino)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("threads")
                    .nick("Threads")
                    .blurb("CPU threads for inference (0: the engine's default, every core)")
                    .maximum(256)
                    .default_value(0)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("max-batch")
                    .nick("Max batch")
                    .blurb("Clips of all the slowfast elements sharing this model and settings run together at most (one engine per process serves them)")
                    .minimum(1)
                    .maximum(64)
                    .default_value(DEFAULT_MAX_BATCH as u32)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("stride")
                    .nick("Stride")
                    .blurb("Frames at the model's rate (its target fps, whatever the stream's) between two predictions once the first window is full; a frame arriving later than that gives one prediction")
                    .minimum(1)
                    .maximum(10_000)
                    .default_value(DEFAULT_STRIDE)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("top-k")
                    .nick("Top K")
                    .blurb("Classes reported per prediction")
                    .minimum(1)
                    .maximum(1000)
                    .default_value(DEFAULT_TOP_K)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecDouble::builder("threshold")
                    .nick("Threshold")
                    .blurb("Lowest score a reported class may have")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(0.0)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("smoothing")
                    .nick("Smoothing")
                    .blurb("Predictions averaged (class scores of the latest N clips), 1 for none")
                    .minimum(1)
                    .maximum(64)
                    .default_value(DEFAULT_SMOOTHING)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("draw")
                    .nick("Draw")
                    .blurb("Render the best label and its score onto the frames")
                    .default_value(false)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("max-pending")
                    .nick("Max pending")
                    .blurb("Clips waiting for or in inference; when reached, new windows are skipped (and counted) until one completes, frames still flow")
                    .minimum(1)
                    .maximum(64)
                    .default_value(DEFAULT_MAX_PENDING)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("block")
                    .nick("Block")
                    .blurb("When max-pending clips are in inference and a window is due, hold the frame until one completes instead of skipping the window (for files: predictions independent of the machine's speed)")
                    .default_value(false)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt64::builder("predictions")
                    .nick("Predictions")
                    .blurb("Predictions made since the element started")
                    .read_only()
                    .build(),
                glib::ParamSpecUInt::builder("pending")
                    .nick("Pending")
                    .blurb("Clips waiting for or in inference now (a window is skipped when this has reached max-pending)")
                    .read_only()
                    .build(),
                glib::ParamSpecUInt64::builder("skipped")
                    .nick("Skipped")
                    .blurb("Windows not predicted because max-pending clips were still in inference")
                    .read_only()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb("This stream's own figures (slowfast-stats): predictions, skipped, pending, latency-p50/p99/max in ns from a window being due to its prediction over the last 256, mean-batch")
                    .read_only()
                    .build(),
                glib::ParamSpecString::builder("provider")
                    .nick("Provider")
                    .blurb("Execution provider actually in use (after any fallback)")
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = lock(&self.settings);
        let path = |v: &glib::Value| v.get::<Option<String>>().ok().flatten().filter(|p| !p.is_empty()).map(PathBuf::from);
        match pspec.name() {
            "model" => s.model = path(value),
            "int8" => s.int8 = value.get().unwrap_or(false),
            "labels" => s.labels = path(value),
            "backend" => s.backend = value.get().unwrap_or_default(),
            "strict" => s.strict = value.get().unwrap_or(false),
            "fp16" => s.fp16 = value.get().unwrap_or(true),
            "engine-cache-dir" => s.engine_cache_dir = path(value),
            "threads" => s.threads = value.get().unwrap_or(0),
            "max-batch" => s.max_batch = value.get().unwrap_or(DEFAULT_MAX_BATCH as u32),
            "stride" => s.stream.stride = value.get().unwrap_or(DEFAULT_STRIDE),
            "top-k" => s.stream.top_k = value.get().unwrap_or(DEFAULT_TOP_K),
            "threshold" => s.stream.threshold = value.get().unwrap_or(0.0),
            "smoothing" => s.stream.smoothing = value.get().unwrap_or(DEFAULT_SMOOTHING),
            "draw" => s.stream.draw = value.get().unwrap_or(false),
            "max-pending" => s.stream.max_pending = value.get().unwrap_or(DEFAULT_MAX_PENDING),
            "block" => s.stream.block = value.get().unwrap_or(false),
            other => gst::warning!(CAT, imp = self, "no writable property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = lock(&self.settings);
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string()).to_value();
        match pspec.name() {
            "model" => path(&s.model),
            "int8" => s.int8.to_value(),
            "labels" => path(&s.labels),
            "backend" => s.backend.to_value(),
            "strict" => s.strict.to_value(),
            "fp16" => s.fp16.to_value(),
            "engine-cache-dir" => path(&s.engine_cache_dir),
            "threads" => s.threads.to_value(),
            "max-batch" => s.max_batch.to_value(),
            "stride" => s.stream.stride.to_value(),
            "top-k" => s.stream.top_k.to_value(),
            "threshold" => s.stream.threshold.to_value(),
            "smoothing" => s.stream.smoothing.to_value(),
            "draw" => s.stream.draw.to_value(),
            "max-pending" => s.stream.max_pending.to_value(),
            "block" => s.stream.block.to_value(),
            "predictions" => self.shared.predictions.load(Ordering::Relaxed).to_value(),
            "pending" => (*lock(&self.shared.pending) as u32).to_value(),
            "skipped" => self.shared.skipped.load(Ordering::Relaxed).to_value(),
            "provider" => lock(&self.shared.provider).clone().to_value(),
            "stats" => self.stats().to_value(),
            _ => glib::Value::from_type(pspec.value_type()),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        // QoS would drop late frames, which breaks the temporal window.
        self.obj().set_qos(false);
    }
}

impl GstObjectImpl for SlowFast {}

impl ElementImpl for SlowFast {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "SlowFast action recognition",
                "Filter/Analyzer/Video",
                "Recognises actions in video with a SlowFast network (ONNX Runtime: TensorRT, CUDA or CPU). \
                 Frames pass through unchanged (unless draw=true); each buffer carries the latest prediction as a \
                 GstVideoRegionOfInterestMeta of type \"slowfast\" whose \"slowfast\" parameter structure holds \
                 index, class-ids, labels, scores, clip-start and clip-end (PTS, ns); every prediction is also posted \
                 as an element message named \"slowfast\".\n\
                 Example: gst-launch-1.0 uridecodebin uri=file:///clip.mp4 ! videoconvert ! \
                 slowfast model=model.onnx draw=true ! videoconvert ! autovideosink",
                "SlowFast-rs developers",
            )
        });
        Some(&*METADATA)
    }

    fn change_state(&self, transition: gst::StateChange) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        if transition == gst::StateChange::PausedToReady {
            // Deactivating the pads waits for the streaming thread.
            self.set_flushing(true);
        }
        self.parent_change_state(transition)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = gst_video::VideoCapsBuilder::new().format_list(FORMATS.iter().copied()).build();
            [gst::PadDirection::Src, gst::PadDirection::Sink]
                .into_iter()
                .filter_map(|dir| {
                    let name = if dir == gst::PadDirection::Src { "src" } else { "sink" };
                    gst::PadTemplate::new(name, dir, gst::PadPresence::Always, &caps).ok()
                })
                .collect()
        });
        TEMPLATES.as_ref()
    }
}

impl BaseTransformImpl for SlowFast {
    const MODE: gst_base::subclass::BaseTransformMode = gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = lock(&self.settings).clone();
        let state = self.load(&settings)?;
        *lock(&self.shared.provider) = Some(state.engine.provider.to_string());
        for why in &state.engine.fallbacks {
            gst::element_imp_warning!(self, gst::LibraryError::Init, ("execution provider skipped: {why}"));
        }
        gst::info!(CAT, imp = self, "model {:?} on {}", settings.model, state.engine.provider);
        {
            let mut r = lock(&self.shared.results);
            r.generation += 1;
            r.latest = None;
            r.smoother.clear();
            r.next_index = 0;
        }
        self.shared.predictions.store(0, Ordering::Relaxed);
        self.shared.skipped.store(0, Ordering::Relaxed);
        lock(&self.shared.recent).clear();
        self.set_flushing(false);
        *lock(&self.state) = Some(state);
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        lock(&self.shared.results).generation += 1;
        *lock(&self.state) = None;
        Ok(())
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        match event.view() {
            gst::EventView::FlushStart(_) => self.set_flushing(true),
            gst::EventView::FlushStop(_) => {
                self.set_flushing(false);
                if let Some(state) = lock(&self.state).as_mut() {
                    state.reset_window();
                }
                let mut r = lock(&self.shared.results);
                r.generation += 1;
                r.latest = None;
                r.smoother.clear();
            }
            gst::EventView::Eos(_) => self.drain(),
            _ => {}
        }
        self.parent_sink_event(event)
    }

    fn transform_ip(&self, buf: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        let settings = lock(&self.settings).stream;
        let (width, height, draw_info) = {
            let mut guard = lock(&self.state);
            let Some(state) = guard.as_mut() else { return Err(gst::FlowError::Flushing) };
            let Some(info) = state.info.take() else { return Err(gst::FlowError::NotNegotiated) };
            let fed = self.feed(state, &settings, &info, buf);
            let out = (info.width(), info.height(), settings.draw.then(|| info.clone()));
            state.info = Some(info);
            fed?;
            out
        };
        let (structure, caption) = match &lock(&self.shared.results).latest {
            Some(l) => (l.structure.clone(), settings.draw.then(|| l.caption.clone())),
            None => return Ok(gst::FlowSuccess::Ok),
        };
        let mut roi = gst_video::VideoRegionOfInterestMeta::add(buf, NAME, (0, 0, width, height));
        roi.add_param(structure);
        if let (Some(info), Some(caption)) = (draw_info, caption) {
            match gst_video::VideoFrameRef::from_buffer_ref_writable(buf, &info) {
                Ok(mut frame) => draw::caption(&mut frame, &caption),
                Err(_) => gst::warning!(CAT, imp = self, "cannot map the frame for drawing"),
            }
        }
        Ok(gst::FlowSuccess::Ok)
    }
}

impl VideoFilterImpl for SlowFast {
    fn set_info(
        &self,
        incaps: &gst::Caps,
        in_info: &gst_video::VideoInfo,
        outcaps: &gst::Caps,
        out_info: &gst_video::VideoInfo,
    ) -> Result<(), gst::LoggableError> {
        if let Some(state) = lock(&self.state).as_mut() {
            let size = state.ring_config.crop_size as u32;
            let (w, h) = (in_info.width(), in_info.height());
            let min = min_side(size);
            if w < min || h < min {
                // Upscaled that much, a frame carries no motion to see.
                let model = lock(&self.settings).model.clone().unwrap_or_default();
                gst::element_imp_error!(
                    self,
                    gst::StreamError::Format,
                    (
                        "{w}x{h} video is too small for model {}: its {size}x{size} input needs frames of at least {min}x{min}",
                        model.display()
                    )
                );
                return Err(gst::loggable_error!(CAT, "{w}x{h} frames are too small"));
            }
            if w < size || h < size {
                gst::warning!(CAT, imp = self, "{w}x{h} frames are upscaled to the {size} px input");
            }
            // A new resolution or rate starts a new window.
            state.info = Some(in_info.clone());
            state.reset_window();
        }
        self.parent_set_info(incaps, in_info, outcaps, out_info)
    }
}

impl SlowFast {
    /// Loads (or shares) the engine and the labels; errors name the file.
    fn load(&self, settings: &Settings) -> Result<State, gst::ErrorMessage> {
        let Some(model) = settings.model.clone() else {
            return Err(gst::error_msg!(
                gst::ResourceError::NotFound,
                ["no model: set the `model` property to a SlowFast ONNX file (made by `trainer export`)"]
            ));
        };
        if !model.is_file() {
            return Err(gst::error_msg!(gst::ResourceError::NotFound, ["model {}: no such file", model.display()]));
        }
        let model = if settings.int8 {
            runtime::model_info::find_int8_sibling(&model)
                .map_err(|why| gst::error_msg!(gst::ResourceError::NotFound, ["int8=true: {why}"]))?
        } else {
            model
        };
        let key = EngineKey {
            model: model.canonicalize().unwrap_or(model.clone()),
            backend: settings.backend.into(),
            strict: settings.strict,
            fp16: settings.fp16,
            cache_dir: settings.engine_cache_dir.clone(),
            threads: (settings.threads > 0).then_some(settings.threads as usize),
            max_batch: settings.max_batch.max(1) as usize,
        };
        let engine = SharedEngine::get(&key)
            .map_err(|e| gst::error_msg!(gst::LibraryError::Init, ["cannot load model {}: {e}", model.display()]))?;
        let labels = match &settings.labels {
            None => engine.info.labels.clone(),
            Some(path) => {
                let labels = runtime::labels::read(path).map_err(|e| gst::error_msg!(gst::ResourceError::Read, ["labels: {e}"]))?;
                if labels.len() != engine.info.num_classes {
                    return Err(gst::error_msg!(
                        gst::ResourceError::Read,
                        [
                            "labels {} list {} classes but model {} has {}",
                            path.display(),
                            labels.len(),
                            model.display(),
                            engine.info.num_classes
                        ]
                    ));
                }
                labels
            }
        };
        let ring_config = RingConfig::from_model(&engine.info);
        Ok(State { engine, labels: Arc::new(labels), ring: TimedRing::new(ring_config.clone()), ring_config, info: None })
    }

    /// Puts the frame into the ring and, when a prediction is due, hands
    /// the window to the inference worker without waiting for it.
    fn feed(
        &self,
        state: &mut State,
        settings: &StreamSettings,
        info: &gst_video::VideoInfo,
        buf: &gst::BufferRef,
    ) -> Result<(), gst::FlowError> {
        // A frame without a timestamp is taken to follow the previous one
        // by the caps' frame duration (one tick when they give no rate).
        let pts = match buf.pts() {
            Some(pts) => pts.nseconds(),
            None => {
                let step = frame_duration(info).map_or(state.ring.span_ns() / state.ring.capacity() as u64, |d| d.nseconds());
                state.ring.last_pts().map_or(0, |last| last + step)
            }
        };
        if buf.flags().contains(gst::BufferFlags::DISCONT) || state.ring.is_discontinuity(pts) {
            if state.ring.last_pts().is_some() {
                gst::debug!(CAT, imp = self, "discontinuity at {}: new window", gst::ClockTime::from_nseconds(pts));
            }
            state.reset_window();
        }
        let stride = u64::from(settings.stride.max(1));
        // Only frames a coming window samples are mapped and resized: about
        // half of them at the usual 32 x 2 sampling.
        let frame = if state.ring.needs_pixels(pts, stride) {
            Some(gst_video::VideoFrameRef::from_buffer_ref_readable(buf, info).map_err(|_| {
                gst::element_imp_error!(self, gst::StreamError::Decode, ("cannot map a {}x{} frame", info.width(), info.height()));
                gst::FlowError::Error
            })?)
        } else {
            None
        };
        let source = match &frame {
            Some(f) => Some(frame::source(f).map_err(|e| {
                gst::element_imp_error!(self, gst::StreamError::Format, ("{e}"));
                gst::FlowError::Error
            })?),
            None => None,
        };
        let mut due = None;
        let pushed = state.ring.push(pts, source.as_ref(), stride, |w| {
            if self.reserve(settings) {
                due = Some((w.ring.latest_window(SpatialCrop::Centre), (w.start_ns, w.end_ns)));
            }
        });
        if let Err(e) = pushed {
            if due.is_some() {
                self.finish_one();
            }
            gst::element_imp_error!(self, gst::StreamError::Format, ("{e}"));
            return Err(gst::FlowError::Error);
        }
        let Some((window, (start, end))) = due else { return Ok(()) };
        let clip = match window {
            Some(Ok(clip)) => clip,
            other => {
                self.finish_one();
                if let Some(Err(e)) = other {
                    self.count_skip();
                    gst::element_imp_warning!(self, gst::StreamError::Format, ("window not predicted: {e}"));
                }
                return Ok(());
            }
        };
        let span = (Some(gst::ClockTime::from_nseconds(start)), Some(gst::ClockTime::from_nseconds(end)));
        state.engine.submit(self.job(clip, span, settings, state.labels.clone()));
        Ok(())
    }

    /// Takes a place among the `max-pending` clips for a due window, waiting
    /// for one with `block`; false (the window is skipped and counted) when
    /// none is free.
    fn reserve(&self, settings: &StreamSettings) -> bool {
        let max = settings.max_pending.max(1) as usize;
        let mut pending = lock(&self.shared.pending);
        if settings.block {
            let deadline = Instant::now() + BLOCK_TIMEOUT;
            while *pending >= max && !self.shared.flushing.load(Ordering::SeqCst) {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    gst::warning!(CAT, imp = self, "no inference completed within {BLOCK_TIMEOUT:?}: window skipped");
                    break;
                }
                pending = self.shared.drained.wait_timeout(pending, left).unwrap_or_else(|p| p.into_inner()).0;
            }
        }
        if *pending >= max {
            let now_pending = *pending;
            drop(pending);
            self.count_skip();
            gst::debug!(CAT, imp = self, "{now_pending} clips in inference: window skipped");
            return false;
        }
        *pending += 1;
        true
    }

    /// Counts a skipped window and says so on the bus, with this stream's
    /// totals, so the camera that falls behind is named by its element.
    fn count_skip(&self) {
        let skipped = self.shared.skipped.fetch_add(1, Ordering::Relaxed) + 1;
        let pending = *lock(&self.shared.pending) as u32;
        let s = gst::Structure::builder(stats::SKIPPED_MESSAGE).field(stats::SKIPPED, skipped).field(stats::PENDING, pending).build();
        let obj = self.obj();
        let _ = obj.post_message(gst::message::Element::builder(s).src(&*obj).build());
    }

    /// The `stats` structure: this stream's counters and recent latency.
    fn stats(&self) -> gst::Structure {
        let recent = lock(&self.shared.recent);
        let mut latencies: Vec<u64> = recent.iter().map(|&(l, _)| l).collect();
        latencies.sort_unstable();
        let at = |q: f64| latencies.get(((latencies.len().saturating_sub(1)) as f64 * q).round() as usize).copied().unwrap_or(0);
        let mean_batch = if recent.is_empty() { 0.0 } else { recent.iter().map(|&(_, b)| f64::from(b)).sum::<f64>() / recent.len() as f64 };
        gst::Structure::builder(stats::NAME)
            .field(stats::PREDICTIONS, self.shared.predictions.load(Ordering::Relaxed))
            .field(stats::SKIPPED, self.shared.skipped.load(Ordering::Relaxed))
            .field(stats::PENDING, *lock(&self.shared.pending) as u32)
            .field(stats::LATENCY_P50, at(0.5))
            .field(stats::LATENCY_P99, at(0.99))
            .field(stats::LATENCY_MAX, latencies.last().copied().unwrap_or(0))
            .field(stats::MEAN_BATCH, mean_batch)
            .build()
    }

    fn set_flushing(&self, flushing: bool) {
        self.shared.flushing.store(flushing, Ordering::SeqCst);
        // Under the lock, so that a waiter between its check and its wait
        // cannot miss the wake-up.
        let _pending = lock(&self.shared.pending);
        self.shared.drained.notify_all();
    }

    fn job(&self, clip: runtime::preprocess::Clip, span: Span, settings: &StreamSettings, labels: Arc<Vec<String>>) -> Job {
        let shared = self.shared.clone();
        let element = self.obj().downgrade();
        let generation = lock(&shared.results).generation;
        let (top_k, threshold, smoothing) = (settings.top_k as usize, settings.threshold, settings.smoothing as usize);
        let submitted = Instant::now();
        Job {
            clip,
            done: Box::new(move |result| {
                let element = element.upgrade();
                match result {
                    Ok(Scored { scores, batch }) => {
                        let latency = submitted.elapsed().as_nanos() as u64;
                        let mut r = lock(&shared.results);
                        if r.generation == generation {
                            let smoothed = r.smoother.push(scores, smoothing);
                            let p = Prediction::from_scores(r.next_index, &smoothed, &labels, top_k, threshold, span);
                            r.next_index += 1;
                            let mut structure = p.to_structure();
                            structure.set(fields::LATENCY, latency);
                            structure.set(fields::BATCH, batch as u32);
                            structure.set(fields::SKIPPED, shared.skipped.load(Ordering::Relaxed));
                            {
                                let mut recent = lock(&shared.recent);
                                if recent.len() == stats::LATENCY_WINDOW {
                                    recent.pop_front();
                                }
                                recent.push_back((latency, batch as u32));
                            }
                            r.latest = Some(Latest { structure: structure.clone(), caption: p.caption() });
                            drop(r);
                            shared.predictions.fetch_add(1, Ordering::Relaxed);
                            if let Some(el) = &element {
                                let _ = el.post_message(gst::message::Element::builder(structure).src(el).build());
                            }
                        }
                    }
                    Err(why) => {
                        if let Some(el) = &element {
                            gst::element_warning!(el, gst::LibraryError::Failed, ("inference failed: {why}"));
                        }
                    }
                }
                let mut pending = lock(&shared.pending);
                *pending = pending.saturating_sub(1);
                shared.drained.notify_all();
            }),
        }
    }

    fn finish_one(&self) {
        let mut pending = lock(&self.shared.pending);
        *pending = pending.saturating_sub(1);
        self.shared.drained.notify_all();
    }

    /// Waits until the clips in inference are predicted (and posted), so
    /// the last prediction reaches the bus before EOS goes downstream.
    fn drain(&self) {
        let pending = lock(&self.shared.pending);
        let (pending, timeout) =
            self.shared.drained.wait_timeout_while(pending, EOS_DRAIN_TIMEOUT, |n| *n > 0).unwrap_or_else(|p| p.into_inner());
        if timeout.timed_out() {
            gst::warning!(CAT, imp = self, "EOS: {} clips still in inference after {EOS_DRAIN_TIMEOUT:?}", *pending);
        }
    }
}

type Span = (Option<gst::ClockTime>, Option<gst::ClockTime>);

/// Smallest width and height the element takes for a model whose input is
/// `crop` pixels square: a quarter of it.
fn min_side(crop: u32) -> u32 {
    crop.div_ceil(4).max(2)
}

fn frame_duration(info: &gst_video::VideoInfo) -> Option<gst::ClockTime> {
    let fps = info.fps();
    if fps.numer() <= 0 || fps.denom() <= 0 {
        return None;
    }
    gst::ClockTime::SECOND.mul_div_floor(fps.denom() as u64, fps.numer() as u64)
}
