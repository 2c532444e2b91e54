//! Layouts: which tensor name holds which s4q parameter, plus the architecture flags that names
//! alone do not reveal (residual connection, discretization rule).
//!
//! The value layout of every role is fixed (PyTorch conventions: `Linear.weight` is
//! `[out, in]`, `Conv1d.weight` is `[out, in, 1]`, complex `B`/`C` are real views
//! `[H, N/2, 2]`); a layout only chooses the names. Names may contain `{layer}`, replaced by the
//! block index `0, 1, ...`; a layout without it describes a one-block model.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use s4d_model::Discretization;
use serde::Deserialize;

use crate::error::InteropError;
use crate::tensors::TensorFile;

/// One s4q parameter slot a layout names. The TOML key of each is given by [`Role::key`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Encoder `Linear(d_input -> H)` weight, `[H, d_input]`.
    EncoderWeight,
    /// Encoder bias, `[H]`.
    EncoderBias,
    /// `log dt`, `[H]`.
    LogDt,
    /// `log(-Re A)`, `[H, N/2]`.
    LogAReal,
    /// `Im A`, `[H, N/2]`.
    AImag,
    /// `B` as a real view, `[H, N/2, 2]`; optional (absent: `B = 1`, frozen).
    B,
    /// `C` as a real view, `[H, N/2, 2]`.
    C,
    /// Skip term `D`, `[H]`.
    D,
    /// `Conv1d(H -> 2H, k = 1)` weight before the GLU, `[2H, H, 1]` (or `[2H, H]`).
    ConvWeight,
    /// Its bias, `[2H]`.
    ConvBias,
    /// Post-block LayerNorm scale, `[H]`; optional.
    NormWeight,
    /// Post-block LayerNorm shift, `[H]`; optional, present with the scale.
    NormBias,
    /// Decoder `Linear(H -> n_classes)` weight, `[n_classes, H]`.
    DecoderWeight,
    /// Decoder bias, `[n_classes]`.
    DecoderBias,
}

impl Role {
    /// Every role, in the order a model is read.
    pub const ALL: [Role; 14] = [
        Role::EncoderWeight,
        Role::EncoderBias,
        Role::LogDt,
        Role::LogAReal,
        Role::AImag,
        Role::B,
        Role::C,
        Role::D,
        Role::ConvWeight,
        Role::ConvBias,
        Role::NormWeight,
        Role::NormBias,
        Role::DecoderWeight,
        Role::DecoderBias,
    ];

    /// The key of this role in a TOML name map (PyTorch-style spelling).
    pub fn key(self) -> &'static str {
        match self {
            Role::EncoderWeight => "encoder.weight",
            Role::EncoderBias => "encoder.bias",
            Role::LogDt => "log_dt",
            Role::LogAReal => "log_A_real",
            Role::AImag => "A_imag",
            Role::B => "B",
            Role::C => "C",
            Role::D => "D",
            Role::ConvWeight => "conv.weight",
            Role::ConvBias => "conv.bias",
            Role::NormWeight => "norm.weight",
            Role::NormBias => "norm.bias",
            Role::DecoderWeight => "decoder.weight",
            Role::DecoderBias => "decoder.bias",
        }
    }

    /// Whether a layout may leave this role out.
    pub fn optional(self) -> bool {
        matches!(self, Role::B | Role::NormWeight | Role::NormBias)
    }

    /// Whether the name is per block (may carry `{layer}`).
    pub fn per_layer(self) -> bool {
        !matches!(
            self,
            Role::EncoderWeight | Role::EncoderBias | Role::DecoderWeight | Role::DecoderBias
        )
    }

    fn from_key(key: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.key() == key)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// A mapping from s4q parameters to tensor names, with the flags names cannot express.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// Shown in messages and written into exported metadata.
    pub name: String,
    names: BTreeMap<Role, String>,
    /// Whether each block adds its input to its output (state-spaces example model: yes).
    pub residual: bool,
    /// Whether the norm sits on the block's input (`x + f(norm(x))`, the state-spaces
    /// example's `--prenorm`) instead of after the residual sum (its default). The tensor
    /// names are the same either way, so only the layout can say.
    pub prenorm: bool,
    /// The discretization the source model used.
    pub discretization: Discretization,
}

