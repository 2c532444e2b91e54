//! A float C baseline of the same classifier, the cost every integer figure is compared with.

use std::fmt::Write as _;
use std::path::Path;

use burn::prelude::*;
use qat::QuantizedClassifier;
use qat::integer::IntegerModel;

use crate::c_model::c_array;
use crate::{ExportError, write_file};

fn host_f32<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, ExportError> {
    qat::quantizer::to_host(t).map_err(|e| ExportError::Tensor(e.to_string()))
}

fn c_f32_array(out: &mut String, name: &str, v: &[f32]) {
    let lits: Vec<String> = v.iter().map(|x| format!("{x:e}f")).collect();
    c_array(out, "float", name, &lits);
}

/// The same classifier in float C, as a user would write it for a Cortex-M4F with
/// CMSIS-style loops (`float` weights of the float model, `float` complex state, `erff` /
/// `expf` from libm): the baseline every integer instruction count is compared with. Inputs
/// are the golden input codes dequantized on the fly (`(q - z) s`).
pub fn write_c_float(
    qc: &QuantizedClassifier,
    im: &IntegerModel,
    seqs: &[Vec<i8>],
    dir: &Path,
) -> Result<(), ExportError> {
    let f = &qc.float;
    // The baseline is the paper's one-block model; deep models have no float C yet.
    if !im.is_single_plain_block() || f.blocks.len() != 1 {
        return Err(ExportError::Unsupported(
            "a float baseline of stacked blocks (the float C covers one block without \
             residual or norm)"
                .into(),
        ));
    }
    let block = &f.blocks[0];
    let (a, b, c, d) = qc.ssm_matrices(0);
    let (h, m, k, din) = (im.heads, im.modes, im.classes, im.d_input);
    let mut s = String::from(
        "/* Float baseline of the s4q classifier (generated): float weights and state, libm\n * GELU/sigmoid, plain loops. Not bit-exact with the integer model; a cost baseline. */\n#include <stdint.h>\n#include <math.h>\n\n",
    );
    let _ = writeln!(
        s,
        "#define F_D {din}\n#define F_H {h}\n#define F_M {m}\n#define F_K {k}\n#define F_QGELU {}\n#define F_IN_Z {}\n#define F_IN_S {:e}f\n",
        u8::from(matches!(block.activation, s4d_model::Activation::Qgelu)),
        im.input.z,
        im.input_scale
    );
    c_f32_array(&mut s, "ENC_W", &host_f32(f.encoder.weight.val())?);
    let zeros = |n: usize| vec![0f32; n];
    let enc_b = match &f.encoder.bias {
        Some(b) => host_f32(b.val())?,
        None => zeros(h),
    };
    c_f32_array(&mut s, "ENC_B", &enc_b);
    for (name, t) in [
        ("A_RE", a.re),
        ("A_IM", a.im),
        ("B_RE", b.re),
        ("B_IM", b.im),
        ("C_RE", c.re),
        ("C_IM", c.im),
    ] {
        c_f32_array(&mut s, name, &host_f32(t)?);
    }
    c_f32_array(&mut s, "D_SKIP", &host_f32(d)?);
    // Conv weights transposed to [2H][H] rows, as a CMSIS mat-vec would store them.
    let lw = host_f32(block.conv.weight.val())?;
    let lt: Vec<f32> = (0..2 * h)
        .flat_map(|j| (0..h).map(move |hh| (hh, j)))
        .map(|(hh, j)| lw[hh * 2 * h + j])
        .collect();
    c_f32_array(&mut s, "LIN_W", &lt);
    let lin_b = match &block.conv.bias {
        Some(b) => host_f32(b.val())?,
        None => zeros(2 * h),
    };
    c_f32_array(&mut s, "LIN_B", &lin_b);
    let dw = host_f32(f.decoder.weight.val())?;
    let dt: Vec<f32> = (0..k)
        .flat_map(|kk| (0..h).map(move |hh| (hh, kk)))
        .map(|(hh, kk)| dw[hh * k + kk])
        .collect();
    c_f32_array(&mut s, "DEC_W", &dt);
    let dec_b = match &f.decoder.bias {
        Some(b) => host_f32(b.val())?,
        None => zeros(k),
    };
    c_f32_array(&mut s, "DEC_B", &dec_b);
    // The float model's own classes (burn, recurrent mode) on the golden inputs: the float
    // harness checks the C baseline computes the same model.
    let device = f.decoder.weight.val().device();
    let mut burn_class = Vec::with_capacity(seqs.len());
    let mut i = 0;
    while i < seqs.len() {
        // A batch of up to 25 consecutive sequences of one length (all of them when the
        // golden sequences are of equal length).
        let len = seqs[i].len();
        let n = seqs[i..]
            .iter()
            .take(25)
            .take_while(|q| q.len() == len)
            .count();
        let chunk = &seqs[i..i + n];
        i += n;
        let steps = len / din;
        let vals: Vec<f32> = chunk
            .iter()
            .flatten()
            .map(|&q| (q as f32 - im.input.z as f32) * im.input_scale)
            .collect();
        let x =
            Tensor::<1>::from_floats(vals.as_slice(), &device).reshape([chunk.len(), steps, din]);
        let pred = host_f32(
            f.forward(x, s4d_model::SsmMode::Recurrent)
                .argmax(1)
                .float()
                .reshape([chunk.len()]),
        )?;
        burn_class.extend(pred.iter().map(|&p| p as i32));
    }
    c_array(&mut s, "int32_t", "BURN_CLASS", &burn_class);
    s.push_str(C_FLOAT_ENGINE);
    write_file(&dir.join("s4q_float.c"), s.as_bytes())?;
    write_file(&dir.join("harness_float.c"), C_FLOAT_HARNESS.as_bytes())?;
    Ok(())
}

