//! Which parts of the S4D classifier are quantized, and how: [`QuantSpec`].
//!
//! Every component has an optional [`QuantizerConfig`] (`None` = stays float). Specs come from
//! presets (`fp32`, `wWaA`, `wWaA-aPxS`), from TOML/JSON files, or from
//! [`QuantSpec::only`] for per-component sensitivity sweeps.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{QatError, Result};
use crate::polar::{AbarGrid, validate_abar};
use crate::quantizer::QuantizerConfig;

/// A quantizable tensor of the classifier. Names (snake_case) are the spec's field names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Component {
    /// Encoder weight `[d_input, H]`.
    EncoderWeight,
    /// Encoder bias `[H]`.
    EncoderBias,
    /// Model input `[B, L, d_input]`.
    Input,
    /// `Abar` `[H, M]` complex.
    ABar,
    /// `Bbar` `[H, M]` complex.
    BBar,
    /// `Cbar` (= `C`) `[H, M]` complex.
    CBar,
    /// `Dbar` (= `D`) `[H]`.
    DBar,
    /// SSM state `x_t` `[B, H, M]` complex, quantized after every step.
    State,
    /// SSM output `y` `[B, L, H]`.
    SsmOutput,
    /// GELU / qGELU output `[B, L, H]`.
    Activation,
    /// Pointwise conv weight `[H, 2H]`.
    ConvWeight,
    /// Pointwise conv bias `[2H]`.
    ConvBias,
    /// GLU output `[B, L, H]`.
    GluOutput,
    /// Residual sum `x + f(x)` of a block with a residual connection `[B, L, H]`.
    Residual,
    /// Norm output of a block with a norm (LayerNorm or BatchNorm) `[B, L, H]`.
    NormOutput,
    /// Decoder weight `[H, n_classes]`.
    DecoderWeight,
    /// Decoder bias `[n_classes]`.
    DecoderBias,
    /// Logits `[B, n_classes]`.
    Logits,
}

impl Component {
    /// Every component, in forward order.
    pub const ALL: [Component; 18] = [
        Component::Input,
        Component::EncoderWeight,
        Component::EncoderBias,
        Component::ABar,
        Component::BBar,
        Component::CBar,
        Component::DBar,
        Component::State,
        Component::SsmOutput,
        Component::Activation,
        Component::ConvWeight,
        Component::ConvBias,
        Component::GluOutput,
        Component::Residual,
        Component::NormOutput,
        Component::DecoderWeight,
        Component::DecoderBias,
        Component::Logits,
    ];

    /// The components a model whose blocks have `features` has, in forward order: what a
    /// sensitivity sweep over that model should visit (`BlockFeatures::PAPER` for the
    /// paper's classifier).
    pub fn for_model(features: BlockFeatures) -> Vec<Component> {
        Self::ALL.into_iter().filter(|&c| features.has(c)).collect()
    }

