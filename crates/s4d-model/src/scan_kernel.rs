//! The diagonal scan as one host loop nest, forward and backward, for CPU backends.
//!
//! Composing the recurrence from tensor ops costs a dozen kernel launches and `[B, H, M]`
//! temporaries per time step, and autodiff records every one of them: QAT in recurrent mode
//! spends nearly all its time there. Here one `(batch, head)` row is a sequential loop over
//! time whose state (`M` complex modes) lives in registers and L1, rows run in parallel, and
//! the backward pass is the reverse-time adjoint recurrence written out by hand. Sequences are
//! read in either layout ([`ScanLayout`]): the model's time-major `[B, L, H]` in place (one
//! parallel task per batch element, its `H L` block in cache) or channel-major `[B, H, L]`.
//! For `M` a multiple of eight (every preset) rows run the fixed-width loops of `lanes.rs`,
//! whose state, adjoint and accumulators stay in vector registers; other `M` take the generic
//! loops below.
//!
//! Math (per row, modes `n`, `x_{-1} = 0`):
//! - `p_t = Abar x_{t-1} + Bbar u_t` (complex), `x_t = Q(p_t)` where `Q` is the identity or
//!   clamp-then-fake-quantize of the real and imaginary parts on one grid,
//! - `y_t = 2 sum_n Re(C_n x_t,n) + D u_t`.
//!
//! Backward, with `g_t = dL/dy_t`, `lam_t = dL/dx_t` and `mu_t = dL/dp_t` as complex numbers
//! whose parts are the gradients of the real and imaginary parts:
//! - `lam_t = 2 g_t conj(C) + conj(Abar) mu_{t+1}`, `mu_t = mask(p_t) * lam_t` (clipped STE),
//! - `dAbar += mu_t conj(x_{t-1})`, `dBbar += mu_t u_t`, `dC += 2 g_t conj(x_t)`,
//!   `dD += g_t u_t`, `du_t = D g_t + sum_n Re(conj(Bbar) mu_t)`,
//! - with a learned state scale (LSQ), `ds += lam_t * dQ/ds`, where `dQ/ds = round(v) - v` on
//!   the grid and `q_edge - z` where `v = x / s + z` was clipped to an edge of the grid.
//!
//! Memory: the forward pass keeps the state only every `K` steps (a checkpoint); the backward
//! pass recomputes each segment of `K` states from its checkpoint, so the extra memory is
//! `O(B H M (L / K + K))` instead of `O(B H M L)`, for one extra forward pass of work.
//!
//! Numerics: the state update uses the same operations in the same order as the composed
//! tensor path (`crate::scan`), so states agree bit for bit, quantized or not; only the
//! readout's sum over modes is ordered differently (eight partial sums). The fixed-width
//! loops leave out a clip that cannot bind for a head and subtract `MAGIC + z` in one step
//! (`RowQuant::clip`), which removes operations but changes no value.

use rayon::prelude::*;

mod lanes;

/// Memory order of the sequences `u`, `y` (and their gradients) of one scan call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScanLayout {
    /// `[B, H, L]`: each row's sequence contiguous; rows run in parallel.
    #[default]
    ChannelMajor,
    /// `[B, L, H]`, the layout of the model's activations: read and written in place, so the
    /// model needs no transposes around the scan; batch elements run in parallel, each
    /// sweeping its heads over a block that stays in cache.
    TimeMajor,
}

/// Sizes of one scan call: `u, y: [B, H, L]` or `[B, L, H]` (see `layout`), matrices
/// `[H, M]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanDims {
    /// `B`.
    pub batch: usize,
    /// `H`.
    pub heads: usize,
    /// `L`.
    pub len: usize,
    /// `M` complex modes per head.
    pub modes: usize,
    /// Memory order of `u` and `y`.
    pub layout: ScanLayout,
}

/// Where row `h`'s time step `t` lives inside one batch element's block of `H L` values.
#[derive(Debug, Clone, Copy)]
struct RowView {
    offset: usize,
    stride: usize,
}

impl RowView {
    #[inline(always)]
    fn at(&self, t: usize) -> usize {
        self.offset + t * self.stride
    }
}

/// What one row's forward reads and writes: its steps at `view` in the task's blocks `u`
/// and `y`, and, when kept, its checkpoints (`[segments, 2, M]`, the state at each segment
/// start, one every `every` steps).
struct ForwardRow<'a> {
    every: usize,
    len: usize,
    view: RowView,
    u: &'a [f32],
    y: &'a mut [f32],
    ckpt: Option<&'a mut [f32]>,
}

/// What one row's backward reads and writes: `u`, `dy` and `du` at `view` in the task's
/// blocks, the row's checkpoints, its gradients (`[a_re, a_im, b_re, b_im, c_re, c_im] x M,
/// d, s`) and the scratch its loops ask for (`backward_work_len`, `lanes::work_len`).
struct BackwardRow<'a> {
    every: usize,
    len: usize,
    view: RowView,
    u: &'a [f32],
    dy: &'a [f32],
    ckpt: &'a [f32],
    du: &'a mut [f32],
    grads: &'a mut [f32],
    work: &'a mut [f32],
}

impl ScanDims {
    /// Steps between two stored states: about `sqrt(L)`, at least 16, so checkpoints and the
    /// recomputed segment cost about the same memory.
    pub fn checkpoint_every(&self) -> usize {
        ((self.len as f64).sqrt().ceil() as usize).max(16)
    }

    /// Number of segments, each starting from one stored state.
    pub fn segments(&self) -> usize {
        self.len.div_ceil(self.checkpoint_every())
    }

    /// Length of the checkpoint buffer: `[B, H, segments, 2, M]`.
    pub fn checkpoint_len(&self) -> usize {
        self.batch * self.heads * self.segments() * 2 * self.modes
    }
}

/// The discrete matrices, row-major `[H, M]` (`d`: `[H]`).
#[derive(Debug, Clone, Copy)]
pub struct ScanMatrices<'a> {
    /// `Re Abar`.
    pub a_re: &'a [f32],
    /// `Im Abar`.
    pub a_im: &'a [f32],
    /// `Re Bbar`.
    pub b_re: &'a [f32],
    /// `Im Bbar`.
    pub b_im: &'a [f32],
    /// `Re C`.
    pub c_re: &'a [f32],
    /// `Im C`.
    pub c_im: &'a [f32],
    /// `D`.
    pub d: &'a [f32],
}

impl<'a> ScanMatrices<'a> {
    /// The matrices from vectors in field order (`a_re, a_im, b_re, b_im, c_re, c_im, d`);
    /// vectors after the seventh are ignored. Panics with fewer than seven.
    pub fn from_vecs<V: std::ops::Deref<Target = [f32]>>(v: &'a [V]) -> Self {
        let [a_re, a_im, b_re, b_im, c_re, c_im, d, ..] = v else {
            panic!("ScanMatrices::from_vecs: 7 vectors needed, got {}", v.len());
        };
        Self {
            a_re,
            a_im,
            b_re,
            b_im,
            c_re,
            c_im,
            d,
        }
    }
}

