//! The C engine of stacked blocks (residual sums, pre- or post-norms): portable C99 that computes,
//! block after block, the integers `s4q_runtime::Model` computes (its module doc specifies
//! them). Each block is a table of `const` arrays and one descriptor record; the per-step
//! loop walks the descriptors. The paper's one-block model keeps its specialised engine
//! (`c_model`, with the Thumb-2 loops); this one shares its rounding, sigmoid and pooling
//! code, so the two differ only in the block stages.

use std::fmt::Write as _;

use qat::integer::{IntBlock, IntegerModel, NormStage, Requant};

use crate::c_model::{c_array, c_i64_array, c_requant};

/// Requantization arrays of a block stage under `name`: multipliers, shifts and biases (zero
/// where the stage has none), so every stage reads the same three pointers.
fn requant_arrays(s: &mut String, name: &str, r: &Requant) {
    c_array(s, "int32_t", &format!("{name}_M"), &r.m);
    c_array(s, "uint8_t", &format!("{name}_SH"), &r.shift);
    let zeros = vec![0i64; r.m.len()];
    c_i64_array(s, &format!("{name}_B"), r.bias.as_deref().unwrap_or(&zeros));
}

fn widen(v: &[i8]) -> Vec<i32> {
    v.iter().map(|&x| x as i32).collect()
}

/// Block `b`'s arrays (prefix `B{b}_`) and its descriptor initialiser.
fn block_tables(s: &mut String, b: usize, blk: &IntBlock) -> String {
    let p = format!("B{b}_");
    let arr32 = |s: &mut String, name: &str, v: &[i32]| {
        c_array(s, "int32_t", &format!("{p}{name}"), v);
    };
    arr32(s, "A_RE", &blk.a_re);
    arr32(s, "A_IM", &blk.a_im);
    c_array(s, "int8_t", &format!("{p}B_RE"), &widen(&blk.b_re));
    c_array(s, "int8_t", &format!("{p}B_IM"), &widen(&blk.b_im));
    arr32(s, "B_Z", &blk.b_z);
    c_array(s, "int8_t", &format!("{p}C_RE"), &widen(&blk.c_re));
    c_array(s, "int8_t", &format!("{p}C_IM"), &widen(&blk.c_im));
    arr32(s, "C_Z", &blk.c_z);
    requant_arrays(s, &format!("{p}BU"), &blk.bu_rq);
    arr32(s, "W_MAX", &blk.w_max);
    requant_arrays(s, &format!("{p}CY"), &blk.cy_rq);
    requant_arrays(s, &format!("{p}DY"), &blk.dy_rq);
    arr32(s, "ST_Z", &blk.state_z);
    arr32(s, "ST_LO", &blk.state_lo);
    arr32(s, "ST_HI", &blk.state_hi);
    c_array(s, "int8_t", &format!("{p}GELU"), &widen(&blk.gelu));
    c_array(s, "int8_t", &format!("{p}LIN_W"), &widen(&blk.lin_w));
    arr32(s, "LIN_WZ", &blk.lin_wz);
    requant_arrays(s, &format!("{p}LIN"), &blk.lin);
    // The residual and norm stages: arrays of the stage, or stand-ins of the right type
    // (never read: the kind fields say which stages exist).
    let none = Requant {
        m: vec![0],
        shift: vec![0],
        bias: None,
    };
    let (has_res, rf, rx, r_frac, r_out) = match &blk.residual {
        Some(r) => (1, &r.f, &r.x, r.frac, r.out),
        None => (0, &none, &none, 0, blk.glu_out),
    };
    requant_arrays(s, &format!("{p}RF"), rf);
    requant_arrays(s, &format!("{p}RX"), rx);
    // Norm kinds as in the model file: 1, 2 after the residual sum; 3, 4 on the block input.
    let pre = blk.pre_norm().is_some();
    let on_input = if pre { 2 } else { 0 };
    let (kind, e16, sqrt_frac, affine) = match &blk.norm {
        None => (0, 0, 0, None),
        Some(NormStage::Layer(ln)) => (1 + on_input, ln.e16, ln.sqrt_frac, Some(&ln.affine)),
        Some(NormStage::Batch(a)) => (2 + on_input, 0, 0, Some(a)),
    };
    let (n_lo, n_hi) = blk.prenorm.map_or((0, 0), |r| (r.lo, r.hi));
    let (n_m, n_b, n_shift, n_out) = match affine {
        Some(a) => (a.m.clone(), a.bias.clone(), a.shift, a.out),
        None => (vec![0], vec![0], 0, blk.glu_out),
    };
    arr32(s, "N_M", &n_m);
    c_i64_array(s, &format!("{p}N_B"), &n_b);
    let out = blk.out_grid();
    // A post-norm reads codes of the sum's grid; a pre-norm the block input, already centred.
    let norm_in_z = match (pre, has_res) {
        (true, _) => 0,
        (false, 1) => r_out.z,
        (false, _) => blk.glu_out.z,
    };
    let g = |g: qat::integer::IntGrid| format!("{}, {}, {}", g.z, g.qmin, g.qmax);
    format!(
        "    {{{frac}u, {ss}u, {p}A_RE, {p}A_IM, {p}B_RE, {p}B_IM, {p}B_Z, {p}C_RE, {p}C_IM, \
         {p}C_Z,\n     {{{p}BU_M, {p}BU_SH, {p}BU_B}}, {p}W_MAX, {{{p}CY_M, {p}CY_SH, {p}CY_B}}, \
         {{{p}DY_M, {p}DY_SH, {p}DY_B}},\n     {p}ST_Z, {p}ST_LO, {p}ST_HI, {{{y}}}, {p}GELU, \
         {gz}, {p}LIN_W, {p}LIN_WZ, {{{p}LIN_M, {p}LIN_SH, {p}LIN_B}}, {{{o}}},\n     \
         {has_res}, {{{p}RF_M, {p}RF_SH, {p}RF_B}}, {{{p}RX_M, {p}RX_SH, {p}RX_B}}, {r_frac}u, \
         {{{r}}},\n     {kind}, UINT64_C({e16}), {p}N_M, {p}N_B, {n_shift}u, {{{n}}}, {nz}, \
         {out_z}, {n_lo}, {n_hi}, {sqrt_frac}u}},\n",
        frac = blk.frac,
        ss = blk.state_shift,
        y = g(blk.ssm_out),
        gz = blk.act_z,
        o = g(blk.glu_out),
        r = g(r_out),
        n = g(n_out),
        nz = norm_in_z,
        out_z = out.z,
    )
}

