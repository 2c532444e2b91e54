//! [`QuantizedClassifier`]: the float S4D classifier plus a fake quantizer per component,
//! run in recurrent mode (the only mode where the state can be quantized).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::module::linear;
use s4d_model::{ComplexTensor, S4d, S4dClassifier, linear_glu, masked_mean};
use serde::{Deserialize, Serialize};

use crate::error::{QatError, Result};
use crate::observer::Observer;
use crate::polar::{AbarGrid, calibrate_abar, fake_quant_abar};
use crate::quantizer::{Calibration, Quantizer, QuantizerState, to_host};
use crate::scan::{StateQuant, scan_recording};
use crate::spec::{BlockFeatures, Component, QuantSpec};

/// What QAT trains (the paper's three parameterizations).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Parameterization {
    /// Train the continuous `log_dt, A, B, C, D`; discretize, then quantize `Abar..Dbar`.
    #[default]
    Continuous,
    /// Train `Abar, Bbar, Cbar, Dbar` directly (initialised from the float discretization).
    Discrete,
    /// As `Discrete`, but `Abar` is a frozen parameter (no gradient, never updated).
    FrozenA,
}

/// Discrete SSM matrices as trainable parameters (`Discrete` / `FrozenA`), `[H, M]` and `[H]`.
#[derive(Module, Debug)]
pub struct DiscreteSsm {
    /// `Re Abar` (frozen under `FrozenA`).
    pub a_re: Param<Tensor<2>>,
    /// `Im Abar` (frozen under `FrozenA`).
    pub a_im: Param<Tensor<2>>,
    /// `Re Bbar`.
    pub b_re: Param<Tensor<2>>,
    /// `Im Bbar`.
    pub b_im: Param<Tensor<2>>,
    /// `Re Cbar`.
    pub c_re: Param<Tensor<2>>,
    /// `Im Cbar`.
    pub c_im: Param<Tensor<2>>,
    /// `Dbar`.
    pub d: Param<Tensor<1>>,
}

impl DiscreteSsm {
    /// Copies `s4d`'s current discretization into fresh parameters; `freeze_a` disables
    /// gradients for `Abar` so optimizers never see (or update) it.
    pub fn from_s4d(s4d: &S4d, freeze_a: bool) -> Self {
        let disc = s4d.discretize();
        let p2 = |t: Tensor<2>| Param::from_tensor(t.detach());
        Self {
            a_re: p2(disc.a_bar.re).set_require_grad(!freeze_a),
            a_im: p2(disc.a_bar.im).set_require_grad(!freeze_a),
            b_re: p2(disc.b_bar.re),
            b_im: p2(disc.b_bar.im),
            c_re: p2(disc.c.re),
            c_im: p2(disc.c.im),
            d: Param::from_tensor(disc.d.detach()),
        }
    }
}

/// Declares [`ComponentQuantizers`] from one list of `field => Component` pairs, so a new
/// quantization point is one line here (plus its [`Component`] entry) rather than a struct
/// field and two match tables kept in step by hand. Field names are the burnpack keys of
/// learned scales, so they stay the component names.
macro_rules! component_quantizers {
    ($($field:ident => $comp:ident),* $(,)?) => {
        /// One optional quantizer per [`Component`]; entries that do not apply to the owner
        /// (block vs classifier ends, or a block without a residual or norm) stay `None`.
        #[derive(Module, Debug)]
        pub struct ComponentQuantizers {
            $(
                #[doc = concat!("[`Component::", stringify!($comp), "`].")]
                pub $field: Option<Quantizer>,
            )*
        }

        impl ComponentQuantizers {
            /// The quantizer of `c`, if any.
            pub fn get(&self, c: Component) -> Option<&Quantizer> {
                match c {
                    $(Component::$comp => self.$field.as_ref(),)*
                }
            }

            /// Mutable access to the quantizer of `c`, if any.
            pub fn get_mut(&mut self, c: Component) -> Option<&mut Quantizer> {
                match c {
                    $(Component::$comp => self.$field.as_mut(),)*
                }
            }

            /// A quantizer for every component `make` returns one for.
            fn build_with(
                mut make: impl FnMut(Component) -> Result<Option<Quantizer>>,
            ) -> Result<Self> {
                Ok(Self {
                    $($field: make(Component::$comp)?,)*
                })
            }
        }
    };
}

