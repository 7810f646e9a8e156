//! What a benchmark ran on: the device block of an `edge-runtime bench` report. Latency
//! numbers are meaningless without it, and `bench report` uses it to tell devices apart.
//!
//! Everything is read from the OS at run time (Linux `/proc` and `/sys` where present) or
//! from facts fixed at build time (versions, profile, target features); fields the OS does
//! not expose are `None` rather than guesses.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// The tract-onnx version linked into this binary (from Cargo.lock, see build.rs).
pub const TRACT_VERSION: &str = env!("PERCH_TRACT_VERSION");

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
// Reports written by other perch versions or hand-edited ones may lack fields: merge them anyway.
#[serde(default)]
pub struct DeviceInfo {
    /// CPU model name, e.g. "AMD EPYC 7B13" or "Cortex-A72".
    pub cpu_model: String,
    /// Logical cores the process may use.
    pub cores: usize,
    /// Target architecture, e.g. "x86_64", "aarch64".
    pub arch: String,
    /// OS name and version, e.g. "Debian GNU/Linux 12 (bookworm)".
    pub os: String,
    /// Kernel release, e.g. "6.1.0-18-arm64".
    pub kernel: Option<String>,
    /// Board or machine name where the OS exposes it (device tree on a Raspberry Pi, DMI on PCs).
    pub board: Option<String>,
    pub hostname: Option<String>,
    pub memory_mb: Option<u64>,
    pub perch_version: String,
    pub tract_version: String,
    /// Cargo profile the binary was built with ("release", "deploy", "debug", ...).
    pub build_profile: String,
    pub opt_level: String,
    pub debug_assertions: bool,
    /// SIMD features the compiler was allowed to assume everywhere (`-C target-feature`).
    pub target_features: Vec<String>,
    /// SIMD features the CPU has at run time (tract picks its kernels from these).
    pub cpu_features: Vec<String>,
}

impl DeviceInfo {
    /// Facts about the machine this process runs on.
    pub fn detect() -> Self {
        let cpuinfo = read_trimmed(Path::new("/proc/cpuinfo")).unwrap_or_default();
        DeviceInfo {
            cpu_model: cpu_model(&cpuinfo).unwrap_or_else(|| std::env::consts::ARCH.to_string()),
            cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            arch: std::env::consts::ARCH.to_string(),
            os: os_name(),
            kernel: read_trimmed(Path::new("/proc/sys/kernel/osrelease")),
            board: board_name(),
            hostname: read_trimmed(Path::new("/proc/sys/kernel/hostname"))
                .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty())),
            memory_mb: read_trimmed(Path::new("/proc/meminfo")).and_then(|m| meminfo_kb(&m, "MemTotal")).map(|kb| kb / 1024),
            perch_version: models::PERCH_VERSION.to_string(),
            tract_version: TRACT_VERSION.to_string(),
            build_profile: env!("PERCH_CARGO_PROFILE").to_string(),
            opt_level: env!("PERCH_OPT_LEVEL").to_string(),
            debug_assertions: cfg!(debug_assertions),
            target_features: target_features(),
            cpu_features: cpu_features(),
        }
    }

    /// Short human name for tables and plot legends: the board if known, else the CPU.
    pub fn label(&self) -> String {
        match &self.board {
            Some(board) if !board.is_empty() => board.clone(),
            _ if !self.cpu_model.is_empty() => format!("{} ({} cores)", self.cpu_model, self.cores),
            _ => "unknown device".to_string(),
        }
    }
}

/// Reads a small text file, trimmed; device-tree strings end in NUL, which is trimmed too.
fn read_trimmed(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let text = text.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    (!text.is_empty()).then(|| text.to_string())
}

/// The CPU name from /proc/cpuinfo: `model name` on x86 and newer arm64 kernels; ARM boards
/// often only have `Hardware` / `Model`, or just the `CPU part` number.
fn cpu_model(cpuinfo: &str) -> Option<String> {
    for key in ["model name", "Hardware", "Model", "cpu model", "Processor", "uarch"] {
        if let Some(value) = cpuinfo_field(cpuinfo, key) {
            return Some(value);
        }
    }
    cpuinfo_field(cpuinfo, "CPU part").map(|part| arm_core_name(&part).map_or_else(|| format!("ARM CPU part {part}"), str::to_string))
}

fn cpuinfo_field(cpuinfo: &str, key: &str) -> Option<String> {
    cpuinfo.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k.trim() == key && !v.trim().is_empty()).then(|| v.trim().to_string())
    })
}

