//! `edge-runtime`: classify images, run the streaming loop, benchmark. A thin clap layer over
//! the `edge_runtime` library.
//!
//! Exit codes:
//! - 0: success
//! - 1: error (model cannot be loaded, no inputs found, output cannot be written, ...)
//! - 2: usage error (bad flags, bad `--source`)
//! - 3: finished, but some inputs were skipped (unreadable, corrupt or empty images)
//! - 4: the source was lost mid-stream (camera gone after retries); the summary is printed

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use edge_runtime::classify::{self, ClassifyOptions, Outcome};
use edge_runtime::pipeline::{self, RunOptions};
use edge_runtime::sink::{self, EmitFormat};
use edge_runtime::source::{self, SourceSpec};
use edge_runtime::{Classifier, Int8Mode, LoadOptions, RuntimeError};
use models::{Backbone, ImageLimits};

const EXIT_ERROR: u8 = 1;
// 2 (usage) is clap's own exit code for bad flags; a bad --source value uses it too.
const EXIT_USAGE: u8 = 2;
const EXIT_SKIPPED: u8 = 3;
const EXIT_SOURCE_LOST: u8 = 4;

#[derive(Parser)]
#[command(
    name = "edge-runtime",
    version,
    about = "perch edge runtime: image classification with tract on CPU"
)]
#[command(
    after_help = "Shortcut: `edge-runtime --camera N --model M.onnx [run flags]` = `edge-runtime run --source camera:N --model M.onnx [run flags]`.\nExit codes: 0 ok, 1 error, 2 usage, 3 some inputs skipped, 4 source lost mid-stream."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Classify image files and folders (recursive).
    Classify(ClassifyArgs),
    /// The streaming loop: capture -> newest-frame queue -> inference -> sink.
    Run(RunArgs),
    /// Measure latency per model and thread count; `bench report` merges device reports.
    Bench(edge_runtime::bench::BenchArgs),
}

#[derive(Args, Clone)]
struct ModelArgs {
    /// ONNX model (a perch export carries its manifest; others need --preset and --labels).
    #[arg(long, value_name = "M.onnx")]
    model: PathBuf,
    /// Catalog backbone describing a model without a perch manifest.
    #[arg(long, value_name = "NAME")]
    preset: Option<Backbone>,
    /// Labels file, one class per line in output order (required with --preset).
    #[arg(long, value_name = "FILE")]
    labels: Option<PathBuf>,
    /// Intra-op threads for tract's matrix products (default 1).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
    /// How to execute int8 (QDQ) models.
    #[arg(long, value_enum, default_value_t = Int8Mode::Auto)]
    int8: Int8Mode,
    /// Refuse images with more pixels than this (decompression-bomb guard).
    #[arg(long, value_name = "PIXELS", default_value_t = ImageLimits::default().max_pixels)]
    max_pixels: u64,
}

#[derive(Args)]
struct ClassifyArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Classes to report per image.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..))]
    top_k: u16,
    /// One JSON object per image instead of a table.
    #[arg(long)]
    json: bool,
    /// Debug: write each preprocessed input tensor (raw f32 LE, NCHW) into this folder.
    #[arg(long, hide = true, value_name = "DIR")]
    dump_tensors: Option<PathBuf>,
    /// Image files or folders.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
}

#[derive(Args)]
struct RunArgs {
    /// camera:N | video:FILE | dir:DIR | synthetic[:FPS]
    #[arg(long, value_name = "SOURCE")]
    source: String,
    #[command(flatten)]
    stream: StreamArgs,
}

#[derive(Args)]
struct StreamArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Stop after N classified frames (default: until Ctrl-C or the source ends).
    #[arg(long, value_name = "N")]
    frames: Option<u64>,
    /// Print `unknown` when the smoothed best probability is below T.
    #[arg(long, value_name = "T", default_value_t = 0.0)]
    threshold: f32,
    /// Average probabilities over the last K frames.
    #[arg(long, value_name = "K", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    smooth: u16,
    /// Classes kept per frame (jsonl/postcard `top`).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..))]
    top_k: u16,
    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = EmitFormat::Text)]
    emit: EmitFormat,
    /// Start a `dir:` source over when it ends.
    #[arg(long = "loop")]
    looping: bool,
}

