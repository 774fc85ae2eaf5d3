//! Data-parallel training over libtorch's c10d (Gloo over loopback): two
//! processes with batch B step like one with batch 2B, a rank that dies or
//! hangs stops the job with its name, restarted jobs resume exactly, and
//! ranks that disagree on the recipe are refused.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use trainer::weights;

/// Sync-BN over both processes (and its same arithmetic in one process),
/// no dropout: the setting where 2 x B and 1 x 2B are the same step.
const RECIPE: &str = "\
seed: 5
device: cpu
threads: 1
model: { arch: slowfast_8x8_r50, num_classes: 11, width_per_group: 8, dropout: 0.0 }
data:
  dataset: { synthetic: { train: 24, val: 11, size: 32, frames: 16, seed: 2 } }
  num_frames: 8
  train_jitter_scales: [32, 40]
  train_crop_size: 32
  random_flip: true
solver: { base_lr: 0.1, reference_batch_size: 4, max_epoch: 3, warmup_epochs: 1, warmup_start_lr: 0.01, clip_grad_norm: 5.0 }
train: { batch_size: 4, log_period: 1, checkpoint_period: 1, eval_period: 1 }
precise_bn: { enabled: true, num_batches: 2 }
test: { num_ensemble_views: 1, num_spatial_crops: 1, crop_size: 32, batch_size: 4 }
loader: { workers: 1, prefetch_batches: 1 }
bn: { norm_type: sync_batchnorm, num_sync_devices: 2 }
dist: { timeout_s: 20 }
";

fn trainer(recipe: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_trainer"));
    c.arg("train").arg("--config").arg(recipe).arg("--out").arg(out).args(extra).stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

fn ok(o: Output) -> Output {
    assert!(o.status.success(), "{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    o
}

struct Baseline {
    _dir: tempfile::TempDir,
    recipe: PathBuf,
    two: PathBuf,
}

/// Two processes with batch 2 each, trained once for the tests of this
/// file that interrupt the same run.
fn baseline() -> &'static Baseline {
    static B: OnceLock<Baseline> = OnceLock::new();
    B.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let recipe = dir.path().join("tiny.yaml");
        std::fs::write(&recipe, RECIPE).unwrap();
        let two = dir.path().join("two");
        ok(trainer(&recipe, &two, &["--nproc-per-node", "2"]).output().unwrap());
        Baseline { _dir: dir, recipe, two }
    })
}

