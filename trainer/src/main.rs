//! `trainer`: fit, evaluate, predict with and export perch image classifiers.

mod cli;

use anyhow::{Context, Result, bail};
use clap::{CommandFactory, FromArgMatches};
use cli::{Cli, Command};

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match cli.command {
        Command::Fit(args) => {
            let opts = args.into_options_with_recipe(matches.subcommand_matches("fit"));
            if let Some(fit) = matches.subcommand_matches("fit") {
                for warning in cli::ignored_flags(&opts, fit) {
                    tracing::warn!("{warning}");
                }
            }
            let summary = trainer::fit::run(&opts).context("trainer fit failed")?;
            println!("{summary}");
        }
        Command::Eval(args) => {
            let report = trainer::eval::run(&args.into()).context("trainer eval failed")?;
            let m = &report.metrics;
            println!("accuracy {:.4} on {} images ({} skipped)", m.accuracy, m.images, report.skipped.len());
            for (p, why) in &report.skipped {
                println!("  skipped {}: {why}", p.display());
            }
            for line in m.class_lines() {
                println!("  {line}");
            }
        }
        Command::Predict(args) => {
            let opts: trainer::predict::PredictOptions = args.into();
            let s = trainer::predict::run(&opts).context("trainer predict failed")?;
            if s.failed > 0 {
                bail!("{} of {} images could not be classified", s.failed, s.failed + s.classified);
            }
        }
        Command::Export(args) => {
            trainer::export::run(&args.into()).context("trainer export failed")?;
        }
    }
    Ok(())
}
