//! `perch-fuzz TARGET --seconds N [--seed S]`: replays the target's regressions and seed corpus,
//! then runs mutants of the corpus until the time is up. Every panic is a crash: the input is
//! saved to `fuzz/crashes/TARGET/` (one file per panic location) and the run exits 1. The input
//! being run is also kept in `fuzz/crashes/TARGET/.current` (or `--current FILE`), so when a process dies outright
//! (abort, stack overflow, out of memory) `scripts/fuzz.sh` keeps that input as the crash.
//!
//! `perch-fuzz list` lists the targets; `perch-fuzz seeds` (re)writes the generated seed corpus.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use perch_fuzz::mutate::{Rng, mutant};
use perch_fuzz::{TARGETS, Target, find};

#[derive(Parser)]
#[command(about = "Fuzz perch's loaders (stable Rust, mutation-based)")]
struct Cli {
    /// A target name, `list` or `seeds`
    target: String,
    /// Seconds of mutants after the corpus replay (0: replay only)
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Seed of the mutator (default: from the clock; printed)
    #[arg(long)]
    seed: Option<u64>,
    /// Folder of seed inputs, one subfolder per target
    #[arg(long, default_value = "fuzz/corpus")]
    corpus: PathBuf,
    /// Folder of kept crash inputs (each must now run clean), one subfolder per target
    #[arg(long, default_value = "fuzz/regressions")]
    regressions: PathBuf,
    /// Where new crash inputs go, one subfolder per target
    #[arg(long, default_value = "fuzz/crashes")]
    crashes: PathBuf,
    /// Where the input being run is kept (default: CRASHES/TARGET/.current); put it on a
    /// tmpfs (/dev/shm) for speed: it is rewritten before every execution
    #[arg(long)]
    current: Option<PathBuf>,
    /// Longest mutant in bytes (default: twice the largest seed, at least 4096)
    #[arg(long)]
    max_len: Option<usize>,
}

/// The message and location of the last panic (the hook runs on the panicking thread).
static LAST_PANIC: Mutex<String> = Mutex::new(String::new());

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.target.as_str() {
        "list" => {
            for t in TARGETS {
                println!("{:<14} {}", t.name, t.about);
            }
            Ok(())
        }
        "seeds" => {
            let root = std::env::current_dir()?;
            for f in perch_fuzz::seeds::write_all(&cli.corpus, &root)? {
                println!("{} ({} bytes)", f.display(), std::fs::metadata(&f)?.len());
            }
            Ok(())
        }
        name => {
            let Some(target) = find(name) else {
                let names: Vec<_> = TARGETS.iter().map(|t| t.name).collect();
                bail!("no fuzz target {name}: one of {}", names.join(", "));
            };
            let crashes = fuzz(target, &cli)?;
            if crashes > 0 {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

/// Files of a folder, sorted (a missing folder is empty).
fn inputs(dir: &Path) -> Result<Vec<(PathBuf, Vec<u8>)>> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Ok(Vec::new()) };
    let mut paths: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .collect();
    paths.sort();
    paths.into_iter().map(|p| Ok((p.clone(), std::fs::read(&p).with_context(|| p.display().to_string())?))).collect()
}

fn fuzz(target: &Target, cli: &Cli) -> Result<usize> {
    let corpus = inputs(&cli.corpus.join(target.name))?;
    let regressions = inputs(&cli.regressions.join(target.name))?;
    if corpus.is_empty() {
        bail!("no seed inputs in {}: run `perch-fuzz seeds` first", cli.corpus.join(target.name).display());
    }
    let crash_dir = cli.crashes.join(target.name);
    std::fs::create_dir_all(&crash_dir).with_context(|| crash_dir.display().to_string())?;
    let current = cli.current.clone().unwrap_or_else(|| crash_dir.join(".current"));
    let seed = cli.seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
    });
    let max_len = cli.max_len.unwrap_or_else(|| corpus.iter().map(|(_, d)| d.len()).max().unwrap_or(0).max(2048) * 2);
    std::panic::set_hook(Box::new(|info| {
        *common::lock(&LAST_PANIC) = info.to_string();
    }));

    let execs = std::cell::Cell::new(0u64);
    // Panic location -> (count, saved input).
    let mut found: BTreeMap<String, (u64, PathBuf)> = BTreeMap::new();
    let mut run_one = |data: &[u8], origin: &str| -> Result<()> {
        std::fs::write(&current, data).with_context(|| current.display().to_string())?;
        execs.set(execs.get() + 1);
        if catch_unwind(AssertUnwindSafe(|| (target.run)(data))).is_err() {
            let msg = common::lock(&LAST_PANIC).clone();
            let location = msg.lines().next().unwrap_or("").to_string();
            let entry = found.entry(location.clone()).or_insert_with(|| (0, PathBuf::new()));
            entry.0 += 1;
            if entry.0 == 1 {
                let path = crash_dir.join(format!("crash-{:016x}.bin", fnv1a(data)));
                std::fs::write(&path, data).with_context(|| path.display().to_string())?;
                eprintln!("CRASH in {} ({origin}): {msg}\n  input saved to {}", target.name, path.display());
                entry.1 = path;
            }
        }
        Ok(())
    };

    let started = Instant::now();
    for (path, data) in regressions.iter().chain(&corpus) {
        run_one(data, &path.display().to_string())?;
    }
    let replayed = execs.get();
    let deadline = started + Duration::from_secs(cli.seconds);
    let mut rng = Rng::new(seed);
    while Instant::now() < deadline {
        let (_, a) = &corpus[rng.below(corpus.len())];
        let (_, b) = &corpus[rng.below(corpus.len())];
        let m = mutant(&mut rng, a, b, max_len);
        run_one(&m, "mutant")?;
    }
    let execs = execs.get();
    let _ = std::fs::remove_file(&current);
    perch_fuzz::targets::remove_scratch();
    let secs = started.elapsed().as_secs_f64();
    let crashes: u64 = found.values().map(|(n, _)| n).sum();
    println!(
        "fuzz {}: {execs} executions ({replayed} corpus + regressions) in {secs:.0} s ({:.0}/s), seed {seed}, \
         {} crashing inputs at {} distinct panic locations",
        target.name,
        execs as f64 / secs.max(1e-9),
        crashes,
        found.len()
    );
    Ok(found.len())
}

/// FNV-1a 64: a stable file name for a crash input.
fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}
