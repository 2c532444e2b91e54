//! Interop with PyTorch: the fixture made by `scripts/make-interop-fixture.py` with the peer
//! reference (`shared/bench/peer_torch/s4d_ref.py`), round trips, and malformed inputs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::prelude::*;
use interop::{
    HostTensor, InteropError, Layout, TensorFile, export_classifier, export_safetensors,
    import_classifier, write_safetensors,
};
use s4d_model::{Activation, S4dClassifier, S4dClassifierConfig, S4dConfig, SsmMode};

/// The issue's bound for imported outputs against PyTorch's. Both sides compute in f32 with
/// the same FFT length (64 for L = 32), the outputs are O(1) (|ssm_out| <= 3.3, |logits| <= 0.6)
/// and each output sums 8 modes over at most 32 steps, so rounding differences are expected
/// around 1e-6; 1e-4 leaves two orders of magnitude while any convention slip (factor 2, Re/Im
/// swap, transposed weight, GLU halves, tanh GELU) moves outputs by 1e-3 or more.
const TOL: f32 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn model_file() -> TensorFile {
    TensorFile::open(&fixture("peer_h4_n16.safetensors")).expect("fixture model")
}

fn io_tensor<const D: usize>(name: &str, device: &Device) -> Tensor<D> {
    let file = TensorFile::open(&fixture("peer_h4_n16_io.safetensors")).expect("fixture io");
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

/// Every tensor of a file, as `(name, f32 tensor)` pairs.
fn all_tensors(file: &TensorFile) -> Vec<(String, HostTensor)> {
    file.names()
        .map(|n| (n.to_string(), file.get(n, "test").expect("float tensor")))
        .collect()
}

fn rebuild(tensors: &[(String, HostTensor)]) -> TensorFile {
    let bytes = write_safetensors(tensors, &BTreeMap::new()).expect("serialize");
    TensorFile::from_bytes(&bytes, "test file").expect("parse")
}

fn import_peer(file: &TensorFile) -> Result<interop::Imported, InteropError> {
    import_classifier(file, &Layout::peer(), &Device::flex())
}

#[test]
fn imported_reference_model_matches_pytorch_in_both_modes() {
    let device = Device::flex();
    let file = model_file();
    let layout = Layout::detect(&file).expect("layout detected");
    assert_eq!(layout.name, "peer");
    let imported = import_classifier(&file, &layout, &device).expect("import");
    assert!(imported.unused.is_empty(), "{:?}", imported.unused);
    let cfg = &imported.config;
    assert_eq!(
        (cfg.ssm.d_model, cfg.ssm.d_state, cfg.d_input, cfg.n_classes),
        (4, 16, 1, 10)
    );
    assert!(cfg.ssm.trainable_b && !cfg.residual && !cfg.layer_norm && cfg.n_layers == 1);

    let model = imported.model;
    let x: Tensor<3> = io_tensor("x", &device); // [B, L, 1]
    for (mode, tag) in [(SsmMode::Convolution, "conv"), (SsmMode::Recurrent, "rec")] {
        let u = model.encoder.forward(x.clone());
        let ssm = model.blocks[0].s4d.forward(u, mode).swap_dims(1, 2); // [B, H, L]
        let ssm_err = max_abs_diff(ssm, io_tensor(&format!("ssm_out_{tag}"), &device));
        let logits = model.forward(x.clone(), mode);
        let logit_err = max_abs_diff(logits, io_tensor(&format!("logits_{tag}"), &device));
        println!(
            "{mode:?}: max |ssm_out - torch| {ssm_err:.2e}, max |logits - torch| {logit_err:.2e}"
        );
        assert!(ssm_err < TOL, "{mode:?} SSM output off by {ssm_err}");
        assert!(logit_err < TOL, "{mode:?} logits off by {logit_err}");
    }
}

#[test]
fn export_of_imported_reference_reproduces_the_file_bit_for_bit() {
    let file = model_file();
    let imported = import_peer(&file).expect("import");
    let exported =
        export_classifier(&imported.model, &imported.config, &Layout::peer()).expect("export");
    let mut exported: BTreeMap<_, _> = exported.into_iter().collect();
    let original: BTreeMap<_, _> = all_tensors(&file).into_iter().collect();
    assert_eq!(
        original.keys().collect::<Vec<_>>(),
        exported.keys().collect::<Vec<_>>()
    );
    for (name, t) in &original {
        let e = exported.remove(name).expect("exported");
        assert_eq!(t.shape, e.shape, "{name}");
        let same_bits = t
            .data
            .iter()
            .zip(&e.data)
            .all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same_bits, "{name} changed in the round trip");
    }
}

