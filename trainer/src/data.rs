//! Image-folder datasets: `DIR/train/<class>/*` + `DIR/val/<class>/*` (+ `DIR/test/<class>/*`),
//! or one `DIR/<class>/*` folder split into train/val by a seeded per-class shuffle.
//!
//! No peeking: the best epoch is chosen on the validation split, never on `test/`. With
//! `train/` + `test/` and no `val/`, validation is held out of `train/` (`--val-split`, default
//! [`DEFAULT_HOLDOUT`]) and `test/` is only scored at the end, on the chosen model. Class = folder
//! name, classes sorted by name so label indices never depend on the file system's order.
//! Files without an image extension are skipped and counted; undecodable images are found
//! (and counted) later, when the features are computed.

use std::path::{Path, PathBuf};

use models::Labels;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::error::TrainerError;
use crate::run::RunInfo;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub path: PathBuf,
    pub label: usize,
}

/// Files left out, with the reason (not an image, unreadable, ...).
pub type Skipped = Vec<(PathBuf, String)>;

/// Fraction of each class of `train/` held out for validation when a dataset has `test/` but
/// no `val/` (and no `--val-split`).
pub const DEFAULT_HOLDOUT: f32 = 0.15;

#[derive(Debug, Clone)]
pub struct Splits {
    pub labels: Labels,
    pub train: Vec<Sample>,
    /// Chooses the best epoch (and gates the export).
    pub val: Vec<Sample>,
    /// `DIR/test/`, scored once on the chosen model (empty without one).
    pub test: Vec<Sample>,
    /// Files left out, with the reason (not an image, unreadable, ...).
    pub skipped: Vec<(PathBuf, String)>,
}

