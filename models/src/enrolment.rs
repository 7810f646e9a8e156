//! Classes learned on the device (`edge-runtime enrol`): the embedding output a model exposes,
//! the summary the manifest carries, and the table of enrolled embeddings stored inside the
//! ONNX file (`metadata_props["perch.enrolment"]`), never in a side file that can drift.
//!
//! The table keeps the raw pooled embeddings (not only the class means) so the head can be
//! rebuilt exactly when a class is added, replaced or removed.

use serde::{Deserialize, Serialize};

use crate::error::{ModelsError, Result};

/// The ONNX `metadata_props` key holding the enrolment table JSON.
pub const ENROLMENT_KEY: &str = "perch.enrolment";
/// Name of the pooled-embedding graph output perch writes beside the logits.
pub const FEATURES_OUTPUT: &str = "features";

/// A graph output (or, for reference models, an inner tensor) holding the pooled embedding the
/// head reads: `[1, dim]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureSpec {
    pub output: String,
    pub dim: usize,
}

/// How an enrolled model turns an embedding into logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeadKind {
    /// Cosine class prototypes: `temperature * normalize(f) · normalize(mean of the class)`.
    #[default]
    Prototype,
    /// Multinomial logistic regression on the L2-normalised embeddings, fitted on the device.
    Logistic,
}

impl HeadKind {
    pub fn name(self) -> &'static str {
        match self {
            HeadKind::Prototype => "prototype",
            HeadKind::Logistic => "logistic",
        }
    }
}

impl std::str::FromStr for HeadKind {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        [HeadKind::Prototype, HeadKind::Logistic]
            .into_iter()
            .find(|h| h.name() == s)
            .ok_or_else(|| format!("unknown head '{s}': expected prototype or logistic"))
    }
}

impl std::fmt::Display for HeadKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One enrolled class in the manifest summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassCount {
    pub name: String,
    pub examples: usize,
}

/// What the manifest says about the enrolled head (the embeddings are in the table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrolmentSummary {
    pub head: HeadKind,
    /// Logit scale of the normalised scores.
    pub temperature: f32,
    /// Classes of the original trained head kept in front of the enrolled ones (`--keep-classes`).
    #[serde(default)]
    pub kept: Vec<String>,
    pub classes: Vec<ClassCount>,
}

/// The embeddings of one enrolled class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrolledClass {
    pub name: String,
    /// Raw pooled embeddings, one per example, each `dim` long (base64 of f32 little endian).
    #[serde(with = "embeddings_b64")]
    pub embeddings: Vec<Vec<f32>>,
}

/// The side table stored under [`ENROLMENT_KEY`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrolmentTable {
    pub format: u32,
    pub dim: usize,
    pub classes: Vec<EnrolledClass>,
    /// `--keep-classes`: the trained head's rows (`[kept, dim]` weights and biases), so a later
    /// enrolment can rebuild the head without the original model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept_head: Option<KeptHead>,
}

/// The original classifier rows kept beside the enrolled classes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeptHead {
    pub labels: Vec<String>,
    #[serde(with = "embeddings_b64")]
    pub weight: Vec<Vec<f32>>,
    pub bias: Vec<f32>,
}

impl EnrolmentTable {
    pub fn new(dim: usize) -> Self {
        EnrolmentTable { format: 1, dim, classes: Vec::new(), kept_head: None }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("enrolment table serializes")
    }

    pub fn from_json(text: &str) -> Result<Self> {
        let t: EnrolmentTable =
            serde_json::from_str(text).map_err(|e| ModelsError::Manifest(format!("enrolment table: {e}")))?;
        let bad = |what: String| Err(ModelsError::Manifest(format!("enrolment table: {what}")));
        if t.format > 1 {
            return bad(format!("format {} is newer than this perch understands: upgrade perch", t.format));
        }
        for c in &t.classes {
            if let Some(e) = c.embeddings.iter().find(|e| e.len() != t.dim) {
                return bad(format!("class '{}' has a {}-value embedding, expected {}", c.name, e.len(), t.dim));
            }
        }
        if let Some(k) = &t.kept_head
            && (k.weight.len() != k.labels.len()
                || k.bias.len() != k.labels.len()
                || k.weight.iter().any(|w| w.len() != t.dim))
        {
            return bad("kept head rows do not match its labels or the embedding size".into());
        }
        Ok(t)
    }