/// Exports `model` with `layout`, imports the bytes with detection, and checks that the
/// configuration and every exported parameter come back bit-identical.
fn assert_round_trip(model: &S4dClassifier, cfg: &S4dClassifierConfig, layout: &Layout) {
    let bytes = export_safetensors(model, cfg, layout).expect("export");
    let file = TensorFile::from_bytes(&bytes, "export").expect("parse export");
    assert_eq!(
        file.metadata().get("layout").map(String::as_str),
        Some(layout.name.as_str())
    );
    let detected = Layout::detect(&file).expect("detect");
    assert_eq!(detected.name, layout.name);
    let back = import_classifier(&file, &detected, &Device::flex()).expect("import");
    assert_eq!(&back.config.ssm.d_model, &cfg.ssm.d_model);
    let strip = |c: &S4dClassifierConfig| {
        // dt_min/dt_max/init only shape a fresh initialisation; PyTorch files do not carry them.
        let mut c = c.clone();
        c.ssm.dt_min = 0.0;
        c.ssm.dt_max = 0.0;
        c.ssm.init = Default::default();
        c
    };
    assert_eq!(strip(&back.config), strip(cfg));
    let before = export_classifier(model, cfg, layout).expect("export original");
    let after = export_classifier(&back.model, &back.config, layout).expect("export imported");
    assert_eq!(before.len(), after.len());
    for ((n1, t1), (n2, t2)) in before.iter().zip(&after) {
        assert_eq!(n1, n2);
        assert_eq!(t1.shape, t2.shape, "{n1}");
        let same = t1
            .data
            .iter()
            .zip(&t2.data)
            .all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same, "{n1} differs after export -> import");
    }
    // B is compared directly too: the state-spaces layout does not write it.
    for (a, b) in model.blocks.iter().zip(&back.model.blocks) {
        assert_eq!(to_vec(a.s4d.b_re.val()), to_vec(b.s4d.b_re.val()));
        assert_eq!(to_vec(a.s4d.b_im.val()), to_vec(b.s4d.b_im.val()));
    }
}

#[test]
fn round_trip_of_a_fresh_s4q_model_through_the_peer_layout() {
    let device = Device::flex();
    let cfg = S4dClassifierConfig::new(S4dConfig::new(6).with_d_state(10))
        .with_d_input(3)
        .with_n_classes(5);
    let mut model = cfg.init(&device);
    // Give B a non-trivial value so its real/imaginary order is exercised.
    let s4d = &mut model.blocks[0].s4d;
    s4d.b_im = burn::module::Param::from_tensor(s4d.c_re.val().mul_scalar(0.3));
    assert_round_trip(&model, &cfg, &Layout::peer());
}

#[test]
fn round_trip_of_a_deep_normed_model_through_the_state_spaces_layout() {
    let cfg = S4dClassifierConfig::new(S4dConfig::new(5).with_d_state(8).with_trainable_b(false))
        .with_n_layers(2)
        .with_layer_norm(true)
        .with_residual(true)
        .with_n_classes(3);
    let model = cfg.init(&Device::flex());
    assert_round_trip(&model, &cfg, &Layout::state_spaces());
}

#[test]
fn export_refuses_what_the_layout_cannot_hold() {
    let device = Device::flex();
    let qgelu = S4dClassifierConfig::new(S4dConfig::new(4)).with_activation(Activation::Qgelu);
    let err = export_classifier(&qgelu.init(&device), &qgelu, &Layout::peer()).unwrap_err();
    assert!(err.to_string().contains("GELU"), "{err}");

    // Trainable B != 1 has no place in the state-spaces layout.
    let cfg = S4dClassifierConfig::new(S4dConfig::new(4))
        .with_layer_norm(true)
        .with_residual(true);
    let mut model = cfg.init(&device);
    let s4d = &mut model.blocks[0].s4d;
    s4d.b_re = burn::module::Param::from_tensor(s4d.b_re.val().mul_scalar(2.0));
    let err = export_classifier(&model, &cfg, &Layout::state_spaces()).unwrap_err();
    assert!(err.to_string().contains("no B tensor"), "{err}");

    let deep = S4dClassifierConfig::new(S4dConfig::new(4)).with_n_layers(2);
    let err = export_classifier(&deep.init(&device), &deep, &Layout::peer()).unwrap_err();
    assert!(err.to_string().contains("2 blocks"), "{err}");
}

