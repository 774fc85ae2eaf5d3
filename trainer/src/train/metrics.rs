//! Run records: `metrics.jsonl` (one JSON object per line: training
//! iterations, epoch summaries with unreadable videos, validations), the
//! terminal progress bar or plain log lines, and PNG plots of loss, LR and
//! accuracy beside the checkpoints.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use plotters::prelude::*;
use serde_json::{Value, json};

pub struct Metrics {
    path: PathBuf,
    file: std::fs::File,
}

impl Metrics {
    /// Opens `dir/metrics.jsonl`, keeping only records of epochs up to
    /// `resume_epoch`: what a killed run wrote after its last checkpoint is
    /// about to be redone.
    pub fn open(dir: &Path, resume_epoch: usize) -> std::io::Result<Self> {
        let path = dir.join("metrics.jsonl");
        let kept: Vec<String> = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                serde_json::from_str::<Value>(l)
                    .ok()
                    .and_then(|v| v.get("epoch").and_then(Value::as_u64))
                    .is_some_and(|e| e as usize <= resume_epoch)
            })
            .map(str::to_string)
            .collect();
        let mut text = kept.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        std::fs::write(&path, text)?;
        let file = std::fs::OpenOptions::new().append(true).open(&path)?;
        Ok(Metrics { path, file })
    }

    pub fn record(&mut self, value: Value) -> std::io::Result<()> {
        writeln!(self.file, "{value}")?;
        self.file.flush()
    }

    pub fn records(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.path).unwrap_or_default().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }
}

/// A progress bar on a terminal, plain lines every `log_period` iterations
/// otherwise (logs, CI).
pub struct Progress {
    bar: Option<ProgressBar>,
    log_period: usize,
    /// Where lines go instead of the terminal: the log of a rank other than
    /// 0, which keeps the terminal for rank 0's progress.
    log: Option<std::sync::Mutex<std::fs::File>>,
}

impl Progress {
    pub fn new(log_period: usize) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            if let Ok(style) = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ({eta})") {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        Progress { bar, log_period: log_period.max(1), log: None }
    }

    /// Plain lines appended to `path` (the log of one rank).
    pub fn to_file(path: &Path, log_period: usize) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Progress { bar: None, log_period: log_period.max(1), log: Some(std::sync::Mutex::new(file)) })
    }

    fn print(&self, text: &str) {
        match &self.log {
            Some(f) => {
                if let Ok(mut f) = f.lock() {
                    let _ = writeln!(f, "{text}");
                }
            }
            None => eprintln!("{text}"),
        }
    }

    pub fn start_epoch(&self, epoch: usize, max_epoch: usize, iters: usize) {
        if let Some(bar) = &self.bar {
            bar.set_length(iters as u64);
            bar.set_position(0);
            bar.set_prefix(format!("epoch {epoch}/{max_epoch}"));
        }
    }

    pub fn iteration(&self, epoch: usize, iter: usize, iters: usize, loss: f64, lr: f64) {
        match &self.bar {
            Some(bar) => {
                bar.set_position(iter as u64);
                bar.set_message(format!("loss {loss:.4} lr {lr:.5}"));
            }
            None if iter.is_multiple_of(self.log_period) || iter == iters => {
                self.print(&format!("epoch {epoch} iter {iter}/{iters} loss {loss:.4} lr {lr:.6}"));
            }
            None => {}
        }
    }

    pub fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => self.print(text),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Writes `loss.png`, `lr.png` and `accuracy.png` into `dir` from the
