//! Full disks: `trainer fit`, `trainer export` and `edge-runtime bench --json` write into a
//! small tmpfs until it is full. Each must exit non-zero with a "no space left" message, leave
//! the last complete checkpoint and the earlier export intact and no half-written file behind,
//! and `trainer fit --resume` must finish the run once there is space again.
//!
//! Mounting needs root (CI runs as root); elsewhere the test prints why it was skipped and passes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use perch::output_text as text;

fn trainer(args: &[&str]) -> Output {
    perch::trainer().args(args).output().expect("run trainer")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A tmpfs mounted on a temporary folder, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// None (with the reason) where this process may not mount.
    fn mount(size_mb: u64) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mb}m"), "tmpfs", s(dir.path())])
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!("mount -t tmpfs failed (not root?): {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn resize(&self, size_mb: u64) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={size_mb}m"), s(self.path())])
            .output()
            .expect("mount -o remount");
        assert!(out.status.success(), "remount: {}", text(&out));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Writes a filler file until the file system is full.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 4096];
    loop {
        match f.write_all(&chunk) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    let _ = f.sync_all();
    path
}

/// Every path under `dir` whose name marks a half-written file or folder.
fn temporaries(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().filter_map(|e| e.ok()) {
            let p = e.path();
            if e.file_name().to_string_lossy().contains(".tmp") {
                out.push(p.clone());
            }
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

fn sha(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().expect("sha256sum");
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_string()
}

/// A head + fine-tuning run: fine-tuning checkpoints hold the whole model (8.6 MB each), so
/// a 32 MB disk that already holds a 9 MB export fills during the fine-tuning epochs.
fn fit_args<'a>(data: &'a Path, out: &'a Path, cache: &'a Path, epochs: &'a str, fine_tune: &'a str) -> Vec<&'a str> {
    vec![
        "fit",
        "--backbone",
        "mobilenetv2",
        "--data",
        s(data),
        "--out",
        s(out),
        "--cache-dir",
        s(cache),
        "--limit-per-class",
        "6",
        "--epochs",
        epochs,
        "--batch-size",
        "8",
        "--fine-tune-layers",
        "1",
        "--fine-tune-epochs",
        fine_tune,
        "--seed",
        "5",
    ]
}

fn assert_no_space(o: &Output, what: &str) {
    assert!(!o.status.success(), "{what} succeeded on a full disk:\n{}", text(o));
    assert!(text(o).contains("no space left"), "{what}: no clear 'no space left' message:\n{}", text(o));
    assert!(!text(o).contains("panicked"), "{what} panicked:\n{}", text(o));
}

