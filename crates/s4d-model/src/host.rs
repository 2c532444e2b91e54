//! Moving tensors between a CPU backend and host vectors, for backend extensions whose kernels
//! are plain Rust loops (the fused scan, convolution, GELU and GLU here, the fused fake
//! quantizer in `qat`), and the autodiff plumbing those extensions share: recording a host op
//! on the graph ([`record_host_op`]) and handing its host gradients back
//! ([`register_host_grads`]).

use std::any::Any;
use std::future::Future;
use std::ops::Deref;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, NodeGuard, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Backend, Flex, TensorMetadata, tensor::FloatTensor};
use burn::tensor::{DType, TensorData};

/// Polls a future on the current thread until it is ready. The CPU backends' reads complete
/// immediately; parking covers any backend that completes them from another thread.
pub fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(out) => return out,
            Poll::Pending => std::thread::park(),
        }
    }
}

/// A backend tensor's values as `f32` on the host. Failing to read a CPU tensor is a broken
/// backend invariant (not an input error), hence the panic with context.
pub fn to_host<B: Backend>(t: FloatTensor<B>) -> Vec<f32> {
    let data = block_on(B::float_into_data(t))
        .unwrap_or_else(|e| panic!("fused op: reading a tensor back failed: {e:?}"));
    data.convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap_or_else(|e| panic!("fused op: tensor is not f32-convertible: {e:?}"))
}

/// A tensor's `f32` values on the host, borrowed where the backend already keeps them there.
///
/// Reading a Flex tensor through [`to_host`] copies it twice when it is large: once when the
/// buffer is shared (a block keeps its input for the residual) and once more because Flex's
/// byte buffers cannot become a `Vec<f32>` without reallocating. The fused ops only read their
/// inputs, so a contiguous `f32` Flex tensor is held as it is and read in place.
#[derive(Debug, Clone)]
pub enum HostValues {
    /// A contiguous `f32` Flex tensor, read in place.
    Flex(FlexTensor),
    /// Values copied out of any other tensor.
    Owned(Vec<f32>),
}

impl Deref for HostValues {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        match self {
            // `host_values` keeps only tensors whose `as_slice` is `Some`.
            Self::Flex(t) => t
                .as_slice::<f32>()
                .expect("HostValues::Flex holds a contiguous f32 tensor"),
            Self::Owned(v) => v,
        }
    }
}

/// A backend tensor's values as `f32` on the host, in place for a contiguous `f32` Flex tensor
/// and through [`to_host`] otherwise.
pub fn host_values<B: Backend>(t: FloatTensor<B>) -> HostValues {
    let mut slot = Some(t);
    if let Some(flex) = (&mut slot as &mut dyn Any).downcast_mut::<Option<FlexTensor>>() {
        let flex = flex.take().expect("the slot was just filled");
        return if flex.as_slice::<f32>().is_some() {
            HostValues::Flex(flex)
        } else {
            HostValues::Owned(to_host::<Flex>(flex))
        };
    }
    HostValues::Owned(to_host::<B>(slot.take().expect("the slot was just filled")))
}

/// Host vectors to a backend tensor of `dtype` on `device`.
pub fn from_host<B: Backend>(
    values: Vec<f32>,
    shape: Vec<usize>,
    dtype: DType,
    device: &B::Device,
) -> FloatTensor<B> {
    let data = TensorData::new(values, shape);
    let data = if dtype == DType::F32 {
        data
    } else {
        data.convert_dtype(dtype)
    };
    B::float_from_data(data, device)
}

/// Where a host op's results go: the device and dtype of its input, so outputs and gradients
/// come back as the caller's tensors were.
#[derive(Debug, Clone)]
pub struct HostTarget<D> {
    /// Device of the op's input.
    pub device: D,
    /// Float dtype of the op's input.
    pub dtype: DType,
}

impl<D: Clone> HostTarget<D> {
    /// The target matching `t`.
    pub fn of<B: Backend<Device = D>>(t: &FloatTensor<B>) -> Self {
        Self {
            device: t.device(),
            dtype: t.dtype(),
        }
    }

    /// Host values of `shape` as a tensor on this target.
    pub fn tensor<B: Backend<Device = D>>(
        &self,
        values: Vec<f32>,
        shape: Vec<usize>,
    ) -> FloatTensor<B> {
        from_host::<B>(values, shape, self.dtype, &self.device)
    }
}

/// Puts an op computed on the host onto the autodiff graph, so each fused op only says how to
/// compute itself. `forward(keep)` returns the output and the state `backward` reads; `keep`
/// is false when no input needs a gradient, and the forward may then skip what only the
/// backward uses (the state it returns is dropped).
pub fn record_host_op<B, C, T, const N: usize>(
    backward: T,
    guards: [NodeGuard; N],
    forward: impl FnOnce(bool) -> (FloatTensor<B>, T::State),
) -> FloatTensor<Autodiff<B, C>>
where
    B: Backend,
    C: CheckpointStrategy,
    T: Backward<B, N> + 'static,
{
    match backward.prepare::<C>(guards).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let (out, state) = forward(true);
            prep.finish(state, out)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(false).0),
    }
}

/// Hands host gradients (values and shape, `None` for an input without one) to the parents
/// that asked for them, in the order of the op's inputs.
pub fn register_host_grads<B: Backend, const N: usize>(
    grads: &mut Gradients,
    parents: [Option<NodeId>; N],
    outputs: [Option<(Vec<f32>, Vec<usize>)>; N],
    target: &HostTarget<B::Device>,
) {
    for (parent, output) in parents.into_iter().zip(outputs) {
        if let (Some(id), Some((values, shape))) = (parent, output) {
            grads.register::<B>(id, target.tensor::<B>(values, shape));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize) -> Vec<f32> {
        (0..n).map(|i| i as f32 * 0.5 - 3.0).collect()
    }

    /// A contiguous Flex tensor is read in place, even while another handle shares it: the
    /// slice is the tensor's own buffer, not a copy.
    #[test]
    fn contiguous_flex_tensors_are_read_in_place() {
        let t = FlexTensor::from_data(TensorData::new(values(12), [3, 4]));
        let keep = t.clone(); // shares the buffer, as a block keeping its input does
        let host = host_values::<Flex>(t);
        assert!(matches!(host, HostValues::Flex(_)));
        assert_eq!(host.as_ptr().cast::<u8>(), keep.bytes().as_ptr());
        assert_eq!(&*host, values(12).as_slice());
    }

    /// A transposed view is not contiguous: its values come back copied, in logical order.
    #[test]
    fn strided_views_are_copied_in_logical_order() {
        let t = FlexTensor::from_data(TensorData::new(values(6), [2, 3])).transpose(0, 1);
        let host = host_values::<Flex>(t);
        assert!(matches!(host, HostValues::Owned(_)));
        let v = values(6);
        let expected = [v[0], v[3], v[1], v[4], v[2], v[5]];
        assert_eq!(&*host, expected.as_slice());
    }
}
