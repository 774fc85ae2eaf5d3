//! `slowfast compare`: how far two models (an fp32 file and its INT8
//! sibling) or two engines (ONNX Runtime and OpenVINO) agree on real
//! videos: top-1 agreement, top-5 overlap, the largest gap in class
//! probability, and with a labelled list each side's top-1 accuracy.
//!
//! ```text
//! slowfast compare --model m.onnx --model m_int8.onnx --backend openvino data/videos/*.mp4
//! slowfast compare --model m.onnx --backend cpu,openvino --list val.txt --json
//! ```
//!
//! A video that cannot be read is reported and skipped; the comparison
//! covers the others.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args as ClapArgs;
use runtime::classify::{Views, classify_video};
use runtime::engine::{Backend, Engine, EngineOptions, OpenVinoOptions, openvino};
use serde::Serialize;

#[derive(ClapArgs)]
pub struct Args {
    /// Video files or URIs (or give --list).
    videos: Vec<String>,
    /// A list of `path label` lines (label: class id), relative paths from the list's folder.
    #[arg(long)]
    list: Option<PathBuf>,
    /// One model, run on two backends, or two models (each on its backend; one backend serves both).
    #[arg(long, required = true, num_args = 1)]
    model: Vec<PathBuf>,
    /// Engines: cpu (ONNX Runtime), openvino, cuda, tensorrt; one, or two with one model.
    #[arg(long, default_value = "cpu", value_delimiter = ',', value_parser = crate::parse_backend)]
    backend: Vec<Backend>,
    /// Temporal clips x spatial crops per video.
    #[arg(long, default_value = "1x1")]
    views: Views,
    /// Inference threads [default: every core].
    #[arg(long)]
    threads: Option<usize>,
    /// One JSON object per video, then the summary, on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct VideoRow {
    video: String,
    label: Option<usize>,
    top1: [usize; 2],
    agree: bool,
    top5_overlap: usize,
    largest_gap: f32,
}

#[derive(Serialize)]
struct Summary {
    sides: [String; 2],
    videos: usize,
    skipped: usize,
    top1_agreement: f64,
    mean_top5_overlap: f64,
    largest_gap: f32,
    mean_largest_gap: f64,
    /// Top-1 accuracy of each side (with a labelled list).
    accuracy: Option<[f64; 2]>,
}

fn top(probabilities: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..probabilities.len()).collect();
    order.sort_by(|&a, &b| probabilities[b].total_cmp(&probabilities[a]).then(a.cmp(&b)));
    order.truncate(k);
    order
}

