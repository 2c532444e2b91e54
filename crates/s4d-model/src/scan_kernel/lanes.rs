//! Fixed-width row loops for `M` a multiple of eight modes (every preset: `M = 32`).
//!
//! The generic loops in the parent module take `M` at run time, so each time step runs one
//! short loop per quantity and parks `p`, the STE masks and the per-mode terms of `du` in
//! arrays between them: the step becomes a stream of loads and stores. Here `M = 8 C` with
//! `C` a compile-time constant, so a row's state, its adjoint and its gradient accumulators
//! are `[[f32; 8]; C]` values that LLVM keeps in vector registers (or in a few stack slots),
//! and one time step is a single straight-line block over all modes. The arithmetic is the
//! parent's, operation for operation and in the same order, so states and gradients are the
//! same numbers; only the reduction of `du` over modes is shared with the readout's order
//! (eight partial sums, lane `l` summing chunks in order).

use super::{BackwardRow, ForwardRow, LANES, RowMatrices, StateMap};

/// Eight consecutive modes.
type Lane = [f32; LANES];

/// Time steps whose sums over modes are taken together once the recurrence has moved past
/// them: a horizontal sum inside each step is a long dependency chain that holds up the
/// retirement of the next step's independent work.
const BLOCK: usize = 16;

/// Largest `C` with a compiled loop (`M <= 64` complex modes, `N <= 128`).
pub(super) const MAX_CHUNKS: usize = 8;

/// `Some(M / 8)` when the fixed-width loops cover `modes`.
pub(super) fn chunks_for(modes: usize) -> Option<usize> {
    let c = modes / LANES;
    (modes.is_multiple_of(LANES) && (1..=MAX_CHUNKS).contains(&c)).then_some(c)
}

#[inline(always)]
fn load<const C: usize>(v: &[f32]) -> [Lane; C] {
    let (chunks, _) = v.as_chunks::<LANES>();
    std::array::from_fn(|c| chunks[c])
}

#[inline(always)]
fn store<const C: usize>(v: &[Lane; C], out: &mut [f32]) {
    let (chunks, _) = out.as_chunks_mut::<LANES>();
    for (o, x) in chunks.iter_mut().zip(v) {
        *o = *x;
    }
}

/// The sum of a lane vector in the order the parent's `lane_sum` uses.
#[inline(always)]
fn lane_total(acc: &Lane) -> f32 {
    acc.iter().sum()
}

/// One head's matrices as lane vectors.
#[derive(Clone, Copy)]
struct Mats<const C: usize> {
    a_re: [Lane; C],
    a_im: [Lane; C],
    b_re: [Lane; C],
    b_im: [Lane; C],
    c_re: [Lane; C],
    c_im: [Lane; C],
}

impl<const C: usize> Mats<C> {
    #[inline(always)]
    fn of(m: &RowMatrices<'_>) -> Self {
        Self {
            a_re: load(m.a_re),
            a_im: load(m.a_im),
            b_re: load(m.b_re),
            b_im: load(m.b_im),
            c_re: load(m.c_re),
            c_im: load(m.c_im),
        }
    }
}

