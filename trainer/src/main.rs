//! `trainer`: fit, evaluate, predict with and export perch image classifiers.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "trainer", version, about = "Transfer learning for perch image classifiers (burn)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a classifier: frozen ImageNet backbone + new head on cached features, then
    /// optionally fine-tune the top layers. Checkpoints every epoch; --resume continues.
    Fit(trainer::fit::FitArgs),
    /// Metrics of a run's best model on a labelled image folder.
    Eval(trainer::eval::EvalArgs),
    /// Classify image files with a run's best model.
    Predict(trainer::predict::PredictArgs),
    /// Write a run's best model as one self-describing ONNX file (fp32, or calibrated int8
    /// QDQ), checked on the validation set: fails without writing if accuracy drops too far.
    Export(trainer::export::ExportArgs),
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Fit(args) => {
            let summary = trainer::fit::run(&args).context("trainer fit failed")?;
            println!("{summary}");
        }
        Command::Eval(args) => {
            let report = trainer::eval::run(&args).context("trainer eval failed")?;
            let m = &report.metrics;
            println!("accuracy {:.4} on {} images ({} skipped)", m.accuracy, m.images, report.skipped.len());
            for (p, why) in &report.skipped {
                println!("  skipped {}: {why}", p.display());
            }
            for c in &m.per_class {
                println!("  {:<20} precision {:.3} recall {:.3} f1 {:.3} (n={})", c.label, c.precision, c.recall, c.f1, c.support);
            }
        }
        Command::Predict(args) => {
            let failed = trainer::predict::run(&args).context("trainer predict failed")?;
            if failed > 0 {
                bail!("{failed} of {} images could not be classified", args.images.len());
            }
        }
        Command::Export(args) => {
            trainer::export::run(&args).context("trainer export failed")?;
        }
    }
    Ok(())
}
