//! The command line: clap's definitions of the `trainer` subcommands, turned into the
//! library's option structs (defaults filled in, flags that would be ignored warned about).

use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, Parser, Subcommand, ValueEnum};
use models::Backbone;
use trainer::eval::EvalOptions;
use trainer::export::{ExportOptions, ExportPrecision};
use trainer::fit::{FitOptions, OptimizerKind, Recipe};
use trainer::frozen::FrozenEngine;
use trainer::predict::PredictOptions;
use trainer::run::{ClassWeights, DeviceKind};

#[derive(Parser)]
#[command(name = "trainer", version, about = "Transfer learning for perch image classifiers (burn)")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Train a classifier: frozen ImageNet backbone + new head on cached features, then
    /// optionally fine-tune the top layers. Checkpoints every epoch; --resume continues.
    Fit(FitArgs),
    /// Metrics of a run's best model on a labelled image folder.
    Eval(EvalArgs),
    /// Classify image files with a run's best model.
    Predict(PredictArgs),
    /// Write a run's best model as one self-describing ONNX file (fp32, or calibrated int8
    /// QDQ), checked on the validation set: fails without writing if accuracy drops too far.
    Export(ExportArgs),
}

/// `--device`, shared by fit, eval and predict.
#[derive(Debug, Clone, Args)]
pub struct DeviceArg {
    /// Compute device: flex (CPU), cuda (NVIDIA; a build with `--features cuda`, see
    /// scripts/seed-llvm.sh) or wgpu (Vulkan/Metal; a build with `--features wgpu`).
    #[arg(long, value_enum, default_value_t)]
    pub device: Device,
}

#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum Device {
    #[default]
    Flex,
    Cuda,
    Wgpu,
}

impl From<DeviceArg> for DeviceKind {
    fn from(d: DeviceArg) -> Self {
        match d.device {
            Device::Flex => DeviceKind::Flex,
            Device::Cuda => DeviceKind::Cuda,
            Device::Wgpu => DeviceKind::Wgpu,
        }
    }
}

/// `--run`, shared by eval and predict.
#[derive(Debug, Clone, Args)]
pub struct RunArg {
    /// The `trainer fit --out` folder.
    #[arg(long)]
    pub run: PathBuf,
}