/// `s4q_model.c` of a model with stacked blocks: global constants, each block's tables and
/// descriptor, the shared helpers (`helpers`: rounding, requantization, sigmoid) and tail
/// (`tail`: logits, step, classify) of the one-block engine, and the deep step.
pub(crate) fn c_source_deep(im: &IntegerModel, helpers: &str, tail: &str) -> String {
    let mut s = String::from(
        "/* s4q integer S4D classifier, stacked blocks (generated; see s4q_model.h). */\n\
         #include \"s4q_model.h\"\n\n",
    );
    let _ = writeln!(s, "#define POOL_FRAC {}u", im.pool_frac);
    let _ = writeln!(
        s,
        "#define IN_Z {}\n#define IN_QMIN {}\n#define IN_QMAX {}",
        im.input.z, im.input.qmin, im.input.qmax
    );
    let _ = writeln!(
        s,
        "#define L_QMIN {}\n#define L_QMAX {}\n#define POOL_Z {}\n",
        im.logits_qmin,
        im.logits_qmax,
        im.pool_grid().z
    );
    c_array(&mut s, "int8_t", "ENC_W", &widen(&im.enc_w));
    c_array(&mut s, "int32_t", "ENC_WZ", &im.enc_wz);
    requant_arrays(&mut s, "ENC", &im.enc);
    let sig_u32 = im.sigmoid.len() == 1025
        && im.sigmoid.iter().all(|&v| (0..=1 << 30).contains(&v))
        && im
            .sigmoid
            .windows(2)
            .all(|w| (0..=1 << 22).contains(&(w[1] - w[0])));
    let _ = writeln!(s, "#define SIGMOID_U32 {}", u8::from(sig_u32));
    c_array(&mut s, "int32_t", "SIGMOID", &im.sigmoid);
    c_array(&mut s, "int8_t", "DEC_W", &widen(&im.dec_w));
    c_array(&mut s, "int32_t", "DEC_WZ", &im.dec_wz);
    c_requant(&mut s, "DEC", &im.dec);
    c_array(&mut s, "int32_t", "L_Z", &im.logits_z);
    s.push_str(C_DEEP_TYPES);
    let mut descs = String::new();
    for (b, blk) in im.blocks.iter().enumerate() {
        descs.push_str(&block_tables(&mut s, b, blk));
    }
    let _ = write!(
        s,
        "static const s4q_block_t BLOCKS[S4Q_BLOCKS] = {{\n{descs}}};\n"
    );
    s.push_str(helpers);
    s.push_str(C_DEEP_ENGINE);
    s.push_str(tail);
    s
}

