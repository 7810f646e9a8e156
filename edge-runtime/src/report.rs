//! Benchmark reports: the JSON schema `edge-runtime bench --json` writes, merging reports from
//! several devices (`edge-runtime bench report`), and their Markdown table and PNG bar chart.
//!
//! The JSON field names are a public interface (other tools read them): add fields, never
//! rename. Every row field beyond the original schema has a serde default so older or
//! hand-trimmed reports still merge.

use std::path::{Path, PathBuf};

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::device::DeviceInfo;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot read benchmark report {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error(
        "{path} is not an edge-runtime bench report ({reason}); write one with `edge-runtime bench --model M.onnx --json FILE.json`"
    )]
    Parse { path: PathBuf, reason: String },
    #[error("cannot write {path}: {source} (check that the directory exists and is writable)")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}: no space left on the device: free some space or write the report to another disk")]
    NoSpace { path: PathBuf },
    #[error("cannot draw the plot {path}: {reason}")]
    Plot { path: PathBuf, reason: String },
    #[error("nothing to report: {0}")]
    Empty(String),
    #[error("the embedded plot font could not be loaded: {0}")]
    Font(String),
}

/// One `edge-runtime bench` run on one device: `{"device":{...},"results":[...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    pub device: DeviceInfo,
    pub results: Vec<BenchResult>,
}

/// One model × thread count (× int8 mode) measurement. Times in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchResult {
    /// The model file name.
    pub model: String,
    /// "fp32" or "int8", from the manifest.
    pub precision: String,
    pub threads: usize,
    /// Model load (parse + optimise + plan), once.
    pub load_ms: f64,
    /// The first inference after load (allocations, lazy init), not part of the percentiles.
    pub first_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
    pub min_ms: f64,
    /// End-to-end frames per second of one stream: 1000 / (preprocess_ms + mean_ms).
    pub fps: f64,
    /// Mean decode + resize + normalize time of one image.
    pub preprocess_ms: f64,
    /// Peak RSS of the measuring process (VmHWM); null where the OS does not tell.
    pub rss_peak_mb: Option<f64>,
    pub model_bytes: u64,
    /// For int8 models: how tract ran them ("native" or "weights"); null for fp32.
    #[serde(default)]
    pub int8_mode: Option<String>,
    #[serde(default)]
    pub backbone: Option<String>,
    #[serde(default)]
    pub max_ms: Option<f64>,
    #[serde(default)]
    pub iterations: Option<usize>,
    #[serde(default)]
    pub warmup: Option<usize>,
    /// Share of end-to-end time spent in preprocessing, 0..1.
    #[serde(default)]
    pub preprocess_share: Option<f64>,
    /// What was preprocessed: an image file name or the synthetic default.
    #[serde(default)]
    pub image: Option<String>,
    /// The engine that ran the inferences: "tract" or "ort" (null in reports from before
    /// `--engine` existed: tract).
    #[serde(default)]
    pub engine: Option<String>,
}

impl BenchResult {
    /// The engine name; reports written before `--engine` existed measured tract.
    pub fn engine(&self) -> &str {
        self.engine.as_deref().unwrap_or("tract")
    }

    /// "model (precision[, engine][, int8 mode])" — what the row measured, without the thread
    /// count; the engine is named when it is not the default (tract).
    pub fn variant(&self) -> String {
        let engine = match self.engine() {
            "tract" => String::new(),
            other => format!(", {other}"),
        };
        match &self.int8_mode {
            Some(mode) => format!("{} ({}{engine}, {mode})", self.model, self.precision),
            None => format!("{} ({}{engine})", self.model, self.precision),
        }
    }
}

/// Several devices' reports in one: `edge-runtime bench report --json merged.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergedReport {
    pub devices: Vec<MergedDevice>,
    /// Rows in device order; `device` is the label of an entry in `devices`.
    pub results: Vec<MergedRow>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergedDevice {
    /// Unique within the merge: the board or CPU name, with the report's file name added when
    /// two reports would otherwise share a label.
    pub label: String,
    /// The report file it came from.
    pub source: String,
    pub device: DeviceInfo,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergedRow {
    pub device: String,
    #[serde(flatten)]
    pub result: BenchResult,
}

impl BenchReport {
    pub fn read(path: &Path) -> Result<Self, ReportError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ReportError::Read { path: path.to_path_buf(), source })?;
        serde_json::from_str(&text).map_err(|e| ReportError::Parse { path: path.to_path_buf(), reason: e.to_string() })
    }

    pub fn to_json(&self) -> String {
        to_json_pretty(self)
    }

    pub fn write_json(&self, path: &Path) -> Result<(), ReportError> {
        write_atomic(path, self.to_json().as_bytes())
    }
}

