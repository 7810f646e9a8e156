//! ONNX surgery for enrolment: find the pooled-embedding tensor, cut the graph there (the
//! backbone), and append the enrolled head. Works on tract-onnx's protobuf types, so no second
//! ONNX library is needed; every op written (Mul, MatMul, Add, Sqrt, Div, Gemm, Identity) exists
//! unchanged in every opset perch writes (13..=21) and runs in tract and onnxruntime alike.

use std::collections::{HashMap, HashSet};

use models::enrolment::FEATURES_OUTPUT;
use models::{Backbone, FeatureSpec, Manifest};
use tract_onnx::pb::{
    AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto::Dimension,
    tensor_shape_proto::dimension::Value as DimValue, type_proto,
};

/// Prefix of every node and initializer the enrolled head adds (and removes again on re-enrol).
pub const HEAD_PREFIX: &str = "perch_enrol/";
/// Output name of the enrolled logits.
pub const LOGITS_OUTPUT: &str = "logits";

/// The embedding tensor of `proto`: the manifest's `features` output (perch exports and enrolled
/// models), else for a reference model described by `--preset` the catalog's pooled tensor.
pub fn locate_features(
    proto: &ModelProto,
    manifest: Option<&Manifest>,
    preset: Option<Backbone>,
) -> Result<FeatureSpec, String> {
    let graph = proto.graph.as_ref().ok_or("no graph")?;
    let produced = |t: &str| graph.node.iter().any(|n| n.output.iter().any(|o| o == t));
    if let Some(f) = manifest.and_then(|m| m.features.as_ref()) {
        return if produced(&f.output) {
            Ok(f.clone())
        } else {
            Err(format!("its manifest names the feature output '{}', which the graph does not compute", f.output))
        };
    }
    if manifest.is_some() {
        return Err("its manifest records no feature output (it was exported before perch added one)".into());
    }
    let Some(backbone) = preset else {
        return Err("it has no perch manifest and no --preset names its backbone".into());
    };
    let spec = backbone.spec();
    let name = spec.reference_features;
    if !produced(name) {
        return Err(format!(
            "it has no tensor '{name}', where the {backbone} reference model keeps its pooled features"
        ));
    }
    // The catalog's tensor must be what the ImageNet Gemm reads, at the catalog's width.
    if let Some(w) = head_gemm(graph, name).and_then(|(g, _)| initializer(graph, &g.input[1]))
        && w.dims.get(1).copied() != Some(spec.feature_dim as i64)
        && w.dims.first().copied() != Some(spec.feature_dim as i64)
    {
        return Err(format!("its Gemm after '{name}' does not read {} features", spec.feature_dim));
    }
    Ok(FeatureSpec { output: name.to_string(), dim: spec.feature_dim })
}

/// The Gemm reading `features` directly (the trained head), with its transB flag.
fn head_gemm<'a>(graph: &'a GraphProto, features: &str) -> Option<(&'a NodeProto, bool)> {
    let node = graph.node.iter().find(|n| n.op_type == "Gemm" && n.input.first().is_some_and(|i| i == features))?;
    let trans_b = node.attribute.iter().any(|a| a.name == "transB" && a.i == 1);
    Some((node, trans_b))
}

fn initializer<'a>(graph: &'a GraphProto, name: &str) -> Option<&'a TensorProto> {
    graph.initializer.iter().find(|t| t.name == name)
}

/// Float values of an initializer (raw_data or float_data).
fn f32_values(t: &TensorProto) -> Option<Vec<f32>> {
    if t.data_type != DataType::Float as i32 {
        return None;
    }
    if !t.raw_data.is_empty() {
        return Some(t.raw_data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect());
    }
    Some(t.float_data.clone())
}

