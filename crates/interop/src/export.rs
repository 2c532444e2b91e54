//! s4q classifier -> PyTorch-named safetensors.

use std::collections::BTreeMap;

use burn::prelude::*;
use s4d_model::{Activation, Discretization, NormKind, S4dClassifier, S4dClassifierConfig};

use crate::error::InteropError;
use crate::import::transpose;
use crate::layout::{Layout, Role};
use crate::tensors::{HostTensor, write_safetensors};

/// The model's float parameters under `layout`'s names and PyTorch shapes (`Linear` weights
/// `[out, in]`, the pointwise conv `[2H, H, 1]`, complex `B`/`C` as `[H, N/2, 2]` real views).
///
/// Fails, naming the feature, when the layout cannot represent the model: the PyTorch models
/// compute exact GELU, so a qGELU model has no equivalent there; a one-block layout cannot hold
/// several blocks; norm, residual and discretization must match the layout; and a layout
/// without `B` (state-spaces) needs `B = 1` exactly.
pub fn export_classifier(
    model: &S4dClassifier,
    config: &S4dClassifierConfig,
    layout: &Layout,
) -> Result<Vec<(String, HostTensor)>, InteropError> {
    check_expressible(model, config, layout)?;
    let not_expressible = |detail: String| InteropError::NotExpressible {
        layout: layout.name.clone(),
        detail,
    };
    let mut out = Vec::new();
    let mut push = |role: Role, layer: usize, t: HostTensor| {
        if let Some(name) = layout.name_for(role, layer) {
            out.push((name, t));
        }
    };

    let enc = read(model.encoder.weight.val(), "encoder.weight")?; // [d_in, H]
    push(Role::EncoderWeight, 0, transposed(enc));
    push(
        Role::EncoderBias,
        0,
        bias(model.encoder.bias.as_ref(), "encoder.bias")?,
    );
    for (layer, block) in model.blocks.iter().enumerate() {
        let s4d = &block.s4d;
        push(Role::LogDt, layer, read(s4d.log_dt.val(), "log_dt")?);
        push(
            Role::LogAReal,
            layer,
            read(s4d.log_a_real.val(), "log_A_real")?,
        );
        push(Role::AImag, layer, read(s4d.a_imag.val(), "A_imag")?);
        let b = interleave(read(s4d.b_re.val(), "b_re")?, read(s4d.b_im.val(), "b_im")?);
        if layout.has(Role::B) {
            push(Role::B, layer, b);
        } else {
            // The layout has no B: only exact, unit B loses nothing.
            let off = b
                .data
                .chunks_exact(2)
                .map(|p| (p[0] - 1.0).abs().max(p[1].abs()))
                .fold(0.0f32, f32::max);
            if off != 0.0 {
                return Err(not_expressible(format!(
                    "the layout has no B tensor (B = 1), but block {layer} has B != 1 \
                     (max |B - 1| = {off:e}); use a layout with B (peer) or a name map that names it"
                )));
            }
        }
        let c = interleave(read(s4d.c_re.val(), "c_re")?, read(s4d.c_im.val(), "c_im")?);
        push(Role::C, layer, c);
        push(Role::D, layer, read(s4d.d.val(), "D")?);
        let conv = transposed(read(block.conv.weight.val(), "conv.weight")?); // [2H, H]
        let mut conv_shape = conv.shape.clone();
        conv_shape.push(1);
        push(
            Role::ConvWeight,
            layer,
            HostTensor::new(conv_shape, conv.data),
        );
        push(
            Role::ConvBias,
            layer,
            bias(block.conv.bias.as_ref(), "conv.bias")?,
        );
        if let Some(norm) = &block.norm {
            push(
                Role::NormWeight,
                layer,
                read(norm.gamma.val(), "norm.weight")?,
            );
            push(
                Role::NormBias,
                layer,
                bias(norm.beta.as_ref(), "norm.bias")?,
            );
        }
    }
    let dec = read(model.decoder.weight.val(), "decoder.weight")?; // [H, n_classes]
    push(Role::DecoderWeight, 0, transposed(dec));
    push(
        Role::DecoderBias,
        0,
        bias(model.decoder.bias.as_ref(), "decoder.bias")?,
    );
    Ok(out)
}

