//! Polar and log-polar `Abar` grids: every representable value inside the unit circle (also
//! from unstable inputs and any learned step), STE/LSQ gradients, specs, the quantized model
//! (gradients, LSQ on the state through the fused scan, exact reload), per-head bit widths.

mod common;

use common::{host, uniform_unit};

use burn::module::Param;
use burn::prelude::*;
use qat::polar::{AbarGrid, calibrate_abar, fake_quant_abar, polar_params, representable};
use qat::{
    Component, MemoryReport, ModelDims, Parameterization, QuantSpec, QuantizedClassifier,
    Quantizer, QuantizerConfig, RangeMethod, calibrate,
};
use s4d_model::{Activation, ComplexTensor, S4dClassifierConfig, S4dConfig};

/// Largest modulus of a complex tensor, in f64 from the stored f32 parts (what a scan uses).
fn max_modulus(z: &ComplexTensor<2>) -> f64 {
    host(z.re.clone())
        .iter()
        .zip(host(z.im.clone()))
        .map(|(a, b)| (f64::from(*a).powi(2) + f64::from(b).powi(2)).sqrt())
        .fold(0.0, f64::max)
}

/// `H x M` values `r e^{i theta}` with magnitudes from `mags` (cycled) and pseudo-random phases.
fn abar(device: &Device, h: usize, m: usize, mags: &[f32], seed: u64) -> ComplexTensor<2> {
    let phases = uniform_unit(h * m, seed);
    let (re, im): (Vec<f32>, Vec<f32>) = (0..h * m)
        .map(|i| {
            let r = mags[i % mags.len()];
            let t = (phases[i] * 2.0 - 1.0) * std::f32::consts::PI;
            (r * t.cos(), r * t.sin())
        })
        .unzip();
    ComplexTensor::new(
        Tensor::<1>::from_floats(re.as_slice(), device).reshape([h, m]),
        Tensor::<1>::from_floats(im.as_slice(), device).reshape([h, m]),
    )
}

/// Magnitudes that stress the bound: exactly 1, above 1 (an unstable trained Abar), 1 - 1e-9
/// (1.0 in f32), the S4D slow modes (1 - 5e-4) and fast ones.
const HARD_MAGS: [f32; 7] = [1.0, 1.25, 1.0 - 1e-9, 0.9995, 0.999_999, 0.6, 0.05];

#[test]
fn every_representable_abar_is_inside_the_unit_circle() {
    let d = Device::flex();
    for grid in [AbarGrid::Polar, AbarGrid::LogPolar] {
        for bits in [2, 4, 6, 8] {
            for per_channel in [true, false] {
                for range in [RangeMethod::MinMax, RangeMethod::Percentile] {
                    let cfg = QuantizerConfig::new(bits)
                        .with_per_channel(per_channel)
                        .with_range(range);
                    let z = abar(&d, 3, 16, &HARD_MAGS, u64::from(bits));
                    let mut q = Quantizer::new(cfg, 0, 2, "a_bar").unwrap();
                    calibrate_abar(&mut q, grid, None, &z).unwrap();
                    let channels = if per_channel { 3 } else { 1 };
                    for c in 0..channels {
                        let all = representable(&q, grid, None, c, &d).unwrap();
                        let n = 1usize << bits;
                        assert_eq!(all.dims(), [1, n * n]);
                        let worst = max_modulus(&all);
                        assert!(
                            worst < 1.0,
                            "{grid:?} {bits} bits ch {c}: |Abar| up to {worst}"
                        );
                    }
                    let out = fake_quant_abar(&q, grid, None, z);
                    assert!(max_modulus(&out) < 1.0, "{grid:?} {bits}: forward");
                }
            }
        }
    }
}

#[test]
fn no_learned_step_can_leave_the_unit_circle() {
    // LSQ may drive a step anywhere (even negative); the decoder still cannot produce |Abar| >= 1.
    let d = Device::flex();
    for grid in [AbarGrid::Polar, AbarGrid::LogPolar] {
        let cfg = QuantizerConfig::new(4).with_learned_scale(true);
        let z = abar(&d, 2, 8, &HARD_MAGS, 3);
        let mut q = Quantizer::new(cfg, 0, 2, "a_bar").unwrap();
        calibrate_abar(&mut q, grid, None, &z).unwrap();
        for step in [-5.0f32, 0.0, 1e-12, 0.3, 1e3] {
            q.lsq_scale = Some(Param::from_tensor(Tensor::<1>::from_floats(
                [step; 4].as_slice(),
                &d,
            )));
            for c in 0..2 {
                let worst = max_modulus(&representable(&q, grid, None, c, &d).unwrap());
                assert!(worst < 1.0, "{grid:?} step {step}: {worst}");
            }
            let out = fake_quant_abar(&q, grid, None, z.clone());
            assert!(max_modulus(&out) < 1.0);
        }
    }
}