    /// The spec/file name (`a_bar`, `conv_weight`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Component::EncoderWeight => "encoder_weight",
            Component::EncoderBias => "encoder_bias",
            Component::Input => "input",
            Component::ABar => "a_bar",
            Component::BBar => "b_bar",
            Component::CBar => "c_bar",
            Component::DBar => "d_bar",
            Component::State => "state",
            Component::SsmOutput => "ssm_output",
            Component::Activation => "activation",
            Component::ConvWeight => "conv_weight",
            Component::ConvBias => "conv_bias",
            Component::GluOutput => "glu_output",
            Component::Residual => "residual",
            Component::NormOutput => "norm_output",
            Component::DecoderWeight => "decoder_weight",
            Component::DecoderBias => "decoder_bias",
            Component::Logits => "logits",
        }
    }

    /// Parses a spec name.
    pub fn from_name(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|c| c.name() == name)
            .ok_or_else(|| QatError::InvalidConfig {
                component: name.to_string(),
                message: format!(
                    "unknown component; expected one of: {}",
                    Self::ALL.map(|c| c.name()).join(", ")
                ),
            })
    }

    /// Parameters (calibrated from their own values) rather than activations (need data).
    pub fn is_weight(self) -> bool {
        !matches!(
            self,
            Component::Input
                | Component::State
                | Component::SsmOutput
                | Component::Activation
                | Component::GluOutput
                | Component::Residual
                | Component::NormOutput
                | Component::Logits
        )
    }

    /// Only some blocks have it (a residual connection, a norm): a spec may set it for every
    /// model, and models without it ignore the setting.
    pub fn is_optional(self) -> bool {
        matches!(self, Component::Residual | Component::NormOutput)
    }

    /// Complex-valued (real and imaginary parts share one grid).
    pub fn is_complex(self) -> bool {
        matches!(
            self,
            Component::ABar | Component::BBar | Component::CBar | Component::State
        )
    }

    /// Belongs to an S4D block (one quantizer per block) rather than to the classifier ends.
    pub fn is_per_block(self) -> bool {
        !matches!(
            self,
            Component::Input
                | Component::EncoderWeight
                | Component::EncoderBias
                | Component::DecoderWeight
                | Component::DecoderBias
                | Component::Logits
        )
    }

    /// Rank of the tensor and its head/output-channel axis (used for per-channel scales).
    pub fn rank_and_axis(self) -> (usize, usize) {
        match self {
            Component::EncoderWeight | Component::ConvWeight | Component::DecoderWeight => (2, 1),
            Component::EncoderBias
            | Component::ConvBias
            | Component::DecoderBias
            | Component::DBar => (1, 0),
            Component::ABar | Component::BBar | Component::CBar => (2, 0),
            Component::State => (3, 1),
            Component::Input
            | Component::SsmOutput
            | Component::Activation
            | Component::GluOutput
            | Component::Residual
            | Component::NormOutput => (3, 2),
            Component::Logits => (2, 1),
        }
    }

    /// The preset configuration at `bits`: per-head/per-output-channel for parameters and the
    /// state, per tensor for the other activations; asymmetric, static, percentile 99.999.
    pub fn default_config(self, bits: u32) -> QuantizerConfig {
        let per_channel = self.is_weight() || self == Component::State;
        QuantizerConfig::new(bits).with_per_channel(per_channel)
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The optional points a block has (a residual sum, a norm): what decides which of a spec's
/// settings apply to a model and which overrides name something that is not there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockFeatures {
    /// A residual connection (the [`Component::Residual`] point).
    pub residual: bool,
    /// A norm (the [`Component::NormOutput`] point).
    pub norm: bool,
}

impl BlockFeatures {
    /// The paper's block: neither.
    pub const PAPER: Self = Self {
        residual: false,
        norm: false,
    };

    /// The features of a float block.
    pub fn of(block: &s4d_model::S4dBlock) -> Self {
        Self {
            residual: block.residual,
            norm: block.norm_kind().is_some(),
        }
    }

    /// The features every block of a classifier config has.
    pub fn of_config(cfg: &s4d_model::S4dClassifierConfig) -> Self {
        Self {
            residual: cfg.residual,
            norm: cfg.norm_kind().is_some(),
        }
    }