const C_FLOAT_ENGINE: &str = r#"
typedef struct {
    float xr[F_H * F_M], xi[F_H * F_M], pool[F_H];
    uint32_t t;
} s4qf_state;

static float s4qf_gelu(float y) {
#if F_QGELU
    float c = y + 2.0f;
    c = c < 0.0f ? 0.0f : (c > 1.0f ? 1.0f : c);
    return y * c;
#else
    return 0.5f * y * (1.0f + erff(y * 0.70710678f));
#endif
}

void s4qf_reset(s4qf_state *st) {
    int i;
    for (i = 0; i < F_H * F_M; i++) { st->xr[i] = 0.0f; st->xi[i] = 0.0f; }
    for (i = 0; i < F_H; i++) st->pool[i] = 0.0f;
    st->t = 0;
}

/* One time step of F_D input values. */
void s4qf_advance(s4qf_state *st, const float *in) {
    float g[F_H];
    int h, n, i, j;
    for (h = 0; h < F_H; h++) {
        float u = ENC_B[h], y = 0.0f;
        const float *ar = A_RE + h * F_M, *ai = A_IM + h * F_M, *br = B_RE + h * F_M;
        const float *bi = B_IM + h * F_M, *cr = C_RE + h * F_M, *ci = C_IM + h * F_M;
        float *xr = st->xr + h * F_M, *xi = st->xi + h * F_M;
        for (i = 0; i < F_D; i++) u += in[i] * ENC_W[i * F_H + h];
        for (n = 0; n < F_M; n++) {
            float r = ar[n] * xr[n] - ai[n] * xi[n] + br[n] * u;
            float m = ar[n] * xi[n] + ai[n] * xr[n] + bi[n] * u;
            xr[n] = r;
            xi[n] = m;
            y += cr[n] * r - ci[n] * m;
        }
        g[h] = s4qf_gelu(2.0f * y + D_SKIP[h] * u);
    }
    for (j = 0; j < F_H; j++) {
        const float *wa = LIN_W + j * F_H, *wb = LIN_W + (F_H + j) * F_H;
        float a = LIN_B[j], b = LIN_B[F_H + j];
        for (h = 0; h < F_H; h++) { a += wa[h] * g[h]; b += wb[h] * g[h]; }
        st->pool[j] += a / (1.0f + expf(-b));
    }
    st->t += 1;
}

