//! Power cuts: `trainer fit` is SIGKILLed at 10 seeded random moments spread over feature
//! extraction, training and checkpoint writing; each `--resume` continues, and the final
//! history equals an uninterrupted run's exactly. `trainer export` is SIGKILLed at seeded random
//! moments: the target path never holds a partial model (absent, or a complete one that loads).

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use edge_runtime::{Classifier, LoadOptions};
use perch::{output_text as text, trainer};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The test's own seeded generator (splitmix64): the kill moments are the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// `fine_tune` 0: 4 head epochs only. Else 4 head epochs and `fine_tune` epochs of the top
/// stage, whose checkpoints hold the whole 8.6 MB model, so their writes take long enough to
/// be caught mid-way. 6 + 6 images per class.
fn fit_args(out: &Path, cache: &Path, fine_tune: usize) -> Vec<String> {
    let data = perch::dataset_dir("hymenoptera");
    let mut args: Vec<String> = [
        "fit",
        "--backbone",
        "mobilenetv2",
        "--data",
        s(&data),
        "--out",
        s(out),
        "--cache-dir",
        s(cache),
        "--limit-per-class",
        "6",
        "--epochs",
        "4",
        "--batch-size",
        "4",
        "--seed",
        "11",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if fine_tune > 0 {
        args.extend(["--fine-tune-layers".into(), "1".into(), "--fine-tune-epochs".into(), fine_tune.to_string()]);
    }
    args
}

fn count_files(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else { return 0 };
    rd.filter_map(|e| e.ok()).map(|e| if e.path().is_dir() { count_files(&e.path()) } else { 1 }).sum()
}

fn checkpoints(run: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(run.join("checkpoints")) else { return Vec::new() };
    let mut v: Vec<String> = rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// A checkpoint (or the best model) being written: its temporary folder or file exists.
fn writing(run: &Path) -> bool {
    checkpoints(run).iter().any(|n| n.starts_with(".epoch-"))
        || std::fs::read_dir(run)
            .map(|rd| rd.filter_map(|e| e.ok()).any(|e| e.file_name().to_string_lossy().starts_with(".best.bpk")))
            .unwrap_or(false)
}

/// Where in the run a kill is aimed.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Moment {
    /// After `n` more feature-cache entries were written.
    Features(usize),
    /// `ms` after the next new checkpoint is complete.
    Training(u64),
    /// While a checkpoint or the best model is being written.
    Checkpoint,
}

fn kill(child: &mut Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Runs until `moment` and SIGKILLs; false when the run finished first.
fn run_until(mut child: Child, moment: Moment, run: &Path, cache: &Path) -> bool {
    let deadline = Instant::now() + Duration::from_secs(300);
    let start_cache = count_files(cache);
    let start_ck: Vec<String> = checkpoints(run).into_iter().filter(|n| n.starts_with("epoch-")).collect();
    let mut new_ck_at: Option<Instant> = None;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "fit failed on its own ({status}) before the kill at {moment:?}");
            return false;
        }
        let hit = match moment {
            Moment::Features(n) => count_files(cache) >= start_cache + n,
            Moment::Checkpoint => writing(run),
            Moment::Training(ms) => {
                if new_ck_at.is_none()
                    && checkpoints(run).iter().any(|n| n.starts_with("epoch-") && !start_ck.contains(n))
                {
                    new_ck_at = Some(Instant::now());
                }
                new_ck_at.is_some_and(|t| t.elapsed() >= Duration::from_millis(ms))
            }
        };
        if hit {
            kill(&mut child);
            return true;
        }
        assert!(Instant::now() < deadline, "no {moment:?} within 300 s");
        std::thread::sleep(Duration::from_micros(300));
    }
}

fn history(run: &Path) -> Vec<serde_json::Value> {
    serde_json::from_str(&std::fs::read_to_string(run.join("history.json")).expect("history.json")).unwrap()
}

