//! Capture settings shared by every source (`--width`, `--height`, `--fps`, `--rotate`,
//! `--flip`, `--roi`) and the per-frame transform: rotate (clockwise), then flip, then crop
//! to the region of interest, in that order; the ROI is in the coordinates of the rotated and
//! flipped frame, i.e. of the picture as the user sees it.

use std::fmt;
use std::str::FromStr;

use image::RgbImage;
use image::imageops;

use crate::error::{Result, RuntimeError};

/// Frame sizes a capture may ask for (a 16x16 thumbnail up to 8K).
pub const SIZE_RANGE: std::ops::RangeInclusive<u32> = 16..=8192;
/// Frame rates a capture may ask for.
pub const FPS_RANGE: std::ops::RangeInclusive<f64> = 0.1..=1000.0;

/// How a source should capture; every field is optional and sources have their defaults.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CaptureOptions {
    /// Frame width in pixels (with `height`): the size asked of the camera, or the size
    /// ffmpeg scales decoded video to.
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// Frames per second asked of the camera (for ffmpeg: frames are resampled to this rate).
    pub fps: Option<f64>,
    pub rotate: Rotation,
    pub flip: Option<Flip>,
    /// Classify only this region of the rotated/flipped frame.
    pub roi: Option<Roi>,
}

impl CaptureOptions {
    /// Checks the values on their own (the ROI against the frame is checked at open or at
    /// the first frame, once the size is known).
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(RuntimeError::BadCapture(m));
        match (self.width, self.height) {
            (Some(_), None) | (None, Some(_)) => {
                return bad("--width and --height go together: give both (e.g. --width 640 --height 480)".into());
            }
            (Some(w), Some(h)) if !SIZE_RANGE.contains(&w) || !SIZE_RANGE.contains(&h) => {
                return bad(format!(
                    "--width {w} --height {h}: each must be {} to {} pixels",
                    SIZE_RANGE.start(),
                    SIZE_RANGE.end()
                ));
            }
            _ => {}
        }
        if let Some(f) = self.fps
            && (!f.is_finite() || !FPS_RANGE.contains(&f))
        {
            return bad(format!("--fps {f}: must be between {} and {}", FPS_RANGE.start(), FPS_RANGE.end()));
        }
        Ok(())
    }

    /// The requested size, or `default`.
    pub fn size_or(&self, default: (u32, u32)) -> (u32, u32) {
        match (self.width, self.height) {
            (Some(w), Some(h)) => (w, h),
            _ => default,
        }
    }

    pub fn size(&self) -> Option<(u32, u32)> {
        self.width.zip(self.height)
    }

    /// The per-frame part (rotate, flip, ROI).
    pub fn transform(&self) -> Transform {
        Transform { rotate: self.rotate, flip: self.flip, roi: self.roi }
    }
}

/// `--rotate`: degrees clockwise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Rotation {
    #[default]
    R0,
    R90,
    R180,
    R270,
}

impl Rotation {
    pub fn degrees(self) -> u32 {
        match self {
            Rotation::R0 => 0,
            Rotation::R90 => 90,
            Rotation::R180 => 180,
            Rotation::R270 => 270,
        }
    }

    /// The size of a `w`x`h` frame after this rotation.
    pub fn rotated_size(self, w: u32, h: u32) -> (u32, u32) {
        match self {
            Rotation::R90 | Rotation::R270 => (h, w),
            Rotation::R0 | Rotation::R180 => (w, h),
        }
    }
}

impl FromStr for Rotation {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim() {
            "0" => Ok(Rotation::R0),
            "90" => Ok(Rotation::R90),
            "180" => Ok(Rotation::R180),
            "270" => Ok(Rotation::R270),
            _ => Err(format!("'{s}' is not a rotation: use 0, 90, 180 or 270 (degrees clockwise)")),
        }
    }
}

impl fmt::Display for Rotation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.degrees())
    }
}

/// `--flip`: mirror left-right (`h`) or upside down (`v`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flip {
    Horizontal,
    Vertical,
}

impl FromStr for Flip {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim() {
            "h" | "horizontal" => Ok(Flip::Horizontal),
            "v" | "vertical" => Ok(Flip::Vertical),
            _ => Err(format!("'{s}' is not a flip: use h (mirror left-right) or v (upside down)")),
        }
    }
}

impl fmt::Display for Flip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Flip::Horizontal => "h",
            Flip::Vertical => "v",
        })
    }
}

