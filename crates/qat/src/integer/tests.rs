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
    /// Codes of a signed `bits`-bit grid.
    fn codes(&mut self, n: usize, bits: u32) -> Vec<i8> {
        let h = 1i64 << (bits - 1);
        (0..n).map(|_| self.range(-h, h - 1) as i8).collect()
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

/// Widths of the packed weights in the synthetic models: every packing case (a code inside
/// one byte, straddling two, whole bytes).
const SYNTH_BITS: WeightBits = WeightBits { enc: 8, dec: 5 };
/// The synthetic block's widths.
const SYNTH_BLOCK_BITS: BlockBits = BlockBits { b: 4, c: 6, lin: 3 };

fn synthetic(seed: u64) -> IntegerModel {
    let mut r = Lcg(seed);
    let (i, h, m, k) = (2, 4, 3, 3);
    let frac = 16;
    let bits = SYNTH_BITS;
    // State shift 16, |A| < 2^16 (|Abar| < 1), |w| <= 2^18: the state bound is far inside
    // i32 (checked by the parser), while `bu_rq` (gain ~2^6 on u ~ 2^22) drives w into its
    // clamp on some steps.
    let state_shift = 16;
    let grid = |z| IntGrid {
        z,
        qmin: -128,
        qmax: 127,
    };
    let block = IntBlock {
        frac,
        state_shift,
        bits: SYNTH_BLOCK_BITS,
        a_re: (0..h * m)
            .map(|_| r.range(-(1 << 16) + 1, (1 << 16) - 1) as i32)
            .collect(),
        a_im: (0..h * m)
            .map(|_| r.range(-(1 << 16) + 1, (1 << 16) - 1) as i32)
            .collect(),
        b_re: r.codes(h * m, SYNTH_BLOCK_BITS.b),
        b_im: r.codes(h * m, SYNTH_BLOCK_BITS.b),
        b_z: (0..h).map(|_| r.range(-3, 3) as i32).collect(),
        c_re: r.codes(h * m, SYNTH_BLOCK_BITS.c),
        c_im: r.codes(h * m, SYNTH_BLOCK_BITS.c),
        c_z: (0..h).map(|_| r.range(-10, 10) as i32).collect(),
        bu_rq: r.rq(h, -4, None, true),
        w_max: vec![1 << 18; h],
        cy_rq: r.rq(h, 8, None, false),
        dy_rq: r.rq(h, 8, None, true),
        state_z: r.zs(h),
        state_lo: vec![-100; h],
        state_hi: vec![100; h],
        ssm_out: grid(5),
        gelu: r.i8s(256),
        act_z: -2,
        lin_w: r.codes(h * 2 * h, SYNTH_BLOCK_BITS.lin),
        lin_wz: r.zs(2 * h),
        lin: r.rq(2 * h, 6, Some(1 << 40), false),
        glu_out: grid(1),
        residual: None,
        norm: None,
        prenorm: None,
    };
    IntegerModel {
        d_input: i,
        heads: h,
        modes: m,
        classes: k,
        pool_frac: 4,
        weight_bits: bits,
        input: grid(-3),
        input_scale: 1.0 / 255.0,
        enc_w: r.codes(i * h, bits.enc),
        enc_wz: r.zs(h),
        enc: r.rq(h, -10, Some(1 << 45), false),
        blocks: vec![block],
        sigmoid: sigmoid_table(),
        dec_w: r.codes(h * k, bits.dec),
        dec_wz: r.zs(k),
        dec: r.rq(k, -8, Some(1 << 38), false),
        logits_z: r.zs(k),
        logits_qmin: -128,
        logits_qmax: 127,
    }
}

/// A block `k >= 1` of a synthetic deep model: its input is a code (`|v| <= 255`), so `Bbar
/// v` and `D v` have gains `~2^11` and `~2^16` (w up to `2^18`, clamping on some steps).
fn synthetic_block(r: &mut Lcg, h: usize, m: usize) -> IntBlock {
    let grid = |z| IntGrid {
        z,
        qmin: -128,
        qmax: 127,
    };
    IntBlock {
        frac: 16,
        state_shift: 16,
        bits: SYNTH_BLOCK_BITS,
        a_re: (0..h * m)
            .map(|_| r.range(-(1 << 16) + 1, (1 << 16) - 1) as i32)
            .collect(),
        a_im: (0..h * m)
            .map(|_| r.range(-(1 << 16) + 1, (1 << 16) - 1) as i32)
            .collect(),
        b_re: r.codes(h * m, SYNTH_BLOCK_BITS.b),
        b_im: r.codes(h * m, SYNTH_BLOCK_BITS.b),
        b_z: (0..h).map(|_| r.range(-3, 3) as i32).collect(),
        c_re: r.codes(h * m, SYNTH_BLOCK_BITS.c),
        c_im: r.codes(h * m, SYNTH_BLOCK_BITS.c),
        c_z: (0..h).map(|_| r.range(-10, 10) as i32).collect(),
        bu_rq: r.rq(h, 11, None, true),
        w_max: vec![1 << 18; h],
        cy_rq: r.rq(h, 8, None, false),
        dy_rq: r.rq(h, 16, None, true),
        state_z: r.zs(h),
        state_lo: vec![-100; h],
        state_hi: vec![100; h],
        ssm_out: grid(5),
        gelu: r.i8s(256),
        act_z: -2,
        lin_w: r.codes(h * 2 * h, SYNTH_BLOCK_BITS.lin),
        lin_wz: r.zs(2 * h),
        lin: r.rq(2 * h, 6, Some(1 << 40), false),
        glu_out: grid(1),
        residual: None,
        norm: None,
        prenorm: None,
    }
}

/// A residual stage: the GLU output at a gain `~1` and the block input at `2^x_e` (`~2^-22`
/// for block 0's `u`, `~1` for codes) into `Q16`, onto a grid with zero point `z`.
fn synthetic_residual(r: &mut Lcg, h: usize, x_e: i32, z: i32) -> ResidualStage {
    ResidualStage {
        f: r.rq(h, 16, None, true),
        x: r.rq(h, 16 + x_e, None, true),
        frac: 16,
        out: IntGrid {
            z,
            qmin: -128,
            qmax: 127,
        },
    }
}

/// A synthetic deep model: the synthetic block 0 plus a residual and a LayerNorm, a block
/// with a residual and a BatchNorm, and a block with a residual only (every stage, every
/// kind of block input, random enough to saturate).
fn synthetic_deep(seed: u64) -> IntegerModel {
    let mut m = synthetic(seed);
    let mut r = Lcg(seed ^ 0x5eed);
    let (h, modes) = (m.heads, m.modes);
    let grid = |z| IntGrid {
        z,
        qmin: -128,
        qmax: 127,
    };
    let unit = |r: &mut Lcg, n: usize| -> Vec<f64> {
        (0..n)
            .map(|_| r.range(-1000, 1000) as f64 / 1000.0)
            .collect()
    };
    m.blocks[0].residual = Some(synthetic_residual(&mut r, h, -22, 3));
    let gamma: Vec<f64> = unit(&mut r, h).iter().map(|g| 1.0 + 0.5 * g).collect();
    let ln = IntLayerNorm::derive(&gamma, &unit(&mut r, h), 1e-5, 0.05, 255, 0.02, grid(-4))
        .expect("layer norm");
    m.blocks[0].norm = Some(NormStage::Layer(ln));
    let mut b1 = synthetic_block(&mut r, h, modes);
    b1.residual = Some(synthetic_residual(&mut r, h, 0, -1));
    let scale: Vec<f64> = unit(&mut r, h).iter().map(|g| 2.0 * g).collect();
    let shift: Vec<f64> = unit(&mut r, h).iter().map(|b| 20.0 * b).collect();
    b1.norm = Some(NormStage::Batch(
        ChannelAffine::derive(&scale, &shift, grid(2), "batch").expect("affine"),
    ));
    let mut b2 = synthetic_block(&mut r, h, modes);
    b2.residual = Some(synthetic_residual(&mut r, h, 0, 0));
    m.blocks.push(b1);
    m.blocks.push(b2);
    m
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
fn synthetic_deep_models_are_bit_exact_between_reference_and_runtime() {
    for seed in 1..=4 {
        let reference = synthetic_deep(seed);
        let file = reference.to_bytes();
        assert_eq!(u16::from_le_bytes([file[4], file[5]]), s4q_runtime::VERSION);
        let mut r = Lcg(seed * 91);
        let inputs = r.i8s(reference.d_input * 60);
        let logits = compare_stepwise(&reference, &file, &inputs);
        let (ref_logits, ref_pred) = reference.classify(&inputs);
        assert_eq!(logits, ref_logits);
        let model = Model::parse(&file).expect("parses");
        assert_eq!(model.blocks(), 3);
        // Three blocks of 2 H M codes, plus H bytes of block-output scratch.
        assert_eq!(model.state_len(), 3 * 2 * 4 * 3 + 4);
        let mut storage = s4q_runtime::StateStorage::<76, 4>::default();
        let mut state = storage.state(&model).expect("fits");
        let mut out = [0i8; 3];
        let pred = model.classify(&mut state, &inputs, &mut out).expect("runs");
        assert_eq!((out.to_vec(), pred), (ref_logits, ref_pred));
    }
    // Each stage kind alone on one block (the norm-only block reads the GLU grid).
    let mut m = synthetic(6);
    let mut r = Lcg(66);
    m.blocks[0].residual = Some(synthetic_residual(&mut r, m.heads, -22, 0));
    let file = m.to_bytes();
    let inputs = r.i8s(m.d_input * 40);
    compare_stepwise(&m, &file, &inputs);
    let mut m = synthetic_deep(7);
    m.blocks[1].residual = None;
    compare_stepwise(&m, &m.to_bytes(), &inputs);
}

#[test]
fn malformed_deep_files_are_errors_never_panics() {
    let file = synthetic_deep(9).to_bytes();
    assert!(Model::parse(&file).is_ok());
    for n in 0..file.len() {
        assert!(Model::parse(&file[..n]).is_err(), "truncated to {n}");
    }
    let mut runs = 0;
    for pos in s4q_runtime::HEADER_LEN..file.len() {
        for v in [0u8, 0x03, 0x7F, 0x80, 0xFF] {
            let mut m = file.clone();
            m[pos] = v;
            let crc = s4q_runtime::crc32(&m[s4q_runtime::HEADER_LEN..]);
            m[12..16].copy_from_slice(&crc.to_le_bytes());
            if let Ok(model) = Model::parse(&m) {
                let mut storage = s4q_runtime::StateStorage::<256, 8>::default();
                if let Ok(mut state) = storage.state(&model) {
                    let mut out = vec![0i8; model.classes()];
                    let _ = model.classify(&mut state, &[1, -2, 3, 127, -128, 0], &mut out);
                    runs += 1;
                }
            }
        }
    }
    assert!(runs > 1000, "only {runs} mutated files ran");
    // Block counts outside 1..=MAX_BLOCKS, and stage kinds that do not exist.
    let reheader = |mut m: Vec<u8>| {
        let crc = s4q_runtime::crc32(&m[s4q_runtime::HEADER_LEN..]);
        m[12..16].copy_from_slice(&crc.to_le_bytes());
        m
    };
    let blocks_at = s4q_runtime::HEADER_LEN + 8;
    for n in [0u8, s4q_runtime::MAX_BLOCKS as u8 + 1] {
        let mut m = file.clone();
        m[blocks_at] = n;
        assert!(matches!(
            Model::parse(&reheader(m)),
            Err(Error::InvalidValue { field: "blocks" })
        ));
    }
    // A version-2 file with a version-3 header (and the reverse) is an error, not a panic.
    let mut m = file.clone();
    m[4] = 2;
    assert!(Model::parse(&m).is_err());
    let mut m = synthetic(9).to_bytes();
    m[4] = 3;
    assert!(Model::parse(&m).is_err());
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
    bad[4] = 1; // the 64-bit format of issue 6: refused with a clear error
    assert_eq!(Model::parse(&bad).err(), Some(Error::UnsupportedVersion(1)));
    assert!(
        Error::UnsupportedVersion(1)
            .to_string()
            .contains("re-export"),
        "the error says what to do"
    );
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
        // Each golden sequence's length: `golden_steps.txt` where they differ (data of your
        // own), else all equal.
        let steps: Vec<usize> = match std::fs::read_to_string(dir.join("golden_steps.txt")) {
            Ok(text) => text
                .lines()
                .map(|l| l.trim().parse().expect("step count"))
                .collect(),
            Err(_) => vec![golden.len() / lines.len() / reference.d_input; lines.len()],
        };
        assert_eq!(steps.len(), lines.len(), "{}", dir.display());
        let mut at = 0;
        let mut n = 0;
        for (&len, line) in steps.iter().zip(&lines) {
            let codes = &golden[at..at + len * reference.d_input];
            at += len * reference.d_input;
            let seq: Vec<i8> = codes.iter().map(|&b| b as i8).collect();
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

#[test]
fn packed_codes_have_the_documented_layout() {
    // 4-bit: two per byte, low nibble first; -1 is 0xF, -8 is 0x8.
    assert_eq!(pack_codes(&[1, -1, 7, -8], 4), vec![0xF1, 0x87]);
    // 6-bit: code 1 straddles bytes 0 and 1 (bits 6..12).
    assert_eq!(pack_codes(&[-1, 1], 6), vec![0x7F, 0x00]);
    assert_eq!(pack_codes(&[0, -32], 6), vec![0x00, 0x08]);
    // 8-bit is the plain i8 byte.
    assert_eq!(pack_codes(&[-128, 127], 8), vec![0x80, 0x7F]);
    // The file is smaller at fewer bits: the synthetic model's weights are 8/4/6/3/5 bits.
    let m = synthetic(3);
    let mut wide = m.clone();
    wide.weight_bits = WeightBits { enc: 8, dec: 8 };
    wide.blocks[0].bits = BlockBits { b: 8, c: 8, lin: 8 };
    let packed_bytes = |n: usize, b: u32| (n * b as usize).div_ceil(8);
    let (h, hm, k, i) = (m.heads, m.heads * m.modes, m.classes, m.d_input);
    let saved: usize = [
        (i * h, 8),
        (hm, 4),
        (hm, 4),
        (hm, 6),
        (hm, 6),
        (2 * h * h, 3),
        (h * k, 5),
    ]
    .iter()
    .map(|&(n, b)| n - packed_bytes(n, b))
    .sum();
    assert_eq!(wide.to_bytes().len() - m.to_bytes().len(), saved);
}

/// Drives the 32-bit state update to its worst cases: for every head, state codes at the
/// ends of `[lo, hi]` with signs aligned to each mode's `A` (both directions), and inputs at
/// every corner of the input grid (which put `u`, hence `w`, at its extremes). The runtime
/// (i32, wrapping) must equal the reference (i64, exact) after each such step, and the
/// accumulator reached, computed here in i64 independently of both, must stay within
/// `state_bound()`, itself within `i32`.
fn drive_worst_cases(m: &IntegerModel, file: &[u8]) -> i64 {
    let model = Model::parse(file).expect("parses");
    let (hn, mn) = (m.heads, m.modes);
    let corners: Vec<Vec<i8>> = (0..1usize << m.d_input)
        .map(|c| {
            (0..m.d_input)
                .map(|i| {
                    if c >> i & 1 == 1 {
                        m.input.qmax as i8
                    } else {
                        m.input.qmin as i8
                    }
                })
                .collect()
        })
        .collect();
    let bound = m.state_bound();
    assert!(bound <= i32::MAX as i64, "bound {bound} exceeds i32");
    let mut reached = 0i64;
    for dir in [1i64, -1] {
        // Codes that make a.x' as large as possible in direction `dir` (real part).
        let mut codes = vec![0i8; 2 * hn * mn];
        for h in 0..hn {
            let (lo, hi) = (m.blocks[0].state_lo[h], m.blocks[0].state_hi[h]);
            for n in 0..mn {
                let k = h * mn + n;
                let pick = |s: i64| if s * dir >= 0 { hi } else { lo };
                codes[2 * k] = pick(m.blocks[0].a_re[k] as i64) as i8;
                codes[2 * k + 1] = pick(-(m.blocks[0].a_im[k] as i64)) as i8;
            }
        }
        for input in &corners {
            let mut x = vec![0i8; model.state_len()];
            let mut g = vec![0i8; model.heads()];
            let mut sums = vec![0i64; model.heads()];
            let mut state = State::new(&model, &mut x, &mut g, &mut sums).expect("state");
            state
                .set_codes(&model, &codes)
                .expect("codes inside [lo, hi]");
            let mut rs = m.state();
            for (k, pair) in codes.chunks_exact(2).enumerate() {
                rs.x_re[0][k] = pair[0] as i32;
                rs.x_im[0][k] = pair[1] as i32;
            }
            // The accumulator this step reaches, in i64, from the spec's formula.
            let xin: Vec<i64> = input.iter().map(|&v| v as i64 - m.input.z as i64).collect();
            for h in 0..hn {
                let acc: i64 = (0..m.d_input)
                    .map(|i| xin[i] * (m.enc_w[i * hn + h] as i64 - m.enc_wz[h] as i64))
                    .sum();
                let u = sat32(m.enc.apply(h, acc)) as i64;
                let wm = m.blocks[0].w_max[h] as i64;
                let w = (sat32(m.blocks[0].bu_rq.apply(h, u)) as i64).clamp(-wm, wm);
                let sz = m.blocks[0].state_z[h] as i64;
                let fixed = (1i64 << (m.blocks[0].state_shift - 1))
                    + sz.abs() * (1i64 << m.blocks[0].state_shift);
                for n in 0..mn {
                    let k = h * mn + n;
                    let (xr, xi) = (codes[2 * k] as i64 - sz, codes[2 * k + 1] as i64 - sz);
                    let (ar, ai) = (m.blocks[0].a_re[k] as i64, m.blocks[0].a_im[k] as i64);
                    let bz = m.blocks[0].b_z[h] as i64;
                    let vr = (m.blocks[0].b_re[k] as i64 - bz) * w + ar * xr - ai * xi;
                    let vi = (m.blocks[0].b_im[k] as i64 - bz) * w + ar * xi + ai * xr;
                    reached = reached.max(vr.abs().max(vi.abs()) + fixed);
                }
            }
            let mut out = vec![0i8; model.classes()];
            model.step(&mut state, input, &mut out).expect("step");
            rs.step(input);
            assert_eq!(state.codes(), rs.codes().as_slice(), "worst-case step");
            assert_eq!(out, rs.logits(), "worst-case logits");
        }
    }
    assert!(reached <= bound, "reached {reached} > bound {bound}");
    reached
}

#[test]
fn state_bound_holds_under_driven_worst_cases() {
    for seed in 1..=4 {
        let m = synthetic(seed);
        let reached = drive_worst_cases(&m, &m.to_bytes());
        // The driven states get within a factor of 2 of the bound: it is not vacuous.
        assert!(2 * reached >= m.state_bound(), "seed {seed}: {reached}");
    }
    // A file whose numbers break the bound is refused by the parser (the runtime's own
    // proof), not run with a wrapping accumulator.
    let mut m = synthetic(5);
    m.blocks[0].w_max = vec![i32::MAX / 4; m.heads];
    assert!(m.state_bound() > i32::MAX as i64);
    assert!(matches!(
        Model::parse(&m.to_bytes()),
        Err(Error::InvalidValue { .. })
    ));
    let mut m = synthetic(5);
    m.blocks[0].a_re[0] = i32::MAX / 100;
    assert!(matches!(
        Model::parse(&m.to_bytes()),
        Err(Error::InvalidValue { .. })
    ));
}

/// An independent reference of one mode's update: exact rational arithmetic in f64 on the
/// dequantized values (`Abar x + Bbar u` in state codes) against the 32-bit fixed point.
/// The fixed-point result may differ from `round(exact)` only when the exact value lies
/// within the fixed point's error of a rounding boundary: `|A - Abar 2^S| <= 1/2` per part
/// times `|x'| <= 255` twice, plus `|w - w_exact| <= 1/2 + 2^-20` (requant rounding) times
/// `|b| <= 255`, all over `2^S`; the test checks agreement away from that band.
#[test]
fn state_update_matches_exact_arithmetic_away_from_ties() {
    let m = synthetic(7);
    let s = m.blocks[0].state_shift;
    let p = (1u64 << s) as f64;
    let mut r = Lcg(99);
    let mut checked = 0;
    for _ in 0..20_000 {
        let h = r.range(0, m.heads as i64 - 1) as usize;
        let k = h * m.modes + r.range(0, m.modes as i64 - 1) as usize;
        let (lo, hi) = (
            m.blocks[0].state_lo[h] as i64,
            m.blocks[0].state_hi[h] as i64,
        );
        let sz = m.blocks[0].state_z[h] as i64;
        let (xr, xi) = (r.range(lo, hi) - sz, r.range(lo, hi) - sz);
        let w = r.range(-(m.blocks[0].w_max[h] as i64), m.blocks[0].w_max[h] as i64);
        let b = m.blocks[0].b_re[k] as i64 - m.blocks[0].b_z[h] as i64;
        let (ar, ai) = (m.blocks[0].a_re[k] as i64, m.blocks[0].a_im[k] as i64);
        // The fixed point (as the reference computes it).
        let v = b * w + ar * xr - ai * xi;
        let fixed = ((v + (1 << (s - 1))) >> s) + sz;
        // The exact value, with Abar perturbed within its rounding (A = round(Abar 2^S)).
        let da = (r.range(-500, 500) as f64) / 1000.0;
        let exact = (b as f64 * w as f64 + (ar as f64 + da) * xr as f64 - ai as f64 * xi as f64)
            / p
            + sz as f64;
        let err = (0.5 * 255.0 * 2.0 + 1.0) / p;
        let frac = exact - exact.floor();
        if (frac - 0.5).abs() > err {
            assert_eq!(fixed, exact.round() as i64, "k={k} v={v} exact={exact}");
            checked += 1;
        }
    }
    assert!(checked > 15_000, "only {checked} away from ties");
}

#[test]
fn committed_exports_fit_the_32_bit_state_accumulator() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../results/deploy");
    let Ok(dirs) = std::fs::read_dir(&root) else {
        return;
    };
    let mut n = 0;
    for dir in dirs.flatten().map(|e| e.path()) {
        let Ok(text) = std::fs::read_to_string(dir.join("integer.json")) else {
            continue;
        };
        let m: IntegerModel = serde_json::from_str(&text).expect("integer.json parses");
        let file = std::fs::read(dir.join("model.s4qm")).expect("model file");
        assert_eq!(file, m.to_bytes(), "{}: file == reference", dir.display());
        for (i, b) in m.blocks.iter().enumerate() {
            assert!(
                b.state_shift >= 14,
                "{} block {i}: S = {}",
                dir.display(),
                b.state_shift
            );
        }
        // The parser recomputes every block's bound from the file and refuses one that breaks
        // it; the driven worst case (block 0's state set at its corners, fed from the encoder)
        // applies to one-block models, whose block input is the encoder's.
        Model::parse(&file).expect("parses");
        if m.is_single_plain_block() {
            drive_worst_cases(&m, &file);
            n += 1;
        }
    }
    eprintln!("{n} committed exports driven to their worst cases");
}