/// `edge-runtime --camera N ...` is `edge-runtime run --source camera:N ...`: rewritten before
/// parsing so both spellings share one set of flags.
fn expand_camera_shortcut(mut args: Vec<OsString>) -> Vec<OsString> {
    let first = args.get(1).and_then(|a| a.to_str()).unwrap_or_default();
    let index = if first == "--camera" {
        args.get(2)
            .and_then(|a| a.to_str())
            .map(|n| (n.to_string(), 3))
    } else {
        first.strip_prefix("--camera=").map(|n| (n.to_string(), 2))
    };
    if let Some((n, rest)) = index {
        let tail = args.split_off(rest.min(args.len()));
        args.truncate(1);
        args.extend([
            "run".into(),
            "--source".into(),
            format!("camera:{n}").into(),
        ]);
        args.extend(tail);
    }
    args
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(expand_camera_shortcut(std::env::args_os().collect()));
    let result = match cli.command {
        Command::Classify(args) => classify_cmd(args),
        Command::Run(args) => match args.source.parse::<SourceSpec>() {
            Ok(spec) => run_cmd(spec, args.stream),
            Err(e) => Err(e.into()),
        },
        Command::Bench(args) => edge_runtime::bench::run(args).map(|_| ExitCode::SUCCESS),
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::from(match e.downcast_ref::<RuntimeError>() {
            Some(RuntimeError::BadSource(_)) => EXIT_USAGE,
            Some(RuntimeError::SourceLost { .. }) => EXIT_SOURCE_LOST,
            _ => EXIT_ERROR,
        })
    })
}

fn load(m: &ModelArgs) -> anyhow::Result<Classifier> {
    let opts = LoadOptions {
        model: m.model.clone(),
        preset: m.preset,
        labels: m.labels.clone(),
        threads: m.threads.map(usize::from),
        int8: m.int8,
    };
    let c = Classifier::load(&opts)?;
    eprintln!(
        "model {} ({}, {} classes, {}, {} thread(s))",
        m.model.display(),
        c.manifest().name,
        c.num_classes(),
        c.execution().name(),
        m.threads.unwrap_or(1)
    );
    if let Some((native, weights)) = c.auto_timings() {
        eprintln!(
            "int8 auto: native {native:.1} ms, weights {weights:.1} ms per inference -> {}",
            c.execution().name()
        );
    }
    Ok(c)
}

fn classify_cmd(args: ClassifyArgs) -> anyhow::Result<ExitCode> {
    let classifier = load(&args.model)?;
    let opts = ClassifyOptions {
        top_k: args.top_k.into(),
        limits: ImageLimits {
            max_pixels: args.model.max_pixels,
        },
        dump_tensors: args.dump_tensors,
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if !args.json {
        writeln!(out, "{}", classify::table_header())?;
    }
    let summary = classify::classify_paths(&classifier, &args.paths, &opts, |outcome| {
        let written = match outcome {
            Outcome::Classified(r) if args.json => serde_json::to_writer(&mut out, r)
                .map_err(std::io::Error::other)
                .and_then(|_| writeln!(out)),
            Outcome::Classified(r) => writeln!(out, "{}", classify::table_row(r)),
            Outcome::Skipped(s) => {
                eprintln!("skipped {}: {}", s.path.display(), s.reason);
                Ok(())
            }
        };
        written.map_err(RuntimeError::Output)
    })?;
    out.flush()?;
    eprintln!(
        "classified {}, skipped {}; latency per image p50 {:.1} ms, p99 {:.1} ms",
        summary.classified,
        summary.skipped,
        summary.latencies.percentile(50.0),
        summary.latencies.percentile(99.0)
    );
    Ok(if summary.skipped > 0 {
        ExitCode::from(EXIT_SKIPPED)
    } else {
        ExitCode::SUCCESS
    })
}

fn run_cmd(spec: SourceSpec, args: StreamArgs) -> anyhow::Result<ExitCode> {
    let limits = ImageLimits {
        max_pixels: args.model.max_pixels,
    };
    // Open the source before the (slower) model load so a missing camera fails fast.
    let source = source::open(&spec, args.looping, limits)?;
    let classifier = load(&args.model)?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed))
        .context("installing the Ctrl-C handler")?;
    let opts = RunOptions {
        frames: args.frames,
        threshold: args.threshold,
        smooth: args.smooth.into(),
        top_k: args.top_k.into(),
        ..RunOptions::default()
    };
    let mut sink = sink::sink_for(args.emit, Box::new(std::io::stdout().lock()));
    let outcome = pipeline::run(&classifier, source, sink.as_mut(), &opts, &stop);
    for s in &outcome.summary.skipped {
        eprintln!("skipped {}: {}", s.path.display(), s.reason);
    }
    eprintln!("{}", outcome.summary);
    match outcome.error {
        Some(e) => Err(e.into()),
        None if !outcome.summary.skipped.is_empty() => Ok(ExitCode::from(EXIT_SKIPPED)),
        None => Ok(ExitCode::SUCCESS),
    }
}
