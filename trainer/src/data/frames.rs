//! Videos stored as folders of extracted frames (`img_00001.jpg`, ...), as
//! many Kinetics, Something-Something and Charades copies are. Frames are
//! taken in file-name order; only the ones a clip needs are read.

use std::path::{Path, PathBuf};

use runtime::preprocess::Packing;

use super::SampleError;
use runtime::preprocess::RawClip;

const EXTENSIONS: [&str; 4] = ["jpg", "jpeg", "png", "bmp"];

/// The image files of a frame folder, sorted by name.
pub fn list_frames(dir: &Path) -> Result<Vec<PathBuf>, SampleError> {
    let name = dir.display().to_string();
    let entries = std::fs::read_dir(dir).map_err(|e| SampleError::new(&name, format!("cannot list frames: {e}")))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().and_then(|e| e.to_str()).is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str())))
        .collect();
    if files.is_empty() {
        return Err(SampleError::new(name, "folder holds no jpg/png/bmp frames"));
    }
    files.sort();
    Ok(files)
}

/// Reads the frames `pick(total_frames)` asks for, one clip per index list.
pub fn read_clips(dir: &Path, pick: impl Fn(usize) -> Vec<Vec<usize>>) -> Result<Vec<RawClip>, SampleError> {
    let files = list_frames(dir)?;
    let mut cache: std::collections::HashMap<usize, image::RgbImage> = std::collections::HashMap::new();
    let mut size: Option<(u32, u32)> = None;
    let mut clips = Vec::new();
    for idx in pick(files.len()) {
        let mut data = Vec::new();
        for &i in &idx {
            let i = i.min(files.len() - 1);
            if let std::collections::hash_map::Entry::Vacant(e) = cache.entry(i) {
                let img = image::open(&files[i]).map_err(|e| SampleError::new(files[i].display().to_string(), e))?.to_rgb8();
                match size {
                    None => size = Some(img.dimensions()),
                    Some(s) if s != img.dimensions() => {
                        return Err(SampleError::new(
                            files[i].display().to_string(),
                            format!("frame is {:?}, earlier frames {:?}", img.dimensions(), s),
                        ));
                    }
                    _ => {}
                }
                e.insert(img);
            }
            data.extend_from_slice(cache[&i].as_raw());
        }
        let (w, h) = size.unwrap_or((0, 0));
        clips.push(RawClip { data, frames: idx.len(), height: h as usize, width: w as usize, packing: Packing::Rgb });
    }
    Ok(clips)
}