#[test]
fn full_disk_fails_clearly_keeps_complete_files_and_resume_finishes() {
    let disk = match Tmpfs::mount(32) {
        Ok(d) => d,
        Err(why) => {
            eprintln!("SKIPPED full_disk test: {why}");
            return;
        }
    };
    let work = tempfile::tempdir().unwrap();
    let data = perch::dataset_dir("hymenoptera");
    let cache = work.path().join("cache");

    // An earlier run (on the big disk) and its export onto the small one.
    let first_run = work.path().join("first");
    let o = trainer(&fit_args(&data, &first_run, &cache, "1", "0")[..]);
    assert!(o.status.success(), "{}", text(&o));
    let export = disk.path().join("first.onnx");
    let o = trainer(&["export", "--run", s(&first_run), "--out", s(&export)]);
    assert!(o.status.success(), "{}", text(&o));
    let export_sha = sha(&export);

    // 1. fit into the small disk: it fills while fine-tuning.
    let run = disk.path().join("run");
    let args = fit_args(&data, &run, &cache, "2", "3");
    let o = trainer(&args);
    assert_no_space(&o, "trainer fit");
    let checkpoints: Vec<PathBuf> = {
        let mut v: Vec<PathBuf> =
            std::fs::read_dir(run.join("checkpoints")).unwrap().map(|e| e.unwrap().path()).collect();
        v.sort();
        v
    };
    let last = checkpoints.last().expect("a complete checkpoint before the disk filled");
    for f in ["model.bpk", "optim.bpk", "state.json"] {
        assert!(last.join(f).is_file(), "{} lacks {f}", last.display());
    }
    let state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(last.join("state.json")).unwrap())
        .expect("the last checkpoint's state.json is complete JSON");
    let done = state["epoch"].as_u64().unwrap();
    assert!((1..5).contains(&done), "the disk should fill mid-run, the last checkpoint is epoch {done}");
    assert_eq!(temporaries(disk.path()), Vec::<PathBuf>::new(), "half-written files left on the full disk");
    assert_eq!(sha(&export), export_sha, "the earlier export changed");

    // 2. export and bench on a disk with no byte left.
    let filler = fill(disk.path());
    let second = disk.path().join("second.onnx");
    let o = trainer(&["export", "--run", s(&first_run), "--out", s(&second)]);
    assert_no_space(&o, "trainer export");
    assert!(!second.exists(), "a partial export was left at {}", second.display());
    let report = disk.path().join("bench.json");
    let o = Command::new(perch::bin("edge-runtime"))
        .args(["bench", "--model", s(&export), "--warmup", "1", "--iterations", "3", "--json", s(&report)])
        .output()
        .unwrap();
    assert_no_space(&o, "edge-runtime bench --json");
    assert!(!report.exists(), "a partial report was left at {}", report.display());
    assert_eq!(temporaries(disk.path()), Vec::<PathBuf>::new(), "half-written files left on the full disk");
    assert_eq!(sha(&export), export_sha, "the earlier export changed");

    // 3. Space again: the run resumes from its last checkpoint and finishes; the export runs.
    std::fs::remove_file(filler).unwrap();
    disk.resize(96);
    let mut resume = args.clone();
    resume.push("--resume");
    let o = trainer(&resume);
    assert!(o.status.success(), "resume after freeing space: {}", text(&o));
    assert!(text(&o).contains("resumed"), "{}", text(&o));
    let history: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(run.join("history.json")).unwrap()).unwrap();
    let epochs: Vec<u64> = history.iter().map(|r| r["epoch"].as_u64().unwrap()).collect();
    assert_eq!(epochs, vec![1, 2, 3, 4, 5]);
    let o = Command::new(perch::bin("edge-runtime"))
        .args(["classify", "--model", s(&export), s(&perch::fixture("photos/imagenet_02_438.jpg"))])
        .output()
        .unwrap();
    assert!(o.status.success(), "the earlier export no longer loads: {}", text(&o));
}

/// `edge-runtime run --capture` into a full disk: capture stops with one "no space left"
/// warning, every frame is still classified and printed, the run exits 0, and no half-written
/// JPEG is left behind.
#[test]
fn capture_on_a_full_disk_warns_once_and_inference_goes_on() {
    let disk = match Tmpfs::mount(1) {
        Ok(d) => d,
        Err(why) => {
            eprintln!("SKIPPED capture full-disk test: {why}");
            return;
        }
    };
    let weights = perch::weights_dir();
    let photos = perch::fixture("photos");
    let cap = disk.path().join("captured");
    std::fs::create_dir(&cap).unwrap();
    fill(disk.path());
    let out = Command::new(perch::bin("edge-runtime"))
        .args(["run", "--source", &format!("dir:{}", s(&photos)), "--emit", "jsonl"])
        .args(["--model", s(&weights.join("mobilenet_v2_1.0_224.onnx")), "--preset", "mobilenetv2"])
        .args(["--labels", s(&weights.join("imagenet_labels.txt"))])
        .args(["--capture", s(&cap), "--capture-below", "1.0"])
        .output()
        .expect("run edge-runtime");
    let err = text(&out);
    assert!(out.status.success(), "the run must go on without capture:\n{err}");
    let records = String::from_utf8_lossy(&out.stdout).lines().count();
    assert_eq!(records, 6, "every fixture photo classified:\n{err}");
    assert_eq!(err.matches("warning: capture stopped: no space left").count(), 1, "{err}");
    assert!(err.contains("captured 0 frame(s) this run"), "{err}");
    assert!(temporaries(disk.path()).is_empty(), "{:?}", temporaries(disk.path()));
    let jpegs: Vec<_> = walk(&cap);
    assert!(jpegs.is_empty(), "nothing written into the full disk: {jpegs:?}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().map(|e| e.unwrap()) {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}
