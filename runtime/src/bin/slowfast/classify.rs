//! `slowfast classify`: every video is classified or reported on its own;
//! the exit code is 1 when any video failed.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args as ClapArgs;
use runtime::classify::{Views, classify_video};
use runtime::engine::Engine;

use crate::{EngineArgs, report_engine};

#[derive(ClapArgs)]
pub struct Args {
    /// Video files or URIs.
    #[arg(required = true)]
    videos: Vec<String>,
    /// ONNX model exported by `trainer export` (its metadata sets the clip geometry and labels).
    #[arg(long)]
    model: PathBuf,
    /// Temporal clips x spatial crops (the Kinetics test protocol is 10x3).
    #[arg(long, default_value = "10x3")]
    views: Views,
    /// Classes reported per video.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    top_k: u32,
    /// One JSON object per video on stdout.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    engine: EngineArgs,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let mut engine = Engine::load(&a.model, &a.engine.options())?;
    report_engine(&engine);
    let provider = engine.provider().to_string();
    let mut failed = 0;
    for video in &a.videos {
        match classify_video(&mut engine, video, a.views, a.top_k as usize) {
            Ok(r) => {
                if a.json {
                    let mut v = serde_json::to_value(&r)?;
                    v["provider"] = provider.clone().into();
                    println!("{v}");
                } else {
                    println!(
                        "{}: {} views ({}), {} frames at {:.2} fps, {}",
                        r.video,
                        r.views,
                        a.views,
                        r.frames,
                        r.fps,
                        if r.seeked { format!("{} decoded after seeking", r.decoded_frames) } else { "decoded whole".into() }
                    );
                    for (rank, c) in r.top.iter().enumerate() {
                        println!("  {}. {:<40} {:.6}  (class {})", rank + 1, c.label, c.score, c.class);
                    }
                }
            }
            Err(e) => {
                failed += 1;
                eprintln!("slowfast: error: {e}");
                if a.json {
                    println!("{}", serde_json::json!({ "video": video, "error": e.to_string() }));
                }
            }
        }
    }
    if failed > 0 {
        eprintln!("slowfast: {failed} of {} videos failed", a.videos.len());
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