component_quantizers! {
    input => Input,
    encoder_weight => EncoderWeight,
    encoder_bias => EncoderBias,
    a_bar => ABar,
    b_bar => BBar,
    c_bar => CBar,
    d_bar => DBar,
    state => State,
    ssm_output => SsmOutput,
    activation => Activation,
    conv_weight => ConvWeight,
    conv_bias => ConvBias,
    glu_output => GluOutput,
    residual => Residual,
    norm_output => NormOutput,
    decoder_weight => DecoderWeight,
    decoder_bias => DecoderBias,
    logits => Logits,
}

impl ComponentQuantizers {
    /// The quantizers of `spec` for the classifier's ends (`block: None`) or for a block
    /// (`Some(features)`: which optional points the block has).
    fn build(spec: &QuantSpec, block: Option<BlockFeatures>) -> Result<Self> {
        Self::build_with(|c| {
            let wanted = match block {
                None => !c.is_per_block(),
                Some(f) => c.is_per_block() && f.has(c),
            };
            if !wanted {
                return Ok(None);
            }
            spec.get(c)
                .map(|cfg| {
                    let (rank, axis) = c.rank_and_axis();
                    Quantizer::new(cfg.clone(), axis, rank, c.name())
                })
                .transpose()
        })
    }
}

/// Quantizer state of a whole model as one serde document (JSON on disk). Keys are
/// `"<component>"` for the classifier ends and `"block<i>.<component>"` inside blocks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuantStateFile {
    /// The spec the model was built with.
    pub spec: QuantSpec,
    /// The QAT parameterization.
    pub parameterization: Parameterization,
    /// Every quantizer's state.
    pub quantizers: BTreeMap<String, QuantizerState>,
}

/// The S4D classifier with fake quantization of every component in the spec, evaluated in
/// recurrent mode. Float parameters, discrete parameters and LSQ scales are module parameters
/// (burnpack sees them); ranges are in [`QuantStateFile`].
#[derive(Module, Debug)]
pub struct QuantizedClassifier {
    /// The float model (its continuous SSM parameters train under `Continuous`).
    pub float: S4dClassifier,
    /// Per-block discrete SSM parameters (`Discrete` / `FrozenA`; empty for `Continuous`).
    pub discrete: Vec<DiscreteSsm>,
    /// Quantizers of the encoder, input, decoder and logits.
    pub top: ComponentQuantizers,
    /// Quantizers inside each block.
    pub blocks: Vec<ComponentQuantizers>,
    /// The spec.
    #[module(skip)]
    pub spec: QuantSpec,
    /// Each block's spec after the spec's per-block overrides ([`QuantSpec::block_spec`]).
    #[module(skip)]
    pub block_specs: Vec<QuantSpec>,
    /// The QAT parameterization.
    #[module(skip)]
    pub parameterization: Parameterization,
}

/// Whether a forward pass fake-quantizes or observes (float) for calibration.
enum Pass<'a> {
    Quantize,
    Observe(&'a mut BTreeMap<String, Observer>),
}

fn key(block: Option<usize>, c: Component) -> String {
    match block {
        Some(i) => format!("block{i}.{}", c.name()),
        None => c.name().to_string(),
    }
}

impl QuantizedClassifier {
    /// The model cut after its first `k` blocks (their quantizers, specs and discrete SSMs
    /// kept, the head unchanged): a deep model's prefix as a model of its own, so integer and
    /// fake quant can be compared block by block.
    pub fn first_blocks(&self, k: usize) -> Self {
        let mut prefix = self.clone();
        prefix.float.blocks.truncate(k);
        prefix.blocks.truncate(k);
        prefix.block_specs.truncate(k);
        prefix.discrete.truncate(k);
        prefix
    }