/// Clamp and integer grid of the state quantizer: `x -> (round(clamp(clamp(x, -c, c) / s + z,
/// qmin, qmax)) - z) s`, per head `s` and `z`, rounding half to even.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StateGrid {
    /// Smallest integer level.
    pub qmin: f32,
    /// Largest integer level.
    pub qmax: f32,
    /// Bound of the clamp applied before quantizing (`None`: no clamp).
    pub clamp: Option<f32>,
}

/// A static state quantizer: the grid plus per-head scale and zero point (`[H]` each).
#[derive(Debug, Clone, Copy)]
pub struct StateQuantizer<'a> {
    /// Grid and clamp.
    pub grid: StateGrid,
    /// Step size per head.
    pub scale: &'a [f32],
    /// Zero point per head (integer-valued).
    pub zero_point: &'a [f32],
    /// Whether [`scan_backward`] computes `dL/ds` (LSQ). With a fixed scale, `false` skips
    /// that work (an eighth of a QAT forward + backward in `experiments bench`) and leaves
    /// the gradient zero.
    pub learn_scale: bool,
}

/// Output of [`scan_forward`].
#[derive(Debug, Clone)]
pub struct ScanOutput {
    /// `y: [B, H, L]`.
    pub y: Vec<f32>,
    /// States at segment starts, `[B, H, segments, 2, M]` (empty unless asked for).
    pub checkpoints: Vec<f32>,
}

/// Gradients of a scan with respect to each of its inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanGrads {
    /// `dL/du`, `[B, H, L]`.
    pub u: Vec<f32>,
    /// `dL/dRe Abar`, `[H, M]`.
    pub a_re: Vec<f32>,
    /// `dL/dIm Abar`.
    pub a_im: Vec<f32>,
    /// `dL/dRe Bbar`.
    pub b_re: Vec<f32>,
    /// `dL/dIm Bbar`.
    pub b_im: Vec<f32>,
    /// `dL/dRe C`.
    pub c_re: Vec<f32>,
    /// `dL/dIm C`.
    pub c_im: Vec<f32>,
    /// `dL/dD`, `[H]`.
    pub d: Vec<f32>,
    /// `dL/ds` of the state quantizer's scale, `[H]` (zeros without a quantizer).
    pub scale: Vec<f32>,
}

/// Rounds half to even, exactly, for `|v| < 2^22`: adding and removing `1.5 * 2^23` makes the
/// FPU's round-to-nearest-even drop the fraction. It vectorizes where `f32::round_ties_even`
/// becomes a library call (x86-64 without SSE4.1). The state grid is clamped to at most 16-bit
/// levels before rounding, far inside the valid range.
#[inline(always)]
pub fn round_half_even_small(v: f32) -> f32 {
    (v + MAGIC) - MAGIC
}

/// What turns `p_t` into `x_t`: the identity (float state) or clamp + fake quantization.
/// A trait rather than an `Option` so each variant compiles to its own branch-free loop.
trait StateMap: Copy {
    /// Whether `Q` is the identity, so loops can skip the STE masks and the scale's terms.
    const IDENTITY: bool;
    /// Whether the backward pass needs `dQ/ds` (a learned scale).
    const SCALE_GRAD: bool;

    /// `(Q(p), dQ/dp, dQ/ds)`: the value, the clipped-STE mask and the LSQ step-size
    /// derivative, from one evaluation of the grid coordinate (the backward pass's recompute
    /// stores the two derivatives instead of `p`, so its adjoint loop needs no division).
    fn apply_with_derivatives(&self, p: f32) -> (f32, f32, f32);

    /// `x = Q(p)`: the value alone. Inlined, the unused derivatives are dead code and vanish.
    #[inline(always)]
    fn apply(&self, p: f32) -> f32 {
        self.apply_with_derivatives(p).0
    }
}

/// The float state.
#[derive(Debug, Clone, Copy)]
struct Identity;

impl StateMap for Identity {
    const IDENTITY: bool = true;
    const SCALE_GRAD: bool = false;

    #[inline(always)]
    fn apply_with_derivatives(&self, p: f32) -> (f32, f32, f32) {
        (p, 1.0, 0.0)
    }
}

/// [`RowQuant`]'s `CLIP` for a head where both the clamp and the grid's range can bind:
/// every operation as written.
const CLIP_BOTH: u8 = 0;
/// `CLIP` for a head whose grid range lies strictly inside `[-c, c]`: the clamp never
/// changes the value, the mask or `dQ/ds`, so it is skipped.
const CLIP_GRID: u8 = 1;
/// `CLIP` for a head whose clamped values all land inside the grid range: clipping to
/// `[qmin, qmax]` never binds, so it is skipped.
const CLIP_CLAMP: u8 = 2;

/// `1.5 * 2^23`: adding it rounds a float of magnitude below `2^22` to an integer (see
/// [`round_half_even_small`]).
const MAGIC: f32 = 12_582_912.0;

/// One head's quantizer as scalars; `LSQ`: whether the backward pass computes `dL/ds`;
/// `CLIP`: which clips can bind ([`CLIP_BOTH`], [`CLIP_GRID`], [`CLIP_CLAMP`]).
#[derive(Debug, Clone, Copy)]
struct RowQuant<const LSQ: bool, const CLIP: u8 = CLIP_BOTH> {
    scale: f32,
    zero: f32,
    qmin: f32,
    qmax: f32,
    clamp: f32,
    /// `MAGIC + zero`, exact for an integer zero point.
    magic_zero: f32,
}

impl<const LSQ: bool> RowQuant<LSQ> {
    fn for_head(q: &StateQuantizer<'_>, head: usize) -> Self {
        let zero = q.zero_point[head];
        Self {
            scale: q.scale[head],
            zero,
            qmin: q.grid.qmin,
            qmax: q.grid.qmax,
            clamp: q.grid.clamp.unwrap_or(f32::INFINITY),
            magic_zero: MAGIC + zero,
        }
    }

    /// Which clips can bind for this head, decided with the kernel's own f32 operations at
    /// the clamp bounds `+-c` (where `v = c / s + z` is largest and smallest: `v` is monotone
    /// in `p` for `s > 0`, before and after rounding). The specialised forms also drop
    /// `- MAGIC` then `- z` for one `- (MAGIC + z)`, which needs `z` an integer below
    /// `2^22`; other heads keep [`CLIP_BOTH`].
    fn clip(&self) -> u8 {
        let (c, s, z) = (self.clamp, self.scale, self.zero);
        let fold_exact = z.abs() < 4_194_304.0 && self.magic_zero - MAGIC == z;
        if !(fold_exact && s > 0.0 && s.is_finite()) {
            return CLIP_BOTH;
        }
        let (hi, lo) = (c / s + z, -c / s + z);
        if hi > self.qmax && lo < self.qmin {
            CLIP_GRID
        } else if c.is_finite() && hi <= self.qmax && lo >= self.qmin {
            CLIP_CLAMP
        } else {
            CLIP_BOTH
        }
    }

