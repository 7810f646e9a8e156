//! The feature cache. The frozen backbone's output for an image never changes, so it is
//! computed once and stored on disk, keyed by (backbone, weights hash, preprocessing, image
//! content sha256, view, and for activations the freeze boundary). Epochs after the first
//! then cost only the head (or, when fine-tuning, only the top stages + head).
//!
//! With `--augment`, each training image gets `views` cached views: view 0 is the plain image,
//! views 1.. are seeded augmentations; every epoch draws one view per image.

use std::path::{Path, PathBuf};

use image::RgbImage;
use indicatif::ProgressBar;
use models::{ImageLimits, Preprocessing, Preprocessor};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::augment::Augment;
use crate::backbone::weights::sha256_hex;
use crate::data::Sample;
use crate::error::TrainerError;
use crate::frozen::LazyFrozen;

#[derive(Serialize, Deserialize)]
struct Entry {
    shape: Vec<usize>,
    values: Vec<f32>,
}

/// One folder of cache entries (`<key[..2]>/<key>.bin`, postcard).
pub struct FeatureCache {
    dir: PathBuf,
}

impl FeatureCache {
    pub fn open(dir: &Path) -> Result<Self, TrainerError> {
        std::fs::create_dir_all(dir).map_err(|e| TrainerError::Cache {
            path: dir.to_path_buf(),
            reason: format!("cannot create it ({e}): pass a writable --cache-dir"),
        })?;
        Ok(FeatureCache { dir: dir.to_path_buf() })
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(&key[..2]).join(format!("{key}.bin"))
    }

    /// A missing or damaged entry is `None`: it is recomputed, never trusted.
    pub fn get(&self, key: &str, len: Option<usize>) -> Option<(Vec<usize>, Vec<f32>)> {
        let bytes = std::fs::read(self.path(key)).ok()?;
        let e: Entry = postcard::from_bytes(&bytes).ok()?;
        let ok = e.shape.iter().product::<usize>() == e.values.len() && len.is_none_or(|l| l == e.values.len());
        ok.then_some((e.shape, e.values))
    }

    pub fn put(&self, key: &str, shape: &[usize], values: &[f32]) -> Result<(), TrainerError> {
        let path = self.path(key);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(TrainerError::io(parent))?;
        }
        let bytes = postcard::to_stdvec(&Entry { shape: shape.to_vec(), values: values.to_vec() })
            .map_err(|e| TrainerError::Cache { path: path.clone(), reason: e.to_string() })?;
        common::write_atomic(&path, &bytes).map_err(TrainerError::io(path))
    }
}

/// What the cached tensors depend on besides the image.
#[derive(Debug, Clone)]
pub struct CacheKeyBase {
    /// backbone name + weights sha256 (or "random-init") + preprocessing.
    pub model_id: String,
    pub augment: Augment,
    pub seed: u64,
}

impl CacheKeyBase {
    fn key(&self, what: &str, content: &str, view: usize) -> String {
        // View 0 is the plain image whatever the augmentation, so it is shared with val and
        // with runs without --augment.
        let aug = if view == 0 { String::new() } else { format!("{:?}|{}", self.augment, self.seed) };
        // v2: decoding applies the EXIF orientation, so a tagged photo's v1 entries are stale.
        sha256_hex(format!("perch-cache-v2|{}|{what}|{aug}|{view}|{content}", self.model_id).as_bytes())
    }
}

/// Backbone outputs of a set of images, `views` rows per kept image (row = image * views + view).
#[derive(Debug, Clone, Default)]
pub struct Extracted {
    pub samples: Vec<Sample>,
    /// sha256 of each kept image file.
    pub content: Vec<String>,
    pub views: usize,
    pub feat_dim: usize,
    pub features: Vec<f32>,
    /// [C, H, W] at the freeze boundary (fine-tuning only).
    pub act_shape: Vec<usize>,
    pub activations: Vec<f32>,
    pub skipped: Vec<(PathBuf, String)>,
    pub from_cache: usize,
    pub computed: usize,
}

impl Extracted {
    pub fn act_len(&self) -> usize {
        self.act_shape.iter().product()
    }
}

/// Runs the frozen backbone (stages `0..boundary` kept as activations when `boundary` is set,
/// then the rest + pooling as features) over `samples`, through the cache.
/// Unreadable or undecodable images are skipped and listed, never fatal.
pub fn extract(
    frozen: &LazyFrozen<'_>,
    samples: &[Sample],
    views: usize,
    base: &CacheKeyBase,
    cache: &FeatureCache,
    batch: usize,
    progress: &ProgressBar,
) -> Result<Extracted, TrainerError> {
    let kind = frozen.backbone().kind();
    let views = views.max(1);
    let run = Extraction {
        frozen,
        views,
        base,
        boundary: frozen.boundary(),
        cache,
        spec: kind.preprocessing(),
        feat_dim: kind.spec().feature_dim,
    };
    let mut out = Extracted { views, feat_dim: run.feat_dim, ..Default::default() };
    for chunk in samples.chunks(batch.max(1)) {
        let prepared = run.prepare_chunk(chunk);
        let computed = run.compute_missing(&prepared, &mut out)?;
        run.collect(prepared, computed, &mut out)?;
        progress.inc(chunk.len() as u64);
    }
    Ok(out)
}

