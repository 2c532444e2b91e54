//! PyTorch checkpoint -> s4q classifier.

use std::path::Path;

use burn::module::Param;
use burn::prelude::*;
use s4d_model::{Activation, NormPosition, S4dClassifier, S4dClassifierConfig, S4dConfig};
use tracing::{debug, warn};

use crate::error::InteropError;
use crate::layout::{Layout, Role};
use crate::tensors::{HostTensor, TensorFile};

/// An imported model with the configuration that rebuilds it (what `model.json` stores).
#[derive(Debug)]
pub struct Imported {
    /// The classifier, parameters copied from the checkpoint.
    pub model: S4dClassifier,
    /// Its architecture, inferred from tensor shapes and the layout's flags.
    pub config: S4dClassifierConfig,
    /// The layout the names were read with.
    pub layout: String,
    /// Tensors of the file the layout did not read (buffers, optimizer state, or a sign that
    /// the layout is not the one the model was saved with).
    pub unused: Vec<String>,
}

/// Sizes inferred from the checkpoint.
#[derive(Debug, Clone, Copy)]
struct Dims {
    heads: usize,
    modes: usize,
    d_input: usize,
    n_classes: usize,
}

/// Reads `path` and imports it with `layout`, or with the first built-in layout whose names
/// match when `layout` is `None`.
pub fn import_safetensors(
    path: &Path,
    layout: Option<&Layout>,
    device: &Device,
) -> Result<Imported, InteropError> {
    let file = TensorFile::open(path)?;
    let detected;
    let layout = match layout {
        Some(layout) => layout,
        None => {
            detected = Layout::detect(&file)?;
            &detected
        }
    };
    import_classifier(&file, layout, device)
}

