//! `slowfast annotate` end to end with the tiny fixture model and the
//! `slowfast` plugin built in the same target directory: file to MP4,
//! RTSP in, RTSP out, reconnection, give-up, Ctrl-C, and clear errors.
//! Network traffic stays on 127.0.0.1; every wait is bounded.
#![cfg(feature = "gstreamer")]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use gst::prelude::*;
use gst_rtsp_server::prelude::*;
use serde_json::Value;

fn model() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny_8x8.onnx").display().to_string()
}

/// `target/<profile>`: the slowfast binary, and the plugin beside it.
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_slowfast")).parent().expect("binary directory").to_path_buf()
}

fn require_plugin() {
    let plugin = target_dir().join("libgstslowfast.so");
    assert!(
        plugin.is_file(),
        "{} is not built: these tests run the slowfast element; build it first with \
         `cargo build -p gst-plugin-slowfast` (same profile as the tests)",
        plugin.display()
    );
}

/// The slowfast binary with a private GStreamer registry.
fn slowfast(dir: &Path) -> Command {
    require_plugin();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_slowfast"));
    cmd.env("GST_REGISTRY", dir.join("registry.bin"));
    cmd
}

fn gst_init() {
    gst::init().expect("gst init");
}

/// An H.264 MP4 of `frames` moving-ball frames, 96x64 at 30 fps.
fn make_video(dir: &Path, name: &str, frames: u32) -> PathBuf {
    let path = dir.join(name);
    let out = Command::new("gst-launch-1.0")
        .env("GST_REGISTRY", dir.join("registry.bin"))
        .args(["-q", "videotestsrc", &format!("num-buffers={frames}"), "pattern=ball", "!"])
        .args(["video/x-raw,format=I420,width=96,height=64,framerate=30/1", "!", "x264enc", "!", "mp4mux", "!"])
        .arg("filesink")
        .arg(format!("location={}", path.display()))
        .output()
        .expect("gst-launch-1.0 runs");
    assert!(out.status.success(), "making {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    path
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect()
}

fn events<'a>(lines: &'a [Value], name: &str) -> Vec<&'a Value> {
    lines.iter().filter(|v| v["event"] == name).collect()
}

fn check_prediction(p: &Value) {
    let top = p["top"].as_array().expect("top classes");
    assert_eq!(top.len(), 5, "{p}");
    let scores: Vec<f64> = top.iter().map(|c| c["score"].as_f64().expect("score")).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{p}");
    assert!(scores.iter().all(|s| (0.0..=1.0).contains(s)), "{p}");
    assert!(top.iter().all(|c| !c["label"].as_str().unwrap_or("").is_empty()), "{p}");
    assert!(p["clip_end_s"].as_f64().expect("clip end") > p["clip_start_s"].as_f64().expect("clip start"), "{p}");
}

/// A running `slowfast annotate` whose stdout lines arrive on a channel.
struct Running {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn spawn(mut cmd: Command) -> Running {
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("slowfast starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running { child, lines, seen: Vec::new() }
    }

    /// Waits for a JSON line satisfying `want`, up to `limit`.
    fn wait_for(&mut self, limit: Duration, want: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                    if want(&v) {
                        return v;
                    }
                }
                Err(_) => {
                    let _ = self.child.kill();
                    let out = self.child.wait_with_output_now();
                    panic!("no matching line within {limit:?}; stdout so far:\n{}\nstderr:\n{out}", self.seen.join("\n"));
                }
            }
        }
    }

    fn interrupt(&self) {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        assert_eq!(rc, 0, "kill -INT failed");
    }

    /// Waits for exit (killing it after `limit`); returns (code, all stdout
    /// lines, stderr).
    fn finish(mut self, limit: Duration) -> (Option<i32>, Vec<String>, String) {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                break Some(s);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(500)) {
            self.seen.push(line);
        }
        let stderr = self.child.wait_with_output_now();
        assert!(status.is_some(), "slowfast did not exit within {limit:?}; stderr:\n{stderr}");
        (status.and_then(|s| s.code()), std::mem::take(&mut self.seen), stderr)
    }
}