    /// Whether the block has point `c` (every non-optional point it has).
    pub fn has(self, c: Component) -> bool {
        match c {
            Component::Residual => self.residual,
            Component::NormOutput => self.norm,
            _ => true,
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_state_clamp() -> f32 {
    50.0
}

/// Quantization of every component of the classifier; `None` keeps a component in float.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuantSpec {
    /// Clamp the state's real and imaginary parts to `+-state_clamp` before quantizing it.
    #[serde(default = "default_true")]
    pub clamp_state: bool,
    /// State clamp bound (the paper: 50).
    #[serde(default = "default_state_clamp")]
    pub state_clamp: f32,
    /// How `Abar` is gridded (Cartesian as in the paper, or polar / log-polar, which keep every
    /// code inside the unit circle); see [`crate::polar`].
    #[serde(default, skip_serializing_if = "AbarGrid::is_cartesian")]
    pub a_bar_grid: AbarGrid,
    /// Per-head bit widths of `Abar` (one entry per head, used by every block) instead of the
    /// `a_bar` config's `bits`; lets a mixed-precision search spend bits where heads need them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub a_bar_head_bits: Option<Vec<u32>>,
    /// See [`Component::Input`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<QuantizerConfig>,
    /// See [`Component::EncoderWeight`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoder_weight: Option<QuantizerConfig>,
    /// See [`Component::EncoderBias`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoder_bias: Option<QuantizerConfig>,
    /// See [`Component::ABar`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub a_bar: Option<QuantizerConfig>,
    /// See [`Component::BBar`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b_bar: Option<QuantizerConfig>,
    /// See [`Component::CBar`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub c_bar: Option<QuantizerConfig>,
    /// See [`Component::DBar`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub d_bar: Option<QuantizerConfig>,
    /// See [`Component::State`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<QuantizerConfig>,
    /// See [`Component::SsmOutput`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssm_output: Option<QuantizerConfig>,
    /// See [`Component::Activation`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation: Option<QuantizerConfig>,
    /// See [`Component::ConvWeight`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conv_weight: Option<QuantizerConfig>,
    /// See [`Component::ConvBias`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conv_bias: Option<QuantizerConfig>,
    /// See [`Component::GluOutput`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub glu_output: Option<QuantizerConfig>,
    /// See [`Component::Residual`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub residual: Option<QuantizerConfig>,
    /// See [`Component::NormOutput`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub norm_output: Option<QuantizerConfig>,
    /// See [`Component::DecoderWeight`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoder_weight: Option<QuantizerConfig>,
    /// See [`Component::DecoderBias`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoder_bias: Option<QuantizerConfig>,
    /// See [`Component::Logits`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logits: Option<QuantizerConfig>,
    /// Per-block overrides of the block points above, keyed by block (`"0"`, `"1"`, ... or
    /// `"*"` for every block) and then by point name: in TOML `blocks.1.state = 6` or
    /// `blocks."*".a_bar = { bits = 6, grid = "log_polar" }`. `"*"` applies first, so an
    /// index overrides it; see [`QuantSpec::block_spec`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub blocks: BTreeMap<String, BTreeMap<String, PointOverride>>,
}

/// A change to one quantization point of one block (or of every block): a deep model rarely
/// wants the same widths in every block, and the first and last blocks are often the
/// sensitive ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PointOverride {
    /// Only the bit width: the base spec's config of that point at these bits, or the
    /// point's [`Component::default_config`] when the base keeps it in float.
    Bits(u32),
    /// Field by field (fields left out keep the base config's values).
    Fields(PointFields),
}

impl PointOverride {
    /// `bits` on `grid`: a bare width on the Cartesian grid, the field form (which only
    /// `a_bar` accepts) for the polar grids. What a per-block search or sweep writes.
    pub fn width(bits: u32, grid: AbarGrid) -> Self {
        if grid.is_cartesian() {
            Self::Bits(bits)
        } else {
            Self::Fields(PointFields {
                bits: Some(bits),
                grid: Some(grid),
                ..PointFields::default()
            })
        }
    }
}

/// The fields a [`PointOverride`] can change.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointFields {
    /// Bit width (needed when the base spec keeps the point in float).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bits: Option<u32>,
    /// Keep the point in float in this block (no other field may be set then).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub float: bool,
    /// One scale per channel instead of one per tensor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_channel: Option<bool>,
    /// Symmetric grid (zero point 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symmetric: Option<bool>,
    /// Learned step size (LSQ) during QAT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learned_scale: Option<bool>,
    /// `Abar`'s grid in this block (`a_bar` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grid: Option<AbarGrid>,
    /// `Abar`'s per-head widths in this block (`a_bar` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_bits: Option<Vec<u32>>,
}

/// Where a quantizer sits: at the classifier's ends (`block: None`) or in one block. The
/// unit that memory accounting, mixed-precision search and sensitivity work in. Written as
/// its path (`a_bar`, `blocks.1.state`), so it can key a JSON or TOML map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QuantPoint {
    /// The block, or `None` for an end of the classifier (or "every block" where a caller
    /// does not split blocks).
    pub block: Option<usize>,
    /// The component.
    pub component: Component,
}

