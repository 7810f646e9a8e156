//! What a benchmark ran on: the device block of an `edge-runtime bench` report. Latency
//! numbers are meaningless without it, and `bench report` uses it to tell devices apart.
//!
//! Everything is read from the OS at run time (Linux `/proc` and `/sys` where present) or
//! from facts fixed at build time (versions, profile, target features); fields the OS does
//! not expose are `None` rather than guesses.
//!
//! A benchmark on a small board also depends on its thermal state: a Raspberry Pi that reaches
//! its soft temperature limit or sees under-voltage caps its clock, and the latencies measure
//! that, not the model. The block therefore records the SoC temperature and the firmware's
//! throttling flags (`vcgencmd get_throttled`) before and after the run.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// The tract-onnx version linked into this binary (from Cargo.lock, see build.rs).
pub const TRACT_VERSION: &str = env!("PERCH_TRACT_VERSION");

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
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
    /// The device's name in a fleet (`bench --name`, the MQTT topic level); reports of older
    /// perch versions have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
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
    /// Temperature and throttling before the first measurement (`None`: not recorded, as in
    /// reports of older perch versions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thermal_before: Option<ThermalState>,
    /// Temperature and throttling after the last measurement.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thermal_after: Option<ThermalState>,
}

/// Two blocks describe the same device when everything but the thermal state matches: that is
/// a property of one run (an fp32 run and a later int8 run on the same Pi are one device).
impl PartialEq for DeviceInfo {
    fn eq(&self, other: &Self) -> bool {
        // No `..`: a new field must be added here (or to the ignored ones) to compile.
        let DeviceInfo {
            cpu_model,
            cores,
            arch,
            os,
            kernel,
            board,
            hostname,
            name,
            memory_mb,
            perch_version,
            tract_version,
            build_profile,
            opt_level,
            debug_assertions,
            target_features,
            cpu_features,
            thermal_before: _,
            thermal_after: _,
        } = self;
        *cpu_model == other.cpu_model
            && *cores == other.cores
            && *arch == other.arch
            && *os == other.os
            && *kernel == other.kernel
            && *board == other.board
            && *hostname == other.hostname
            && *name == other.name
            && *memory_mb == other.memory_mb
            && *perch_version == other.perch_version
            && *tract_version == other.tract_version
            && *build_profile == other.build_profile
            && *opt_level == other.opt_level
            && *debug_assertions == other.debug_assertions
            && *target_features == other.target_features
            && *cpu_features == other.cpu_features
    }
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
            memory_mb: read_trimmed(Path::new("/proc/meminfo"))
                .and_then(|m| meminfo_kb(&m, "MemTotal"))
                .map(|kb| kb / 1024),
            perch_version: models::PERCH_VERSION.to_string(),
            tract_version: TRACT_VERSION.to_string(),
            build_profile: env!("PERCH_CARGO_PROFILE").to_string(),
            opt_level: env!("PERCH_OPT_LEVEL").to_string(),
            debug_assertions: cfg!(debug_assertions),
            target_features: target_features(),
            cpu_features: cpu_features(),
            name: None,
            thermal_before: None,
            // `bench` calls detect() once its measurements are done: this is the "after" state.
            thermal_after: ThermalState::read(),
        }
    }

    /// Names the device (`bench --name`).
    pub fn with_name(mut self, name: Option<String>) -> Self {
        self.name = name;
        self
    }

    /// Records the thermal state read before the run (`ThermalState::read()` at its start).
    pub fn with_thermal_before(mut self, before: Option<ThermalState>) -> Self {
        self.thermal_before = before;
        self
    }

    /// Whether the firmware reported any throttling, capping or under-voltage, before or after.
    pub fn was_throttled(&self) -> bool {
        [&self.thermal_before, &self.thermal_after]
            .into_iter()
            .flatten()
            .filter_map(|t| t.throttled.as_ref())
            .any(|t| t.now.any() || t.since_boot.any())
    }

    /// When two reports of the same device are merged: keep the thermal state that warns.
    pub fn keep_worst_thermal(&mut self, other: &DeviceInfo) {
        if other.was_throttled() && !self.was_throttled() {
            self.thermal_before = other.thermal_before.clone();
            self.thermal_after = other.thermal_after.clone();
        }
    }

    /// One line for the report: SoC temperature before and after, and the throttling the
    /// firmware reported; `None` when nothing was recorded (not a Pi, or an older report).
    pub fn thermal_note(&self) -> Option<String> {
        let (before, after) = (self.thermal_before.as_ref(), self.thermal_after.as_ref());
        let mut parts = Vec::new();
        let temp = |t: Option<&ThermalState>| t.and_then(|t| t.soc_temp_c);
        if temp(before).is_some() || temp(after).is_some() {
            let show = |c: Option<f64>| c.map_or("?".to_string(), |c| format!("{c:.1} °C"));
            parts.push(format!("SoC {} before, {} after", show(temp(before)), show(temp(after))));
        }
        let b = before.and_then(|t| t.throttled.as_ref());
        let a = after.and_then(|t| t.throttled.as_ref());
        if let Some(last) = a.or(b) {
            let raw = match (b, a) {
                (Some(b), Some(a)) => format!("get_throttled {} before, {} after", b.raw, a.raw),
                _ => format!("get_throttled {}", last.raw),
            };
            let mut seen = Vec::new();
            if let Some(b) = b.filter(|b| b.now.any()) {
                seen.push(format!("at the start: {}", b.now.describe()));
            }
            if let Some(a) = a.filter(|a| a.now.any()) {
                seen.push(format!("at the end: {}", a.now.describe()));
            }
            if let (Some(b), Some(a)) = (b, a) {
                let new = a.since_boot.minus(&b.since_boot);
                if new.any() {
                    seen.push(format!("new during the run: {}", new.describe()));
                }
            }
            if last.since_boot.any() {
                seen.push(format!("since boot: {}", last.since_boot.describe()));
            }
            if seen.is_empty() {
                parts.push(format!("not throttled ({raw})"));
            } else {
                parts.push(format!(
                    "**throttled** ({}; {raw}): the latencies may reflect a reduced clock",
                    seen.join("; ")
                ));
            }
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }

    /// Short human name for tables and plot legends: the board if known, else the CPU.
    pub fn label(&self) -> String {
        match &self.name {
            Some(name) => format!("{name} ({})", self.hardware()),
            None => self.hardware(),
        }
    }

    /// Board, else CPU and cores.
    fn hardware(&self) -> String {
        match &self.board {
            Some(board) if !board.is_empty() => board.clone(),
            _ if !self.cpu_model.is_empty() => format!("{} ({} cores)", self.cpu_model, self.cores),
            _ => "unknown device".to_string(),
        }
    }
}