    /// Wraps a float model. Weight-like quantizers (including `Abar..Dbar`) are calibrated
    /// from the weights right away; activation quantizers need [`calibrate`] (when static).
    pub fn from_float(
        model: S4dClassifier,
        spec: QuantSpec,
        parameterization: Parameterization,
    ) -> Result<Self> {
        let features: Vec<BlockFeatures> = model.blocks.iter().map(BlockFeatures::of).collect();
        // Overrides must name points their blocks have; a base-spec setting of an optional
        // point (the presets set every point) is dropped where no block has it, so a model
        // without residuals or norms keeps the spec (and saved state) it always had.
        spec.check_model(&features)?;
        let spec = spec.for_model(BlockFeatures {
            residual: features.iter().any(|f| f.residual),
            norm: features.iter().any(|f| f.norm),
        });
        let block_specs = features
            .iter()
            .enumerate()
            .map(|(i, f)| Ok(spec.block_spec(i)?.for_model(*f)))
            .collect::<Result<Vec<_>>>()?;
        let heads = model.encoder.weight.dims()[1];
        for (i, s) in block_specs.iter().enumerate() {
            if let Some(bits) = &s.a_bar_head_bits
                && bits.len() != heads
            {
                return Err(QatError::InvalidConfig {
                    component: format!("blocks.{i}.a_bar_head_bits"),
                    message: format!("{} entries for a model with {heads} heads", bits.len()),
                });
            }
        }
        let discrete = match parameterization {
            Parameterization::Continuous => Vec::new(),
            p => model
                .blocks
                .iter()
                .map(|b| DiscreteSsm::from_s4d(&b.s4d, p == Parameterization::FrozenA))
                .collect(),
        };
        let blocks = block_specs
            .iter()
            .zip(&features)
            .map(|(s, f)| ComponentQuantizers::build(s, Some(*f)))
            .collect::<Result<Vec<_>>>()?;
        let mut out = Self {
            top: ComponentQuantizers::build(&spec, None)?,
            float: model,
            discrete,
            blocks,
            spec,
            block_specs,
            parameterization,
        };
        out.recalibrate_weights()?;
        Ok(out)
    }

    /// `Abar, Bbar, Cbar, Dbar` of block `i` in float, per the parameterization.
    pub fn ssm_matrices(
        &self,
        i: usize,
    ) -> (
        ComplexTensor<2>,
        ComplexTensor<2>,
        ComplexTensor<2>,
        Tensor<1>,
    ) {
        match self.discrete.get(i) {
            Some(p) => (
                ComplexTensor::new(p.a_re.val(), p.a_im.val()),
                ComplexTensor::new(p.b_re.val(), p.b_im.val()),
                ComplexTensor::new(p.c_re.val(), p.c_im.val()),
                p.d.val(),
            ),
            None => {
                let d = self.float.blocks[i].s4d.discretize();
                (d.a_bar, d.b_bar, d.c, d.d)
            }
        }
    }