impl QuantPoint {
    /// The point `component` in `block` (or in every block / at the ends for `None`).
    pub fn new(block: Option<usize>, component: Component) -> Self {
        Self { block, component }
    }
}

impl std::str::FromStr for QuantPoint {
    type Err = QatError;

    fn from_str(text: &str) -> Result<Self> {
        let Some(rest) = text.strip_prefix("blocks.") else {
            return Ok(Self::new(None, Component::from_name(text)?));
        };
        let (key, name) = rest
            .split_once('.')
            .ok_or_else(|| QatError::InvalidConfig {
                component: text.to_string(),
                message: "a block path is `blocks.<i>.<point>`".into(),
            })?;
        let block = match parse_block_key(key)? {
            BlockKey::Index(i) => Some(i),
            BlockKey::All => None,
        };
        Ok(Self::new(block, block_point(key, name)?))
    }
}

impl Serialize for QuantPoint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for QuantPoint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for QuantPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.block {
            Some(i) => write!(f, "blocks.{i}.{}", self.component.name()),
            None => f.write_str(self.component.name()),
        }
    }
}

impl Default for QuantSpec {
    fn default() -> Self {
        Self::fp32()
    }
}

/// One case of a per-component sensitivity sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct SensitivityCase {
    /// The only quantized component.
    pub component: Component,
    /// Its bit width.
    pub bits: u32,
    /// The spec to evaluate.
    pub spec: QuantSpec,
}

impl QuantSpec {
    /// Everything in float (the state clamp is inactive without a state quantizer).
    pub fn fp32() -> Self {
        Self {
            clamp_state: true,
            state_clamp: 50.0,
            a_bar_grid: AbarGrid::Cartesian,
            a_bar_head_bits: None,
            input: None,
            encoder_weight: None,
            encoder_bias: None,
            a_bar: None,
            b_bar: None,
            c_bar: None,
            d_bar: None,
            state: None,
            ssm_output: None,
            activation: None,
            conv_weight: None,
            conv_bias: None,
            glu_output: None,
            residual: None,
            norm_output: None,
            decoder_weight: None,
            decoder_bias: None,
            logits: None,
            blocks: BTreeMap::new(),
        }
    }

    /// The configuration of `component`.
    pub fn get(&self, component: Component) -> Option<&QuantizerConfig> {
        self.slot(component).as_ref()
    }

    /// Replaces the configuration of `component`.
    pub fn set(&mut self, component: Component, config: Option<QuantizerConfig>) {
        *self.slot_mut(component) = config;
    }

    /// Builder form of [`QuantSpec::set`].
    pub fn with(mut self, component: Component, config: Option<QuantizerConfig>) -> Self {
        self.set(component, config);
        self
    }

    /// Builder: sets [`QuantSpec::a_bar_grid`].
    pub fn with_a_bar_grid(mut self, grid: AbarGrid) -> Self {
        self.a_bar_grid = grid;
        self
    }

    /// Bit width of `component`, 32 when float.
    pub fn bits(&self, component: Component) -> u32 {
        self.get(component).map_or(32, |c| c.bits)
    }

    fn slot(&self, c: Component) -> &Option<QuantizerConfig> {
        match c {
            Component::EncoderWeight => &self.encoder_weight,
            Component::EncoderBias => &self.encoder_bias,
            Component::Input => &self.input,
            Component::ABar => &self.a_bar,
            Component::BBar => &self.b_bar,
            Component::CBar => &self.c_bar,
            Component::DBar => &self.d_bar,
            Component::State => &self.state,
            Component::SsmOutput => &self.ssm_output,
            Component::Activation => &self.activation,
            Component::ConvWeight => &self.conv_weight,
            Component::ConvBias => &self.conv_bias,
            Component::GluOutput => &self.glu_output,
            Component::Residual => &self.residual,
            Component::NormOutput => &self.norm_output,
            Component::DecoderWeight => &self.decoder_weight,
            Component::DecoderBias => &self.decoder_bias,
            Component::Logits => &self.logits,
        }
    }

