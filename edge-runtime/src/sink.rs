//! Where streaming results go: `text` (one human line per frame), `jsonl` (one JSON object
//! per frame) or `postcard` (binary frames for another program).
//!
//! Postcard stream format: a sequence of records, each a `u32` little-endian byte length
//! followed by that many bytes of `postcard`-encoded [`FrameResult`] (field order as declared
//! below). [`read_postcard_stream`] decodes it.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{Result, RuntimeError};
use models::Prediction;

/// The label printed and recorded when the (smoothed) best score is below `--threshold`.
pub const UNKNOWN: &str = "unknown";

/// One classified frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameResult {
    /// Frame number from the source (0-based, counts dropped and skipped frames too).
    pub seq: u64,
    /// When the frame was captured: RFC 3339 UTC wall-clock time, milliseconds
    /// (`2026-12-01T21:50:03.123Z`).
    pub ts: String,
    /// The source it came from, as given to `--source` (`libcamera:0`, `dir:photos`, a URL).
    pub source: String,
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
    /// sha256 of the model file that classified this frame: it changes when `run` reloads a
    /// replaced model. Last, so postcard records of older versions are a prefix of these.
    #[serde(default)]
    pub model_sha256: String,
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

/// Several sinks fed the same results (stdout and `--mqtt`). Every sink is finished even when
/// one fails; the first error is returned.
pub struct Tee<'a>(pub Vec<Box<dyn Sink + 'a>>);

impl Sink for Tee<'_> {
    fn emit(&mut self, r: &FrameResult) -> Result<()> {
        self.0.iter_mut().try_for_each(|s| s.emit(r))
    }

    fn finish(&mut self) -> Result<()> {
        let mut first = Ok(());
        for s in &mut self.0 {
            if let Err(e) = s.finish()
                && first.is_ok()
            {
                first = Err(e);
            }
        }
        first
    }
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
    let name = r.name.as_deref().map(|n| format!(" {n}")).unwrap_or_default();
    format!("frame {:>6} {}{name}  {:<32} {:.3}  ({:.1} ms)", r.seq, r.ts, r.label, r.score, r.latency_ms)
}

/// RFC 3339 UTC with milliseconds (`2026-12-01T21:50:03.123Z`) of a wall-clock time; times
/// before 1970 are written as 1970-01-01T00:00:00.000Z (a clock that far off is unset).
pub fn rfc3339_utc(t: SystemTime) -> String {
    let ms = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let (secs, ms) = ((ms / 1000) as u64, (ms % 1000) as u32);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Proleptic Gregorian (year, month, day) of a count of days since 1970-01-01
/// (Howard Hinnant's `civil_from_days`, chrono-compatible-algorithms).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
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
            ts: "2026-12-01T21:50:03.123Z".into(),
            source: "libcamera:0".into(),
            name: Some("a.jpg".into()),
            label: "tiger cat".into(),
            index: Some(282),
            score: 0.5,
            top: vec![Prediction { index: 282, label: "tiger cat".into(), score: 0.5 }],
            latency_ms: 12.5,
            age_ms: 13.0,
            model_sha256: "ab".repeat(32),
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
    fn rfc3339_matches_known_instants() {
        use std::time::Duration;
        let at = |ms: u64| rfc3339_utc(UNIX_EPOCH + Duration::from_millis(ms));
        assert_eq!(at(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400_000), "2000-02-29T00:00:00.000Z"); // leap day of a /400 year
        assert_eq!(at(4_107_542_399_999), "2100-02-28T23:59:59.999Z"); // 2100 is not a leap year
        assert_eq!(at(4_107_542_400_000), "2100-03-01T00:00:00.000Z");
        assert_eq!(at(1_796_161_803_123), "2026-12-01T21:50:03.123Z");
        assert_eq!(at(1_798_761_599_000), "2026-12-31T23:59:59.000Z");
        assert_eq!(rfc3339_utc(UNIX_EPOCH - Duration::from_secs(5)), "1970-01-01T00:00:00.000Z");
        // Every day boundary over 600 years agrees with a day-by-day calendar walk.
        let (mut y, mut m, mut d) = (1970i64, 1u32, 1u32);
        for day in 0..(600 * 366) {
            assert_eq!(civil_from_days(day), (y, m, d), "day {day}");
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let len = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m as usize - 1];
            d += 1;
            if d > len {
                (d, m) = (1, m + 1);
                if m > 12 {
                    (m, y) = (1, y + 1);
                }
            }
        }
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
        let lines: Vec<FrameResult> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines, [sample(1), sample(2)]);
        let t = String::from_utf8(write_all(EmitFormat::Text, &[sample(3)])).unwrap();
        assert!(
            t.contains("tiger cat") && t.contains("a.jpg") && t.contains("21:50:03.123Z") && t.starts_with("frame"),
            "{t}"
        );
    }
}