const C_DEEP_TYPES: &str = r#"
typedef struct { const int32_t *m; const uint8_t *sh; const int64_t *b; } s4q_rq_t;
typedef struct { int32_t z, qmin, qmax; } s4q_grid_t;
/* One block (s4q_runtime::Model's module doc): SSM, GELU table, conv + GLU, the residual sum
 * (has_res) and the norm (norm: 0 none; 1 LayerNorm, 2 BatchNorm after the residual sum; 3
 * LayerNorm, 4 BatchNorm on the block input, clamped to [n_lo, n_hi]; n_in_z the zero point
 * of its input, n_sf LayerNorm's root fraction bits), and out_z, the zero point of the
 * block's output grid. */
typedef struct {
    uint32_t frac, state_shift;
    const int32_t *a_re, *a_im;
    const int8_t *b_re, *b_im;
    const int32_t *b_z;
    const int8_t *c_re, *c_im;
    const int32_t *c_z;
    s4q_rq_t bu;
    const int32_t *w_max;
    s4q_rq_t cy, dy;
    const int32_t *st_z, *st_lo, *st_hi;
    s4q_grid_t y;
    const int8_t *gelu;
    int32_t g_z;
    const int8_t *lin_w;
    const int32_t *lin_wz;
    s4q_rq_t lin;
    s4q_grid_t o;
    int32_t has_res;
    s4q_rq_t rf, rx;
    uint32_t r_frac;
    s4q_grid_t r;
    int32_t norm;
    uint64_t e16;
    const int32_t *n_m;
    const int64_t *n_b;
    uint32_t n_shift;
    s4q_grid_t n;
    int32_t n_in_z, out_z;
    int32_t n_lo, n_hi;
    uint32_t n_sf;
} s4q_block_t;
"#;

/// The deep step. LayerNorm is `s4q_runtime::norm`'s: integer sum and variance, the exact
/// digit-by-digit square root, one 64-bit division per step.
const C_DEEP_ENGINE: &str = r#"
#define S4Q_PER_BLOCK (2 * S4Q_HEADS * S4Q_MODES)

S4Q_INLINE int64_t s4q_rq(const s4q_rq_t *q, int c, int32_t acc) {
    return s4q_requant(acc, q->m[c], q->b[c], q->sh[c]);
}

/* floor(sqrt(x)), exactly (s4q_runtime::norm::isqrt_u64). */
static uint64_t s4q_isqrt(uint64_t x) {
    uint64_t rem = x, root = 0, bit = (uint64_t)1 << 62;
    while (bit > rem) bit >>= 2;
    while (bit != 0) {
        if (rem >= root + bit) {
            rem -= root + bit;
            root = (root >> 1) + bit;
        } else {
            root >>= 1;
        }
        bit >>= 2;
    }
    return root;
}

S4Q_INLINE int32_t s4q_affine(int32_t x, int32_t m, int64_t bias, uint32_t s, int32_t lo,
                              int32_t hi) {
    return (int32_t)s4q_clamp(s4q_shr_round((int64_t)x * m + bias, s), lo, hi);
}

static int32_t s4q_encode(const int32_t *xin, int h) {
    int32_t acc = 0;
    int i;
    for (i = 0; i < S4Q_D_INPUT; i++)
        acc += xin[i] * ((int32_t)ENC_W[i * S4Q_HEADS + h] - ENC_WZ[h]);
    return s4q_sat32(s4q_requant(acc, ENC_M[h], ENC_B[h], ENC_SH[h]));
}