    fn slot_mut(&mut self, c: Component) -> &mut Option<QuantizerConfig> {
        match c {
            Component::EncoderWeight => &mut self.encoder_weight,
            Component::EncoderBias => &mut self.encoder_bias,
            Component::Input => &mut self.input,
            Component::ABar => &mut self.a_bar,
            Component::BBar => &mut self.b_bar,
            Component::CBar => &mut self.c_bar,
            Component::DBar => &mut self.d_bar,
            Component::State => &mut self.state,
            Component::SsmOutput => &mut self.ssm_output,
            Component::Activation => &mut self.activation,
            Component::ConvWeight => &mut self.conv_weight,
            Component::ConvBias => &mut self.conv_bias,
            Component::GluOutput => &mut self.glu_output,
            Component::Residual => &mut self.residual,
            Component::NormOutput => &mut self.norm_output,
            Component::DecoderWeight => &mut self.decoder_weight,
            Component::DecoderBias => &mut self.decoder_bias,
            Component::Logits => &mut self.logits,
        }
    }

    /// Heterogeneous preset: weights (encoder, `Bbar`, `Cbar`, `Dbar`, conv, decoder, biases
    /// included) at `w` bits, activations (input, SSM output, activation, GLU output, logits) at
    /// `a` bits, `Abar` at `a_bar` bits, the state at `state` bits, all with
    /// [`Component::default_config`].
    pub fn mixed(w: u32, a: u32, a_bar: u32, state: u32) -> Result<Self> {
        let mut spec = Self::fp32();
        for c in Component::ALL {
            let bits = match c {
                Component::ABar => a_bar,
                Component::State => state,
                c if c.is_weight() => w,
                _ => a,
            };
            spec.set(c, Some(c.default_config(bits)));
        }
        spec.validate()?;
        Ok(spec)
    }

    /// Parses a preset name: `fp32`; `wWaA` (weights and `Abar` at W bits, activations and the
    /// state at A bits, so `w8a8` is 8 bits everywhere); `wWaA-aPxS` (`Abar` P bits, state S
    /// bits, e.g. `w4a6-a8x8`); either with a `-polar` or `-logpolar` suffix for that `Abar`
    /// grid (e.g. `w4a6-a6x6-logpolar`).
    pub fn preset(name: &str) -> Result<Self> {
        let bad = || QatError::UnknownPreset(name.to_string());
        let lower = name.trim().to_ascii_lowercase();
        for (suffix, grid) in [
            ("-logpolar", AbarGrid::LogPolar),
            ("-polar", AbarGrid::Polar),
        ] {
            if let Some(base) = lower.strip_suffix(suffix)
                && base != "fp32"
            {
                let spec = Self::preset(base).map_err(|_| bad())?.with_a_bar_grid(grid);
                spec.validate()?;
                return Ok(spec);
            }
        }
        if lower == "fp32" {
            return Ok(Self::fp32());
        }
        let (main, ssm) = match lower.split_once('-') {
            Some((m, s)) => (m, Some(s)),
            None => (lower.as_str(), None),
        };
        let (w, a) = parse_pair(main, 'w', 'a').ok_or_else(bad)?;
        let (p, s) = match ssm {
            Some(s) => parse_pair(s, 'a', 'x').ok_or_else(bad)?,
            None => (w, a),
        };
        if ![w, a, p, s].iter().all(|b| (2..=16).contains(b)) {
            return Err(bad());
        }
        Self::mixed(w, a, p, s)
    }

    /// Only `component` quantized, at `bits` with its default config (sensitivity sweeps).
    pub fn only(component: Component, bits: u32) -> Result<Self> {
        let spec = Self::fp32().with(component, Some(component.default_config(bits)));
        spec.validate()?;
        Ok(spec)
    }

    /// Every `(component, bits)` pair as a one-component spec, in the given order.
    pub fn sensitivity_grid(
        components: &[Component],
        bits: &[u32],
    ) -> Result<Vec<SensitivityCase>> {
        let mut out = Vec::with_capacity(components.len() * bits.len());
        for &component in components {
            for &b in bits {
                out.push(SensitivityCase {
                    component,
                    bits: b,
                    spec: Self::only(component, b)?,
                });
            }
        }
        Ok(out)
    }

