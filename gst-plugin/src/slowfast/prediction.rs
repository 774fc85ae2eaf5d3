//! One prediction of the element, how it is smoothed over time, and the
//! structure it travels in (region-of-interest meta parameter and bus
//! message share one layout).

use std::collections::VecDeque;

use gst::prelude::ToSendValue;
use runtime::schema::prediction as fields;

/// Name of the ROI type, the meta parameter structure and the bus message
/// (`runtime::schema::prediction` owns the layout).
pub const NAME: &str = fields::NAME;

#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Counts predictions of this element since it started.
    pub index: u64,
    pub class_ids: Vec<u32>,
    pub labels: Vec<String>,
    pub scores: Vec<f64>,
    /// PTS of the first and the last frame of the clip it describes.
    pub clip_start: Option<gst::ClockTime>,
    pub clip_end: Option<gst::ClockTime>,
}

impl Prediction {
    /// The `top_k` classes at or above `threshold`, best first.
    pub fn from_scores(
        index: u64,
        scores: &[f32],
        labels: &[String],
        top_k: usize,
        threshold: f64,
        clip: (Option<gst::ClockTime>, Option<gst::ClockTime>),
    ) -> Prediction {
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
        let kept: Vec<usize> = order.into_iter().take(top_k).filter(|&c| f64::from(scores[c]) >= threshold).collect();
        Prediction {
            index,
            class_ids: kept.iter().map(|&c| c as u32).collect(),
            labels: kept.iter().map(|&c| labels.get(c).cloned().unwrap_or_else(|| format!("class {c}"))).collect(),
            scores: kept.iter().map(|&c| f64::from(scores[c])).collect(),
            clip_start: clip.0,
            clip_end: clip.1,
        }
    }

    pub fn to_structure(&self) -> gst::Structure {
        let ids = gst::Array::new(self.class_ids.iter().map(|&c| c.to_send_value()));
        let labels = gst::Array::new(self.labels.iter().map(|l| l.to_send_value()));
        let scores = gst::Array::new(self.scores.iter().map(|s| s.to_send_value()));
        let time = |t: Option<gst::ClockTime>| t.map(|t| t.nseconds()).unwrap_or(fields::NO_TIME);
        gst::Structure::builder(NAME)
            .field(fields::INDEX, self.index)
            .field(fields::CLASS_IDS, ids)
            .field(fields::LABELS, labels)
            .field(fields::SCORES, scores)
            .field(fields::CLIP_START, time(self.clip_start))
            .field(fields::CLIP_END, time(self.clip_end))
            .build()
    }

    /// Text drawn on frames: the best class and its score.
    pub fn caption(&self) -> String {
        match (self.labels.first(), self.scores.first()) {
            (Some(l), Some(s)) => format!("{l} {:.0}%", s * 100.0),
            _ => String::from("-"),
        }
    }
}

/// Averages the class scores of the last `window` predictions, so a label
/// does not flicker between two close classes on every clip.
#[derive(Debug, Default)]
pub struct Smoother {
    recent: VecDeque<Vec<f32>>,
}

impl Smoother {
    pub fn push(&mut self, scores: Vec<f32>, window: usize) -> Vec<f32> {
        self.recent.push_back(scores);
        while self.recent.len() > window.max(1) {
            self.recent.pop_front();
        }
        let n = self.recent.len() as f32;
        let mut mean = vec![0.0f32; self.recent[0].len()];
        for s in &self.recent {
            for (m, v) in mean.iter_mut().zip(s) {
                *m += v / n;
            }
        }
        mean
    }

    pub fn clear(&mut self) {
        self.recent.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Vec<String> {
        ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn top_k_above_threshold_best_first() {
        let p = Prediction::from_scores(3, &[0.1, 0.5, 0.15, 0.25], &labels(), 3, 0.12, (None, None));
        assert_eq!(p.class_ids, vec![1, 3, 2]);
        assert_eq!(p.labels, vec!["b", "d", "c"]);
        let p = Prediction::from_scores(3, &[0.1, 0.5, 0.15, 0.25], &labels(), 3, 0.2, (None, None));
        assert_eq!(p.class_ids, vec![1, 3]);
        assert_eq!(p.caption(), "b 50%");
    }

    #[test]
    fn structure_holds_every_field() {
        gst::init().unwrap();
        let clip = (Some(gst::ClockTime::from_mseconds(40)), Some(gst::ClockTime::from_mseconds(2100)));
        let s = Prediction::from_scores(7, &[0.7, 0.3, 0.0, 0.0], &labels(), 2, 0.0, clip).to_structure();
        assert_eq!(s.name(), NAME);
        assert_eq!(s.get::<u64>("index").unwrap(), 7);
        assert_eq!(s.get::<u64>("clip-start").unwrap(), 40_000_000);
        assert_eq!(s.get::<u64>("clip-end").unwrap(), 2_100_000_000);
        let labels = s.get::<gst::Array>("labels").unwrap();
        assert_eq!(labels.as_slice()[0].get::<String>().unwrap(), "a");
        let ids = s.get::<gst::Array>("class-ids").unwrap();
        assert_eq!(ids.as_slice()[1].get::<u32>().unwrap(), 1);
    }

    #[test]
    fn smoothing_averages_the_last_predictions() {
        let mut s = Smoother::default();
        assert_eq!(s.push(vec![1.0, 0.0], 2), vec![1.0, 0.0]);
        assert_eq!(s.push(vec![0.0, 1.0], 2), vec![0.5, 0.5]);
        assert_eq!(s.push(vec![0.0, 1.0], 2), vec![0.0, 1.0]);
    }
}
