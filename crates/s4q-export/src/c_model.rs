//! The integer model as C99: `s4q_model.h` (API, shape, class names, input conversion) and
//! `s4q_model.c` (const weights and the engine: 32-bit arithmetic, Arm DSP paths where the
//! compiler targets them, a portable path that computes the same integers elsewhere).

use std::fmt::Write as _;
use std::path::Path;

use qat::integer::IntegerModel;

use crate::{ExportError, ModelMeta, write_file};

/// Writes `s4q_model.h` and `s4q_model.c` for `im` into `dir`.
pub fn write_c_model(im: &IntegerModel, meta: &ModelMeta, dir: &Path) -> Result<(), ExportError> {
    meta.check(im)?;
    check_supported(im)?;
    write_file(&dir.join("s4q_model.h"), c_header(im, meta).as_bytes())?;
    write_file(&dir.join("s4q_model.c"), c_source(im).as_bytes())
}

/// Models the C engines implement: the paper's one block (specialised, with Thumb-2 loops)
/// or up to `s4q_runtime::MAX_BLOCKS` stacked blocks (portable C99, `c_deep`).
pub(crate) fn check_supported(im: &IntegerModel) -> Result<(), ExportError> {
    if im.blocks.is_empty() || im.blocks.len() > s4q_runtime::MAX_BLOCKS {
        return Err(ExportError::Unsupported(format!(
            "{} blocks (1..={})",
            im.blocks.len(),
            s4q_runtime::MAX_BLOCKS
        )));
    }
    Ok(())
}

/// The one-block engine cut where the deep engine reuses it: (everything before the shared
/// helpers, the helpers (rounding, requantization, sigmoid), the one-block stages, the tail
/// (logits, step, classify)). Their concatenation is `C_ENGINE`.
fn engine_parts() -> (&'static str, &'static str, &'static str, &'static str) {
    let at = |marker: &str| C_ENGINE.find(marker).unwrap_or(C_ENGINE.len());
    let (h, l, t) = (
        at("/* round_half_even(x / 2^s), s in 0..62"),
        at("/* Signed low and high halves"),
        at("void s4q_logits(const s4q_state *st"),
    );
    (
        &C_ENGINE[..h],
        &C_ENGINE[h..l],
        &C_ENGINE[l..t],
        &C_ENGINE[t..],
    )
}

pub(crate) fn c_array<T: std::fmt::Display>(out: &mut String, ty: &str, name: &str, v: &[T]) {
    let _ = write!(out, "static const {ty} {name}[{}] = {{", v.len().max(1));
    for (i, x) in v.iter().enumerate() {
        if i % 16 == 0 {
            out.push_str("\n    ");
        }
        let _ = write!(out, "{x}, ");
    }
    if v.is_empty() {
        out.push('0');
    }
    out.push_str("\n};\n");
}

/// An `i32` array in the narrowest of `int8_t`, `int16_t`, `int32_t` that holds every value
/// (zero points and sums that fit a byte need not take a word of flash each; C promotes
/// them back to `int` wherever they are used).
fn c_narrow_array(out: &mut String, name: &str, v: &[i32]) {
    let fits = |lo: i32, hi: i32| v.iter().all(|x| (lo..=hi).contains(x));
    let ty = if fits(i8::MIN.into(), i8::MAX.into()) {
        "int8_t"
    } else if fits(i16::MIN.into(), i16::MAX.into()) {
        "int16_t"
    } else {
        "int32_t"
    };
    c_array(out, ty, name, v);
}

/// `int64_t` literals: `INT64_C` keeps large constants well-typed in C99.
pub(crate) fn c_i64_array(out: &mut String, name: &str, v: &[i64]) {
    let lits: Vec<String> = v
        .iter()
        .map(|&x| {
            if x == i64::MIN {
                "INT64_MIN".into()
            } else {
                format!("INT64_C({x})")
            }
        })
        .collect();
    c_array(out, "int64_t", name, &lits);
}

/// Multipliers, shifts (`{prefix}_SH(c)`: a constant when the stage shares one shift, as
/// `qat::integer` exports them) and biases of one requantization stage.
fn c_requant_shift(out: &mut String, prefix: &str, shift: &[u8]) {
    match shift.first() {
        Some(&s0) if shift.iter().all(|&s| s == s0) => {
            let _ = writeln!(out, "#define {prefix}_SH(c) {s0}u");
        }
        _ => {
            c_array(out, "uint8_t", &format!("{prefix}_SHIFT"), shift);
            let _ = writeln!(out, "#define {prefix}_SH(c) ((uint32_t){prefix}_SHIFT[c])");
        }
    }
}

pub(crate) fn c_requant(out: &mut String, prefix: &str, r: &qat::integer::Requant) {
    c_array(out, "int32_t", &format!("{prefix}_M"), &r.m);
    c_requant_shift(out, prefix, &r.shift);
    if let Some(b) = &r.bias {
        c_i64_array(out, &format!("{prefix}_BIAS"), b);
    }
}

