//! Moving tensors between a CPU backend and host vectors, for backend extensions whose kernels
//! are plain Rust loops (the fused scan and convolution here, the fused fake quantizer in `qat`).

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use burn::backend::{Backend, tensor::FloatTensor};
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
