//! Import of a state-spaces-layout checkpoint: the fixture made by
//! `scripts/make-state-spaces-fixture.py`, a PyTorch model that follows the S4D example model of
//! the state-spaces repository (`example.py` + `models/s4/s4d.py`: 3 residual S4D blocks with
//! post-norm LayerNorm, `B = 1`, ZOH), checked against the outputs PyTorch computed.

use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::prelude::*;
use interop::{HostTensor, Layout, TensorFile, import_classifier, write_safetensors};
use s4d_model::{Activation, Discretization, NormKind, S4dClassifier, SsmMode};

/// Bound on |s4q - PyTorch| for the imported model's outputs. Both sides compute in f32; the
/// FFT lengths differ (PyTorch 2L = 48, s4q the next power of two, 64) and the recurrent mode
/// sums the same kernel in another order, so the outputs differ by rounding only: each block
/// output sums 4 modes over at most 24 steps, passes a LayerNorm (which divides by a standard
/// deviation of O(1) here) and the residual stream carries it through 3 blocks, with values
/// O(1) (|block0_out| <= ~3, |logits| <= ~1), so differences of ~1e-6 are expected. 1e-4 leaves
/// two orders of magnitude while any convention slip (Re/Im of C, factor 2, transposed conv,
/// GLU halves, LayerNorm scale/shift, layer order, pre- vs post-norm) moves outputs by 1e-2 or
/// more (`fixture_tells_the_conventions_apart` checks a few).
const TOL: f32 = 1e-4;

const H: usize = 6;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn model_file() -> TensorFile {
    TensorFile::open(&fixture("state_spaces_h6_l3.safetensors")).expect("fixture model")
}

fn io_tensor<const D: usize>(name: &str, device: &Device) -> Tensor<D> {
    let file = TensorFile::open(&fixture("state_spaces_h6_l3_io.safetensors")).expect("io");
    let t = file.get(name, "fixture").expect("fixture tensor");
    let shape: [usize; D] = t.shape.clone().try_into().expect("rank");
    Tensor::from_data(TensorData::new(t.data, shape), device)
}

fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32")
}

fn max_abs_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    assert_eq!(a.dims(), b.dims());
    to_vec(a)
        .iter()
        .zip(to_vec(b))
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn import(file: &TensorFile) -> S4dClassifier {
    import_classifier(file, &Layout::state_spaces(), &Device::flex())
        .expect("import")
        .model
}

/// Max |logits - PyTorch's| of `model` in `mode`.
fn logit_error(model: &S4dClassifier, mode: SsmMode) -> f32 {
    let device = Device::flex();
    let logits = model.forward(io_tensor("x", &device), mode);
    max_abs_diff(logits, io_tensor("logits", &device))
}

#[test]
fn imported_state_spaces_model_matches_pytorch_in_both_modes() {
    let device = Device::flex();
    let file = model_file();
    let layout = Layout::detect(&file).expect("layout detected");
    assert_eq!(layout.name, "state-spaces");
    let imported = import_classifier(&file, &layout, &device).expect("import");
    // Every tensor of the example model's state_dict has a place in the layout.
    assert!(imported.unused.is_empty(), "{:?}", imported.unused);

    let cfg = &imported.config;
    assert_eq!(
        (cfg.ssm.d_model, cfg.ssm.d_state, cfg.d_input, cfg.n_classes),
        (H, 8, 2, 4)
    );
    assert_eq!(cfg.n_layers, 3);
    assert!(cfg.residual, "the example adds each block's input back");
    assert_eq!(cfg.norm_kind(), Some(NormKind::Layer));
    assert!(!cfg.prenorm(), "the example's default is post-norm");
    assert!(
        !cfg.ssm.trainable_b,
        "B is fixed at 1 in the example's S4D kernel"
    );
    assert_eq!(cfg.ssm.discretization, Discretization::Zoh);
    assert_eq!(cfg.activation, Activation::Gelu);
    assert_eq!(cfg.dropout, 0.0);

    let model = imported.model;
    assert_eq!(model.blocks.len(), 3);
    for block in &model.blocks {
        assert!(block.residual && block.norm.is_some() && !block.prenorm);
    }

    let x: Tensor<3> = io_tensor("x", &device); // [B, L, d_input]
    let block0_want: Tensor<3> = io_tensor("block0_out", &device); // [B, L, H]
    for mode in [SsmMode::Convolution, SsmMode::Recurrent] {
        let block0 = model.blocks[0].forward(model.encoder.forward(x.clone()), mode);
        let block_err = max_abs_diff(block0, block0_want.clone());
        let logit_err = logit_error(&model, mode);
        println!(
            "{mode:?}: max |block0_out - torch| {block_err:.2e}, \
             max |logits - torch| {logit_err:.2e}"
        );
        assert!(block_err < TOL, "{mode:?} first block off by {block_err}");
        assert!(logit_err < TOL, "{mode:?} logits off by {logit_err}");
    }
}

