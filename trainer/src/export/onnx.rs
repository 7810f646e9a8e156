//! Writes a [`Graph`] as an ONNX `ModelProto` (tract-onnx's generated protobuf types, encoded
//! with prost): weights as initializers, static `1x3xHxW` input named "input", the perch
//! manifest in `metadata_props`. With a [`QuantPlan`] it writes the portable QDQ form:
//! int8 per-channel symmetric weights (DequantizeLinear axis 0), int32 biases, and
//! QuantizeLinear→DequantizeLinear pairs (uint8, per-tensor) on every activation a
//! Conv/Gemm/Add/GlobalAveragePool reads. Those ops stay float ops behind DQ nodes, which is
//! the form onnxruntime's quantizer writes and fuses into integer kernels.

use std::collections::{BTreeMap, HashMap};

use edge_runtime::enrol::graph::value_info;
use prost::Message;
use tract_onnx::pb::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto, TensorProto,
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto::dimension::Value as DimValue,
};

use super::graph::{Constant, Graph, Op};
use super::quantize::{ActQuant, quantize_layer};
use crate::error::TrainerError;

/// Opsets this writer produces valid files for (QuantizeLinear per-axis needs 13).
pub const OPSETS: std::ops::RangeInclusive<i64> = 13..=21;

/// Per-tensor activation quantization (tensor name → parameters) for the QDQ form.
pub type QuantPlan = BTreeMap<String, ActQuant>;

#[derive(Debug, Clone)]
pub struct WriteOptions<'a> {
    pub opset: i64,
    /// `Some`: write the int8 QDQ form with these activation parameters.
    pub quant: Option<&'a QuantPlan>,
    /// Bits of the int8 weights: 8, or 7 (`--reduce-range`).
    pub weight_bits: u8,
    /// Batch dimension as the symbol `N` instead of 1.
    pub dynamic_batch: bool,
    /// JSON stored under `models::MANIFEST_KEY`.
    pub manifest_json: Option<String>,
    /// A tensor the output Gemm reads (the pooled embedding), written as a second graph output
    /// named `models::enrolment::FEATURES_OUTPUT` (`edge-runtime enrol` builds on it).
    pub features: Option<String>,
}

impl WriteOptions<'_> {
    /// Plain fp32 at opset 13, batch 1, no manifest, one output.
    pub fn fp32() -> Self {
        WriteOptions {
            opset: 13,
            quant: None,
            weight_bits: 8,
            dynamic_batch: false,
            manifest_json: None,
            features: None,
        }
    }
}

/// The IR version that goes with an opset (onnx/docs/Versioning.md).
fn ir_version(opset: i64) -> i64 {
    match opset {
        ..=13 => 7,
        14..=15 => 8,
        16..=18 => 9,
        _ => 10,
    }
}

/// Counts of what the QDQ form quantized (for the manifest's calibration summary).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuantCounts {
    pub activations: usize,
    pub weights: usize,
}

/// Builds the ONNX model. Errors on an opset outside [`OPSETS`] or a quantized Conv/Gemm
/// whose input has no activation parameters in the plan.
pub fn to_model_proto(graph: &Graph, opts: &WriteOptions<'_>) -> Result<(ModelProto, QuantCounts), TrainerError> {
    if !OPSETS.contains(&opts.opset) {
        return Err(TrainerError::ExportInvalid(format!(
            "--opset {} is not supported: use {}..={} (13 is the default and what most runtimes load)",
            opts.opset,
            OPSETS.start(),
            OPSETS.end()
        )));
    }
    let mut b = Builder { weight_bits: opts.weight_bits, ..Builder::default() };
    let mut counts = QuantCounts::default();
    // Consumers read the dequantized copy of a quantized tensor.
    let mut alias: HashMap<String, String> = HashMap::new();
    if let Some(plan) = opts.quant {
        b.qdq(&graph.input, plan, &mut alias, &mut counts);
    }
    for op in &graph.ops {
        let read = |t: &str| alias.get(t).cloned().unwrap_or_else(|| t.to_string());
        b.op(op, &read, opts.quant, &mut counts)?;
        if let Some(plan) = opts.quant
            && op.output() != graph.output
        {
            b.qdq(op.output(), plan, &mut alias, &mut counts);
        }
    }

    Ok((assemble(graph, opts, b), counts))
}