/// The SoC temperature and the Raspberry Pi firmware's throttling flags at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ThermalState {
    /// The SoC's temperature in °C: the `cpu-thermal`/`soc` zone (a Pi has only that one),
    /// else the hottest zone.
    pub soc_temp_c: Option<f64>,
    /// Every thermal zone of `/sys/class/thermal`.
    pub zones: Vec<ThermalZone>,
    /// `vcgencmd get_throttled` where the Raspberry Pi firmware tool is present.
    pub throttled: Option<Throttled>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ThermalZone {
    /// The zone's `type`, e.g. "cpu-thermal" (Raspberry Pi), "x86_pkg_temp".
    pub name: String,
    pub temp_c: f64,
}

/// The bits of `vcgencmd get_throttled` (Raspberry Pi firmware): the low four are the state
/// now, bits 16-19 the same conditions since boot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Throttled {
    /// As the firmware printed it, e.g. "0x50005".
    pub raw: String,
    pub now: ThrottleFlags,
    pub since_boot: ThrottleFlags,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ThrottleFlags {
    /// Supply voltage below 4.63 V (bits 0 / 16).
    pub under_voltage: bool,
    /// ARM frequency capped (bits 1 / 17).
    pub freq_capped: bool,
    /// Clock throttled (bits 2 / 18).
    pub throttled: bool,
    /// Soft temperature limit active (bits 3 / 19; 60 °C by default on a Pi 3B+ and later).
    pub soft_temp_limit: bool,
}