/// The header: dimensions, the state type and the API.
/// `s4q_model.h`: the API, the state struct, the model's shape, its class names and the
/// host-side input conversion (macros only, so no float object is compiled unless used).
pub fn c_header(im: &IntegerModel, meta: &ModelMeta) -> String {
    let names: Vec<String> = meta
        .class_names
        .iter()
        .map(|n| format!("\"{}\"", c_escape(n)))
        .collect();
    let (scale, offset) = meta.input_conversion(im);
    let floats = |v: &[f32]| {
        v.iter()
            .map(|x| format!("{x:e}f"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let meta_text = format!(
        "/* Class names in class-index order (what s4q_classify's result indexes). */\n\
         #define S4Q_CLASS_NAMES {{ {} }}\n\
         /* Host side, not used by the integer model: the input code of a raw reading x of\n\
          * channel c is clamp(round(x / S4Q_INPUT_SCALE[c] + S4Q_INPUT_OFFSET[c]), S4Q_INPUT_QMIN,\n\
          * S4Q_INPUT_QMAX): the training split's standardisation folded into the input quantizer. */\n\
         #define S4Q_INPUT_SCALE {{ {} }}\n#define S4Q_INPUT_OFFSET {{ {} }}\n\
         #define S4Q_INPUT_QMIN ({})\n#define S4Q_INPUT_QMAX ({})\n",
        names.join(", "),
        floats(&scale),
        floats(&offset),
        im.input.qmin,
        im.input.qmax
    );
    c_header_shape(im).replace("/*@META@*/\n", &meta_text)
}

/// `text` as the inside of a C string literal.
fn c_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| match c {
            '"' | '\\' => vec!['\\', c],
            c if c.is_ascii_graphic() || c == ' ' => vec![c],
            _ => vec!['?'],
        })
        .collect()
}

fn c_header_shape(im: &IntegerModel) -> String {
    format!(
        r#"/* s4q integer S4D classifier, exported by `experiments export --format c`.
 * C99, no malloc, no floating point, weights const. Bit-exact with s4q-runtime and the
 * qat::integer reference (same arithmetic, same half-to-even rounding). */
#ifndef S4Q_MODEL_H
#define S4Q_MODEL_H

#include <stdint.h>

#define S4Q_D_INPUT {d}
#define S4Q_HEADS {h}
#define S4Q_MODES {m}
#define S4Q_CLASSES {k}
#define S4Q_MAX_STEPS (UINT32_C(1) << 24)
/*@META@*/

{state}

/* Zero state (x = 0, empty pool). */
void s4q_reset(s4q_state *s);
/* One time step of S4Q_D_INPUT input codes; 0, or -1 past S4Q_MAX_STEPS. */
int s4q_advance(s4q_state *s, const int8_t *input);
/* Logit codes of the sequence so far. */
void s4q_logits(const s4q_state *s, int8_t *out);
/* advance + logits. */
int s4q_step(s4q_state *s, const int8_t *input, int8_t *out);
/* Whole sequence of `steps` steps from the zero state; returns the predicted class. */
int s4q_classify(s4q_state *s, const int8_t *inputs, uint32_t steps, int8_t *out);

#endif
"#,
        d = im.d_input,
        h = im.heads,
        m = im.modes,
        k = im.classes,
        state = c_state_type(im),
    )
}

/// The state struct: the one-block layout of the paper's model, or the blocks' state codes
/// plus the block-output scratch of a deep model.
fn c_state_type(im: &IntegerModel) -> String {
    if im.is_single_plain_block() {
        "/* One stream's state: state codes [H][M][re, im], activation scratch, pooled sums, steps. */
typedef struct {
    int8_t x[2 * S4Q_HEADS * S4Q_MODES];
    int8_t g[S4Q_HEADS];
    int64_t sums[S4Q_HEADS];
    uint32_t t;
} s4q_state;"
            .to_string()
    } else {
        format!(
            "#define S4Q_BLOCKS {}
/* One stream's state: state codes [block][H][M][re, im], activation and block-output
 * scratch, pooled sums, steps. */
typedef struct {{
    int8_t x[2 * S4Q_BLOCKS * S4Q_HEADS * S4Q_MODES];
    int8_t g[S4Q_HEADS];
    int8_t io[S4Q_HEADS];
    int64_t sums[S4Q_HEADS];
    uint32_t t;
}} s4q_state;",
            im.blocks.len()
        )
    }
}

/// `[re0, im0, re1, im1, ...]` of codes minus their head's zero point.
fn centered_pairs(re: &[i8], im: &[i8], z: &[i32], modes: usize) -> Vec<i32> {
    re.iter()
        .zip(im)
        .enumerate()
        .flat_map(|(k, (&r, &i))| {
            let z = z[k / modes];
            [r as i32 - z, i as i32 - z]
        })
        .collect()
}

/// The model source: constants and the integer forward pass.
/// `s4q_model.c`: the weights as const arrays and the integer engine.
pub fn c_source(im: &IntegerModel) -> String {
    let (prelude, helpers, stages, tail) = engine_parts();
    if !im.is_single_plain_block() {
        return crate::c_deep::c_source_deep(im, helpers, tail);
    }
    let blk = &im.blocks[0];
    let mut s = String::from(
        "/* s4q integer S4D classifier (generated; see s4q_model.h). */\n#include \"s4q_model.h\"\n\n",
    );
    let _ = writeln!(
        s,
        "#define FRAC {}u\n#define POOL_FRAC {}u\n#define STATE_SHIFT {}",
        blk.frac, im.pool_frac, blk.state_shift
    );
    let _ = writeln!(
        s,
        "#define IN_Z {}\n#define IN_QMIN {}\n#define IN_QMAX {}",
        im.input.z, im.input.qmin, im.input.qmax
    );
    let _ = writeln!(
        s,
        "#define Y_Z {}\n#define Y_QMIN {}\n#define Y_QMAX {}\n#define G_Z {}",
        blk.ssm_out.z, blk.ssm_out.qmin, blk.ssm_out.qmax, blk.act_z
    );
    let _ = writeln!(
        s,
        "#define O_Z {}\n#define O_QMIN {}\n#define O_QMAX {}\n#define L_QMIN {}\n#define L_QMAX {}\n",
        blk.glu_out.z, blk.glu_out.qmin, blk.glu_out.qmax, im.logits_qmin, im.logits_qmax
    );
    // One clamp for every head's state when all share the full signed 8-bit grid: constant
    // bounds, which gcc turns into one `ssat` on Cortex-M4.
    let full = blk.state_lo.iter().all(|&l| l == -128) && blk.state_hi.iter().all(|&h| h == 127);
    let _ = writeln!(s, "#define STATE_FULL_GRID {}", u8::from(full));
    c_array(&mut s, "int8_t", "ENC_W", &im.enc_w);
    c_narrow_array(&mut s, "ENC_WZ", &im.enc_wz);
    c_requant(&mut s, "ENC", &im.enc);
    // One record per mode, loaded with one `ldm` on a Cortex-M4: Abar pre-scaled (i32 re,
    // im), Bbar minus its zero point (i32 re, im), and C minus its zero point as an int16
    // pair (re, -im) for one `SMLAD` readout. CSUM[h] = sum_n (C_re - C_im) corrects the
    // readout done on raw state codes: sum c (q - zx) = sum c q - zx CSUM.
    let b = centered_pairs(&blk.b_re, &blk.b_im, &blk.b_z, im.modes);
    let c = centered_pairs(&blk.c_re, &blk.c_im, &blk.c_z, im.modes);
    // Compact records when Bbar and C minus their zero points fit int8 (grids of at most 4
    // bits, or centred 8-bit ones), every pre-scaled Abar fits 24 bits and the modes pair
    // up: one 20-byte group per two modes, {A_re0:24|B_re0:8, A_im0:24|B_im0:8, C bytes
    // (C_re0, C_re1, -C_im0, -C_im1), A_re1:24|B_re1:8, A_im1:24|B_im1:8} (10 bytes a mode
    // instead of 20; Abar's codes are exact, only the container is narrower). SXTB gives
    // Bbar, ASR #8 Abar, SXTB16 (ror 8 for the second mode) the (C_re, -C_im) pair; a
    // Cortex-M4 loads the first mode's three words and the second's two with one LDM each.
    let i8ok = |v: i32| (-128..=127).contains(&v);
    let i24ok = |v: i32| (-(1 << 23)..(1 << 23)).contains(&v);
    let compact = b.iter().all(|&v| i8ok(v))
        && c.iter().all(|&v| i8ok(v) && i8ok(-v))
        && blk.a_re.iter().chain(&blk.a_im).all(|&v| i24ok(v))
        && im.modes.is_multiple_of(2);
    let modes: Vec<String> = if compact {
        let ab = |a: i32, b: i32| ((a as u32) << 8) | (b as u32 & 0xFF);
        let byte = |v: i32, i: u32| ((v as u32) & 0xFF) << (8 * i);
        (0..im.heads * im.modes / 2)
            .map(|g| {
                let (k0, k1) = (2 * g, 2 * g + 1);
                let cw = byte(c[2 * k0], 0)
                    | byte(c[2 * k1], 1)
                    | byte(-c[2 * k0 + 1], 2)
                    | byte(-c[2 * k1 + 1], 3);
                format!(
                    "{{{:#010x}u, {:#010x}u, {cw:#010x}u, {:#010x}u, {:#010x}u}}",
                    ab(blk.a_re[k0], b[2 * k0]),
                    ab(blk.a_im[k0], b[2 * k0 + 1]),
                    ab(blk.a_re[k1], b[2 * k1]),
                    ab(blk.a_im[k1], b[2 * k1 + 1]),
                )
            })
            .collect()
    } else {
        (0..im.heads * im.modes)
            .map(|k| {
                let cw = (c[2 * k] as u32 & 0xFFFF) | ((-c[2 * k + 1]) as u32) << 16;
                format!(
                    "{{{}, {}, {}, {}, {cw:#010x}u}}",
                    blk.a_re[k],
                    blk.a_im[k],
                    b[2 * k],
                    b[2 * k + 1]
                )
            })
            .collect()
    };
    let _ = writeln!(s, "#define MODE_COMPACT {}", u8::from(compact));
    s.push_str(if compact {
        "typedef struct { uint32_t r0, i0, c, r1, i1; } s4q_mode_t;\n\
         #define S4Q_RECORDS (S4Q_MODES / 2)\n"
    } else {
        "typedef struct { int32_t ar, ai, br, bi; uint32_t cw; } s4q_mode_t;\n\
         #define S4Q_RECORDS S4Q_MODES\n"
    });
    c_array(&mut s, "s4q_mode_t", "MODES", &modes);
    let csum: Vec<i32> = (0..im.heads)
        .map(|h| {
            (0..im.modes)
                .map(|n| c[2 * (h * im.modes + n)] - c[2 * (h * im.modes + n) + 1])
                .sum()
        })
        .collect();
    c_narrow_array(&mut s, "CSUM", &csum);
    c_requant(&mut s, "BURQ", &blk.bu_rq);
    c_array(&mut s, "int32_t", "W_MAX", &blk.w_max);
    c_requant(&mut s, "CYRQ", &blk.cy_rq);
    c_requant(&mut s, "DYRQ", &blk.dy_rq);
    c_narrow_array(&mut s, "ST_Z", &blk.state_z);
    if !full {
        c_array(&mut s, "int32_t", "ST_LO", &blk.state_lo);
        c_array(&mut s, "int32_t", "ST_HI", &blk.state_hi);
    }
    c_array(&mut s, "int8_t", "GELU", &blk.gelu);
    // Pointwise conv transposed to [2H][H] (one contiguous row per output), packed in
    // little-endian words: four int8 codes per word, or, for grids of at most 4 bits, eight
    // nibbles holding `code + 8` (unsigned; the +8 joins the zero point in LIN_WZ).
    let nib = blk.bits.lin <= 4;
    let (cpw, bits, bias) = if nib { (8, 4, 8i32) } else { (4, 8, 0) };
    let (h, words) = (im.heads, im.heads.div_ceil(cpw));
    let lin_t: Vec<String> = (0..2 * h)
        .flat_map(|j| {
            (0..words).map(move |w| {
                let word = (0..cpw).fold(0u32, |acc, b| {
                    let hh = cpw * w + b;
                    let v = if hh < h {
                        (blk.lin_w[hh * 2 * h + j] as i32 + bias) as u32 & ((1 << bits) - 1)
                    } else {
                        0
                    };
                    acc | v << (bits * b)
                });
                format!("{word:#010x}u")
            })
        })
        .collect();
    let _ = writeln!(
        s,
        "#define LIN_NIB {}\n#define LIN_CPW {cpw}\n#define LIN_WORDS {words}",
        u8::from(nib)
    );
    c_array(&mut s, "uint32_t", "LIN_WT", &lin_t);
    let lin_wz: Vec<i32> = blk.lin_wz.iter().map(|&z| z + bias).collect();
    c_narrow_array(&mut s, "LIN_WZ", &lin_wz);
    c_array(&mut s, "int32_t", "LIN_M", &blk.lin.m);
    c_requant_shift(&mut s, "LINA", &blk.lin.shift[..h]);
    c_requant_shift(&mut s, "LINB", &blk.lin.shift[h..]);
    if let Some(b) = &blk.lin.bias {
        c_i64_array(&mut s, "LIN_BIAS", b);
    }
    // The sigmoid in 32-bit arithmetic when the table allows it (the committed table does:
    // entries in [2^29, 2^30], steps at most 2^30 / 256).
    let sig_u32 = im.sigmoid.len() == 1025
        && im.sigmoid.iter().all(|&v| (0..=1 << 30).contains(&v))
        && im
            .sigmoid
            .windows(2)
            .all(|w| (0..=1 << 22).contains(&(w[1] - w[0])));
    let _ = writeln!(s, "#define SIGMOID_U32 {}", u8::from(sig_u32));
    c_array(&mut s, "int32_t", "SIGMOID", &im.sigmoid);
    c_array(&mut s, "int8_t", "DEC_W", &im.dec_w);
    c_narrow_array(&mut s, "DEC_WZ", &im.dec_wz);
    c_requant(&mut s, "DEC", &im.dec);
    c_narrow_array(&mut s, "L_Z", &im.logits_z);
    for part in [prelude, helpers, stages, tail] {
        s.push_str(part);
    }
    s
}

/// The forward pass in C: the same stages, order and rounding as `s4q_runtime::Model`. The
/// per-mode loop is 32-bit only (the bound is proved at export and re-checked by the
/// runtime's parser). On Thumb-2 cores with the DSP extension (Cortex-M4/M7/M33 with gcc or
/// clang) the two hot loops, the per-mode update and the pointwise conv, are inline assembly
/// (one `LDM` per mode record, `SXTAB`, `MLA`, `SSAT`, `SMLAD`; `SXTB16`/`UXTB16` + `SMLAD`
/// per weight pair); elsewhere portable C99 loops compute the same integers.
const C_ENGINE: &str = r#"
#if defined(__ARM_FEATURE_SIMD32) && !defined(S4Q_PORTABLE)
#include <arm_acle.h>
#define S4Q_SIMD 1
/* (lo & 0xFFFF) | (hi << 16), one instruction. */
static inline uint32_t s4q_pkhbt(int32_t lo, int32_t hi) {
    uint32_t r;
    __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(r) : "r"(lo), "r"(hi));
    return r;
}
/* SXTB of the word rotated by r (8, 16 or 24), one instruction. */
#define s4q_sxtb_ror(x, r) __extension__({ uint32_t s4q_x_ = (x); int32_t s4q_r_; \
    __asm__("sxtb %0, %1, ror #" #r : "=r"(s4q_r_) : "r"(s4q_x_)); s4q_r_; })
/* UXTB16 of the word rotated by 8 (bytes 1 and 3), one instruction. */
static inline uint32_t s4q_uxtb16_ror8(uint32_t x) {
    uint32_t r;
    __asm__("uxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
/* SXTB16 of the word rotated by 8 (bytes 1 and 3), one instruction. */
static inline uint32_t s4q_sxtb16_ror8(uint32_t x) {
    uint32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
#else
#define S4Q_SIMD 0
#endif

/* round_half_even(x / 2^s), s in 0..62: the rounding rule of the per-head stages (as
 * s4q_runtime::fixed). The floor is computed without right-shifting a negative value
 * (implementation-defined in C99). */
#if defined(__GNUC__)
#define S4Q_INLINE static inline __attribute__((always_inline))
#else
#define S4Q_INLINE static inline
#endif

S4Q_INLINE int64_t s4q_shr_round(int64_t x, uint32_t s) {
    int64_t q, r, half;
    if (s == 0) return x;
    if (s > 62) s = 62;
    q = (x >= 0) ? (x >> s) : ~((~x) >> s);
    r = x & (((int64_t)1 << s) - 1);
    half = (int64_t)1 << (s - 1);
    if (r > half || (r == half && (q & 1))) q += 1;
    return q;
}

/* floor(x / 2^s) in 32 bits without shifting a negative value (gcc emits one `asr`). */
S4Q_INLINE int32_t s4q_asr32(int32_t x, uint32_t s) {
    return x >= 0 ? (x >> s) : ~((~x) >> s);
}

/* round_half_even(n / d), d > 0. */
static int64_t s4q_div_round(int64_t n, int64_t d) {
    int64_t q = n / d, r = n % d, rest;
    if (r < 0) { q -= 1; r += d; }
    rest = d - r;
    if (r > rest || (r == rest && (q & 1))) q += 1;
    return q;
}

S4Q_INLINE int32_t s4q_sat32(int64_t x) {
    if (x > INT32_MAX) return INT32_MAX;
    if (x < INT32_MIN) return INT32_MIN;
    return (int32_t)x;
}

S4Q_INLINE int64_t s4q_clamp(int64_t x, int64_t lo, int64_t hi) {
    return x < lo ? lo : (x > hi ? hi : x);
}

S4Q_INLINE int64_t s4q_requant(int32_t acc, int32_t m, int64_t bias, uint32_t s) {
    return s4q_shr_round((int64_t)acc * m + bias, s);
}

static int64_t s4q_sigmoid_q30(int32_t b) {
#if SIGMOID_U32
    /* Every entry in [0, 2^30], every step in [0, 2^22] (checked at export): the same
     * integers in 32 bits, the interpolation product below 2^32. */
    const uint32_t mag = b < 0 ? 0u - (uint32_t)b : (uint32_t)b, idx = mag >> 10;
    int32_t s;
    if (idx >= 1024u) {
        s = SIGMOID[1024];
    } else {
        const uint32_t p = (uint32_t)(SIGMOID[idx + 1] - SIGMOID[idx]) * (mag & 1023u);
        uint32_t q = p >> 10;
        const uint32_t r = p & 1023u;
        if (r > 512u || (r == 512u && (q & 1u))) q += 1u;
        s = SIGMOID[idx] + (int32_t)q;
    }
    return b < 0 ? (int32_t)(UINT32_C(1) << 30) - s : s;
#else
    int64_t mag = b < 0 ? -(int64_t)b : (int64_t)b, s;
    int64_t idx = mag >> 10;
    if (idx >= 1024) {
        s = SIGMOID[1024];
    } else {
        int64_t t0 = SIGMOID[idx], t1 = SIGMOID[idx + 1];
        s = t0 + s4q_shr_round((t1 - t0) * (mag & 1023), 10);
    }
    return b < 0 ? ((int64_t)1 << 30) - s : s;
#endif
}

/* Signed low and high halves of a word (C's (int16_t) cast of large values is
 * implementation-defined; this is not). */
S4Q_INLINE int32_t s4q_lo16(uint32_t w) {
    return (int32_t)(w & 0xFFFFu) - (int32_t)((w & 0x8000u) << 1);
}
S4Q_INLINE int32_t s4q_hi16(uint32_t w) {
    return (int32_t)(w >> 16) - (int32_t)((w >> 15) & 0x10000u);
}

/* Signed byte i (0..3) of a little-endian word. */
S4Q_INLINE int32_t s4q_sbyte(uint32_t w, uint32_t i) {
    int32_t b = (int32_t)((w >> (8u * i)) & 0xFFu);
    return b - ((b & 0x80) << 1);
}

/* Code h of a packed conv row: a signed byte, or an unsigned (biased) nibble. */
S4Q_INLINE int32_t s4q_lin_code(const uint32_t *row, uint32_t h) {
#if LIN_NIB
    return (int32_t)((row[h >> 3] >> (4u * (h & 7u))) & 0xFu);
#else
    return s4q_sbyte(row[h >> 2], h & 3u);
#endif
}

/* Abar from a compact record word (A << 8 | Bbar byte): the signed top 24 bits. */
S4Q_INLINE int32_t s4q_a24(uint32_t w) {
    const int32_t v = (int32_t)(w >> 8);
    return v - ((v & 0x800000) << 1);
}

/* One complex mode (module doc of s4q_runtime::model, steps 3-4): the 32-bit state update of
 * the raw codes x[0..2] and the readout cr q_re + cn q_im (cn = -C_im) added to acc (on raw
 * codes; CSUM corrects it). */
S4Q_INLINE int32_t s4q_mode(int32_t ar, int32_t ai, int32_t br, int32_t bi, int32_t cr,
                            int32_t cn, int8_t *x, int32_t kk, int32_t w, int32_t sz,
                            int32_t lo, int32_t hi, int32_t acc) {
    const int32_t xr = x[0] - sz, xi = x[1] - sz;
    int32_t qr = s4q_asr32(kk + br * w + ar * xr - ai * xi, STATE_SHIFT);
    int32_t qi = s4q_asr32(kk + bi * w + ar * xi + ai * xr, STATE_SHIFT);
#if STATE_FULL_GRID && S4Q_SIMD
    (void)lo; (void)hi;
    qr = __ssat(qr, 8);
    qi = __ssat(qi, 8);
#else
    qr = qr < lo ? lo : (qr > hi ? hi : qr);
    qi = qi < lo ? lo : (qi > hi ? hi : qi);
#endif
    x[0] = (int8_t)qr;
    x[1] = (int8_t)qi;
    return acc + cr * qr + cn * qi;
}

/* Every mode of one head: its records p[0..S4Q_RECORDS], its state codes x; returns the
 * readout sum. */
static inline int32_t s4q_modes(const s4q_mode_t *p, int8_t *x, int32_t kk, int32_t w,
                                int32_t sz, int32_t lo, int32_t hi) {
    int32_t acc = 0;
    int n;
    for (n = 0; n < S4Q_RECORDS; n++, p++) {
#if MODE_COMPACT
        acc = s4q_mode(s4q_a24(p->r0), s4q_a24(p->i0), s4q_sbyte(p->r0, 0), s4q_sbyte(p->i0, 0),
                       s4q_sbyte(p->c, 0), s4q_sbyte(p->c, 2), x, kk, w, sz, lo, hi, acc);
        acc = s4q_mode(s4q_a24(p->r1), s4q_a24(p->i1), s4q_sbyte(p->r1, 0), s4q_sbyte(p->i1, 0),
                       s4q_sbyte(p->c, 1), s4q_sbyte(p->c, 3), x + 2, kk, w, sz, lo, hi, acc);
        x += 4;
#else
        acc = s4q_mode(p->ar, p->ai, p->br, p->bi, s4q_lo16(p->cw), s4q_hi16(p->cw), x, kk, w,
                       sz, lo, hi, acc);
        x += 2;
#endif
    }
    return acc;
}

/* Thumb-2 assembly for the two hot loops where gcc or clang targets a core with the DSP
 * extension (define S4Q_NO_ASM to use the C loops instead; both give the same bytes). */
#if S4Q_SIMD && defined(__GNUC__) && defined(__thumb2__) && !defined(S4Q_NO_ASM)
#define S4Q_ASM 1
#define S4Q_STR_(x) #x
#define S4Q_STR(x) S4Q_STR_(x)
#define S4Q_UNUSED __attribute__((unused))
#if STATE_FULL_GRID
#define S4Q_ASM_MODES 1
/* s4q_modes in Thumb-2 with the DSP extension, the same integers (gcc neither keeps this
 * loop's live values in registers nor loads a record with one LDM). Registers: r0 records,
 * r1 state codes, r2 end of the records, r3 kk, r9 w, r10 -zx, r11 readout sum; r12/lr the
 * state codes minus zx. Per mode: LDRH + 2 SXTAB (codes minus zx), 6 MLA/MLS (32-bit,
 * wrapping as the C does; the export bound keeps the true sums inside i32), 2 SSAT #8 with
 * the state shift (floor, then the full-grid clamp), 2 STRB, PKHBT + SMLAD (readout). */
#define S4Q_ASM_STATE                                                                          \
    "ldrh r12, [r1]\n\t"                                                                       \
    "sxtab lr, r10, r12\n\t"                                                                   \
    "sxtab r12, r10, r12, ror #8\n\t"
#define S4Q_ASM_UPDATE                                                                         \
    "mla r6, r6, r9, r3\n\t"                                                                   \
    "mla r7, r7, r9, r3\n\t"                                                                   \
    "mla r6, r4, lr, r6\n\t"                                                                   \
    "mls r6, r5, r12, r6\n\t"                                                                  \
    "mla r7, r4, r12, r7\n\t"                                                                  \
    "mla r7, r5, lr, r7\n\t"                                                                   \
    "ssat r6, #8, r6, asr #" S4Q_STR(STATE_SHIFT) "\n\t"                                       \
    "ssat r7, #8, r7, asr #" S4Q_STR(STATE_SHIFT) "\n\t"                                       \
    "strb r7, [r1, #1]\n\t"                                                                    \
    "strb r6, [r1], #2\n\t"                                                                    \
    "pkhbt r6, r6, r7, lsl #16\n\t"
#if MODE_COMPACT
/* A compact record's mode: r4/r5 = A << 8 | Bbar byte (SXTB, ASR #8), r8 the C bytes. */
#define S4Q_ASM_MODE(LOAD, CPAIR)                                                              \
    LOAD S4Q_ASM_STATE                                                                         \
    "sxtb r6, r4\n\t"                                                                          \
    "sxtb r7, r5\n\t"                                                                          \
    "asr r4, r4, #8\n\t"                                                                       \
    "asr r5, r5, #8\n\t"                                                                       \
    S4Q_ASM_UPDATE CPAIR                                                                       \
    "smlad r11, r7, r6, r11\n\t"
#define S4Q_ASM_BODY                                                                           \
    S4Q_ASM_MODE("ldmia r0!, {r4, r5, r8}\n\t", "sxtb16 r7, r8\n\t")                           \
    S4Q_ASM_MODE("ldmia r0!, {r4, r5}\n\t", "sxtb16 r7, r8, ror #8\n\t")
#else
/* A full record's mode: r4-r8 = A_re, A_im, Bbar_re, Bbar_im, (C_re, -C_im). */
#define S4Q_ASM_MODE                                                                           \
    "ldmia r0!, {r4, r5, r6, r7, r8}\n\t" S4Q_ASM_STATE S4Q_ASM_UPDATE                         \
    "smlad r11, r8, r6, r11\n\t"
#if S4Q_MODES % 2 == 0
#define S4Q_ASM_BODY S4Q_ASM_MODE S4Q_ASM_MODE
#else
#define S4Q_ASM_BODY S4Q_ASM_MODE
#endif
#endif
/* (p, x, kk, w) in r0-r3; -zx = -(kk >> S) (exact: kk = 2^(S-1) + zx 2^S); returns the
 * readout sum (as s4q_modes). */
__attribute__((naked, noinline)) static int32_t s4q_modes_asm(S4Q_UNUSED const s4q_mode_t *p,
                                                              S4Q_UNUSED int8_t *x,
                                                              S4Q_UNUSED int32_t kk,
                                                              S4Q_UNUSED int32_t w) {
    __asm__ volatile(
        "push {r4, r5, r6, r7, r8, r9, r10, r11, lr}\n\t"
        "mov r9, r3\n\t"
        "mov r3, r2\n\t"
        "asr r10, r2, #" S4Q_STR(STATE_SHIFT) "\n\t"
        "rsb r10, r10, #0\n\t"
        "movw r2, #" S4Q_STR(S4Q_RECORDS) " * 20\n\t"
        "add r2, r0\n\t"
        "mov r11, #0\n"
        "1:\n\t"
        S4Q_ASM_BODY
        "cmp r0, r2\n\t"
        "bne 1b\n\t"
        "mov r0, r11\n\t"
        "pop {r4, r5, r6, r7, r8, r9, r10, r11, pc}\n");
}
#else
#define S4Q_ASM_MODES 0
#endif
#if LIN_NIB
/* Both conv rows of output j against the activation pairs gp (the SIMD loop below, fully
 * unrolled), for rows of eight nibbles a word: r0/r1 the rows, r2 gp, r11 the nibble mask;
 * per word of each row AND (low nibbles) and AND with LSR #4 (high nibbles), then UXTB16
 * (ror 8) + SMLAD per weight pair against one LDM of four activation pairs. out[0..2] = the
 * two sums. */
__attribute__((naked, noinline)) static void s4q_conv_asm(S4Q_UNUSED const uint32_t *wa,
                                                          S4Q_UNUSED const uint32_t *wb,
                                                          S4Q_UNUSED const uint32_t *gp,
                                                          S4Q_UNUSED int32_t *out) {
    __asm__ volatile(
        "push {r3, r4, r5, r6, r7, r8, r9, r10, r11, lr}\n\t"
        "mov r12, #0\n\t"
        "mov lr, #0\n\t"
        "mov r11, #0x0f0f0f0f\n\t"
        ".rept " S4Q_STR(LIN_WORDS) "\n\t"
        "ldr r4, [r0], #4\n\t"
        "ldr r5, [r1], #4\n\t"
        "ldmia r2!, {r6, r7, r8, r9}\n\t"
        "and r10, r4, r11\n\t"
        "and r4, r11, r4, lsr #4\n\t"
        "uxtb16 r3, r10\n\t"
        "smlad r12, r3, r6, r12\n\t"
        "uxtb16 r3, r10, ror #8\n\t"
        "smlad r12, r3, r7, r12\n\t"
        "uxtb16 r3, r4\n\t"
        "smlad r12, r3, r8, r12\n\t"
        "uxtb16 r3, r4, ror #8\n\t"
        "smlad r12, r3, r9, r12\n\t"
        "and r10, r5, r11\n\t"
        "and r5, r11, r5, lsr #4\n\t"
        "uxtb16 r3, r10\n\t"
        "smlad lr, r3, r6, lr\n\t"
        "uxtb16 r3, r10, ror #8\n\t"
        "smlad lr, r3, r7, lr\n\t"
        "uxtb16 r3, r5\n\t"
        "smlad lr, r3, r8, lr\n\t"
        "uxtb16 r3, r5, ror #8\n\t"
        "smlad lr, r3, r9, lr\n\t"
        ".endr\n\t"
        "pop {r3}\n\t"
        "strd r12, lr, [r3]\n\t"
        "pop {r4, r5, r6, r7, r8, r9, r10, r11, pc}\n");
}
#else
/* Both conv rows of output j against the activation pairs gp (the SIMD loop below, fully
 * unrolled): r0/r1 the rows, r2 gp; per two words of each row one LDM each and one LDM of
 * four activation pairs, then SXTB16 (ror 8) + SMLAD per weight pair. out[0..2] = the two
 * sums. */
__attribute__((naked, noinline)) static void s4q_conv_asm(S4Q_UNUSED const uint32_t *wa,
                                                          S4Q_UNUSED const uint32_t *wb,
                                                          S4Q_UNUSED const uint32_t *gp,
                                                          S4Q_UNUSED int32_t *out) {
    __asm__ volatile(
        "push {r3, r4, r5, r6, r7, r8, r9, r10, r11, lr}\n\t"
        "mov r12, #0\n\t"
        "mov lr, #0\n\t"
        ".rept " S4Q_STR(LIN_WORDS) " / 2\n\t"
        "ldmia r0!, {r4, r5}\n\t"
        "ldmia r1!, {r6, r7}\n\t"
        "ldmia r2!, {r8, r9, r10, r11}\n\t"
        "sxtb16 r3, r4\n\t"
        "smlad r12, r3, r8, r12\n\t"
        "sxtb16 r3, r4, ror #8\n\t"
        "smlad r12, r3, r9, r12\n\t"
        "sxtb16 r3, r5\n\t"
        "smlad r12, r3, r10, r12\n\t"
        "sxtb16 r3, r5, ror #8\n\t"
        "smlad r12, r3, r11, r12\n\t"
        "sxtb16 r3, r6\n\t"
        "smlad lr, r3, r8, lr\n\t"
        "sxtb16 r3, r6, ror #8\n\t"
        "smlad lr, r3, r9, lr\n\t"
        "sxtb16 r3, r7\n\t"
        "smlad lr, r3, r10, lr\n\t"
        "sxtb16 r3, r7, ror #8\n\t"
        "smlad lr, r3, r11, lr\n\t"
        ".endr\n\t"
        ".if " S4Q_STR(LIN_WORDS) " % 2\n\t"
        "ldr r4, [r0]\n\t"
        "ldr r6, [r1]\n\t"
        "ldmia r2, {r8, r9}\n\t"
        "sxtb16 r3, r4\n\t"
        "smlad r12, r3, r8, r12\n\t"
        "sxtb16 r3, r4, ror #8\n\t"
        "smlad r12, r3, r9, r12\n\t"
        "sxtb16 r3, r6\n\t"
        "smlad lr, r3, r8, lr\n\t"
        "sxtb16 r3, r6, ror #8\n\t"
        "smlad lr, r3, r9, lr\n\t"
        ".endif\n\t"
        "pop {r3}\n\t"
        "strd r12, lr, [r3]\n\t"
        "pop {r4, r5, r6, r7, r8, r9, r10, r11, pc}\n");
}
#endif
#else
#define S4Q_ASM 0
#define S4Q_ASM_MODES 0
#endif

void s4q_reset(s4q_state *st) {
    int k;
    for (k = 0; k < S4Q_HEADS * S4Q_MODES; k++) {
        st->x[2 * k] = (int8_t)ST_Z[k / S4Q_MODES];
        st->x[2 * k + 1] = (int8_t)ST_Z[k / S4Q_MODES];
    }
    for (k = 0; k < S4Q_HEADS; k++) { st->g[k] = 0; st->sums[k] = 0; }
    st->t = 0;
}

int s4q_advance(s4q_state *st, const int8_t *input) {
    int h, i, j;
    int32_t gsum = 0, xin[S4Q_D_INPUT];
    int16_t gc[S4Q_HEADS];
#if S4Q_SIMD
    uint32_t gp[LIN_WORDS * LIN_CPW / 2];
#endif
    if (st->t >= S4Q_MAX_STEPS) return -1;
    for (i = 0; i < S4Q_D_INPUT; i++) xin[i] = (int32_t)s4q_clamp(input[i], IN_QMIN, IN_QMAX) - IN_Z;
    for (h = 0; h < S4Q_HEADS; h++) {
        int32_t acc = 0, u, w, wm = W_MAX[h], re_cx;
        const int32_t sz = ST_Z[h];
        /* (v + 2^(S-1)) >> S, plus sz, in one constant: exact since sz 2^S is a multiple of
         * 2^S, and inside i32 by the export bound. */
        const int32_t kk = (int32_t)(1u << (STATE_SHIFT - 1)) + sz * (int32_t)(1u << STATE_SHIFT);
#if STATE_FULL_GRID
        const int32_t lo = -128, hi = 127;
#else
        const int32_t lo = ST_LO[h], hi = ST_HI[h];
#endif
        const s4q_mode_t *p = MODES + h * S4Q_RECORDS;
        int8_t *x = st->x + 2 * h * S4Q_MODES;
        int64_t yacc, qy;
        for (i = 0; i < S4Q_D_INPUT; i++)
            acc += xin[i] * ((int32_t)ENC_W[i * S4Q_HEADS + h] - ENC_WZ[h]);
        u = s4q_sat32(s4q_requant(acc, ENC_M[h], ENC_BIAS[h], ENC_SH(h)));
        w = s4q_sat32(s4q_requant(u, BURQ_M[h], 0, BURQ_SH(h)));
        w = w < -wm ? -wm : (w > wm ? wm : w);
#if S4Q_ASM_MODES
        (void)lo; (void)hi;
        re_cx = s4q_modes_asm(p, x, kk, w);
#else
        re_cx = s4q_modes(p, x, kk, w, sz, lo, hi);
#endif
        re_cx -= sz * CSUM[h];
        yacc = s4q_requant(re_cx, CYRQ_M[h], 0, CYRQ_SH(h))
             + s4q_requant(u, DYRQ_M[h], 0, DYRQ_SH(h));
        qy = s4q_clamp(s4q_shr_round(yacc, FRAC) + Y_Z, Y_QMIN, Y_QMAX);
        st->g[h] = GELU[qy - Y_QMIN];
        gc[h] = (int16_t)(st->g[h] - G_Z);
        gsum += gc[h];
    }
#if S4Q_SIMD
    /* Activation pairs in the lane order the weight unpacking yields: per word of four
     * bytes (g0, g2), (g1, g3) (SXTB16, SXTB16 ror 8); per word of eight nibbles (g0, g4),
     * (g2, g6), (g1, g5), (g3, g7) (UXTB16 and UXTB16 ror 8 of the low, then the high
     * nibbles). */
#if S4Q_HEADS % LIN_CPW == 0
    for (i = 0; i < LIN_WORDS; i++) {
        const int16_t *c = gc + LIN_CPW * i;
#if LIN_NIB
        gp[4 * i] = s4q_pkhbt(c[0], c[4]);
        gp[4 * i + 1] = s4q_pkhbt(c[2], c[6]);
        gp[4 * i + 2] = s4q_pkhbt(c[1], c[5]);
        gp[4 * i + 3] = s4q_pkhbt(c[3], c[7]);
#else
        gp[2 * i] = s4q_pkhbt(c[0], c[2]);
        gp[2 * i + 1] = s4q_pkhbt(c[1], c[3]);
#endif
    }
#else
    for (i = 0; i < LIN_WORDS; i++) {
        static const uint8_t order[8] = {0, 4, 2, 6, 1, 5, 3, 7};
        int32_t gw[LIN_CPW];
        for (j = 0; j < LIN_CPW; j++)
            gw[j] = LIN_CPW * i + j < S4Q_HEADS ? gc[LIN_CPW * i + j] : 0;
        for (j = 0; j < LIN_CPW / 2; j++) {
            int lo_i = LIN_NIB ? order[2 * j] : (j == 0 ? 0 : 1);
            int hi_i = LIN_NIB ? order[2 * j + 1] : (j == 0 ? 2 : 3);
            gp[LIN_CPW / 2 * i + j] = ((uint32_t)gw[lo_i] & 0xFFFFu) | ((uint32_t)gw[hi_i] << 16);
        }
    }
#endif
#endif
    for (j = 0; j < S4Q_HEADS; j++) {
        /* sum_h (g - zg)(W - zW) = sum_h (g - zg) W - zW sum_h (g - zg): exact in i32. */
        const uint32_t *wa = LIN_WT + j * LIN_WORDS, *wb = LIN_WT + (S4Q_HEADS + j) * LIN_WORDS;
        int32_t acc_a = 0, acc_b = 0, bq;
        int64_t av, o;
#if S4Q_ASM
        {
            int32_t ab[2];
            s4q_conv_asm(wa, wb, gp, ab);
            acc_a = ab[0];
            acc_b = ab[1];
        }
#elif S4Q_SIMD && LIN_NIB
        for (i = 0; i < LIN_WORDS; i++) {
            const uint32_t *g = gp + 4 * i;
            const uint32_t alo = wa[i] & 0x0F0F0F0Fu, ahi = (wa[i] >> 4) & 0x0F0F0F0Fu;
            const uint32_t blo = wb[i] & 0x0F0F0F0Fu, bhi = (wb[i] >> 4) & 0x0F0F0F0Fu;
            acc_a = __smlad(__uxtb16(alo), g[0], acc_a);
            acc_a = __smlad(s4q_uxtb16_ror8(alo), g[1], acc_a);
            acc_a = __smlad(__uxtb16(ahi), g[2], acc_a);
            acc_a = __smlad(s4q_uxtb16_ror8(ahi), g[3], acc_a);
            acc_b = __smlad(__uxtb16(blo), g[0], acc_b);
            acc_b = __smlad(s4q_uxtb16_ror8(blo), g[1], acc_b);
            acc_b = __smlad(__uxtb16(bhi), g[2], acc_b);
            acc_b = __smlad(s4q_uxtb16_ror8(bhi), g[3], acc_b);
        }
#elif S4Q_SIMD
        for (i = 0; i < LIN_WORDS; i++) {
            const uint32_t a4 = wa[i], b4 = wb[i], g02 = gp[2 * i], g13 = gp[2 * i + 1];
            acc_a = __smlad(__sxtb16(a4), g02, acc_a);
            acc_a = __smlad(s4q_sxtb16_ror8(a4), g13, acc_a);
            acc_b = __smlad(__sxtb16(b4), g02, acc_b);
            acc_b = __smlad(s4q_sxtb16_ror8(b4), g13, acc_b);
        }
#else
        for (h = 0; h < S4Q_HEADS; h++) {
            acc_a += gc[h] * s4q_lin_code(wa, (uint32_t)h);
            acc_b += gc[h] * s4q_lin_code(wb, (uint32_t)h);
        }
#endif
        acc_a -= LIN_WZ[j] * gsum;
        acc_b -= LIN_WZ[S4Q_HEADS + j] * gsum;
        av = s4q_sat32(s4q_requant(acc_a, LIN_M[j], LIN_BIAS[j], LINA_SH(j)));
        bq = s4q_sat32(s4q_requant(acc_b, LIN_M[S4Q_HEADS + j], LIN_BIAS[S4Q_HEADS + j],
                                   LINB_SH(j)));
#if SIGMOID_U32
        /* av is a saturated i32 and the gate in [0, 2^30]: one 32 x 32 -> 64 multiply. */
        o = s4q_clamp(s4q_shr_round((int64_t)(int32_t)av * (int32_t)s4q_sigmoid_q30(bq), 30 + FRAC)
                          + O_Z,
                      O_QMIN, O_QMAX);
#else
        o = s4q_clamp(s4q_shr_round(av * s4q_sigmoid_q30(bq), 30 + FRAC) + O_Z, O_QMIN, O_QMAX);
#endif
        st->sums[j] += o - O_Z;
    }
    st->t += 1;
    return 0;
}

void s4q_logits(const s4q_state *st, int8_t *out) {
    int k, h;
    for (k = 0; k < S4Q_CLASSES; k++) {
        int64_t acc = 0, l;
        int32_t p = 0;
        for (h = 0; h < S4Q_HEADS; h++)
            acc += st->sums[h] * ((int32_t)DEC_W[h * S4Q_CLASSES + k] - DEC_WZ[k]);
        if (st->t > 0)
            p = s4q_sat32(s4q_div_round(acc * ((int64_t)1 << POOL_FRAC), (int64_t)st->t));
        l = s4q_clamp(s4q_requant(p, DEC_M[k], DEC_BIAS[k], DEC_SH(k)) + L_Z[k], L_QMIN, L_QMAX);
        out[k] = (int8_t)l;
    }
}

int s4q_step(s4q_state *st, const int8_t *input, int8_t *out) {
    int r = s4q_advance(st, input);
    s4q_logits(st, out);
    return r;
}

int s4q_classify(s4q_state *st, const int8_t *inputs, uint32_t steps, int8_t *out) {
    uint32_t t;
    int k, best = 0;
    s4q_reset(st);
    for (t = 0; t < steps; t++) s4q_advance(st, inputs + (uint32_t)S4Q_D_INPUT * t);
    s4q_logits(st, out);
    for (k = 1; k < S4Q_CLASSES; k++)
        if (out[k] > out[best]) best = k;
    return best;
}
"#;
