//! `scripts/install.sh` leaves tools that work in a clean environment: no
//! variable from set-up, only HOME and a PATH with the install folder. The
//! binaries find libtorch and ONNX Runtime by themselves, GStreamer finds
//! the element in the user's plugin folder, and the element finds ONNX
//! Runtime from inside gst-launch.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn built() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(|deps| deps.parent()).expect("target dir").to_path_buf();
    for f in ["slowfast", "trainer", "libgstslowfast.so"] {
        assert!(dir.join(f).exists(), "{} is not built: run `bash scripts/test.sh`", dir.join(f).display());
    }
    dir
}

fn ok(what: &str, o: Output) -> String {
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{what} failed:\n{text}");
    text
}

#[test]
fn installed_tools_run_without_set_up() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::tempdir().expect("temp dir");
    let home = dir.path().join("home");
    let prefix = home.join(".local");
    let out = Command::new("bash")
        .arg(repo.join("scripts/install.sh"))
        .env("PREFIX", &prefix)
        .env("INSTALL_FROM", built())
        .output()
        .expect("bash");
    ok("install.sh", out);
    let clean = |program: &str| {
        let mut c = Command::new(program);
        c.env_clear().env("HOME", &home).env("PATH", format!("{}:/usr/bin:/bin", prefix.join("bin").display()));
        c
    };
    let model = repo.join("models/demo/model.onnx");
    let clip = repo.join("data/videos/mmaction2_demo.mp4");

    let text = ok("trainer info", clean("trainer").arg("info").output().expect("trainer"));
    assert!(text.contains("parameters: 34566488"), "{text}");
    let text = ok("slowfast classify", clean("slowfast").arg("classify").arg(&clip).arg("--model").arg(&model).output().expect("slowfast"));
    assert!(text.contains("mmaction2_demo.mp4"), "{text}");
    let text = ok("gst-inspect-1.0 slowfast", clean("gst-inspect-1.0").arg("slowfast").output().expect("gst-inspect-1.0"));
    assert!(text.contains("libgstslowfast.so") || text.contains("slowfast"), "{text}");
    let pipeline = format!(
        "videotestsrc num-buffers=40 ! video/x-raw,width=96,height=72,framerate=30/1 ! videoconvert ! slowfast model={} ! fakesink",
        model.display()
    );
    let text = ok("gst-launch-1.0", clean("gst-launch-1.0").args(pipeline.split(' ')).output().expect("gst-launch-1.0"));
    assert!(!text.contains("ERROR"), "{text}");
}