trait StderrNow {
    fn wait_with_output_now(&mut self) -> String;
}

impl StderrNow for Child {
    fn wait_with_output_now(&mut self) -> String {
        let mut text = String::new();
        if let Some(mut e) = self.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut text);
        }
        text
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nobody listens on (bound, then released).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Mean absolute difference of the top-left `w` x `h` RGB pixels.
fn corner_diff(a: &runtime::decode::RgbFrame, b: &runtime::decode::RgbFrame, w: usize, h: usize) -> f64 {
    let mut sum = 0u64;
    for y in 0..h {
        for x in 0..w * 3 {
            let i = y * a.width * 3 + x;
            sum += u64::from(a.data[i].abs_diff(b.data[i]));
        }
    }
    sum as f64 / (w * h * 3) as f64
}

#[test]
fn annotates_a_file_to_a_playable_mp4_and_prints_json_predictions() {
    gst_init();
    let dir = tempfile::tempdir().expect("temp dir");
    let input = make_video(dir.path(), "in.mp4", 100);
    let output = dir.path().join("out.mp4");
    let out: Output = slowfast(dir.path())
        .args(["annotate", &input.display().to_string(), "--output", &output.display().to_string()])
        .args(["--model", &model(), "--json", "--stride", "16", "--threads", "1"])
        .output()
        .expect("slowfast runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let lines = json_lines(&stdout);
    let predictions = events(&lines, "prediction");
    // A 64-frame window, then every 16 frames: frames 64, 80 and 96; files
    // are paced so that none is skipped.
    assert_eq!(predictions.len(), 3, "{stdout}");
    for (i, p) in predictions.iter().enumerate() {
        assert_eq!(p["index"], i as u64, "{p}");
        check_prediction(p);
    }
    let finished = events(&lines, "finished");
    assert_eq!(finished.len(), 1, "{stdout}");
    assert_eq!(finished[0]["frames"], 100);
    assert_eq!(finished[0]["skipped"], 0);
    assert_eq!(finished[0]["finish"], "end-of-stream");

    let decoded = runtime::decode::decode_all(&output).expect("the output MP4 decodes");
    assert_eq!(decoded.frames.len(), 100);
    assert_eq!((decoded.frames[0].width, decoded.frames[0].height), (96, 64));
    // draw=true: the label box appears once a prediction exists.
    let original = runtime::decode::decode_all(&input).expect("input decodes");
    let before = corner_diff(&decoded.frames[10], &original.frames[10], 48, 12);
    let after = corner_diff(&decoded.frames[99], &original.frames[99], 48, 12);
    assert!(before < 8.0 && after > 2.0 * before + 10.0, "caption difference before {before:.1}, after {after:.1}");
}

#[test]
fn sigint_during_a_file_annotation_leaves_a_playable_mp4() {
    gst_init();
    let dir = tempfile::tempdir().expect("temp dir");
    let input = make_video(dir.path(), "in.mp4", 450);
    let output = dir.path().join("out.mp4");
    let mut cmd = slowfast(dir.path());
    // --serve plays the file at its own rate (15 s), so it is still running
    // when interrupted.
    cmd.args(["annotate", &input.display().to_string(), "--output", &output.display().to_string()]).args([
        "--serve",
        "rtsp://127.0.0.1:0/annotated",
        "--model",
        &model(),
        "--json",
        "--threads",
        "1",
    ]);
    let mut run = Running::spawn(cmd);
    run.wait_for(Duration::from_secs(15), |v| v["event"] == "prediction");
    run.interrupt();
    let (code, lines, stderr) = run.finish(Duration::from_secs(15));
    assert_eq!(code, Some(0), "{stderr}");
    let lines = json_lines(&lines.join("\n"));
    assert_eq!(events(&lines, "interrupted").len(), 1, "{stderr}");
    let finished = events(&lines, "finished");
    assert_eq!(finished.len(), 1, "{stderr}");
    assert_eq!(finished[0]["finish"], "interrupted");
    let frames = finished[0]["frames"].as_u64().expect("frames");
    assert!((64..450).contains(&frames), "{}", finished[0]);
    let decoded = runtime::decode::decode_all(&output).expect("the interrupted MP4 decodes");
    assert_eq!(decoded.frames.len() as u64, frames);
    assert_eq!((decoded.frames[0].width, decoded.frames[0].height), (96, 64));
}

/// An in-process RTSP server of a live 96x64 H.264 test stream on a free
/// loopback port, on its own main context; stops when dropped.
struct TestServer {
    url: String,
    main_loop: gst::glib::MainLoop,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    fn start() -> TestServer {
        gst_init();
        let server = gst_rtsp_server::RTSPServer::new();
        server.set_address("127.0.0.1");
        server.set_service("0");
        let factory = gst_rtsp_server::RTSPMediaFactory::new();
        factory.set_launch(
            "( videotestsrc is-live=true pattern=ball ! video/x-raw,format=I420,width=96,height=64,framerate=30/1 \
             ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=15 ! rtph264pay name=pay0 pt=96 )",
        );
        factory.set_shared(true);
        server.mount_points().expect("mount points").add_factory("/test", factory);
        let context = gst::glib::MainContext::new();
        server.attach(Some(&context)).expect("attach");
        let url = format!("rtsp://127.0.0.1:{}/test", server.bound_port());
        let main_loop = gst::glib::MainLoop::new(Some(&context), false);
        let ml = main_loop.clone();
        let thread = std::thread::spawn(move || {
            let _server = server;
            ml.run();
        });
        TestServer { url, main_loop, thread: Some(thread) }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.main_loop.quit();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn rtsp_source_on_loopback_gets_predictions() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cmd = slowfast(dir.path());
    cmd.args(["annotate", &server.url, "--model", &model(), "--json", "--stride", "8", "--threads", "1"]);
    let mut run = Running::spawn(cmd);
    let first = run.wait_for(Duration::from_secs(20), |v| v["event"] == "prediction");
    check_prediction(&first);
    let second = run.wait_for(Duration::from_secs(10), |v| v["event"] == "prediction");
    assert_eq!(second["index"], 1, "{second}");
    run.interrupt();
    let (code, _, stderr) = run.finish(Duration::from_secs(15));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("source lost"), "{stderr}");
}

#[test]
fn serve_delivers_annotated_frames_to_an_rtsp_client() {
    gst_init();
    let dir = tempfile::tempdir().expect("temp dir");
    let input = make_video(dir.path(), "in.mp4", 450);
    let mut cmd = slowfast(dir.path());
    cmd.args(["annotate", &input.display().to_string(), "--serve", "rtsp://127.0.0.1:0/annotated"]).args([
        "--model",
        &model(),
        "--json",
        "--threads",
        "1",
    ]);
    let mut run = Running::spawn(cmd);
    let serving = run.wait_for(Duration::from_secs(15), |v| v["event"] == "serving");
    let url = serving["url"].as_str().expect("url").to_string();
    assert!(url.starts_with("rtsp://127.0.0.1:") && url.ends_with("/annotated") && !url.contains(":0/"), "{url}");

    let client = gst::parse::launch(&format!(
        "rtspsrc location={url} latency=100 ! decodebin ! videoconvert ! video/x-raw,format=I420 ! appsink name=sink sync=false"
    ))
    .expect("client pipeline")
    .downcast::<gst::Pipeline>()
    .expect("pipeline");
    let sink = client.by_name("sink").expect("sink").downcast::<gst_app::AppSink>().expect("appsink");
    client.set_state(gst::State::Playing).expect("client plays");
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut frames = 0;
    let mut size = None;
    while frames < 30 && Instant::now() < deadline {
        if let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_mseconds(200)) {
            let info = gst_video::VideoInfo::from_caps(sample.caps().expect("caps")).expect("video caps");
            size = Some((info.width(), info.height()));
            frames += 1;
        }
    }
    let _ = client.set_state(gst::State::Null);
    assert!(frames >= 30, "the RTSP client received {frames} frames in 15 s");
    assert_eq!(size, Some((96, 64)));
    run.interrupt();
    let (code, _, stderr) = run.finish(Duration::from_secs(15));
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn unreachable_rtsp_source_is_retried_with_backoff_then_given_up() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("rtsp://127.0.0.1:{}/nothing", free_port());
    let start = Instant::now();
    let run = Running::spawn({
        let mut cmd = slowfast(dir.path());
        cmd.args(["annotate", &url, "--model", &model(), "--json", "--max-retries", "2"]);
        cmd
    });
    let (code, lines, stderr) = run.finish(Duration::from_secs(20));
    let elapsed = start.elapsed();
    assert_eq!(code, Some(1), "{stderr}");
    let lines = json_lines(&lines.join("\n"));
    assert_eq!(events(&lines, "source-lost").len(), 1, "{lines:?}");
    let retries = events(&lines, "retry");
    let delays: Vec<f64> = retries.iter().map(|r| r["delay_s"].as_f64().expect("delay")).collect();
    assert_eq!(delays, vec![1.0, 2.0], "{lines:?}");
    let error = events(&lines, "error");
    assert_eq!(error.len(), 1, "{lines:?}");
    let msg = error[0]["error"].as_str().expect("message");
    assert!(msg.contains(&url) && msg.contains("2 failed reconnection"), "{msg}");
    assert!(stderr.contains("reconnecting in 1.0 s") && stderr.contains("reconnecting in 2.0 s"), "{stderr}");
    // Two back-off delays (1 s + 2 s), then it gives up.
    assert!(elapsed >= Duration::from_secs(3) && elapsed < Duration::from_secs(15), "{elapsed:?}");
}