    /// The same quantizer with `CLIP = K` (valid when [`RowQuant::clip`] returned `K`).
    fn with_clip<const K: u8>(self) -> RowQuant<LSQ, K> {
        RowQuant {
            scale: self.scale,
            zero: self.zero,
            qmin: self.qmin,
            qmax: self.qmax,
            clamp: self.clamp,
            magic_zero: self.magic_zero,
        }
    }
}

/// Binds `$q` to `$rq` specialised to the clips that can bind for its head
/// ([`RowQuant::clip`]) and evaluates `$body`, one monomorphised copy per case.
macro_rules! with_clip {
    ($rq:expr, $q:ident => $body:expr) => {{
        let rq = $rq;
        match rq.clip() {
            CLIP_GRID => {
                let $q = rq.with_clip::<CLIP_GRID>();
                $body
            }
            CLIP_CLAMP => {
                let $q = rq.with_clip::<CLIP_CLAMP>();
                $body
            }
            _ => {
                let $q = rq;
                $body
            }
        }
    }};
}

/// `if a > b { a } else { b }`: one `maxps` on x86 (NaN in `b` propagates), where the
/// three-way `if p < lo { lo } else if p > hi { hi } else { p }` costs two compares and two
/// blends per clamp.
#[inline(always)]
fn max_or_second(a: f32, b: f32) -> f32 {
    if a > b { a } else { b }
}

/// `if a < b { a } else { b }`: one `minps` (NaN in `b` propagates).
#[inline(always)]
fn min_or_second(a: f32, b: f32) -> f32 {
    if a < b { a } else { b }
}

impl<const LSQ: bool, const CLIP: u8> StateMap for RowQuant<LSQ, CLIP> {
    const IDENTITY: bool = false;
    const SCALE_GRAD: bool = LSQ;

    /// Written with selects only, so the loops around it vectorize. Each clamp is a max then
    /// a min: for `lo <= hi` it equals the clamp of the composed path on every input, NaN
    /// (propagated) and signed zeros included. A clip that cannot bind for this head
    /// (`CLIP`) is left out; values, masks and `dQ/ds` are unchanged by that, NaN included
    /// (a NaN `p` still gives a NaN value and `dQ/ds` and a zero mask).
    #[inline(always)]
    fn apply_with_derivatives(&self, p: f32) -> (f32, f32, f32) {
        let c = self.clamp;
        let xc = if CLIP == CLIP_GRID {
            p
        } else {
            min_or_second(c, max_or_second(-c, p))
        };
        let v = xc / self.scale + self.zero;
        let vq = if CLIP == CLIP_CLAMP {
            v
        } else {
            min_or_second(self.qmax, max_or_second(self.qmin, v))
        };
        // `r - z` as `(vq + MAGIC) - (MAGIC + z)`: both sides are integers below 2^24, so
        // the one subtraction is exact and equals the two of the general form.
        let (x, r) = if CLIP == CLIP_BOTH {
            let r = round_half_even_small(vq);
            ((r - self.zero) * self.scale, r)
        } else {
            let big = vq + MAGIC;
            ((big - self.magic_zero) * self.scale, big - MAGIC)
        };
        // Inside the grid (`vq == v`) the LSQ derivative is `round(v) - v`; clipped, it is
        // the edge level minus the zero point, and then `vq` is that edge.
        let inside = vq == v;
        let ds = if inside { r - v } else { vq - self.zero };
        // The clipped STE passes the gradient only where neither clamp bit: `xc == p` and
        // `vq == v` (both false for NaN, as the composed path's comparisons are; without
        // the clamp, `vq == v` alone is false for NaN).
        let kept = CLIP == CLIP_GRID || xc == p;
        let mask = if kept && inside { 1.0 } else { 0.0 };
        (x, mask, ds)
    }
}

/// One head's matrices.
#[derive(Clone, Copy)]
struct RowMatrices<'a> {
    a_re: &'a [f32],
    a_im: &'a [f32],
    b_re: &'a [f32],
    b_im: &'a [f32],
    c_re: &'a [f32],
    c_im: &'a [f32],
    d: f32,
}

impl<'a> RowMatrices<'a> {
    fn for_head(m: &ScanMatrices<'a>, head: usize, modes: usize) -> Self {
        let r = head * modes..(head + 1) * modes;
        Self {
            a_re: &m.a_re[r.clone()],
            a_im: &m.a_im[r.clone()],
            b_re: &m.b_re[r.clone()],
            b_im: &m.b_im[r.clone()],
            c_re: &m.c_re[r.clone()],
            c_im: &m.c_im[r],
            d: m.d[head],
        }
    }
}

const LANES: usize = 8;

/// Sum in eight interleaved partial sums. Fixed-size `[f32; 8]` chunks carry no bounds checks,
/// so each chunk is one vector add (indexing `v[base + l]` compiled to scalar code).
#[inline(always)]
fn lane_sum(v: &[f32]) -> f32 {
    let (chunks, rest) = v.as_chunks::<LANES>();
    let mut acc = [0.0f32; LANES];
    for c in chunks {
        for l in 0..LANES {
            acc[l] += c[l];
        }
    }
    acc.iter().sum::<f32>() + rest.iter().sum::<f32>()
}

/// `p = Abar x + Bbar u_t` into `p_re, p_im`, then `x <- Q(p)`.
#[inline(always)]
fn advance<Q: StateMap>(
    m: &RowMatrices<'_>,
    q: Q,
    ut: f32,
    x_re: &mut [f32],
    x_im: &mut [f32],
    p_re: &mut [f32],
    p_im: &mut [f32],
) {
    let n = x_re.len();
    let (a_re, a_im, b_re, b_im) = (&m.a_re[..n], &m.a_im[..n], &m.b_re[..n], &m.b_im[..n]);
    let (x_im, p_re, p_im) = (&mut x_im[..n], &mut p_re[..n], &mut p_im[..n]);
    for k in 0..n {
        let (xr, xi) = (x_re[k], x_im[k]);
        let pr = (a_re[k] * xr - a_im[k] * xi) + b_re[k] * ut;
        let pi = (a_re[k] * xi + a_im[k] * xr) + b_im[k] * ut;
        p_re[k] = pr;
        p_im[k] = pi;
        x_re[k] = q.apply(pr);
        x_im[k] = q.apply(pi);
    }
}

