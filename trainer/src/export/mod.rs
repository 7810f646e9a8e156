//! `trainer export`: the trained classifier as one self-describing ONNX file.

pub mod graph;