/* Value j of the input a block's norm reads: the step's codes for a post-norm (norm 1, 2);
 * for a pre-norm (3, 4) the block input (u for block 0, else the previous output code minus
 * its zero point zin), clamped to [n_lo, n_hi]. */
S4Q_INLINE int32_t s4q_norm_in(const s4q_block_t *k, const int8_t *io, const int32_t *xin,
                               int b, int32_t zin, int j) {
    int32_t v;
    if (k->norm <= 2) return io[j];
    v = b == 0 ? s4q_encode(xin, j) : (int32_t)io[j] - zin;
    return v < k->n_lo ? k->n_lo : (v > k->n_hi ? k->n_hi : v);
}

/* A block's norm into output codes out (which may be io: each value is read before its code
 * is written). LayerNorm: integer sum and variance, the variance term with 2 n_sf fraction
 * bits normalised into [2^60, 2^62) so the root has 31 bits, one division
 * (s4q_runtime::norm::LnStep); BatchNorm: the affine of the centred input. */
static void s4q_norm(const s4q_block_t *k, const int8_t *io, const int32_t *xin, int b,
                     int32_t zin, int8_t *out) {
    int j;
    if (k->norm == 1 || k->norm == 3) {
        int64_t sum = 0, inv = 0;
        uint64_t var = 0, r;
        unsigned sh = 40u - k->n_sf;
        for (j = 0; j < S4Q_HEADS; j++) sum += s4q_norm_in(k, io, xin, b, zin, j);
        for (j = 0; j < S4Q_HEADS; j++) {
            const int64_t d = (int64_t)S4Q_HEADS * s4q_norm_in(k, io, xin, b, zin, j) - sum;
            var += (uint64_t)(d * d);
        }
        r = (var << (2u * k->n_sf)) / S4Q_HEADS + k->e16;
        if (r != 0) {
            while (r < ((uint64_t)1 << 60)) {
                r <<= 2;
                sh -= 1;
            }
            inv = (int64_t)(((uint64_t)1 << 62) / s4q_isqrt(r));
        }
        for (j = 0; j < S4Q_HEADS; j++) {
            const int64_t d = (int64_t)S4Q_HEADS * s4q_norm_in(k, io, xin, b, zin, j) - sum;
            const int32_t nv = (int32_t)s4q_shr_round(d * inv, sh);
            out[j] = (int8_t)s4q_affine(nv, k->n_m[j], k->n_b[j], k->n_shift, k->n.qmin,
                                        k->n.qmax);
        }
    } else {
        for (j = 0; j < S4Q_HEADS; j++)
            out[j] = (int8_t)s4q_affine(s4q_norm_in(k, io, xin, b, zin, j) - k->n_in_z,
                                        k->n_m[j], k->n_b[j], k->n_shift, k->n.qmin, k->n.qmax);
    }
}

void s4q_reset(s4q_state *st) {
    int b, k;
    for (b = 0; b < S4Q_BLOCKS; b++)
        for (k = 0; k < S4Q_HEADS * S4Q_MODES; k++) {
            const int8_t z = (int8_t)BLOCKS[b].st_z[k / S4Q_MODES];
            st->x[b * S4Q_PER_BLOCK + 2 * k] = z;
            st->x[b * S4Q_PER_BLOCK + 2 * k + 1] = z;
        }
    for (k = 0; k < S4Q_HEADS; k++) { st->g[k] = 0; st->io[k] = 0; st->sums[k] = 0; }
    st->t = 0;
}