/// [`advance`] for the backward pass's recompute: `x <- Q(Abar x + Bbar u_t)` and, instead
/// of `p`, the derivatives of `Q` at `p`: `d = [mask_re, mask_im, ds_re, ds_im]` x `M`.
#[inline(always)]
fn advance_saving<Q: StateMap>(
    m: &RowMatrices<'_>,
    q: Q,
    ut: f32,
    x_re: &mut [f32],
    x_im: &mut [f32],
    d: &mut [f32],
) {
    let n = x_re.len();
    let (a_re, a_im, b_re, b_im) = (&m.a_re[..n], &m.a_im[..n], &m.b_re[..n], &m.b_im[..n]);
    let (mask_re, rest) = d.split_at_mut(n);
    let (mask_im, rest) = rest.split_at_mut(n);
    let (ds_re, ds_im) = rest.split_at_mut(n);
    let (x_im, mask_im, ds_re, ds_im) = (
        &mut x_im[..n],
        &mut mask_im[..n],
        &mut ds_re[..n],
        &mut ds_im[..n],
    );
    for k in 0..n {
        let (xr, xi) = (x_re[k], x_im[k]);
        let pr = (a_re[k] * xr - a_im[k] * xi) + b_re[k] * ut;
        let pi = (a_re[k] * xi + a_im[k] * xr) + b_im[k] * ut;
        let (qr, mr, sr) = q.apply_with_derivatives(pr);
        let (qi, mi, si) = q.apply_with_derivatives(pi);
        x_re[k] = qr;
        x_im[k] = qi;
        mask_re[k] = mr;
        mask_im[k] = mi;
        ds_re[k] = sr;
        ds_im[k] = si;
    }
}

/// `2 sum_n Re(C_n x_n) + D u_t`, the sum in eight interleaved partial sums (fixed-size
/// chunks, as in [`lane_sum`], so the products and adds are vector instructions).
#[inline(always)]
fn read_out(m: &RowMatrices<'_>, ut: f32, x_re: &[f32], x_im: &[f32]) -> f32 {
    let n = x_re.len();
    let (c_re, c_im, x_im) = (&m.c_re[..n], &m.c_im[..n], &x_im[..n]);
    let (cr, cr_rest) = c_re.as_chunks::<LANES>();
    let (ci, ci_rest) = c_im.as_chunks::<LANES>();
    let (xr, xr_rest) = x_re.as_chunks::<LANES>();
    let (xi, xi_rest) = x_im.as_chunks::<LANES>();
    let mut acc = [0.0f32; LANES];
    for (((cr, ci), xr), xi) in cr.iter().zip(ci).zip(xr).zip(xi) {
        for l in 0..LANES {
            acc[l] += cr[l] * xr[l] - ci[l] * xi[l];
        }
    }
    let mut total: f32 = acc.iter().sum();
    for (((cr, ci), xr), xi) in cr_rest.iter().zip(ci_rest).zip(xr_rest).zip(xi_rest) {
        total += cr * xr - ci * xi;
    }
    2.0 * total + m.d * ut
}

/// Forward over one row (`u`, `y`: that row's contiguous sequence, channel-major); `ckpt`
/// (`[segments, 2, M]`) receives the state at each segment start. `x` is scratch of `4 M`
/// floats. The time-major layout takes [`forward_block`] instead.
#[inline(always)]
fn forward_row<Q: StateMap>(
    m: &RowMatrices<'_>,
    q: Q,
    every: usize,
    u: &[f32],
    y: &mut [f32],
    mut ckpt: Option<&mut [f32]>,
    x: &mut [f32],
) {
    let modes = x.len() / 4;
    x.fill(0.0);
    let (state, p) = x.split_at_mut(2 * modes);
    let (p_re, p_im) = p.split_at_mut(modes);
    for (t, (&ut, yt)) in u.iter().zip(y.iter_mut()).enumerate() {
        if t % every == 0
            && let Some(c) = ckpt.as_deref_mut()
        {
            let s = t / every;
            c[s * 2 * modes..(s + 1) * 2 * modes].copy_from_slice(state);
        }
        let (x_re, x_im) = state.split_at_mut(modes);
        advance(m, q, ut, x_re, x_im, p_re, p_im);
        *yt = read_out(m, ut, x_re, x_im);
    }
}

/// Gradient accumulators of one row, laid out `[a_re, a_im, b_re, b_im, c_re, c_im]` x `M`,
/// then `d`, then the scale.
fn row_grad_len(modes: usize) -> usize {
    6 * modes + 2
}

/// Scratch floats [`backward_row`] needs: `every + 1` states and `every` derivative sets of
/// `2 M` and `4 M` floats, then `mu` and the per-mode terms (`2 M` each).
fn backward_work_len(modes: usize, every: usize) -> usize {
    2 * modes * (every + 1) + 4 * modes * every + 4 * modes
}

/// Backward over one row (`row.view` into a batch element's block: `u`, `dy`, `du` hold
/// `H L` values); `row.work` is scratch of [`backward_work_len`] floats.
#[inline(always)]
fn backward_row<Q: StateMap>(m: &RowMatrices<'_>, q: Q, row: BackwardRow<'_>) {
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
    let modes = m.a_re.len();
    let (states, rest) = work.split_at_mut(2 * modes * (every + 1));
    let (derivs, rest) = rest.split_at_mut(4 * modes * every);
    let (mu, terms) = rest.split_at_mut(2 * modes);
    let (du_terms, gs_terms) = terms[..2 * modes].split_at_mut(modes);
    mu.fill(0.0);
    grads.fill(0.0);
    let (g_mat, g_tail) = grads.split_at_mut(6 * modes);
    let (ga_re, g_mat) = g_mat.split_at_mut(modes);
    let (ga_im, g_mat) = g_mat.split_at_mut(modes);
    let (gb_re, g_mat) = g_mat.split_at_mut(modes);
    let (gb_im, g_mat) = g_mat.split_at_mut(modes);
    let (gc_re, gc_im) = g_mat.split_at_mut(modes);
    let (mut gd, mut gs) = (0.0f32, 0.0f32);
    let (a_re, a_im, b_re, b_im) = (m.a_re, m.a_im, m.b_re, m.b_im);
    let (c_re, c_im) = (m.c_re, m.c_im);

    let segments = len.div_ceil(every);
    for s in (0..segments).rev() {
        let t0 = s * every;
        let t1 = (t0 + every).min(len);
        // Recompute the segment: states[i] = x_{t0 + i - 1}, derivs[i] = Q'(p_{t0 + i}).
        states[..2 * modes].copy_from_slice(&ckpt[s * 2 * modes..(s + 1) * 2 * modes]);
        for (i, t) in (t0..t1).enumerate() {
            let ut = u[view.at(t)];
            let (done, next) = states.split_at_mut((i + 1) * 2 * modes);
            let next = &mut next[..2 * modes];
            next.copy_from_slice(&done[i * 2 * modes..]);
            let (x_re, x_im) = next.split_at_mut(modes);
            let d = &mut derivs[i * 4 * modes..(i + 1) * 4 * modes];
            advance_saving(m, q, ut, x_re, x_im, d);
        }
        for t in (t0..t1).rev() {
            let i = t - t0;
            let (g, ut) = (dy[view.at(t)], u[view.at(t)]);
            let two_g = 2.0 * g;
            let (xp_re, xp_im) = states[i * 2 * modes..(i + 1) * 2 * modes].split_at(modes);
            let (x_re, x_im) = states[(i + 1) * 2 * modes..(i + 2) * 2 * modes].split_at(modes);
            let d = &derivs[i * 4 * modes..(i + 1) * 4 * modes];
            let (mask_re, d) = d.split_at(modes);
            let (mask_im, d) = d.split_at(modes);
            let (ds_re, ds_im) = d.split_at(modes);
            let (mu_re, mu_im) = mu.split_at_mut(modes);
            // Every slice re-cut to `modes` so the compiler drops bounds checks and vectorizes.
            let n = modes;
            let (mu_re, mu_im, x_re, x_im) =
                (&mut mu_re[..n], &mut mu_im[..n], &x_re[..n], &x_im[..n]);
            let (xp_re, xp_im) = (&xp_re[..n], &xp_im[..n]);
            let (a_re, a_im, b_re, b_im) = (&a_re[..n], &a_im[..n], &b_re[..n], &b_im[..n]);
            let (c_re, c_im) = (&c_re[..n], &c_im[..n]);
            let (ga_re, ga_im, gb_re, gb_im) = (
                &mut ga_re[..n],
                &mut ga_im[..n],
                &mut gb_re[..n],
                &mut gb_im[..n],
            );
            let (gc_re, gc_im) = (&mut gc_re[..n], &mut gc_im[..n]);
            let (du_terms, gs_terms) = (&mut du_terms[..n], &mut gs_terms[..n]);
            adjoint_lambda(
                two_g, c_re, c_im, a_re, a_im, x_re, x_im, mu_re, mu_im, gc_re, gc_im,
            );
            adjoint_mask(mask_re, mask_im, ds_re, ds_im, mu_re, mu_im, gs_terms);
            adjoint_accumulate(
                ut, b_re, b_im, xp_re, xp_im, mu_re, mu_im, gb_re, gb_im, ga_re, ga_im, du_terms,
            );
            du[view.at(t)] = m.d * g + lane_sum(du_terms);
            gs += lane_sum(gs_terms);
            gd += g * ut;
        }
    }
    g_tail[0] = gd;
    g_tail[1] = if Q::SCALE_GRAD { gs } else { 0.0 };
}

