//! Seeded training augmentation: `--augment flip,rotate,zoom,crop`. Each view of an image is a
//! pure function of (image, view seed), so cached views are reproducible. Geometry goes through
//! the models crate's resampler (`Preprocessor::resize_box`): the same filter as inference.

use std::str::FromStr;

use image::RgbImage;
use models::{ModelsError, Preprocessor};
use rand::Rng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::error::TrainerError;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Augment {
    /// Horizontal flip with probability 1/2.
    pub flip: bool,
    /// Rotation by up to ±15 degrees (edges replicated).
    pub rotate: bool,
    /// Centered zoom-in by up to 20 %.
    pub zoom: bool,
    /// A random square crop of 70..100 % of the shorter side, anywhere in the image.
    pub crop: bool,
}

pub const NAMES: [&str; 4] = ["flip", "rotate", "zoom", "crop"];

impl FromStr for Augment {
    type Err = TrainerError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut a = Augment::default();
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty() && *n != "none") {
            match name {
                "flip" => a.flip = true,
                "rotate" => a.rotate = true,
                "zoom" => a.zoom = true,
                "crop" => a.crop = true,
                other => {
                    return Err(TrainerError::InvalidArgument(format!(
                        "unknown augmentation '{other}' in --augment: use a comma list of {}",
                        NAMES.join(", ")
                    )));
                }
            }
        }
        Ok(a)
    }
}

impl Augment {
    pub fn is_none(&self) -> bool {
        *self == Augment::default()
    }

    pub fn names(&self) -> Vec<String> {
        let on = [self.flip, self.rotate, self.zoom, self.crop];
        NAMES.iter().zip(on).filter(|(_, on)| *on).map(|(n, _)| n.to_string()).collect()
    }

    /// One augmented view of `img` at the model input size.
    pub fn view(&self, img: &RgbImage, pre: &mut Preprocessor, rng: &mut StdRng) -> Result<RgbImage, ModelsError> {
        let (w, h) = (img.width() as f64, img.height() as f64);
        let (mut l, mut t, mut cw, mut ch) = pre.spec().source_box(img.width(), img.height());
        if self.crop {
            let side = w.min(h) * rng.random_range(0.7..=1.0);
            (cw, ch) = (side.min(w), side.min(h));
            l = rng.random_range(0.0..=(w - cw));
            t = rng.random_range(0.0..=(h - ch));
        }
        if self.zoom {
            let s = rng.random_range(0.8..=1.0);
            l += cw * (1.0 - s) / 2.0;
            t += ch * (1.0 - s) / 2.0;
            (cw, ch) = (cw * s, ch * s);
        }
        let mut out = pre.resize_box(img, (l, t, cw, ch))?;
        if self.rotate {
            out = rotate(&out, rng.random_range(-15f32..=15.0).to_radians());
        }
        if self.flip && rng.random_bool(0.5) {
            image::imageops::flip_horizontal_in_place(&mut out);
        }
        Ok(out)
    }
}

/// Rotation about the center with bilinear sampling; outside pixels replicate the border
/// (no black corners the model could learn from).
fn rotate(img: &RgbImage, angle: f32) -> RgbImage {
    let (w, h) = (img.width(), img.height());
    let (cx, cy) = ((w as f32 - 1.0) / 2.0, (h as f32 - 1.0) / 2.0);
    let (sin, cos) = angle.sin_cos();
    let px = |x: i64, y: i64| img.get_pixel(x.clamp(0, w as i64 - 1) as u32, y.clamp(0, h as i64 - 1) as u32).0;
    RgbImage::from_fn(w, h, |x, y| {
        let (dx, dy) = (x as f32 - cx, y as f32 - cy);
        let (sx, sy) = (cos * dx + sin * dy + cx, -sin * dx + cos * dy + cy);
        let (x0, y0) = (sx.floor(), sy.floor());
        let (fx, fy) = (sx - x0, sy - y0);
        let (x0, y0) = (x0 as i64, y0 as i64);
        let (a, b, c, d) = (px(x0, y0), px(x0 + 1, y0), px(x0, y0 + 1), px(x0 + 1, y0 + 1));
        let mut o = [0u8; 3];
        for k in 0..3 {
            let top = a[k] as f32 * (1.0 - fx) + b[k] as f32 * fx;
            let bottom = c[k] as f32 * (1.0 - fx) + d[k] as f32 * fx;
            o[k] = (top * (1.0 - fy) + bottom * fy).round().clamp(0.0, 255.0) as u8;
        }
        image::Rgb(o)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn parses_lists_and_rejects_unknown_names() {
        let a: Augment = "flip, zoom".parse().unwrap();
        assert!(a.flip && a.zoom && !a.rotate && !a.crop);
        assert!("none".parse::<Augment>().unwrap().is_none());
        assert!("flip,blur".parse::<Augment>().unwrap_err().to_string().contains("blur"));
    }

    #[test]
    fn views_are_seeded_and_differ_between_seeds() {
        let img = RgbImage::from_fn(320, 240, |x, y| image::Rgb([x as u8, y as u8, (x ^ y) as u8]));
        let a: Augment = "flip,rotate,zoom,crop".parse().unwrap();
        let mut pre = Preprocessor::new(models::Backbone::MobileNetV2.preprocessing());
        let v = |seed| a.view(&img, &mut Preprocessor::new(*pre.spec()), &mut StdRng::seed_from_u64(seed)).unwrap();
        assert_eq!(v(1), v(1));
        assert_ne!(v(1), v(2));
        assert_eq!(v(1).dimensions(), (224, 224));
        let plain = pre.resize_rgb(&img).unwrap();
        assert_eq!(Augment::default().view(&img, &mut pre, &mut StdRng::seed_from_u64(1)).unwrap(), plain);
    }
}
