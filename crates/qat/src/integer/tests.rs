//! The integer reference against the no_std runtime: synthetic models (every code path,
//! saturation included), malformed files, and the committed real exports in `results/deploy/`.

use std::path::PathBuf;

use s4q_runtime::{Error, Model, State};

use super::*;

/// Deterministic generator for synthetic models (no dependency).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }
    fn i8s(&mut self, n: usize) -> Vec<i8> {
        (0..n).map(|_| self.range(-128, 127) as i8).collect()
    }
    fn zs(&mut self, n: usize) -> Vec<i32> {
        (0..n).map(|_| self.range(-20, 20) as i32).collect()
    }
    /// Multipliers `~ 2^e` (sign random when `signed`), as `m / 2^shift`.
    fn rq(&mut self, n: usize, e: i32, bias: Option<i64>, signed: bool) -> Requant {
        let m = (0..n)
            .map(|_| {
                let m = self.range(1 << 30, (1 << 31) - 1);
                (if signed && self.next().is_multiple_of(2) {
                    -m
                } else {
                    m
                }) as i32
            })
            .collect();
        Requant {
            m,
            shift: vec![(30 - e) as u8; n],
            bias: bias.map(|b| (0..n).map(|_| self.range(-b, b)).collect()),
        }
    }
}

fn synthetic(seed: u64) -> IntegerModel {
    let mut r = Lcg(seed);
    let (i, h, m, k) = (2, 4, 3, 3);
    let frac = 16;
    let grid = |z| IntGrid {
        z,
        qmin: -128,
        qmax: 127,
    };
    IntegerModel {
        d_input: i,
        heads: h,
        modes: m,
        classes: k,
        frac,
        pool_frac: 4,
        input: grid(-3),
        input_scale: 1.0 / 255.0,
        enc_w: r.i8s(i * h),
        enc_wz: r.zs(h),
        enc: r.rq(h, -10, Some(1 << 45), false),
        a_re: r.i8s(h * m),
        a_im: r.i8s(h * m),
        a_z: r.zs(h),
        b_re: r.i8s(h * m),
        b_im: r.i8s(h * m),
        b_z: r.zs(h),
        c_re: r.i8s(h * m),
        c_im: r.i8s(h * m),
        c_z: r.zs(h),
        a_rq: r.rq(h, 9, None, false),
        bu_rq: r.rq(h, 10, None, false),
        cy_rq: r.rq(h, 8, None, false),
        dy_rq: r.rq(h, 8, None, true),
        state_z: r.zs(h),
        state_lo: vec![-100; h],
        state_hi: vec![100; h],
        ssm_out: grid(5),
        gelu: r.i8s(256),
        act_z: -2,
        lin_w: r.i8s(h * 2 * h),
        lin_wz: r.zs(2 * h),
        lin: r.rq(2 * h, 6, Some(1 << 40), false),
        sigmoid: sigmoid_table(),
        glu_out: grid(1),
        dec_w: r.i8s(h * k),
        dec_wz: r.zs(k),
        dec: r.rq(k, -8, Some(1 << 38), false),
        logits_z: r.zs(k),
        logits_qmin: -128,
        logits_qmax: 127,
    }
}

/// Runs `inputs` through the reference and the runtime step by step; asserts identical state
/// codes and logits after every step. Returns the final logits.
fn compare_stepwise(reference: &IntegerModel, file: &[u8], inputs: &[i8]) -> Vec<i8> {
    let model = Model::parse(file).expect("export parses");
    let mut x = vec![0i8; model.state_len()];
    let mut g = vec![0i8; model.heads()];
    let mut sums = vec![0i64; model.heads()];
    let mut state = State::new(&model, &mut x, &mut g, &mut sums).expect("state");
    let mut rs = reference.state();
    let mut out = vec![0i8; model.classes()];
    for (t, step) in inputs.chunks_exact(reference.d_input).enumerate() {
        model.step(&mut state, step, &mut out).expect("step");
        rs.step(step);
        assert_eq!(
            state.codes(),
            rs.codes().as_slice(),
            "state codes at step {t}"
        );
        assert_eq!(out, rs.logits(), "logits at step {t}");
    }
    out
}

#[test]
fn synthetic_models_are_bit_exact_between_reference_and_runtime() {
    for seed in 1..=4 {
        let reference = synthetic(seed);
        let file = reference.to_bytes();
        let mut r = Lcg(seed * 77);
        let inputs = r.i8s(reference.d_input * 60);
        let logits = compare_stepwise(&reference, &file, &inputs);
        // The whole-sequence entry points agree with the streaming ones.
        let (ref_logits, ref_pred) = reference.classify(&inputs);
        assert_eq!(logits, ref_logits);
        let model = Model::parse(&file).expect("parses");
        let mut storage = s4q_runtime::StateStorage::<24, 4>::default();
        let mut state = storage.state(&model).expect("fits");
        let mut out = [0i8; 3];
        let pred = model.classify(&mut state, &inputs, &mut out).expect("runs");
        assert_eq!((out.to_vec(), pred), (ref_logits, ref_pred));
    }
}