/// The trained head reading `features`: rows `[classes][dim]` and biases, when it is a float
/// Gemm with constant weights (what `--keep-classes` extends).
pub fn trained_head(proto: &ModelProto, features: &FeatureSpec) -> Result<(Vec<Vec<f32>>, Vec<f32>), String> {
    let graph = proto.graph.as_ref().ok_or("no graph")?;
    let quantized = graph
        .node
        .iter()
        .any(|n| n.op_type == "QuantizeLinear" && n.input.first().is_some_and(|i| *i == features.output));
    if quantized {
        return Err("its head is int8 (QDQ): keep the classes of the fp32 export instead".into());
    }
    let (gemm, trans_b) =
        head_gemm(graph, &features.output).ok_or("no Gemm reads its features directly, so there is no head to keep")?;
    let float = |i: usize, what: &str| {
        let name = gemm.input.get(i).ok_or(format!("its head has no {what}"))?;
        let t = initializer(graph, name).ok_or(format!(
            "its head {what} '{name}' is not a float constant (an int8 head?): keep classes of the fp32 export"
        ))?;
        f32_values(t).map(|v| (v, t.dims.clone())).ok_or(format!("its head {what} '{name}' is not float32"))
    };
    let (w, dims) = float(1, "weight")?;
    let dim = features.dim;
    let classes = w.len() / dim.max(1);
    if w.len() != classes * dim || dims.len() != 2 {
        return Err(format!("its head weight {dims:?} does not match {dim} features"));
    }
    let rows: Vec<Vec<f32>> = if trans_b {
        w.chunks(dim).map(<[f32]>::to_vec).collect()
    } else {
        (0..classes).map(|c| (0..dim).map(|i| w[i * classes + c]).collect()).collect()
    };
    let bias = if gemm.input.len() > 2 { float(2, "bias")?.0 } else { vec![0.0; classes] };
    if bias.len() != classes {
        return Err(format!("its head has {} biases for {classes} classes", bias.len()));
    }
    Ok((rows, bias))
}

/// The model cut at `features`: only the nodes (and initializers) it needs, one output
/// `[1, dim]`. The enrolled head of a previously enrolled model and any trained head are gone.
pub fn backbone_only(proto: &ModelProto, features: &FeatureSpec) -> ModelProto {
    let mut model = proto.clone();
    let graph = model.graph.get_or_insert_with(Default::default);
    let producer: HashMap<&str, usize> =
        graph.node.iter().enumerate().flat_map(|(i, n)| n.output.iter().map(move |o| (o.as_str(), i))).collect();
    let mut keep = HashSet::new();
    let mut stack = vec![features.output.as_str()];
    while let Some(t) = stack.pop() {
        if let Some(&i) = producer.get(t)
            && keep.insert(i)
        {
            stack.extend(graph.node[i].input.iter().map(String::as_str));
        }
    }
    let nodes: Vec<NodeProto> =
        graph.node.iter().enumerate().filter(|(i, _)| keep.contains(i)).map(|(_, n)| n.clone()).collect();
    let used: HashSet<&str> = nodes.iter().flat_map(|n| n.input.iter().map(String::as_str)).collect();
    let produced: HashSet<&str> = nodes.iter().flat_map(|n| n.output.iter().map(String::as_str)).collect();
    let initializer: Vec<TensorProto> =
        graph.initializer.iter().filter(|t| used.contains(t.name.as_str())).cloned().collect();
    let input: Vec<ValueInfoProto> = graph.input.iter().filter(|i| used.contains(i.name.as_str())).cloned().collect();
    let value_info: Vec<ValueInfoProto> =
        graph.value_info.iter().filter(|v| produced.contains(v.name.as_str())).cloned().collect();
    *graph = GraphProto {
        node: nodes,
        initializer,
        input,
        value_info,
        output: vec![value_info_f32(&features.output, &[1, features.dim])],
        ..std::mem::take(graph)
    };
    model
}

/// The head appended to the backbone: logits = `weight · x + bias`, where x is the
/// L2-normalised embedding (`normalize`, the enrolled heads) or the raw one (a kept trained
/// head, whose rows are defined on raw features).
pub struct HeadWeights {
    pub normalize: bool,
    /// `[classes][dim]`
    pub weight: Vec<Vec<f32>>,
    pub bias: Vec<f32>,
}