#[test]
fn cartesian_grid_has_points_outside_the_unit_circle() {
    // The weak spot the polar grids fix: the paper's grid, calibrated on a head of slow modes
    // (|Abar| = 0.9995, phases all around), decodes some values to |Abar| > 1 at 6 bits.
    let d = Device::flex();
    let z = abar(&d, 1, 64, &[0.9995], 11);
    let mut q = Quantizer::new(QuantizerConfig::new(6), 0, 2, "a_bar").unwrap();
    calibrate_abar(&mut q, AbarGrid::Cartesian, None, &z).unwrap();
    let out = fake_quant_abar(&q, AbarGrid::Cartesian, None, z.clone());
    assert!(max_modulus(&out) > 1.0, "{}", max_modulus(&out));
    for grid in [AbarGrid::Polar, AbarGrid::LogPolar] {
        let mut q = Quantizer::new(QuantizerConfig::new(6), 0, 2, "a_bar").unwrap();
        calibrate_abar(&mut q, grid, None, &z).unwrap();
        let out = fake_quant_abar(&q, grid, None, z.clone());
        // One magnitude per head: the magnitude grid is exact up to f32 rounding.
        let m = max_modulus(&out);
        assert!((m - 0.9995).abs() < 2e-6 && m < 1.0, "{grid:?}: {m}");
    }
}

#[test]
fn polar_quantization_lands_on_its_grid_and_is_idempotent() {
    let d = Device::flex();
    let mags: Vec<f32> = uniform_unit(40, 5).iter().map(|v| 0.5 + 0.49 * v).collect();
    for grid in [AbarGrid::Polar, AbarGrid::LogPolar] {
        let bits = 5;
        let z = abar(&d, 2, 20, &mags, 7);
        let mut q = Quantizer::new(
            QuantizerConfig::new(bits).with_range(RangeMethod::MinMax),
            0,
            2,
            "a_bar",
        )
        .unwrap();
        calibrate_abar(&mut q, grid, None, &z).unwrap();
        let once = fake_quant_abar(&q, grid, None, z.clone());
        let twice = fake_quant_abar(&q, grid, None, once.clone());
        for (a, b) in host(once.re.clone()).iter().zip(host(twice.re.clone())) {
            assert!((a - b).abs() < 2e-6, "{grid:?}: {a} vs {b}");
        }
        // Host parameters agree with the stored state; the error is at most half a step in
        // the magnitude coordinate and in the phase (min-max range: nothing is clipped).
        let (re, im) = (host(z.re.clone()), host(z.im.clone()));
        let (s, o) = polar_params(grid, q.config(), None, &re, &im, &[2, 20], Some(0));
        assert_eq!(s, q.state.scale);
        assert_eq!(o, q.state.zero_point);
        let (qre, qim) = (host(once.re), host(once.im));
        for i in 0..40 {
            let c = i / 20;
            let coord = |a: f32, b: f32| {
                let r = (a * a + b * b).sqrt();
                match grid {
                    AbarGrid::LogPolar => -r.ln(),
                    _ => r,
                }
            };
            let dm = (coord(re[i], im[i]) - coord(qre[i], qim[i])).abs();
            assert!(
                dm <= 0.5 * s[c] * 1.01 + 1e-6,
                "{grid:?} mag {dm} step {}",
                s[c]
            );
            let dt = (im[i].atan2(re[i]) - qim[i].atan2(qre[i])).abs();
            let dt = dt.min(2.0 * std::f32::consts::PI - dt);
            assert!(dt <= 0.5 * s[2 + c] * 1.01 + 1e-5, "{grid:?} phase {dt}");
        }
    }
}