/// Rewrites the fixture's tensors with `edit` and imports the result.
fn import_edited(edit: impl Fn(&mut BTreeMap<String, HostTensor>)) -> S4dClassifier {
    let file = model_file();
    let mut tensors: BTreeMap<String, HostTensor> = file
        .names()
        .map(|n| (n.to_string(), file.get(n, "test").expect("float tensor")))
        .collect();
    edit(&mut tensors);
    let tensors: Vec<(String, HostTensor)> = tensors.into_iter().collect();
    let bytes = write_safetensors(&tensors, &BTreeMap::new()).expect("serialize");
    import(&TensorFile::from_bytes(&bytes, "edited fixture").expect("parse"))
}

/// The fixture is only a test of the conventions if getting one wrong shows: each of these
/// misreadings must move the logits far beyond [`TOL`].
#[test]
fn fixture_tells_the_conventions_apart() {
    let swap = |t: &mut BTreeMap<String, HostTensor>, a: &str, b: &str| {
        let ta = t.remove(a).expect(a);
        let tb = t.remove(b).expect(b);
        t.insert(a.to_string(), tb);
        t.insert(b.to_string(), ta);
    };
    type Edit = Box<dyn Fn(&mut BTreeMap<String, HostTensor>)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "LayerNorm scale and shift swapped",
            Box::new(move |t| swap(t, "norms.1.weight", "norms.1.bias")),
        ),
        (
            "first and last block exchanged",
            Box::new(move |t| {
                let names: Vec<String> = t
                    .keys()
                    .filter(|n| n.starts_with("s4_layers.0.") || n.starts_with("norms.0."))
                    .cloned()
                    .collect();
                for n in names {
                    let other = n.replacen(".0.", ".2.", 1);
                    swap(t, &n, &other);
                }
            }),
        ),
        (
            "C conjugated (Re/Im order)",
            Box::new(|t| {
                let c = t.get_mut("s4_layers.1.kernel.C").expect("C");
                c.data.iter_mut().skip(1).step_by(2).for_each(|v| *v = -*v);
            }),
        ),
        (
            "GLU halves exchanged",
            Box::new(|t| {
                for part in ["weight", "bias"] {
                    let w = t
                        .get_mut(&format!("s4_layers.0.output_linear.0.{part}"))
                        .expect("conv");
                    let half = w.data.len() / 2;
                    let (a, b) = w.data.split_at_mut(half);
                    a.swap_with_slice(b);
                }
            }),
        ),
    ];
    let base = logit_error(&import(&model_file()), SsmMode::Convolution);
    for (what, edit) in cases {
        let err = logit_error(&import_edited(edit), SsmMode::Convolution);
        println!("{what}: max |logits - torch| {err:.2e} (correct import: {base:.2e})");
        assert!(err > 100.0 * TOL, "{what} changes the logits by only {err}");
    }

    // Pre-norm has the same tensor names as post-norm, so the layout cannot see it; reading
    // the fixture as pre-norm must not pass as a match either.
    let mut model = import(&model_file());
    for block in &mut model.blocks {
        block.prenorm = true;
    }
    let err = logit_error(&model, SsmMode::Convolution);
    println!("read as pre-norm: max |logits - torch| {err:.2e}");
    assert!(
        err > 100.0 * TOL,
        "pre-norm reading changes the logits by only {err}"
    );
}

/// A pre-norm checkpoint has the same tensor names as a post-norm one, so only the layout
/// can say: `prenorm = true` in a name map imports the blocks as pre-norm, the result differs
/// from the post-norm reading, and export refuses a layout whose norm position disagrees.
#[test]
fn name_map_prenorm_flag_imports_pre_norm_blocks() {
    let layout = Layout::from_toml_str("base = \"state-spaces\"\nprenorm = true\n", "test")
        .expect("name map");
    assert!(layout.prenorm);
    let device = Device::flex();
    let pre = import_classifier(&model_file(), &layout, &device).expect("import");
    assert!(pre.config.prenorm());
    assert!(pre.model.blocks.iter().all(|b| b.prenorm));
    let post = import(&model_file());
    let x: Tensor<3> = io_tensor("x", &device);
    let diff = max_abs_diff(
        pre.model.forward(x.clone(), SsmMode::Convolution),
        post.forward(x, SsmMode::Convolution),
    );
    assert!(
        diff > 100.0 * TOL,
        "pre- and post-norm readings agree ({diff})"
    );
    let err = interop::export_classifier(&pre.model, &pre.config, &Layout::state_spaces())
        .expect_err("norm position mismatch");
    assert!(err.to_string().contains("norm position"), "{err}");
    assert!(interop::export_classifier(&pre.model, &pre.config, &layout).is_ok());
    // prenorm without norm tensors is an error, not a silent no-op.
    let no_norm =
        Layout::from_toml_str("base = \"peer\"\nprenorm = true\n", "test").expect("name map");
    let err = import_classifier(&model_file(), &no_norm, &device).expect_err("no norm");
    assert!(err.to_string().contains("prenorm"), "{err}");
}
