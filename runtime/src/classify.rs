//! Classifying a video file with the reference test protocol: temporal
//! views x spatial crops (10 x 3 for Kinetics), softmax averaged over all
//! views.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::decode::{DecodeError, Frame, read_frames};
use crate::engine::{Engine, EngineError};
use crate::preprocess::{Clip, Normalization, PreprocessError, ScaledFrame, SpatialCrop, scale_source_into};
use crate::sampling::{ClipPosition, clip_indices, clip_size};

#[derive(Debug, thiserror::Error)]
pub enum ClassifyError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("{video}: {source}")]
    Preprocess { video: String, source: PreprocessError },
    #[error("{video}: {source}")]
    Engine { video: String, source: EngineError },
}

/// Temporal clips x spatial crops per video.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Views {
    pub temporal: usize,
    pub spatial: usize,
}

impl Views {
    pub fn count(&self) -> usize {
        self.temporal * self.spatial
    }
}

impl fmt::Display for Views {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.temporal, self.spatial)
    }
}

impl FromStr for Views {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("views {s:?}: expected TEMPORALxSPATIAL with 1 or 3 spatial crops, e.g. 10x3 or 1x1");
        let (t, sp) = s.split_once(['x', 'X']).ok_or_else(bad)?;
        let temporal: usize = t.trim().parse().map_err(|_| bad())?;
        let spatial: usize = sp.trim().parse().map_err(|_| bad())?;
        if temporal == 0 || SpatialCrop::views(spatial).is_none() {
            return Err(bad());
        }
        Ok(Views { temporal, spatial })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ClassScore {
    pub class: usize,
    pub label: String,
    pub score: f32,
}

#[derive(Debug, Clone, Serialize)]
pub struct VideoResult {
    pub video: String,
    /// Frames in the video (from the container, or counted when decoded whole).
    pub frames: usize,
    pub fps: f64,
    /// Views averaged (temporal x spatial).
    pub views: usize,
    /// Frames actually decoded.
    pub decoded_frames: usize,
    /// Whether the decoder sought to the clips instead of decoding from
    /// the start.
    pub seeked: bool,
    pub top: Vec<ClassScore>,
    #[serde(skip)]
    pub probabilities: Vec<f32>,
}

/// Decodes the frames the views need, preprocesses each once, runs every
/// view and averages the class probabilities.
pub fn classify_video(engine: &mut Engine, video: &str, views: Views, top_k: usize) -> Result<VideoResult, ClassifyError> {
    let info = engine.info().clone();
    let norm = Normalization { mean: info.mean, std: info.std };
    let prep_err = |source| ClassifyError::Preprocess { video: video.to_string(), source };
    let plan = |frames: usize, fps: Option<f64>| -> Vec<Vec<usize>> {
        let span = clip_size(info.fast_frames, info.sampling_rate, fps.unwrap_or(info.target_fps), info.target_fps);
        (0..views.temporal)
            .map(|index| clip_indices(frames, span, info.fast_frames, ClipPosition::View { index, count: views.temporal }))
            .collect()
    };
    let mut scaled: BTreeMap<usize, ScaledFrame> = BTreeMap::new();
    let mut first_error: Option<PreprocessError> = None;
    let keep = |f: Frame<'_>| -> Result<(), String> {
        let mut out = ScaledFrame::default();
        match scale_source_into(&f, info.crop_size, &norm, &mut out) {
            Ok(()) => {
                scaled.insert(f.index, out);
                Ok(())
            }
            Err(e) => {
                let why = format!("frame {}: {e}", f.index);
                first_error = Some(e);
                Err(why)
            }
        }
    };
    let read = read_frames(video, |frames, fps| plan(frames, fps).into_iter().flatten().collect(), keep);
    if let Some(e) = first_error {
        return Err(prep_err(e));
    }
    let read = read?;
    let (frames, fps) = (read.probe.frames, read.probe.fps);
    let clips = plan(frames, fps);
    // The index lists frames the data no longer holds: a file cut short (a
    // copy or download that stopped). A frame or so past the end is a
    // container rounding its count, which the reference covers by
    // repeating the last frame.
    let last_wanted = clips.iter().flatten().copied().max().unwrap_or(0);
    let last_read = scaled.keys().next_back().copied();
    let slack = (fps.unwrap_or(info.target_fps).ceil() as usize).max(frames / 10);
    if let Some(last) = last_read
        && last + slack < last_wanted
    {
        let why = format!("the file is truncated: its index lists {frames} frames but the data ends after frame {last}");
        return Err(DecodeError::new(video, why).into());
    }
    if scaled.is_empty() {
        return Err(DecodeError::new(video, "no video frames decoded").into());
    }
    let crops = SpatialCrop::views(views.spatial).unwrap_or(&[SpatialCrop::Centre]);
    let slow = info.slow_indices();
    let mut sum = vec![0.0f64; info.num_classes];
    for indices in &clips {
        let fast: Vec<&ScaledFrame> = indices.iter().filter_map(|&i| nearest(&scaled, i)).collect();
        for &crop in crops {
            let clip = Clip::assemble(&fast, &slow, info.crop_size, crop).map_err(prep_err)?;
            let probs = engine.probabilities(&[&clip]).map_err(|source| ClassifyError::Engine { video: video.to_string(), source })?;
            for (s, p) in sum.iter_mut().zip(&probs[0]) {
                *s += f64::from(*p);
            }
        }
    }
    let n_views = clips.len() * crops.len();
    let probabilities: Vec<f32> = sum.iter().map(|s| (s / n_views as f64) as f32).collect();
    Ok(VideoResult {
        video: video.to_string(),
        frames,
        fps: fps.unwrap_or(info.target_fps),
        views: n_views,
        decoded_frames: scaled.len(),
        seeked: read.seeks > 0,
        top: top_k_scores(&probabilities, top_k, &info.labels),
        probabilities,
    })
}

/// The decoded frame at `i`, or the closest one before it: a container may
/// state more frames than it holds, and the reference repeats the last one.
fn nearest(frames: &BTreeMap<usize, ScaledFrame>, i: usize) -> Option<&ScaledFrame> {
    frames.range(..=i).next_back().or_else(|| frames.range(i..).next()).map(|(_, f)| f)
}

/// The `k` best classes, highest first; ties keep class order.
pub fn top_k_scores(probabilities: &[f32], k: usize, labels: &[String]) -> Vec<ClassScore> {
    let mut order: Vec<usize> = (0..probabilities.len()).collect();
    order.sort_by(|&a, &b| probabilities[b].total_cmp(&probabilities[a]).then(a.cmp(&b)));
    order
        .into_iter()
        .take(k)
        .map(|c| ClassScore { class: c, label: labels.get(c).cloned().unwrap_or_default(), score: probabilities[c] })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_parse() {
        assert_eq!("10x3".parse::<Views>().unwrap(), Views { temporal: 10, spatial: 3 });
        assert_eq!("1x1".parse::<Views>().unwrap().count(), 1);
        for bad in ["10", "0x3", "10x2", "ax3", ""] {
            assert!(bad.parse::<Views>().is_err(), "{bad}");
        }
    }

    #[test]
    fn top_k_orders_by_score() {
        let labels: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let top = top_k_scores(&[0.2, 0.5, 0.3], 2, &labels);
        assert_eq!(top.iter().map(|c| c.class).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(top[0].label, "b");
    }
}
