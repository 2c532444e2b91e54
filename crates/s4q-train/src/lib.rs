//! # s4q-train
//!
//! The training loops of s4q as a library, so they can be called from a user's own program as
//! well as from the `experiments` command line: float training ([`train`]), QAT fine-tuning of
//! a float run (optionally distilled from it, [`distill`]) and QAT from scratch ([`qat`]), PTQ
//! ([`ptq_eval`]), evaluation of float and fake-quantized models ([`eval`]), calibration
//! batches, checkpoints with exact resume ([`checkpoint`]), JSON-lines metrics, and one typed
//! run-directory format ([`run_dir`]) shared by float, PTQ, QAT and imported runs.
//!
//! Data comes from a [`DataConfig`]: a named set of the `datasets` crate or the user's own
//! `.ts` / `.npy` / `.npz` / `.csv` files, with an optional stratified validation split (which
//! picks the kept checkpoint; the test split never decides anything) and per-channel
//! standardisation fitted on the training split and saved with the run ([`Preprocess`]).
//! Batches are padded to their longest sequence and pooled over each sequence's own steps.
//!
//! ## Why not burn's `Learner`
//! burn's `Learner` (TrainStep / ValidStep) owns the epoch loop, its checkpointer and its
//! metrics. s4q needs things it does not offer in 0.22: two parameter groups with their own
//! schedules (the SSM's `log_dt`, `A`, `B` at a lower rate without weight decay), resume that
//! is bit-exact (the epoch's data order derived from the seed, optimizer moments and schedule
//! position restored together), checkpoints published atomically with a `LATEST` pointer that
//! a `SIGKILL` cannot corrupt, range re-estimation between optimizer steps for QAT from
//! scratch, and a fake-quantized model whose forward can fail (an uncalibrated quantizer). The
//! loops here are small and each exists once; they use burn's optimizers, schedulers and
//! gradient clipping.
//!
//! ```no_run
//! use burn::prelude::*;
//! use datasets::DatasetName;
//! use s4q_train::{DataConfig, TrainConfig, train};
//!
//! let mut cfg = TrainConfig::recipe("s4d-16h", DatasetName::Embedded)?;
//! cfg.data = DataConfig::named(DatasetName::Embedded);
//! cfg.epochs = 2;
//! let result = train(&cfg, std::path::Path::new("runs/demo"), &Device::flex(), false)?;
//! println!("test accuracy {:.2}%", result.test_acc);
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! Errors are `anyhow` errors with context naming the file or option at fault: these loops
//! sit at the application edge, and every failure ends in a message for a person.

pub mod checkpoint;
pub mod data;
pub mod distill;
pub mod eval;
pub mod metrics;
pub mod predict;
pub mod progress;
pub mod quantize;
pub mod run_dir;
pub mod train;

pub use data::{Batch, DataConfig, PreparedData, Preprocess, epoch_order, make_batch};
pub use distill::{DistillConfig, TeacherLogits, distillation_loss};
pub use eval::{Evaluation, count_correct, evaluate, evaluate_quantized, evaluate_with};
pub use quantize::{
    QatResult, QatRunConfig, ScratchConfig, Source, balanced_model, calibration_batches,
    load_float_source, load_quantized, ptq_eval, qat,
};
pub use run_dir::{RunKind, RunManifest};
pub use train::{TrainConfig, TrainResult, train, warmup_cosine_lr};
