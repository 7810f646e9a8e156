//! int8 execution modes for QDQ models (QuantizeLinear/DequantizeLinear pairs, as written by
//! `trainer export --int8` or onnxruntime's `quantize_static(QuantFormat.QDQ)`):
//! - `native`: run the QDQ graph as it is;
//! - `weights`: fold every int8 weight back into a float initializer and drop the activation
//!   fake-quantization, so the model keeps its int8 file size on disk but runs at fp32 speed
//!   with (almost) fp32 accuracy;
//! - `auto`: build both at load, time a few inferences, keep the faster.
//!
//! The rewrite is a pure function on the ONNX protobuf, done before tract sees the graph.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::{AttributeProto, ModelProto, NodeProto, TensorProto};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Int8Mode {
    /// Run the QDQ graph as it is.
    Native,
    /// Dequantize weights at load, remove activation Q/DQ pairs: float execution.
    Weights,
    /// Build both, time a few inferences, keep the faster.
    #[default]
    Auto,
}

impl Int8Mode {
    /// The one spelling: `--int8 NAME`, the manifest-free bench field `int8_mode`, logs.
    pub fn name(self) -> &'static str {
        match self {
            Int8Mode::Native => "native",
            Int8Mode::Weights => "weights",
            Int8Mode::Auto => "auto",
        }
    }
}

const QUANTIZE: &str = "QuantizeLinear";
const DEQUANTIZE: &str = "DequantizeLinear";

/// True when the graph holds any QuantizeLinear/DequantizeLinear node.
pub fn is_qdq(proto: &ModelProto) -> bool {
    proto.graph.as_ref().is_some_and(|g| g.node.iter().any(|n| n.op_type == QUANTIZE || n.op_type == DEQUANTIZE))
}

/// What [`fold_qdq_to_f32`] changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FoldStats {
    /// DequantizeLinear nodes on initializers replaced by float initializers.
    pub weights_folded: usize,
    /// Activation QuantizeLinear -> DequantizeLinear pairs removed.
    pub activation_pairs_removed: usize,
}

/// Returns a copy of `proto` where
/// 1. every `DequantizeLinear(int initializer, scale, zero_point)` becomes a float initializer
///    `(q - zero_point) * scale` (per-tensor or per-axis) under the node's output name, and
/// 2. every per-tensor `QuantizeLinear(x) -> DequantizeLinear` pair on activations becomes
///    `Clip(x, lo, hi)` with the pair's representable range: quantizers fold ReLU/ReLU6 into
///    that saturation (onnxruntime drops the Clip nodes), so the range must stay while the
///    rounding goes. A pair whose range cannot be read becomes `Identity(x)`.
///
/// Unused initializers and dead QuantizeLinear nodes are dropped afterwards.
pub fn fold_qdq_to_f32(proto: &ModelProto) -> Result<ModelProto, String> {
    fold_qdq_with_stats(proto).map(|(p, _)| p)
}

pub fn fold_qdq_with_stats(proto: &ModelProto) -> Result<(ModelProto, FoldStats), String> {
    let mut out = proto.clone();
    let graph = out.graph.as_mut().ok_or("model has no graph")?;
    let mut stats = FoldStats::default();
    let ctx = FoldContext::new(&graph.initializer, &graph.node, default_opset(proto));
    let mut new_inits = Vec::new();
    let mut nodes = Vec::with_capacity(graph.node.len());
    for node in &graph.node {
        if node.op_type != DEQUANTIZE {
            nodes.push(node.clone());
            continue;
        }
        let input = node.input.first().ok_or_else(|| format!("{} has no input", describe(node)))?;
        if let Some(&ix) = ctx.init_index.get(input) {
            new_inits.push(ctx.fold_weight(node, ix)?);
            stats.weights_folded += 1;
        } else if let Some(q) = ctx.quantize_producing(input) {
            let (clip, consts) = ctx.fold_activation_pair(q, node)?;
            nodes.push(clip);
            new_inits.extend(consts);
            stats.activation_pairs_removed += 1;
        } else {
            // A lone DequantizeLinear on a computed int tensor: nothing to fold, keep it.
            nodes.push(node.clone());
        }
    }
    graph.node = prune_dead_quantize(nodes, &graph.output.iter().map(|o| o.name.clone()).collect());
    graph.initializer.extend(new_inits);
    let used: HashSet<String> = graph
        .node
        .iter()
        .flat_map(|n| n.input.iter().cloned())
        .chain(graph.output.iter().map(|o| o.name.clone()))
        .collect();
    graph.initializer.retain(|t| used.contains(&t.name));
    Ok((out, stats))
}