/// Forward over one row.
#[inline(always)]
pub(super) fn forward<Q: StateMap, const C: usize>(m: &RowMatrices<'_>, q: Q, row: ForwardRow<'_>) {
    let ForwardRow {
        every,
        len,
        view,
        u,
        y,
        mut ckpt,
    } = row;
    let modes = C * LANES;
    let k = Mats::<C>::of(m);
    let mut x_re = [[0.0f32; LANES]; C];
    let mut x_im = [[0.0f32; LANES]; C];
    for (s, t0) in (0..len).step_by(every).enumerate() {
        if let Some(ck) = ckpt.as_deref_mut() {
            let at = s * 2 * modes;
            store(&x_re, &mut ck[at..at + modes]);
            store(&x_im, &mut ck[at + modes..at + 2 * modes]);
        }
        let t_end = (t0 + every).min(len);
        for b0 in (t0..t_end).step_by(BLOCK) {
            let b1 = (b0 + BLOCK).min(t_end);
            let mut accs = [[0.0f32; LANES]; BLOCK];
            for (acc, t) in accs.iter_mut().zip(b0..b1) {
                let ut = u[view.at(t)];
                for c in 0..C {
                    for l in 0..LANES {
                        let (xr, xi) = (x_re[c][l], x_im[c][l]);
                        let (ar, ai) = (k.a_re[c][l], k.a_im[c][l]);
                        let pr = (ar * xr - ai * xi) + k.b_re[c][l] * ut;
                        let pi = (ar * xi + ai * xr) + k.b_im[c][l] * ut;
                        let (nr, ni) = (q.apply(pr), q.apply(pi));
                        x_re[c][l] = nr;
                        x_im[c][l] = ni;
                        acc[l] += k.c_re[c][l] * nr - k.c_im[c][l] * ni;
                    }
                }
            }
            for (acc, t) in accs.iter().zip(b0..b1) {
                y[view.at(t)] = 2.0 * lane_total(acc) + m.d * u[view.at(t)];
            }
        }
    }
}

/// Scratch floats [`backward`] needs: `every + 1` states (`2 M` each) and, for a quantized
/// state, `every` sets of STE masks and scale derivatives (`4 M` each).
pub(super) fn work_len(modes: usize, every: usize) -> usize {
    2 * modes * (every + 1) + 4 * modes * every
}