/// Placeholder for the block index in per-layer names.
pub const LAYER: &str = "{layer}";

impl Layout {
    /// Names of the built-in layouts, in detection order.
    pub const BUILTIN: [&'static str; 2] = ["peer", "state-spaces"];

    /// The PyTorch peer reference (`shared/bench/peer_torch/s4d_ref.py`, `S4DModel`): one block,
    /// trainable complex `B`, no norm, no residual, ZOH.
    pub fn peer() -> Self {
        let names = [
            (Role::EncoderWeight, "encoder.weight"),
            (Role::EncoderBias, "encoder.bias"),
            (Role::LogDt, "s4d.log_dt"),
            (Role::LogAReal, "s4d.log_A_real"),
            (Role::AImag, "s4d.A_imag"),
            (Role::B, "s4d.B"),
            (Role::C, "s4d.C"),
            (Role::D, "s4d.D"),
            (Role::ConvWeight, "conv.weight"),
            (Role::ConvBias, "conv.bias"),
            (Role::DecoderWeight, "decoder.weight"),
            (Role::DecoderBias, "decoder.bias"),
        ];
        Self::from_pairs("peer", &names, false)
    }

    /// The S4D example model of the state-spaces repository (`example.py` with the standalone
    /// `S4D` layer of `models/s4/s4d.py`, post-norm): `s4_layers.{layer}.kernel.{log_dt,
    /// log_A_real, A_imag, C}`, `s4_layers.{layer}.D`, `s4_layers.{layer}.output_linear.0`
    /// (Conv1d + GLU), `norms.{layer}` (LayerNorm), residual around each block; `B` is fixed
    /// at 1 there (folded into `C`), so it has no tensor.
    pub fn state_spaces() -> Self {
        let names = [
            (Role::EncoderWeight, "encoder.weight"),
            (Role::EncoderBias, "encoder.bias"),
            (Role::LogDt, "s4_layers.{layer}.kernel.log_dt"),
            (Role::LogAReal, "s4_layers.{layer}.kernel.log_A_real"),
            (Role::AImag, "s4_layers.{layer}.kernel.A_imag"),
            (Role::C, "s4_layers.{layer}.kernel.C"),
            (Role::D, "s4_layers.{layer}.D"),
            (Role::ConvWeight, "s4_layers.{layer}.output_linear.0.weight"),
            (Role::ConvBias, "s4_layers.{layer}.output_linear.0.bias"),
            (Role::NormWeight, "norms.{layer}.weight"),
            (Role::NormBias, "norms.{layer}.bias"),
            (Role::DecoderWeight, "decoder.weight"),
            (Role::DecoderBias, "decoder.bias"),
        ];
        Self::from_pairs("state-spaces", &names, true)
    }

    fn from_pairs(name: &str, pairs: &[(Role, &str)], residual: bool) -> Self {
        Self {
            name: name.to_string(),
            names: pairs.iter().map(|(r, n)| (*r, n.to_string())).collect(),
            residual,
            prenorm: false,
            discretization: Discretization::Zoh,
        }
    }

    /// A built-in layout by name (see [`Layout::BUILTIN`]).
    pub fn builtin(name: &str) -> Result<Self, InteropError> {
        match name {
            "peer" => Ok(Self::peer()),
            "state-spaces" => Ok(Self::state_spaces()),
            other => Err(InteropError::NameMap {
                origin: other.to_string(),
                detail: format!(
                    "unknown layout; built-in layouts are {}",
                    Self::BUILTIN.join(", ")
                ),
            }),
        }
    }

    /// The first built-in layout whose encoder and first-block `log_dt` names exist in `file`.
    pub fn detect(file: &TensorFile) -> Result<Self, InteropError> {
        Self::BUILTIN
            .iter()
            .filter_map(|name| Self::builtin(name).ok())
            .find(|layout| {
                [Role::EncoderWeight, Role::LogDt]
                    .iter()
                    .all(|role| layout.name_for(*role, 0).is_some_and(|n| file.contains(&n)))
            })
            .ok_or_else(|| InteropError::UnknownLayout {
                origin: file.origin().to_string(),
                tried: Self::BUILTIN.join(", "),
                available: file.summary(),
            })
    }

    /// Reads a TOML name map (format in the crate docs); `origin` names it in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, InteropError> {
        let err = |detail: String| InteropError::NameMap {
            origin: origin.to_string(),
            detail,
        };
        let file: NameMapFile = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        let mut layout = match &file.base {
            Some(base) => Self::builtin(base).map_err(|_| {
                err(format!(
                    "unknown base `{base}`; built-in layouts are {}",
                    Self::BUILTIN.join(", ")
                ))
            })?,
            None => Self {
                name: String::new(),
                names: BTreeMap::new(),
                residual: false,
                prenorm: false,
                discretization: Discretization::Zoh,
            },
        };
        layout.name = file.name.unwrap_or_else(|| origin.to_string());
        if let Some(residual) = file.residual {
            layout.residual = residual;
        }
        if let Some(prenorm) = file.prenorm {
            layout.prenorm = prenorm;
        }
        if let Some(rule) = file.discretization {
            layout.discretization = rule;
        }
        for (key, value) in file.names {
            let role = Role::from_key(&key).ok_or_else(|| {
                let keys: Vec<&str> = Role::ALL.iter().map(|r| r.key()).collect();
                err(format!(
                    "unknown key `{key}` in [names]; valid keys: {}",
                    keys.join(", ")
                ))
            })?;
            if value.is_empty() {
                if !role.optional() {
                    return Err(err(format!("`{key}` is required and cannot be empty")));
                }
                layout.names.remove(&role);
            } else {
                if !role.per_layer() && value.contains(LAYER) {
                    return Err(err(format!("`{key}` is not per layer; drop {LAYER}")));
                }
                layout.names.insert(role, value);
            }
        }
        layout.check().map_err(err)?;
        Ok(layout)
    }

