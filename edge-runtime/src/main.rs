//! `edge-runtime`: classify images, run the streaming loop, benchmark. A thin layer over the
//! `edge_runtime` library; every flag is defined in `cli.rs`.
//!
//! Exit codes:
//! - 0: success
//! - 1: error (model cannot be loaded, no inputs found, output cannot be written, ...)
//! - 2: usage error (bad flags, bad `--source`, bad capture settings, a `--roi` outside the frame)
//! - 3: finished, but some inputs were skipped (unreadable, corrupt, truncated or empty images)
//! - 4: the source was lost mid-stream (camera, capture program or stream gone after retries);
//!   the summary is printed

mod cli;

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use clap::Parser;
use cli::{BenchArgs, BenchCommand, ClassifyArgs, Cli, Command, DevicesArgs, EnrolArgs, ModelArgs, StreamArgs};
use edge_runtime::classify::{self, Outcome};
use edge_runtime::collect::{self, Collector};
use edge_runtime::live::{LiveServer, LiveState};
use edge_runtime::mqtt::{self, MqttSink};
use edge_runtime::pipeline::{FrameObserver, Hooks, RunCounters};
use edge_runtime::reload::{self, ModelSlot, Reloader};
use edge_runtime::source::{self, SourceSpec};
use edge_runtime::{Classifier, RuntimeError, bench, devices, enrol, pipeline, sink};

const EXIT_ERROR: u8 = 1;
// 2 (usage) is clap's own exit code for bad flags; a bad --source value uses it too.
const EXIT_USAGE: u8 = 2;
const EXIT_SKIPPED: u8 = 3;
const EXIT_SOURCE_LOST: u8 = 4;

fn main() -> ExitCode {
    let cli = Cli::parse_from(cli::expand_camera_shortcut(std::env::args_os().collect()));
    let result = match cli.command {
        Command::Classify(args) => classify_cmd(args),
        Command::Run(args) => match args.source.parse::<SourceSpec>() {
            Ok(spec) => run_cmd(spec, args.stream),
            Err(e) => Err(e.into()),
        },
        Command::Bench(args) => bench_cmd(args).map(|_| ExitCode::SUCCESS),
        Command::Devices(args) => devices_cmd(args),
        Command::Enrol(args) => enrol_cmd(args),
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        let runtime = e.downcast_ref::<RuntimeError>().or_else(|| match e.downcast_ref::<enrol::EnrolError>() {
            Some(enrol::EnrolError::Runtime(r)) => Some(r),
            _ => None,
        });
        ExitCode::from(match runtime {
            Some(
                RuntimeError::BadSource(_)
                | RuntimeError::BadCapture(_)
                | RuntimeError::RoiOutside { .. }
                | RuntimeError::BadMqtt { .. }
                | RuntimeError::UnknownClass { .. }
                | RuntimeError::BadCaptureDir(_),
            ) => EXIT_USAGE,
            Some(RuntimeError::SourceLost { .. }) => EXIT_SOURCE_LOST,
            _ => EXIT_ERROR,
        })
    })
}

fn load(m: &ModelArgs) -> anyhow::Result<Classifier> {
    let c = Classifier::load(&m.load_options())?;
    eprintln!(
        "model {} ({}, {} classes, {}, {}, {} thread(s))",
        m.model.display(),
        c.manifest().name,
        c.num_classes(),
        c.execution().name(),
        c.engine_detail(),
        m.threads.unwrap_or(1)
    );
    if let Some(note) = c.engine_note() {
        eprintln!("engine auto: {note}");
    }
    if !c.timings().is_empty() {
        let timed: Vec<String> =
            c.timings().iter().map(|t| format!("{} {} {:.1} ms", t.engine, t.execution.name(), t.ms)).collect();
        // Candidates from two engines: an `--engine auto` choice; from one: `--int8 auto`.
        let engines_compared = c.timings().iter().any(|t| t.engine != c.engine());
        eprintln!(
            "{} auto: {} per inference -> {} {}",
            if engines_compared { "engine" } else { "int8" },
            timed.join(", "),
            c.engine(),
            c.execution().name()
        );
    }
    Ok(c)
}