/// The ARM cores perch's target boards use (Raspberry Pi 3/4/5, Jetson, i.MX8, RK3588).
fn arm_core_name(part: &str) -> Option<&'static str> {
    Some(match part.to_ascii_lowercase().as_str() {
        "0xd03" => "Cortex-A53",
        "0xd04" => "Cortex-A35",
        "0xd05" => "Cortex-A55",
        "0xd07" => "Cortex-A57",
        "0xd08" => "Cortex-A72",
        "0xd09" => "Cortex-A73",
        "0xd0b" => "Cortex-A76",
        "0xd0c" => "Neoverse-N1",
        "0xd40" => "Neoverse-V1",
        "0xd49" => "Neoverse-N2",
        _ => return None,
    })
}

fn os_name() -> String {
    read_trimmed(Path::new("/etc/os-release"))
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap_or_else(|| std::env::consts::OS.to_string())
}

/// Board name: device tree (Raspberry Pi, Jetson, most ARM SBCs), else DMI (PCs, servers).
fn board_name() -> Option<String> {
    let device_tree = ["/proc/device-tree/model", "/sys/firmware/devicetree/base/model"];
    if let Some(model) = device_tree.iter().find_map(|p| read_trimmed(Path::new(p))) {
        return Some(model);
    }
    let vendor = read_trimmed(Path::new("/sys/class/dmi/id/sys_vendor"));
    let product = read_trimmed(Path::new("/sys/class/dmi/id/product_name"))?;
    Some(match vendor {
        Some(v) if !product.starts_with(&v) => format!("{v} {product}"),
        _ => product,
    })
}

/// A `/proc/meminfo`-style field in kB (`VmHWM:   12345 kB`).
pub(crate) fn meminfo_kb(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        if k.trim() != key {
            return None;
        }
        v.split_whitespace().next()?.parse().ok()
    })
}

/// Peak resident set size of this process in MiB (VmHWM), Linux only. It is a per-process
/// high-water mark: it never goes down, so it covers everything the process did so far.
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    meminfo_kb(&status, "VmHWM").map(|kb| kb as f64 / 1024.0)
}

fn target_features() -> Vec<String> {
    let mut on = Vec::new();
    macro_rules! check {
        ($($f:tt),*) => { $( if cfg!(target_feature = $f) { on.push($f.to_string()); } )* };
    }
    check!("sse2", "sse4.1", "sse4.2", "avx", "avx2", "fma", "f16c", "avx512f", "neon", "fp16", "dotprod", "i8mm", "sve");
    on
}

fn cpu_features() -> Vec<String> {
    let mut on: Vec<String> = Vec::new();
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        macro_rules! check {
            ($($f:tt),*) => { $( if std::arch::is_x86_feature_detected!($f) { on.push($f.to_string()); } )* };
        }
        check!("sse2", "sse4.1", "sse4.2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512vnni");
    }
    #[cfg(target_arch = "aarch64")]
    {
        macro_rules! check {
            ($($f:tt),*) => { $( if std::arch::is_aarch64_feature_detected!($f) { on.push($f.to_string()); } )* };
        }
        check!("neon", "fp16", "dotprod", "i8mm", "sve");
    }
    on
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_names_come_from_x86_and_arm_cpuinfo() {
        let x86 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n";
        assert_eq!(cpu_model(x86).as_deref(), Some("AMD EPYC 7B13"));
        // Raspberry Pi 4 (64-bit kernel): no model name, only the part number.
        let pi = "processor\t: 0\nBogoMIPS\t: 108.00\nCPU implementer\t: 0x41\nCPU part\t: 0xd08\n";
        assert_eq!(cpu_model(pi).as_deref(), Some("Cortex-A72"));
        assert_eq!(cpu_model("CPU part : 0xfff\n").as_deref(), Some("ARM CPU part 0xfff"));
    }

    #[test]
    fn meminfo_fields_parse_in_kb() {
        let status = "Name:\tedge-runtime\nVmHWM:\t   51234 kB\nVmRSS:\t   40000 kB\n";
        assert_eq!(meminfo_kb(status, "VmHWM"), Some(51234));
        assert_eq!(meminfo_kb(status, "VmPeak"), None);
    }

    #[test]
    fn detect_fills_the_build_facts() {
        let d = DeviceInfo::detect();
        assert!(d.cores >= 1);
        assert_eq!(d.arch, std::env::consts::ARCH);
        assert!(d.tract_version.starts_with("0."), "tract version from Cargo.lock: {}", d.tract_version);
        assert_eq!(d.debug_assertions, cfg!(debug_assertions));
        assert!(!d.label().is_empty());
        if cfg!(target_os = "linux") {
            assert!(peak_rss_mb().is_some_and(|mb| mb > 0.0));
        }
    }
}