/// The graph's initializers and node producers, looked up by tensor name while folding.
struct FoldContext<'g> {
    inits: &'g [TensorProto],
    init_index: HashMap<String, usize>,
    producers: HashMap<String, &'g NodeProto>,
    opset: i64,
}

impl<'g> FoldContext<'g> {
    fn new(inits: &'g [TensorProto], nodes: &'g [NodeProto], opset: i64) -> Self {
        let init_index = inits.iter().enumerate().map(|(i, t)| (t.name.clone(), i)).collect();
        let producers = nodes.iter().flat_map(|n| n.output.iter().map(move |o| (o.clone(), n))).collect();
        FoldContext { inits, init_index, producers, opset }
    }

    /// The initializer named by `node`'s input `k` (absent or empty: None).
    fn input_init(&self, node: &NodeProto, k: usize) -> Option<&'g TensorProto> {
        node.input.get(k).filter(|n| !n.is_empty()).and_then(|n| self.init_index.get(n)).map(|&i| &self.inits[i])
    }

    fn quantize_producing(&self, tensor: &str) -> Option<&'g NodeProto> {
        self.producers.get(tensor).copied().filter(|q| q.op_type == QUANTIZE)
    }

    /// `DequantizeLinear(int initializer)` -> the float initializer under the node's output name.
    fn fold_weight(&self, node: &NodeProto, weight: usize) -> Result<TensorProto, String> {
        let scale =
            self.input_init(node, 1).ok_or_else(|| format!("{}: scale is not an initializer", describe(node)))?;
        let out_name = node.output.first().ok_or_else(|| format!("{} has no output", describe(node)))?;
        let folded = dequantize(&self.inits[weight], scale, self.input_init(node, 2), axis_of(node))
            .map_err(|e| format!("{}: {e}", describe(node)))?;
        Ok(TensorProto { name: out_name.clone(), ..folded })
    }

    /// `QuantizeLinear(x) -> DequantizeLinear` -> `Clip(x, lo, hi)` over the pair's representable
    /// range (Identity when it cannot be read), plus the Clip bounds as initializers (opset 11+).
    fn fold_activation_pair(&self, q: &NodeProto, dq: &NodeProto) -> Result<(NodeProto, Vec<TensorProto>), String> {
        let source = q.input.first().ok_or_else(|| format!("{} has no input", describe(q)))?;
        let range = self.input_init(q, 1).and_then(|s| saturation_range(s, self.input_init(q, 2)));
        let mut consts = Vec::new();
        let (op_type, input, attribute) = match range {
            Some((lo, hi)) if self.opset >= 11 => {
                let (lo_name, hi_name) = (format!("{}_clip_lo", dq.name), format!("{}_clip_hi", dq.name));
                consts.push(scalar(&lo_name, lo));
                consts.push(scalar(&hi_name, hi));
                ("Clip", vec![source.clone(), lo_name, hi_name], vec![])
            }
            Some((lo, hi)) => ("Clip", vec![source.clone()], vec![float_attr("min", lo), float_attr("max", hi)]),
            None => ("Identity", vec![source.clone()], vec![]),
        };
        let node = NodeProto {
            op_type: op_type.into(),
            name: format!("{}_folded", dq.name),
            input,
            output: dq.output.clone(),
            attribute,
            ..Default::default()
        };
        Ok((node, consts))
    }
}

/// Drops QuantizeLinear nodes whose outputs nobody reads any more.
fn prune_dead_quantize(nodes: Vec<NodeProto>, graph_outputs: &HashSet<String>) -> Vec<NodeProto> {
    let consumed: HashSet<&String> = nodes.iter().flat_map(|n| n.input.iter()).collect();
    let keep: Vec<bool> = nodes
        .iter()
        .map(|n| n.op_type != QUANTIZE || n.output.iter().any(|o| consumed.contains(o) || graph_outputs.contains(o)))
        .collect();
    nodes.into_iter().zip(keep).filter_map(|(n, k)| k.then_some(n)).collect()
}

/// Version of the default ONNX domain the model imports (Clip's bounds became inputs in 11).
fn default_opset(proto: &ModelProto) -> i64 {
    proto.opset_import.iter().find(|o| o.domain.is_empty() || o.domain == "ai.onnx").map(|o| o.version).unwrap_or(13)
}

/// The float interval a per-tensor quantizer can represent: `[(qmin - zp) * s, (qmax - zp) * s]`.
/// Without a zero point ONNX quantizes to uint8.
fn saturation_range(scale: &TensorProto, zero: Option<&TensorProto>) -> Option<(f32, f32)> {
    let s = floats_of(scale).ok().filter(|v| v.len() == 1)?[0];
    let (zp, (qmin, qmax)) = match zero {
        Some(z) => {
            let zp = ints_of(z).ok().filter(|v| v.len() == 1)?[0];
            let bounds = match DataType::try_from(z.data_type) {
                Ok(DataType::Int8) => (-128, 127),
                Ok(DataType::Uint8) => (0, 255),
                _ => return None,
            };
            (zp, bounds)
        }
        None => (0, (0, 255)),
    };
    Some((((qmin - zp) as f64 * s as f64) as f32, ((qmax - zp) as f64 * s as f64) as f32))
}