impl ThrottleFlags {
    fn from_bits(bits: u32) -> Self {
        ThrottleFlags {
            under_voltage: bits & 1 != 0,
            freq_capped: bits & 2 != 0,
            throttled: bits & 4 != 0,
            soft_temp_limit: bits & 8 != 0,
        }
    }

    pub fn any(&self) -> bool {
        self.under_voltage || self.freq_capped || self.throttled || self.soft_temp_limit
    }

    /// The flags set here and not in `other`.
    fn minus(&self, other: &ThrottleFlags) -> ThrottleFlags {
        ThrottleFlags {
            under_voltage: self.under_voltage && !other.under_voltage,
            freq_capped: self.freq_capped && !other.freq_capped,
            throttled: self.throttled && !other.throttled,
            soft_temp_limit: self.soft_temp_limit && !other.soft_temp_limit,
        }
    }

    /// "under-voltage, frequency capped", or "none".
    pub fn describe(&self) -> String {
        let names = [
            (self.under_voltage, "under-voltage"),
            (self.freq_capped, "frequency capped"),
            (self.throttled, "throttled"),
            (self.soft_temp_limit, "soft temperature limit"),
        ];
        let on: Vec<&str> = names.iter().filter(|(on, _)| *on).map(|(_, name)| *name).collect();
        if on.is_empty() { "none".to_string() } else { on.join(", ") }
    }
}

/// Parses `vcgencmd get_throttled` output ("throttled=0x50005"; a bare hex number is accepted).
pub fn parse_throttled(output: &str) -> Option<Throttled> {
    let value = output.trim();
    let value = value.strip_prefix("throttled=").unwrap_or(value).trim();
    let hex = value.strip_prefix("0x").or_else(|| value.strip_prefix("0X")).unwrap_or(value);
    let bits = u32::from_str_radix(hex, 16).ok()?;
    Some(Throttled {
        raw: format!("{bits:#x}"),
        now: ThrottleFlags::from_bits(bits & 0xf),
        since_boot: ThrottleFlags::from_bits((bits >> 16) & 0xf),
    })
}

impl ThermalState {
    /// The state now; `None` when the machine exposes neither thermal zones nor `vcgencmd`.
    pub fn read() -> Option<Self> {
        Self::read_from(Path::new("/sys/class/thermal"), vcgencmd_throttled())
    }

    fn read_from(thermal_root: &Path, throttled: Option<Throttled>) -> Option<Self> {
        let zones = thermal_zones(thermal_root);
        let soc = zones.iter().find(|z| {
            let n = z.name.to_ascii_lowercase();
            n.contains("cpu") || n.contains("soc")
        });
        let soc_temp_c = soc.map(|z| z.temp_c).or_else(|| zones.iter().map(|z| z.temp_c).reduce(f64::max));
        (!zones.is_empty() || throttled.is_some()).then_some(ThermalState { soc_temp_c, zones, throttled })
    }
}

/// `thermal_zone*/temp` (millidegrees Celsius) and `type` under a /sys/class/thermal-like root.
fn thermal_zones(root: &Path) -> Vec<ThermalZone> {
    let Ok(entries) = std::fs::read_dir(root) else { return Vec::new() };
    let mut zones: Vec<(u32, ThermalZone)> = entries
        .flatten()
        .filter_map(|e| {
            let file_name = e.file_name();
            let index: u32 = file_name.to_str()?.strip_prefix("thermal_zone")?.parse().ok()?;
            // A zone whose sensor is off or unreadable fails with EINVAL/ENODATA: skip it.
            let milli: i64 = read_trimmed(&e.path().join("temp"))?.parse().ok()?;
            let name = read_trimmed(&e.path().join("type")).unwrap_or_else(|| format!("thermal_zone{index}"));
            Some((index, ThermalZone { name, temp_c: milli as f64 / 1000.0 }))
        })
        .collect();
    zones.sort_by_key(|(index, _)| *index);
    zones.into_iter().map(|(_, z)| z).collect()
}

