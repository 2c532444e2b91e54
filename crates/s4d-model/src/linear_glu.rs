//! The block's per-step mixing `GLU(x W + b)` (`[.., H] -> [.., 2H] -> [.., H]`) as one CPU op
//! with a hand-written backward.
//!
//! Composed on Flex, the mixing is a batched matmul whose output Flex zero-fills and then
//! copies into an aligned buffer, a bias pass, a GLU pass, and in the backward a batched
//! weight-gradient product summed over the batch plus a bias-gradient reduction. Here rows
//! are processed in blocks: one `gemm` call per block writes `z = x W` into the block's
//! buffer, the bias and GLU follow while the block is in cache, and the backward turns each
//! block's `dy` into `dz`, `dx = dz W^T` and the block's share of `dW = x^T dz` and `db`,
//! summed over blocks in a fixed order (deterministic). `z` is kept for the backward.

// NdArray is deprecated upstream but still a supported backend of s4q; the extension macro
// names it in generated code, which item-level `allow`s do not reach.
#![allow(deprecated)]

use burn::backend::NdArray;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::{
    Autodiff, Backend, Dispatch, Flex, TensorMetadata, backend_extension, tensor::FloatTensor,
};
use burn::prelude::*;
use rayon::prelude::*;

use crate::host::{HostTarget, HostValues, host_values, record_host_op, register_host_grads};
use crate::pointwise::{fused_pointwise_supported, glu_backward_chunk, glu_chunk, glu_last};

/// Rows per block: large enough for `gemm` to pay off, small enough to stay in L2.
const ROWS: usize = 256;

/// A matrix operand for `gemm`: its values and the strides (in elements) between columns and
/// between rows.
type Operand<'a> = (&'a [f32], usize, usize);

/// Whether strides `(cs, rs)` keep a `rows x cols` matrix inside `len` elements.
fn fits(len: usize, rows: usize, cols: usize, (cs, rs): (usize, usize)) -> bool {
    rows == 0 || cols == 0 || (rows - 1) * rs + (cols - 1) * cs < len
}

