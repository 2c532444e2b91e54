//! The GPU code path (wgpu; lavapipe's software Vulkan on a CPU-only box) against Flex.
//! Built only with `--features wgpu` (see scripts/test-wgpu.sh); otherwise it says why it skipped.
mod common;

#[cfg(feature = "wgpu")]
#[test]
fn wgpu_matches_flex_in_both_modes() {
    use burn::prelude::*;
    use common::{lcg_values, rel_err, to_f64};
    use s4d_model::{S4dClassifierConfig, SsmMode};

    // Opening the adapter panics inside wgpu when none exists; turn that into a printed skip.
    let probe = std::panic::catch_unwind(|| {
        let d = Device::wgpu(Default::default());
        Tensor::<1>::ones([4], &d).sum().into_scalar::<f32>()
    });
    if probe.is_err() {
        eprintln!("SKIPPED wgpu_matches_flex: no wgpu adapter (install mesa-vulkan-drivers)");
        return;
    }
    let flex = Device::flex();
    let gpu = Device::wgpu(Default::default());
    flex.seed(4);
    let cfg = S4dClassifierConfig::preset("s4d-16h").unwrap();
    let model_flex = cfg.init(&flex);
    let model_gpu = model_flex.clone().to_device(&gpu);
    let (b, l) = (2, 128);
    let x = lcg_values(b * l, 3);
    let x_flex = Tensor::<1>::from_floats(x.as_slice(), &flex).reshape([b, l, 1]);
    let x_gpu = Tensor::<1>::from_floats(x.as_slice(), &gpu).reshape([b, l, 1]);
    for mode in [SsmMode::Convolution, SsmMode::Recurrent] {
        let a = to_f64(model_flex.forward(x_flex.clone(), mode));
        let g = to_f64(model_gpu.forward(x_gpu.clone(), mode));
        let err = rel_err(&g, &a);
        // Same f32 math, different kernels and FFT implementations: 1e-4 of the logit scale.
        assert!(err < 1e-4, "{mode:?}: wgpu vs flex rel err {err:e}");
    }
}

#[cfg(not(feature = "wgpu"))]
#[test]
#[ignore = "needs `--features wgpu`: run scripts/test-wgpu.sh"]
fn wgpu_matches_flex_in_both_modes() {
    let _ = common::lcg_values(1, 0);
}
