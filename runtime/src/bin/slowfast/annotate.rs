//! `slowfast annotate`: the CLI face of `runtime::annotate` (argument
//! checks, model and plugin lookup, Ctrl-C, printing). Exit codes: 0 when
//! the input ended or Ctrl-C finalised the output, 1 when the source failed
//! or was given up, 2 for bad arguments and set-up errors.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args as ClapArgs;
use runtime::annotate::{self, AnnotateError, Backoff, ElementSettings, Event, Input, Options, PluginLocation, ServeAddress, Summary};
use serde_json::json;

#[derive(ClapArgs)]
pub struct Args {
    /// Video file, URI, rtsp:// address, or V4L2 device (/dev/video0).
    input: String,
    /// Write the annotated video to this MP4 (H.264).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Serve the annotated stream over RTSP at rtsp://HOST[:PORT][/PATH]
    /// (port 0: any free port, reported on start).
    #[arg(long, value_parser = parse_serve)]
    serve: Option<ServeAddress>,
    /// ONNX model [default: the bundled demo model: models/demo/model.onnx beside
    /// the executable or in ~/.local/share/slowfast, else the copy built in].
    #[arg(long)]
    model: Option<PathBuf>,
    /// Run the model's INT8 sibling (NAME_int8.onnx beside NAME.onnx; the demo model has one),
    /// on OpenVINO unless --backend says otherwise.
    #[arg(long)]
    int8: bool,
    /// Class names replacing the model's own labels.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// One JSON object per line on stdout for every prediction and event.
    #[arg(long)]
    json: bool,
    /// Engine: cpu (ONNX Runtime), cuda, tensorrt, openvino, or auto (falls back to
    /// ONNX Runtime's CPU provider unless --strict) [default: cpu; openvino with --int8].
    #[arg(long, value_parser = ["cpu", "cuda", "tensorrt", "openvino", "auto"])]
    backend: Option<String>,
    /// Fail instead of falling back when the provider is unavailable.
    #[arg(long)]
    strict: bool,
    /// Inference threads [default: the engine's choice, every core].
    #[arg(long, default_value_t = 0)]
    threads: u32,
    /// TensorRT engine cache directory.
    #[arg(long)]
    engine_dir: Option<PathBuf>,
    /// Frames at the model's rate (its target fps, whatever the input's)
    /// between two predictions.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    stride: u32,
    /// Classes per prediction.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    top_k: u32,
    /// Give a lost live source up after this many failed reconnections in a
    /// row [default: retry forever].
    #[arg(long)]
    max_retries: Option<u32>,
    /// A live source silent for this many seconds is reconnected.
    #[arg(long, default_value_t = 5.0)]
    stall_timeout: f64,
    /// First reconnection delay in seconds (doubles up to --max-backoff).
    #[arg(long, default_value_t = 1.0)]
    backoff: f64,
    #[arg(long, default_value_t = 30.0)]
    max_backoff: f64,
    /// Key frame interval of the H.264 output, in frames (RTSP clients
    /// start on a key frame).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    key_interval: u32,
}

fn parse_serve(s: &str) -> Result<ServeAddress, String> {
    s.parse()
}