/// `--roi X,Y,W,H`: a rectangle in pixels, top-left corner X,Y.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roi {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl Roi {
    /// Whether the region lies inside a `w`x`h` frame.
    pub fn fits(&self, w: u32, h: u32) -> bool {
        u64::from(self.x) + u64::from(self.width) <= u64::from(w)
            && u64::from(self.y) + u64::from(self.height) <= u64::from(h)
    }

    /// The region of a frame it fits (checked by [`Transform::check`]).
    pub fn crop(&self, img: &RgbImage) -> RgbImage {
        imageops::crop_imm(img, self.x, self.y, self.width, self.height).to_image()
    }
}

impl FromStr for Roi {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || format!("'{s}' is not a region: use X,Y,W,H in pixels (e.g. 100,50,320,240), W and H above 0");
        let parts: Vec<u32> =
            s.split(',').map(|p| p.trim().parse::<u32>()).collect::<Result<_, _>>().map_err(|_| bad())?;
        match parts[..] {
            [x, y, width, height] if width > 0 && height > 0 => Ok(Roi { x, y, width, height }),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Roi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{},{},{}", self.x, self.y, self.width, self.height)
    }
}

/// What happens to each frame before preprocessing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Transform {
    pub rotate: Rotation,
    pub flip: Option<Flip>,
    pub roi: Option<Roi>,
}

impl Transform {
    pub fn is_identity(&self) -> bool {
        *self == Transform::default()
    }

    /// The size of a `w`x`h` frame after the transform.
    pub fn output_size(&self, w: u32, h: u32) -> (u32, u32) {
        match self.roi {
            Some(r) => (r.width, r.height),
            None => self.rotate.rotated_size(w, h),
        }
    }

    /// A clear error when the ROI does not fit `source`'s `w`x`h` frames once rotated.
    pub fn check(&self, w: u32, h: u32, source: &str) -> Result<()> {
        let (rw, rh) = self.rotate.rotated_size(w, h);
        match self.roi {
            Some(roi) if !roi.fits(rw, rh) => Err(RuntimeError::RoiOutside {
                roi: roi.to_string(),
                source_name: source.to_string(),
                width: rw,
                height: rh,
                rotate: self.rotate.degrees(),
            }),
            _ => Ok(()),
        }
    }

    /// Rotates, flips and crops one frame.
    pub fn apply(&self, img: RgbImage, source: &str) -> Result<RgbImage> {
        if self.is_identity() {
            return Ok(img);
        }
        let img = self.orient(img, source)?;
        Ok(match self.roi {
            None => img,
            Some(r) => r.crop(&img),
        })
    }

    /// Rotates and flips one frame, checking that the ROI fits the result (the live view shows
    /// this frame with the ROI drawn on it; [`Roi::crop`] then gives what is classified).
    pub fn orient(&self, img: RgbImage, source: &str) -> Result<RgbImage> {
        self.check(img.width(), img.height(), source)?;
        let img = match self.rotate {
            Rotation::R0 => img,
            Rotation::R90 => imageops::rotate90(&img),
            Rotation::R180 => imageops::rotate180(&img),
            Rotation::R270 => imageops::rotate270(&img),
        };
        Ok(match self.flip {
            None => img,
            Some(Flip::Horizontal) => imageops::flip_horizontal(&img),
            Some(Flip::Vertical) => imageops::flip_vertical(&img),
        })
    }
}

#[cfg(test)]
mod tests {
    use image::Rgb;

    use super::*;

    /// 3x2 image whose pixel (x, y) holds [x, y, 0]:
    /// ```text
    /// (0,0) (1,0) (2,0)
    /// (0,1) (1,1) (2,1)
    /// ```
    fn grid() -> RgbImage {
        RgbImage::from_fn(3, 2, |x, y| Rgb([x as u8, y as u8, 0]))
    }

    /// The source coordinates of each output pixel, row by row.
    fn coords(img: &RgbImage) -> Vec<(u8, u8)> {
        img.pixels().map(|p| (p[0], p[1])).collect()
    }

    fn t(rotate: Rotation, flip: Option<Flip>, roi: Option<Roi>) -> Transform {
        Transform { rotate, flip, roi }
    }