    /// Re-estimates the ranges of static weight quantizers (encoder, `Abar..Dbar`, conv,
    /// decoder) from the current parameter values. Runs in `from_float`; call it again after
    /// QAT epochs if weight ranges should follow the weights (this resets LSQ scales).
    pub fn recalibrate_weights(&mut self) -> Result<()> {
        let is_static = |q: &Option<&mut Quantizer>| {
            q.as_ref()
                .is_some_and(|q| q.config().calibration == Calibration::Static)
        };
        let enc_w = self.float.encoder.weight.val();
        let enc_b = self.float.encoder.bias.as_ref().map(|b| b.val());
        let dec_w = self.float.decoder.weight.val();
        let dec_b = self.float.decoder.bias.as_ref().map(|b| b.val());
        for (c, t) in [
            (Component::EncoderWeight, Some(enc_w)),
            (Component::DecoderWeight, Some(dec_w)),
        ] {
            let q = self.top.get_mut(c);
            if is_static(&q)
                && let (Some(q), Some(t)) = (q, t)
            {
                q.calibrate_from(t)?;
            }
        }
        for (c, t) in [
            (Component::EncoderBias, enc_b),
            (Component::DecoderBias, dec_b),
        ] {
            let q = self.top.get_mut(c);
            if is_static(&q)
                && let (Some(q), Some(t)) = (q, t)
            {
                q.calibrate_from(t)?;
            }
        }
        for i in 0..self.blocks.len() {
            let (a, b, c, d) = self.ssm_matrices(i);
            let conv_w = self.float.blocks[i].conv.weight.val();
            let conv_b = self.float.blocks[i].conv.bias.as_ref().map(|b| b.val());
            let spec = &self.block_specs[i];
            let qs = &mut self.blocks[i];
            let q = qs.get_mut(Component::ABar);
            if is_static(&q)
                && let Some(q) = q
            {
                calibrate_abar(q, spec.a_bar_grid, spec.a_bar_head_bits.as_deref(), &a)?;
            }
            for (comp, z) in [(Component::BBar, &b), (Component::CBar, &c)] {
                let q = qs.get_mut(comp);
                if is_static(&q)
                    && let Some(q) = q
                {
                    q.calibrate_from_complex(z)?;
                }
            }
            let q = qs.get_mut(Component::DBar);
            if is_static(&q)
                && let Some(q) = q
            {
                q.calibrate_from(d)?;
            }
            let q = qs.get_mut(Component::ConvWeight);
            if is_static(&q)
                && let Some(q) = q
            {
                q.calibrate_from(conv_w)?;
            }
            let q = qs.get_mut(Component::ConvBias);
            if is_static(&q)
                && let (Some(q), Some(t)) = (q, conv_b)
            {
                q.calibrate_from(t)?;
            }
        }
        Ok(())
    }

    /// Every quantizer with its state key.
    fn quantizers(&self) -> Vec<(String, &Quantizer)> {
        let mut out = Vec::new();
        for c in Component::ALL {
            if let Some(q) = self.top.get(c) {
                out.push((key(None, c), q));
            }
            for (i, b) in self.blocks.iter().enumerate() {
                if let Some(q) = b.get(c) {
                    out.push((key(Some(i), c), q));
                }
            }
        }
        out
    }

    fn quantizer_mut(&mut self, name: &str) -> Option<&mut Quantizer> {
        let (block, comp) = match name.split_once('.') {
            Some((b, c)) => (Some(b.strip_prefix("block")?.parse::<usize>().ok()?), c),
            None => (None, name),
        };
        let c = Component::from_name(comp).ok()?;
        match block {
            Some(i) => self.blocks.get_mut(i)?.get_mut(c),
            None => self.top.get_mut(c),
        }
    }

    /// Names of static quantizers that still need calibration.
    pub fn uncalibrated(&self) -> Vec<String> {
        self.quantizers()
            .into_iter()
            .filter(|(_, q)| !q.is_ready())
            .map(|(k, _)| k)
            .collect()
    }

    /// Quantized recurrent forward: `x: [B, L, d_input]` -> logits `[B, n_classes]`.
    /// Fails if a static quantizer is not calibrated.
    pub fn forward(&self, x: Tensor<3>) -> Result<Tensor<2>> {
        let lengths = vec![x.dims()[1]; x.dims()[0]];
        self.forward_masked(x, &lengths)
    }

    /// [`QuantizedClassifier::forward`] for a zero-padded batch of unequal-length sequences:
    /// the mean pool counts each sequence's first `lengths[b]` steps only (what the integer
    /// model's running sum over the real length computes).
    pub fn forward_masked(&self, x: Tensor<3>, lengths: &[usize]) -> Result<Tensor<2>> {
        let missing = self.uncalibrated();
        if !missing.is_empty() {
            return Err(QatError::NotCalibrated(missing));
        }
        Ok(self.run(x, &mut Pass::Quantize, lengths))
    }