fn seconds(name: &str, v: f64) -> anyhow::Result<Duration> {
    if !(v.is_finite() && v > 0.0 && v < 1e6) {
        bail!("{name} must be a positive number of seconds, got {v}");
    }
    Ok(Duration::from_secs_f64(v))
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let model = match &a.model {
        Some(m) if m.is_file() => m.clone(),
        Some(m) => bail!("model {}: no such file", m.display()),
        None => default_model(a.int8)?,
    };
    let model =
        if a.int8 { runtime::model_info::find_int8_sibling(&model).map_err(|why| anyhow::anyhow!("--int8: {why}"))? } else { model };
    // INT8 kernels for 3D convolutions are OpenVINO's; ONNX Runtime's CPU
    // provider runs the QDQ graph slower than fp32 (BENCHMARKS.md).
    let backend = a.backend.clone().unwrap_or_else(|| if a.int8 { "openvino" } else { "cpu" }.to_string());
    let input = Input::parse(&a.input)?;
    gst::init().context("cannot initialise GStreamer")?;
    let location = annotate::ensure_element(&plugin_dirs())?;
    if let PluginLocation::File(path) = &location {
        eprintln!("slowfast: element from {}", path.display());
    }
    let opts = Options {
        input,
        output: a.output.clone(),
        serve: a.serve.clone(),
        element: ElementSettings {
            model,
            labels: a.labels.clone(),
            backend,
            strict: a.strict,
            fp16: true,
            threads: a.threads,
            engine_cache_dir: a.engine_dir.clone(),
            stride: a.stride,
            top_k: a.top_k,
        },
        max_retries: a.max_retries,
        backoff: Backoff { initial: seconds("--backoff", a.backoff)?, max: seconds("--max-backoff", a.max_backoff)? },
        stall_timeout: seconds("--stall-timeout", a.stall_timeout)?,
        drain_timeout: Duration::from_secs(60),
        key_interval: a.key_interval,
    };
    let interrupts = Arc::new(AtomicUsize::new(0));
    let counter = interrupts.clone();
    ctrlc::set_handler(move || {
        if counter.fetch_add(1, Ordering::SeqCst) >= 1 {
            eprintln!("slowfast: interrupted twice: quitting without finalising the output");
            std::process::exit(130);
        }
    })
    .context("cannot install the Ctrl-C handler")?;

    eprintln!("slowfast: annotating {} with {}", opts.input.name(), opts.element.model.display());
    let json = a.json;
    let mut print = |e: Event| report(&e, json);
    let result = annotate::run(&opts, &interrupts, &mut print);
    match result {
        Ok(summary) => {
            finished(&summary, json);
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ (AnnotateError::SourceGivenUp { .. } | AnnotateError::Source { .. } | AnnotateError::DrainTimeout(_))) => {
            eprintln!("slowfast: error: {e}");
            if json {
                println!("{}", json!({ "event": "error", "error": e.to_string() }));
            }
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e.into()),
    }
}

fn report(e: &Event, json: bool) {
    let secs = |d: &Duration| (d.as_secs_f64() * 1000.0).round() / 1000.0;
    if let Event::Prediction(p) = e {
        if json {
            let mut v = serde_json::to_value(p).unwrap_or_default();
            v["event"] = "prediction".into();
            println!("{v}");
        } else {
            println!("{}", p.human());
        }
        return;
    }
    let (line, value) = match e {
        Event::Serving { url } => (format!("serving {url}"), json!({ "event": "serving", "url": url })),
        Event::SourceLost { why } => (format!("source lost: {why}"), json!({ "event": "source-lost", "reason": why })),
        Event::Retrying { attempt, max_retries, delay } => (
            match max_retries {
                Some(m) => format!("reconnecting in {:.1} s (attempt {attempt} of {m})", delay.as_secs_f64()),
                None => format!("reconnecting in {:.1} s (attempt {attempt})", delay.as_secs_f64()),
            },
            json!({ "event": "retry", "attempt": attempt, "max_retries": max_retries, "delay_s": secs(delay) }),
        ),
        Event::SourceRestored { outage, attempts } => (
            format!("source restored after a {:.1} s outage ({attempts} connection attempts)", outage.as_secs_f64()),
            json!({ "event": "source-restored", "outage_s": secs(outage), "attempts": attempts }),
        ),
        Event::Warning(w) => (format!("warning: {w}"), json!({ "event": "warning", "message": w })),
        Event::Interrupted => {
            ("interrupted: finalising the output (Ctrl-C again to quit at once)".to_string(), json!({ "event": "interrupted" }))
        }
        Event::Prediction(_) => return,
    };
    eprintln!("slowfast: {line}");
    if json {
        println!("{value}");
    }
}

