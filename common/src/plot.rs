//! The plot font. plotters' ab_glyph text backend has no system font lookup, so every plot
//! (bench reports, training curves) draws with DejaVu Sans embedded through the `dejavu` crate
//! (Bitstream Vera licence), registered as the "sans-serif" family.

use std::sync::OnceLock;

use plotters::style::FontStyle;

/// Family name to use in plotters text styles after [`register_font`].
pub const FAMILY: &str = "sans-serif";

/// Registers DejaVu Sans regular and bold as [`FAMILY`]; repeated calls are free. The error names
/// the face that failed to load.
pub fn register_font() -> Result<(), String> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            let faces = [
                ("regular", FontStyle::Normal, dejavu::sans::regular()),
                ("bold", FontStyle::Bold, dejavu::sans::bold()),
            ];
            for (name, style, bytes) in faces {
                plotters::style::register_font(FAMILY, style, bytes)
                    .map_err(|_| format!("the embedded DejaVu Sans {name} is not a valid TrueType font"))?;
            }
            Ok(())
        })
        .clone()
}
