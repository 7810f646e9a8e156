//! The run's pictures: `curves.png` (loss and accuracy, train and val, fine-tuning start
//! marked), `confusion.png` and `predictions.png` (val images, predicted vs true, wrong ones
//! framed red). Drawn with plotters into an RGB buffer, then PNG-encoded and written atomically.

use std::io::Cursor;
use std::path::Path;

use common::plot::FAMILY;
use image::{ImageFormat, RgbImage};
use models::{ImageLimits, Labels};
use plotters::prelude::*;

use crate::data::Sample;
use crate::error::TrainerError;
use crate::history::{EpochRow, PHASE_FINE_TUNE};
use crate::metrics::Metrics;

type Canvas<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

fn plot_err(path: &Path, e: impl std::fmt::Display) -> TrainerError {
    TrainerError::Plot { path: path.to_path_buf(), reason: e.to_string() }
}

/// Draws into a `w`x`h` white canvas with `draw`, then writes the PNG to `path`.
fn render(
    path: &Path,
    (w, h): (u32, u32),
    draw: impl FnOnce(&Canvas) -> Result<(), String>,
) -> Result<(), TrainerError> {
    common::plot::register_font().map_err(|e| plot_err(path, e))?;
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        draw(&root).map_err(|e| plot_err(path, e))?;
        root.present().map_err(|e| plot_err(path, e))?;
    }
    let img = RgbImage::from_raw(w, h, buf).ok_or_else(|| plot_err(path, "buffer size"))?;
    let mut png = Vec::new();
    img.write_to(&mut Cursor::new(&mut png), ImageFormat::Png).map_err(|e| plot_err(path, e))?;
    common::write_atomic(path, &png).map_err(TrainerError::io(path))
}

fn s<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// Loss (left) and accuracy (right) per epoch; a dashed line where fine-tuning starts.
pub fn curves(path: &Path, history: &[EpochRow]) -> Result<(), TrainerError> {
    let fine_start = history.iter().find(|r| r.phase == PHASE_FINE_TUNE).map(|r| r.epoch as f64 - 0.5);
    let last = history.iter().map(|r| r.epoch).max().unwrap_or(1) as f64;
    render(path, (1200, 480), |root| {
        let panels = root.split_evenly((1, 2));
        type Pick = fn(&EpochRow) -> (f64, f64);
        let specs: [(&str, Pick); 2] =
            [("loss", |r| (r.train_loss, r.val_loss)), ("accuracy", |r| (r.train_acc, r.val_acc))];
        for (panel, (name, pick)) in panels.iter().zip(specs) {
            let vals: Vec<f64> =
                history.iter().flat_map(|r| [pick(r).0, pick(r).1]).filter(|v| v.is_finite()).collect();
            let (lo, hi) = vals.iter().fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
            let (lo, hi) =
                if vals.is_empty() { (0.0, 1.0) } else { (lo - 0.05 * (hi - lo + 1e-3), hi + 0.05 * (hi - lo + 1e-3)) };
            let mut chart = ChartBuilder::on(panel)
                .caption(name, (FAMILY, 22))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(56)
                .build_cartesian_2d(0.5..last + 0.5, lo..hi)
                .map_err(s)?;
            chart.configure_mesh().x_desc("epoch").label_style((FAMILY, 13)).draw().map_err(s)?;
            for (series, color, idx) in [("train", BLUE, 0), ("val", RED, 1)] {
                let pts: Vec<(f64, f64)> =
                    history.iter().map(|r| (r.epoch as f64, if idx == 0 { pick(r).0 } else { pick(r).1 })).collect();
                chart
                    .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                    .map_err(s)?
                    .label(series)
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2)));
                chart.draw_series(pts.iter().map(|p| Circle::new(*p, 3, color.filled()))).map_err(s)?;
            }
            if let Some(x) = fine_start {
                chart
                    .draw_series(DashedLineSeries::new([(x, lo), (x, hi)], 6, 4, BLACK.stroke_width(1)))
                    .map_err(s)?
                    .label("fine-tuning starts")
                    .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLACK));
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font((FAMILY, 13))
                .draw()
                .map_err(s)?;
        }
        Ok(())
    })
}