    /// Only `component` of `block` quantized, at `bits` with its default config (per-block
    /// sensitivity: which block can take fewer bits).
    pub fn only_in_block(block: usize, component: Component, bits: u32) -> Result<Self> {
        let mut spec = Self::fp32();
        spec.set_block(Some(block), component, PointOverride::Bits(bits))?;
        spec.validate()?;
        Ok(spec)
    }

    /// Sets the override of `component` in `block` (`None`: every block, key `"*"`).
    /// Fails for a component that is not a block point.
    pub fn set_block(
        &mut self,
        block: Option<usize>,
        component: Component,
        change: PointOverride,
    ) -> Result<()> {
        let key = block.map_or_else(|| "*".to_string(), |i| i.to_string());
        block_point(&key, component.name())?;
        self.blocks
            .entry(key)
            .or_default()
            .insert(component.name().to_string(), change);
        Ok(())
    }

    /// Whether any block overrides exist (every block then uses the base spec as it is).
    pub fn has_block_overrides(&self) -> bool {
        self.blocks.values().any(|points| !points.is_empty())
    }

    /// The spec that block `block` runs with: the base spec, then the `"*"` overrides, then
    /// block `block`'s own; the result has no overrides left. The classifier's ends always use
    /// the base spec.
    pub fn block_spec(&self, block: usize) -> Result<Self> {
        self.resolve(
            &["*".to_string(), block.to_string()],
            &format!("blocks.{block}"),
        )
    }

    /// The base spec with the overrides under `keys` applied in order; errors are located
    /// under `label`.
    fn resolve(&self, keys: &[String], label: &str) -> Result<Self> {
        let mut out = self.clone();
        out.blocks.clear();
        for key in keys {
            let Some(points) = self.blocks.get(key) else {
                continue;
            };
            for (name, change) in points {
                let c = block_point(key, name)?;
                out.apply_override(c, change)
                    .map_err(|e| in_path(&format!("blocks.{key}"), e))?;
            }
        }
        out.validate().map_err(|e| in_path(label, e))?;
        Ok(out)
    }

    /// Fails when an override names a block the model does not have (`n_blocks` blocks).
    pub fn check_blocks(&self, n_blocks: usize) -> Result<()> {
        for key in self.blocks.keys() {
            if let BlockKey::Index(i) = parse_block_key(key)?
                && i >= n_blocks
            {
                let valid = if n_blocks == 1 {
                    "blocks.0".to_string()
                } else {
                    format!("blocks.0 .. blocks.{}", n_blocks - 1)
                };
                return Err(QatError::InvalidConfig {
                    component: format!("blocks.{key}"),
                    message: format!(
                        "the model has {n_blocks} block(s); valid: {valid}, or blocks.\"*\" for every block"
                    ),
                });
            }
        }
        Ok(())
    }

    /// The spec as it applies to a model (or block) with `features`: base settings of points
    /// it lacks are dropped (the presets set every
    /// point). Specs saved before those points existed equal their `for_model(false, false)`,
    /// so run configurations compare equal across versions.
    pub fn for_model(mut self, features: BlockFeatures) -> Self {
        for c in Component::ALL {
            if !features.has(c) {
                self.set(c, None);
            }
        }
        self
    }

