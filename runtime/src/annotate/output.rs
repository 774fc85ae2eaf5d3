//! The output pipeline, built once per run: appsrc → slowfast (draw=true)
//! → H.264 → MP4 file and/or the RTSP feed; or, with neither, only the
//! element (predictions are printed, nothing is encoded).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use gst::glib;
use gst::prelude::*;

use super::bridge::FILE_QUEUE;
use super::error::AnnotateError;
use super::input::{make, pipeline_error};
use super::serve::Feeds;
use super::{ElementSettings, Options};

pub struct OutputPipeline {
    pub pipeline: gst::Pipeline,
    pub appsrc: gst_app::AppSrc,
    pub slowfast: gst::Element,
    /// Fixes the encoded size: the bridge sets it to the first frame size,
    /// rounded up to even (x264 takes no odd 4:2:0 size).
    pub encode_size: Option<gst::Element>,
    pub bus: gst::Bus,
}

impl OutputPipeline {
    pub fn build(opts: &Options, feeds: Option<Arc<Feeds>>) -> Result<OutputPipeline, AnnotateError> {
        let live = opts.input.is_live();
        let pipeline = gst::Pipeline::with_name("annotate-output");
        let appsrc = gst_app::AppSrc::builder()
            .name("frames")
            .format(gst::Format::Time)
            .is_live(live)
            // Files are decoded as fast as the output goes; live frames are
            // never held back (the bridge drops and counts instead).
            .block(!live)
            .max_buffers(if live { 0 } else { FILE_QUEUE })
            .build();
        let slowfast = make(crate::schema::ELEMENT)?;
        configure(&slowfast, &opts.element)?;
        // A file loses nothing by waiting for inference: its predictions
        // then do not depend on the machine's speed.
        slowfast.set_property("block", !live);
        pipeline.add_many([appsrc.upcast_ref(), &slowfast]).map_err(pipeline_error)?;
        appsrc.link(&slowfast).map_err(pipeline_error)?;

        let mut encode_size = None;
        if opts.output.is_none() && feeds.is_none() {
            let sink = gst::ElementFactory::make("fakesink").property("sync", false).build().map_err(pipeline_error)?;
            pipeline.add(&sink).map_err(pipeline_error)?;
            slowfast.link(&sink).map_err(pipeline_error)?;
        } else {
            let convert = make("videoconvert")?;
            // Frames of another size than the first (a resolution change
            // mid-stream) are scaled back to it.
            let scale = make("videoscale")?;
            let size = make("capsfilter")?;
            let encoder = make("x264enc")?;
            // Encoding must keep up with a live camera on an edge CPU, and a
            // live viewer wants no B-frame reordering delay.
            encoder.set_property_from_str("tune", "zerolatency");
            encoder.set_property_from_str("speed-preset", "ultrafast");
            encoder.set_property("key-int-max", opts.key_interval);
            let tee = make("tee")?;
            pipeline.add_many([&convert, &scale, &size, &encoder, &tee]).map_err(pipeline_error)?;
            gst::Element::link_many([&slowfast, &convert, &scale, &size, &encoder, &tee]).map_err(pipeline_error)?;
            encode_size = Some(size);
            if let Some(path) = &opts.output {
                add_file_branch(&pipeline, &tee, path)?;
            }
            if let Some(feeds) = feeds {
                // A file served over RTSP is played at its own rate.
                add_rtsp_branch(&pipeline, &tee, feeds, !live)?;
            }
        }
        let bus = pipeline.bus().ok_or_else(|| AnnotateError::Pipeline("the output pipeline has no bus".into()))?;
        Ok(OutputPipeline { pipeline, appsrc, slowfast, encode_size, bus })
    }
}

fn configure(el: &gst::Element, s: &ElementSettings) -> Result<(), AnnotateError> {
    let check = |name: &str| {
        el.find_property(name).map(|_| ()).ok_or_else(|| {
            AnnotateError::Pipeline(format!(
                "the loaded slowfast plugin has no `{name}` property: it is out of date, rebuild it with `cargo build -p gst-plugin-slowfast`"
            ))
        })
    };
    // Every property annotate sets or reads (the summary reads the two
    // counters), so an older plugin is refused up front instead of making
    // `property()` panic at the end.
    let names = ["model", "labels", "backend", "strict", "fp16", "threads", "engine-cache-dir", "stride", "top-k", "draw", "block"];
    for name in names.into_iter().chain(["predictions", "skipped"]) {
        check(name)?;
    }
    el.set_property("model", s.model.display().to_string());
    if let Some(labels) = &s.labels {
        el.set_property("labels", labels.display().to_string());
    }
    let backend = el.find_property("backend").map(|p| p.value_type()).and_then(glib::EnumClass::with_type);
    let value = backend
        .and_then(|class| class.to_value_by_nick(&s.backend))
        .ok_or_else(|| AnnotateError::Pipeline(format!("backend {:?}: not one of auto, tensorrt, cuda, cpu, openvino", s.backend)))?;
    el.set_property_from_value("backend", &value);
    el.set_property("strict", s.strict);
    el.set_property("fp16", s.fp16);
    el.set_property("threads", s.threads);
    if let Some(dir) = &s.engine_cache_dir {
        el.set_property("engine-cache-dir", dir.display().to_string());
    }
    el.set_property("stride", s.stride);
    el.set_property("top-k", s.top_k);
    el.set_property("draw", true);
    Ok(())
}

fn queue() -> Result<gst::Element, AnnotateError> {
    make("queue")
}

fn add_file_branch(pipeline: &gst::Pipeline, tee: &gst::Element, path: &Path) -> Result<(), AnnotateError> {
    let q = queue()?;
    let parse = make("h264parse")?;
    let mux = make("mp4mux")?;
    let sink = make("filesink")?;
    sink.set_property("location", path.display().to_string());
    let chain = [&q, &parse, &mux, &sink];
    pipeline.add_many(chain).map_err(pipeline_error)?;
    gst::Element::link_many(chain).map_err(pipeline_error)?;
    tee.link(&q).map_err(pipeline_error)
}

fn add_rtsp_branch(pipeline: &gst::Pipeline, tee: &gst::Element, feeds: Arc<Feeds>, sync: bool) -> Result<(), AnnotateError> {
    let q = queue()?;
    let parse = make("h264parse")?;
    // SPS/PPS before every key frame: a client may join at any of them.
    parse.set_property("config-interval", -1i32);
    let sink = gst_app::AppSink::builder()
        .name("rtsp")
        .sync(sync)
        .caps(&gst::Caps::builder("video/x-h264").field("stream-format", "byte-stream").field("alignment", "au").build())
        .build();
    let key_request = feeds.key_request.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                if key_request.swap(false, Ordering::AcqRel) {
                    request_key_frame(sink.upcast_ref());
                }
                if let Some(buffer) = sample.buffer() {
                    feeds.push(buffer);
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    let chain = [&q, &parse, sink.upcast_ref()];
    pipeline.add_many(chain).map_err(pipeline_error)?;
    gst::Element::link_many(chain).map_err(pipeline_error)?;
    tee.link(&q).map_err(pipeline_error)
}

/// Asks the encoder (upstream of `sink`) for a key frame with headers.
fn request_key_frame(sink: &gst::Element) {
    if let Some(pad) = sink.static_pad("sink") {
        let event = gst_video::UpstreamForceKeyUnitEvent::builder().all_headers(true).build();
        if !pad.push_event(event) {
            gst::warning!(gst::CAT_DEFAULT, "the encoder did not take the key frame request");
        }
    }
}