#[test]
fn polar_ste_gradient_is_close_to_identity_and_lsq_steps_get_gradients() {
    // Inside the grid the STE passes d/d(rho, theta) unchanged, so d fq / d Abar is the product
    // of the polar->Cartesian Jacobian at the quantized point and the inverse at the input:
    // the identity up to the quantization error (at 8 bits, a few 1e-3 here).
    let d = Device::flex().autodiff();
    let mags: Vec<f32> = uniform_unit(16, 9).iter().map(|v| 0.9 + 0.09 * v).collect();
    for grid in [AbarGrid::Polar, AbarGrid::LogPolar] {
        let z = abar(&d, 2, 8, &mags, 13);
        let cfg = QuantizerConfig::new(8)
            .with_range(RangeMethod::MinMax)
            .with_learned_scale(true);
        let mut q = Quantizer::new(cfg, 0, 2, "a_bar").unwrap();
        calibrate_abar(&mut q, grid, None, &z).unwrap();
        let re = z.re.clone().require_grad();
        let im = z.im.clone().require_grad();
        let out = fake_quant_abar(&q, grid, None, ComplexTensor::new(re.clone(), im.clone()));
        let grads = out.re.sum().backward();
        let g_re = host(re.grad(&grads).unwrap());
        let g_im = host(im.grad(&grads).unwrap());
        // The extreme values sit on the grid ends, where the clamp may cut the gradient.
        let inside = g_re.iter().filter(|g| (**g - 1.0).abs() < 0.05).count();
        assert!(inside >= 12, "{grid:?}: {g_re:?}");
        assert!(g_im.iter().all(|g| g.abs() < 0.05 || *g == 0.0), "{g_im:?}");
        let gs = host(q.lsq_scale.as_ref().unwrap().val().grad(&grads).unwrap());
        assert_eq!(gs.len(), 4);
        assert!(gs.iter().all(|g| g.is_finite()) && gs.iter().any(|g| *g != 0.0));
    }
}

#[test]
fn specs_select_the_grid_and_old_specs_stay_cartesian() {
    let s = QuantSpec::preset("w4a6-a6x6-logpolar").unwrap();
    assert_eq!(s.a_bar_grid, AbarGrid::LogPolar);
    assert_eq!(s.bits(Component::ABar), 6);
    assert_eq!(s.bits(Component::State), 6);
    assert_eq!(
        QuantSpec::preset("W8A8-POLAR").unwrap().a_bar_grid,
        AbarGrid::Polar
    );
    assert_eq!(
        QuantSpec::preset("w4a6-a8x8").unwrap().a_bar_grid,
        AbarGrid::Cartesian
    );
    assert!(QuantSpec::preset("fp32-polar").is_err());
    assert!(QuantSpec::preset("w4a6-logpolar-a8x8").is_err());
    // Round trips; a Cartesian spec serializes without the field (old readers keep working).
    for spec in [s.clone(), QuantSpec::preset("w8a8").unwrap()] {
        let json = spec.to_json_string().unwrap();
        assert_eq!(json.contains("a_bar_grid"), !spec.a_bar_grid.is_cartesian());
        assert_eq!(QuantSpec::from_json_str(&json).unwrap(), spec);
        let toml = spec.to_toml_string().unwrap();
        assert_eq!(QuantSpec::from_toml_str(&toml).unwrap(), spec);
    }
    let text = "a_bar_grid = \"polar\"\n[a_bar]\nbits = 6\n";
    assert_eq!(
        QuantSpec::from_toml_str(text).unwrap().a_bar_grid,
        AbarGrid::Polar
    );
    // What a polar grid cannot do is an error that says so.
    for (field, value) in [
        ("symmetric", "true"),
        ("calibration", "\"dynamic\""),
        ("range", "\"mse\""),
    ] {
        let text = format!("a_bar_grid = \"log_polar\"\n[a_bar]\nbits = 6\n{field} = {value}\n");
        let err = QuantSpec::from_toml_str(&text).unwrap_err().to_string();
        assert!(err.contains("a_bar") && err.contains("log_polar"), "{err}");
    }
    let text = "a_bar_grid = \"bogus\"\n";
    assert!(QuantSpec::from_toml_str(text).is_err());
}

const H: usize = 4;