fn scalar(name: &str, v: f32) -> TensorProto {
    TensorProto { name: name.into(), data_type: DataType::Float as i32, float_data: vec![v], ..Default::default() }
}

fn float_attr(name: &str, f: f32) -> AttributeProto {
    // AttributeType FLOAT = 1.
    AttributeProto { name: name.into(), f, r#type: 1, ..Default::default() }
}

fn describe(node: &NodeProto) -> String {
    format!("{} node '{}'", node.op_type, node.name)
}

/// ONNX default for DequantizeLinear's `axis` is 1 (output channels of a conv weight are 0,
/// so exporters always write it explicitly for weights).
fn axis_of(node: &NodeProto) -> i64 {
    node.attribute.iter().find(|a: &&AttributeProto| a.name == "axis").map(|a| a.i).unwrap_or(1)
}

/// `(q - zero_point) * scale` as a float TensorProto with the shape of `q`.
fn dequantize(
    q: &TensorProto,
    scale: &TensorProto,
    zero: Option<&TensorProto>,
    axis: i64,
) -> Result<TensorProto, String> {
    let values = ints_of(q)?;
    let scales = floats_of(scale)?;
    let zeros = match zero {
        Some(z) => ints_of(z)?,
        None => vec![0; scales.len()],
    };
    if scales.is_empty() || zeros.len() != scales.len() {
        return Err(format!("{} scales but {} zero points", scales.len(), zeros.len()));
    }
    let dims: Vec<usize> = q.dims.iter().map(|&d| d.max(0) as usize).collect();
    // Per-axis: the scale index of element i is its coordinate on `axis`.
    let (period, inner) = if scales.len() == 1 {
        (1, 1)
    } else {
        let rank = dims.len() as i64;
        let axis = if axis < 0 { axis + rank } else { axis };
        if axis < 0 || axis >= rank || dims[axis as usize] != scales.len() {
            return Err(format!("{} per-axis scales do not match axis {axis} of shape {dims:?}", scales.len()));
        }
        (scales.len(), dims[axis as usize + 1..].iter().product::<usize>())
    };
    // Fuzzing found a zero dimension after the axis (a division by zero below) and data that
    // does not fill its shape: both are a damaged file.
    if inner == 0 || values.len() != dims.iter().product::<usize>() {
        return Err(format!("{} values do not fill the shape {dims:?}", values.len()));
    }
    let float_data = values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let c = (i / inner) % period;
            // f64 keeps (q - zp) * scale exactly rounded once, as onnxruntime's reference does.
            ((v - zeros[c]) as f64 * scales[c] as f64) as f32
        })
        .collect();
    Ok(TensorProto { dims: q.dims.clone(), data_type: DataType::Float as i32, float_data, ..Default::default() })
}

fn ints_of(t: &TensorProto) -> Result<Vec<i64>, String> {
    let raw = &t.raw_data;
    match DataType::try_from(t.data_type) {
        Ok(DataType::Int8) if !raw.is_empty() => Ok(raw.iter().map(|&b| b as i8 as i64).collect()),
        Ok(DataType::Uint8) if !raw.is_empty() => Ok(raw.iter().map(|&b| b as i64).collect()),
        Ok(DataType::Int32) if !raw.is_empty() => {
            Ok(raw.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64).collect())
        }
        // Without raw_data, 8- and 32-bit integers are stored widened in int32_data.
        Ok(DataType::Int8 | DataType::Uint8 | DataType::Int32) => Ok(t.int32_data.iter().map(|&v| v as i64).collect()),
        _ => Err(format!("initializer '{}' has data type {}, expected int8, uint8 or int32", t.name, t.data_type)),
    }
}

