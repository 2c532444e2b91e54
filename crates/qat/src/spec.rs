//! Which parts of the S4D classifier are quantized, and how: [`QuantSpec`].
//!
//! Every component has an optional [`QuantizerConfig`] (`None` = stays float). Specs come from
//! presets (`fp32`, `wWaA`, `wWaA-aPxS`), from TOML/JSON files, or from
//! [`QuantSpec::only`] for per-component sensitivity sweeps.

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
    /// Decoder weight `[H, n_classes]`.
    DecoderWeight,
    /// Decoder bias `[n_classes]`.
    DecoderBias,
    /// Logits `[B, n_classes]`.
    Logits,
}

impl Component {
    /// Every component, in forward order.
    pub const ALL: [Component; 16] = [
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
        Component::DecoderWeight,
        Component::DecoderBias,
        Component::Logits,
    ];

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
                | Component::Logits
        )
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
            | Component::GluOutput => (3, 2),
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
    /// See [`Component::DecoderWeight`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoder_weight: Option<QuantizerConfig>,
    /// See [`Component::DecoderBias`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoder_bias: Option<QuantizerConfig>,
    /// See [`Component::Logits`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logits: Option<QuantizerConfig>,
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
            decoder_weight: None,
            decoder_bias: None,
            logits: None,
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