/// The ONNX model around the nodes and initializers `b` holds: input and output value infos,
/// opset, producer, manifest.
fn assemble(graph: &Graph, opts: &WriteOptions<'_>, b: Builder) -> ModelProto {
    let batch = batch_dim(opts);
    let [c, h, w] = graph.input_chw;
    let input_dims =
        vec![batch.clone(), DimValue::DimValue(c as i64), DimValue::DimValue(h as i64), DimValue::DimValue(w as i64)];
    let mut output_dims = vec![batch];
    if let Some(classes) = output_classes(graph) {
        output_dims.push(DimValue::DimValue(classes as i64));
    } else {
        output_dims.push(DimValue::DimParam("classes".into()));
    }
    let mut outputs = vec![value_info(&graph.output, output_dims)];
    let mut nodes = b.nodes;
    if let Some(features) = &opts.features {
        let name = models::enrolment::FEATURES_OUTPUT;
        if features != name {
            // Exposed under the one name readers look for.
            nodes.push(NodeProto {
                op_type: "Identity".into(),
                name: format!("{name}.output"),
                input: vec![features.clone()],
                output: vec![name.into()],
                ..Default::default()
            });
        }
        let dim = feature_dim(graph, features)
            .map_or(DimValue::DimParam("features".into()), |d| DimValue::DimValue(d as i64));
        outputs.push(value_info(name, vec![batch_dim(opts), dim]));
    }
    let onnx_graph = GraphProto {
        name: "perch".into(),
        node: nodes,
        initializer: b.inits,
        input: vec![value_info(&graph.input, input_dims)],
        output: outputs,
        ..Default::default()
    };
    let mut model = ModelProto {
        ir_version: ir_version(opts.opset),
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: opts.opset }],
        producer_name: "perch".into(),
        producer_version: models::PERCH_VERSION.into(),
        graph: Some(onnx_graph),
        ..Default::default()
    };
    if let Some(json) = &opts.manifest_json {
        model.metadata_props.push(StringStringEntryProto { key: models::MANIFEST_KEY.into(), value: json.clone() });
    }
    model
}

/// The graph as ONNX bytes.
pub fn to_onnx_bytes(graph: &Graph, opts: &WriteOptions<'_>) -> Result<(Vec<u8>, QuantCounts), TrainerError> {
    let (model, counts) = to_model_proto(graph, opts)?;
    Ok((model.encode_to_vec(), counts))
}

fn batch_dim(opts: &WriteOptions<'_>) -> DimValue {
    if opts.dynamic_batch { DimValue::DimParam("N".into()) } else { DimValue::DimValue(1) }
}

/// Width of `tensor` when a Gemm reads it (its weight is `[out, in]`).
fn feature_dim(graph: &Graph, tensor: &str) -> Option<usize> {
    graph.ops.iter().find_map(|op| match op {
        Op::Gemm { input, weight, .. } if input == tensor => Some(weight.shape[1]),
        _ => None,
    })
}

/// Classes of the output, when the last op is a Gemm (it always is for perch classifiers).
fn output_classes(graph: &Graph) -> Option<usize> {
    graph.ops.iter().rev().find_map(|op| match op {
        Op::Gemm { output, weight, .. } if *output == graph.output => Some(weight.shape[0]),
        _ => None,
    })
}

fn int(name: &str, i: i64) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Int as i32, i, ..Default::default() }
}

fn float(name: &str, f: f32) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Float as i32, f, ..Default::default() }
}

fn ints(name: &str, v: &[usize]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: v.iter().map(|x| *x as i64).collect(),
        ..Default::default()
    }
}

fn tensor(name: &str, shape: &[usize], data_type: DataType, raw_data: Vec<u8>) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: shape.iter().map(|d| *d as i64).collect(),
        data_type: data_type as i32,
        raw_data,
        ..Default::default()
    }
}

#[derive(Default)]
struct Builder {
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    init_names: std::collections::HashSet<String>,
    layer_names: std::collections::HashSet<String>,
    /// Bits of the int8 weights (8, or 7 with `--reduce-range`).
    weight_bits: u8,
}