fn floats_of(t: &TensorProto) -> Result<Vec<f32>, String> {
    match DataType::try_from(t.data_type) {
        Ok(DataType::Float) if !t.raw_data.is_empty() => {
            Ok(t.raw_data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
        }
        Ok(DataType::Float) => Ok(t.float_data.clone()),
        _ => Err(format!("scale '{}' has data type {}, expected float", t.name, t.data_type)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::pb::{GraphProto, ValueInfoProto};

    fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str], axis: Option<i64>) -> NodeProto {
        NodeProto {
            op_type: op.into(),
            name: name.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            attribute: axis
                .map(|i| vec![AttributeProto { name: "axis".into(), i, r#type: 2, ..Default::default() }])
                .unwrap_or_default(),
            ..Default::default()
        }
    }

    fn init(name: &str, dims: &[i64], dt: DataType, raw: Vec<u8>) -> TensorProto {
        TensorProto {
            name: name.into(),
            dims: dims.to_vec(),
            data_type: dt as i32,
            raw_data: raw,
            ..Default::default()
        }
    }

    fn f32_init(name: &str, v: &[f32]) -> TensorProto {
        TensorProto {
            name: name.into(),
            dims: vec![v.len() as i64],
            data_type: DataType::Float as i32,
            float_data: v.to_vec(),
            ..Default::default()
        }
    }

    /// x -> Q -> DQ -> MatMul(W) -> y, with W = DQ(int8 [2,3] per-axis 0) and a per-tensor
    /// uint8 activation pair.
    fn tiny_qdq() -> ModelProto {
        let w_q: Vec<u8> = [1i8, -2, 3, 4, 0, -128].iter().map(|&v| v as u8).collect();
        let graph = GraphProto {
            node: vec![
                node(QUANTIZE, "q_x", &["x", "sx", "zx"], &["x_q"], None),
                node(DEQUANTIZE, "dq_x", &["x_q", "sx", "zx"], &["x_dq"], None),
                node(DEQUANTIZE, "dq_w", &["w_q", "sw", "zw"], &["w"], Some(0)),
                node("MatMul", "mm", &["x_dq", "w"], &["y"], None),
            ],
            initializer: vec![
                f32_init("sx", &[0.5]),
                init("zx", &[], DataType::Uint8, vec![128]),
                init("w_q", &[2, 3], DataType::Int8, w_q),
                f32_init("sw", &[0.25, 2.0]),
                init("zw", &[2], DataType::Int8, vec![0, 1]),
            ],
            output: vec![ValueInfoProto { name: "y".into(), ..Default::default() }],
            ..Default::default()
        };
        ModelProto { graph: Some(graph), ..Default::default() }
    }

    #[test]
    fn weights_are_dequantized_per_axis_and_activation_pairs_removed() {
        let proto = tiny_qdq();
        assert!(is_qdq(&proto));
        let (folded, stats) = fold_qdq_with_stats(&proto).unwrap();
        assert_eq!(stats, FoldStats { weights_folded: 1, activation_pairs_removed: 1 });
        assert!(!is_qdq(&folded), "no Q/DQ node may remain");
        let g = folded.graph.unwrap();
        let ops: Vec<&str> = g.node.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(ops, ["Clip", "MatMul"]);
        assert_eq!(g.node[0].input[0], "x");
        assert_eq!(g.node[0].output, ["x_dq"]);
        // uint8, zero point 128, scale 0.5: the pair saturated at [-64, 63.5]; the Clip keeps that.
        let bound = |name: &str| g.initializer.iter().find(|t| t.name == name).unwrap().float_data[0];
        assert_eq!((bound(&g.node[0].input[1]), bound(&g.node[0].input[2])), (-64.0, 63.5));
        let w = g.initializer.iter().find(|t| t.name == "w").expect("folded weight");
        assert_eq!(w.dims, [2, 3]);
        assert_eq!(w.data_type, DataType::Float as i32);
        // row 0: scale 0.25, zp 0; row 1: scale 2.0, zp 1.
        assert_eq!(w.float_data, [0.25, -0.5, 0.75, 6.0, -2.0, -258.0]);
        let names: HashSet<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, HashSet::from(["w", "dq_x_clip_lo", "dq_x_clip_hi"]), "quantized leftovers are dropped");
    }

    #[test]
    fn float_graphs_pass_through_unchanged() {
        let mut proto = tiny_qdq();
        let g = proto.graph.as_mut().unwrap();
        g.node.retain(|n| n.op_type == "MatMul");
        assert!(!is_qdq(&proto));
        let (folded, stats) = fold_qdq_with_stats(&proto).unwrap();
        assert_eq!(stats, FoldStats::default());
        assert_eq!(folded.graph.unwrap().node, proto.graph.unwrap().node);
    }

    #[test]
    fn mismatched_per_axis_scales_are_an_error_naming_the_node() {
        let mut proto = tiny_qdq();
        let g = proto.graph.as_mut().unwrap();
        g.initializer.iter_mut().find(|t| t.name == "sw").unwrap().float_data = vec![1.0, 2.0, 3.0];
        g.initializer.iter_mut().find(|t| t.name == "zw").unwrap().raw_data = vec![0, 0, 0];
        let err = fold_qdq_to_f32(&proto).unwrap_err();
        assert!(err.contains("dq_w") && err.contains("axis 0"), "{err}");
    }
}