/// Where the backbone's weights come from (fit).
#[derive(Debug, Clone, Args)]
pub struct WeightsArgs {
    /// Folder with the ImageNet weights (default: $PERCH_WEIGHTS, else a download attempt).
    #[arg(long)]
    pub weights_dir: Option<PathBuf>,
    /// An explicit safetensors weights file (efficientnet-b0 user weights).
    #[arg(long)]
    pub weights: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Optimizer {
    Adam,
    Sgd,
}

/// Train a classifier on an image folder (see `trainer fit --help`).
#[derive(Debug, Clone, Args)]
pub struct FitArgs {
    /// mobilenetv2 | efficientnet-lite0 | efficientnet-b0
    #[arg(long)]
    pub backbone: Backbone,
    /// DIR/train/<class>/* + DIR/val/<class>/* (or test/), or DIR/<class>/* with --val-split.
    #[arg(long)]
    pub data: PathBuf,
    /// Run folder: checkpoints/, history.csv/json, run.json, best.bpk, metrics.json, *.png.
    #[arg(long)]
    pub out: PathBuf,
    /// Epochs of phase 1 (frozen backbone, new head).
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    #[arg(long, value_enum, default_value_t = Optimizer::Adam)]
    pub optimizer: Optimizer,
    /// SGD momentum (ignored by Adam).
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    #[arg(long, default_value_t = 0.1)]
    pub label_smoothing: f32,
    /// Dropout before the dense layer of the head.
    #[arg(long, default_value_t = 0.2)]
    pub dropout: f64,
    /// Comma list of flip,rotate,zoom,crop. What is cached: --augment-views seeded views per
    /// training image (view 0 = the plain image), computed once in epoch 1; each epoch then
    /// draws one cached view per image. Validation images are never augmented.
    #[arg(long, default_value = "")]
    pub augment: String,
    /// Cached views per training image when --augment is given.
    #[arg(long, default_value_t = 5)]
    pub augment_views: usize,
    /// Phase 2: unfreeze the top N backbone stages (0: no fine-tuning).
    #[arg(long, default_value_t = 0)]
    pub fine_tune_layers: usize,
    /// Epochs of phase 2 (numbered after phase 1's).
    #[arg(long, default_value_t = 5)]
    pub fine_tune_epochs: usize,
    /// Phase 2 learning rate = --lr x this.
    #[arg(long, default_value_t = 0.1)]
    pub fine_tune_lr_factor: f64,
    /// Continue the run in --out from its last checkpoint (same settings required).
    #[arg(long)]
    pub resume: bool,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    #[command(flatten)]
    pub weights: WeightsArgs,
    /// Fraction of each class held out for validation when DIR has no val/ or test/.
    #[arg(long)]
    pub val_split: Option<f32>,
    /// Use only the first N images of each class (train and val): quick runs and tests.
    #[arg(long)]
    pub limit_per_class: Option<usize>,
    /// Feature cache folder (default RUN_DIR/cache); share it between runs to reuse features.
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    #[command(flatten)]
    pub device: DeviceArg,
    /// What runs the frozen backbone pass (epoch 1): auto (time them, keep the fastest), burn,
    /// tract (built in) or ort (onnxruntime's library, see --ort-lib). On a GPU --device auto
    /// stays on burn.
    #[arg(long, value_enum, default_value_t = FrozenEngineArg::Auto)]
    pub frozen_engine: FrozenEngineArg,
    /// libonnxruntime.so (or a folder holding it, e.g. a pip install's onnxruntime/capi) for
    /// --frozen-engine ort|auto; default: ORT_DYLIB_PATH, then system and pip folders.
    #[arg(long)]
    pub ort_lib: Option<PathBuf>,
    /// A set of defaults: linear (new head on frozen features: the defaults shown here) or
    /// finetune (--epochs 30 --augment flip,rotate,crop --augment-views 5 --fine-tune-layers 4
    /// --fine-tune-epochs 10 --fine-tune-lr-factor 0.3). Flags given explicitly win.
    #[arg(long, value_enum, default_value_t = RecipeArg::Linear)]
    pub recipe: RecipeArg,
    /// Loss weights per class: none, or auto (1/class size, so rare classes count as much as
    /// common ones; fit warns when the largest class has 3x the images of the smallest).
    #[arg(long, value_enum, default_value_t = ClassWeightsArg::None)]
    pub class_weights: ClassWeightsArg,
    /// After val has chosen the best epoch, train that schedule again from scratch on train +
    /// val: best.bpk (what eval, predict and export use) is that model, the one val chose is
    /// kept as selected.bpk, and test/ is scored on best.bpk. `--refit false` turns it off.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value_t = false, action = clap::ArgAction::Set)]
    pub refit: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RecipeArg {
    Linear,
    Finetune,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ClassWeightsArg {
    None,
    Auto,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FrozenEngineArg {
    Auto,
    Burn,
    Tract,
    Ort,
}

impl From<FrozenEngineArg> for FrozenEngine {
    fn from(e: FrozenEngineArg) -> Self {
        match e {
            FrozenEngineArg::Auto => FrozenEngine::Auto,
            FrozenEngineArg::Burn => FrozenEngine::Burn,
            FrozenEngineArg::Tract => FrozenEngine::Tract,
            FrozenEngineArg::Ort => FrozenEngine::Ort,
        }
    }
}

impl FitArgs {
    /// The options, with `--recipe`'s defaults for the flags `matches` says were not given.
    pub fn into_options_with_recipe(self, matches: Option<&ArgMatches>) -> FitOptions {
        let recipe = match self.recipe {
            RecipeArg::Linear => Recipe::Linear,
            RecipeArg::Finetune => Recipe::Finetune,
        };
        let mut opts = self.into_options();
        recipe.apply(&mut opts, |id| matches.is_some_and(|m| m.value_source(id) == Some(ValueSource::CommandLine)));
        opts
    }

    pub fn into_options(self) -> FitOptions {
        FitOptions {
            backbone: self.backbone,
            data: self.data,
            out: self.out,
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr: self.lr,
            optimizer: match self.optimizer {
                Optimizer::Adam => OptimizerKind::Adam,
                Optimizer::Sgd => OptimizerKind::Sgd,
            },
            momentum: self.momentum,
            label_smoothing: self.label_smoothing,
            dropout: self.dropout,
            augment: self.augment,
            augment_views: self.augment_views,
            fine_tune_layers: self.fine_tune_layers,
            fine_tune_epochs: self.fine_tune_epochs,
            fine_tune_lr_factor: self.fine_tune_lr_factor,
            resume: self.resume,
            seed: self.seed,
            weights_dir: self.weights.weights_dir,
            weights: self.weights.weights,
            val_split: self.val_split,
            limit_per_class: self.limit_per_class,
            cache_dir: self.cache_dir,
            device: self.device.into(),
            frozen_engine: self.frozen_engine.into(),
            ort_lib: self.ort_lib,
            class_weights: match self.class_weights {
                ClassWeightsArg::None => ClassWeights::None,
                ClassWeightsArg::Auto => ClassWeights::Auto,
            },
            refit: self.refit,
        }
    }
}

/// Flags given on the command line that the rest of it makes pointless: each one a warning.
pub fn ignored_flags(opts: &FitOptions, matches: &ArgMatches) -> Vec<String> {
    let given = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
    let mut warnings = Vec::new();
    if given("momentum") && opts.optimizer != OptimizerKind::Sgd {
        warnings.push(format!("--momentum is ignored with --optimizer {} (only sgd uses it)", opts.optimizer));
    }
    if opts.fine_tune_layers == 0 {
        for flag in ["fine_tune_epochs", "fine_tune_lr_factor"].into_iter().filter(|f| given(f)) {
            warnings.push(format!("--{} is ignored without --fine-tune-layers N (N > 0)", flag.replace('_', "-")));
        }
    }
    let no_augment = opts.augment.parse::<trainer::augment::Augment>().is_ok_and(|a| a.is_none());
    if given("augment_views") && no_augment {
        warnings.push("--augment-views is ignored without --augment".into());
    }
    warnings
}

/// Evaluate a trained run on a labelled image folder.
#[derive(Debug, Clone, Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub run: RunArg,
    /// DIR/<split>/<class>/ with --split; else DIR/val/<class>/ or DIR/test/<class>/, else
    /// DIR/<class>/. Default: the run's own data folder (run.json).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Which sub-folder of --data to score: val or test (the best epoch was chosen on val, so
    /// test is the unbiased figure). `val` on the run's own data without a val/ folder scores
    /// the images the run held out of train/ for validation.
    #[arg(long, value_enum)]
    pub split: Option<SplitArg>,
    /// Also write the metrics as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[arg(long)]
    pub limit_per_class: Option<usize>,
    #[command(flatten)]
    pub device: DeviceArg,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SplitArg {
    Val,
    Test,
}

impl From<EvalArgs> for EvalOptions {
    fn from(a: EvalArgs) -> Self {
        EvalOptions {
            run: a.run.run,
            data: a.data,
            split: a.split.map(|s| match s {
                SplitArg::Val => "val".to_string(),
                SplitArg::Test => "test".to_string(),
            }),
            json: a.json,
            limit_per_class: a.limit_per_class,
            device: a.device.into(),
        }
    }
}

/// Classify images with a trained run's best model.
#[derive(Debug, Clone, Args)]
pub struct PredictArgs {
    #[command(flatten)]
    pub run: RunArg,
    /// Image files or folders (recursive)
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// Classes shown per image.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..))]
    pub top_k: u16,
    /// One JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub device: DeviceArg,
}

impl From<PredictArgs> for PredictOptions {
    fn from(a: PredictArgs) -> Self {
        PredictOptions {
            run: a.run.run,
            images: a.images,
            top_k: usize::from(a.top_k),
            json: a.json,
            device: a.device.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Precision {
    Fp32,
    Int8,
}

#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum CalibrationMethod {
    Minmax,
    #[default]
    Percentile,
    Entropy,
}

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// Run folder written by `trainer fit --out` (run.json + best.bpk).
    #[arg(long)]
    pub run: PathBuf,
    /// The ONNX file to write.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value_t = Precision::Fp32)]
    pub precision: Precision,
    /// Training images used to calibrate int8 activation ranges.
    #[arg(long, default_value_t = 200)]
    pub calibration_images: usize,
    /// How activation ranges are chosen. percentile (default) clips the rare outliers that
    /// minmax keeps: on hymenoptera/mobilenetv2 it halved minmax's int8-native drop (0.65 vs
    /// 1.96 points), as entropy did, at two thirds of entropy's time.
    #[arg(long, value_enum, default_value_t = CalibrationMethod::default())]
    pub calibration_method: CalibrationMethod,
    /// Largest accepted validation accuracy drop in points (int8 vs fp32; fp32 vs the run's
    /// own val accuracy); a larger drop fails the export and writes nothing.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub max_drop: f64,
    #[arg(long, default_value_t = 13)]
    pub opset: i64,
    /// Batch dimension left symbolic (`N`) instead of 1.
    #[arg(long)]
    pub dynamic_batch: bool,
    /// int8 weights in 7 bits ([-63, 63]) instead of 8: for `edge-runtime --engine ort` on x86
    /// CPUs without VNNI, where onnxruntime's u8 x s8 kernels saturate with full-range weights.
    /// tract and ARM devices do not need it.
    #[arg(long)]
    pub reduce_range: bool,
}

impl From<ExportArgs> for ExportOptions {
    fn from(a: ExportArgs) -> Self {
        use models::manifest::CalibrationMethod as Method;
        ExportOptions {
            run: a.run,
            out: a.out,
            precision: match a.precision {
                Precision::Fp32 => ExportPrecision::Fp32,
                Precision::Int8 => ExportPrecision::Int8,
            },
            calibration_images: a.calibration_images,
            calibration_method: match a.calibration_method {
                CalibrationMethod::Minmax => Method::Minmax,
                CalibrationMethod::Percentile => Method::Percentile,
                CalibrationMethod::Entropy => Method::Entropy,
            },
            max_drop: a.max_drop,
            opset: a.opset,
            dynamic_batch: a.dynamic_batch,
            reduce_range: a.reduce_range,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, FromArgMatches};

    use super::*;

    fn fit_warnings(extra: &[&str]) -> Vec<String> {
        let mut argv = vec!["trainer", "fit", "--backbone", "mobilenetv2", "--data", "d", "--out", "o"];
        argv.extend_from_slice(extra);
        let matches = Cli::command().try_get_matches_from(argv).unwrap();
        let Command::Fit(args) = Cli::from_arg_matches(&matches).unwrap().command else { panic!("not fit") };
        ignored_flags(&args.into_options(), matches.subcommand_matches("fit").unwrap())
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn ignored_flags_are_warned_about_only_when_given_and_ignored() {
        assert!(fit_warnings(&[]).is_empty());
        assert!(fit_warnings(&["--optimizer", "sgd", "--momentum", "0.5"]).is_empty());
        assert!(fit_warnings(&["--momentum", "0.5"])[0].contains("--momentum"));
        let w = fit_warnings(&["--fine-tune-epochs", "2", "--fine-tune-lr-factor", "0.5"]);
        assert!(w[0].contains("--fine-tune-epochs") && w[1].contains("--fine-tune-lr-factor"), "{w:?}");
        assert!(fit_warnings(&["--fine-tune-layers", "2", "--fine-tune-epochs", "2"]).is_empty());
        assert!(fit_warnings(&["--augment-views", "3"])[0].contains("--augment-views"));
        assert!(fit_warnings(&["--augment", "flip", "--augment-views", "3"]).is_empty());
    }

    fn fit_options(extra: &[&str]) -> FitOptions {
        let mut argv = vec!["trainer", "fit", "--backbone", "mobilenetv2", "--data", "d", "--out", "o"];
        argv.extend_from_slice(extra);
        let matches = Cli::command().try_get_matches_from(argv).unwrap();
        let Command::Fit(args) = Cli::from_arg_matches(&matches).unwrap().command else { panic!("not fit") };
        args.into_options_with_recipe(matches.subcommand_matches("fit"))
    }

    #[test]
    fn the_finetune_recipe_fills_in_only_what_was_not_given() {
        let linear = fit_options(&[]);
        assert_eq!((linear.fine_tune_layers, linear.augment.as_str()), (0, ""));
        let ft = fit_options(&["--recipe", "finetune"]);
        assert_eq!(ft.fine_tune_layers, trainer::fit::FINETUNE_LAYERS);
        assert_eq!(ft.fine_tune_epochs, trainer::fit::FINETUNE_EPOCHS);
        assert_eq!(
            (ft.augment.as_str(), ft.augment_views),
            (trainer::fit::FINETUNE_AUGMENT, trainer::fit::FINETUNE_VIEWS)
        );
        assert_eq!(
            (ft.epochs, ft.fine_tune_lr_factor),
            (trainer::fit::FINETUNE_HEAD_EPOCHS, trainer::fit::FINETUNE_LR_FACTOR)
        );
        assert_eq!(fit_options(&["--recipe", "finetune", "--epochs", "7"]).epochs, 7);
        let own = fit_options(&["--recipe", "finetune", "--fine-tune-layers", "3", "--augment", "flip"]);
        assert_eq!((own.fine_tune_layers, own.augment.as_str()), (3, "flip"));
        assert_eq!(own.fine_tune_epochs, trainer::fit::FINETUNE_EPOCHS);
        // Explicitly given defaults win too.
        assert_eq!(fit_options(&["--recipe", "finetune", "--fine-tune-layers", "0"]).fine_tune_layers, 0);
    }

    #[test]
    fn top_k_must_be_at_least_one() {
        let parse = |k: &str| Cli::try_parse_from(["trainer", "predict", "--run", "r", "--top-k", k, "a.jpg"]);
        assert!(parse("0").is_err());
        assert!(parse("1").is_ok());
    }
}
