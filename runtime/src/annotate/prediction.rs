//! The element's `slowfast` bus messages as records to print.

use serde::Serialize;

use crate::schema::prediction as fields;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassScore {
    pub class: u32,
    pub label: String,
    pub score: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PredictionRecord {
    pub index: u64,
    /// Output timestamps (seconds) of the first and last frame of the clip.
    pub clip_start_s: Option<f64>,
    pub clip_end_s: Option<f64>,
    pub top: Vec<ClassScore>,
}

impl PredictionRecord {
    /// Reads the element's message structure (see the element's docs);
    /// `None` when it is not a prediction.
    pub fn from_structure(s: &gst::StructureRef) -> Option<Result<PredictionRecord, String>> {
        if s.name() != fields::NAME {
            return None;
        }
        Some(Self::parse(s))
    }

    fn parse(s: &gst::StructureRef) -> Result<PredictionRecord, String> {
        let field = |name: &str| s.get::<gst::Array>(name).map_err(|e| format!("prediction message field {name}: {e}"));
        let ids = field(fields::CLASS_IDS)?;
        let labels = field(fields::LABELS)?;
        let scores = field(fields::SCORES)?;
        let mut top = Vec::with_capacity(ids.len());
        for ((id, label), score) in ids.iter().zip(labels.iter()).zip(scores.iter()) {
            top.push(ClassScore {
                class: id.get::<u32>().map_err(|e| format!("class-ids: {e}"))?,
                label: label.get::<String>().map_err(|e| format!("labels: {e}"))?,
                score: score.get::<f64>().map_err(|e| format!("scores: {e}"))?,
            });
        }
        let time = |name: &str| -> Result<Option<f64>, String> {
            let ns = s.get::<u64>(name).map_err(|e| format!("prediction message field {name}: {e}"))?;
            Ok((ns != fields::NO_TIME).then(|| ns as f64 / 1e9))
        };
        Ok(PredictionRecord {
            index: s.get::<u64>(fields::INDEX).map_err(|e| format!("prediction message field {}: {e}", fields::INDEX))?,
            clip_start_s: time(fields::CLIP_START)?,
            clip_end_s: time(fields::CLIP_END)?,
            top,
        })
    }

    /// `#3 [2.13-4.27 s] archery 0.871, bowling 0.052`
    pub fn human(&self) -> String {
        let span = match (self.clip_start_s, self.clip_end_s) {
            (Some(a), Some(b)) => format!("[{a:.2}-{b:.2} s]"),
            _ => "[time unknown]".into(),
        };
        let classes: Vec<String> = self.top.iter().map(|c| format!("{} {:.3}", c.label, c.score)).collect();
        format!("#{} {span} {}", self.index, classes.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_element_message() {
        gst::init().unwrap();
        let s = gst::Structure::builder("slowfast")
            .field("index", 3u64)
            .field("class-ids", gst::Array::new([1u32.to_send_value(), 0u32.to_send_value()]))
            .field("labels", gst::Array::new(["b".to_send_value(), "a".to_send_value()]))
            .field("scores", gst::Array::new([0.75f64.to_send_value(), 0.25f64.to_send_value()]))
            .field("clip-start", 2_000_000_000u64)
            .field("clip-end", u64::MAX)
            .build();
        let p = PredictionRecord::from_structure(&s).unwrap().unwrap();
        assert_eq!(p.index, 3);
        assert_eq!(p.top[0], ClassScore { class: 1, label: "b".into(), score: 0.75 });
        assert_eq!((p.clip_start_s, p.clip_end_s), (Some(2.0), None));
        assert_eq!(p.human(), "#3 [time unknown] b 0.750, a 0.250");
        assert!(PredictionRecord::from_structure(&gst::Structure::new_empty("other")).is_none());
        let bad = gst::Structure::builder("slowfast").field("index", 1u64).build();
        assert!(PredictionRecord::from_structure(&bad).unwrap().unwrap_err().contains("class-ids"));
    }

    use gst::prelude::ToSendValue;
}