/// Newly computed (features, activations) per prepared image and view (`None`: cached).
type Computed = Vec<Vec<Option<(Vec<f32>, Vec<f32>)>>>;

/// The settings of one [`extract`] call.
struct Extraction<'a, 'f> {
    frozen: &'a LazyFrozen<'f>,
    views: usize,
    base: &'a CacheKeyBase,
    boundary: Option<usize>,
    cache: &'a FeatureCache,
    spec: Preprocessing,
    feat_dim: usize,
}

impl Extraction<'_, '_> {
    /// Read + hash + (if any view is missing from the cache) decode and preprocess, in parallel.
    fn prepare_chunk(&self, chunk: &[Sample]) -> Vec<Prepared> {
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let (views, base, boundary, cache, spec) = (self.views, self.base, self.boundary, self.cache, self.spec);
        std::thread::scope(|s| {
            let per = chunk.len().div_ceil(threads);
            let handles: Vec<_> = chunk
                .chunks(per.max(1))
                .map(|part| {
                    s.spawn(move || {
                        part.iter().map(|smp| prepare(smp, views, base, boundary, cache, spec)).collect::<Vec<_>>()
                    })
                })
                .collect();
            handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
        })
    }

    /// Runs the backbone on the views the cache lacks, as one batch, and caches the results.
    fn compute_missing(&self, prepared: &[Prepared], out: &mut Extracted) -> Result<Computed, TrainerError> {
        let (views, feat_dim, boundary, spec) = (self.views, self.feat_dim, self.boundary, self.spec);
        let todo: Vec<(usize, usize)> = prepared
            .iter()
            .enumerate()
            .flat_map(|(i, p)| p.inputs.iter().enumerate().filter(|(_, x)| x.is_some()).map(move |(v, _)| (i, v)))
            .collect();
        let mut computed: Computed = prepared.iter().map(|_| vec![None; views]).collect();
        if todo.is_empty() {
            return Ok(computed);
        }
        let mut input = Vec::with_capacity(todo.len() * spec.tensor_len());
        for &(i, v) in &todo {
            input.extend_from_slice(prepared[i].inputs[v].as_deref().unwrap_or_default());
        }
        let run = self.frozen.get()?.run(&input, todo.len(), boundary)?;
        let (feats, acts) = (run.features, run.activations);
        if !run.act_shape.is_empty() {
            out.act_shape = run.act_shape;
        }
        let act_len: usize = out.act_shape.iter().product();
        for (k, &(i, v)) in todo.iter().enumerate() {
            let f = feats[k * feat_dim..(k + 1) * feat_dim].to_vec();
            let a = if boundary.is_some() { acts[k * act_len..(k + 1) * act_len].to_vec() } else { Vec::new() };
            let p = &prepared[i];
            self.cache.put(&self.base.key("features", &p.content, v), &[feat_dim], &f)?;
            if boundary.is_some() {
                self.cache.put(&self.base.key(&boundary_tag(boundary), &p.content, v), &out.act_shape, &a)?;
            }
            computed[i][v] = Some((f, a));
            out.computed += 1;
        }
        Ok(computed)
    }

    /// Appends every kept image's views (cached or just computed) to `out`; lists the skipped.
    fn collect(&self, prepared: Vec<Prepared>, computed: Computed, out: &mut Extracted) -> Result<(), TrainerError> {
        for (p, fresh) in prepared.into_iter().zip(computed) {
            let Prepared { sample, content, cached, error, .. } = p;
            if let Some(reason) = error {
                out.skipped.push((sample.path.clone(), reason));
                continue;
            }
            for (v, (hit, new)) in cached.into_iter().zip(fresh).enumerate() {
                let (f, a, shape) = match (hit, new) {
                    (Some(hit), _) => {
                        out.from_cache += 1;
                        hit
                    }
                    (None, Some((f, a))) => (f, a, out.act_shape.clone()),
                    (None, None) => {
                        return Err(TrainerError::Cache {
                            path: sample.path.clone(),
                            reason: format!("view {v} was neither cached nor computed"),
                        });
                    }
                };
                if self.boundary.is_some() && out.act_shape.is_empty() {
                    out.act_shape = shape;
                }
                out.features.extend_from_slice(&f);
                out.activations.extend_from_slice(&a);
            }
            out.samples.push(sample);
            out.content.push(content);
        }
        Ok(())
    }
}