// The adjoint step is three loops, each in its own function: slice arguments are known not
// to alias (Rust marks `&mut` parameters `noalias`, also after inlining), which local slices
// are not, and each loop is simple enough to vectorize. All arrays are M floats, in L1.

/// `lam_t = 2 g conj(C) + conj(Abar) mu_{t+1}` into `mu` (read as `mu_{t+1}`), and `dC`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn adjoint_lambda(
    two_g: f32,
    c_re: &[f32],
    c_im: &[f32],
    a_re: &[f32],
    a_im: &[f32],
    x_re: &[f32],
    x_im: &[f32],
    mu_re: &mut [f32],
    mu_im: &mut [f32],
    gc_re: &mut [f32],
    gc_im: &mut [f32],
) {
    let n = mu_re.len();
    let (c_re, c_im, a_re, a_im) = (&c_re[..n], &c_im[..n], &a_re[..n], &a_im[..n]);
    let (x_re, x_im, mu_im) = (&x_re[..n], &x_im[..n], &mut mu_im[..n]);
    let (gc_re, gc_im) = (&mut gc_re[..n], &mut gc_im[..n]);
    for k in 0..n {
        let (mr, mi) = (mu_re[k], mu_im[k]);
        mu_re[k] = two_g * c_re[k] + (a_re[k] * mr + a_im[k] * mi);
        mu_im[k] = -(two_g * c_im[k]) + (a_re[k] * mi - a_im[k] * mr);
        gc_re[k] += two_g * x_re[k];
        gc_im[k] -= two_g * x_im[k];
    }
}

/// `mu_t = mask(p_t) lam_t` in place, and the per-mode terms of the scale's gradient, from
/// the derivatives the recompute stored.
#[inline(always)]
fn adjoint_mask(
    mask_re: &[f32],
    mask_im: &[f32],
    ds_re: &[f32],
    ds_im: &[f32],
    mu_re: &mut [f32],
    mu_im: &mut [f32],
    gs_terms: &mut [f32],
) {
    let n = mu_re.len();
    let (mask_re, mask_im, ds_re, ds_im) = (&mask_re[..n], &mask_im[..n], &ds_re[..n], &ds_im[..n]);
    let (mu_im, gs_terms) = (&mut mu_im[..n], &mut gs_terms[..n]);
    for k in 0..n {
        let (lr, li) = (mu_re[k], mu_im[k]);
        gs_terms[k] = lr * ds_re[k] + li * ds_im[k];
        mu_re[k] = lr * mask_re[k];
        mu_im[k] = li * mask_im[k];
    }
}

/// `dBbar += mu u_t`, `dAbar += mu conj(x_{t-1})`, and the per-mode terms of `du_t`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn adjoint_accumulate(
    ut: f32,
    b_re: &[f32],
    b_im: &[f32],
    xp_re: &[f32],
    xp_im: &[f32],
    mu_re: &[f32],
    mu_im: &[f32],
    gb_re: &mut [f32],
    gb_im: &mut [f32],
    ga_re: &mut [f32],
    ga_im: &mut [f32],
    du_terms: &mut [f32],
) {
    let n = du_terms.len();
    let (b_re, b_im, xp_re, xp_im) = (&b_re[..n], &b_im[..n], &xp_re[..n], &xp_im[..n]);
    let (mu_re, mu_im, gb_re, gb_im) = (&mu_re[..n], &mu_im[..n], &mut gb_re[..n], &mut gb_im[..n]);
    let (ga_re, ga_im) = (&mut ga_re[..n], &mut ga_im[..n]);
    for k in 0..n {
        let (nr, ni) = (mu_re[k], mu_im[k]);
        gb_re[k] += nr * ut;
        gb_im[k] += ni * ut;
        du_terms[k] = nr * b_re[k] + ni * b_im[k];
        ga_re[k] += nr * xp_re[k] + ni * xp_im[k];
        ga_im[k] += ni * xp_re[k] - nr * xp_im[k];
    }
}

/// [`forward_row`] compiled with AVX2, so its loops vectorize eight lanes wide without
/// requiring AVX2 of every machine. No FMA contraction happens in either build (Rust never
/// fuses `a * b + c` implicitly), so both give identical results.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn forward_row_avx2<Q: StateMap>(
    m: &RowMatrices<'_>,
    q: Q,
    every: usize,
    u: &[f32],
    y: &mut [f32],
    ckpt: Option<&mut [f32]>,
    x: &mut [f32],
) {
    forward_row(m, q, every, u, y, ckpt, x)
}