/// records. The bitmap backend has no font here (no system fonts needed),
/// so the charts carry a grid, no text: the file name says what is drawn,
/// x is the global iteration (epoch for accuracy), y spans the data range.
pub fn plot(dir: &Path, records: &[Value]) -> Result<(), String> {
    let series = |kind: &str, x: &str, y: &str| -> Vec<(f64, f64)> {
        records
            .iter()
            .filter(|r| r.get("kind").and_then(Value::as_str) == Some(kind))
            .filter_map(|r| Some((r.get(x)?.as_f64()?, r.get(y)?.as_f64()?)))
            .filter(|(a, b)| a.is_finite() && b.is_finite())
            .collect()
    };
    // Multigrid's shape changes, as dashed lines: at the first iteration of
    // the new shape, and between the validations before and after it.
    let changes = |x: &str, offset: f64| -> Vec<f64> {
        records
            .iter()
            .filter(|r| r.get("kind").and_then(Value::as_str) == Some("shape"))
            .filter_map(|r| r.get(x)?.as_f64())
            .map(|v| v + offset)
            .filter(|&v| v > 0.0)
            .collect()
    };
    let (by_iter, by_epoch) = (changes("global_iter", 0.0), changes("epoch", -1.0));
    let charts = [
        ("loss.png", vec![series("train", "global_iter", "loss")], &by_iter),
        ("lr.png", vec![series("train", "global_iter", "lr")], &by_iter),
        ("accuracy.png", vec![series("val", "epoch", "top1"), series("val", "epoch", "top5")], &by_epoch),
    ];
    for (name, lines, marks) in charts {
        if lines.iter().all(|l| l.is_empty()) {
            continue;
        }
        let png = draw(&lines, marks, &ChartStyle::default())?;
        super::checkpoint::write_atomic(&dir.join(name), |tmp| std::fs::write(tmp, &png).map_err(|e| e.to_string()))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// How [`draw`] lays a chart out; the default is the run plots' (axes
/// fitted to the data, horizontal grid lines only).
pub struct ChartStyle {
    pub size: (u32, u32),
    /// Fixed axis ranges instead of the data's.
    pub x: Option<(f64, f64)>,
    pub y: Option<(f64, f64)>,
    /// Grid lines across x and y (the backend has no fonts: a grid is the
    /// scale a reader gets).
    pub grid: Option<(usize, usize)>,
    /// A dot at each point.
    pub points: bool,
}

impl Default for ChartStyle {
    fn default() -> Self {
        ChartStyle { size: (640, 360), x: None, y: None, grid: None, points: false }
    }
}

/// Line charts of `lines` (blue, red, green) as PNG bytes, with a dashed
/// vertical line at each x of `marks`.
pub fn draw(lines: &[Vec<(f64, f64)>], marks: &[f64], style: &ChartStyle) -> Result<Vec<u8>, String> {
    let (w, h) = style.size;
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in lines.iter().flatten() {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let pad = ((y1 - y0) * 0.05).max(1e-9);
    let (x0, x1) = style.x.unwrap_or((x0, x1));
    let (y0, y1) = style.y.unwrap_or((y0 - pad, y1 + pad));
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let mut buf = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut chart = ChartBuilder::on(&root).margin(12).build_cartesian_2d(x0..x1, y0..y1).map_err(|e| err(&e))?;
        let mut mesh = chart.configure_mesh();
        match style.grid {
            Some((nx, ny)) => mesh.x_labels(nx).y_labels(ny).max_light_lines(0).draw(),
            None => mesh.disable_x_mesh().draw(),
        }
        .map_err(|e| err(&e))?;
        for (line, colour) in lines.iter().zip([BLUE, RED, GREEN].iter().cycle()) {
            chart.draw_series(LineSeries::new(line.iter().copied(), colour.stroke_width(2))).map_err(|e| err(&e))?;
            if style.points {
                chart.draw_series(line.iter().map(|&p| Circle::new(p, 3, colour.filled()))).map_err(|e| err(&e))?;
            }
        }
        let grey = RGBColor(150, 150, 150);
        for &x in marks.iter().filter(|&&x| x >= x0 && x <= x1) {
            let dashes = DashedLineSeries::new([(x, y0), (x, y1)], 6, 4, grey.stroke_width(1));
            chart.draw_series(dashes).map_err(|e| err(&e))?;
        }
        root.present().map_err(|e| err(&e))?;
    }
    let img = image::RgbImage::from_raw(w, h, buf).ok_or("plot buffer has the wrong size")?;
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).map_err(|e| e.to_string())?;
    Ok(png)
}

pub fn train_record(epoch: usize, iter: usize, global_iter: u64, loss: f64, lr: f64, top1_err: f64, secs: f64) -> Value {
    json!({"kind": "train", "epoch": epoch, "iter": iter, "global_iter": global_iter, "loss": loss, "lr": lr,
           "top1_err": top1_err, "time_s": secs})
}