/// Backward over one row, as the parent's `backward_row` (same recurrences, same order of
/// operations per mode).
#[inline(always)]
pub(super) fn backward<Q: StateMap, const C: usize>(
    m: &RowMatrices<'_>,
    q: Q,
    row: BackwardRow<'_>,
) {
    let BackwardRow {
        every,
        len,
        view,
        u,
        dy,
        ckpt,
        du,
        grads,
        work,
    } = row;
    let modes = C * LANES;
    let k = Mats::<C>::of(m);
    let (states, derivs) = work.split_at_mut(2 * modes * (every + 1));
    let (states, _) = states.as_chunks_mut::<LANES>();
    let (derivs, _) = derivs.as_chunks_mut::<LANES>();
    let mut mu = [[[0.0f32; LANES]; C]; 2];
    let mut acc = [[[0.0f32; LANES]; C]; 6];
    let (mut gd, mut gs) = (0.0f32, 0.0f32);

    let segments = len.div_ceil(every);
    for s in (0..segments).rev() {
        let t0 = s * every;
        let t1 = (t0 + every).min(len);
        // Recompute the segment: states[i] = x_{t0 + i - 1} (chunks `[re; C], [im; C]`),
        // derivs[i] = Q'(p_{t0 + i}) (chunks `[mask_re, mask_im, ds_re, ds_im]` x C).
        let ck = &ckpt[s * 2 * modes..(s + 1) * 2 * modes];
        let mut x_re: [Lane; C] = load(&ck[..modes]);
        let mut x_im: [Lane; C] = load(&ck[modes..]);
        states[..C].copy_from_slice(&x_re);
        states[C..2 * C].copy_from_slice(&x_im);
        for (i, t) in (t0..t1).enumerate() {
            let ut = u[view.at(t)];
            let d = &mut derivs[i * 4 * C..(i + 1) * 4 * C];
            let (mask_re, d) = d.split_at_mut(C);
            let (mask_im, d) = d.split_at_mut(C);
            let (ds_re, ds_im) = d.split_at_mut(C);
            for c in 0..C {
                for l in 0..LANES {
                    let (xr, xi) = (x_re[c][l], x_im[c][l]);
                    let (ar, ai) = (k.a_re[c][l], k.a_im[c][l]);
                    let pr = (ar * xr - ai * xi) + k.b_re[c][l] * ut;
                    let pi = (ar * xi + ai * xr) + k.b_im[c][l] * ut;
                    if Q::IDENTITY {
                        x_re[c][l] = pr;
                        x_im[c][l] = pi;
                    } else {
                        let (qr, mr, sr) = q.apply_with_derivatives(pr);
                        let (qi, mi, si) = q.apply_with_derivatives(pi);
                        x_re[c][l] = qr;
                        x_im[c][l] = qi;
                        mask_re[c][l] = mr;
                        mask_im[c][l] = mi;
                        if Q::SCALE_GRAD {
                            ds_re[c][l] = sr;
                            ds_im[c][l] = si;
                        }
                    }
                }
            }
            let at = (i + 1) * 2 * C;
            states[at..at + C].copy_from_slice(&x_re);
            states[at + C..at + 2 * C].copy_from_slice(&x_im);
        }
        // Reverse time in blocks of `BLOCK` steps; the sums over modes after each block.
        let mut b1 = t1;
        while b1 > t0 {
            let b0 = b1.saturating_sub(BLOCK).max(t0);
            let mut du_accs = [[0.0f32; LANES]; BLOCK];
            let mut gs_accs = [[0.0f32; LANES]; BLOCK];
            for t in (b0..b1).rev() {
                let (du_acc, gs_acc) = (&mut du_accs[t - b0], &mut gs_accs[t - b0]);
                let i = t - t0;
                let prev = &states[i * 2 * C..(i + 1) * 2 * C];
                let cur = &states[(i + 1) * 2 * C..(i + 2) * 2 * C];
                let d = &derivs[i * 4 * C..(i + 1) * 4 * C];
                let (g, ut) = (dy[view.at(t)], u[view.at(t)]);
                adjoint_step::<Q, C>(&k, g, ut, prev, cur, d, &mut mu, &mut acc, du_acc, gs_acc);
            }
            for t in (b0..b1).rev() {
                let (g, ut) = (dy[view.at(t)], u[view.at(t)]);
                du[view.at(t)] = m.d * g + lane_total(&du_accs[t - b0]);
                if Q::SCALE_GRAD {
                    gs += lane_total(&gs_accs[t - b0]);
                }
                gd += g * ut;
            }
            b1 = b0;
        }
    }
    for (part, v) in acc.iter().enumerate() {
        store(v, &mut grads[part * modes..(part + 1) * modes]);
    }
    grads[6 * modes] = gd;
    grads[6 * modes + 1] = gs;
}

/// One reverse-time step of the adjoint: from `mu_{t+1}` (`mu`, `[re, im]`) to `mu_t`, adding
/// to the accumulators `acc` (`[a_re, a_im, b_re, b_im, c_re, c_im]`) and leaving the per-lane
/// terms of `du_t` and of the scale's gradient in `du_acc`, `gs_acc`. `prev`, `cur`: the
/// states `x_{t-1}`, `x_t`; `d`: the STE masks and scale derivatives at `p_t`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn adjoint_step<Q: StateMap, const C: usize>(
    k: &Mats<C>,
    g: f32,
    ut: f32,
    prev: &[Lane],
    cur: &[Lane],
    d: &[Lane],
    mu: &mut [[Lane; C]; 2],
    acc: &mut [[Lane; C]; 6],
    du_acc: &mut Lane,
    gs_acc: &mut Lane,
) {
    let two_g = 2.0 * g;
    let [mu_re, mu_im] = mu;
    let [ga_re, ga_im, gb_re, gb_im, gc_re, gc_im] = acc;
    for c in 0..C {
        let (xp_re, xp_im) = (&prev[c], &prev[C + c]);
        let (x_re, x_im) = (&cur[c], &cur[C + c]);
        let (mask_re, mask_im) = (&d[c], &d[C + c]);
        let (ds_re, ds_im) = (&d[2 * C + c], &d[3 * C + c]);
        for l in 0..LANES {
            let (ar, ai) = (k.a_re[c][l], k.a_im[c][l]);
            // lam_t = 2 g conj(C) + conj(Abar) mu_{t+1}, and dC.
            let (mr, mi) = (mu_re[c][l], mu_im[c][l]);
            let lr = two_g * k.c_re[c][l] + (ar * mr + ai * mi);
            let li = -(two_g * k.c_im[c][l]) + (ar * mi - ai * mr);
            gc_re[c][l] += two_g * x_re[l];
            gc_im[c][l] -= two_g * x_im[l];
            // mu_t = mask(p_t) lam_t, and the scale's gradient terms.
            if Q::SCALE_GRAD {
                gs_acc[l] += lr * ds_re[l] + li * ds_im[l];
            }
            let (nr, ni) = if Q::IDENTITY {
                (lr, li)
            } else {
                (lr * mask_re[l], li * mask_im[l])
            };
            mu_re[c][l] = nr;
            mu_im[c][l] = ni;
            // dBbar, dAbar and the terms of du_t.
            gb_re[c][l] += nr * ut;
            gb_im[c][l] += ni * ut;
            du_acc[l] += nr * k.b_re[c][l] + ni * k.b_im[c][l];
            ga_re[c][l] += nr * xp_re[l] + ni * xp_im[l];
            ga_im[c][l] += ni * xp_re[l] - nr * xp_im[l];
        }
    }
}