/// [`backward_row`] compiled with AVX2 (see [`forward_row_avx2`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn backward_row_avx2<Q: StateMap>(m: &RowMatrices<'_>, q: Q, row: BackwardRow<'_>) {
    backward_row(m, q, row)
}

/// Forward over one batch element's time-major block (`u`, `y`: `[L, H]`), all heads in
/// lockstep: time outside, heads inside. Each head's step is the same code as
/// [`forward_row`]'s (so the values are identical), but consecutive steps of different heads
/// are independent, which lets the CPU overlap them instead of waiting on one head's
/// recurrence. `ckpt`: `[H, segments, 2, M]`; `x`: scratch of `4 M H` floats.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn forward_block<Q: StateMap>(
    rows: &[(RowMatrices<'_>, Q)],
    every: usize,
    len: usize,
    u: &[f32],
    y: &mut [f32],
    mut ckpt: Option<&mut [f32]>,
    x: &mut [f32],
) {
    let heads = rows.len();
    let modes = x.len() / (4 * heads);
    let ck_row = len.div_ceil(every) * 2 * modes;
    x.fill(0.0);
    for t in 0..len {
        let (u_t, y_t) = (
            &u[t * heads..(t + 1) * heads],
            &mut y[t * heads..(t + 1) * heads],
        );
        for (h, ((m, q), x)) in rows.iter().zip(x.chunks_exact_mut(4 * modes)).enumerate() {
            let (state, p) = x.split_at_mut(2 * modes);
            if t % every == 0
                && let Some(c) = ckpt.as_deref_mut()
            {
                let s = h * ck_row + (t / every) * 2 * modes;
                c[s..s + 2 * modes].copy_from_slice(state);
            }
            let (p_re, p_im) = p.split_at_mut(modes);
            let (x_re, x_im) = state.split_at_mut(modes);
            advance(m, *q, u_t[h], x_re, x_im, p_re, p_im);
            y_t[h] = read_out(m, u_t[h], x_re, x_im);
        }
    }
}

/// [`forward_block`] compiled with AVX2 (see [`forward_row_avx2`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn forward_block_avx2<Q: StateMap>(
    rows: &[(RowMatrices<'_>, Q)],
    every: usize,
    len: usize,
    u: &[f32],
    y: &mut [f32],
    ckpt: Option<&mut [f32]>,
    x: &mut [f32],
) {
    forward_block(rows, every, len, u, y, ckpt, x)
}

/// Forward of one time-major block with the best instruction set available.
#[allow(clippy::too_many_arguments)]
fn forward_block_best<Q: StateMap>(
    avx2: bool,
    rows: &[(RowMatrices<'_>, Q)],
    every: usize,
    len: usize,
    u: &[f32],
    y: &mut [f32],
    ckpt: Option<&mut [f32]>,
    x: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: AVX2 support was detected at run time by the caller.
        unsafe { forward_block_avx2(rows, every, len, u, y, ckpt, x) };
        return;
    }
    let _ = avx2;
    forward_block(rows, every, len, u, y, ckpt, x)
}

/// Forward of one row with the best instruction set available.
#[allow(clippy::too_many_arguments)]
fn forward_row_best<Q: StateMap>(
    avx2: bool,
    m: &RowMatrices<'_>,
    q: Q,
    every: usize,
    u: &[f32],
    y: &mut [f32],
    ckpt: Option<&mut [f32]>,
    x: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: AVX2 support was detected at run time by the caller.
        unsafe { forward_row_avx2(m, q, every, u, y, ckpt, x) };
        return;
    }
    let _ = avx2;
    forward_row(m, q, every, u, y, ckpt, x)
}

/// Backward of one row with the best instruction set available.
fn backward_row_best<Q: StateMap>(avx2: bool, m: &RowMatrices<'_>, q: Q, row: BackwardRow<'_>) {
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: AVX2 support was detected at run time by the caller.
        unsafe { backward_row_avx2(m, q, row) };
        return;
    }
    let _ = avx2;
    backward_row(m, q, row)
}

/// How the rows of a call are split into parallel tasks: `rows` consecutive rows per task,
/// each task owning `block` consecutive values of `u` and `y`.
#[derive(Debug, Clone, Copy)]
struct Tasks {
    block: usize,
    rows: usize,
    layout: ScanLayout,
    heads: usize,
}

impl Tasks {
    /// One row per task channel-major; one batch element (all heads) per task time-major,
    /// whose rows interleave in memory.
    fn of(dims: ScanDims) -> Self {
        let (block, rows) = match dims.layout {
            ScanLayout::ChannelMajor => (dims.len, 1),
            ScanLayout::TimeMajor => (dims.heads * dims.len, dims.heads),
        };
        Self {
            block,
            rows,
            layout: dims.layout,
            heads: dims.heads,
        }
    }

    /// Head and position of row `r` of task `task`.
    fn row(&self, task: usize, r: usize) -> (usize, RowView) {
        let h = (task * self.rows + r) % self.heads;
        let view = match self.layout {
            ScanLayout::ChannelMajor => RowView {
                offset: 0,
                stride: 1,
            },
            ScanLayout::TimeMajor => RowView {
                offset: h,
                stride: self.heads,
            },
        };
        (h, view)
    }
}

/// Forward scan of every `(batch, head)` row, in parallel. `u`: `[B, H, L]` or `[B, L, H]`
/// (`dims.layout`). Checkpoints are kept when `keep_checkpoints` (the backward pass needs
/// them).
pub fn scan_forward(
    dims: ScanDims,
    m: &ScanMatrices<'_>,
    q: Option<&StateQuantizer<'_>>,
    u: &[f32],
    keep_checkpoints: bool,
) -> ScanOutput {
    let ScanDims {
        heads, len, modes, ..
    } = dims;
    let every = dims.checkpoint_every();
    let ck_row = dims.segments() * 2 * modes;
    let mut y = vec![0.0f32; u.len()];
    let mut checkpoints = vec![
        0.0f32;
        if keep_checkpoints {
            dims.checkpoint_len()
        } else {
            0
        }
    ];
    if len == 0 || modes == 0 {
        return ScanOutput { y, checkpoints };
    }
    let avx2 = crate::cpu::has_avx2();
    let tasks = Tasks::of(dims);
    let fixed = lanes::chunks_for(modes);
    let run = |(task, (u_b, y_b)): (usize, (&[f32], &mut [f32])), mut ck: Option<&mut [f32]>| {
        if let Some(chunks) = fixed {
            // Row by row, each row's state in registers (see `lanes`).
            for r in 0..tasks.rows {
                let (h, view) = tasks.row(task, r);
                let rm = RowMatrices::for_head(m, h, modes);
                let row = ForwardRow {
                    every,
                    len,
                    view,
                    u: u_b,
                    y: &mut *y_b,
                    ckpt: ck
                        .as_deref_mut()
                        .map(|c| &mut c[r * ck_row..(r + 1) * ck_row]),
                };
                match q {
                    Some(q) => with_clip!(RowQuant::<false>::for_head(q, h), rq => {
                        lanes::forward_dispatch(avx2, chunks, &rm, rq, row)
                    }),
                    None => lanes::forward_dispatch(avx2, chunks, &rm, Identity, row),
                }
            }
            return;
        }
        if dims.layout == ScanLayout::TimeMajor {
            let mut x = vec![0.0f32; 4 * modes * tasks.rows];
            let head_ids = 0..tasks.rows;
            let rm = |h| RowMatrices::for_head(m, h, modes);
            match q {
                Some(q) => {
                    let rows: Vec<_> = head_ids
                        .map(|h| (rm(h), RowQuant::<false>::for_head(q, h)))
                        .collect();
                    forward_block_best(avx2, &rows, every, len, u_b, y_b, ck, &mut x)
                }
                None => {
                    let rows: Vec<_> = head_ids.map(|h| (rm(h), Identity)).collect();
                    forward_block_best(avx2, &rows, every, len, u_b, y_b, ck, &mut x)
                }
            }
            return;
        }
        // Channel-major: one contiguous row per task.
        let mut x = vec![0.0f32; 4 * modes];
        let h = task % heads;
        let rm = RowMatrices::for_head(m, h, modes);
        match q {
            Some(q) => {
                let rq = RowQuant::<false>::for_head(q, h);
                forward_row_best(avx2, &rm, rq, every, u_b, y_b, ck, &mut x)
            }
            None => forward_row_best(avx2, &rm, Identity, every, u_b, y_b, ck, &mut x),
        }
    };
    let blocks = u
        .par_chunks(tasks.block)
        .zip(y.par_chunks_mut(tasks.block))
        .enumerate();
    if keep_checkpoints {
        blocks
            .zip(checkpoints.par_chunks_mut(tasks.rows * ck_row))
            .for_each(|(b, ck)| run(b, Some(ck)));
    } else {
        blocks.for_each(|b| run(b, None));
    }
    ScanOutput { y, checkpoints }
}

/// Backward of one quantized row: the fixed-width loops, specialised to the clips that can
/// bind for its head ([`RowQuant::clip`]), when `fixed` (`M / 8`); else the generic ones.
fn quant_backward_row<const LSQ: bool>(
    avx2: bool,
    fixed: Option<usize>,
    m: &RowMatrices<'_>,
    rq: RowQuant<LSQ>,
    row: BackwardRow<'_>,
) {
    match fixed {
        Some(c) => with_clip!(rq, q => lanes::backward_dispatch(avx2, c, m, q, row)),
        None => backward_row_best(avx2, m, rq, row),
    }
}

/// Backward of one row: the fixed-width loops when `fixed` (`M / 8`), else the generic ones.
fn backward_row_any<Q: StateMap>(
    avx2: bool,
    fixed: Option<usize>,
    m: &RowMatrices<'_>,
    q: Q,
    row: BackwardRow<'_>,
) {
    match fixed {
        Some(c) => lanes::backward_dispatch(avx2, c, m, q, row),
        None => backward_row_best(avx2, m, q, row),
    }
}

/// Backward scan: gradients of `sum(dy * y)` for every input of [`scan_forward`], from the
/// checkpoints it kept (`u`, `dy` and the returned `du` in `dims.layout`). Per-row partial
/// gradients are summed over the batch in a fixed order, so results do not depend on thread
/// scheduling or on the layout.
pub fn scan_backward(
    dims: ScanDims,
    m: &ScanMatrices<'_>,
    q: Option<&StateQuantizer<'_>>,
    u: &[f32],
    checkpoints: &[f32],
    dy: &[f32],
) -> ScanGrads {
    let ScanDims {
        batch,
        heads,
        len,
        modes,
        ..
    } = dims;
    let every = dims.checkpoint_every();
    let ck_row = dims.segments() * 2 * modes;
    let glen = row_grad_len(modes);
    let mut du = vec![0.0f32; u.len()];
    let mut row_grads = vec![0.0f32; batch * heads * glen];
    let avx2 = crate::cpu::has_avx2();
    let tasks = Tasks::of(dims);
    let fixed = lanes::chunks_for(modes);
    if len > 0 && modes > 0 {
        u.par_chunks(tasks.block)
            .zip(dy.par_chunks(tasks.block))
            .zip(checkpoints.par_chunks(tasks.rows * ck_row))
            .zip(du.par_chunks_mut(tasks.block))
            .zip(row_grads.par_chunks_mut(tasks.rows * glen))
            .enumerate()
            .for_each(|(task, ((((u_b, dy_b), ck_b), du_b), g_b))| {
                let mut work = vec![
                    0.0f32;
                    match fixed {
                        Some(_) => lanes::work_len(modes, every),
                        None => backward_work_len(modes, every),
                    }
                ];
                for r in 0..tasks.rows {
                    let (h, view) = tasks.row(task, r);
                    let rm = RowMatrices::for_head(m, h, modes);
                    let row = BackwardRow {
                        every,
                        len,
                        view,
                        u: u_b,
                        dy: dy_b,
                        ckpt: &ck_b[r * ck_row..(r + 1) * ck_row],
                        du: &mut *du_b,
                        grads: &mut g_b[r * glen..(r + 1) * glen],
                        work: &mut work,
                    };
                    match q {
                        Some(q) if q.learn_scale => {
                            let rq = RowQuant::<true>::for_head(q, h);
                            quant_backward_row(avx2, fixed, &rm, rq, row)
                        }
                        Some(q) => {
                            let rq = RowQuant::<false>::for_head(q, h);
                            quant_backward_row(avx2, fixed, &rm, rq, row)
                        }
                        None => backward_row_any(avx2, fixed, &rm, Identity, row),
                    }
                }
            });
    }
    let mut total = vec![0.0f32; heads * glen];
    for b in 0..batch {
        let rows = &row_grads[b * heads * glen..(b + 1) * heads * glen];
        total.iter_mut().zip(rows).for_each(|(t, r)| *t += r);
    }
    let pick = |part: usize| -> Vec<f32> {
        (0..heads)
            .flat_map(|h| total[h * glen + part * modes..h * glen + (part + 1) * modes].to_vec())
            .collect()
    };
    ScanGrads {
        u: du,
        a_re: pick(0),
        a_im: pick(1),
        b_re: pick(2),
        b_im: pick(3),
        c_re: pick(4),
        c_im: pick(5),
        d: (0..heads).map(|h| total[h * glen + 6 * modes]).collect(),
        scale: (0..heads)
            .map(|h| total[h * glen + 6 * modes + 1])
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` pseudo-random values in [-1, 1) from a 64-bit LCG.
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
            })
            .collect()
    }

    /// The fixed-width loops (`lanes`) and the generic loops compute the same operations in
    /// the same order, so on one row their outputs, checkpoints, input gradients and matrix
    /// gradients are equal exactly: for the float state and binding 8-bit quantized ones
    /// with a learned and with a fixed scale, for `M` = 8, 16 and 32 (C = 1, 2, 4), and a
    /// length that is not a multiple of the checkpoint spacing or of the reduction block.
    /// The fixed-width loops run the quantizer specialised to the clips that can bind
    /// ([`RowQuant::clip`]), the generic loops the general form: one grid per case (only the
    /// grid's range binds, only the clamp binds, both bind), all on states of magnitude up to
    /// a few units.
    #[test]
    fn fixed_width_rows_equal_generic_rows_exactly() {
        for modes in [8, 16, 32] {
            let len = 203;
            let every = ScanDims {
                batch: 1,
                heads: 1,
                len,
                modes,
                layout: ScanLayout::ChannelMajor,
            }
            .checkpoint_every();
            let radius = values(modes, 1);
            let angle = values(modes, 2);
            let a_re: Vec<f32> = (0..modes)
                .map(|k| (0.8 + 0.15 * radius[k]) * (2.0 * angle[k]).cos())
                .collect();
            let a_im: Vec<f32> = (0..modes)
                .map(|k| (0.8 + 0.15 * radius[k]) * (2.0 * angle[k]).sin())
                .collect();
            let (b_re, b_im, c_re, c_im) = (
                values(modes, 3),
                values(modes, 4),
                values(modes, 5),
                values(modes, 6),
            );
            let m = RowMatrices {
                a_re: &a_re,
                a_im: &a_im,
                b_re: &b_re,
                b_im: &b_im,
                c_re: &c_re,
                c_im: &c_im,
                d: 0.3,
            };
            // Inputs up to 3 in magnitude drive the states past every bound below.
            let u: Vec<f32> = values(len, 7).iter().map(|v| 3.0 * v).collect();
            let dy = values(len, 8);
            let view = RowView {
                offset: 0,
                stride: 1,
            };
            let chunks = lanes::chunks_for(modes).expect("a multiple of eight");
            fn grid<const LSQ: bool>(clamp: f32, zero: f32) -> RowQuant<LSQ> {
                RowQuant {
                    scale: 0.02,
                    zero,
                    qmin: 0.0,
                    qmax: 255.0,
                    clamp,
                    magic_zero: MAGIC + zero,
                }
            }
            // (clamp, zero point, the clips that can bind): the grid spans about
            // [-2.4, 2.7] with zero 121 and [-4, 1.1] with zero 200.
            let cases = [
                (50.0, 121.0, CLIP_GRID),
                (2.0, 121.0, CLIP_CLAMP),
                (2.0, 200.0, CLIP_BOTH),
            ];
            /// `qg` runs the generic loops, `ql` the fixed-width ones.
            #[allow(clippy::too_many_arguments)]
            fn compare<G: StateMap, Q: StateMap>(
                qg: G,
                q: Q,
                chunks: usize,
                m: &RowMatrices<'_>,
                every: usize,
                view: RowView,
                u: &[f32],
                dy: &[f32],
            ) {
                let (modes, len) = (m.a_re.len(), u.len());
                let ck_len = len.div_ceil(every) * 2 * modes;
                let (mut y1, mut y2) = (vec![0.0; len], vec![0.0; len]);
                let (mut ck1, mut ck2) = (vec![0.0; ck_len], vec![0.0; ck_len]);
                let mut x = vec![0.0; 4 * modes];
                forward_row(m, qg, every, u, &mut y1, Some(&mut ck1), &mut x);
                let row = ForwardRow {
                    every,
                    len,
                    view,
                    u,
                    y: &mut y2,
                    ckpt: Some(&mut ck2),
                };
                lanes::forward_dispatch(crate::cpu::has_avx2(), chunks, m, q, row);
                assert_eq!(y1, y2, "outputs, M = {modes}");
                assert_eq!(ck1, ck2, "checkpoints, M = {modes}");
                let (mut du1, mut du2) = (vec![0.0; len], vec![0.0; len]);
                let (mut g1, mut g2) = (
                    vec![0.0; row_grad_len(modes)],
                    vec![0.0; row_grad_len(modes)],
                );
                let mut w1 = vec![0.0; backward_work_len(modes, every)];
                let mut w2 = vec![0.0; lanes::work_len(modes, every)];
                let row = BackwardRow {
                    every,
                    len,
                    view,
                    u,
                    dy,
                    ckpt: &ck1,
                    du: &mut du1,
                    grads: &mut g1,
                    work: &mut w1,
                };
                backward_row(m, qg, row);
                let row = BackwardRow {
                    every,
                    len,
                    view,
                    u,
                    dy,
                    ckpt: &ck1,
                    du: &mut du2,
                    grads: &mut g2,
                    work: &mut w2,
                };
                lanes::backward_dispatch(crate::cpu::has_avx2(), chunks, m, q, row);
                assert_eq!(du1, du2, "du, M = {modes}");
                assert_eq!(g1, g2, "matrix gradients, M = {modes}");
                assert!(y1.iter().chain(&g1).all(|v| v.is_finite()));
                // The scale's gradient is there exactly when asked for.
                assert_eq!(g1[6 * modes + 1] != 0.0, Q::SCALE_GRAD, "M = {modes}");
            }
            // The float states reach past every bound above, so each clip binds somewhere.
            let (mut xr, mut xi, mut peak) = (vec![0.0f32; modes], vec![0.0f32; modes], 0.0f32);
            for &ut in &u {
                for k in 0..modes {
                    let (r, i) = (xr[k], xi[k]);
                    xr[k] = a_re[k] * r - a_im[k] * i + b_re[k] * ut;
                    xi[k] = a_re[k] * i + a_im[k] * r + b_im[k] * ut;
                    peak = peak.max(xr[k].abs()).max(xi[k].abs());
                }
            }
            assert!(peak > 4.0, "peak state {peak}, M = {modes}");
            compare(Identity, Identity, chunks, &m, every, view, &u, &dy);
            for (clamp, zero, clip) in cases {
                let learned = grid::<true>(clamp, zero);
                assert_eq!(learned.clip(), clip, "clamp {clamp}, zero {zero}");
                with_clip!(learned, q => compare(learned, q, chunks, &m, every, view, &u, &dy));
                let fixed = grid::<false>(clamp, zero);
                with_clip!(fixed, q => compare(fixed, q, chunks, &m, every, view, &u, &dy));
            }
        }
    }

    /// The magic-number rounding equals `round_ties_even` on every quarter step in a 16-bit
    /// grid range (halves included, where the two rules could differ) and on random values.
    #[test]
    fn magic_rounding_is_half_to_even() {
        for i in -4 * 70_000..4 * 70_000 {
            let v = i as f32 * 0.25;
            assert_eq!(round_half_even_small(v), v.round_ties_even(), "{v}");
        }
        for v in values(100_000, 12345).iter().map(|x| x * 70_000.0) {
            assert_eq!(round_half_even_small(v), v.round_ties_even(), "{v}");
        }
    }
}