    /// Per-time-step features `[B, L, H]` before pooling, fake-quantized like
    /// [`QuantizedClassifier::forward`] computes them (for checks against references and for
    /// streaming use). Fails if a static quantizer is not calibrated.
    pub fn features(&self, x: Tensor<3>) -> Result<Tensor<3>> {
        let missing = self.uncalibrated();
        if !missing.is_empty() {
            return Err(QatError::NotCalibrated(missing));
        }
        Ok(self.features_pass(x, &mut Pass::Quantize))
    }

    fn run(&self, x: Tensor<3>, pass: &mut Pass<'_>, lengths: &[usize]) -> Tensor<2> {
        let h = self.features_pass(x, pass);
        let top = &self.top;
        let pooled = masked_mean(h, lengths);
        let dec_w = weight(
            top,
            Component::DecoderWeight,
            self.float.decoder.weight.val(),
            pass,
        );
        let dec_b = self
            .float
            .decoder
            .bias
            .as_ref()
            .map(|b| weight(top, Component::DecoderBias, b.val(), pass));
        let logits = linear(pooled, dec_w, dec_b);
        apply(top, None, Component::Logits, logits, pass)
    }

    fn features_pass(&self, x: Tensor<3>, pass: &mut Pass<'_>) -> Tensor<3> {
        let top = &self.top;
        let x = apply(top, None, Component::Input, x, pass);
        let enc_w = weight(
            top,
            Component::EncoderWeight,
            self.float.encoder.weight.val(),
            pass,
        );
        let enc_b = self
            .float
            .encoder
            .bias
            .as_ref()
            .map(|b| weight(top, Component::EncoderBias, b.val(), pass));
        let mut h = linear(x, enc_w, enc_b);
        for (i, block) in self.float.blocks.iter().enumerate() {
            let qs = &self.blocks[i];
            let spec = &self.block_specs[i];
            let (a, b, c, d) = self.ssm_matrices(i);
            let a = weight_abar(
                qs,
                spec.a_bar_grid,
                spec.a_bar_head_bits.as_deref(),
                a,
                pass,
            );
            let b = weight_complex(qs, Component::BBar, b, pass);
            let c = weight_complex(qs, Component::CBar, c, pass);
            let d = weight(qs, Component::DBar, d, pass);
            // Pre-norm normalises the block's input; the residual adds the unnormalised one.
            let x_in = h;
            let u = if block.prenorm {
                let z = block.normalize_frozen(x_in.clone());
                apply(qs, Some(i), Component::NormOutput, z, pass)
            } else {
                x_in.clone()
            };
            let clamp = self.spec.clamp_state.then_some(self.spec.state_clamp);
            let y = match pass {
                Pass::Quantize => {
                    let state = StateQuant {
                        quantizer: qs.get(Component::State),
                        clamp,
                    };
                    scan_recording(&a, &b, &c, &d, u, state, None)
                }
                Pass::Observe(obs) => {
                    let k = key(Some(i), Component::State);
                    let float = StateQuant {
                        quantizer: None,
                        clamp,
                    };
                    if let Some(o) = obs.get_mut(&k) {
                        let mut rec = Vec::new();
                        let y = scan_recording(&a, &b, &c, &d, u, float, Some(&mut rec));
                        observe_trajectory(o, rec);
                        y
                    } else {
                        scan_recording(&a, &b, &c, &d, u, float, None)
                    }
                }
            };
            let y = apply(qs, Some(i), Component::SsmOutput, y, pass);
            let y = block.activation.forward(y);
            let y = apply(qs, Some(i), Component::Activation, y, pass);
            let w = weight(qs, Component::ConvWeight, block.conv.weight.val(), pass);
            let bias = block
                .conv
                .bias
                .as_ref()
                .map(|b| weight(qs, Component::ConvBias, b.val(), pass));
            let y = linear_glu(y, w, bias);
            let y = apply(qs, Some(i), Component::GluOutput, y, pass);
            // Dropout is the identity outside training; the residual sum and the norm get
            // their own quantizers (the integer model computes both on codes).
            let y = block.dropout.forward(y);
            let y = if block.residual {
                apply(qs, Some(i), Component::Residual, y + x_in, pass)
            } else {
                y
            };
            h = if !block.prenorm && block.norm_kind().is_some() {
                let z = block.normalize_frozen(y);
                apply(qs, Some(i), Component::NormOutput, z, pass)
            } else {
                y
            };
        }
        h
    }