#[test]
fn malformed_files_are_errors_never_panics() {
    let file = synthetic(9).to_bytes();
    assert!(Model::parse(&file).is_ok());
    // Every truncation.
    for n in 0..file.len() {
        assert!(Model::parse(&file[..n]).is_err(), "truncated to {n}");
    }
    // Header defects.
    let mut bad = file.clone();
    bad[0] = b'X';
    assert_eq!(Model::parse(&bad).err(), Some(Error::BadMagic));
    let mut bad = file.clone();
    bad[4] = 2;
    assert_eq!(Model::parse(&bad).err(), Some(Error::UnsupportedVersion(2)));
    let mut bad = file.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x40;
    assert!(matches!(Model::parse(&bad), Err(Error::Checksum { .. })));
    let mut bad = file.clone();
    bad.push(0);
    assert!(matches!(
        Model::parse(&bad),
        Err(Error::LengthMismatch { .. })
    ));
    // Every single-byte change with the checksum repaired: parses or errs, never panics;
    // changes to array counts are length errors.
    for pos in s4q_runtime::HEADER_LEN..file.len() {
        for v in [0u8, 0x7F, 0x80, 0xFF] {
            let mut m = file.clone();
            m[pos] = v;
            let crc = s4q_runtime::crc32(&m[s4q_runtime::HEADER_LEN..]);
            m[12..16].copy_from_slice(&crc.to_le_bytes());
            if let Ok(model) = Model::parse(&m) {
                let mut storage = s4q_runtime::StateStorage::<24, 4>::default();
                if let Ok(mut state) = storage.state(&model) {
                    let mut out = [0i8; 3];
                    let _ = model.classify(&mut state, &[1, -2, 3, 127, -128, 0], &mut out);
                }
            }
        }
    }
    // Caller buffers of the wrong size.
    let model = Model::parse(&file).expect("parses");
    let mut storage = s4q_runtime::StateStorage::<24, 4>::default();
    let mut state = storage.state(&model).expect("fits");
    let mut out = [0i8; 2];
    assert!(matches!(
        model.step(&mut state, &[0, 0], &mut out),
        Err(Error::BufferSize { .. })
    ));
    let mut small = s4q_runtime::StateStorage::<8, 4>::default();
    assert!(small.state(&model).is_err());
}

#[test]
fn sigmoid_table_is_monotone_and_accurate() {
    let t = sigmoid_table();
    assert_eq!(t.len(), s4q_runtime::SIGMOID_LEN);
    assert_eq!(t[0], 1 << 29);
    assert!(t.windows(2).all(|w| w[0] <= w[1]));
    // Interpolated values within 3e-6 of the exact sigmoid on a fine grid of Q16 inputs.
    let m = synthetic(1);
    for b in (-20 * 65536..20 * 65536).step_by(997) {
        let got = m.sigmoid_q30(b) as f64 / (1u64 << 30) as f64;
        let x = b as f64 / 65536.0;
        let exact = 1.0 / (1.0 + (-x).exp());
        assert!((got - exact).abs() < 3e-6, "b={b} got {got} exact {exact}");
    }
}

/// The committed real exports (`experiments export`): integer reference (from the JSON) and
/// runtime (from the binary) agree bit for bit on the golden test sequences, and both equal
/// the logits recorded at export time.
#[test]
fn committed_exports_are_bit_exact_on_real_test_sequences() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../results/deploy");
    let Ok(dirs) = std::fs::read_dir(&root) else {
        eprintln!("no {} yet: nothing to check", root.display());
        return;
    };
    let mut checked = 0;
    for dir in dirs
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("model.s4qm").exists())
    {
        let reference: IntegerModel = serde_json::from_str(
            &std::fs::read_to_string(dir.join("integer.json")).expect("integer.json"),
        )
        .expect("integer.json parses");
        let file = std::fs::read(dir.join("model.s4qm")).expect("model file");
        let golden = std::fs::read(dir.join("golden_inputs.bin")).expect("golden inputs");
        let expected = std::fs::read_to_string(dir.join("golden_logits.txt")).expect("golden");
        let model = Model::parse(&file).expect("parses");
        let mut x = vec![0i8; model.state_len()];
        let mut g = vec![0i8; model.heads()];
        let mut sums = vec![0i64; model.heads()];
        let mut state = State::new(&model, &mut x, &mut g, &mut sums).expect("state");
        let mut out = vec![0i8; model.classes()];
        let lines: Vec<&str> = expected.lines().collect();
        let seq_len = golden.len() / lines.len();
        let mut n = 0;
        for (seq, line) in golden.chunks_exact(seq_len).zip(&lines) {
            let seq: Vec<i8> = seq.iter().map(|&b| b as i8).collect();
            let pred = model.classify(&mut state, &seq, &mut out).expect("runs");
            let (ref_logits, ref_pred) = reference.classify(&seq);
            assert_eq!(
                (out.clone(), pred),
                (ref_logits.clone(), ref_pred),
                "{}",
                dir.display()
            );
            assert_eq!(format_logits(&out, pred), *line, "{}", dir.display());
            n += 1;
        }
        assert!(n >= 100, "{}: only {n} golden sequences", dir.display());
        checked += 1;
    }
    eprintln!("{checked} committed exports checked");
}