/// AVX2 builds of [`forward`] and [`backward`] (see the parent's `forward_row_avx2`).
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::*;

    #[target_feature(enable = "avx2")]
    pub(super) fn forward<Q: StateMap, const C: usize>(
        m: &RowMatrices<'_>,
        q: Q,
        row: ForwardRow<'_>,
    ) {
        super::forward::<Q, C>(m, q, row)
    }

    #[target_feature(enable = "avx2")]
    pub(super) fn backward<Q: StateMap, const C: usize>(
        m: &RowMatrices<'_>,
        q: Q,
        row: BackwardRow<'_>,
    ) {
        super::backward::<Q, C>(m, q, row)
    }
}

/// Runs `$f::<Q, C>` (`lanes::forward` or `backward`, or their AVX2 builds when `$avx2`)
/// with `C = $chunks`, a run-time value from [`chunks_for`].
macro_rules! with_chunks {
    ($avx2:expr, $chunks:expr, $f:ident, $q:ty, ($($arg:expr),*)) => {{
        macro_rules! run {
            ($c:literal) => {{
                #[cfg(target_arch = "x86_64")]
                if $avx2 {
                    // SAFETY: AVX2 support was detected at run time by the caller.
                    unsafe { avx2::$f::<$q, $c>($($arg),*) };
                    return;
                }
                $f::<$q, $c>($($arg),*)
            }};
        }
        match $chunks {
            1 => run!(1),
            2 => run!(2),
            3 => run!(3),
            4 => run!(4),
            5 => run!(5),
            6 => run!(6),
            7 => run!(7),
            8 => run!(8),
            _ => unreachable!("chunks_for admits 1..=MAX_CHUNKS"),
        }
    }};
}

/// Forward of one row with `C` chosen at run time (`chunks`, from [`chunks_for`]) and the
/// best instruction set available.
pub(super) fn forward_dispatch<Q: StateMap>(
    avx2: bool,
    chunks: usize,
    m: &RowMatrices<'_>,
    q: Q,
    row: ForwardRow<'_>,
) {
    let _ = avx2;
    with_chunks!(avx2, chunks, forward, Q, (m, q, row))
}

/// Backward of one row with `C` chosen at run time (see [`forward_dispatch`]).
pub(super) fn backward_dispatch<Q: StateMap>(
    avx2: bool,
    chunks: usize,
    m: &RowMatrices<'_>,
    q: Q,
    row: BackwardRow<'_>,
) {
    let _ = avx2;
    with_chunks!(avx2, chunks, backward, Q, (m, q, row))
}