fn to_json_pretty<T: Serialize>(value: &T) -> String {
    // Only plain structs, strings and finite-or-null numbers: serialization cannot fail.
    let mut text = serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    text.push('\n');
    text
}

impl MergedReport {
    /// Merges reports (with the names of the files they came from) into one.
    pub fn merge(reports: Vec<(String, BenchReport)>) -> Result<Self, ReportError> {
        if reports.is_empty() {
            return Err(ReportError::Empty("no reports given".into()));
        }
        // Reports from the very same device (e.g. an fp32 run and a later int8 run) become one
        // device; different devices that would share a label get their file name added.
        let mut distinct: Vec<&DeviceInfo> = Vec::new();
        for (_, r) in &reports {
            if !distinct.contains(&&r.device) {
                distinct.push(&r.device);
            }
        }
        let labels: Vec<String> = reports.iter().map(|(_, r)| r.device.label()).collect();
        let clashes = |label: &str| distinct.iter().filter(|d| d.label() == label).count() > 1;
        let labels: Vec<String> = reports
            .iter()
            .zip(labels)
            .map(
                |((source, _), label)| if clashes(&label) { format!("{label} [{}]", file_stem(source)) } else { label },
            )
            .collect();
        let mut devices: Vec<MergedDevice> = Vec::new();
        let mut results = Vec::new();
        for ((source, report), label) in reports.into_iter().zip(labels) {
            results.extend(report.results.into_iter().map(|result| MergedRow { device: label.clone(), result }));
            match devices.iter_mut().find(|d| d.device == report.device) {
                Some(known) => {
                    known.source = format!("{}, {source}", known.source);
                    known.device.keep_worst_thermal(&report.device);
                }
                None => devices.push(MergedDevice { label, source, device: report.device }),
            }
        }
        if results.is_empty() {
            return Err(ReportError::Empty("the reports have no result rows".into()));
        }
        Ok(MergedReport { devices, results })
    }

    /// Reads and merges report files.
    pub fn from_files(paths: &[PathBuf]) -> Result<Self, ReportError> {
        let reports = paths
            .iter()
            .map(|p| Ok((p.display().to_string(), BenchReport::read(p)?)))
            .collect::<Result<Vec<_>, ReportError>>()?;
        Self::merge(reports)
    }

    pub fn write_json(&self, path: &Path) -> Result<(), ReportError> {
        write_atomic(path, to_json_pretty(self).as_bytes())
    }

