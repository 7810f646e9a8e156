//! The prediction records both binaries print: `edge-runtime classify --json` and
//! `trainer predict --json` write the same [`ImageRecord`] line, and the streaming loop's
//! jsonl/postcard records carry the same [`Prediction`] list.

use serde::{Deserialize, Serialize};

use crate::Labels;

/// One scored class: `{"index": i, "label": "...", "score": p}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Model output index.
    pub index: usize,
    pub label: String,
    /// Softmax probability.
    pub score: f32,
}

/// One classified image: `{"path": ..., "top": [Prediction, ...], "latency_ms": ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub path: String,
    pub top: Vec<Prediction>,
    /// Decode + preprocess + inference + softmax for this image, in milliseconds.
    pub latency_ms: f64,
}

impl Labels {
    /// The `k` most probable classes of a probability vector, best first, with their names.
    pub fn top_k(&self, probs: &[f32], k: usize) -> Vec<Prediction> {
        common::top_k(probs, k)
            .into_iter()
            .map(|(index, score)| Prediction { index, label: self.get(index).to_string(), score })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_schema_is_path_top_latency() {
        let labels = Labels(vec!["ants".into(), "bees".into()]);
        let r = ImageRecord { path: "a.jpg".into(), top: labels.top_k(&[0.25, 0.75], 1), latency_ms: 1.5 };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"path":"a.jpg","top":[{"index":1,"label":"bees","score":0.75}],"latency_ms":1.5}"#
        );
    }
}
