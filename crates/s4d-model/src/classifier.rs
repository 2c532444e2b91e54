use burn::config::Config;
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, LayerNorm, LayerNormConfig, Linear,
    LinearConfig,
};
use burn::prelude::*;

use crate::activation::Activation;
use crate::config::{S4dConfig, SsmMode};
use crate::error::ModelError;
use crate::layer::S4d;
use crate::linear_glu::linear_glu;

/// Configuration of the paper's sequence classifier (Algorithm 1), optionally deepened.
///
/// `encoder Linear(d_input -> H) -> [S4D -> act -> Conv1d(H -> 2H, k=1) -> GLU]^n_layers
/// -> mean over time -> decoder Linear(H -> n_classes)`. With the defaults (one layer, no norm,
/// no residual, no dropout) it has exactly `2H^2 + 208H + 10` parameters for `N = 64`.
#[derive(Config, Debug, PartialEq)]
pub struct S4dClassifierConfig {
    /// The SSM of every layer; `ssm.d_model` is the model width `H`.
    pub ssm: S4dConfig,
    /// Features per time step (1 for pixel sequences).
    #[config(default = 1)]
    pub d_input: usize,
    /// Number of classes.
    #[config(default = 10)]
    pub n_classes: usize,
    /// Number of S4D blocks (the paper uses 1).
    #[config(default = 1)]
    pub n_layers: usize,
    /// Nonlinearity after each SSM (the paper's quantized models use qGELU).
    #[config(default = "Activation::Gelu")]
    pub activation: Activation,
    /// LayerNorm in each block, for the deeper S4D recipe (off in the paper). Kept for the
    /// configs written before `norm` existed; `norm` names either kind.
    #[config(default = false)]
    pub layer_norm: bool,
    /// The blocks' norm: LayerNorm, or BatchNorm (a per-channel affine at inference, so it
    /// folds into integer code). `None` leaves it to `layer_norm`. (Optional fields read as
    /// absent from configs saved before they existed.)
    #[config(default = "None")]
    pub norm: Option<NormKind>,
    /// Where the norm sits: after the residual sum (`norm(x + f(x))`, the default and the
    /// state-spaces example's) or on the block's input (`x + f(norm(x))`).
    #[config(default = "None")]
    pub norm_position: Option<NormPosition>,
    /// Residual connection around each block (off in the paper).
    #[config(default = false)]
    pub residual: bool,
    /// Dropout after each block (0 in the paper).
    #[config(default = 0.0)]
    pub dropout: f64,
}