#[test]
fn lost_rtsp_source_is_reconnected_and_the_mp4_spans_the_outage() {
    gst_init();
    let dir = tempfile::tempdir().expect("temp dir");
    let clip = make_video(dir.path(), "cam.mp4", 90);
    let port = free_port();
    let url = format!("rtsp://127.0.0.1:{port}/cam");
    // The "camera": slowfast serving a 3 s file, twice, on the same port.
    let camera = |dir: &Path| {
        let mut cmd = slowfast(dir);
        cmd.args(["annotate", &clip.display().to_string(), "--serve", &url, "--model", &model(), "--threads", "1"]);
        cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("camera starts")
    };
    let mut first = camera(dir.path());
    std::thread::sleep(Duration::from_millis(500));
    let output = dir.path().join("out.mp4");
    let mut cmd = slowfast(dir.path());
    cmd.args(["annotate", &url, "--output", &output.display().to_string(), "--model", &model(), "--json"]).args([
        "--stall-timeout",
        "2",
        "--threads",
        "1",
    ]);
    let mut run = Running::spawn(cmd);
    run.wait_for(Duration::from_secs(15), |v| v["event"] == "source-lost");
    let _ = first.wait();
    let mut second = camera(dir.path());
    let restored = run.wait_for(Duration::from_secs(15), |v| v["event"] == "source-restored");
    assert!(restored["outage_s"].as_f64().expect("outage") > 0.0, "{restored}");
    assert!(restored["attempts"].as_u64().expect("attempts") >= 1, "{restored}");
    std::thread::sleep(Duration::from_millis(500));
    run.interrupt();
    let (code, lines, stderr) = run.finish(Duration::from_secs(15));
    let _ = second.kill();
    let _ = second.wait();
    assert_eq!(code, Some(0), "{stderr}");
    let lines = json_lines(&lines.join("\n"));
    let finished = events(&lines, "finished");
    assert_eq!(finished.len(), 1, "{stderr}");
    assert!(finished[0]["outages"].as_u64().expect("outages") >= 1, "{}", finished[0]);
    let frames = finished[0]["frames"].as_u64().expect("frames");
    let decoded = runtime::decode::decode_all(&output).expect("the MP4 decodes");
    assert_eq!(decoded.frames.len() as u64, frames, "one MP4 across the reconnection");
    assert!(stderr.contains("source restored after"), "{stderr}");
}