    pub fn class(&self, name: &str) -> Option<&EnrolledClass> {
        self.classes.iter().find(|c| c.name == name)
    }

    pub fn counts(&self) -> Vec<ClassCount> {
        self.classes.iter().map(|c| ClassCount { name: c.name.clone(), examples: c.embeddings.len() }).collect()
    }
}

/// Base64 (RFC 4648, with padding) of f32 LE vectors, one string per vector: compact in JSON and
/// exact (no decimal round trip).
mod embeddings_b64 {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(rows: &[Vec<f32>], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(
            rows.iter().map(|r| super::b64_encode(&r.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>())),
        )
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<f32>>, D::Error> {
        let rows: Vec<String> = Vec::deserialize(d)?;
        rows.iter()
            .map(|r| {
                let bytes = super::b64_decode(r).ok_or_else(|| D::Error::custom("invalid base64 embedding"))?;
                if !bytes.len().is_multiple_of(4) {
                    return Err(D::Error::custom("embedding bytes are not a whole number of f32"));
                }
                Ok(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
            })
            .collect()
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn b64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn b64_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for chunk in bytes.chunks(4) {
        let pad = chunk.iter().rev().take_while(|c| **c == b'=').count();
        if pad > 2 {
            return None;
        }
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            let v = if i >= 4 - pad { 0 } else { B64.iter().position(|b| b == c)? as u32 };
            n |= v << (18 - 6 * i);
        }
        out.extend_from_slice(&n.to_be_bytes()[1..4 - pad]);
    }
    Some(out)
}

/// A class name an enrolled model can carry: not empty, no control characters, not longer
/// than 100 characters. Returns the trimmed name or why it is refused.
pub fn check_class_name(name: &str) -> std::result::Result<String, String> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err("it is empty".into());
    }
    if trimmed.chars().any(char::is_control) {
        return Err("it contains control characters (newline, tab, ...)".into());
    }
    if trimmed.chars().count() > 100 {
        return Err("it is longer than 100 characters".into());
    }
    Ok(trimmed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_every_length() {
        for n in 0..10 {
            let bytes: Vec<u8> = (0..n).map(|i| (i * 37 + 200) as u8).collect();
            let text = b64_encode(&bytes);
            assert_eq!(text.len() % 4, 0);
            assert_eq!(b64_decode(&text).unwrap(), bytes, "{text}");
        }
        assert_eq!(b64_encode(b"Man"), "TWFu");
        assert_eq!(b64_encode(b"Ma"), "TWE=");
        assert!(b64_decode("TW").is_none() && b64_decode("T!==").is_none());
    }

    #[test]
    fn tables_round_trip_exactly_and_bad_ones_are_refused() {
        let mut t = EnrolmentTable::new(3);
        t.classes.push(EnrolledClass { name: "mug".into(), embeddings: vec![vec![0.1, -2.5, 1e-20], vec![3.0; 3]] });
        let back = EnrolmentTable::from_json(&t.to_json()).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.counts(), [ClassCount { name: "mug".into(), examples: 2 }]);
        t.dim = 4;
        let err = EnrolmentTable::from_json(&t.to_json()).unwrap_err().to_string();
        assert!(err.contains("mug") && err.contains("expected 4"), "{err}");
    }

    #[test]
    fn class_names_are_checked() {
        assert_eq!(check_class_name("  mug ").unwrap(), "mug");
        assert!(check_class_name("  ").unwrap_err().contains("empty"));
        assert!(check_class_name("a\nb").unwrap_err().contains("control"));
        assert!(check_class_name(&"x".repeat(101)).is_err());
    }
}