fn dataset_err(path: &Path, reason: impl Into<String>) -> TrainerError {
    TrainerError::Dataset { path: path.to_path_buf(), reason: reason.into() }
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, TrainerError> {
    let rd = std::fs::read_dir(dir).map_err(TrainerError::io(dir))?;
    let mut out = Vec::new();
    for entry in rd {
        out.push(entry.map_err(TrainerError::io(dir))?.path());
    }
    out.sort();
    Ok(out)
}

/// Class folders (sorted) of `dir`; hidden folders and `__MACOSX` are ignored.
fn class_dirs(dir: &Path) -> Result<Vec<PathBuf>, TrainerError> {
    Ok(sorted_entries(dir)?.into_iter().filter(|p| p.is_dir() && !models::preprocess::is_hidden_entry(p)).collect())
}

fn class_name(dir: &Path) -> String {
    dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Image files of one class folder and its sub-folders (a class's photos sorted into
/// `2023/`, `garden/`, ... belong to it, as in Keras' and torchvision's image folders); other
/// files go to `skipped`.
fn class_files(dir: &Path, skipped: &mut Vec<(PathBuf, String)>) -> Result<Vec<PathBuf>, TrainerError> {
    // The class folder itself must be readable; an unreadable folder below it is a skip.
    std::fs::read_dir(dir).map_err(TrainerError::io(dir))?;
    let (mut files, mut passed) = (Vec::new(), Vec::new());
    models::preprocess::find_images(dir, &mut Default::default(), &mut files, &mut passed);
    skipped.extend(passed.into_iter().map(|(p, why)| (p, why.to_string())));
    Ok(files)
}

/// Reads one `<class>/*` folder: labels (sorted class names) and samples per class.
fn read_classes(
    dir: &Path,
    skipped: &mut Vec<(PathBuf, String)>,
) -> Result<(Vec<String>, Vec<Vec<PathBuf>>), TrainerError> {
    let classes = class_dirs(dir)?;
    if classes.is_empty() {
        return Err(dataset_err(
            dir,
            "has no class folders: expected DIR/<class>/<image> (or DIR/train/<class>/ and DIR/val/<class>/)",
        ));
    }
    let mut names = Vec::new();
    let mut files = Vec::new();
    for c in &classes {
        names.push(class_name(c));
        files.push(class_files(c, skipped)?);
    }
    Ok((names, files))
}

/// Enough classes, each with images. `skipped`: what reading the classes passed over (an
/// empty class's HEIC photos are named in its error).
fn require_trainable(
    dir: &Path,
    names: &[String],
    files: &[Vec<PathBuf>],
    skipped: &[(PathBuf, String)],
) -> Result<(), TrainerError> {
    if names.len() < 2 {
        return Err(dataset_err(
            dir,
            format!("has a single class ({}): a classifier needs at least 2 class folders", names.join(", ")),
        ));
    }
    for (name, f) in names.iter().zip(files) {
        if f.is_empty() {
            let class_dir = dir.join(name);
            // A folder of iPhone photos is the likely case: say what it holds and what to do.
            let heif = skipped
                .iter()
                .filter(|(p, _)| p.starts_with(&class_dir) && models::preprocess::is_heif_path(p))
                .count();
            let why = if heif > 0 {
                format!(
                    "class folder holds {heif} HEIC/HEIF/AVIF photo(s) and no other images: {}",
                    models::preprocess::HEIF_HINT
                )
            } else {
                "class folder has no images (.jpg/.jpeg/.png/...): add images or remove the folder".to_string()
            };
            return Err(dataset_err(&class_dir, why));
        }
    }
    Ok(())
}

fn to_samples(files: Vec<Vec<PathBuf>>) -> Vec<Sample> {
    files
        .into_iter()
        .enumerate()
        .flat_map(|(label, fs)| fs.into_iter().map(move |path| Sample { path, label }))
        .collect()
}

/// The folder of split `split` (`val`, `test`) of a dataset: `DIR/<split>`, except that the
/// validation split is also found as `valid/` or `validation/` (the names Kaggle and Roboflow
/// exports and Keras tutorials use) when there is no `val/`.
pub fn split_dir(dir: &Path, split: &str) -> PathBuf {
    let names: &[&str] = if split == "val" { &["val", "valid", "validation"] } else { &[split] };
    names.iter().map(|n| dir.join(n)).find(|p| p.is_dir()).unwrap_or_else(|| dir.join(split))
}

/// Opens an image-folder dataset. With `DIR/train`, validation comes from `DIR/val` (or
/// `DIR/test`); `val_split` then is ignored unless neither exists. Without `DIR/train`, `DIR`
/// holds the class folders and `val_split` (0..1) of each class is held out, chosen by `seed`.
pub fn open_image_folder(dir: &Path, val_split: Option<f32>, seed: u64) -> Result<Splits, TrainerError> {
    if !dir.is_dir() {
        return Err(dataset_err(
            dir,
            "is not a folder: pass --data DIR with DIR/train/<class>/ and DIR/val/<class>/ (or DIR/<class>/ with --val-split 0.2)",
        ));
    }
    let mut skipped = Vec::new();
    let train_dir = dir.join("train");
    let (val_dir, test_dir) = (split_dir(dir, "val"), dir.join("test"));
    let has_train = train_dir.is_dir();
    let root = if has_train { train_dir } else { dir.to_path_buf() };
    let (names, files) = read_classes(&root, &mut skipped)?;
    require_trainable(&root, &names, &files, &skipped)?;
    let labels = Labels(names.clone());
    let test = if has_train && test_dir.is_dir() { split_folder(&test_dir, &names, &mut skipped)? } else { Vec::new() };

    if has_train && val_dir.is_dir() {
        let val = split_folder(&val_dir, &names, &mut skipped)?;
        if val.is_empty() {
            return Err(dataset_err(
                &val_dir,
                "has no validation images: fill DIR/val/<class>/ or remove it and use --val-split",
            ));
        }
        return Ok(Splits { labels, train: to_samples(files), val, test, skipped });
    }

    let frac = match val_split {
        Some(f) => f,
        None if !test.is_empty() => DEFAULT_HOLDOUT,
        None => {
            return Err(dataset_err(
                dir,
                "has no val/ or test/ folder: pass --val-split 0.2 to hold out a part of each class",
            ));
        }
    };
    if !(frac > 0.0 && frac < 1.0) {
        return Err(TrainerError::InvalidArgument(format!("--val-split {frac} must be between 0 and 1 (e.g. 0.2)")));
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for (label, mut fs) in files.into_iter().enumerate() {
        fs.shuffle(&mut rng);
        // At least one image each side when the class has two or more.
        let n_val =
            ((fs.len() as f32 * frac).round() as usize).clamp(usize::from(fs.len() > 1), fs.len().saturating_sub(1));
        for (i, path) in fs.into_iter().enumerate() {
            let s = Sample { path, label };
            if i < n_val { val.push(s) } else { train.push(s) }
        }
    }
    sort_samples(&mut train);
    sort_samples(&mut val);
    Ok(Splits { labels, train, val, test, skipped })
}

/// By class, then path: runs read files in a stable order.
fn sort_samples(samples: &mut [Sample]) {
    samples.sort_by(|a, b| (a.label, &a.path).cmp(&(b.label, &b.path)));
}

/// `DIR/val/` or `DIR/test/`: its class folders must be training classes.
fn split_folder(
    dir: &Path,
    names: &[String],
    skipped: &mut Vec<(PathBuf, String)>,
) -> Result<Vec<Sample>, TrainerError> {
    let split = class_name(dir);
    let mut out = Vec::new();
    for c in class_dirs(dir)? {
        let name = class_name(&c);
        let Some(label) = names.iter().position(|n| *n == name) else {
            return Err(dataset_err(
                &c,
                format!("{split} class '{name}' has no training folder: the classes are {}", names.join(", ")),
            ));
        };
        out.extend(class_files(&c, skipped)?.into_iter().map(|path| Sample { path, label }));
    }
    Ok(out)
}

/// Keeps the first `n` samples of each class (quick runs and tests).
pub fn limit_per_class(samples: Vec<Sample>, n: usize) -> Vec<Sample> {
    let mut counts = std::collections::HashMap::new();
    samples
        .into_iter()
        .filter(|s| {
            let c = counts.entry(s.label).or_insert(0usize);
            *c += 1;
            *c <= n
        })
        .collect()
}

impl Splits {
    pub fn limited(mut self, per_class: Option<usize>) -> Self {
        if let Some(n) = per_class {
            self.train = limit_per_class(self.train, n);
            self.val = limit_per_class(self.val, n);
            self.test = limit_per_class(self.test, n);
        }
        self
    }
}

/// The same split (and subset) the run used. A run from before held-out validation
/// (`split_version` 0) on `train/` + `test/` without `val/` validated on all of `test/` and
/// trained on all of `train/`: it gets that split back, so its export gate measures what its
/// val accuracy measured.
pub fn splits_for_run(info: &RunInfo) -> Result<Splits, TrainerError> {
    let mut s = open_image_folder(&info.data_dir, info.val_split, info.seed)?;
    let legacy = info.split_version == 0 && !s.test.is_empty() && !split_dir(&info.data_dir, "val").is_dir();
    if legacy {
        s.train.append(&mut s.val);
        sort_samples(&mut s.train);
        s.val = std::mem::take(&mut s.test);
    }
    Ok(s.limited(info.limit_per_class))
}

/// A labelled folder for evaluation: `DIR/<split>/` when `split` is given, else `DIR/val/` or
/// `DIR/test/` if present, else `DIR`; its class folders must be among `labels` (a run's
/// classes), matched by name.
pub fn open_labelled_folder(
    dir: &Path,
    split: Option<&str>,
    labels: &Labels,
) -> Result<(Vec<Sample>, Skipped), TrainerError> {
    if !dir.is_dir() {
        return Err(dataset_err(dir, "is not a folder: pass --data DIR with DIR/<class>/ (or DIR/val/<class>/)"));
    }
    let root = match split {
        Some(s) => {
            let root = split_dir(dir, s);
            if !root.is_dir() {
                return Err(dataset_err(dir, format!("has no {s}/ folder (--split {s})")));
            }
            root
        }
        None => {
            ["val", "test"].iter().map(|v| split_dir(dir, v)).find(|p| p.is_dir()).unwrap_or_else(|| dir.to_path_buf())
        }
    };
    let mut skipped = Vec::new();
    let (names, files) = read_classes(&root, &mut skipped)?;
    let mut samples = Vec::new();
    for (name, fs) in names.iter().zip(files) {
        let Some(label) = labels.0.iter().position(|l| l == name) else {
            return Err(dataset_err(
                &root.join(name),
                format!("class '{name}' is not one the model knows ({})", labels.0.join(", ")),
            ));
        };
        samples.extend(fs.into_iter().map(|path| Sample { path, label }));
    }
    if samples.is_empty() {
        return Err(dataset_err(&root, "has no images in its class folders"));
    }
    Ok((samples, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(p: &Path) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"x").unwrap();
    }

    #[test]
    fn single_folder_split_is_seeded_per_class_and_counts_non_images() {
        let d = tempfile::tempdir().unwrap();
        for c in ["b", "a"] {
            for i in 0..10 {
                touch(&d.path().join(c).join(format!("{i}.jpg")));
            }
        }
        touch(&d.path().join("a/notes.txt"));
        touch(&d.path().join("b/IMG_0001.HEIC"));
        // What macOS leaves behind: no class, no image, no skip.
        for hidden in ["a/.DS_Store", "a/._0.jpg", "b/._sub/1.jpg", "__MACOSX/a/._0.jpg", ".thumbnails/t.jpg"] {
            touch(&d.path().join(hidden));
        }
        let s1 = open_image_folder(d.path(), Some(0.2), 7).unwrap();
        let s2 = open_image_folder(d.path(), Some(0.2), 7).unwrap();
        let s3 = open_image_folder(d.path(), Some(0.2), 8).unwrap();
        assert_eq!(s1.labels.0, vec!["a", "b"]);
        assert_eq!((s1.train.len(), s1.val.len()), (16, 4));
        assert_eq!(s1.val, s2.val);
        assert_ne!(s1.val, s3.val);
        assert_eq!(s1.skipped.len(), 2, "{:?}", s1.skipped);
        assert!(s1.skipped.iter().any(|(p, why)| p.ends_with("b/IMG_0001.HEIC") && why.contains("HEIC")));
        assert_eq!(s1.limited(Some(3)).train.len(), 6);
    }

    #[test]
    fn a_class_folder_s_sub_folders_belong_to_it() {
        let d = tempfile::tempdir().unwrap();
        for f in ["ants/1.jpg", "ants/2023/2.jpg", "ants/2023/june/3.png", "bees/1.jpg", "bees/garden/IMG_2.HEIC"] {
            touch(&d.path().join("train").join(f));
        }
        touch(&d.path().join("val/ants/old/v.jpg"));
        touch(&d.path().join("val/bees/v.jpg"));
        // A symlink back up the class folder is searched once.
        std::os::unix::fs::symlink("..", d.path().join("train/ants/2023/up")).unwrap();
        let s = open_image_folder(d.path(), None, 0).unwrap();
        let rel = |v: &[Sample]| -> Vec<String> {
            v.iter().map(|x| x.path.strip_prefix(d.path()).unwrap().display().to_string()).collect()
        };
        assert_eq!(
            rel(&s.train),
            ["train/ants/1.jpg", "train/ants/2023/2.jpg", "train/ants/2023/june/3.png", "train/bees/1.jpg"]
        );
        assert_eq!(s.train.iter().map(|x| x.label).collect::<Vec<_>>(), [0, 0, 0, 1]);
        assert_eq!(rel(&s.val), ["val/ants/old/v.jpg", "val/bees/v.jpg"]);
        assert_eq!(s.skipped.len(), 1, "{:?}", s.skipped);
        assert!(s.skipped[0].0.ends_with("bees/garden/IMG_2.HEIC") && s.skipped[0].1.contains("HEIC"));
    }

    #[test]
    fn test_folder_is_never_validation_without_val() {
        let d = tempfile::tempdir().unwrap();
        for c in ["a", "b"] {
            for i in 0..20 {
                touch(&d.path().join("train").join(c).join(format!("{i}.jpg")));
            }
            for i in 0..5 {
                touch(&d.path().join("test").join(c).join(format!("{i}.jpg")));
            }
        }
        let s = open_image_folder(d.path(), None, 1).unwrap();
        assert_eq!((s.train.len(), s.val.len(), s.test.len()), (34, 6, 10));
        assert!(s.val.iter().all(|v| v.path.starts_with(d.path().join("train"))));
        let s = open_image_folder(d.path(), Some(0.5), 1).unwrap();
        assert_eq!((s.train.len(), s.val.len(), s.test.len()), (20, 20, 10));
        // With val/ as well: val/ chooses, test/ is kept apart.
        for c in ["a", "b"] {
            touch(&d.path().join("val").join(c).join("v.jpg"));
        }
        let s = open_image_folder(d.path(), None, 1).unwrap();
        assert_eq!((s.train.len(), s.val.len(), s.test.len()), (40, 2, 10));
        // The same folder named validation/ (or valid/) is the validation split too.
        std::fs::rename(d.path().join("val"), d.path().join("validation")).unwrap();
        let s = open_image_folder(d.path(), None, 1).unwrap();
        assert_eq!((s.train.len(), s.val.len(), s.test.len()), (40, 2, 10));
        assert!(s.val.iter().all(|v| v.path.starts_with(d.path().join("validation"))));
        assert_eq!(split_dir(d.path(), "val"), d.path().join("validation"));
        assert_eq!(split_dir(d.path(), "test"), d.path().join("test"));
    }

    #[test]
    fn bad_layouts_are_clear_errors() {
        let d = tempfile::tempdir().unwrap();
        touch(&d.path().join("train/only/1.jpg"));
        touch(&d.path().join("val/only/1.jpg"));
        let e = open_image_folder(d.path(), None, 0).unwrap_err().to_string();
        assert!(e.contains("single class"), "{e}");
        std::fs::create_dir_all(d.path().join("train/empty")).unwrap();
        let e = open_image_folder(d.path(), None, 0).unwrap_err().to_string();
        assert!(e.contains("empty") && e.contains("no images"), "{e}");
        touch(&d.path().join("train/empty/IMG_0001.HEIC"));
        let e = open_image_folder(d.path(), None, 0).unwrap_err().to_string();
        assert!(e.contains("empty") && e.contains("1 HEIC/HEIF/AVIF photo(s)") && e.contains("convert"), "{e}");
        let e = open_image_folder(&d.path().join("train/only"), None, 0).unwrap_err().to_string();
        assert!(e.contains("no class folders"), "{e}");
    }
}