/// `vcgencmd get_throttled`, where the Raspberry Pi userland tool exists (it needs access to
/// /dev/vcio, group `video`); `None` everywhere else.
fn vcgencmd_throttled() -> Option<Throttled> {
    let out = std::process::Command::new("vcgencmd")
        .arg("get_throttled")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status.success().then(|| parse_throttled(&String::from_utf8_lossy(&out.stdout))).flatten()
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
    cpuinfo_field(cpuinfo, "CPU part")
        .map(|part| arm_core_name(&part).map_or_else(|| format!("ARM CPU part {part}"), str::to_string))
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
            text.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=")).map(|v| v.trim_matches('"').to_string())
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
    check!(
        "sse2", "sse4.1", "sse4.2", "avx", "avx2", "fma", "f16c", "avx512f", "neon", "fp16", "dotprod", "i8mm", "sve"
    );
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
    // 32-bit ARM has no stable run-time detection macro: the kernel's `Features` line says.
    #[cfg(target_arch = "arm")]
    {
        let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let listed: Vec<&str> =
            info.lines().filter(|l| l.starts_with("Features")).flat_map(|l| l.split_whitespace()).collect();
        on.extend(["neon", "vfpv4", "idiva"].into_iter().filter(|f| listed.contains(f)).map(String::from));
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
    fn vcgencmd_throttled_output_decodes_into_now_and_since_boot() {
        // A Pi 4 on a weak supply: under-voltage and throttled now and since boot.
        let t = parse_throttled("throttled=0x50005\n").unwrap();
        assert_eq!(t.raw, "0x50005");
        let uv_throttled = ThrottleFlags { under_voltage: true, throttled: true, ..ThrottleFlags::default() };
        assert_eq!(t.now, uv_throttled);
        assert_eq!(t.since_boot, uv_throttled);
        assert_eq!(t.now.describe(), "under-voltage, throttled");

        let ok = parse_throttled("throttled=0x0").unwrap();
        assert!(!ok.now.any() && !ok.since_boot.any());
        assert_eq!(ok.now.describe(), "none");

        // Hot Pi after a long run: frequency capped, throttled and soft limit since boot only.
        let hot = parse_throttled("throttled=0xe0000").unwrap();
        assert!(!hot.now.any());
        let hot_flags =
            ThrottleFlags { freq_capped: true, throttled: true, soft_temp_limit: true, ..Default::default() };
        assert_eq!(hot.since_boot, hot_flags);
        assert!(parse_throttled("throttled=0x8").unwrap().now.soft_temp_limit);
        // The sysfs form (bare hex) parses the same; anything else is not a state.
        assert_eq!(parse_throttled("50005"), Some(t));
        for bad in ["", "throttled=", "error=2 error_msg=\"Command not registered\"", "throttled=0xZZ"] {
            assert_eq!(parse_throttled(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn thermal_zones_are_read_like_sys_class_thermal() {
        let root = tempfile::tempdir().unwrap();
        let zone = |name: &str, kind: Option<&str>, temp: Option<&str>| {
            let dir = root.path().join(name);
            std::fs::create_dir(&dir).unwrap();
            if let Some(kind) = kind {
                std::fs::write(dir.join("type"), format!("{kind}\n")).unwrap();
            }
            if let Some(temp) = temp {
                std::fs::write(dir.join("temp"), format!("{temp}\n")).unwrap();
            }
        };
        zone("thermal_zone10", Some("acpitz"), Some("27800"));
        zone("thermal_zone2", Some("cpu-thermal"), Some("61835"));
        zone("thermal_zone1", Some("broken"), None); // sensor off: no readable temp
        zone("thermal_zone3", None, Some("40000"));
        zone("cooling_device0", Some("Processor"), Some("1"));
        let zones = thermal_zones(root.path());
        let names: Vec<&str> = zones.iter().map(|z| z.name.as_str()).collect();
        assert_eq!(names, ["cpu-thermal", "thermal_zone3", "acpitz"]);
        assert_eq!(zones[0].temp_c, 61.835);

        let state = ThermalState::read_from(root.path(), parse_throttled("throttled=0x0")).unwrap();
        assert_eq!(state.soc_temp_c, Some(61.835), "the cpu-thermal zone, not the hottest");
        assert!(state.throttled.is_some());
        // No cpu/soc zone: the hottest one.
        let other = tempfile::tempdir().unwrap();
        for (i, t) in ["35000", "52500"].iter().enumerate() {
            let dir = other.path().join(format!("thermal_zone{i}"));
            std::fs::create_dir(&dir).unwrap();
            std::fs::write(dir.join("temp"), t).unwrap();
        }
        assert_eq!(ThermalState::read_from(other.path(), None).unwrap().soc_temp_c, Some(52.5));
        // Neither zones nor vcgencmd: nothing to record.
        assert_eq!(ThermalState::read_from(&root.path().join("missing"), None), None);
    }

    #[test]
    fn thermal_note_says_when_a_device_was_throttled() {
        let state = |temp: f64, raw: &str| ThermalState {
            soc_temp_c: Some(temp),
            zones: vec![],
            throttled: parse_throttled(raw),
        };
        let mut d = DeviceInfo { thermal_before: Some(state(48.0, "0x0")), ..DeviceInfo::default() };
        d.thermal_after = Some(state(81.5, "throttled=0xa0008"));
        assert!(d.was_throttled());
        let note = d.thermal_note().unwrap();
        assert!(note.starts_with("SoC 48.0 °C before, 81.5 °C after; **throttled**"), "{note}");
        assert!(note.contains("at the end: soft temperature limit"), "{note}");
        assert!(note.contains("new during the run: frequency capped, soft temperature limit"), "{note}");
        assert!(note.contains("get_throttled 0x0 before, 0xa0008 after"), "{note}");

        let cool = DeviceInfo {
            thermal_before: Some(state(41.0, "throttled=0x0")),
            thermal_after: Some(state(55.2, "throttled=0x0")),
            ..DeviceInfo::default()
        };
        assert!(!cool.was_throttled());
        assert_eq!(
            cool.thermal_note().unwrap(),
            "SoC 41.0 °C before, 55.2 °C after; not throttled (get_throttled 0x0 before, 0x0 after)"
        );
        // A PC: temperatures only; an old report: nothing.
        let pc = DeviceInfo {
            thermal_after: Some(ThermalState { soc_temp_c: Some(40.0), ..Default::default() }),
            ..Default::default()
        };
        assert_eq!(pc.thermal_note().as_deref(), Some("SoC ? before, 40.0 °C after"));
        assert_eq!(DeviceInfo::default().thermal_note(), None);

        // The thermal state is the run's, not the device's: same device, and the warning wins.
        let mut merged = cool.clone();
        assert_eq!(merged, d);
        merged.keep_worst_thermal(&d);
        assert!(merged.was_throttled());
    }

    #[test]
    fn reports_without_thermal_fields_still_load() {
        let old: DeviceInfo = serde_json::from_str(r#"{"cpu_model":"Cortex-A72","cores":4,"arch":"aarch64"}"#).unwrap();
        assert_eq!(old.thermal_before, None);
        assert_eq!(old.thermal_note(), None);
        assert!(!serde_json::to_string(&old).unwrap().contains("thermal"), "absent fields stay absent");
        let d = DeviceInfo {
            thermal_after: ThermalState::read_from(Path::new("/nonexistent"), parse_throttled("throttled=0x50005")),
            ..old
        };
        let back: DeviceInfo = serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
        assert_eq!(back.thermal_after, d.thermal_after);
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