    /// Every quantizer's state (learned scales read back), plus spec and parameterization.
    pub fn quant_state(&self) -> Result<QuantStateFile> {
        let quantizers = self
            .quantizers()
            .into_iter()
            .map(|(k, q)| q.export_state().map(|s| (k, s)))
            .collect::<Result<BTreeMap<_, _>>>()?;
        Ok(QuantStateFile {
            spec: self.spec.clone(),
            parameterization: self.parameterization,
            quantizers,
        })
    }

    /// Restores quantizer states saved by [`QuantizedClassifier::quant_state`]; the model must
    /// have been built with the same spec and parameterization. Load this before a burnpack
    /// of the module so learned-scale parameters exist when burnpack fills them.
    pub fn load_quant_state(&mut self, file: &QuantStateFile) -> Result<()> {
        if file.spec != self.spec || file.parameterization != self.parameterization {
            return Err(QatError::StateMismatch(
                "spec or parameterization differs from the model's".into(),
            ));
        }
        let expected: Vec<String> = self.quantizers().into_iter().map(|(k, _)| k).collect();
        let got: Vec<String> = file.quantizers.keys().cloned().collect();
        let mut sorted = expected.clone();
        sorted.sort();
        if sorted != got {
            return Err(QatError::StateMismatch(format!(
                "quantizers {got:?}, model has {sorted:?}"
            )));
        }
        let device = self.float.decoder.weight.val().device();
        for (k, state) in &file.quantizers {
            let q = self
                .quantizer_mut(k)
                .ok_or_else(|| QatError::StateMismatch(format!("no quantizer `{k}`")))?;
            if q.state.config != state.config || q.state.axis != state.axis {
                return Err(QatError::StateMismatch(format!("`{k}` has another config")));
            }
            if state.calibrated {
                q.set_params(state.scale.clone(), state.zero_point.clone(), &device);
            } else {
                q.state = state.clone();
                q.lsq_scale = None;
            }
        }
        Ok(())
    }

    /// Writes [`QuantizedClassifier::quant_state`] as pretty JSON.
    pub fn save_quant_state_json(&self, path: &Path) -> Result<()> {
        let text =
            serde_json::to_string_pretty(&self.quant_state()?).map_err(|e| QatError::Parse {
                format: "JSON",
                message: e.to_string(),
            })?;
        std::fs::write(path, text).map_err(|e| QatError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        })
    }

    /// Reads a JSON file written by [`QuantizedClassifier::save_quant_state_json`].
    pub fn load_quant_state_json(&mut self, path: &Path) -> Result<()> {
        let text = std::fs::read_to_string(path).map_err(|e| QatError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let file: QuantStateFile = serde_json::from_str(&text).map_err(|e| QatError::Parse {
            format: "JSON",
            message: e.to_string(),
        })?;
        self.load_quant_state(&file)
    }
}

/// Observes the recorded states `[B, H, M]` of every step as one observation of the state
/// quantizer (see [`Observer::observe_trajectory`]), reading each step in place.
fn observe_trajectory(o: &mut Observer, rec: Vec<ComplexTensor<3>>) {
    let Some(first) = rec.first() else { return };
    let dims = first.re.dims();
    let f32_data = |t: Tensor<3>| t.into_data().convert::<f32>();
    let data: Vec<(TensorData, TensorData)> = rec
        .into_iter()
        .map(|z| (f32_data(z.re), f32_data(z.im)))
        .collect();
    // `as_slice` fails only for a misaligned buffer, which is then read through a copy.
    fn host(d: &TensorData) -> Cow<'_, [f32]> {
        match d.as_slice::<f32>() {
            Ok(v) => Cow::Borrowed(v),
            Err(_) => Cow::Owned(d.iter::<f32>().collect()),
        }
    }
    let parts: Vec<[Cow<'_, [f32]>; 2]> =
        data.iter().map(|(re, im)| [host(re), host(im)]).collect();
    let steps: Vec<(&[f32], &[f32])> = parts.iter().map(|[re, im]| (&**re, &**im)).collect();
    o.observe_trajectory(&steps, dims);
}

