//! Moving sequences from the `datasets` crate into burn tensors, in a seeded order.

use burn::prelude::*;
use burn::tensor::TensorData;
use datasets::SequenceDataset;

/// One mini-batch: inputs `[B, L, d_input]` and class indices `[B]`.
pub struct Batch {
    /// `[B, L, d_input]`.
    pub inputs: Tensor<3>,
    /// `[B]`.
    pub targets: Tensor<1, Int>,
}

/// Builds the tensors for the samples at `indices`.
pub fn make_batch(data: &SequenceDataset, indices: &[usize], device: &Device) -> Batch {
    let (x, y) = data.batch(indices);
    let b = indices.len();
    let inputs = Tensor::from_data(TensorData::new(x, [b, data.seq_len, data.d_input]), device);
    let y: Vec<i64> = y.into_iter().map(i64::from).collect();
    let targets = Tensor::from_data(TensorData::new(y, [b]), device);
    Batch { inputs, targets }
}

/// The sample order of epoch `epoch`: a permutation seeded by `(seed, epoch)`, so a resumed
/// run sees exactly the batches the uninterrupted one would have.
pub fn epoch_order(len: usize, seed: u64, epoch: usize) -> Vec<usize> {
    datasets::permutation(
        len,
        seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_order_is_a_seeded_permutation() {
        let a = epoch_order(100, 1, 0);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_eq!(a, epoch_order(100, 1, 0));
        assert_ne!(a, epoch_order(100, 1, 1));
        assert_ne!(a, epoch_order(100, 2, 0));
    }
}