    /// Fails when an override names a block the model lacks or a point the named blocks lack
    /// (a residual sum without a residual connection, a norm output without a norm), for a
    /// model whose blocks have `blocks[i]`: what building the model would refuse.
    pub fn check_model(&self, blocks: &[BlockFeatures]) -> Result<()> {
        self.validate()?;
        self.check_blocks(blocks.len())?;
        for (key, points) in &self.blocks {
            for name in points.keys() {
                let c = Component::from_name(name)?;
                let lacking: Vec<usize> = (0..blocks.len())
                    .filter(|&i| key == "*" || *key == i.to_string())
                    .filter(|&i| !blocks[i].has(c))
                    .collect();
                if let Some(&first) = lacking.first() {
                    return Err(QatError::InvalidConfig {
                        component: format!("blocks.{key}.{name}"),
                        message: format!(
                            "block(s) {lacking:?} have no {name} point (residual: {}, norm: {})",
                            blocks[first].residual, blocks[first].norm
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// Every path a block override can name, for error messages and documentation.
    pub fn block_paths() -> Vec<String> {
        Component::ALL
            .into_iter()
            .filter(|c| c.is_per_block())
            .map(|c| format!("blocks.<i>.{}", c.name()))
            .collect()
    }

    fn apply_override(&mut self, c: Component, change: &PointOverride) -> Result<()> {
        let bad = |message: String| QatError::InvalidConfig {
            component: c.name().into(),
            message,
        };
        match change {
            PointOverride::Bits(bits) => {
                let cfg = match self.get(c) {
                    Some(cfg) => QuantizerConfig {
                        bits: *bits,
                        ..cfg.clone()
                    },
                    None => c.default_config(*bits),
                };
                self.set(c, Some(cfg));
            }
            PointOverride::Fields(f) => {
                if f.float {
                    if *f
                        != (PointFields {
                            float: true,
                            ..PointFields::default()
                        })
                    {
                        return Err(bad(
                            "`float = true` cannot be combined with other fields".into()
                        ));
                    }
                    self.set(c, None);
                    if c == Component::ABar {
                        self.a_bar_head_bits = None;
                        self.a_bar_grid = AbarGrid::Cartesian;
                    }
                    return Ok(());
                }
                if c != Component::ABar && (f.grid.is_some() || f.head_bits.is_some()) {
                    return Err(bad("`grid` and `head_bits` apply to `a_bar` only".into()));
                }
                let mut cfg = match (self.get(c), f.bits) {
                    (Some(cfg), _) => cfg.clone(),
                    (None, Some(bits)) => c.default_config(bits),
                    (None, None) => {
                        return Err(bad(
                            "the base spec keeps this point in float, so the override needs `bits`"
                                .into(),
                        ));
                    }
                };
                if let Some(bits) = f.bits {
                    cfg.bits = bits;
                }
                if let Some(v) = f.per_channel {
                    cfg.per_channel = v;
                }
                if let Some(v) = f.symmetric {
                    cfg.symmetric = v;
                }
                if let Some(v) = f.learned_scale {
                    cfg.learned_scale = v;
                }
                self.set(c, Some(cfg));
                if let Some(grid) = f.grid {
                    self.a_bar_grid = grid;
                }
                if let Some(bits) = &f.head_bits {
                    self.a_bar_head_bits = Some(bits.clone());
                }
            }
        }
        Ok(())
    }

    /// Checks every entry (bits, percentile, ...) and the state clamp.
    pub fn validate(&self) -> Result<()> {
        for c in Component::ALL {
            if let Some(cfg) = self.get(c) {
                cfg.validate(c.name())?;
                let (rank, _) = c.rank_and_axis();
                if let Some(a) = cfg.axis
                    && a >= rank
                {
                    return Err(QatError::InvalidConfig {
                        component: c.name().into(),
                        message: format!("axis {a} out of range for a rank-{rank} tensor"),
                    });
                }
            }
        }
        if let Some(cfg) = self.get(Component::ABar) {
            validate_abar(self.a_bar_grid, cfg, self.a_bar_head_bits.as_deref())?;
        } else if self.a_bar_head_bits.is_some() {
            return Err(QatError::InvalidConfig {
                component: "a_bar_head_bits".into(),
                message: "set without an a_bar quantizer".into(),
            });
        }
        if !(self.state_clamp.is_finite() && self.state_clamp > 0.0) {
            return Err(QatError::InvalidConfig {
                component: "state_clamp".into(),
                message: format!("must be finite and > 0, got {}", self.state_clamp),
            });
        }
        // Every override must name a block point and give a valid block spec; blocks past the
        // model's depth are caught by `check_blocks`, which needs the model.
        for (key, points) in &self.blocks {
            let block = match parse_block_key(key)? {
                BlockKey::All => 0,
                BlockKey::Index(i) => i,
            };
            for name in points.keys() {
                block_point(key, name)?;
            }
            if key == "*" {
                self.resolve(std::slice::from_ref(key), "blocks.*")?;
            } else {
                self.block_spec(block)?;
            }
        }
        Ok(())
    }

    /// Parses and validates a TOML spec.
    pub fn from_toml_str(text: &str) -> Result<Self> {
        let spec: Self = toml::from_str(text).map_err(|e| QatError::Parse {
            format: "TOML",
            message: e.to_string(),
        })?;
        spec.validate()?;
        Ok(spec)
    }

    /// Parses and validates a JSON spec.
    pub fn from_json_str(text: &str) -> Result<Self> {
        let spec: Self = serde_json::from_str(text).map_err(|e| QatError::Parse {
            format: "JSON",
            message: e.to_string(),
        })?;
        spec.validate()?;
        Ok(spec)
    }

    /// TOML text of the spec.
    pub fn to_toml_string(&self) -> Result<String> {
        toml::to_string(self).map_err(|e| QatError::Parse {
            format: "TOML",
            message: e.to_string(),
        })
    }

    /// Pretty JSON text of the spec.
    pub fn to_json_string(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|e| QatError::Parse {
            format: "JSON",
            message: e.to_string(),
        })
    }

    /// A preset name, or a path to a `.toml` / `.json` spec file: what a CLI flag accepts.
    pub fn load(arg: &str) -> Result<Self> {
        let path = Path::new(arg);
        let ext = path.extension().and_then(|e| e.to_str());
        if matches!(ext, Some("toml") | Some("json")) {
            let text = std::fs::read_to_string(path).map_err(|e| QatError::Io {
                path: arg.to_string(),
                message: e.to_string(),
            })?;
            return if ext == Some("toml") {
                Self::from_toml_str(&text)
            } else {
                Self::from_json_str(&text)
            };
        }
        Self::preset(arg)
    }
}

/// Parses `{p}{N}{q}{M}` (e.g. `w4a6` with `p = 'w'`, `q = 'a'`) into `(N, M)`.
fn parse_pair(text: &str, p: char, q: char) -> Option<(u32, u32)> {
    let rest = text.strip_prefix(p)?;
    let (n, m) = rest.split_once(q)?;
    let digits = |s: &str| !s.is_empty() && s.len() <= 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(n) || !digits(m) {
        return None;
    }
    Some((n.parse().ok()?, m.parse().ok()?))
}

/// A block key of [`QuantSpec::blocks`].
enum BlockKey {
    All,
    Index(usize),
}

fn parse_block_key(key: &str) -> Result<BlockKey> {
    if key == "*" {
        return Ok(BlockKey::All);
    }
    match key.parse::<usize>() {
        Ok(i) if i.to_string() == key => Ok(BlockKey::Index(i)),
        _ => Err(QatError::InvalidConfig {
            component: format!("blocks.{key}"),
            message: "a block is named by its index (0, 1, ...) or \"*\" for every block".into(),
        }),
    }
}

/// The block component `name` of an override under `blocks.<key>`, or an error that lists
/// every valid path.
fn block_point(key: &str, name: &str) -> Result<Component> {
    match Component::from_name(name) {
        Ok(c) if c.is_per_block() => Ok(c),
        _ => Err(QatError::InvalidConfig {
            component: format!("blocks.{key}.{name}"),
            message: format!(
                "no such point in a block; valid paths: {} (<i> a block index or \"*\")",
                QuantSpec::block_paths().join(", ")
            ),
        }),
    }
}

/// Puts an error's component under the block path it came from (`a_bar` -> `blocks.1.a_bar`).
fn in_path(path: &str, e: QatError) -> QatError {
    match e {
        QatError::InvalidConfig { component, message } if !component.starts_with("blocks.") => {
            QatError::InvalidConfig {
                component: format!("{path}.{component}"),
                message,
            }
        }
        other => other,
    }
}