#[test]
fn bad_inputs_fail_with_clear_messages() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = |args: &[&str]| -> (Option<i32>, String) {
        let out = slowfast(dir.path()).args(args).output().expect("slowfast runs");
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, err) = run(&["annotate", "/nowhere/clip.mp4", "--model", &model()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("/nowhere/clip.mp4") && err.contains("no such file"), "{err}");

    let (code, err) = run(&["annotate", "/nowhere/clip.mp4", "--model", "/nowhere/m.onnx"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("/nowhere/m.onnx"), "{err}");

    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/demo/model.onnx");
    if !demo.is_file() {
        let (code, err) = run(&["annotate", "/nowhere/clip.mp4"]);
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains("models/demo/model.onnx") && err.contains("--model"), "{err}");
    }

    let (code, err) = run(&["annotate", "/dev/video-none-7", "--model", &model()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("/dev/video-none-7"), "{err}");

    let (code, err) = run(&["annotate", "rtsp://127.0.0.1:1/x", "--model", &model(), "--serve", "http://x"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("rtsp://HOST"), "{err}");

    let input = dir.path().join("in.mp4");
    std::fs::write(&input, b"not a video").expect("write");
    let (code, err) = run(&["annotate", &input.display().to_string(), "--model", &model(), "--output", "/nowhere/out.mp4"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("/nowhere/out.mp4"), "{err}");

    let (code, err) = run(&["annotate", &input.display().to_string(), "--model", &model()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(&input.display().to_string()), "{err}");
}

#[test]
fn a_missing_plugin_says_how_to_build_it() {
    require_plugin();
    let dir = tempfile::tempdir().expect("temp dir");
    // A copy of the binary without the plugin beside it, and no plugin
    // directories for GStreamer to scan.
    let exe = dir.path().join("slowfast");
    std::fs::copy(env!("CARGO_BIN_EXE_slowfast"), &exe).expect("copy the binary");
    let empty = dir.path().join("no-plugins");
    std::fs::create_dir(&empty).expect("dir");
    let out = Command::new(&exe)
        .args(["annotate", &model(), "--model", &model()])
        .env("GST_REGISTRY", dir.path().join("registry.bin"))
        .env("GST_PLUGIN_PATH", &empty)
        .env("GST_PLUGIN_SYSTEM_PATH", &empty)
        .output()
        .expect("the copy runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("cargo build -p gst-plugin-slowfast") && err.contains(&exe.parent().unwrap().display().to_string()), "{err}");
}

/// Runs `slowfast annotate INPUT --output OUT --json` with the tiny model;
/// returns (exit code, JSON lines, stderr, how long it took).
fn annotate_to(dir: &Path, input: &Path, output: &Path, extra: &[&str]) -> (Option<i32>, Vec<Value>, String, Duration) {
    let start = Instant::now();
    let out = slowfast(dir)
        .args(["annotate", &input.display().to_string(), "--output", &output.display().to_string()])
        .args(["--json", "--threads", "1"])
        .args(if extra.contains(&"--model") { vec![] } else { vec!["--model".to_string(), model()] })
        .args(extra)
        .output()
        .expect("slowfast runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    (out.status.code(), json_lines(&stdout), String::from_utf8_lossy(&out.stderr).into_owned(), start.elapsed())
}

/// A raw-video Matroska file of moving-gradient frames, stamped as given
/// (`framerate` is what its caps claim): repeated or sparse timestamps
/// that the usual encoders would not write.
fn make_raw_mkv(dir: &Path, name: &str, (width, height): (i32, i32), framerate: i32, pts_ms: &[u64]) -> PathBuf {
    gst_init();
    let path = dir.join(name);
    let pipeline = gst::parse::launch(&format!(
        "appsrc name=src format=time caps=video/x-raw,format=I420,width={width},height={height},framerate={framerate}/1 \
         ! matroskamux ! filesink location={}",
        path.display()
    ))
    .expect("muxing pipeline")
    .downcast::<gst::Pipeline>()
    .expect("pipeline");
    let src = pipeline.by_name("src").expect("appsrc").downcast::<gst_app::AppSrc>().expect("appsrc");
    pipeline.set_state(gst::State::Playing).expect("muxing starts");
    let w = width as usize;
    let size = gst_video::VideoInfo::builder(gst_video::VideoFormat::I420, width as u32, height as u32).build().expect("video info").size();
    for (i, &ms) in pts_ms.iter().enumerate() {
        let data: Vec<u8> = (0..size).map(|k| ((k % w) * 3 + i * 7) as u8).collect();
        let mut buf = gst::Buffer::from_mut_slice(data);
        buf.get_mut().expect("fresh buffer").set_pts(gst::ClockTime::from_mseconds(ms));
        src.push_buffer(buf).expect("push");
    }
    src.end_of_stream().expect("eos");
    let bus = pipeline.bus().expect("bus");
    let msg = bus.timed_pop_filtered(gst::ClockTime::from_seconds(20), &[gst::MessageType::Eos, gst::MessageType::Error]);
    assert!(matches!(msg.as_ref().map(|m| m.view()), Some(gst::MessageView::Eos(_))), "muxing {}: {msg:?}", path.display());
    pipeline.set_state(gst::State::Null).expect("stop");
    path
}

fn finished_of(lines: &[Value]) -> &Value {
    let finished = events(lines, "finished");
    assert_eq!(finished.len(), 1, "{lines:?}");
    finished[0]
}

#[test]
fn audio_only_input_fails_at_once_and_leaves_no_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("tone.wav");
    let out = Command::new("gst-launch-1.0")
        .env("GST_REGISTRY", dir.path().join("registry.bin"))
        .args(["-q", "audiotestsrc", "num-buffers=20", "!", "wavenc", "!", "filesink"])
        .arg(format!("location={}", input.display()))
        .output()
        .expect("gst-launch-1.0 runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let output = dir.path().join("out.mp4");
    let start = Instant::now();
    // Bounded: this used to hang for good.
    let mut cmd = slowfast(dir.path());
    cmd.args(["annotate", &input.display().to_string(), "--output", &output.display().to_string()]).args(["--model", &model(), "--json"]);
    let (code, lines, stderr) = Running::spawn(cmd).finish(Duration::from_secs(20));
    let took = start.elapsed();
    let lines = json_lines(&lines.join("\n"));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains(&format!("no video stream in {}", input.display())), "{stderr}");
    assert!(!output.exists(), "{} left behind", output.display());
    assert!(!stderr.contains("wrote"), "{stderr}");
    assert!(events(&lines, "finished").is_empty(), "{lines:?}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn interrupting_a_source_that_never_delivered_claims_no_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("rtsp://127.0.0.1:{}/nothing", free_port());
    let output = dir.path().join("out.mp4");
    let mut cmd = slowfast(dir.path());
    cmd.args(["annotate", &url, "--output", &output.display().to_string(), "--model", &model(), "--json"]);
    let mut run = Running::spawn(cmd);
    run.wait_for(Duration::from_secs(15), |v| v["event"] == "retry");
    run.interrupt();
    let (code, lines, stderr) = run.finish(Duration::from_secs(15));
    assert_eq!(code, Some(0), "{stderr}");
    let lines = json_lines(&lines.join("\n"));
    let finished = finished_of(&lines);
    assert_eq!(finished["frames"], 0, "{finished}");
    assert!(finished["output"].is_null(), "{finished}");
    assert!(!output.exists(), "{} left behind", output.display());
    assert!(!stderr.contains("wrote"), "{stderr}");
}

#[test]
fn odd_sized_video_is_encoded_at_the_next_even_size() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pts: Vec<u64> = (0..60).map(|i| i * 1000 / 30).collect();
    let input = make_raw_mkv(dir.path(), "odd.mkv", (95, 63), 30, &pts);
    let output = dir.path().join("out.mp4");
    let (code, lines, stderr, _) = annotate_to(dir.path(), &input, &output, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(finished_of(&lines)["frames"], 60);
    let decoded = runtime::decode::decode_all(&output).expect("the output MP4 decodes");
    assert_eq!(decoded.frames.len(), 60);
    assert_eq!((decoded.frames[0].width, decoded.frames[0].height), (96, 64));
}

#[test]
fn a_video_too_small_for_the_model_fails_with_one_message_and_no_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pts: Vec<u64> = (0..30).map(|i| i * 1000 / 30).collect();
    let input = make_raw_mkv(dir.path(), "dot.mkv", (1, 1), 30, &pts);
    let output = dir.path().join("out.mp4");
    let (code, _, stderr, took) = annotate_to(dir.path(), &input, &output, &[]);
    assert_ne!(code, Some(0), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("1x1 video is too small for model") && errors[0].contains(&input.display().to_string()), "{stderr}");
    assert!(!output.exists(), "{} left behind", output.display());
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn a_resolution_change_mid_stream_is_scaled_to_the_first_size() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Two H.264 byte streams of different sizes, one after the other: the
    // decoder renegotiates in the middle of the file.
    let mut joined = Vec::new();
    for (w, h) in [(96, 64), (128, 96)] {
        let part = dir.path().join(format!("{w}x{h}.h264"));
        let out = Command::new("gst-launch-1.0")
            .env("GST_REGISTRY", dir.path().join("registry.bin"))
            .args(["-q", "videotestsrc", "num-buffers=75", "pattern=ball", "!"])
            .arg(format!("video/x-raw,format=I420,width={w},height={h},framerate=30/1"))
            .args(["!", "x264enc", "!", "video/x-h264,stream-format=byte-stream", "!", "filesink"])
            .arg(format!("location={}", part.display()))
            .output()
            .expect("gst-launch-1.0 runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        joined.extend(std::fs::read(&part).expect("read the part"));
    }
    let input = dir.path().join("joined.h264");
    std::fs::write(&input, joined).expect("write");
    let output = dir.path().join("out.mp4");
    let (code, lines, stderr, _) = annotate_to(dir.path(), &input, &output, &["--stride", "16"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(finished_of(&lines)["frames"], 150);
    // One window in each half: the element restarts at the new size.
    assert_eq!(events(&lines, "prediction").len(), 2, "{lines:?}");
    let decoded = runtime::decode::decode_all(&output).expect("the output MP4 decodes");
    assert_eq!(decoded.frames.len(), 150);
    assert!(decoded.frames.iter().all(|f| (f.width, f.height) == (96, 64)));
}

#[test]
fn repeated_timestamps_are_made_monotonic_and_every_frame_is_written() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Pairs of frames sharing a timestamp, as packed-B-frame MPEG-4 decodes.
    let pts: Vec<u64> = (0..80).map(|i| (i / 2) * 2 * 1000 / 30).collect();
    let input = make_raw_mkv(dir.path(), "repeats.mkv", (96, 64), 30, &pts);
    let decoded = runtime::decode::decode_all(&input).expect("the input decodes");
    let stamps: Vec<Option<u64>> = decoded.frames.iter().map(|f| f.pts_ns).collect();
    assert!(stamps.windows(2).any(|w| w[0] == w[1]), "the input has no repeated timestamp: {stamps:?}");
    let output = dir.path().join("out.mp4");
    let (code, lines, stderr, _) = annotate_to(dir.path(), &input, &output, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(finished_of(&lines)["frames"], 80);
    let decoded = runtime::decode::decode_all(&output).expect("the output MP4 decodes");
    assert_eq!(decoded.frames.len(), 80);
}

#[test]
fn a_sparse_file_is_annotated_quickly_with_predictions() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Caps say 30 fps, frames come every 0.5 s for 10 s.
    let pts: Vec<u64> = (0..21).map(|i| i * 500).collect();
    let input = make_raw_mkv(dir.path(), "sparse.mkv", (96, 64), 30, &pts);
    let output = dir.path().join("out.mp4");
    let (code, lines, stderr, took) = annotate_to(dir.path(), &input, &output, &["--stride", "16"]);
    assert_eq!(code, Some(0), "{stderr}");
    // 300 ticks at the model's 30 fps: windows end on ticks 63 + 16k.
    assert_eq!(events(&lines, "prediction").len(), 15, "{lines:?}");
    assert_eq!(finished_of(&lines)["skipped"], 0);
    assert!(took < Duration::from_secs(20), "took {took:?}");
    let decoded = runtime::decode::decode_all(&output).expect("the output MP4 decodes");
    assert_eq!(decoded.frames.len(), 21);
}

#[test]
fn failing_inference_is_reported_with_its_cause_and_does_not_stall() {
    let dir = tempfile::tempdir().expect("temp dir");
    // The tiny model with metadata that disagrees with its graph: 40 px
    // clips into a graph built for 32.
    let bytes = std::fs::read(model()).expect("read the model");
    let (from, to) = (b"slowfast.crop_size\x12\x0232".as_slice(), b"slowfast.crop_size\x12\x0240".as_slice());
    let at = bytes.windows(from.len()).position(|w| w == from).expect("crop size in the metadata");
    let mut patched = bytes.clone();
    patched[at..at + to.len()].copy_from_slice(to);
    let bad_model = dir.path().join("bad.onnx");
    std::fs::write(&bad_model, patched).expect("write");
    let input = make_video(dir.path(), "in.mp4", 100);
    let output = dir.path().join("out.mp4");
    let (code, lines, stderr, took) =
        annotate_to(dir.path(), &input, &output, &["--model", &bad_model.display().to_string(), "--stride", "16"]);
    assert_eq!(code, Some(0), "{stderr}");
    let warnings: Vec<&str> = events(&lines, "warning").iter().filter_map(|w| w["message"].as_str()).collect();
    // Windows due on frames 64, 80 and 96, each failing with the reason.
    assert_eq!(warnings.len(), 3, "{lines:?}");
    assert!(warnings.iter().all(|w| w.contains("inference failed:") && w.len() > "inference failed: ".len() + 20), "{warnings:?}");
    assert!(events(&lines, "prediction").is_empty());
    assert_eq!(finished_of(&lines)["frames"], 100);
    assert!(took < Duration::from_secs(20), "took {took:?}");
}

/// `--int8` runs the model's INT8 sibling (the demo model ships one) on
/// OpenVINO, and a model without a sibling is refused by name.
#[test]
fn int8_runs_the_sibling_of_the_model_and_names_a_missing_one() {
    gst_init();
    let dir = tempfile::tempdir().expect("temp dir");
    let input = make_video(dir.path(), "in.mp4", 100);
    let output = dir.path().join("out.mp4");
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/demo/model.onnx");
    let demo = demo.display().to_string();
    let (code, lines, err, _) = annotate_to(dir.path(), &input, &output, &["--model", &demo, "--int8", "--stride", "16"]);
    assert_eq!(code, Some(0), "{err}");
    // The demo model's window is 32 frames at 30 fps: frames 32, 48, .., 96.
    let predictions = events(&lines, "prediction");
    assert_eq!(predictions.len(), 5, "{lines:?}");
    for p in &predictions {
        check_prediction(p);
    }
    let (code, _, err, _) = annotate_to(dir.path(), &input, &output, &["--int8"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("tiny_8x8_int8.onnx") && err.contains("--int8 --calibration"), "{err}");
}