impl S4dClassifierConfig {
    /// Preset names accepted by [`S4dClassifierConfig::preset`].
    pub const PRESETS: [&'static str; 4] = ["s4d-16h", "s4d-64h", "s4d-256h", "s4d-512h"];

    /// The paper's models by name (`s4d-16h`, `s4d-64h`, `s4d-256h`, `s4d-512h`): one layer, `H`
    /// heads, `N = 64`, 10 classes, one input feature.
    pub fn preset(name: &str) -> Result<Self, ModelError> {
        let heads = match name {
            "s4d-16h" => 16,
            "s4d-64h" => 64,
            "s4d-256h" => 256,
            "s4d-512h" => 512,
            other => return Err(ModelError::UnknownPreset(other.to_string())),
        };
        Ok(Self::new(S4dConfig::new(heads)))
    }

    /// Model width `H`.
    pub fn d_model(&self) -> usize {
        self.ssm.d_model
    }

    /// Checks every field, so a bad config file fails with a message instead of a panic in `init`.
    pub fn validate(&self) -> Result<(), ModelError> {
        self.ssm.validate()?;
        if self.d_input == 0 || self.n_classes < 2 || self.n_layers == 0 {
            return Err(ModelError::InvalidConfig(format!(
                "need d_input >= 1, n_classes >= 2, n_layers >= 1; got {}, {}, {}",
                self.d_input, self.n_classes, self.n_layers
            )));
        }
        if self.layer_norm && self.norm == Some(NormKind::Batch) {
            return Err(ModelError::InvalidConfig(
                "layer_norm = true and norm = batch: a block has one norm".into(),
            ));
        }
        if self.prenorm() && self.norm_kind().is_none() {
            return Err(ModelError::InvalidConfig(
                "norm_position = pre needs a norm (norm = layer or batch)".into(),
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(ModelError::InvalidConfig(format!(
                "dropout must be in [0, 1), got {}",
                self.dropout
            )));
        }
        Ok(())
    }

    /// The blocks' norm, if any.
    pub fn norm_kind(&self) -> Option<NormKind> {
        match (self.norm, self.layer_norm) {
            (Some(kind), _) => Some(kind),
            (None, true) => Some(NormKind::Layer),
            (None, false) => None,
        }
    }

    /// Whether the norm is on the blocks' input.
    pub fn prenorm(&self) -> bool {
        self.norm_position == Some(NormPosition::Pre)
    }

    /// Builds the classifier.
    ///
    /// # Panics
    /// On an invalid config; call [`S4dClassifierConfig::validate`] first to get an error.
    pub fn init(&self, device: &Device) -> S4dClassifier {
        if let Err(err) = self.validate() {
            panic!("{err}");
        }
        let h = self.d_model();
        let blocks = (0..self.n_layers)
            .map(|_| S4dBlock {
                s4d: self.ssm.init(device),
                conv: LinearConfig::new(h, 2 * h).init(device),
                norm: (self.norm_kind() == Some(NormKind::Layer))
                    .then(|| LayerNormConfig::new(h).init(device)),
                batch_norm: (self.norm_kind() == Some(NormKind::Batch))
                    .then(|| BatchNormConfig::new(h).init(device)),
                dropout: DropoutConfig::new(self.dropout).init(),
                residual: self.residual,
                prenorm: self.prenorm(),
                activation: self.activation,
            })
            .collect();
        S4dClassifier {
            encoder: LinearConfig::new(self.d_input, h).init(device),
            blocks,
            decoder: LinearConfig::new(h, self.n_classes).init(device),
        }
    }
}

/// Which norm a block has: both are per-channel at inference time for BatchNorm, per-step
/// over the channels for LayerNorm, and the integer export treats them differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NormKind {
    /// LayerNorm over the `H` channels of each step.
    Layer,
    /// BatchNorm per channel (running statistics at inference).
    Batch,
}

/// Where a block's norm sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NormPosition {
    /// `norm(x + f(x))`.
    Post,
    /// `x + f(norm(x))`.
    Pre,
}

/// One S4D block: `S4D -> act -> Conv1d(H -> 2H, k = 1) -> GLU`, plus the optional extras.
///
/// A kernel-size-1 Conv1d is a per-time-step linear map, so it is stored as a [`Linear`]
/// (`[H, 2H]` weight, `[2H]` bias: the same parameters, a faster matmul).
#[derive(Module, Debug)]
pub struct S4dBlock {
    /// The state-space layer.
    pub s4d: S4d,
    /// The pointwise `H -> 2H` mixing before GLU.
    pub conv: Linear,
    /// Optional LayerNorm (the field keeps its name so older checkpoints load).
    pub norm: Option<LayerNorm>,
    /// Optional BatchNorm over the `H` channels.
    pub batch_norm: Option<BatchNorm>,
    /// Dropout (identity when its probability is 0 or outside training).
    pub dropout: Dropout,
    /// Whether the block adds its input to its output.
    #[module(skip)]
    pub residual: bool,
    /// Whether the norm comes before the block (else after the residual sum).
    #[module(skip)]
    pub prenorm: bool,
    /// Nonlinearity after the SSM.
    #[module(skip)]
    pub activation: Activation,
}

impl S4dBlock {
    /// `x: [B, L, H] -> [B, L, H]`: `norm(x + f(x))` (post-norm) or `x + f(norm(x))`
    /// (pre-norm), without the parts the block does not have.
    pub fn forward(&self, x: Tensor<3>, mode: SsmMode) -> Tensor<3> {
        let z = if self.prenorm {
            self.normalize(x.clone())
        } else {
            x.clone()
        };
        let y = self.s4d.forward(z, mode);
        let y = self.activation.forward(y);
        let bias = self.conv.bias.as_ref().map(|b| b.val());
        let y = linear_glu(y, self.conv.weight.val(), bias); // first half * sigmoid(second half)
        let y = self.dropout.forward(y);
        let y = if self.residual { y + x } else { y };
        if self.prenorm { y } else { self.normalize(y) }
    }