/// [`export_classifier`] serialized as a safetensors file (all tensors `F32`), with the layout
/// and sizes in the header's `__metadata__`.
pub fn export_safetensors(
    model: &S4dClassifier,
    config: &S4dClassifierConfig,
    layout: &Layout,
) -> Result<Vec<u8>, InteropError> {
    let tensors = export_classifier(model, config, layout)?;
    let metadata: BTreeMap<String, String> = [
        ("format", "pt".to_string()),
        ("producer", "s4q".to_string()),
        ("layout", layout.name.clone()),
        ("H", config.ssm.d_model.to_string()),
        ("N", config.ssm.d_state.to_string()),
        ("n_layers", config.n_layers.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    write_safetensors(&tensors, &metadata)
}

fn check_expressible(
    model: &S4dClassifier,
    config: &S4dClassifierConfig,
    layout: &Layout,
) -> Result<(), InteropError> {
    let fail = |detail: String| {
        Err(InteropError::NotExpressible {
            layout: layout.name.clone(),
            detail,
        })
    };
    if config.activation != Activation::Gelu {
        return fail(format!(
            "the model uses {:?}, but the PyTorch models compute exact (erf) GELU",
            config.activation
        ));
    }
    if model.blocks.len() > 1 && !layout.multi_layer() {
        return fail(format!(
            "the model has {} blocks but the layout's names hold one (no {{layer}} in them)",
            model.blocks.len()
        ));
    }
    if config.norm_kind() == Some(NormKind::Batch) {
        return fail("the model has BatchNorm; the layouts hold LayerNorm models only".to_string());
    }
    if config.prenorm() != layout.prenorm {
        return fail(format!(
            "norm position: model {}, layout {} (set `prenorm` in the name map)",
            if config.prenorm() { "pre" } else { "post" },
            if layout.prenorm { "pre" } else { "post" }
        ));
    }
    let layer_norm = config.norm_kind() == Some(NormKind::Layer);
    if layer_norm != layout.has(Role::NormWeight) {
        return fail(if layer_norm {
            "the model has a LayerNorm after each block and the layout names none".to_string()
        } else {
            "the model has no LayerNorm after its blocks and the layout expects one".to_string()
        });
    }
    if config.residual != layout.residual {
        return fail(format!(
            "residual connection: model {}, layout {}",
            config.residual, layout.residual
        ));
    }
    if config.ssm.discretization != layout.discretization {
        let name = |d: Discretization| format!("{d:?}").to_lowercase();
        return fail(format!(
            "the model discretizes with {} but the layout's source uses {}",
            name(config.ssm.discretization),
            name(layout.discretization)
        ));
    }
    Ok(())
}

/// A burn tensor copied to the host as `f32`.
fn read<const D: usize>(t: Tensor<D>, name: &str) -> Result<HostTensor, InteropError> {
    let shape = t.dims().to_vec();
    let data = t
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| InteropError::TensorData {
            name: name.to_string(),
            detail: format!("{e:?}"),
        })?;
    Ok(HostTensor::new(shape, data))
}

/// A bias; PyTorch's `Linear`, `Conv1d` and `LayerNorm` always carry one, so its absence is an
/// error rather than a silent zero.
fn bias(
    p: Option<&burn::module::Param<Tensor<1>>>,
    name: &str,
) -> Result<HostTensor, InteropError> {
    match p {
        Some(p) => read(p.val(), name),
        None => Err(InteropError::TensorData {
            name: name.to_string(),
            detail: "the module has no bias, which the PyTorch layout requires".into(),
        }),
    }
}

/// `[rows, cols]` -> `[cols, rows]`.
fn transposed(t: HostTensor) -> HostTensor {
    let (rows, cols) = (t.shape[0], t.shape[1]);
    HostTensor::new(vec![cols, rows], transpose(&t.data, rows, cols))
}

/// Real and imaginary `[H, M]` parts -> the real view `[H, M, 2]`.
fn interleave(re: HostTensor, im: HostTensor) -> HostTensor {
    let mut shape = re.shape.clone();
    shape.push(2);
    let data = re
        .data
        .iter()
        .zip(&im.data)
        .flat_map(|(r, i)| [*r, *i])
        .collect();
    HostTensor::new(shape, data)
}
