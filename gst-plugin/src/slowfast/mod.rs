//! The `slowfast` element. See `imp.rs` for its behaviour and properties.

use gst::glib;
use gst::prelude::*;

mod draw;
mod engines;
mod frame;
mod imp;
mod prediction;

glib::wrapper! {
    pub struct SlowFast(ObjectSubclass<imp::SlowFast>)
        @extends gst_video::VideoFilter, gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    // Documents the enum in gst-inspect and the plugin docs.
    imp::Backend::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    gst::Element::register(Some(plugin), runtime::schema::ELEMENT, gst::Rank::NONE, SlowFast::static_type())
}