/// Builds an s4q classifier from the tensors of `file` named by `layout`.
///
/// `H` comes from `log_dt`, `N = 2 * (N/2)` from `log_A_real`, `d_input` from the encoder
/// weight, the class count from the decoder weight, the block count from how many
/// `{layer}`-indexed `log_dt` tensors exist; every other tensor must then have exactly the shape
/// these imply. The model is the paper's block (exact GELU, Conv1d(k=1) + GLU, mean pooling),
/// which is what both supported PyTorch sources compute.
pub fn import_classifier(
    file: &TensorFile,
    layout: &Layout,
    device: &Device,
) -> Result<Imported, InteropError> {
    if layout.prenorm && !layout.has(Role::NormWeight) {
        return Err(InteropError::NameMap {
            origin: layout.name.clone(),
            detail: "prenorm = true but the layout names no norm tensors".into(),
        });
    }
    let n_layers = count_layers(file, layout)?;
    let dims = infer_dims(file, layout)?;
    let has_b = layout.has(Role::B);
    let has_norm = layout.has(Role::NormWeight);
    let ssm = S4dConfig::new(dims.heads)
        .with_d_state(2 * dims.modes)
        .with_trainable_b(has_b)
        .with_discretization(layout.discretization);
    let config = S4dClassifierConfig::new(ssm)
        .with_d_input(dims.d_input)
        .with_n_classes(dims.n_classes)
        .with_n_layers(n_layers)
        .with_activation(Activation::Gelu)
        .with_layer_norm(has_norm)
        .with_norm_position((has_norm && layout.prenorm).then_some(NormPosition::Pre))
        .with_residual(layout.residual);
    config.validate()?;

    let reader = Reader { file, layout, dims };
    let mut model = config.init(device);
    let h = dims.heads;
    let enc_w = reader.get(Role::EncoderWeight, 0, &[h, dims.d_input], "H, d_input")?;
    let enc_b = reader.get(Role::EncoderBias, 0, &[h], "H")?;
    model.encoder.weight = param2(
        transpose(&enc_w.data, h, dims.d_input),
        [dims.d_input, h],
        device,
    );
    model.encoder.bias = Some(param1(enc_b.data, device));
    let dec_w = reader.get(Role::DecoderWeight, 0, &[dims.n_classes, h], "n_classes, H")?;
    let dec_b = reader.get(Role::DecoderBias, 0, &[dims.n_classes], "n_classes")?;
    model.decoder.weight = param2(
        transpose(&dec_w.data, dims.n_classes, h),
        [h, dims.n_classes],
        device,
    );
    model.decoder.bias = Some(param1(dec_b.data, device));

    for (layer, block) in model.blocks.iter_mut().enumerate() {
        let hm = [h, dims.modes];
        let s4d = &mut block.s4d;
        s4d.log_dt = param1(reader.get(Role::LogDt, layer, &[h], "H")?.data, device);
        s4d.log_a_real = param2(
            reader.get(Role::LogAReal, layer, &hm, "H, N/2")?.data,
            hm,
            device,
        );
        s4d.a_imag = param2(
            reader.get(Role::AImag, layer, &hm, "H, N/2")?.data,
            hm,
            device,
        );
        if has_b {
            let (re, im) = reader.complex(Role::B, layer)?;
            s4d.b_re = param2(re, hm, device);
            s4d.b_im = param2(im, hm, device);
        }
        let (re, im) = reader.complex(Role::C, layer)?;
        s4d.c_re = param2(re, hm, device);
        s4d.c_im = param2(im, hm, device);
        s4d.d = param1(reader.get(Role::D, layer, &[h], "H")?.data, device);

        let conv_w = reader.conv_weight(layer)?;
        block.conv.weight = param2(transpose(&conv_w.data, 2 * h, h), [h, 2 * h], device);
        let conv_b = reader.get(Role::ConvBias, layer, &[2 * h], "2H")?;
        block.conv.bias = Some(param1(conv_b.data, device));

        if let Some(norm) = block.norm.as_mut() {
            norm.gamma = param1(reader.get(Role::NormWeight, layer, &[h], "H")?.data, device);
            norm.beta = Some(param1(
                reader.get(Role::NormBias, layer, &[h], "H")?.data,
                device,
            ));
        }
    }
    let used: std::collections::BTreeSet<String> = (0..n_layers)
        .flat_map(|layer| Role::ALL.map(|role| layout.name_for(role, layer)))
        .flatten()
        .collect();
    let unused: Vec<String> = file
        .names()
        .filter(|n| !used.contains(*n))
        .map(str::to_string)
        .collect();
    if !unused.is_empty() {
        warn!(
            "{} tensors of {} were not used by layout `{}`: {}",
            unused.len(),
            file.origin(),
            layout.name,
            unused.join(", ")
        );
    }
    debug!(
        layout = %layout.name,
        heads = dims.heads,
        d_state = 2 * dims.modes,
        n_layers,
        "imported {}",
        file.origin()
    );
    Ok(Imported {
        model,
        config,
        layout: layout.name.clone(),
        unused,
    })
}

/// One block unless names are `{layer}`-indexed; then blocks `0..n` whose `log_dt` exists.
fn count_layers(file: &TensorFile, layout: &Layout) -> Result<usize, InteropError> {
    let log_dt = |layer| layout.name_for(Role::LogDt, layer).unwrap_or_default();
    if !layout.multi_layer() {
        return Ok(1);
    }
    let n = (0..).take_while(|&l| file.contains(&log_dt(l))).count();
    if n == 0 {
        // Reported like any other missing tensor, with the file's contents.
        file.get(&log_dt(0), Role::LogDt.key())?;
    }
    Ok(n)
}