int s4q_advance(s4q_state *st, const int8_t *input) {
    int b, h, i, j, n;
    int32_t xin[S4Q_D_INPUT];
    int8_t pre[S4Q_HEADS]; /* a pre-norm's codes: the SSM's input */
    if (st->t >= S4Q_MAX_STEPS) return -1;
    for (i = 0; i < S4Q_D_INPUT; i++) xin[i] = (int32_t)s4q_clamp(input[i], IN_QMIN, IN_QMAX) - IN_Z;
    for (b = 0; b < S4Q_BLOCKS; b++) {
        const s4q_block_t *k = &BLOCKS[b];
        const int last = b + 1 == S4Q_BLOCKS;
        const int post = k->norm == 1 || k->norm == 2;
        const int32_t zin = b == 0 ? 0 : BLOCKS[b - 1].out_z;
        const int32_t half = (int32_t)(1u << (k->state_shift - 1));
        int8_t *xb = st->x + b * S4Q_PER_BLOCK;
        if (!post && k->norm != 0) s4q_norm(k, st->io, xin, b, zin, pre);
        for (h = 0; h < S4Q_HEADS; h++) {
            /* The block input, or a pre-norm's code of it minus the zero point. */
            const int32_t v = k->norm >= 3 ? (int32_t)pre[h] - k->n.z
                              : b == 0     ? s4q_encode(xin, h)
                                           : (int32_t)st->io[h] - zin;
            const int32_t wm = k->w_max[h], bz = k->b_z[h], cz = k->c_z[h], sz = k->st_z[h];
            const int32_t lo = k->st_lo[h], hi = k->st_hi[h];
            int32_t w = s4q_sat32(s4q_rq(&k->bu, h, v)), re_cx = 0;
            int64_t yacc, qy;
            w = w < -wm ? -wm : (w > wm ? wm : w);
            for (n = 0; n < S4Q_MODES; n++) {
                const int kk = h * S4Q_MODES + n;
                int8_t *x = xb + 2 * kk;
                const int32_t ar = k->a_re[kk], ai = k->a_im[kk];
                const int32_t br = k->b_re[kk] - bz, bi = k->b_im[kk] - bz;
                const int32_t xr = x[0] - sz, xi = x[1] - sz;
                /* 32-bit, inside i32 by the export bound (re-checked by the runtime). */
                int32_t qr = s4q_asr32(br * w + ar * xr - ai * xi + half, k->state_shift) + sz;
                int32_t qi = s4q_asr32(bi * w + ar * xi + ai * xr + half, k->state_shift) + sz;
                qr = qr < lo ? lo : (qr > hi ? hi : qr);
                qi = qi < lo ? lo : (qi > hi ? hi : qi);
                x[0] = (int8_t)qr;
                x[1] = (int8_t)qi;
                re_cx += (k->c_re[kk] - cz) * (qr - sz) - (k->c_im[kk] - cz) * (qi - sz);
            }
            yacc = s4q_rq(&k->cy, h, re_cx) + s4q_rq(&k->dy, h, v);
            qy = s4q_clamp(s4q_shr_round(yacc, k->frac) + k->y.z, k->y.qmin, k->y.qmax);
            st->g[h] = k->gelu[qy - k->y.qmin];
        }
        for (j = 0; j < S4Q_HEADS; j++) {
            const int32_t za = k->lin_wz[j], zb = k->lin_wz[S4Q_HEADS + j];
            int32_t acc_a = 0, acc_b = 0, bq;
            int64_t av, o;
            for (h = 0; h < S4Q_HEADS; h++) {
                const int32_t g = st->g[h] - k->g_z;
                acc_a += g * (k->lin_w[h * 2 * S4Q_HEADS + j] - za);
                acc_b += g * (k->lin_w[h * 2 * S4Q_HEADS + S4Q_HEADS + j] - zb);
            }
            av = s4q_sat32(s4q_rq(&k->lin, j, acc_a));
            bq = s4q_sat32(s4q_rq(&k->lin, S4Q_HEADS + j, acc_b));
            o = s4q_clamp(s4q_shr_round(av * s4q_sigmoid_q30(bq), 30 + k->frac) + k->o.z,
                          k->o.qmin, k->o.qmax);
            if (k->has_res) {
                const int32_t v = b == 0 ? s4q_encode(xin, j) : (int32_t)st->io[j] - zin;
                const int64_t acc = s4q_rq(&k->rf, j, (int32_t)(o - k->o.z)) + s4q_rq(&k->rx, j, v);
                o = s4q_clamp(s4q_shr_round(acc, k->r_frac) + k->r.z, k->r.qmin, k->r.qmax);
            }
            if (last && !post)
                st->sums[j] += o - POOL_Z;
            else
                st->io[j] = (int8_t)o;
        }
        if (post) {
            /* Post-norm over the step's codes, in place. */
            s4q_norm(k, st->io, xin, b, zin, st->io);
            if (last)
                for (j = 0; j < S4Q_HEADS; j++) st->sums[j] += st->io[j] - POOL_Z;
        }
    }
    st->t += 1;
    return 0;
}

"#;
