//! The learning rate at a fractional epoch, as PySlowFast's
//! `utils/lr_policy.py`: the policy's value, replaced during warm-up by a
//! line from `warmup_start_lr` to the policy's value at the warm-up's end.
//! The trainer evaluates it every iteration at `epoch + iter / iters`.

use std::f64::consts::PI;

use crate::recipe::{LrPolicy, SolverSection};

/// `scale` is the linear-scaling factor (global batch / reference batch),
/// applied to every LR of the recipe.
pub fn lr_at(solver: &SolverSection, scale: f64, epoch: f64) -> f64 {
    let policy = |e: f64| policy_lr(solver, e);
    let lr = if epoch < solver.warmup_epochs {
        let start = solver.warmup_start_lr;
        let end = policy(solver.warmup_epochs);
        start + epoch * (end - start) / solver.warmup_epochs
    } else {
        policy(epoch)
    };
    lr * scale
}

fn policy_lr(s: &SolverSection, epoch: f64) -> f64 {
    match &s.lr_policy {
        LrPolicy::Cosine => s.cosine_end_lr + (s.base_lr - s.cosine_end_lr) * ((PI * epoch / s.max_epoch as f64).cos() + 1.0) * 0.5,
        LrPolicy::Steps { steps, lrs } => {
            let i = steps.iter().rposition(|&st| epoch >= st as f64).unwrap_or(0);
            lrs[i] * s.base_lr
        }
        LrPolicy::Constant => s.base_lr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinetics() -> SolverSection {
        let yaml = "base_lr: 0.1\nmax_epoch: 196\nwarmup_epochs: 34\nwarmup_start_lr: 0.01\n";
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn warmup_then_cosine_like_pyslowfast() {
        let s = kinetics();
        assert!((lr_at(&s, 1.0, 0.0) - 0.01).abs() < 1e-12);
        // End of warm-up meets the cosine curve: 0.1 * (cos(pi*34/196)+1)/2.
        let at34 = 0.1 * ((PI * 34.0 / 196.0).cos() + 1.0) * 0.5;
        assert!((lr_at(&s, 1.0, 34.0) - at34).abs() < 1e-12);
        assert!((lr_at(&s, 1.0, 33.999_999) - at34).abs() < 1e-6);
        assert!((lr_at(&s, 1.0, 17.0) - (0.01 + at34) / 2.0).abs() < 1e-12);
        assert!(lr_at(&s, 1.0, 196.0).abs() < 1e-12);
        // Linear scaling: batch 16 of a recipe made for 64.
        assert!((lr_at(&s, 0.25, 0.0) - 0.0025).abs() < 1e-12);
    }

    #[test]
    fn relative_steps() {
        let mut s = kinetics();
        s.warmup_epochs = 0.0;
        s.lr_policy = LrPolicy::Steps { steps: vec![0, 10, 20], lrs: vec![1.0, 0.1, 0.01] };
        assert_eq!(lr_at(&s, 1.0, 9.99), 0.1);
        assert!((lr_at(&s, 1.0, 10.0) - 0.01).abs() < 1e-12);
        assert!((lr_at(&s, 1.0, 25.0) - 0.001).abs() < 1e-12);
    }
}
