//! Multigrid against the normal schedule on this machine: one recipe
//! trained twice in the same run, with its `multigrid` section and
//! without, on the same data for the same epochs. Reports the epoch wall
//! time, how much of it waited for the loader, the wall time each run takes
//! to reach the baseline's final validation accuracy, and plots accuracy
//! against wall-clock time.
//!
//!   trainer bench-multigrid --config configs/bench_multigrid_synth.yaml --out target/bench-multigrid

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args as ClapArgs;
use serde_json::Value;
use trainer::recipe::Recipe;
use trainer::train::metrics::{self, ChartStyle};

#[derive(ClapArgs)]
pub struct Args {
    /// A recipe with a `multigrid` section; the baseline is the same recipe
    /// without it.
    #[arg(long)]
    config: PathBuf,
    /// Folder for both runs (`baseline/`, `multigrid/`), the plot and the
    /// summary; must not hold earlier runs (they would be resumed).
    #[arg(long, default_value = "bench-multigrid")]
    out: PathBuf,
    /// Replaces the recipe's `multigrid.epoch_factor` (PySlowFast's default
    /// is 1.5; 1 trains the baseline's epochs).
    #[arg(long)]
    epoch_factor: Option<f64>,
    /// Summarise and plot the runs already in --out instead of training.
    #[arg(long)]
    report_only: bool,
}

/// What one run's `metrics.jsonl` says about speed and accuracy.
struct Run {
    name: &'static str,
    /// Per epoch: seconds training, seconds waiting for data, steps.
    epochs: Vec<(f64, f64, f64)>,
    /// (wall seconds since the start, top-1) after each validation.
    val: Vec<(f64, f64)>,
    /// Wall seconds at which each multigrid shape change happened.
    changes: Vec<f64>,
}

impl Run {
    fn read(name: &'static str, dir: &Path) -> anyhow::Result<Run> {
        let path = dir.join("metrics.jsonl");
        let text = std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
        let records: Vec<Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        let of = |kind: &'static str| records.iter().filter(move |r| r["kind"] == kind);
        let f = |r: &Value, k: &str| r[k].as_f64().unwrap_or(f64::NAN);
        let epochs: Vec<(f64, f64, f64)> = of("epoch").map(|r| (f(r, "train_s"), f(r, "data_wait_s"), f(r, "iters"))).collect();
        let ends: Vec<(u64, f64)> = of("epoch").filter_map(|r| Some((r["epoch"].as_u64()?, r["time_s"].as_f64()?))).collect();
        let changes = of("shape")
            .filter_map(|r| {
                let e = r["epoch"].as_u64()?;
                ends.iter().find(|(done, _)| *done + 1 == e).map(|(_, t)| *t)
            })
            .collect();
        let val = of("val").map(|r| (f(r, "time_s"), f(r, "top1"))).collect();
        Ok(Run { name, epochs, val, changes })
    }

    fn mean_epoch_s(&self) -> f64 {
        self.epochs.iter().map(|e| e.0).sum::<f64>() / self.epochs.len().max(1) as f64
    }

    fn wait_share(&self) -> f64 {
        self.epochs.iter().map(|e| e.1).sum::<f64>() / self.epochs.iter().map(|e| e.0).sum::<f64>().max(1e-9)
    }

    fn mean_steps(&self) -> f64 {
        self.epochs.iter().map(|e| e.2).sum::<f64>() / self.epochs.len().max(1) as f64
    }

    fn final_top1(&self) -> f64 {
        self.val.last().map_or(f64::NAN, |v| v.1)
    }

