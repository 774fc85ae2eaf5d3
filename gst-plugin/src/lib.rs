//! `libgstslowfast.so`: SlowFast action recognition as a GStreamer element.
//!
//! ```text
//! gst-launch-1.0 uridecodebin uri=file:///clip.mp4 ! videoconvert ! \
//!     slowfast model=model.onnx draw=true ! videoconvert ! autovideosink
//! ```

use gst::glib;

mod slowfast;

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    slowfast::register(plugin)
}

gst::plugin_define!(
    slowfast,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
    "MIT/X11",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    "slowfast-rs",
    env!("BUILD_REL_DATE")
);