#[test]
fn wider_float_dtypes_import_to_the_same_model() {
    // F64 holds every f32 exactly, so an F64 copy of the fixture must import bit-identically.
    let file = model_file();
    let entries: Vec<(String, Vec<usize>, Vec<u8>)> = all_tensors(&file)
        .into_iter()
        .map(|(n, t)| {
            let bytes = t
                .data
                .iter()
                .flat_map(|v| f64::from(*v).to_le_bytes())
                .collect();
            (n, t.shape, bytes)
        })
        .collect();
    let views: Vec<_> = entries
        .iter()
        .map(|(n, s, b)| {
            let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F64, s.clone(), b)
                .expect("view");
            (n.as_str(), view)
        })
        .collect();
    let bytes = safetensors::serialize(views, None).expect("serialize");
    let wide = TensorFile::from_bytes(&bytes, "f64 copy").expect("parse");
    let a = import_peer(&file).expect("f32 import");
    let b = import_peer(&wide).expect("f64 import");
    let ea = export_classifier(&a.model, &a.config, &Layout::peer()).expect("export");
    let eb = export_classifier(&b.model, &b.config, &Layout::peer()).expect("export");
    assert_eq!(ea, eb);
}

#[test]
fn name_map_reads_renamed_tensors() {
    let mut renamed: Vec<_> = all_tensors(&model_file())
        .into_iter()
        .map(|(n, t)| (n.replace("s4d.", "mixer.ssm."), t))
        .collect();
    renamed.push(("mixer.extra".into(), HostTensor::new(vec![1], vec![0.0])));
    let file = rebuild(&renamed);
    let toml = r#"
        base = "peer"
        name = "renamed"
        [names]
        log_dt = "mixer.ssm.log_dt"
        log_A_real = "mixer.ssm.log_A_real"
        A_imag = "mixer.ssm.A_imag"
        B = "mixer.ssm.B"
        C = "mixer.ssm.C"
        D = "mixer.ssm.D"
    "#;
    let layout = Layout::from_toml_str(toml, "map.toml").expect("name map");
    let via_map = import_classifier(&file, &layout, &Device::flex()).expect("import via map");
    assert_eq!(via_map.unused, vec!["mixer.extra".to_string()]);
    let direct = import_peer(&model_file()).expect("direct import");
    let peer = Layout::peer();
    assert_eq!(
        export_classifier(&via_map.model, &via_map.config, &peer).expect("export"),
        export_classifier(&direct.model, &direct.config, &peer).expect("export")
    );
    // Without the map, detection fails and says what the file holds.
    let err = Layout::detect(&file).unwrap_err();
    assert!(matches!(err, InteropError::UnknownLayout { .. }));
    assert!(err.to_string().contains("mixer.ssm.log_dt"), "{err}");
}

#[test]
fn bad_name_maps_are_rejected_with_the_key() {
    let err =
        Layout::from_toml_str("base = \"peer\"\n[names]\nlog_DT = \"x\"\n", "m.toml").unwrap_err();
    assert!(err.to_string().contains("log_DT"), "{err}");
    let err = Layout::from_toml_str("[names]\nlog_dt = \"x\"\n", "m.toml").unwrap_err();
    assert!(err.to_string().contains("encoder.weight"), "{err}");
    let err = Layout::from_toml_str("base = \"keras\"\n", "m.toml").unwrap_err();
    assert!(err.to_string().contains("keras"), "{err}");
}