    /// Markdown: the devices, one full table (device × model × threads), and p50 side by side.
    pub fn to_markdown(&self) -> String {
        let mut md = String::from("# perch edge-runtime benchmark\n\n## Devices\n\n");
        md.push_str(
            "| device | CPU | cores | arch | OS | kernel | memory | perch | tract | build | SIMD (compiled / CPU) |\n",
        );
        md.push_str("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
        for d in &self.devices {
            let i = &d.device;
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} (opt-level {}{}) | {} / {} |\n",
                cell(&d.label),
                cell(&i.cpu_model),
                i.cores,
                cell(&i.arch),
                cell(&i.os),
                cell(i.kernel.as_deref().unwrap_or("?")),
                i.memory_mb.map_or("?".to_string(), |m| format!("{:.1} GiB", m as f64 / 1024.0)),
                cell(&i.perch_version),
                cell(&i.tract_version),
                cell(&i.build_profile),
                cell(&i.opt_level),
                if i.debug_assertions { ", debug assertions" } else { "" },
                list_or_dash(&i.target_features),
                list_or_dash(&i.cpu_features),
            ));
        }
        // SoC temperature and Raspberry Pi throttling, where the device recorded them.
        let thermal: Vec<String> = self
            .devices
            .iter()
            .filter_map(|d| Some(format!("- {}: {}\n", d.label, d.device.thermal_note()?)))
            .collect();
        if !thermal.is_empty() {
            md.push_str("\nThermal state before and after the run:\n\n");
            md.push_str(&thermal.concat());
        }
        md.push_str("\n## Results\n\nLatency is inference only, over the measured iterations after warm-up. ");
        md.push_str("Preprocessing (decode + resize + normalize) is measured separately; ");
        md.push_str("fps = 1000 / (preprocess + mean inference), one stream. Peak RSS is per measuring process.\n\n");
        md.push_str("| device | model | engine | precision | int8 mode | threads | load ms | first ms | p50 ms | p90 ms | p99 ms | mean ms | min ms | preprocess ms | preprocess share | fps | peak RSS MB | model MB |\n");
        md.push_str("| --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
        for row in &self.results {
            let r = &row.result;
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {:.1} | {:.1} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {:.1} | {} | {:.1} |\n",
                cell(&row.device),
                cell(&r.model),
                cell(r.engine()),
                cell(&r.precision),
                r.int8_mode.as_deref().unwrap_or("-"),
                r.threads,
                r.load_ms,
                r.first_ms,
                r.p50_ms,
                r.p90_ms,
                r.p99_ms,
                r.mean_ms,
                r.min_ms,
                r.preprocess_ms,
                r.preprocess_share.map_or("-".to_string(), |s| format!("{:.1} %", s * 100.0)),
                r.fps,
                r.rss_peak_mb.map_or("-".to_string(), |m| format!("{m:.0}")),
                r.model_bytes as f64 / 1e6,
            ));
        }
        md.push_str(&self.p50_pivot());
        md
    }

    /// p50 per (model variant, threads) with one column per device: the cross-device comparison.
    fn p50_pivot(&self) -> String {
        let mut keys: Vec<(String, usize)> = Vec::new();
        for row in &self.results {
            let key = (row.result.variant(), row.result.threads);
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        let mut md = String::from("\n## p50 latency (ms) by device\n\n| model | threads |");
        for d in &self.devices {
            md.push_str(&format!(" {} |", cell(&d.label)));
        }
        md.push_str("\n| --- | ---: |");
        md.push_str(&" ---: |".repeat(self.devices.len()));
        md.push('\n');
        for (variant, threads) in &keys {
            md.push_str(&format!("| {} | {threads} |", cell(variant)));
            for d in &self.devices {
                let hit = self
                    .results
                    .iter()
                    .find(|r| r.device == d.label && r.result.threads == *threads && r.result.variant() == *variant);
                md.push_str(&hit.map_or(" - |".to_string(), |r| format!(" {:.2} |", r.result.p50_ms)));
            }
            md.push('\n');
        }
        md
    }

    pub fn write_markdown(&self, path: &Path) -> Result<(), ReportError> {
        write_atomic(path, self.to_markdown().as_bytes())
    }

    /// Horizontal bar chart: one bar per device × model × threads (p50, whisker to p90),
    /// rows of the same model and thread count next to each other, colour = device.
    pub fn write_plot(&self, path: &Path) -> Result<(), ReportError> {
        common::plot::register_font().map_err(ReportError::Font)?;
        if self.results.is_empty() {
            return Err(ReportError::Empty(format!("no result rows to plot into {}", path.display())));
        }
        let mut rows: Vec<(usize, &MergedRow)> = self
            .results
            .iter()
            .map(|r| (self.devices.iter().position(|d| d.label == r.device).unwrap_or(0), r))
            .collect();
        // Stable: keeps the devices' order inside each (model, threads) group.
        rows.sort_by(|a, b| {
            (a.1.result.variant(), a.1.result.threads).cmp(&(b.1.result.variant(), b.1.result.threads))
        });
        let labels: Vec<String> =
            rows.iter().map(|(_, r)| format!("{} · {} thr", r.result.variant(), r.result.threads)).collect();
        let x_max = rows.iter().map(|(_, r)| r.result.p90_ms.max(r.result.p50_ms)).fold(0.0, f64::max).max(1e-3) * 1.2;
        let label_width = labels.iter().map(|l| l.chars().count()).max().unwrap_or(10) as u32 * 8 + 20;
        // Empty segments above the bars hold the legend; bars run top-down in `rows` order.
        let n = rows.len();
        let legend_rows = (self.devices.len() * 22).div_ceil(34);
        let slot = |i: usize| n - 1 - i;
        let height = 140 + 34 * (n + legend_rows) as u32;
        let tmp = common::AtomicFile::create(path).map_err(|source| ReportError::write(path, source))?;
        let plot_err =
            |e: &dyn std::fmt::Display| ReportError::Plot { path: path.to_path_buf(), reason: e.to_string() };
        {
            let root = BitMapBackend::new(tmp.temp_path(), (label_width + 760, height)).into_drawing_area();
            root.fill(&WHITE).map_err(|e| plot_err(&e))?;
            let mut chart = ChartBuilder::on(&root)
                .caption("edge-runtime inference latency: p50 (bar), p90 (whisker)", ("sans-serif", 22))
                .margin(16)
                .x_label_area_size(44)
                .y_label_area_size(label_width)
                .build_cartesian_2d(0.0..x_max, (0..n + legend_rows - 1).into_segmented())
                .map_err(|e| plot_err(&e))?;
            chart
                .configure_mesh()
                .disable_y_mesh()
                .y_labels(n + legend_rows)
                .y_label_formatter(&|v| match v {
                    SegmentValue::CenterOf(j) if *j < n => labels[slot(*j)].clone(),
                    _ => String::new(),
                })
                .x_desc("milliseconds per image (inference only)")
                .label_style(("sans-serif", 14))
                .draw()
                .map_err(|e| plot_err(&e))?;
            for (d, device) in self.devices.iter().enumerate() {
                let color = Palette99::pick(d).to_rgba();
                let mine: Vec<(usize, &MergedRow)> =
                    rows.iter().enumerate().filter(|(_, (di, _))| *di == d).map(|(i, (_, r))| (i, *r)).collect();
                chart
                    .draw_series(mine.iter().map(|(i, r)| {
                        let mut bar = Rectangle::new(
                            [
                                (0.0, SegmentValue::Exact(slot(*i))),
                                (r.result.p50_ms, SegmentValue::Exact(slot(*i) + 1)),
                            ],
                            color.filled(),
                        );
                        bar.set_margin(5, 5, 0, 0);
                        bar
                    }))
                    .map_err(|e| plot_err(&e))?
                    .label(device.label.clone())
                    .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled()));
                chart
                    .draw_series(mine.iter().map(|(i, r)| {
                        PathElement::new(
                            [
                                (r.result.p50_ms, SegmentValue::CenterOf(slot(*i))),
                                (r.result.p90_ms, SegmentValue::CenterOf(slot(*i))),
                            ],
                            BLACK.stroke_width(2),
                        )
                    }))
                    .map_err(|e| plot_err(&e))?;
                chart
                    .draw_series(mine.iter().map(|(i, r)| {
                        let at = r.result.p90_ms.max(r.result.p50_ms) + x_max * 0.01;
                        Text::new(
                            format!("{:.1}", r.result.p50_ms),
                            (at, SegmentValue::CenterOf(slot(*i))),
                            ("sans-serif", 13),
                        )
                    }))
                    .map_err(|e| plot_err(&e))?;
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.9))
                .border_style(BLACK)
                .label_font(("sans-serif", 14))
                .draw()
                .map_err(|e| plot_err(&e))?;
            root.present().map_err(|e| plot_err(&e))?;
        }
        tmp.commit().map_err(|source| ReportError::write(path, source))?;
        Ok(())
    }
}

