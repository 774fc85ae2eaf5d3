use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args as ClapArgs;
use runtime::sampling::{ClipPosition, clip_indices, clip_size};
use tch::{Device, nn};
use trainer::clip::{KINETICS_MEAN, KINETICS_STD, frames_to_tensor, pathways, preprocess};
use trainer::model::{Preset, SlowFast};
use trainer::weights::{self, LoadMode};

const DEFAULT_VIDEO: &str = "data/videos/archery_paddlevideo_example.avi";

#[derive(ClapArgs)]
pub struct Args {
    /// Video file or URI [default: the repository's archery clip, data/videos].
    video: Option<String>,
    #[arg(long, value_enum, default_value = "slowfast_8x8_r50")]
    arch: Preset,
    /// Weights: safetensors with PySlowFast names, or a PySlowFast / pytorchvideo / Caffe2 / PaddleVideo
    /// checkpoint (read, never run); random init without.
    #[arg(long)]
    weights: Option<PathBuf>,
    #[arg(long, default_value_t = 256)]
    crop: i64,
    #[arg(long, default_value_t = 2)]
    threads: i32,
}

/// The repository's clip, wherever the command is run from.
fn default_video() -> String {
    let from_crate = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(DEFAULT_VIDEO);
    from_crate.canonicalize().map(|p| p.display().to_string()).unwrap_or_else(|_| DEFAULT_VIDEO.to_string())
}

pub fn run(a: Args) -> anyhow::Result<()> {
    tch::set_num_threads(a.threads);
    let video = a.video.unwrap_or_else(default_video);
    let config = a.arch.config();
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = SlowFast::new(&vs.root(), &config)?;
    if let Some(w) = &a.weights {
        weights::load(&mut vs, w, LoadMode::Strict)?;
    }

    let t0 = Instant::now();
    let decoded = runtime::decode::decode_all(&video)?;
    let fps = decoded.fps.unwrap_or(30.0);
    let first = &decoded.frames[0];
    let idx = clip_indices(decoded.frames.len(), clip_size(32, 2, fps, 30.0), 32, ClipPosition::View { index: 0, count: 1 });
    let picked: Vec<&[u8]> = idx.iter().map(|&i| decoded.frames[i].data.as_slice()).collect();
    let frames = frames_to_tensor(&picked, first.height as i64, first.width as i64);
    let fast = preprocess(&frames, a.crop, KINETICS_MEAN, KINETICS_STD);
    let (slow, fast) = pathways(&fast, config.alpha as usize);
    let decode_ms = t0.elapsed().as_secs_f64() * 1e3;

    let t1 = Instant::now();
    let probs = tch::no_grad(|| model.forward_t(&slow, &fast, false)).context("forward pass")?;
    let forward_ms = t1.elapsed().as_secs_f64() * 1e3;
    let (top, class) = probs.max_dim(1, false);

    println!("video: {video} ({} frames {}x{} at {fps:.2} fps)", decoded.frames.len(), first.width, first.height);
    println!("clip frames: {idx:?}");
    println!("arch: {:?}, parameters: {}", a.arch, SlowFast::num_parameters(&vs));
    println!("input: slow {:?}, fast {:?}", slow.size(), fast.size());
    println!("output: {:?} (softmax over {} classes)", probs.size(), config.num_classes);
    println!("top class id {} with probability {:.5}", class.int64_value(&[0]), top.double_value(&[0]));
    if a.weights.is_none() {
        println!("weights: random init (no --weights given), so the class is meaningless");
    }
    println!("decode + preprocess: {decode_ms:.0} ms, forward ({} threads): {forward_ms:.0} ms", a.threads);
    Ok(())
}