/// The confusion matrix as a heat map with counts (rows true, columns predicted).
pub fn confusion(path: &Path, m: &Metrics) -> Result<(), TrainerError> {
    let k = m.labels.len().max(1);
    let cell = (560 / k as u32).clamp(24, 120);
    let label_w = m.labels.iter().map(|l| l.chars().count()).max().unwrap_or(4) as u32 * 8 + 16;
    let (w, h) = (label_w + cell * k as u32 + 40, label_w + cell * k as u32 + 70);
    let max = m.confusion.iter().flatten().copied().max().unwrap_or(1).max(1) as f64;
    render(path, (w, h), |root| {
        root.draw(&Text::new("confusion matrix (rows: true, columns: predicted)", (10, 8), (FAMILY, 16))).map_err(s)?;
        let (x0, y0) = (label_w as i32, (label_w + 30) as i32);
        for (t, row) in m.confusion.iter().enumerate() {
            for (p, &n) in row.iter().enumerate() {
                let v = n as f64 / max;
                let shade = (255.0 * (1.0 - 0.8 * v)) as u8;
                let color = if t == p { RGBColor(shade, 255, shade) } else { RGBColor(255, shade, shade) };
                let (x, y) = (x0 + p as i32 * cell as i32, y0 + t as i32 * cell as i32);
                root.draw(&Rectangle::new([(x, y), (x + cell as i32, y + cell as i32)], color.filled())).map_err(s)?;
                root.draw(&Rectangle::new([(x, y), (x + cell as i32, y + cell as i32)], BLACK.mix(0.3))).map_err(s)?;
                let fs = (cell as f64 * 0.35).clamp(10.0, 28.0);
                root.draw(&Text::new(n.to_string(), (x + cell as i32 / 3, y + cell as i32 / 3), (FAMILY, fs)))
                    .map_err(s)?;
            }
        }
        for (i, l) in m.labels.iter().enumerate() {
            let c = i as i32 * cell as i32 + cell as i32 / 2;
            root.draw(&Text::new(l.clone(), (4, y0 + c - 7), (FAMILY, 13))).map_err(s)?;
            let style = TextStyle::from((FAMILY, 13).into_font()).transform(FontTransform::Rotate270);
            root.draw(&Text::new(l.clone(), (x0 + c - 7, y0 - 6), style)).map_err(s)?;
        }
        Ok(())
    })
}

/// A grid of validation images with "predicted (true)" captions; wrong ones framed red and
/// shown first so they are seen.
pub fn predictions(path: &Path, samples: &[Sample], predicted: &[usize], labels: &Labels) -> Result<(), TrainerError> {
    const THUMB: u32 = 160;
    const COLS: u32 = 6;
    const MAX: usize = 24;
    let mut order: Vec<usize> = (0..samples.len().min(predicted.len())).collect();
    order.sort_by_key(|&i| predicted[i] == samples[i].label);
    order.truncate(MAX);
    let rows = (order.len() as u32).div_ceil(COLS).max(1);
    let (w, h) = (COLS * (THUMB + 10) + 10, rows * (THUMB + 40) + 40);
    // Thumbnails first (image crate), then frames and captions on top (plotters).
    let thumbs: Vec<Option<RgbImage>> = order
        .iter()
        .map(|&i| {
            let img = models::preprocess::load_image(&samples[i].path, ImageLimits::default()).ok()?;
            Some(img.resize_to_fill(THUMB, THUMB, image::imageops::FilterType::Triangle).to_rgb8())
        })
        .collect();
    render(path, (w, h), |root| {
        let wrong = order.iter().filter(|&&i| predicted[i] != samples[i].label).count();
        root.draw(&Text::new(
            format!("validation predictions: predicted (true); {wrong} wrong shown first, red"),
            (10, 10),
            (FAMILY, 16),
        ))
        .map_err(s)?;
        for (slot, (&i, thumb)) in order.iter().zip(&thumbs).enumerate() {
            let (cx, cy) = ((slot as u32 % COLS) * (THUMB + 10) + 10, (slot as u32 / COLS) * (THUMB + 40) + 36);
            if let Some(t) = thumb {
                root.draw_pixels(t, cx as i32, cy as i32).map_err(s)?;
            }
            let ok = predicted[i] == samples[i].label;
            let color = if ok { GREEN.mix(0.9) } else { RED.mix(1.0) };
            let (x, y, e) = (cx as i32, cy as i32, THUMB as i32);
            root.draw(&Rectangle::new(
                [(x - 2, y - 2), (x + e + 2, y + e + 2)],
                color.stroke_width(if ok { 2 } else { 4 }),
            ))
            .map_err(s)?;
            let caption = if ok {
                labels.get(predicted[i]).to_string()
            } else {
                format!("{} ({})", labels.get(predicted[i]), labels.get(samples[i].label))
            };
            root.draw(&Text::new(
                caption,
                (x, y + e + 6),
                (FAMILY, 14).into_font().color(&if ok { BLACK } else { RED }),
            ))
            .map_err(s)?;
        }
        Ok(())
    })
}

trait DrawPixels {
    fn draw_pixels(&self, img: &RgbImage, x: i32, y: i32) -> Result<(), String>;
}

impl DrawPixels for Canvas<'_> {
    fn draw_pixels(&self, img: &RgbImage, x: i32, y: i32) -> Result<(), String> {
        for (px, py, p) in img.enumerate_pixels() {
            self.draw_pixel((x + px as i32, y + py as i32), &RGBColor(p[0], p[1], p[2])).map_err(s)?;
        }
        Ok(())
    }
}

/// All three pictures of a finished run.
pub fn write_all(
    run_dir: &Path,
    history: &[EpochRow],
    metrics: &Metrics,
    val: &[Sample],
    predicted: &[usize],
    labels: &Labels,
) -> Result<(), TrainerError> {
    curves(&run_dir.join("curves.png"), history)?;
    confusion(&run_dir.join("confusion.png"), metrics)?;
    predictions(&run_dir.join("predictions.png"), val, predicted, labels)
}
