//! Writing synthetic clips as real H.264 MP4 files through GStreamer
//! (`appsrc ! videoconvert ! x264enc ! mp4mux ! filesink`), with the list
//! files the loaders read.

use std::io::Write;
use std::path::{Path, PathBuf};

use gst::prelude::*;

use super::{CLASSES, FPS, Split, SynthSpec, Video, render_clip};

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{path}: {why}")]
    Failed { path: PathBuf, why: String },
}

fn fail(path: &Path, why: impl std::fmt::Display) -> WriteError {
    WriteError::Failed { path: path.to_path_buf(), why: why.to_string() }
}

/// Encodes `size x size` packed RGB frames at [`FPS`] to `path`.
pub fn write_mp4(frames: &[Vec<u8>], size: u32, path: &Path) -> Result<(), WriteError> {
    gst::init().map_err(|e| fail(path, format!("GStreamer init: {e}")))?;
    let size = size as i32;
    // I420 before x264enc keeps the stream in the High profile every decoder
    // reads; short GOPs keep seeking to a clip cheap.
    let desc = "appsrc name=src format=time is-live=false ! videoconvert ! video/x-raw,format=I420 ! \
         x264enc speed-preset=faster key-int-max=8 bframes=0 threads=1 ! video/x-h264,profile=high ! \
         mp4mux ! filesink name=sink"
        .to_string();
    let pipeline = gst::parse::launch(&desc)
        .map_err(|e| fail(path, format!("building the encoder: {e}")))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| fail(path, "not a pipeline"))?;
    let result = encode(&pipeline, frames, size, path);
    let _ = pipeline.set_state(gst::State::Null);
    result
}

fn encode(pipeline: &gst::Pipeline, frames: &[Vec<u8>], size: i32, path: &Path) -> Result<(), WriteError> {
    let sink = pipeline.by_name("sink").ok_or_else(|| fail(path, "filesink missing"))?;
    sink.set_property("location", path.to_string_lossy().to_string());
    let src = pipeline.by_name("src").and_then(|e| e.downcast::<gst_app::AppSrc>().ok()).ok_or_else(|| fail(path, "appsrc missing"))?;
    let caps = gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgb, size as u32, size as u32)
        .fps(gst::Fraction::new(FPS as i32, 1))
        .build()
        .and_then(|i| i.to_caps())
        .map_err(|e| fail(path, format!("caps: {e}")))?;
    src.set_caps(Some(&caps));
    pipeline.set_state(gst::State::Playing).map_err(|e| fail(path, format!("starting the encoder: {e}")))?;
    let frame_ns = 1_000_000_000 / FPS as u64;
    for (i, frame) in frames.iter().enumerate() {
        let mut buffer = gst::Buffer::from_slice(frame.clone());
        if let Some(b) = buffer.get_mut() {
            b.set_pts(gst::ClockTime::from_nseconds(i as u64 * frame_ns));
            b.set_duration(gst::ClockTime::from_nseconds(frame_ns));
        }
        src.push_buffer(buffer).map_err(|e| fail(path, format!("pushing frame {i}: {e:?}")))?;
    }
    src.end_of_stream().map_err(|e| fail(path, format!("end of stream: {e:?}")))?;
    let bus = pipeline.bus().ok_or_else(|| fail(path, "pipeline has no bus"))?;
    for msg in bus.iter_timed(gst::ClockTime::from_seconds(60)) {
        match msg.view() {
            gst::MessageView::Eos(_) => return Ok(()),
            gst::MessageView::Error(e) => {
                return Err(fail(path, format!("{} ({})", e.error(), e.debug().unwrap_or_default())));
            }
            _ => {}
        }
    }
    Err(fail(path, "the encoder did not finish within 60 s"))
}

/// Writes `video` to `path` (MP4) and its ground truth beside it as
/// `<path minus extension>.segments.txt`, one `start_s end_s label name`
/// line per segment; returns the segments file.
pub fn write_video(video: &Video, path: &Path) -> Result<PathBuf, WriteError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| fail(dir, e))?;
    }
    write_mp4(&video.frames, video.size, path)?;
    let truth = path.with_extension("segments.txt");
    let text: String = video.segments.iter().map(|s| s.line() + "\n").collect();
    std::fs::write(&truth, text).map_err(|e| fail(&truth, e))?;
    Ok(truth)
}

/// What [`write_dataset`] produced.
#[derive(Debug)]
pub struct Written {
    pub train_list: PathBuf,
    pub val_list: PathBuf,
    pub labels: PathBuf,
    pub clips: usize,
}

/// Writes `train` and `val` clips under `out/{train,val}/<class>/`, the
/// lists `train.txt` / `val.txt` (`relative/path.mp4 label`) and
/// `labels.txt` (`id name`), encoding on `workers` threads.
pub fn write_dataset(out: &Path, spec: &SynthSpec, train: usize, val: usize, workers: usize) -> Result<Written, WriteError> {
    let mut jobs = Vec::new();
    for (split, count) in [(Split::Train, train), (Split::Val, val)] {
        for index in 0..count {
            let label = super::label_of(index);
            let rel = format!("{}/{}/{:06}.mp4", split.name(), CLASSES[label], index);
            jobs.push((split, index, label, rel));
        }
    }
    for (split, _) in [(Split::Train, train), (Split::Val, val)] {
        for class in CLASSES {
            let dir = out.join(split.name()).join(class);
            std::fs::create_dir_all(&dir).map_err(|e| fail(&dir, e))?;
        }
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let errors = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..workers.max(1) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((split, index, _, rel)) = jobs.get(i) else { break };
                    let clip = render_clip(spec, *split, *index);
                    if let Err(e) = write_mp4(&clip.frames, clip.size, &out.join(rel))
                        && let Ok(mut errs) = errors.lock()
                    {
                        errs.push(e);
                    }
                }
            });
        }
    });
    if let Some(e) = errors.into_inner().ok().and_then(|mut v| (!v.is_empty()).then(|| v.remove(0))) {
        return Err(e);
    }
    let write_text = |name: &str, lines: Vec<String>| -> Result<PathBuf, WriteError> {
        let path = out.join(name);
        let mut f = std::fs::File::create(&path).map_err(|e| fail(&path, e))?;
        for l in lines {
            writeln!(f, "{l}").map_err(|e| fail(&path, e))?;
        }
        Ok(path)
    };
    let list = |split: Split| jobs.iter().filter(|j| j.0 == split).map(|(_, _, label, rel)| format!("{rel} {label}")).collect();
    let train_list = write_text("train.txt", list(Split::Train))?;
    let val_list = write_text("val.txt", list(Split::Val))?;
    let labels = write_text("labels.txt", CLASSES.iter().enumerate().map(|(i, c)| format!("{i} {c}")).collect())?;
    Ok(Written { train_list, val_list, labels, clips: jobs.len() })
}
