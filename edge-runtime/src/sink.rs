//! Where streaming results go: `text` (one human line per frame), `jsonl` (one JSON object
//! per frame) or `postcard` (binary frames for another program).
//!
//! Postcard stream format: a sequence of records, each a `u32` little-endian byte length
//! followed by that many bytes of `postcard`-encoded [`FrameResult`] (field order as declared
//! below). [`read_postcard_stream`] decodes it.

use std::io::Write;

use serde::{Deserialize, Serialize};

use crate::error::{Result, RuntimeError};
use crate::model::Prediction;

/// The label printed and recorded when the (smoothed) best score is below `--threshold`.
pub const UNKNOWN: &str = "unknown";

/// One classified frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameResult {
    /// Frame number from the source (0-based, counts dropped frames too).
    pub seq: u64,
    /// The file name for `dir:` sources.
    pub name: Option<String>,
    /// Best smoothed class, or `unknown` below the threshold.
    pub label: String,
    /// Output index of `label` (None for `unknown`).
    pub index: Option<usize>,
    /// Smoothed probability of the best class.
    pub score: f32,
    /// Smoothed top-k.
    pub top: Vec<Prediction>,
    /// Preprocess + inference for this frame, ms.
    pub latency_ms: f32,
    /// Capture to result, ms (includes time spent waiting in the queue).
    pub age_ms: f32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum EmitFormat {
    #[default]
    Text,
    Jsonl,
    Postcard,
}

pub trait Sink {
    fn emit(&mut self, r: &FrameResult) -> Result<()>;
    fn finish(&mut self) -> Result<()>;
}

/// A sink writing `format` to `out`.
pub fn sink_for<'a>(format: EmitFormat, out: Box<dyn Write + 'a>) -> Box<dyn Sink + 'a> {
    Box::new(WriterSink { format, out })
}

struct WriterSink<'a> {
    format: EmitFormat,
    out: Box<dyn Write + 'a>,
}

impl Sink for WriterSink<'_> {
    fn emit(&mut self, r: &FrameResult) -> Result<()> {
        self.write(r).map_err(RuntimeError::Output)
    }

    fn finish(&mut self) -> Result<()> {
        self.out.flush().map_err(RuntimeError::Output)
    }
}

impl WriterSink<'_> {
    fn write(&mut self, r: &FrameResult) -> std::io::Result<()> {
        match self.format {
            EmitFormat::Text => writeln!(self.out, "{}", text_line(r))?,
            EmitFormat::Jsonl => {
                serde_json::to_writer(&mut self.out, r).map_err(std::io::Error::other)?;
                self.out.write_all(b"\n")?;
            }
            EmitFormat::Postcard => {
                let bytes = postcard::to_stdvec(r).map_err(std::io::Error::other)?;
                let len = u32::try_from(bytes.len()).map_err(std::io::Error::other)?;
                self.out.write_all(&len.to_le_bytes())?;
                self.out.write_all(&bytes)?;
            }
        }
        // Flush per frame: a consumer reading a pipe wants each result now, not at exit.
        self.out.flush()
    }
}

pub fn text_line(r: &FrameResult) -> String {
    let name = r
        .name
        .as_deref()
        .map(|n| format!(" {n}"))
        .unwrap_or_default();
    format!(
        "frame {:>6}{name}  {:<32} {:.3}  ({:.1} ms)",
        r.seq, r.label, r.score, r.latency_ms
    )
}

/// Decodes a whole postcard stream written by the `postcard` sink.
pub fn read_postcard_stream(mut bytes: &[u8]) -> std::result::Result<Vec<FrameResult>, String> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (len, rest) = bytes.split_at_checked(4).ok_or("truncated length prefix")?;
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let (record, rest) = rest.split_at_checked(len).ok_or("truncated record")?;
        out.push(postcard::from_bytes(record).map_err(|e| e.to_string())?);
        bytes = rest;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(seq: u64) -> FrameResult {
        FrameResult {
            seq,
            name: Some("a.jpg".into()),
            label: "tiger cat".into(),
            index: Some(282),
            score: 0.5,
            top: vec![Prediction {
                index: 282,
                label: "tiger cat".into(),
                score: 0.5,
            }],
            latency_ms: 12.5,
            age_ms: 13.0,
        }
    }

    fn write_all(format: EmitFormat, frames: &[FrameResult]) -> Vec<u8> {
        let mut buf = Vec::new();
        {
            let mut sink = sink_for(format, Box::new(&mut buf));
            frames.iter().for_each(|f| sink.emit(f).unwrap());
            sink.finish().unwrap();
        }
        buf
    }

    #[test]
    fn postcard_stream_round_trips_and_rejects_truncation() {
        let frames = vec![sample(0), sample(7)];
        let bytes = write_all(EmitFormat::Postcard, &frames);
        assert_eq!(read_postcard_stream(&bytes).unwrap(), frames);
        assert!(read_postcard_stream(&bytes[..bytes.len() - 3]).is_err());
    }

    #[test]
    fn jsonl_is_one_object_per_line_and_text_names_the_class() {
        let bytes = write_all(EmitFormat::Jsonl, &[sample(1), sample(2)]);
        let text = String::from_utf8(bytes).unwrap();
        let lines: Vec<FrameResult> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines, [sample(1), sample(2)]);
        let t = String::from_utf8(write_all(EmitFormat::Text, &[sample(3)])).unwrap();
        assert!(
            t.contains("tiger cat") && t.contains("a.jpg") && t.starts_with("frame"),
            "{t}"
        );
    }
}
