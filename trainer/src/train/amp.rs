//! Mixed precision: autocast regions and dynamic loss scaling as
//! `torch.amp.GradScaler` does it (scale 2^16, halved and the step skipped
//! when a gradient is inf or NaN, doubled after 2000 clean steps).

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

const INIT_SCALE: f64 = 65536.0;
const GROWTH_FACTOR: f64 = 2.0;
const BACKOFF_FACTOR: f64 = 0.5;
const GROWTH_INTERVAL: u32 = 2000;

/// The scaler's whole state, kept in checkpoints so a resumed run scales
/// as the uninterrupted one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossScaler {
    pub scale: f64,
    /// Clean steps since the scale last changed.
    pub growth_tracker: u32,
}

impl Default for LossScaler {
    fn default() -> Self {
        LossScaler { scale: INIT_SCALE, growth_tracker: 0 }
    }
}

impl LossScaler {
    /// Divides `grads` by the scale in place; true when all are finite.
    /// After DDP's all-reduce every rank holds the same gradients, so every
    /// rank takes the same decision.
    pub fn unscale(&self, grads: &[Tensor]) -> bool {
        let inv = 1.0 / self.scale;
        let mut bad = Tensor::zeros([], (Kind::Bool, grads.first().map(|g| g.device()).unwrap_or(tch::Device::Cpu)));
        tch::no_grad(|| {
            for g in grads {
                let mut g = g.shallow_clone();
                let _ = g.g_mul_scalar_(inv);
                bad = bad.logical_or(&g.isfinite().logical_not().any());
            }
        });
        bad.int64_value(&[]) == 0
    }

    /// After a step (or a skipped one, when `found_inf`).
    pub fn update(&mut self, found_inf: bool) {
        if found_inf {
            self.scale *= BACKOFF_FACTOR;
            self.growth_tracker = 0;
        } else {
            self.growth_tracker += 1;
            if self.growth_tracker == GROWTH_INTERVAL {
                self.scale *= GROWTH_FACTOR;
                self.growth_tracker = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overflow_skips_and_halves_and_clean_steps_grow_the_scale() {
        let mut s = LossScaler::default();
        let good = [Tensor::from_slice(&[65536.0f32, -131072.0])];
        assert!(s.unscale(&good));
        assert_eq!(Vec::<f32>::try_from(&good[0]).unwrap(), vec![1.0, -2.0]);
        let bad = [Tensor::from_slice(&[1.0f32]), Tensor::from_slice(&[f32::INFINITY, 0.0])];
        assert!(!s.unscale(&bad));
        s.update(true);
        assert_eq!(s, LossScaler { scale: 32768.0, growth_tracker: 0 });
        let nan = [Tensor::from_slice(&[f32::NAN])];
        assert!(!s.unscale(&nan));
        for _ in 0..GROWTH_INTERVAL - 1 {
            s.update(false);
        }
        assert_eq!(s.scale, 32768.0);
        s.update(false);
        assert_eq!(s, LossScaler { scale: 65536.0, growth_tracker: 0 });
    }
}
