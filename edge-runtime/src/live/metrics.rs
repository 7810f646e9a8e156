//! `/metrics`: the Prometheus text exposition format (version 0.0.4), written by hand: a few
//! counters, gauges and one histogram do not need a metrics crate.

use std::fmt::Write;

/// Upper bounds of the inference latency histogram, seconds (a Pi 4 runs MobileNetV2 in
/// ~50-100 ms, an x86 core in ~10-20 ms).
pub const LATENCY_BUCKETS_S: [f64; 11] = [0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0, 2.0];

/// A cumulative histogram in the Prometheus sense.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    /// Observations at or below each bound of [`LATENCY_BUCKETS_S`] (not yet cumulative).
    counts: [u64; LATENCY_BUCKETS_S.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    pub fn observe(&mut self, seconds: f64) {
        if let Some(i) = LATENCY_BUCKETS_S.iter().position(|b| seconds <= *b) {
            self.counts[i] += 1;
        }
        self.count += 1;
        self.sum += seconds;
    }

    pub fn count(&self) -> u64 {
        self.count
    }
}

/// Builds one exposition: metric families in order, each with HELP and TYPE lines.
#[derive(Default)]
pub struct Exposition(String);

impl Exposition {
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {}", help.replace('\\', "\\\\").replace('\n', "\\n"));
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.header(name, "counter", help);
        let _ = writeln!(self.0, "{name} {value}");
    }

    pub fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.header(name, "gauge", help);
        let _ = writeln!(self.0, "{name} {}", number(value));
    }

    /// A gauge with value 1 whose labels carry the information (`perch_model_info`).
    pub fn info(&mut self, name: &str, help: &str, labels: &[(&str, &str)]) {
        self.header(name, "gauge", help);
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape_label(v))).collect();
        let _ = writeln!(self.0, "{name}{{{}}} 1", labels.join(","));
    }

    pub fn histogram(&mut self, name: &str, help: &str, h: &Histogram) {
        self.header(name, "histogram", help);
        let mut cumulative = 0;
        for (bound, n) in LATENCY_BUCKETS_S.iter().zip(h.counts) {
            cumulative += n;
            let _ = writeln!(self.0, "{name}_bucket{{le=\"{}\"}} {cumulative}", number(*bound));
        }
        let _ = writeln!(self.0, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
        let _ = writeln!(self.0, "{name}_sum {}", number(h.sum));
        let _ = writeln!(self.0, "{name}_count {}", h.count);
    }

    pub fn finish(self) -> String {
        self.0
    }
}

/// Label values escape backslash, double quote and newline.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Go-style float text: `NaN`, `+Inf`, `-Inf`, else Rust's shortest round-trip form.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_end_at_the_count() {
        let mut h = Histogram::default();
        for s in [0.004, 0.012, 0.012, 0.3, 5.0] {
            h.observe(s);
        }
        let mut e = Exposition::default();
        e.histogram("lat", "help", &h);
        let text = e.finish();
        assert!(text.contains("lat_bucket{le=\"0.005\"} 1\n"), "{text}");
        assert!(text.contains("lat_bucket{le=\"0.02\"} 3\n"), "{text}");
        assert!(text.contains("lat_bucket{le=\"0.5\"} 4\n"), "{text}");
        assert!(text.contains("lat_bucket{le=\"2\"} 4\n"), "{text}");
        assert!(text.contains("lat_bucket{le=\"+Inf\"} 5\nlat_sum 5.328\nlat_count 5\n"), "{text}");
    }

    #[test]
    fn info_labels_are_escaped() {
        let mut e = Exposition::default();
        e.info("m_info", "model", &[("name", "a \"b\"\\c\nd")]);
        assert!(e.finish().ends_with("m_info{name=\"a \\\"b\\\"\\\\c\\nd\"} 1\n"));
    }
}