    #[test]
    fn rotation_is_clockwise_and_flip_comes_after_it() {
        let r90 = t(Rotation::R90, None, None).apply(grid(), "s").unwrap();
        // Clockwise: the left column (bottom first) becomes the top row.
        assert_eq!(r90.dimensions(), (2, 3));
        assert_eq!(coords(&r90), [(0, 1), (0, 0), (1, 1), (1, 0), (2, 1), (2, 0)]);
        let r180 = t(Rotation::R180, None, None).apply(grid(), "s").unwrap();
        assert_eq!(coords(&r180), [(2, 1), (1, 1), (0, 1), (2, 0), (1, 0), (0, 0)]);
        let r270 = t(Rotation::R270, None, None).apply(grid(), "s").unwrap();
        assert_eq!(coords(&r270), [(2, 0), (2, 1), (1, 0), (1, 1), (0, 0), (0, 1)]);
        let h = t(Rotation::R0, Some(Flip::Horizontal), None).apply(grid(), "s").unwrap();
        assert_eq!(coords(&h), [(2, 0), (1, 0), (0, 0), (2, 1), (1, 1), (0, 1)]);
        let v = t(Rotation::R0, Some(Flip::Vertical), None).apply(grid(), "s").unwrap();
        assert_eq!(coords(&v), [(0, 1), (1, 1), (2, 1), (0, 0), (1, 0), (2, 0)]);
        // 90 then mirror = transpose.
        let tr = t(Rotation::R90, Some(Flip::Horizontal), None).apply(grid(), "s").unwrap();
        assert_eq!(coords(&tr), [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]);
        // h + v flips = 180.
        let hv = t(Rotation::R0, Some(Flip::Vertical), None)
            .apply(t(Rotation::R0, Some(Flip::Horizontal), None).apply(grid(), "s").unwrap(), "s")
            .unwrap();
        assert_eq!(hv, r180);
    }

    #[test]
    fn roi_crops_the_rotated_frame_and_must_fit_it() {
        let roi = Roi { x: 1, y: 1, width: 1, height: 2 };
        let out = t(Rotation::R90, None, Some(roi)).apply(grid(), "s").unwrap();
        assert_eq!(coords(&out), [(1, 0), (2, 0)]);
        // The same region does not fit the unrotated 3x2 frame (y 1 + h 2 > 2).
        let err = t(Rotation::R0, None, Some(roi)).apply(grid(), "libcamera:0").unwrap_err().to_string();
        assert!(err.contains("--roi 1,1,1,2") && err.contains("3x2") && err.contains("libcamera:0"), "{err}");
        assert!(t(Rotation::R0, None, Some(roi)).check(3, 3, "s").is_ok());
        assert_eq!(t(Rotation::R270, None, None).output_size(640, 480), (480, 640));
        assert_eq!(t(Rotation::R0, None, Some(roi)).output_size(640, 480), (1, 2));
        let huge = Roi { x: u32::MAX, y: 0, width: u32::MAX, height: 1 };
        assert!(!huge.fits(10, 10));
    }

    #[test]
    fn flags_parse_and_bad_values_say_what_is_allowed() {
        assert_eq!("270".parse::<Rotation>(), Ok(Rotation::R270));
        assert!("45".parse::<Rotation>().unwrap_err().contains("0, 90, 180 or 270"));
        assert_eq!("h".parse::<Flip>(), Ok(Flip::Horizontal));
        assert_eq!("v".parse::<Flip>(), Ok(Flip::Vertical));
        assert!("x".parse::<Flip>().unwrap_err().contains("h (mirror"));
        assert_eq!("10, 20,30,40".parse::<Roi>(), Ok(Roi { x: 10, y: 20, width: 30, height: 40 }));
        for bad in ["1,2,3", "1,2,3,4,5", "a,b,c,d", "0,0,0,10", "-1,0,5,5", ""] {
            assert!(bad.parse::<Roi>().unwrap_err().contains("X,Y,W,H"), "{bad}");
        }
    }

    #[test]
    fn capture_options_are_validated() {
        let ok = CaptureOptions { width: Some(640), height: Some(480), fps: Some(30.0), ..Default::default() };
        assert!(ok.validate().is_ok());
        assert_eq!(ok.size_or((1, 1)), (640, 480));
        let cases = [
            (CaptureOptions { width: Some(640), ..Default::default() }, "go together"),
            (CaptureOptions { width: Some(8), height: Some(480), ..Default::default() }, "16 to 8192"),
            (CaptureOptions { fps: Some(0.0), ..Default::default() }, "--fps 0"),
            (CaptureOptions { fps: Some(f64::NAN), ..Default::default() }, "--fps NaN"),
        ];
        for (opts, msg) in cases {
            let err = opts.validate().unwrap_err();
            assert!(matches!(err, RuntimeError::BadCapture(_)) && err.to_string().contains(msg), "{err}");
        }
    }
}