/// Multigrid (long cycle) on two processes against one with the same
/// global batches: in epoch 1 (8 clips of 4 frames per step) one process
/// normalises 2 interleaved sub-batches of 4, exactly the clips each of
/// two processes holds; in epoch 2 (4 clips of 8 frames) two processes
/// sync their BN over both. So the 6 steps are the same. Few steps: BN over
/// a handful of values per channel (1 x 1 at res5) amplifies rounding,
/// from 5e-6 here to percents within a few more epochs.
#[test]
fn multigrid_on_two_processes_steps_like_one() {
    let dir = tempfile::tempdir().unwrap();
    let text = RECIPE
        .replace("base_lr: 0.1,", "base_lr: 0.02, lr_policy: { steps: { steps: [0, 1], lrs: [1, 0.1] } },")
        .replace("max_epoch: 3", "max_epoch: 2")
        .replace("train: 24,", "train: 16,")
        .replace("bn: { norm_type: sync_batchnorm, num_sync_devices: 2 }\n", "")
        .replace(
            "dist: { timeout_s: 20 }",
            "dist: { timeout_s: 20 }\nmultigrid: { long_cycle: true, epoch_factor: 1.0, long_cycle_factors: [[0.5, 1.0], [1.0, 1.0]], bn_base_size: 4 }",
        );
    let recipe = dir.path().join("multigrid.yaml");
    std::fs::write(&recipe, &text).unwrap();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    ok(trainer(&recipe, &one, &[]).output().unwrap());
    ok(trainer(&recipe, &two, &["--nproc-per-node", "2"]).output().unwrap());
    let (worst, name) = max_relative_difference(&one, &two);
    eprintln!("multigrid 1 x B against 2 x B/2: largest relative difference {worst:.2e} ({name})");
    assert!(worst < 1e-5, "{name}: relative difference {worst}");
    let bn = |d: &Path| -> Vec<String> {
        let text = std::fs::read_to_string(d.join("metrics.jsonl")).unwrap();
        let records = text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap());
        records.filter(|r| r["kind"] == "shape").map(|r| r["bn"].to_string()).collect()
    };
    assert_eq!(bn(&one), [r#"{"sub_batchnorm":2}"#, r#""batchnorm""#]);
    assert_eq!(bn(&two), [r#""batchnorm""#, r#"{"sync_batchnorm":2}"#]);
}

/// Largest difference of any tensor relative to its largest magnitude.
fn max_relative_difference(a: &Path, b: &Path) -> (f64, String) {
    let (a, b) = (weights::read(&a.join("weights.safetensors")).unwrap(), weights::read(&b.join("weights.safetensors")).unwrap());
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    let mut worst = (0.0, String::new());
    for (name, ta) in &a {
        let tb = &b[name];
        let diff = (ta.to_kind(tch::Kind::Double) - tb.to_kind(tch::Kind::Double)).abs().max().double_value(&[]);
        let scale = ta.abs().max().to_kind(tch::Kind::Double).double_value(&[]).max(1e-3);
        if diff / scale > worst.0 {
            worst = (diff / scale, name.clone());
        }
    }
    worst
}

fn assert_bit_equal(a: &Path, b: &Path) {
    let (wa, wb) = (weights::read(&a.join("weights.safetensors")).unwrap(), weights::read(&b.join("weights.safetensors")).unwrap());
    for (name, ta) in &wa {
        assert!(ta.equal(&wb[name]), "{name} differs");
    }
}

#[test]
fn two_processes_with_batch_b_step_like_one_with_batch_2b() {
    // Six SGD steps with momentum, clipping and precise BN, at an LR where
    // training does not amplify summation-order differences (at the
    // baseline's 0.1 they grow from 1e-7 to percents within two epochs).
    let dir = tempfile::tempdir().unwrap();
    let gentle = RECIPE.replace("base_lr: 0.1", "base_lr: 0.02").replace("max_epoch: 3", "max_epoch: 1");
    let (recipe, flat_recipe) = (dir.path().join("gentle.yaml"), dir.path().join("flat.yaml"));
    std::fs::write(&recipe, &gentle).unwrap();
    std::fs::write(&flat_recipe, gentle.replace("dist: { timeout_s: 20 }", "dist: { timeout_s: 20, overlap: false }")).unwrap();
    let (one, two, flat) = (dir.path().join("one"), dir.path().join("two"), dir.path().join("flat"));
    ok(trainer(&recipe, &one, &[]).output().unwrap());
    ok(trainer(&recipe, &two, &["--nproc-per-node", "2"]).output().unwrap());
    let (worst, name) = max_relative_difference(&one, &two);
    eprintln!("1 x 4 against 2 x 2: largest relative difference {worst:.2e} ({name})");
    assert!(worst < 1e-5, "{name}: relative difference {worst}");
    // The all-reduce after backward (no overlap) averages the same way.
    ok(trainer(&flat_recipe, &flat, &["--nproc-per-node", "2"]).output().unwrap());
    let (worst, name) = max_relative_difference(&two, &flat);
    assert!(worst < 1e-5, "{name}: relative difference {worst}");
    // Rank 0 alone writes the run's files; rank 1 logs beside them.
    let b = baseline();
    let metrics = std::fs::read_to_string(b.two.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().filter(|l| l.contains("\"train\"")).count(), 18, "one record per global step");
    assert!(std::fs::read_to_string(b.two.join("logs/rank_1.log")).unwrap().contains("rank 1 of 2"));
    assert!(!b.two.join("logs/rank_0.log").exists());
}

/// The latest training record's (epoch, iteration) in `metrics.jsonl`.
fn progress(out: &Path) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(out.join("metrics.jsonl")).ok()?;
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| (v["kind"] == "train").then(|| Some((v["epoch"].as_u64()?, v["iter"].as_u64()?))).flatten())
}

/// Pid of worker `rank`, from the launcher's log line on stderr.
fn worker_pid(stderr: &Path, rank: usize) -> Option<i32> {
    let text = std::fs::read_to_string(stderr).ok()?;
    text.lines().find_map(|l| l.strip_prefix(&format!("[launcher] rank {rank}: pid "))?.trim().parse().ok())
}

/// Starts a 2-process run with its stderr in a file, and waits until it
/// trains epoch 2.
fn start_and_wait_for_epoch_2(recipe: &Path, out: &Path, extra: &[&str]) -> (Child, PathBuf) {
    let err_path = out.with_extension("stderr");
    let err = std::fs::File::create(&err_path).unwrap();
    let mut args = vec!["--nproc-per-node", "2"];
    args.extend_from_slice(extra);
    let mut child = trainer(recipe, out, &args).stdout(Stdio::null()).stderr(err).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !matches!(progress(out), Some((2, i)) if i >= 1) {
        assert!(child.try_wait().unwrap().is_none(), "the run ended before epoch 2: {}", std::fs::read_to_string(&err_path).unwrap());
        assert!(Instant::now() < deadline, "epoch 2 never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    (child, err_path)
}

fn signal(pid: i32, sig: &str) {
    assert!(Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().unwrap().success());
}

#[test]
fn the_multi_view_test_gathers_every_video_from_every_rank() {
    let b = baseline();
    let test = |extra: &[&str], report: &str| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_trainer"));
        c.arg("test").arg("--config").arg(&b.recipe).arg("--out").arg(&b.two).arg("--report").arg(b.two.join(report)).args(extra);
        ok(c.output().unwrap());
        serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(b.two.join(report)).unwrap()).unwrap()
    };
    let (one, two) = (test(&[], "one.json"), test(&["--nproc-per-node", "2"], "two.json"));
    assert_eq!(one["videos"], 11);
    for key in ["videos", "views_per_video", "top1", "top5", "confusion_matrix", "per_class"] {
        assert_eq!(one[key], two[key], "{key}");
    }
}

#[test]
fn a_killed_rank_stops_the_job_by_name_and_a_rerun_resumes_exactly() {
    let b = baseline();
    let out = b.recipe.with_file_name("killed");
    let (mut child, err_path) = start_and_wait_for_epoch_2(&b.recipe, &out, &[]);
    signal(worker_pid(&err_path, 1).unwrap(), "KILL");
    let killed = Instant::now();
    let status = child.wait().unwrap();
    assert!(!status.success());
    assert!(killed.elapsed() < Duration::from_secs(30), "the job took {:?} to stop", killed.elapsed());
    let err = std::fs::read_to_string(&err_path).unwrap();
    assert!(err.contains("error: worker rank 1 (pid") && err.contains("was killed (SIGKILL)"), "{err}");
    // Rank 0's own error says which rank is gone.
    assert!(err.lines().any(|l| l.starts_with("error: rank 0:") && l.contains("worker rank 1")), "{err}");
    assert!(!out.join("checkpoints/checkpoint_epoch_00002.json").exists(), "killed too late");

    let rerun = ok(trainer(&b.recipe, &out, &["--nproc-per-node", "2"]).output().unwrap());
    assert!(String::from_utf8_lossy(&rerun.stdout).contains("resumed after epoch 1"));
    assert_bit_equal(&b.two, &out);
}

#[test]
fn max_restarts_restarts_every_worker_from_the_last_checkpoint() {
    let b = baseline();
    let out = b.recipe.with_file_name("restarted");
    let (mut child, err_path) = start_and_wait_for_epoch_2(&b.recipe, &out, &["--max-restarts", "1"]);
    // Rank 0 this time: the one that writes checkpoints.
    signal(worker_pid(&err_path, 0).unwrap(), "KILL");
    assert!(child.wait().unwrap().success(), "{}", std::fs::read_to_string(&err_path).unwrap());
    let err = std::fs::read_to_string(&err_path).unwrap();
    assert!(err.contains("worker rank 0") && err.contains("restarting all workers (restart 1 of 1)"), "{err}");
    assert!(err.contains("resuming from"), "{err}");
    assert_bit_equal(&b.two, &out);
}

#[test]
fn a_hanging_rank_ends_in_the_collective_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("hang.yaml");
    std::fs::write(&recipe, RECIPE.replace("timeout_s: 20", "timeout_s: 8")).unwrap();
    let out = dir.path().join("hang");
    let (mut child, err_path) = start_and_wait_for_epoch_2(&recipe, &out, &[]);
    let pid = worker_pid(&err_path, 1).unwrap();
    signal(pid, "STOP");
    let stopped = Instant::now();
    let status = child.wait().unwrap();
    assert!(!status.success());
    // 8 s for the collective, 8 s of grace before the launcher kills rank 1.
    assert!(stopped.elapsed() < Duration::from_secs(45), "took {:?}", stopped.elapsed());
    let err = std::fs::read_to_string(&err_path).unwrap();
    assert!(err.contains("error: rank 0:"), "{err}");
    assert!(err.contains("rank 1 did not stop within"), "{err}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap().local_addr().unwrap().port()
}

#[test]
fn ranks_started_with_different_recipes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.yaml"), dir.path().join("b.yaml"));
    std::fs::write(&a, RECIPE).unwrap();
    std::fs::write(&b, RECIPE.replace("base_lr: 0.1", "base_lr: 0.2")).unwrap();
    let port = free_port().to_string();
    // The plain RANK/WORLD_SIZE contract: rank 0 hosts the store.
    let start = |rank: &str, recipe: &Path| {
        trainer(recipe, &dir.path().join("out"), &[])
            .env("RANK", rank)
            .env("WORLD_SIZE", "2")
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", &port)
            .spawn()
            .unwrap()
    };
    let (r0, r1) = (start("0", &a), start("1", &b));
    for o in [r0.wait_with_output().unwrap(), r1.wait_with_output().unwrap()] {
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("the ranks disagree on the job") && err.contains("recipe "), "{err}");
    }
    assert!(!dir.path().join("out/checkpoints").exists(), "nothing was trained");
}