    /// Reads a TOML name map from a file.
    pub fn from_toml_file(path: &Path) -> Result<Self, InteropError> {
        let text = std::fs::read_to_string(path).map_err(|source| InteropError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    /// Every required role named; norm scale and shift together; `{layer}` everywhere or
    /// nowhere among per-layer names (a mix would read block 0's tensor for every block).
    fn check(&self) -> Result<(), String> {
        let missing: Vec<&str> = Role::ALL
            .iter()
            .filter(|r| !r.optional() && !self.names.contains_key(r))
            .map(|r| r.key())
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "no tensor name for {} (set `base` or give them in [names])",
                missing.join(", ")
            ));
        }
        if self.has(Role::NormWeight) != self.has(Role::NormBias) {
            return Err("norm.weight and norm.bias must be given together".into());
        }
        let templated: Vec<bool> = self
            .names
            .iter()
            .filter(|(r, _)| r.per_layer())
            .map(|(_, n)| n.contains(LAYER))
            .collect();
        if templated.iter().any(|t| *t) && !templated.iter().all(|t| *t) {
            return Err(format!(
                "either every per-layer name contains {LAYER} or none does"
            ));
        }
        Ok(())
    }

    /// Whether the layout names this role.
    pub fn has(&self, role: Role) -> bool {
        self.names.contains_key(&role)
    }

    /// Whether per-layer names carry `{layer}` (so the layout can hold several blocks).
    pub fn multi_layer(&self) -> bool {
        self.names.values().any(|n| n.contains(LAYER))
    }

    /// The tensor name of `role` in block `layer`, if the layout has the role.
    pub fn name_for(&self, role: Role, layer: usize) -> Option<String> {
        self.names
            .get(&role)
            .map(|n| n.replace(LAYER, &layer.to_string()))
    }
}

/// The TOML form of a name map.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NameMapFile {
    /// Built-in layout to start from.
    base: Option<String>,
    /// Shown in messages (default: the file path).
    name: Option<String>,
    residual: Option<bool>,
    /// The norm on each block's input (pre-norm) rather than after the residual sum.
    prenorm: Option<bool>,
    discretization: Option<Discretization>,
    /// Role key -> tensor name; an empty name removes an optional role.
    #[serde(default)]
    names: BTreeMap<String, String>,
}