fn read_list(path: &std::path::Path) -> anyhow::Result<Vec<(String, Option<usize>)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read the list", path.display()))?;
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (file, label) = match line.rsplit_once(char::is_whitespace) {
            Some((f, l)) => match l.parse::<usize>() {
                Ok(l) => (f.trim(), Some(l)),
                Err(_) => bail!("{}:{}: the label {l:?} is not a class id", path.display(), n + 1),
            },
            None => (line, None),
        };
        let p = std::path::Path::new(file);
        let full = if p.is_absolute() || file.contains("://") { PathBuf::from(file) } else { dir.join(p) };
        out.push((full.display().to_string(), label));
    }
    if out.is_empty() {
        bail!("{}: the list has no videos", path.display());
    }
    Ok(out)
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let sides: [(PathBuf, Backend); 2] = match (a.model.as_slice(), a.backend.as_slice()) {
        ([m], [b1, b2]) => [(m.clone(), *b1), (m.clone(), *b2)],
        ([m1, m2], [b]) => [(m1.clone(), *b), (m2.clone(), *b)],
        ([m1, m2], [b1, b2]) => [(m1.clone(), *b1), (m2.clone(), *b2)],
        _ => bail!("give two --model files (one or two backends), or one --model and two backends (--backend cpu,openvino)"),
    };
    let inputs: Vec<(String, Option<usize>)> = match (&a.list, a.videos.is_empty()) {
        (Some(list), true) => read_list(list)?,
        (None, false) => a.videos.iter().map(|v| (v.clone(), None)).collect(),
        (Some(_), false) => bail!("give videos or --list, not both"),
        (None, true) => bail!("no videos: give files or URIs, or --list FILE"),
    };
    let mut engines = Vec::new();
    for (model, backend) in &sides {
        let opts = EngineOptions {
            backend: *backend,
            strict: true,
            threads: a.threads,
            openvino: OpenVinoOptions { cache_dir: openvino::default_cache_dir() },
            ..EngineOptions::default()
        };
        let engine = Engine::load(model, &opts).with_context(|| format!("{} on {backend:?}", model.display()))?;
        engines.push(engine);
    }
    if engines[0].info().num_classes != engines[1].info().num_classes {
        bail!("the models have {} and {} classes", engines[0].info().num_classes, engines[1].info().num_classes);
    }
    let names: [String; 2] = [0, 1].map(|i| format!("{} on {}", sides[i].0.display(), engines[i].provider()) + &quantized(&engines[i]));
    let mut rows = Vec::new();
    let mut skipped = 0;
    for (video, label) in &inputs {
        let mut probs = Vec::with_capacity(2);
        for engine in engines.iter_mut() {
            match classify_video(engine, video, a.views, 5) {
                Ok(r) => probs.push(r.probabilities),
                Err(e) => {
                    eprintln!("slowfast compare: skipped: {e}");
                    break;
                }
            }
        }
        if probs.len() < 2 {
            skipped += 1;
            continue;
        }
        let (ta, tb) = (top(&probs[0], 5), top(&probs[1], 5));
        let row = VideoRow {
            video: video.clone(),
            label: *label,
            top1: [ta[0], tb[0]],
            agree: ta[0] == tb[0],
            top5_overlap: ta.iter().filter(|c| tb.contains(c)).count(),
            largest_gap: probs[0].iter().zip(&probs[1]).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max),
        };
        if a.json {
            println!("{}", serde_json::to_string(&row)?);
        } else {
            println!(
                "{}: top-1 {} / {} ({}), top-5 overlap {}/5, largest gap {:.4}",
                row.video,
                row.top1[0],
                row.top1[1],
                if row.agree { "agree" } else { "DIFFER" },
                row.top5_overlap,
                row.largest_gap
            );
        }
        rows.push(row);
    }
    if rows.is_empty() {
        bail!("no video could be read ({skipped} skipped)");
    }
    let n = rows.len() as f64;
    let labelled: Vec<&VideoRow> = rows.iter().filter(|r| r.label.is_some()).collect();
    let accuracy = (!labelled.is_empty())
        .then(|| [0, 1].map(|s| labelled.iter().filter(|r| Some(r.top1[s]) == r.label).count() as f64 / labelled.len() as f64));
    let summary = Summary {
        sides: names,
        videos: rows.len(),
        skipped,
        top1_agreement: rows.iter().filter(|r| r.agree).count() as f64 / n,
        mean_top5_overlap: rows.iter().map(|r| r.top5_overlap as f64).sum::<f64>() / n / 5.0,
        largest_gap: rows.iter().map(|r| r.largest_gap).fold(0.0, f32::max),
        mean_largest_gap: rows.iter().map(|r| f64::from(r.largest_gap)).sum::<f64>() / n,
        accuracy,
    };
    if a.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!();
        println!("A: {}\nB: {}", summary.sides[0], summary.sides[1]);
        println!(
            "{} videos ({} skipped), {} views each: top-1 agreement {:.2}%, top-5 overlap {:.2}%, largest probability gap {:.4} (mean per video {:.4})",
            summary.videos,
            summary.skipped,
            a.views,
            summary.top1_agreement * 100.0,
            summary.mean_top5_overlap * 100.0,
            summary.largest_gap,
            summary.mean_largest_gap
        );
        if let Some([x, y]) = summary.accuracy {
            println!("top-1 accuracy on the {} labelled videos: A {:.2}%, B {:.2}%", labelled.len(), x * 100.0, y * 100.0);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn quantized(engine: &Engine) -> String {
    engine.info().quantization.as_ref().map(|_| " (INT8)".to_string()).unwrap_or_default()
}
