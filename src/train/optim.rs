//! AdamW, its learning-rate schedule and gradient clipping.

use serde::{Deserialize, Serialize};

use crate::train::backend::AdamWUpdate;

/// AdamW hyperparameters (decoupled weight decay, as in PyTorch's `AdamW`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamW {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// Applied only to tensors for which [`decays`] holds.
    pub weight_decay: f32,
}

impl Default for AdamW {
    /// nanoGPT's defaults.
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
        }
    }
}

impl AdamW {
    /// The constants of update number `t` (counting from 1) at learning rate `lr`, for a tensor
    /// that is decayed or not.
    pub fn update(&self, lr: f32, t: u64, decay: bool) -> AdamWUpdate {
        // In f64 so that beta^t stays accurate for long runs, and every backend gets one value.
        let correction = |beta: f32| (1.0 - f64::from(beta).powf(t as f64)) as f32;
        AdamWUpdate {
            lr,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            weight_decay: if decay { self.weight_decay } else { 0.0 },
            bias_correction1: correction(self.beta1),
            bias_correction2: correction(self.beta2),
        }
    }
}

/// Whether weight decay applies to a tensor of this shape: matrices (linear weights, embeddings)
/// decay; vectors (biases, LayerNorm gains and shifts) do not, as in nanoGPT.
pub fn decays(shape: &[usize]) -> bool {
    shape.len() >= 2
}

/// The learning rate at `step` (counting from 0): linear warmup over `warmup_iters` steps to
/// `base_lr`, then cosine decay to `min_lr` at `max_iters`, and `min_lr` after that.
pub fn lr_at(step: u64, base_lr: f32, min_lr: f32, warmup_iters: u64, max_iters: u64) -> f32 {
    let (base, min) = (f64::from(base_lr), f64::from(min_lr));
    if step < warmup_iters {
        // (step + 1) so that the first step already moves the weights.
        return (base * (step + 1) as f64 / (warmup_iters + 1) as f64) as f32;
    }
    if step >= max_iters {
        return min_lr;
    }
    let progress = (step - warmup_iters) as f64 / (max_iters - warmup_iters) as f64;
    let coeff = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
    (min + coeff * (base - min)) as f32
}

/// The factor that scales gradients of global norm `norm` down to `max_norm`, when clipping is
/// on (`max_norm > 0`) and the norm exceeds it. As in PyTorch, `1e-6` guards the division.
/// A non-finite norm is left alone: scaling cannot repair it.
pub fn clip_factor(norm: f32, max_norm: f32) -> Option<f32> {
    (max_norm > 0.0 && norm.is_finite() && norm > max_norm).then(|| max_norm / (norm + 1e-6))
}