fn finished(s: &Summary, json: bool) {
    eprintln!(
        "slowfast: done ({:?}): {} frames, {} predictions, {} windows skipped, {} frames dropped, {} outages ({:.1} s){}",
        s.finish,
        s.frames,
        s.predictions,
        s.skipped,
        s.dropped,
        s.outages,
        s.outage_s,
        s.output.as_ref().map(|p| format!(", wrote {}", p.display())).unwrap_or_default()
    );
    if json {
        let mut v = serde_json::to_value(s).unwrap_or_default();
        v["event"] = "finished".into();
        println!("{v}");
    }
}

/// Where the plugin is looked for first: beside the executable (cargo puts
/// `libgstslowfast.so` there) and in its `lib/gstreamer-1.0` sibling.
pub fn plugin_dirs() -> Vec<PathBuf> {
    let Some(dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf)) else { return vec![] };
    let mut dirs = vec![dir.clone()];
    if let Some(prefix) = dir.parent() {
        dirs.push(prefix.join("lib/gstreamer-1.0"));
    }
    dirs
}

const DEMO_MODEL: &str = "models/demo/model.onnx";

/// The bundled demo model and its INT8 sibling, inside the binary: a copied
/// or installed `slowfast` has its default without the checkout it was
/// built in.
const EMBEDDED_DEMO: &[u8] = include_bytes!("../../../../models/demo/model.onnx");
const EMBEDDED_DEMO_INT8: &[u8] = include_bytes!("../../../../models/demo/model_int8.onnx");

/// The default model, in this order: `models/demo/model.onnx` beside the
/// executable, then in the data directory (`$XDG_DATA_HOME/slowfast`, else
/// `~/.local/share/slowfast`), then the copy built into the binary, written
/// once to the cache directory (`$XDG_CACHE_HOME/slowfast`, else
/// `~/.cache/slowfast`) since the element reads models from files. With
/// `int8`, the INT8 sibling must be found beside it (or is unpacked too).
fn default_model(int8: bool) -> anyhow::Result<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf)) {
        candidates.push(dir.join(DEMO_MODEL));
    }
    if let Some(data) = xdg_dir("XDG_DATA_HOME", ".local/share") {
        candidates.push(data.join(DEMO_MODEL));
    }
    if let Some(found) = candidates.iter().find(|p| p.is_file() && (!int8 || runtime::model_info::int8_sibling(p).is_file())) {
        return Ok(found.clone());
    }
    let cache = xdg_dir("XDG_CACHE_HOME", ".cache").context(
        "no --model given, and neither XDG_CACHE_HOME nor HOME is set to unpack the built-in demo model to: pass --model m.onnx",
    )?;
    // The lengths in the name: a rebuilt binary with another model unpacks anew.
    let path = cache.join(format!("demo-model-{}-{}.onnx", EMBEDDED_DEMO.len(), EMBEDDED_DEMO_INT8.len()));
    unpack(&cache, &path, EMBEDDED_DEMO)?;
    unpack(&cache, &runtime::model_info::int8_sibling(&path), EMBEDDED_DEMO_INT8)?;
    Ok(path)
}

/// Writes `bytes` to `path` unless a file of that length is there already.
fn unpack(cache: &Path, path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if std::fs::metadata(path).map(|m| m.len() as usize == bytes.len()).unwrap_or(false) {
        return Ok(());
    }
    std::fs::create_dir_all(cache)
        .with_context(|| format!("{}: cannot create the cache folder for the built-in demo model", cache.display()))?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("{}: cannot unpack the built-in demo model", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}: cannot unpack the built-in demo model", path.display()))?;
    Ok(())
}

/// `$VAR/slowfast`, else `$HOME/<fallback>/slowfast` (the XDG base directories).
fn xdg_dir(var: &str, fallback: &str) -> Option<PathBuf> {
    let base = match std::env::var_os(var).filter(|v| !v.is_empty()) {
        Some(v) => PathBuf::from(v),
        None => PathBuf::from(std::env::var_os("HOME").filter(|v| !v.is_empty())?).join(fallback),
    };
    Some(base.join("slowfast"))
}