impl From<BenchReport> for MergedReport {
    /// One device's report in the merged shape (for its Markdown and plot).
    fn from(report: BenchReport) -> Self {
        let label = report.device.label();
        MergedReport {
            results: report.results.into_iter().map(|result| MergedRow { device: label.clone(), result }).collect(),
            devices: vec![MergedDevice { label, source: "this run".into(), device: report.device }],
        }
    }
}

impl ReportError {
    /// A failed write of `path`; a full disk (ENOSPC) gets its own message.
    fn write(path: &Path, source: std::io::Error) -> Self {
        match source.kind() {
            std::io::ErrorKind::StorageFull => ReportError::NoSpace { path: path.to_path_buf() },
            _ => ReportError::Write { path: path.to_path_buf(), source },
        }
    }
}

/// Writes a report file atomically (`common::write_atomic`): a crash never leaves a
/// half-written report where a good one was.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    common::write_atomic(path, bytes).map_err(|source| ReportError::write(path, source))
}

fn file_stem(path: &str) -> String {
    Path::new(path).file_stem().map_or_else(|| path.to_string(), |s| s.to_string_lossy().into_owned())
}

/// A Markdown table cell: pipes would split the cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

fn list_or_dash(items: &[String]) -> String {
    if items.is_empty() { "-".to_string() } else { items.join(" ") }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn row(model: &str, threads: usize, p50: f64) -> BenchResult {
        BenchResult {
            model: model.into(),
            precision: "fp32".into(),
            threads,
            load_ms: 120.0,
            first_ms: 30.0,
            p50_ms: p50,
            p90_ms: p50 * 1.1,
            p99_ms: p50 * 1.3,
            mean_ms: p50 * 1.05,
            min_ms: p50 * 0.9,
            fps: 1000.0 / (p50 * 1.05 + 2.0),
            preprocess_ms: 2.0,
            rss_peak_mb: Some(80.0),
            model_bytes: 14_000_000,
            int8_mode: None,
            backbone: Some("mobilenetv2".into()),
            max_ms: Some(p50 * 2.0),
            iterations: Some(200),
            warmup: Some(20),
            preprocess_share: Some(2.0 / (p50 * 1.05 + 2.0)),
            image: None,
            engine: None,
        }
    }

    fn device(cpu: &str, board: Option<&str>) -> DeviceInfo {
        DeviceInfo { cpu_model: cpu.into(), cores: 4, board: board.map(String::from), ..DeviceInfo::default() }
    }

    #[test]
    fn different_devices_with_the_same_label_get_distinct_labels() {
        let a = BenchReport { device: device("Cortex-A72", None), results: vec![row("m.onnx", 1, 40.0)] };
        let mut b = a.clone();
        b.device.hostname = Some("pi-b".into());
        let merged = MergedReport::merge(vec![("pi-a.json".into(), a), ("pi-b.json".into(), b)]).unwrap();
        assert_eq!(merged.devices[0].label, "Cortex-A72 (4 cores) [pi-a]");
        assert_eq!(merged.devices[1].label, "Cortex-A72 (4 cores) [pi-b]");
        assert_eq!(merged.results[1].device, merged.devices[1].label);
    }

    #[test]
    fn engine_rows_are_told_apart_and_old_reports_read_as_tract() {
        let tract = row("m.onnx", 1, 30.0);
        let ort = BenchResult { engine: Some("ort".into()), p50_ms: 10.0, ..tract.clone() };
        assert_eq!((tract.engine(), tract.variant()), ("tract", "m.onnx (fp32)".to_string()));
        assert_eq!((ort.engine(), ort.variant()), ("ort", "m.onnx (fp32, ort)".to_string()));
        let mut json = serde_json::to_value(&tract).unwrap();
        json.as_object_mut().unwrap().remove("engine");
        let old: BenchResult = serde_json::from_value(json).unwrap();
        assert_eq!(old.engine(), "tract");
        let report = BenchReport { device: device("EPYC", None), results: vec![tract, ort] };
        let md = MergedReport::from(report).to_markdown();
        assert!(md.contains("| m.onnx | tract | fp32 |") && md.contains("| m.onnx | ort | fp32 |"), "{md}");
        assert!(md.contains("| m.onnx (fp32, ort) | 1 | 10.00 |"), "{md}");
    }

    #[test]
    fn runs_on_the_same_device_become_one_device() {
        let fp32 = BenchReport { device: device("EPYC", None), results: vec![row("m.onnx", 1, 5.0)] };
        let mut int8 = BenchReport { device: device("EPYC", None), results: vec![row("m-int8.onnx", 1, 3.0)] };
        int8.results[0].int8_mode = Some("native".into());
        let merged = MergedReport::merge(vec![("fp32.json".into(), fp32), ("int8.json".into(), int8)]).unwrap();
        assert_eq!(merged.devices.len(), 1);
        assert_eq!(merged.devices[0].source, "fp32.json, int8.json");
        assert!(merged.results.iter().all(|r| r.device == "EPYC (4 cores)"));
        assert_eq!(merged.results.len(), 2);
    }

    #[test]
    fn the_markdown_says_when_a_device_was_throttled() {
        let state = |raw: &str| crate::device::ThermalState {
            soc_temp_c: Some(80.5),
            zones: vec![],
            throttled: crate::device::parse_throttled(raw),
        };
        let pc = BenchReport { device: device("EPYC", None), results: vec![row("m.onnx", 1, 5.0)] };
        let mut pi = BenchReport { device: device("Cortex-A72", Some("Pi 4")), results: vec![row("m.onnx", 1, 60.0)] };
        pi.device.thermal_before = Some(state("throttled=0x0"));
        let md = MergedReport::merge(vec![("a.json".into(), pc), ("b.json".into(), pi.clone())]).unwrap().to_markdown();
        assert!(md.contains("- Pi 4: SoC 80.5 °C before, ? after; not throttled"), "{md}");
        assert!(!md.contains("EPYC (4 cores): "), "no thermal line without a recording:\n{md}");
        // A later run on the same Pi that was throttled: still one device, and the warning shows.
        let mut hot = pi.clone();
        hot.device.thermal_after = Some(state("throttled=0x50005"));
        let merged = MergedReport::merge(vec![("b.json".into(), pi), ("c.json".into(), hot)]).unwrap();
        assert_eq!(merged.devices.len(), 1);
        let md = merged.to_markdown();
        assert!(
            md.contains(
                "- Pi 4: SoC 80.5 °C before, 80.5 °C after; **throttled** (at the end: under-voltage, throttled"
            ),
            "{md}"
        );
    }

    #[test]
    fn merging_nothing_is_an_error() {
        assert!(matches!(MergedReport::merge(vec![]), Err(ReportError::Empty(_))));
        let empty = BenchReport { device: device("x", None), results: vec![] };
        assert!(matches!(MergedReport::merge(vec![("e.json".into(), empty)]), Err(ReportError::Empty(_))));
    }

    #[test]
    fn pivot_has_one_column_per_device_and_dashes_for_missing_rows() {
        let a =
            BenchReport { device: device("EPYC", None), results: vec![row("m.onnx", 1, 5.0), row("m.onnx", 2, 3.0)] };
        let b = BenchReport {
            device: device("Cortex-A72", Some("Raspberry Pi 4 Model B Rev 1.4")),
            results: vec![row("m.onnx", 1, 60.0)],
        };
        let md = MergedReport::merge(vec![("a.json".into(), a), ("b.json".into(), b)]).unwrap().to_markdown();
        assert!(md.contains("| model | threads | EPYC (4 cores) | Raspberry Pi 4 Model B Rev 1.4 |"), "{md}");
        assert!(md.contains("| m.onnx (fp32) | 1 | 5.00 | 60.00 |"), "{md}");
        assert!(md.contains("| m.onnx (fp32) | 2 | 3.00 | - |"), "{md}");
    }

    #[test]
    fn plot_is_a_png_and_no_temp_file_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let a =
            BenchReport { device: device("EPYC", None), results: vec![row("m.onnx", 1, 5.0), row("m.onnx", 2, 3.0)] };
        let path = dir.path().join("latency.png");
        MergedReport::from(a).write_plot(&path).unwrap();
        let img = image::open(&path).unwrap();
        assert!(img.width() > 700 && img.height() > 150);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "only the plot remains");
    }

    #[test]
    fn unreadable_and_foreign_json_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.json");
        std::fs::write(&path, "{\"hello\": 1}").unwrap();
        let err = BenchReport::read(&path).unwrap_err().to_string();
        assert!(err.contains("other.json") && err.contains("edge-runtime bench"), "{err}");
        let err = BenchReport::read(&dir.path().join("missing.json")).unwrap_err().to_string();
        assert!(err.contains("missing.json"), "{err}");
    }
}
