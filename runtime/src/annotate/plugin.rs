//! Finding the `slowfast` element: the plugin built beside the executable
//! first (it matches the binary), then GST_PLUGIN_PATH and the registry.

use std::path::{Path, PathBuf};

use super::error::AnnotateError;

pub const PLUGIN_FILE: &str = "libgstslowfast.so";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginLocation {
    File(PathBuf),
    Registry,
}

/// Loads `libgstslowfast.so` from the first of `dirs` holding it, or
/// checks that the registry knows the element. `gst::init` must have run.
pub fn ensure_element(dirs: &[PathBuf]) -> Result<PluginLocation, AnnotateError> {
    for dir in dirs {
        let path = dir.join(PLUGIN_FILE);
        if path.is_file() {
            return load(&path);
        }
    }
    if gst::ElementFactory::find(crate::schema::ELEMENT).is_some() {
        return Ok(PluginLocation::Registry);
    }
    let looked: Vec<String> = dirs.iter().map(|d| d.join(PLUGIN_FILE).display().to_string()).collect();
    Err(AnnotateError::PluginNotFound {
        looked: if looked.is_empty() { "no directory".into() } else { looked.join(", ") },
        plugin_path: std::env::var("GST_PLUGIN_PATH").unwrap_or_else(|_| "(unset)".into()),
    })
}

fn load(path: &Path) -> Result<PluginLocation, AnnotateError> {
    gst::Plugin::load_file(path).map_err(|e| AnnotateError::PluginLoad { path: path.into(), why: e.to_string() })?;
    if gst::ElementFactory::find(crate::schema::ELEMENT).is_none() {
        return Err(AnnotateError::PluginLoad { path: path.into(), why: "it registers no `slowfast` element".into() });
    }
    Ok(PluginLocation::File(path.into()))
}