impl Builder {
    /// The ONNX nodes (and initializers) of one graph op; `read` maps a tensor to the name its
    /// consumers read (the dequantized copy of a quantized tensor).
    fn op(
        &mut self,
        op: &Op,
        read: &dyn Fn(&str) -> String,
        quant: Option<&QuantPlan>,
        counts: &mut QuantCounts,
    ) -> Result<(), TrainerError> {
        match op {
            Op::Conv { name, input, output, weight, bias, stride, pads, groups } => {
                let x = read(input);
                let name = &self.layer_name(name);
                let (w, bias) = self.weight_and_bias(name, weight, bias.as_ref(), input, quant, counts)?;
                let mut inputs = vec![x, w];
                inputs.extend(bias);
                let attrs = vec![
                    ints("kernel_shape", &[weight.shape[2], weight.shape[3]]),
                    ints("strides", stride),
                    ints("pads", pads),
                    ints("dilations", &[1, 1]),
                    int("group", *groups as i64),
                ];
                self.node("Conv", name, inputs, output, attrs);
            }
            Op::Gemm { name, input, output, weight, bias } => {
                let x = read(input);
                let name = &self.layer_name(name);
                let (w, bias) = self.weight_and_bias(name, weight, Some(bias), input, quant, counts)?;
                let mut inputs = vec![x, w];
                inputs.extend(bias);
                self.node("Gemm", name, inputs, output, vec![int("transB", 1)]);
            }
            Op::BatchNorm { name, input, output, gamma, beta, mean, var, eps } => {
                let name = &self.layer_name(name);
                let c = [gamma.len()];
                let inputs = vec![
                    read(input),
                    self.init_f32(&format!("{name}.weight"), &c, gamma),
                    self.init_f32(&format!("{name}.bias"), &c, beta),
                    self.init_f32(&format!("{name}.running_mean"), &c, mean),
                    self.init_f32(&format!("{name}.running_var"), &c, var),
                ];
                self.node("BatchNormalization", name, inputs, output, vec![float("epsilon", *eps)]);
            }
            Op::Relu6 { input, output } => {
                let (lo, hi) = (self.scalar_f32("const_f32_0", 0.0), self.scalar_f32("const_f32_6", 6.0));
                self.node("Clip", &format!("{output}.clip"), vec![read(input), lo, hi], output, vec![]);
            }
            Op::Relu { input, output } => {
                self.node("Relu", &format!("{output}.relu"), vec![read(input)], output, vec![])
            }
            Op::Sigmoid { input, output } => {
                self.node("Sigmoid", &format!("{output}.sigmoid"), vec![read(input)], output, vec![])
            }
            Op::Swish { input, output } => {
                let x = read(input);
                let s = format!("{output}.sigmoid");
                self.node("Sigmoid", &s, vec![x.clone()], &s, vec![]);
                self.node("Mul", &format!("{output}.mul"), vec![x, s], output, vec![]);
            }
            Op::Add { a, b: rhs, output } => {
                self.node("Add", &format!("{output}.add"), vec![read(a), read(rhs)], output, vec![])
            }
            Op::Mul { a, b: rhs, output } => {
                self.node("Mul", &format!("{output}.mul"), vec![read(a), read(rhs)], output, vec![])
            }
            Op::GlobalAveragePool { input, output } => {
                self.node("GlobalAveragePool", &format!("{output}.gap"), vec![read(input)], output, vec![])
            }
            Op::Flatten { input, output } => {
                self.node("Flatten", &format!("{output}.flatten"), vec![read(input)], output, vec![int("axis", 1)])
            }
        }
        Ok(())
    }

    fn node(&mut self, op_type: &str, name: &str, inputs: Vec<String>, output: &str, attribute: Vec<AttributeProto>) {
        self.nodes.push(NodeProto {
            op_type: op_type.into(),
            name: name.into(),
            input: inputs,
            output: vec![output.into()],
            attribute,
            ..Default::default()
        });
    }