fn boundary_tag(boundary: Option<usize>) -> String {
    format!("activations@{}", boundary.unwrap_or(0))
}

type CachedView = (Vec<f32>, Vec<f32>, Vec<usize>);

/// One image: its cached views, or the preprocessed inputs of the views still to compute.
struct Prepared {
    sample: Sample,
    content: String,
    cached: Vec<Option<CachedView>>,
    inputs: Vec<Option<Vec<f32>>>,
    error: Option<String>,
}

fn prepare(
    sample: &Sample,
    views: usize,
    base: &CacheKeyBase,
    boundary: Option<usize>,
    cache: &FeatureCache,
    spec: models::Preprocessing,
) -> Prepared {
    let mut p = Prepared {
        sample: sample.clone(),
        content: String::new(),
        cached: vec![None; views],
        inputs: vec![None; views],
        error: None,
    };
    let bytes = match std::fs::read(&sample.path) {
        Ok(b) => b,
        Err(e) => {
            p.error = Some(format!("unreadable: {e}"));
            return p;
        }
    };
    p.content = sha256_hex(&bytes);
    for v in 0..views {
        let f = cache.get(&base.key("features", &p.content, v), None);
        let a = match boundary {
            Some(_) => cache.get(&base.key(&boundary_tag(boundary), &p.content, v), None),
            None => Some((Vec::new(), Vec::new())),
        };
        if let (Some((_, f)), Some((shape, a))) = (f, a) {
            p.cached[v] = Some((f, a, shape));
        }
    }
    if p.cached.iter().all(Option::is_some) {
        return p;
    }
    // Decoding is checked even when only some views are missing: a corrupt file is skipped whole.
    let img = match models::preprocess::decode_image(&bytes, &sample.path, ImageLimits::default()) {
        Ok(img) => models::preprocess::to_rgb8(img),
        Err(e) => {
            p.error = Some(e.to_string());
            return p;
        }
    };
    let mut pre = Preprocessor::new(spec);
    for v in 0..views {
        if p.cached[v].is_some() {
            continue;
        }
        match view_input(&img, v, base, &p.content, &mut pre) {
            Ok(x) => p.inputs[v] = Some(x),
            Err(e) => {
                p.error = Some(e.to_string());
                return p;
            }
        }
    }
    p
}

/// The normalized input of view `v`: view 0 plain, others augmented with a seed derived from
/// (run seed, image content, view) so the same view is the same pixels in every run.
fn view_input(
    img: &RgbImage,
    v: usize,
    base: &CacheKeyBase,
    content: &str,
    pre: &mut Preprocessor,
) -> Result<Vec<f32>, models::ModelsError> {
    let resized = if v == 0 || base.augment.is_none() {
        pre.resize_rgb(img)?
    } else {
        let digest = Sha256::digest(format!("{}|{content}|{v}", base.seed).as_bytes());
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&digest);
        base.augment.view(img, pre, &mut StdRng::from_seed(seed))?
    };
    let mut out = vec![0f32; pre.spec().tensor_len()];
    pre.normalize_into(&resized, &mut out);
    Ok(out)
}

/// sha256 over the sorted (path relative to the data folder, content sha256) pairs.
pub fn dataset_fingerprint(data_dir: &Path, sets: &[&Extracted]) -> String {
    let mut pairs: Vec<String> = sets
        .iter()
        .flat_map(|e| e.samples.iter().zip(&e.content))
        .map(|(s, c)| format!("{}\t{c}", s.path.strip_prefix(data_dir).unwrap_or(&s.path).to_string_lossy()))
        .collect();
    pairs.sort();
    sha256_hex(pairs.join("\n").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_round_trips_and_distrusts_damaged_entries() {
        let d = tempfile::tempdir().unwrap();
        let c = FeatureCache::open(d.path()).unwrap();
        let k = sha256_hex(b"x");
        assert!(c.get(&k, None).is_none());
        c.put(&k, &[2, 2], &[1.0, 2.0, 3.0, 4.5]).unwrap();
        assert_eq!(c.get(&k, Some(4)).unwrap(), (vec![2, 2], vec![1.0, 2.0, 3.0, 4.5]));
        assert!(c.get(&k, Some(5)).is_none());
        std::fs::write(c.path(&k), b"garbage").unwrap();
        assert!(c.get(&k, None).is_none());
    }

    #[test]
    fn keys_separate_views_and_share_the_plain_view() {
        let a = CacheKeyBase { model_id: "m".into(), augment: "flip".parse().unwrap(), seed: 1 };
        let b = CacheKeyBase { augment: Augment::default(), ..a.clone() };
        assert_eq!(a.key("features", "c", 0), b.key("features", "c", 0));
        assert_ne!(a.key("features", "c", 1), a.key("features", "c", 2));
        assert_ne!(a.key("features", "c", 1), CacheKeyBase { seed: 2, ..a.clone() }.key("features", "c", 1));
    }
}
