//! `trainer export`: the trained classifier as one self-describing ONNX file.
//!
//! burn cannot write ONNX, so perch does: the backbone and head describe themselves as a
//! [`graph::Graph`], [`fold`] folds BatchNorm into the convs, [`onnx`] writes the protobuf
//! (fp32, or int8 QDQ with [`quantize`] and ranges from [`calibrate`]), and [`command`] runs
//! the whole `trainer export` with its accuracy gate.

pub mod calibrate;
pub mod command;
pub mod fold;
pub mod graph;
pub mod onnx;
pub mod quantize;
#[cfg(test)]
pub mod reference;

pub use command::{ExportOptions, ExportPrecision, ExportReport, build_graph, run};