fn observe<const D: usize>(o: &mut Observer, t: Tensor<D>) {
    let dims = t.dims();
    if let Ok(data) = to_host(t.detach()) {
        o.observe(&data, &dims);
    }
}

/// Activation quantizer application: fake-quant, or observe in a calibration pass.
fn apply<const D: usize>(
    qs: &ComponentQuantizers,
    block: Option<usize>,
    c: Component,
    x: Tensor<D>,
    pass: &mut Pass<'_>,
) -> Tensor<D> {
    let Some(q) = qs.get(c) else { return x };
    match pass {
        Pass::Quantize => q.forward(x),
        Pass::Observe(obs) => {
            if let Some(o) = obs.get_mut(&key(block, c)) {
                observe(o, x.clone());
            }
            x
        }
    }
}

/// Weight quantizer application (weights are calibrated data-free, so a calibration pass
/// just runs in float).
fn weight<const D: usize>(
    qs: &ComponentQuantizers,
    c: Component,
    w: Tensor<D>,
    pass: &Pass<'_>,
) -> Tensor<D> {
    match (qs.get(c), pass) {
        (Some(q), Pass::Quantize) => q.forward(w),
        _ => w,
    }
}

fn weight_complex(
    qs: &ComponentQuantizers,
    c: Component,
    z: ComplexTensor<2>,
    pass: &Pass<'_>,
) -> ComplexTensor<2> {
    match (qs.get(c), pass) {
        (Some(q), Pass::Quantize) => q.forward_complex(z),
        _ => z,
    }
}

/// `Abar`'s quantizer application: on the spec's grid ([`crate::polar`]), with per-head bits
/// when the spec has them; float in a calibration pass.
fn weight_abar(
    qs: &ComponentQuantizers,
    grid: AbarGrid,
    head_bits: Option<&[u32]>,
    z: ComplexTensor<2>,
    pass: &Pass<'_>,
) -> ComplexTensor<2> {
    match (qs.get(Component::ABar), pass) {
        (Some(q), Pass::Quantize) => fake_quant_abar(q, grid, head_bits, z),
        _ => z,
    }
}

/// Static calibration (PTQ): re-estimates weight ranges, then runs the model in float over
/// `batches` (`[B, L, d_input]` each) with observers on every static activation quantizer
/// (input, state trajectory, SSM output, activation, GLU output, logits), and freezes the
/// ranges. Returns the number of batches used.
pub fn calibrate<I>(model: &mut QuantizedClassifier, batches: I) -> Result<usize>
where
    I: IntoIterator<Item = Tensor<3>>,
{
    model.recalibrate_weights()?;
    let mut observers: BTreeMap<String, Observer> = model
        .quantizers()
        .into_iter()
        .filter(|(k, q)| {
            q.config().calibration == Calibration::Static
                && !Component::from_name(k.rsplit('.').next().unwrap_or(k))
                    .map(Component::is_weight)
                    .unwrap_or(true)
        })
        .map(|(k, q)| (k, Observer::new(q.config().clone(), q.state.axis)))
        .collect();
    let mut count = 0;
    for batch in batches {
        let lengths = vec![batch.dims()[1]; batch.dims()[0]];
        model.run(batch.detach(), &mut Pass::Observe(&mut observers), &lengths);
        count += 1;
    }
    if observers.is_empty() {
        return Ok(count);
    }
    if count == 0 {
        return Err(QatError::NoCalibrationData);
    }
    let device = model.float.decoder.weight.val().device();
    for (k, o) in observers {
        let Some((lo, hi)) = o.range() else { continue };
        if let Some(q) = model.quantizer_mut(&k) {
            q.set_range(&lo, &hi, &device);
        }
    }
    Ok(count)
}