    /// The block's norm applied to `x: [B, L, H]` (identity without one). BatchNorm takes
    /// channels on axis 1, so the time and channel axes swap around it.
    pub fn normalize(&self, x: Tensor<3>) -> Tensor<3> {
        match (&self.norm, &self.batch_norm) {
            (Some(norm), _) => norm.forward(x),
            (None, Some(bn)) => bn.forward(x.swap_dims(1, 2)).swap_dims(1, 2),
            (None, None) => x,
        }
    }

    /// [`S4dBlock::normalize`] with BatchNorm always in its inference form (running
    /// statistics, which stay fixed): the per-channel affine that quantization-aware training
    /// sees and the integer export folds. LayerNorm is unchanged.
    pub fn normalize_frozen(&self, x: Tensor<3>) -> Tensor<3> {
        match (&self.norm, &self.batch_norm) {
            (None, Some(bn)) => {
                let device = x.device();
                let y = burn::tensor::module::batch_norm(
                    x.swap_dims(1, 2),
                    bn.gamma.val(),
                    bn.beta.val(),
                    bn.running_mean.value().to_device(&device),
                    bn.running_var.value().to_device(&device),
                    bn.epsilon,
                );
                y.swap_dims(1, 2)
            }
            _ => self.normalize(x),
        }
    }

    /// The block's norm kind.
    pub fn norm_kind(&self) -> Option<NormKind> {
        match (&self.norm, &self.batch_norm) {
            (Some(_), _) => Some(NormKind::Layer),
            (None, Some(_)) => Some(NormKind::Batch),
            (None, None) => None,
        }
    }
}

/// The paper's S4D sequence classifier.
#[derive(Module, Debug)]
pub struct S4dClassifier {
    /// `d_input -> H` per time step.
    pub encoder: Linear,
    /// The S4D blocks (one in the paper).
    pub blocks: Vec<S4dBlock>,
    /// `H -> n_classes` after mean pooling.
    pub decoder: Linear,
}

impl S4dClassifier {
    /// `x: [B, L, d_input]` -> logits `[B, n_classes]`.
    pub fn forward(&self, x: Tensor<3>, mode: SsmMode) -> Tensor<2> {
        let pooled = self.features(x, mode).mean_dim(1).squeeze_dim::<2>(1); // [B, H]
        self.decoder.forward(pooled)
    }

    /// Logits of a padded batch of unequal-length sequences: `x: [B, L, d_input]`, zero after
    /// each sequence's end, `lengths[b] <= L` its real steps. The SSM is causal, so padding
    /// changes no real step's features; only the pooling has to skip it ([`masked_mean`]).
    /// With every length equal to `L` this is exactly [`S4dClassifier::forward`].
    pub fn forward_masked(&self, x: Tensor<3>, mode: SsmMode, lengths: &[usize]) -> Tensor<2> {
        let pooled = masked_mean(self.features(x, mode), lengths); // [B, H]
        self.decoder.forward(pooled)
    }

    /// Per-time-step features before pooling, `[B, L, H]`.
    pub fn features(&self, x: Tensor<3>, mode: SsmMode) -> Tensor<3> {
        let mut h = self.encoder.forward(x);
        for block in &self.blocks {
            h = block.forward(h, mode);
        }
        h
    }
}

/// Mean over time of `h: [B, L, H]` counting only the first `lengths[b]` steps of sequence
/// `b` (clamped to `L`; a length of 0 counts as 1 so an empty row pools its first step rather
/// than dividing by zero). When every length is `L` it is `h.mean_dim(1)`, bit for bit.
///
/// # Panics
/// If `lengths.len()` differs from `B`.
pub fn masked_mean(h: Tensor<3>, lengths: &[usize]) -> Tensor<2> {
    let [batch, steps, _] = h.dims();
    assert_eq!(lengths.len(), batch, "one length per sequence");
    if lengths.iter().all(|&n| n >= steps) {
        return h.mean_dim(1).squeeze_dim::<2>(1);
    }
    // Weight 1/len on a sequence's real steps, 0 on its padding: one multiply and one sum.
    let mut w = vec![0.0f32; batch * steps];
    for (row, &n) in w.chunks_exact_mut(steps).zip(lengths) {
        let n = n.clamp(1, steps);
        row[..n].fill(1.0 / n as f32);
    }
    let w = Tensor::<3>::from_data(
        burn::tensor::TensorData::new(w, [batch, steps, 1]),
        &h.device(),
    );
    (h * w).sum_dim(1).squeeze_dim::<2>(1)
}