    /// Wall seconds to the first validation at or above `top1`.
    fn time_to(&self, top1: f64) -> Option<f64> {
        self.val.iter().find(|v| v.1 >= top1 - 1e-12).map(|v| v.0)
    }
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let mut recipe = Recipe::load(&a.config)?;
    if let (Some(f), Some(m)) = (a.epoch_factor, recipe.multigrid.as_mut()) {
        m.epoch_factor = f;
        recipe.validate().map_err(|(field, why)| anyhow::anyhow!("--epoch-factor {f}: `{field}`: {why}"))?;
    }
    let Some(mg) = recipe.multigrid() else {
        bail!("{}: no `multigrid` section to compare with the normal schedule", a.config.display());
    };
    if mg.solver.max_epoch != recipe.solver.max_epoch {
        eprintln!(
            "note: multigrid trains {} epochs (epoch factor {}), the baseline {}",
            mg.solver.max_epoch, mg.settings.epoch_factor, recipe.solver.max_epoch
        );
    }
    let mut baseline = recipe.clone();
    baseline.multigrid = None;
    let dirs = [a.out.join("baseline"), a.out.join("multigrid")];
    if !a.report_only {
        for d in &dirs {
            if d.join("metrics.jsonl").exists() {
                bail!("{}: holds an earlier run, which would be resumed; choose another --out", d.display());
            }
        }
        for (r, d, name) in [(&baseline, &dirs[0], "normal schedule"), (&recipe, &dirs[1], "multigrid")] {
            eprintln!("== {name}: {}", d.display());
            trainer::train::train(r, d)?;
        }
    }
    let runs = [Run::read("normal schedule", &dirs[0])?, Run::read("multigrid", &dirs[1])?];
    let [base, multi] = &runs;
    let target = base.final_top1();
    let mut out = String::new();
    out.push_str(&format!(
        "recipe {}: {} epochs normal, {} multigrid (epoch factor {}), {} threads\n\n",
        a.config.display(),
        recipe.solver.max_epoch,
        mg.solver.max_epoch,
        mg.settings.epoch_factor,
        recipe.threads
    ));
    out.push_str("| run | mean epoch (s) | steps / epoch | waiting for data | final top-1 | to baseline's final top-1 (s) | total (s) |\n");
    out.push_str("|---|---|---|---|---|---|---|\n");
    for r in &runs {
        let to = r.time_to(target).map_or("not reached".to_string(), |t| format!("{t:.0}"));
        let total = r.val.last().map_or(f64::NAN, |v| v.0);
        out.push_str(&format!(
            "| {} | {:.1} | {:.1} | {:.1}% | {:.1}% | {to} | {total:.0} |\n",
            r.name,
            r.mean_epoch_s(),
            r.mean_steps(),
            100.0 * r.wait_share(),
            100.0 * r.final_top1()
        ));
    }
    out.push_str(&format!("\nepoch speed-up: {:.2}x\n", base.mean_epoch_s() / multi.mean_epoch_s()));
    match (base.time_to(target), multi.time_to(target)) {
        (Some(b), Some(m)) => out.push_str(&format!("time to {:.1}% top-1: {:.2}x faster\n", 100.0 * target, b / m)),
        _ => out.push_str(&format!("multigrid did not reach the baseline's final {:.1}% top-1\n", 100.0 * target)),
    }
    out.push_str(&format!("final top-1 difference: {:+.1} points\n", 100.0 * (multi.final_top1() - base.final_top1())));
    print!("{out}");
    std::fs::write(a.out.join("summary.md"), &out).with_context(|| format!("{}: cannot write the summary", a.out.display()))?;

    let minutes = |v: &[(f64, f64)]| v.iter().map(|&(t, y)| (t / 60.0, 100.0 * y)).collect::<Vec<_>>();
    let marks: Vec<f64> = multi.changes.iter().map(|t| t / 60.0).collect();
    let lines = [minutes(&base.val), minutes(&multi.val)];
    // Fixed axes with a grid line per minute and per 10 points stand in for
    // tick labels.
    let x1 = lines.iter().flatten().map(|p| p.0).fold(1.0f64, f64::max).ceil();
    let style = ChartStyle { size: (800, 400), x: Some((0.0, x1)), y: Some((0.0, 100.0)), grid: Some((x1 as usize + 1, 11)), points: true };
    let png = metrics::draw(&lines, &marks, &style).map_err(anyhow::Error::msg)?;
    let path = a.out.join("accuracy_vs_time.png");
    std::fs::write(&path, png).with_context(|| format!("{}: cannot write the plot", path.display()))?;
    println!(
        "plot: {} (x: minutes, a grid line each; y: validation top-1, 0-100 %, a grid line each 10; \
         blue: normal schedule, red: multigrid, dashed: its shape changes)",
        path.display()
    );
    Ok(())
}