#[test]
fn ranks_started_with_different_world_sizes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("r.yaml");
    std::fs::write(&recipe, RECIPE.replace("timeout_s: 20", "timeout_s: 5")).unwrap();
    let port = free_port().to_string();
    let start = |rank: &str, world: &str| {
        trainer(&recipe, &dir.path().join("out"), &[])
            .env("RANK", rank)
            .env("WORLD_SIZE", world)
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", &port)
            .spawn()
            .unwrap()
    };
    let t = Instant::now();
    let (r0, r1) = (start("0", "2"), start("1", "4"));
    let (o0, o1) = (r0.wait_with_output().unwrap(), r1.wait_with_output().unwrap());
    assert!(!o0.status.success() && !o1.status.success());
    let e0 = String::from_utf8_lossy(&o0.stderr);
    assert!(e0.contains("the ranks disagree on the job") && e0.contains("world size 4"), "{e0}");
    // Rank 1 waits for ranks 2 and 3 of its world until the timeout.
    let e1 = String::from_utf8_lossy(&o1.stderr);
    assert!(e1.contains("rank 2 did not join within"), "{e1}");
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
}

#[test]
fn a_world_of_one_through_c10d_trains_exactly_as_a_plain_process() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("r.yaml");
    std::fs::write(&recipe, RECIPE.replace("max_epoch: 3", "max_epoch: 1")).unwrap();
    let (plain, one) = (dir.path().join("plain"), dir.path().join("one"));
    ok(trainer(&recipe, &plain, &[]).output().unwrap());
    let port = free_port().to_string();
    let mut run = trainer(&recipe, &one, &[]);
    run.env("RANK", "0").env("WORLD_SIZE", "1").env("MASTER_ADDR", "127.0.0.1").env("MASTER_PORT", &port);
    let o = ok(run.output().unwrap());
    assert!(String::from_utf8_lossy(&o.stderr).contains("rank 0 of 1"));
    assert_bit_equal(&plain, &one);
}

#[test]
fn a_global_batch_that_does_not_split_is_refused_before_any_worker_starts() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("r.yaml");
    std::fs::write(&recipe, RECIPE).unwrap();
    let o = trainer(&recipe, &dir.path().join("out"), &["--nproc-per-node", "3"]).output().unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("`train.batch_size`: 4 is the global batch and must split evenly over the 3 processes"), "{err}");
    assert!(!err.contains("[launcher]"), "{err}");
}