/// burn's device RNG is process-wide: seeding and drawing a model's initial weights happen
/// under one lock, or a test running beside would draw between the two (the reload test then
/// compared two differently initialised models, under load).
static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn model(device: &Device, seed: u64) -> s4d_model::S4dClassifier {
    let _turn = INIT.lock().unwrap_or_else(|e| e.into_inner());
    device.seed(seed);
    S4dClassifierConfig::new(S4dConfig::new(H).with_d_state(8))
        .with_activation(Activation::Qgelu)
        .init(device)
}

fn input(device: &Device, seed: u64) -> Tensor<3> {
    let v = uniform_unit(2 * 16, seed);
    Tensor::<1>::from_floats(v.as_slice(), device).reshape([2, 16, 1])
}

#[test]
fn quantized_model_trains_through_polar_abar_and_lsq_state() {
    // End to end: log-polar Abar with LSQ steps, and an LSQ state quantizer that the fused
    // scan handles (Quantizer::head_params): every learned step gets a finite, non-zero
    // gradient, and Abar's parameters get gradients under Continuous and Discrete.
    let device = Device::flex().autodiff();
    let mut spec = QuantSpec::preset("w4a6-a6x6-logpolar").unwrap();
    for c in [Component::ABar, Component::State] {
        let cfg = spec.get(c).unwrap().clone().with_learned_scale(true);
        spec.set(c, Some(cfg));
    }
    for p in [Parameterization::Continuous, Parameterization::Discrete] {
        let mut q = QuantizedClassifier::from_float(model(&device, 5), spec.clone(), p).unwrap();
        calibrate(&mut q, [input(&device, 7)]).unwrap();
        assert_eq!(
            q.quant_state().unwrap().quantizers["block0.a_bar"]
                .scale
                .len(),
            2 * H
        );
        let grads = q
            .forward(input(&device, 8))
            .unwrap()
            .powi_scalar(2)
            .sum()
            .backward();
        for c in [Component::ABar, Component::State] {
            let lsq = q.blocks[0]
                .get(c)
                .unwrap()
                .lsq_scale
                .as_ref()
                .unwrap()
                .val();
            let g = host(lsq.grad(&grads).expect("LSQ step has a gradient"));
            assert!(
                g.iter().all(|v| v.is_finite()) && g.iter().any(|v| *v != 0.0),
                "{p:?} {c}: {g:?}"
            );
        }
        let has = |t: Tensor<2>| t.grad(&grads).is_some();
        match p {
            Parameterization::Continuous => {
                assert!(has(q.float.blocks[0].s4d.log_a_real.val()));
                assert!(has(q.float.blocks[0].s4d.a_imag.val()));
            }
            _ => assert!(has(q.discrete[0].a_re.val()) && has(q.discrete[0].a_im.val())),
        }
    }
}

#[test]
fn polar_quantized_model_reloads_exactly() {
    let device = Device::flex();
    let mut spec = QuantSpec::preset("w4a6-a6x6-polar").unwrap();
    let cfg = spec
        .get(Component::ABar)
        .unwrap()
        .clone()
        .with_learned_scale(true);
    spec.set(Component::ABar, Some(cfg));
    let mut q =
        QuantizedClassifier::from_float(model(&device, 6), spec.clone(), Parameterization::FrozenA)
            .unwrap();
    calibrate(&mut q, [input(&device, 9)]).unwrap();
    let x = input(&device, 10);
    let want = host(q.forward(x.clone()).unwrap());
    let state = q.quant_state().unwrap();
    let text = serde_json::to_string(&state).unwrap();
    let mut r = QuantizedClassifier::from_float(model(&device, 6), spec, Parameterization::FrozenA)
        .unwrap();
    r.load_quant_state(&serde_json::from_str(&text).unwrap())
        .unwrap();
    assert_eq!(r.quant_state().unwrap(), state);
    assert_eq!(host(r.forward(x).unwrap()), want);
}