int s4qf_classify(s4qf_state *st, const int8_t *codes, uint32_t steps) {
    uint32_t t;
    int i, k, best = 0;
    float in[F_D], logits[F_K];
    s4qf_reset(st);
    for (t = 0; t < steps; t++) {
        for (i = 0; i < F_D; i++) in[i] = (float)(codes[t * F_D + i] - F_IN_Z) * F_IN_S;
        s4qf_advance(st, in);
    }
    for (k = 0; k < F_K; k++) {
        float l = DEC_B[k];
        int h;
        for (h = 0; h < F_H; h++) l += DEC_W[k * F_H + h] * (st->pool[h] / (float)steps);
        logits[k] = l;
        if (l > logits[best]) best = k;
    }
    return best;
}

static s4qf_state s4qf_st;
int s4qf_classify_any(const int8_t *codes, uint32_t steps) {
    return s4qf_classify(&s4qf_st, codes, steps);
}

/* The float model's class of golden sequence i as burn computed it at export. */
int s4qf_burn_class(uint32_t i) { return BURN_CLASS[i]; }
"#;

const C_FLOAT_HARNESS: &str = r##"/* Float-baseline harness (generated): classifies every golden sequence, counts agreement of
 * its class with the integer model's golden class, reports ticks like harness.c. */
#include "s4q_golden.h"

void s4q_out(const char *s);
uint32_t s4q_ticks(void);
uint32_t s4q_tick_calibration(void);
void s4q_exit(int code);

int s4qf_classify_any(const int8_t *codes, uint32_t steps);
int s4qf_burn_class(uint32_t i);

static void put_int(long v) {
    char buf[24];
    int i = 23;
    int neg = v < 0;
    unsigned long u = neg ? 0UL - (unsigned long)v : (unsigned long)v;
    buf[i] = 0;
    do { buf[--i] = (char)('0' + (int)(u % 10)); u /= 10; } while (u);
    if (neg) buf[--i] = '-';
    s4q_out(buf + i);
}

int main(void) {
    uint32_t i, same = 0, same_burn = 0, t0, t1, ticks = 0;
    for (i = 0; i < S4Q_GOLDEN_N; i++) {
        int k, best = 0, cls;
        t0 = s4q_ticks();
        cls = s4qf_classify_any(s4q_golden_inputs + s4q_golden_start[i], s4q_golden_steps[i]);
        t1 = s4q_ticks();
        ticks += t1 - t0;
        for (k = 1; k < (int)(sizeof s4q_golden_logits[0]); k++)
            if (s4q_golden_logits[i][k] > s4q_golden_logits[i][best]) best = k;
        if (cls == best) same++;
        if (cls == s4qf_burn_class(i)) same_burn++;
    }
    s4q_out("# ticks ");
    put_int((long)ticks);
    s4q_out(" steps ");
    put_int((long)S4Q_GOLDEN_TOTAL_STEPS);
    s4q_out(" calibration_ticks_per_2M_instructions ");
    put_int((long)s4q_tick_calibration());
    s4q_out("\n# float agrees with the integer class on ");
    put_int((long)same);
    s4q_out(" of ");
    put_int((long)S4Q_GOLDEN_N);
    s4q_out("\n# float C agrees with burn's float model on ");
    put_int((long)same_burn);
    s4q_out(" of ");
    put_int((long)S4Q_GOLDEN_N);
    s4q_out("\n");
    s4q_exit(0);
    return 0;
}
"##;