#[test]
fn fit_killed_at_ten_moments_resumes_to_the_uninterrupted_history() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let (cache_a, cache_b) = (tmp.path().join("cache-a"), tmp.path().join("cache-b"));

    let o = trainer().args(fit_args(&a, &cache_a, 6)).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let entries = count_files(&cache_a);
    assert!(entries >= 24, "{entries} cache entries");

    // The plan: 3 kills during feature extraction, 4 in training, 3 while writing, in a
    // seeded order; feature kills left over once the cache is complete become training kills.
    let mut rng = Rng(0x5EED_0016);
    let mut plan = vec![Moment::Checkpoint; 3];
    for _ in 0..3 {
        plan.push(Moment::Features(1 + rng.below(entries as u64 / 4) as usize));
    }
    for _ in 0..4 {
        plan.push(Moment::Training(rng.below(40)));
    }
    for i in (1..plan.len()).rev() {
        plan.swap(i, rng.below(i as u64 + 1) as usize);
    }
    // The first run starts with the extraction.
    if let Some(f) = plan.iter().position(|m| matches!(m, Moment::Features(_))) {
        plan.swap(0, f);
    }

    let mut kills = Vec::new();
    for (i, mut moment) in plan.into_iter().enumerate() {
        if matches!(moment, Moment::Features(_)) && count_files(&cache_b) >= entries {
            moment = Moment::Training(rng.below(40));
        }
        let mut args = fit_args(&b, &cache_b, 6);
        if i > 0 {
            args.push("--resume".into());
        }
        let child = trainer().args(&args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        assert!(run_until(child, moment, &b, &cache_b), "kill {i} ({moment:?}): the run finished first");
        kills.push((moment, checkpoints(&b).into_iter().rfind(|n| n.starts_with("epoch-"))));
    }
    eprintln!("kills (moment, last complete checkpoint): {kills:?}");
    assert!(kills.iter().filter(|(m, _)| matches!(m, Moment::Features(_))).count() >= 1);
    assert!(kills.iter().filter(|(m, _)| *m == Moment::Checkpoint).count() == 3);

    let mut args = fit_args(&b, &cache_b, 6);
    args.push("--resume".into());
    let o = trainer().args(&args).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));

    let (ha, hb) = (history(&a), history(&b));
    let epochs: Vec<u64> = hb.iter().map(|r| r["epoch"].as_u64().unwrap()).collect();
    assert_eq!(epochs, (1..=10).collect::<Vec<u64>>(), "no missing or duplicated epoch");
    for (ra, rb) in ha.iter().zip(&hb) {
        // Training is deterministic given the seed (the resumed model, optimizer state and data
        // order are restored exactly), so the numbers are equal, not merely close.
        for f in ["phase", "train_loss", "train_acc", "val_loss", "val_acc", "lr"] {
            assert_eq!(ra[f], rb[f], "epoch {}: {f}", ra["epoch"]);
        }
    }
    let left: Vec<String> = checkpoints(&b)
        .into_iter()
        .chain(std::fs::read_dir(&b).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()))
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(left.is_empty(), "half-written files left after the final resume: {left:?}");
}

#[test]
fn export_killed_at_random_moments_never_leaves_a_partial_model() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let o = trainer().args(fit_args(&run, &tmp.path().join("cache"), 0)).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let out = tmp.path().join("model.onnx");
    let export = || {
        let mut c = trainer();
        c.args(["export", "--run", s(&run), "--out", s(&out)]);
        c
    };

    let t = Instant::now();
    let o = export().output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let full = t.elapsed();
    let complete = std::fs::read(&out).unwrap();

    // The first kills find no file at the path, the later ones the complete earlier export.
    std::fs::remove_file(&out).unwrap();
    let mut rng = Rng(0xE4_0047);
    let mut killed = 0;
    let mut complete_seen = false;
    // 6 kills; a moment late in the run may come after an export that ran faster than the
    // measured one finished (then it is checked like the others and another moment drawn).
    for _ in 0..12 {
        if killed == 6 {
            break;
        }
        let at = Duration::from_millis(rng.below(full.as_millis() as u64 * 3 / 4));
        let mut child = export().stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(at);
        if child.try_wait().unwrap().is_none() {
            kill(&mut child);
            killed += 1;
        }
        match std::fs::read(&out) {
            Err(_) => {}
            Ok(bytes) if bytes == complete => {}
            Ok(_) => {
                // An export that finished before its kill: a complete model that loads and runs.
                let c = Classifier::load(&LoadOptions::new(&out)).expect("the target path holds a complete model");
                c.classify(&vec![0.0; c.input_len()], 1).expect("it runs");
                complete_seen = true;
            }
        }
        if complete_seen {
            assert!(out.is_file(), "a complete export at {} disappeared", out.display());
        }
        if killed == 3 && !out.exists() {
            // From now on an earlier complete export sits at the path.
            std::fs::write(&out, &complete).unwrap();
            complete_seen = true;
        }
    }
    assert_eq!(killed, 6, "exports kept finishing before their kill");
}