#[test]
fn per_head_bits_set_each_heads_grid_and_its_memory() {
    let d = Device::flex();
    let bits = vec![3u32, 6, 4, 8];
    for grid in AbarGrid::ALL {
        let mut spec = QuantSpec::preset("w8a8").unwrap().with_a_bar_grid(grid);
        spec.a_bar_head_bits = Some(bits.clone());
        let mut q =
            QuantizedClassifier::from_float(model(&d, 3), spec.clone(), Parameterization::Discrete)
                .unwrap();
        calibrate(&mut q, [input(&d, 4)]).unwrap();
        let qa = q.blocks[0].get(Component::ABar).unwrap();
        let (a, ..) = q.ssm_matrices(0);
        let out = fake_quant_abar(qa, grid, Some(&bits), a.clone());
        // Distinct values per head never exceed the head's code count (per part).
        let (re, im) = (host(out.re), host(out.im));
        let m = re.len() / H;
        for (h, b) in bits.iter().enumerate() {
            let levels = 1usize << b;
            let mut parts: Vec<f32> = re[h * m..(h + 1) * m].to_vec();
            if grid.is_cartesian() {
                parts.extend_from_slice(&im[h * m..(h + 1) * m]);
                parts.sort_by(f32::total_cmp);
                parts.dedup();
                assert!(parts.len() <= levels, "head {h}: {}", parts.len());
            } else {
                let all = representable(qa, grid, Some(&bits), h, &d).unwrap();
                assert_eq!(all.dims(), [1, levels * levels]);
                assert!(max_modulus(&all) < 1.0);
            }
        }
        // Memory: Abar counted per head width (s4d-16-like dims with H = 4, M = 4).
        let dims = ModelDims {
            heads: H,
            modes: 4,
            d_input: 1,
            n_classes: 10,
            n_layers: 1,
            residual: false,
            norm: false,
        };
        let r = MemoryReport::new(dims, &spec);
        let abar_bits: u64 = r
            .entries
            .iter()
            .filter(|e| e.label.starts_with("a_bar"))
            .map(|e| e.total_bits())
            .sum();
        assert_eq!(abar_bits, 2 * 4 * (3 + 6 + 4 + 8));
        let wrong = spec.clone();
        let mut w = wrong;
        w.a_bar_head_bits = Some(vec![4, 4]);
        assert!(
            QuantizedClassifier::from_float(model(&d, 3), w, Parameterization::Discrete).is_err()
        );
    }
}

#[test]
fn integer_export_rejects_polar_grids() {
    let d = Device::flex();
    let mut q = QuantizedClassifier::from_float(
        model(&d, 2),
        QuantSpec::preset("w8a8-logpolar").unwrap(),
        Parameterization::Continuous,
    )
    .unwrap();
    calibrate(&mut q, [input(&d, 3)]).unwrap();
    let err = qat::integer::IntegerModel::derive(&q)
        .unwrap_err()
        .to_string();
    // The error names the spec field to change, not an internal scale count.
    assert!(
        err.contains("a_bar_grid") && err.contains("LogPolar"),
        "{err}"
    );
}

#[test]
fn lsq_steps_of_abar_and_state_train_and_are_saved() {
    // A few AdamW steps on a log-polar + LSQ spec: the learned steps of Abar and of the state
    // (the fused scan's path) move, the loss stays finite, and the exported state holds the
    // learned values rather than the calibrated ones.
    use burn::optim::{AdamWConfig, GradientsParams};
    let device = Device::flex().autodiff();
    let mut spec = QuantSpec::preset("w8a8-logpolar").unwrap();
    for c in [Component::ABar, Component::State] {
        let cfg = spec.get(c).unwrap().clone().with_learned_scale(true);
        spec.set(c, Some(cfg));
    }
    let mut q = QuantizedClassifier::from_float(model(&device, 8), spec, Parameterization::FrozenA)
        .unwrap();
    calibrate(&mut q, [input(&device, 1)]).unwrap();
    let before = q.quant_state().unwrap();
    let mut optim = AdamWConfig::new().with_weight_decay(0.0).init();
    for step in 0..3 {
        let loss = q
            .forward(input(&device, 20 + step))
            .unwrap()
            .powi_scalar(2)
            .mean();
        assert!(loss.clone().into_scalar::<f32>().is_finite());
        let grads = GradientsParams::from_grads(loss.backward(), &q);
        q = optim.step(1e-3, q, grads);
    }
    let after = q.quant_state().unwrap();
    for key in ["block0.a_bar", "block0.state"] {
        let (b, a) = (&before.quantizers[key].scale, &after.quantizers[key].scale);
        assert_eq!(a.len(), b.len());
        assert!(a.iter().zip(b).any(|(x, y)| x != y), "{key} did not move");
        assert!(a.iter().all(|v| v.is_finite()));
    }
    // Offsets (not learned) stay put.
    assert_eq!(
        before.quantizers["block0.a_bar"].zero_point,
        after.quantizers["block0.a_bar"].zero_point
    );
}