fn classify_cmd(args: ClassifyArgs) -> anyhow::Result<ExitCode> {
    let classifier = load(&args.model)?;
    let opts = args.options();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if !args.json {
        writeln!(out, "{}", classify::table_header())?;
    }
    let summary = classify::classify_paths(&classifier, &args.paths, &opts, |outcome| {
        let written = match outcome {
            Outcome::Classified(r) if args.json => {
                serde_json::to_writer(&mut out, r).map_err(std::io::Error::other).and_then(|_| writeln!(out))
            }
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
    Ok(if summary.skipped > 0 { ExitCode::from(EXIT_SKIPPED) } else { ExitCode::SUCCESS })
}

fn run_cmd(spec: SourceSpec, args: StreamArgs) -> anyhow::Result<ExitCode> {
    // Open the source before the (slower) model load so a missing camera fails fast.
    let source = source::open_with(&spec, args.looping, args.model.limits(), &args.capture.options())?;
    if let Some(note) = source.note() {
        eprintln!("{note}");
    }
    if args.looping && source.is_live() {
        eprintln!(
            "warning: --loop ignored: {} is a live source and never ends (--loop restarts dir: sources)",
            source.describe()
        );
    }
    let mqtt_opts = args.mqtt.options()?;
    let slot = Arc::new(ModelSlot::new(load(&args.model)?));
    let classifier = slot.current();
    let opts = args.options();
    let labels = classifier.manifest().labels.0.clone();
    opts.check(&labels)?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed)).context("installing the Ctrl-C handler")?;
    let mut sinks = vec![sink::sink_for(args.emit, Box::new(std::io::stdout().lock()))];
    let mut mqtt_stats = None;
    if let Some(m) = &mqtt_opts {
        let mut mqtt_sink = MqttSink::connect(m, &classifier.manifest().name, &labels)?;
        mqtt_sink.follow_model(slot.clone());
        eprintln!("mqtt: publishing to {} as {}/{}/", m.url, m.url.prefix, m.name);
        mqtt_stats = Some(mqtt_sink.stats_handle());
        sinks.push(Box::new(mqtt_sink));
    }
    let mut sink = sink::Tee(sinks);

    drop(classifier);
    let counters = Arc::new(RunCounters::default());
    // A replaced --model file (or SIGHUP) is loaded, checked against this run's class names
    // and swapped in between frames; a bad one leaves the running model in place.
    let reloader = (!args.live.no_reload).then(|| {
        let (run_opts, ha_binary) = (opts.clone(), mqtt_opts.as_ref().map(|m| m.ha_binary.clone()).unwrap_or_default());
        let check: reload::Check = Box::new(move |c: &Classifier| {
            let labels = &c.manifest().labels.0;
            run_opts.check(labels)?;
            mqtt::check_classes("--ha-binary", &ha_binary, labels)
        });
        let log: reload::Log = Box::new(|line: &str| eprintln!("{line}"));
        Reloader::start(slot.clone(), args.model.load_options(), reload::sighup_flag(), check, log)
    });
    let live = match &args.live.http {
        Some(addr) => {
            let state = Arc::new(LiveState::new(
                &source.describe(),
                counters.clone(),
                slot.clone(),
                reloader.as_ref().map(Reloader::status),
            ));
            let server = LiveServer::start(addr, state.clone())?;
            eprintln!("http: live page on http://{}/ (/api/latest, /api/frame.jpg, /healthz, /metrics)", server.addr());
            Some((state, server))
        }
        None => None,
    };
    let collector = match args.collect.options() {
        Some(o) => {
            let note = live.as_ref().map(|(state, _)| state.clone());
            let log: collect::Log = Box::new(move |line: &str| {
                eprintln!("{line}");
                if let Some(state) = &note {
                    state.note(line.to_string());
                }
            });
            eprintln!("capture: frames scoring below {} go to {}/<label>/", o.below, o.dir.display());
            Some(Collector::start(o, log)?)
        }
        None => None,
    };
    let mut observers: Vec<&dyn FrameObserver> = Vec::new();
    if let Some((state, _)) = &live {
        observers.push(state.as_ref());
    }
    if let Some(c) = &collector {
        observers.push(c);
    }
    let hooks = Hooks { counters: &counters, observers: &observers };
    let outcome = pipeline::run_with(&slot, source, &mut sink, &opts, &stop, hooks);
    for s in &outcome.summary.skipped {
        eprintln!("skipped {}: {}", s.path.display(), s.reason);
    }
    eprintln!("{}", outcome.summary);
    if let Some(stats) = mqtt_stats.map(|h| h.get()) {
        eprintln!(
            "summary: mqtt published {}, dropped {}, reconnects {}",
            stats.published, stats.dropped, stats.reconnects
        );
    }
    if let Some(status) = reloader.as_ref().map(|r| r.status()) {
        let st = common::lock(&status).clone();
        if st.reloads + st.failures > 0 {
            eprintln!("summary: model reloads {}, rejected {}", st.reloads, st.failures);
        }
    }
    if let Some(c) = &collector {
        let st = c.finish();
        eprintln!(
            "summary: captured {} frame(s) this run, {} busy-skipped; {} holds {} ({:.1} MB){}",
            st.saved.load(Ordering::Relaxed),
            st.busy.load(Ordering::Relaxed),
            args.collect.capture.as_deref().map(|d| d.display().to_string()).unwrap_or_default(),
            st.files.load(Ordering::Relaxed),
            st.bytes.load(Ordering::Relaxed) as f64 / 1e6,
            st.stopped().map(|r| format!("; stopped: {r}")).unwrap_or_default()
        );
    }
    match outcome.error {
        Some(e) => Err(e.into()),
        None if !outcome.summary.skipped.is_empty() => Ok(ExitCode::from(EXIT_SKIPPED)),
        None => Ok(ExitCode::SUCCESS),
    }
}

fn devices_cmd(args: DevicesArgs) -> anyhow::Result<ExitCode> {
    let report = devices::scan();
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        write!(out, "{}", devices::render_text(&report))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn bench_cmd(args: BenchArgs) -> anyhow::Result<()> {
    match args.command {
        Some(BenchCommand::Report(r)) => bench::run_report(&r.inputs, r.broker()?.as_ref(), &(&r.output).into()),
        None if args.measure.child => bench::run_child(&args.measure.options()?),
        None => bench::run_measure(&args.measure.options()?),
    }
}

fn enrol_cmd(args: EnrolArgs) -> anyhow::Result<ExitCode> {
    if args.list {
        let (manifest, table) = enrol::list(&args.input())?;
        let mut out = std::io::stdout().lock();
        let kept = manifest.enrolment.as_ref().map_or(0, |e| e.kept.len());
        writeln!(out, "{} ({} classes)", manifest.name, manifest.labels.len())?;
        match &manifest.enrolment {
            Some(e) => writeln!(out, "head: {} (temperature {}), {kept} kept trained classes", e.head, e.temperature)?,
            None => writeln!(out, "no enrolled classes yet")?,
        }
        writeln!(out, "{:<32} examples", "class")?;
        for c in table.counts() {
            writeln!(out, "{:<32} {}", c.name, c.examples)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let opts = args.options()?;
    let report = enrol::enrol(&opts, &mut |line| eprintln!("  {line}"))?;
    for (name, reason) in &report.skipped {
        eprintln!("skipped {name}: {reason}");
    }
    let classes: Vec<String> = report.classes.iter().map(|c| format!("{} ({})", c.name, c.examples)).collect();
    let kept = if report.kept > 0 { format!(" + {} kept trained classes", report.kept) } else { String::new() };
    println!("enrolled classes: {}{kept}", classes.join(", "));
    let loo = report.loo_accuracy.map(|a| format!(", leave-one-out accuracy {:.1}%", a * 100.0)).unwrap_or_default();
    println!(
        "{} head, temperature {}{loo}; embedded {} example(s) in {:.0} ms, fitted in {:.1} ms",
        report.head,
        report.temperature,
        report.embedded,
        report.embed_time.as_secs_f64() * 1000.0,
        report.fit_time.as_secs_f64() * 1000.0
    );
    if report.labels.len() == 1 {
        println!("note: with one class every frame scores 100% '{}': enrol at least one more class", report.labels[0]);
    }
    println!("wrote {} ({:.1} MB, {} classes)", report.out.display(), report.bytes as f64 / 1e6, report.labels.len());
    Ok(if report.skipped.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_SKIPPED) })
}