    /// A layer name not used before: initializer and DQ-output names derive from it, and
    /// two layers may share a name (the backbone's "head" conv and the classifier "head").
    fn layer_name(&mut self, name: &str) -> String {
        let mut unique = name.to_string();
        let mut n = 1;
        while !self.layer_names.insert(unique.clone()) {
            n += 1;
            unique = format!("{name}_{n}");
        }
        unique
    }

    /// Adds an initializer once (shared constants such as the Clip bounds are reused).
    fn init(&mut self, t: TensorProto) -> String {
        let name = t.name.clone();
        if self.init_names.insert(name.clone()) {
            self.inits.push(t);
        }
        name
    }

    fn init_f32(&mut self, name: &str, shape: &[usize], values: &[f32]) -> String {
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.init(tensor(name, shape, DataType::Float, raw))
    }

    fn scalar_f32(&mut self, name: &str, v: f32) -> String {
        self.init_f32(name, &[], &[v])
    }

    /// Q→DQ on `t` when the plan quantizes it; later readers of `t` read the DQ output.
    fn qdq(&mut self, t: &str, plan: &QuantPlan, alias: &mut HashMap<String, String>, counts: &mut QuantCounts) {
        let Some(q) = plan.get(t) else { return };
        let scale = self.scalar_f32(&format!("{t}.act_scale"), q.scale);
        let zp = self.init(tensor(&format!("{t}.act_zero_point"), &[], DataType::Uint8, vec![q.zero_point]));
        let (quantized, dequantized) = (format!("{t}.quantized"), format!("{t}.dequantized"));
        self.node("QuantizeLinear", &quantized, vec![t.into(), scale.clone(), zp.clone()], &quantized, vec![]);
        self.node("DequantizeLinear", &dequantized, vec![quantized, scale, zp], &dequantized, vec![]);
        alias.insert(t.into(), dequantized);
        counts.activations += 1;
    }