/// `backbone` (from [`backbone_only`]) with the head appended: outputs `logits` `[1, classes]`
/// then `features` `[1, dim]`; `metadata` replaces the file's metadata entries of the same keys.
pub fn with_head(
    backbone: &ModelProto,
    features: &FeatureSpec,
    head: &HeadWeights,
    metadata: &[(&str, String)],
) -> ModelProto {
    let mut model = backbone.clone();
    let graph = model.graph.get_or_insert_with(Default::default);
    let p = |s: &str| format!("{HEAD_PREFIX}{s}");
    let dim = features.dim;
    let mut node = |op: &str, name: &str, inputs: Vec<String>, output: &str, attribute: Vec<AttributeProto>| {
        graph.node.push(NodeProto {
            op_type: op.into(),
            name: name.into(),
            input: inputs,
            output: vec![output.into()],
            attribute,
            ..Default::default()
        })
    };
    if features.output != FEATURES_OUTPUT {
        node("Identity", &p("features"), vec![features.output.clone()], FEATURES_OUTPUT, vec![]);
    }
    let x = if head.normalize {
        // x / sqrt(sum(x^2) + eps): Mul + MatMul with ones (a sum that needs no axes input or
        // attribute, which changed between opsets) + Add + Sqrt + Div.
        node("Mul", &p("square"), vec![FEATURES_OUTPUT.into(), FEATURES_OUTPUT.into()], &p("square"), vec![]);
        node("MatMul", &p("sum_squares"), vec![p("square"), p("ones")], &p("sum_squares"), vec![]);
        node("Add", &p("sum_squares_eps"), vec![p("sum_squares"), p("eps")], &p("sum_squares_eps"), vec![]);
        node("Sqrt", &p("norm"), vec![p("sum_squares_eps")], &p("norm"), vec![]);
        node("Div", &p("unit"), vec![FEATURES_OUTPUT.into(), p("norm")], &p("unit"), vec![]);
        p("unit")
    } else {
        FEATURES_OUTPUT.to_string()
    };
    let trans_b =
        AttributeProto { name: "transB".into(), r#type: AttributeType::Int as i32, i: 1, ..Default::default() };
    node("Gemm", &p("head"), vec![x, p("head.weight"), p("head.bias")], LOGITS_OUTPUT, vec![trans_b]);
    let classes = head.weight.len();
    let flat: Vec<f32> = head.weight.iter().flatten().copied().collect();
    graph.initializer.push(tensor_f32(&p("head.weight"), &[classes, dim], &flat));
    graph.initializer.push(tensor_f32(&p("head.bias"), &[classes], &head.bias));
    if head.normalize {
        graph.initializer.push(tensor_f32(&p("ones"), &[dim, 1], &vec![1.0; dim]));
        graph.initializer.push(tensor_f32(&p("eps"), &[], &[1e-12]));
    }
    graph.output = vec![value_info_f32(LOGITS_OUTPUT, &[1, classes]), value_info_f32(FEATURES_OUTPUT, &[1, dim])];
    for (key, value) in metadata {
        model.metadata_props.retain(|e| e.key != *key);
        model
            .metadata_props
            .push(tract_onnx::pb::StringStringEntryProto { key: key.to_string(), value: value.clone() });
    }
    model.producer_name = "perch".into();
    model.producer_version = models::PERCH_VERSION.into();
    model
}

fn tensor_f32(name: &str, shape: &[usize], values: &[f32]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: shape.iter().map(|d| *d as i64).collect(),
        data_type: DataType::Float as i32,
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

/// A float tensor's name and shape for a graph input or output (concrete sizes).
fn value_info_f32(name: &str, dims: &[usize]) -> ValueInfoProto {
    value_info(name, dims.iter().map(|d| DimValue::DimValue(*d as i64)).collect())
}

/// A float tensor's name and shape (sizes or symbolic names) for a graph input or output; also
/// the trainer's ONNX writer's.
pub fn value_info(name: &str, dims: Vec<DimValue>) -> ValueInfoProto {
    let shape = TensorShapeProto {
        dim: dims.into_iter().map(|v| Dimension { value: Some(v), ..Default::default() }).collect(),
    };
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape: Some(shape),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}