#[test]
fn truncated_file_is_a_container_error() {
    let bytes = std::fs::read(fixture("peer_h4_n16.safetensors")).expect("fixture");
    for cut in [bytes.len() - 7, bytes.len() / 2, 5] {
        let err = TensorFile::from_bytes(&bytes[..cut], "model.safetensors").unwrap_err();
        assert!(matches!(err, InteropError::Container { .. }), "{err}");
        assert!(err.to_string().contains("model.safetensors"), "{err}");
    }
    let err = TensorFile::open(&fixture("does-not-exist.safetensors")).unwrap_err();
    assert!(matches!(err, InteropError::Io { .. }), "{err}");
}

#[test]
fn wrong_shape_is_reported_by_tensor_name() {
    let tensors: Vec<_> = all_tensors(&model_file())
        .into_iter()
        .map(|(n, mut t)| {
            if n == "s4d.C" {
                t.shape = vec![4, 16]; // complex view flattened: same data, wrong layout
            }
            (n, t)
        })
        .collect();
    let err = import_peer(&rebuild(&tensors)).unwrap_err();
    match &err {
        InteropError::WrongShape {
            name,
            expected,
            found,
        } => {
            assert_eq!(name, "s4d.C");
            assert!(expected.starts_with("[4, 8, 2]"), "{expected}");
            assert_eq!(found, &vec![4, 16]);
        }
        other => panic!("expected WrongShape, got {other}"),
    }

    // A head count that disagrees with log_dt is caught on the first tensor that shows it.
    let tensors: Vec<_> = all_tensors(&model_file())
        .into_iter()
        .map(|(n, mut t)| {
            if n == "conv.weight" {
                t.shape = vec![4, 8, 1];
            }
            (n, t)
        })
        .collect();
    let err = import_peer(&rebuild(&tensors)).unwrap_err();
    assert!(err.to_string().contains("`conv.weight`"), "{err}");
}

#[test]
fn missing_tensor_is_reported_by_name_and_role() {
    let tensors: Vec<_> = all_tensors(&model_file())
        .into_iter()
        .filter(|(n, _)| n != "s4d.D")
        .collect();
    let err = import_peer(&rebuild(&tensors)).unwrap_err();
    match &err {
        InteropError::MissingTensor { name, role, .. } => {
            assert_eq!((name.as_str(), role.as_str()), ("s4d.D", "D"));
        }
        other => panic!("expected MissingTensor, got {other}"),
    }
    assert!(
        err.to_string().contains("s4d.log_dt"),
        "lists the file: {err}"
    );
}

#[test]
fn nan_and_inf_are_reported_by_name_and_index() {
    for (bad, value) in [("s4d.log_dt", f32::NAN), ("decoder.weight", f32::INFINITY)] {
        let tensors: Vec<_> = all_tensors(&model_file())
            .into_iter()
            .map(|(n, mut t)| {
                if n == bad {
                    t.data[2] = value;
                }
                (n, t)
            })
            .collect();
        let err = import_peer(&rebuild(&tensors)).unwrap_err();
        match &err {
            InteropError::NonFinite {
                name, index, count, ..
            } => {
                assert_eq!((name.as_str(), *index, *count), (bad, 2, 1));
            }
            other => panic!("expected NonFinite, got {other}"),
        }
    }
}

#[test]
fn integer_dtype_is_reported_by_name() {
    let file = model_file();
    let mut entries: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = all_tensors(&file)
        .into_iter()
        .map(|(n, t)| {
            let bytes = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
            (n, safetensors::Dtype::F32, t.shape, bytes)
        })
        .collect();
    for entry in entries.iter_mut().filter(|e| e.0 == "s4d.D") {
        entry.1 = safetensors::Dtype::I64;
        entry.3 = (0..4i64).flat_map(|v| v.to_le_bytes()).collect();
    }
    let views: Vec<_> = entries
        .iter()
        .map(|(n, d, s, b)| {
            let view = safetensors::tensor::TensorView::new(*d, s.clone(), b).expect("view");
            (n.as_str(), view)
        })
        .collect();
    let bytes = safetensors::serialize(views, None).expect("serialize");
    let err = import_peer(&TensorFile::from_bytes(&bytes, "ints").expect("parse")).unwrap_err();
    match &err {
        InteropError::NotFloat { name, dtype } => {
            assert_eq!((name.as_str(), dtype.as_str()), ("s4d.D", "I64"));
        }
        other => panic!("expected NotFloat, got {other}"),
    }
}