/// `out = a b` with `a: [m, k]` and `b: [k, n]` read through their strides (so either can be
/// a transpose) and `out: [m, n]` row-major, written without being read.
fn matmul(out: &mut [f32], (m, k, n): (usize, usize, usize), a: Operand<'_>, b: Operand<'_>) {
    let ((av, a_cs, a_rs), (bv, b_cs, b_rs)) = (a, b);
    assert!(
        out.len() == m * n
            && fits(av.len(), m, k, (a_cs, a_rs))
            && fits(bv.len(), k, n, (b_cs, b_rs)),
        "fused linear-GLU: operands do not match [{m}, {k}] x [{k}, {n}]"
    );
    // SAFETY: every element the strides address lies inside its slice (checked above), and
    // `out` holds the `m x n` elements it is written at; `out` is only written (`read_dst`
    // false), so its initial values do not matter.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            av.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            bv.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Forward on the host: `x: [R, K]`, `w: [K, N]`, `b: [N]` -> `y: [R, N/2]`, and the
/// pre-GLU `z: [R, N]` when `keep` (the backward reads it); otherwise each block's `z` lives
/// in a per-thread scratch buffer and is never gathered.
fn forward_host(x: &[f32], w: &[f32], b: &[f32], keep: bool) -> (Vec<f32>, Option<Vec<f32>>) {
    let n = b.len();
    let (k, half) = (w.len() / n.max(1), n / 2);
    let rows = x.len() / k.max(1);
    let block = |z: &mut [f32], y: &mut [f32], x: &[f32]| {
        let m = x.len() / k;
        let z = &mut z[..m * n];
        matmul(z, (m, k, n), (x, 1, k), (w, 1, n));
        for row in z.chunks_exact_mut(n) {
            row.iter_mut().zip(b).for_each(|(v, b)| *v += b);
        }
        glu_chunk(y, z, half);
    };
    let mut y = vec![0.0f32; rows * half];
    let blocks = y.par_chunks_mut(ROWS * half).zip(x.par_chunks(ROWS * k));
    if keep {
        let mut z = vec![0.0f32; rows * n];
        z.par_chunks_mut(ROWS * n)
            .zip(blocks)
            .for_each(|(z, (y, x))| block(z, y, x));
        (y, Some(z))
    } else {
        blocks.for_each_init(|| vec![0.0f32; ROWS * n], |z, (y, x)| block(z, y, x));
        (y, None)
    }
}

/// Backward on the host from `dy: [R, N/2]`, with the forward's `z: [R, N]`: `(dx, dw, db)`.
fn backward_host(
    x: &[f32],
    w: &[f32],
    z: &[f32],
    dy: &[f32],
    n: usize,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (k, half) = (w.len() / n.max(1), n / 2);
    let rows = x.len() / k.max(1);
    let mut dx = vec![0.0f32; rows * k];
    let partials: Vec<(Vec<f32>, Vec<f32>)> = dx
        .par_chunks_mut(ROWS * k)
        .zip(x.par_chunks(ROWS * k))
        .zip(z.par_chunks(ROWS * n).zip(dy.par_chunks(ROWS * half)))
        .map(|((dx, x), (z, dy))| {
            let m = x.len() / k;
            let mut dz = vec![0.0f32; m * n];
            glu_backward_chunk(&mut dz, z, dy, half);
            // dx = dz W^T: W^T[j][i] = W[i][j].
            matmul(dx, (m, n, k), (&dz, 1, n), (w, n, 1));
            // The block's dW = x^T dz: x^T[i][r] = x[r][i].
            let mut dw = vec![0.0f32; k * n];
            matmul(&mut dw, (k, m, n), (x, k, 1), (&dz, 1, n));
            let mut db = vec![0.0f32; n];
            for row in dz.chunks_exact(n) {
                db.iter_mut().zip(row).for_each(|(a, v)| *a += v);
            }
            (dw, db)
        })
        .collect();
    let mut dw = vec![0.0f32; k * n];
    let mut db = vec![0.0f32; n];
    for (pw, pb) in &partials {
        dw.iter_mut().zip(pw).for_each(|(a, v)| *a += v);
        db.iter_mut().zip(pb).for_each(|(a, v)| *a += v);
    }
    (dx, dw, db)
}

/// The fused mixing as a backend operation.
#[backend_extension(Flex, NdArray, Autodiff)]
pub trait FusedLinearGluBackend: Backend {
    /// `GLU(x W + b)` over the last axis: `x: [.., K]`, `w: [K, N]`, `b: [N]` -> `[.., N/2]`.
    fn fused_linear_glu(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

/// The output shape for input shape `shape` and weight shape `ws`.
fn out_shape(shape: &[usize], ws: &[usize]) -> Vec<usize> {
    let k = *shape.last().unwrap_or(&0);
    assert!(
        ws.len() == 2 && ws[0] == k && ws[1].is_multiple_of(2),
        "fused linear-GLU: weight {ws:?} does not map {k} features to an even width"
    );
    let mut out = shape.to_vec();
    if let Some(last) = out.last_mut() {
        *last = ws[1] / 2;
    }
    out
}

macro_rules! host_linear_glu_backend {
    ($($backend:ty),*) => {$(
        impl FusedLinearGluBackend for $backend {
            fn fused_linear_glu(
                x: FloatTensor<Self>,
                w: FloatTensor<Self>,
                b: FloatTensor<Self>,
            ) -> FloatTensor<Self> {
                let target = HostTarget::of::<Self>(&x);
                let shape = out_shape(&x.shape().to_vec(), &w.shape().to_vec());
                let (x, w, b) = (host_values::<Self>(x), host_values::<Self>(w), host_values::<Self>(b));
                target.tensor::<Self>(forward_host(&x, &w, &b, false).0, shape)
            }
        }
    )*};
}

host_linear_glu_backend!(Flex, NdArray);

/// What the backward keeps: the inputs and the pre-GLU `z`, on the host.
#[derive(Debug, Clone)]
struct SavedLinearGlu<D> {
    x: HostValues,
    w: HostValues,
    z: Vec<f32>,
    /// Shapes of `x`, `w` (`[K, N]`) and `b`.
    shapes: [Vec<usize>; 3],
    target: HostTarget<D>,
}

#[derive(Debug)]
struct LinearGluBackward;

impl<B: Backend> Backward<B, 3> for LinearGluBackward {
    type State = SavedLinearGlu<B::Device>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let s = ops.state;
        let dy = host_values::<B>(grads.consume::<B>(&ops.node));
        let (dx, dw, db) = backward_host(&s.x, &s.w, &s.z, &dy, s.shapes[1][1]);
        let parents = ops.parents.map(|p| p.map(|node| node.id));
        let [xs, ws, bs] = s.shapes;
        let outputs = [Some((dx, xs)), Some((dw, ws)), Some((db, bs))];
        register_host_grads::<B, 3>(grads, parents, outputs, &s.target);
    }
}

impl<B: Backend + FusedLinearGluBackend, C: CheckpointStrategy> FusedLinearGluBackend
    for Autodiff<B, C>
{
    fn fused_linear_glu(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let guards = [x.node(), w.node(), b.node()];
        let target = HostTarget::of::<B>(x.primitive());
        let shapes = [
            x.primitive().shape().to_vec(),
            w.primitive().shape().to_vec(),
            b.primitive().shape().to_vec(),
        ];
        let out = out_shape(&shapes[0], &shapes[1]);
        let xv = host_values::<B>(x.into_primitive());
        let wv = host_values::<B>(w.into_primitive());
        let bv = host_values::<B>(b.into_primitive());
        record_host_op::<B, C, _, 3>(LinearGluBackward, guards, |keep| {
            let (y, z) = forward_host(&xv, &wv, &bv, keep);
            let saved = SavedLinearGlu {
                x: xv,
                w: wv,
                // Empty when no input is tracked: the state is then dropped unread.
                z: z.unwrap_or_default(),
                shapes,
                target: target.clone(),
            };
            (target.tensor::<B>(y, out), saved)
        })
    }
}

/// `GLU(x W + b)` over the last axis (`x: [B, L, K]`, `w: [K, N]`, `b: [N]` -> `[B, L, N/2]`):
/// the fused op on CPU backends when there is a bias, burn's `linear` and [`glu_last`]
/// otherwise.
pub fn linear_glu(x: Tensor<3>, w: Tensor<2>, b: Option<Tensor<1>>) -> Tensor<3> {
    match b {
        Some(b) if fused_pointwise_supported(&x.device()) => {
            Tensor::from_dispatch(<Dispatch as FusedLinearGluBackend>::fused_linear_glu(
                x.into_dispatch(),
                w.into_dispatch(),
                b.into_dispatch(),
            ))
        }
        b => glu_last(burn::tensor::module::linear(x, w, b)),
    }
}