    /// The weight (and bias) inputs of a Conv/Gemm: plain f32 initializers, or in the QDQ
    /// form int8 per-channel weights and int32 biases (scale = input scale × weight scale)
    /// behind DequantizeLinear nodes.
    fn weight_and_bias(
        &mut self,
        layer: &str,
        weight: &Constant,
        bias: Option<&Constant>,
        input: &str,
        quant: Option<&QuantPlan>,
        counts: &mut QuantCounts,
    ) -> Result<(String, Option<String>), TrainerError> {
        let Some(plan) = quant else {
            let w = self.init_f32(&format!("{layer}.weight"), &weight.shape, &weight.values);
            let b = bias.map(|b| self.init_f32(&format!("{layer}.bias"), &b.shape, &b.values));
            return Ok((w, b));
        };
        let act = plan.get(input).ok_or_else(|| {
            TrainerError::ExportInvalid(format!("layer {layer}: its input '{input}' has no calibration range"))
        })?;
        let q = quantize_layer(weight, bias, act.scale, self.weight_bits);
        let out = weight.shape[0];
        let w_name = format!("{layer}.weight");
        let wq = self.init(tensor(
            &format!("{w_name}.quantized"),
            &weight.shape,
            DataType::Int8,
            q.weight.iter().map(|v| *v as u8).collect(),
        ));
        let ws = self.init_f32(&format!("{w_name}.scale"), &[out], &q.weight_scales);
        let wz = self.init(tensor(&format!("{w_name}.zero_point"), &[out], DataType::Int8, vec![0; out]));
        self.node("DequantizeLinear", &w_name, vec![wq, ws, wz], &w_name, vec![int("axis", 0)]);
        counts.weights += 1;
        let b_name = q.bias.map(|values| {
            let b_name = format!("{layer}.bias");
            let bq = self.init(tensor(
                &format!("{b_name}.quantized"),
                &[out],
                DataType::Int32,
                values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ));
            let scales: Vec<f32> = q.weight_scales.iter().map(|s| s * act.scale).collect();
            let bs = self.init_f32(&format!("{b_name}.scale"), &[out], &scales);
            let bz = self.init(tensor(&format!("{b_name}.zero_point"), &[out], DataType::Int32, vec![0; 4 * out]));
            self.node("DequantizeLinear", &b_name, vec![bq, bs, bz], &b_name, vec![int("axis", 0)]);
            b_name
        });
        Ok((w_name, b_name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::calibrate::{TensorProbe, calibrate};
    use crate::export::quantize::quantized_tensors;
    use crate::export::reference;
    use models::manifest::CalibrationMethod;
    use rand::{Rng, SeedableRng, rngs::StdRng};
    use tract_onnx::pb::{ValueInfoProto, type_proto};

    fn constant(rng: &mut StdRng, shape: &[usize], scale: f32) -> Constant {
        let n = shape.iter().product();
        Constant { shape: shape.to_vec(), values: (0..n).map(|_| rng.random_range(-scale..scale)).collect() }
    }

    /// Every op kind the writer knows, with TF-SAME asymmetric padding, a depthwise conv,
    /// a residual Add and a squeeze-excite style broadcast Mul.
    pub(crate) fn test_graph() -> Graph {
        let mut rng = StdRng::seed_from_u64(3);
        let conv = |rng: &mut StdRng,
                    name: &str,
                    input: &str,
                    shape: [usize; 4],
                    stride: [usize; 2],
                    pads: [usize; 4],
                    groups: usize| Op::Conv {
            name: name.into(),
            input: input.into(),
            output: name.into(),
            weight: constant(rng, &shape, 0.5),
            bias: Some(constant(rng, &shape[..1], 0.2)),
            stride,
            pads,
            groups,
        };
        let t = |s: &str| s.to_string();
        let ops = vec![
            conv(&mut rng, "stem", "input", [8, 3, 3, 3], [2, 2], [0, 0, 1, 1], 1),
            Op::BatchNorm {
                name: t("stem_bn"),
                input: t("stem"),
                output: t("stem_bn"),
                gamma: vec![1.5; 8],
                beta: vec![0.1; 8],
                mean: vec![0.2; 8],
                var: vec![0.8; 8],
                eps: 1e-3,
            },
            Op::Relu6 { input: t("stem_bn"), output: t("a1") },
            conv(&mut rng, "dw", "a1", [8, 1, 3, 3], [1, 1], [1, 1, 1, 1], 8),
            Op::Swish { input: t("dw"), output: t("a2") },
            Op::GlobalAveragePool { input: t("a2"), output: t("se_pool") },
            conv(&mut rng, "se", "se_pool", [8, 8, 1, 1], [1, 1], [0; 4], 1),
            Op::Sigmoid { input: t("se"), output: t("se_gate") },
            Op::Mul { a: t("a2"), b: t("se_gate"), output: t("a3") },
            conv(&mut rng, "project", "a3", [8, 8, 1, 1], [1, 1], [0; 4], 1),
            Op::Add { a: t("project"), b: t("a1"), output: t("res") },
            Op::Relu { input: t("res"), output: t("a4") },
            Op::GlobalAveragePool { input: t("a4"), output: t("pooled") },
            Op::Flatten { input: t("pooled"), output: t("features") },
            // Same layer name as a conv: the backbone's "head" conv meets the classifier "head".
            Op::Gemm {
                name: t("se"),
                input: t("features"),
                output: t("logits"),
                weight: constant(&mut rng, &[3, 8], 1.0),
                bias: constant(&mut rng, &[3], 0.5),
            },
        ];
        Graph { input: t("input"), input_chw: [3, 9, 11], output: t("logits"), ops }
    }

    fn images(n: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n).map(|_| (0..3 * 9 * 11).map(|_| rng.random_range(-1.0..1.0)).collect()).collect()
    }

    fn run(bytes: &[u8], graph: &Graph, x: &[f32]) -> Vec<f32> {
        let probe = TensorProbe::new(bytes, graph.input_chw, std::slice::from_ref(&graph.output)).unwrap();
        probe.run(x).unwrap().remove(0)
    }

    fn opts(quant: Option<&QuantPlan>) -> WriteOptions<'_> {
        WriteOptions {
            opset: 13,
            quant,
            weight_bits: 8,
            dynamic_batch: false,
            manifest_json: Some("{\"x\":1}".into()),
            features: Some("features".into()),
        }
    }

    #[test]
    fn fp32_file_runs_in_tract_like_the_reference_interpreter() {
        let graph = crate::export::fold::fold_batchnorms(&test_graph());
        let (bytes, counts) = to_onnx_bytes(&graph, &opts(None)).unwrap();
        assert_eq!(counts, QuantCounts::default());
        for x in images(3, 1) {
            let (got, want) = (run(&bytes, &graph, &x), reference::eval(&test_graph(), &x));
            assert_eq!(got.len(), 3);
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-4, "tract {got:?} vs reference {want:?}");
            }
        }
        let model = ModelProto::decode(bytes.as_slice()).unwrap();
        assert_eq!((model.ir_version, model.opset_import[0].version), (7, 13));
        assert!(model.metadata_props.iter().any(|p| p.key == models::MANIFEST_KEY && p.value == "{\"x\":1}"));
        let nodes: Vec<&str> = model.graph.as_ref().unwrap().node.iter().map(|n| n.op_type.as_str()).collect();
        assert!(!nodes.contains(&"BatchNormalization"), "BN folded: {nodes:?}");
        // The pooled embedding is the second output, `[1, 8]`, with the values the head reads.
        let outputs: Vec<&str> = model.graph.as_ref().unwrap().output.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(outputs, ["logits", "features"]);
        assert_eq!(declared_dims(&model.graph.as_ref().unwrap().output[1]), [1, 8]);
        let probe = TensorProbe::new(&bytes, graph.input_chw, &["features".to_string()]).unwrap();
        let x = &images(1, 5)[0];
        let mut pooled = test_graph();
        pooled.output = "features".into();
        for (g, w) in probe.run(x).unwrap()[0].iter().zip(reference::eval(&pooled, x)) {
            assert!((g - w).abs() < 1e-4, "features {g} vs reference {w}");
        }
    }

    fn declared_dims(v: &ValueInfoProto) -> Vec<i64> {
        let Some(type_proto::Value::TensorType(t)) = v.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
            return vec![];
        };
        let dims = &t.shape.as_ref().unwrap().dim;
        dims.iter().map(|d| if let Some(DimValue::DimValue(v)) = d.value { v } else { -1 }).collect()
    }

    #[test]
    fn int8_qdq_file_stays_close_to_fp32_and_quantizes_what_it_should() {
        let graph = crate::export::fold::fold_batchnorms(&test_graph());
        let (plain, _) = to_onnx_bytes(&graph, &WriteOptions { manifest_json: None, ..opts(None) }).unwrap();
        let tensors = quantized_tensors(&graph);
        assert_eq!(tensors, ["input", "a1", "a2", "se_pool", "a3", "project", "a4", "features"]);
        let plan = calibrate(&plain, graph.input_chw, &tensors, &images(16, 2), CalibrationMethod::Minmax).unwrap();
        let (bytes, counts) = to_onnx_bytes(&graph, &opts(Some(&plan))).unwrap();
        assert_eq!(counts, QuantCounts { activations: 8, weights: 5 });
        let model = ModelProto::decode(bytes.as_slice()).unwrap();
        let g = model.graph.as_ref().unwrap();
        let count = |op: &str| g.node.iter().filter(|n| n.op_type == op).count();
        assert_eq!((count("QuantizeLinear"), count("DequantizeLinear")), (8, 8 + 5 + 5));
        for x in images(4, 3) {
            let (q, f) = (run(&bytes, &graph, &x), run(&plain, &graph, &x));
            let spread = f.iter().fold(0f32, |m, v| m.max(v.abs()));
            let err = q.iter().zip(&f).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(err < 0.1 * spread.max(1.0), "int8 {q:?} vs fp32 {f:?}");
            assert!(err > 0.0, "quantization must change the numbers a little");
        }
    }

    #[test]
    fn unsupported_opset_and_missing_calibration_are_errors() {
        let graph = test_graph();
        let err = to_onnx_bytes(&graph, &WriteOptions { opset: 9, ..opts(None) }).unwrap_err().to_string();
        assert!(err.contains("--opset 9") && err.contains("13"), "{err}");
        let empty = QuantPlan::new();
        let err = to_onnx_bytes(&graph, &opts(Some(&empty))).unwrap_err().to_string();
        assert!(err.contains("stem") && err.contains("calibration"), "{err}");
    }
}