/// `H`, `N/2`, `d_input` and the class count from the first block and the linear layers.
fn infer_dims(file: &TensorFile, layout: &Layout) -> Result<Dims, InteropError> {
    let fetch = |role: Role| -> Result<(String, HostTensor), InteropError> {
        let name = layout.name_for(role, 0).unwrap_or_default();
        let t = file.get(&name, role.key())?;
        Ok((name, t))
    };
    let wrong = |name: String, expected: String, t: &HostTensor| InteropError::WrongShape {
        name,
        expected,
        found: t.shape.clone(),
    };
    let (name, log_dt) = fetch(Role::LogDt)?;
    let heads = match log_dt.shape[..] {
        [h] if h > 0 => h,
        _ => return Err(wrong(name, "[H] (one step size per head)".into(), &log_dt)),
    };
    let (name, a_real) = fetch(Role::LogAReal)?;
    let modes = match a_real.shape[..] {
        [h, m] if h == heads && m > 0 => m,
        _ => {
            let expected = format!("[{heads}, N/2] (H from log_dt, N/2 complex modes)");
            return Err(wrong(name, expected, &a_real));
        }
    };
    let (name, enc) = fetch(Role::EncoderWeight)?;
    let d_input = match enc.shape[..] {
        [h, d] if h == heads && d > 0 => d,
        _ => {
            let expected = format!("[{heads}, d_input] (torch Linear: out, in)");
            return Err(wrong(name, expected, &enc));
        }
    };
    let (name, dec) = fetch(Role::DecoderWeight)?;
    let n_classes = match dec.shape[..] {
        [c, h] if h == heads && c > 0 => c,
        _ => {
            let expected = format!("[n_classes, {heads}] (torch Linear: out, in)");
            return Err(wrong(name, expected, &dec));
        }
    };
    Ok(Dims {
        heads,
        modes,
        d_input,
        n_classes,
    })
}

/// Fetches tensors by role and checks their shapes against the inferred sizes.
struct Reader<'a> {
    file: &'a TensorFile,
    layout: &'a Layout,
    dims: Dims,
}

impl Reader<'_> {
    fn name(&self, role: Role, layer: usize) -> String {
        self.layout.name_for(role, layer).unwrap_or_default()
    }

    /// The tensor of `role` in block `layer`, which must have shape `want` (`meaning` spells
    /// out the axes for the error message).
    fn get(
        &self,
        role: Role,
        layer: usize,
        want: &[usize],
        meaning: &str,
    ) -> Result<HostTensor, InteropError> {
        let name = self.name(role, layer);
        let t = self.file.get(&name, role.key())?;
        if t.shape != want {
            return Err(InteropError::WrongShape {
                name,
                expected: format!("{want:?} ({meaning})"),
                found: t.shape,
            });
        }
        Ok(t)
    }

    /// A complex `[H, N/2]` parameter stored as the real view `[H, N/2, 2]` (or as `C64`),
    /// split into real and imaginary parts.
    fn complex(&self, role: Role, layer: usize) -> Result<(Vec<f32>, Vec<f32>), InteropError> {
        let want = [self.dims.heads, self.dims.modes, 2];
        let t = self.get(role, layer, &want, "H, N/2, re/im")?;
        let re = t.data.iter().step_by(2).copied().collect();
        let im = t.data.iter().skip(1).step_by(2).copied().collect();
        Ok((re, im))
    }

    /// `Conv1d(H -> 2H, k = 1)` weight, `[2H, H, 1]`; a `[2H, H]` matrix (a Linear standing in
    /// for the pointwise conv) is accepted too.
    fn conv_weight(&self, layer: usize) -> Result<HostTensor, InteropError> {
        let h = self.dims.heads;
        let name = self.name(Role::ConvWeight, layer);
        let t = self.file.get(&name, Role::ConvWeight.key())?;
        if t.shape != [2 * h, h, 1] && t.shape != [2 * h, h] {
            return Err(InteropError::WrongShape {
                name,
                expected: format!("[{}, {h}, 1] (Conv1d: 2H out, H in, kernel 1)", 2 * h),
                found: t.shape,
            });
        }
        Ok(t)
    }
}

/// Row-major `[rows, cols]` -> row-major `[cols, rows]` (torch `Linear` stores `[out, in]`,
/// burn `[in, out]`).
pub(crate) fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..cols)
        .flat_map(|c| (0..rows).map(move |r| data[r * cols + c]))
        .collect()
}

fn param1(data: Vec<f32>, device: &Device) -> Param<Tensor<1>> {
    let n = data.len();
    Param::from_tensor(Tensor::from_data(TensorData::new(data, [n]), device))
}

fn param2(data: Vec<f32>, shape: [usize; 2], device: &Device) -> Param<Tensor<2>> {
    Param::from_tensor(Tensor::from_data(TensorData::new(data, shape), device))
}
