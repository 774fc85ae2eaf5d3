//! SGD with momentum exactly as `torch.optim.SGD` steps, written out so
//! that weight decay can be chosen per parameter (none on BatchNorm, as
//! PySlowFast's `BN.WEIGHT_DECAY`) and the momentum buffers can be saved in
//! checkpoints, neither of which `tch::nn::Optimizer` allows.

use std::collections::{BTreeMap, HashMap};

use tch::{Tensor, nn};

use crate::recipe::SolverSection;

struct Param {
    name: String,
    tensor: Tensor,
    weight_decay: f64,
    momentum_buffer: Option<Tensor>,
}

pub struct Sgd {
    params: Vec<Param>,
    momentum: f64,
    dampening: f64,
    nesterov: bool,
}

const BUFFER_PREFIX: &str = "momentum_buffer.";

impl Sgd {
    /// Every trainable variable of `vs`, in name order.
    pub fn new(vs: &nn::VarStore, s: &SolverSection) -> Self {
        let vars: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
        let params = vars
            .iter()
            .filter(|(_, t)| t.requires_grad())
            .map(|(name, t)| {
                let module = name.rsplit_once('.').map(|(m, _)| m).unwrap_or("");
                let is_bn = vars.contains_key(&format!("{module}.running_mean"));
                let weight_decay = if is_bn {
                    s.bn_weight_decay
                } else if s.zero_wd_1d_param && t.dim() <= 1 {
                    0.0
                } else {
                    s.weight_decay
                };
                Param { name: name.clone(), tensor: t.shallow_clone(), weight_decay, momentum_buffer: None }
            })
            .collect();
        Sgd { params, momentum: s.momentum, dampening: s.dampening, nesterov: s.nesterov }
    }

    /// Names of the parameters that get no weight decay.
    pub fn no_decay(&self) -> Vec<&str> {
        self.params.iter().filter(|p| p.weight_decay == 0.0).map(|p| p.name.as_str()).collect()
    }

    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.tensor.zero_grad();
        }
    }

    /// Scales gradients down so their joint L2 norm is at most `max_norm`
    /// (`torch.nn.utils.clip_grad_norm_`); returns the norm before.
    pub fn clip_grad_norm(&self, max_norm: f64) -> f64 {
        let grads: Vec<Tensor> = self.params.iter().map(|p| p.tensor.grad()).filter(|g| g.defined()).collect();
        if grads.is_empty() {
            return 0.0;
        }
        let norms: Vec<Tensor> = grads.iter().map(|g| g.norm()).collect();
        let total = Tensor::stack(&norms, 0).norm().double_value(&[]);
        let coef = max_norm / (total + 1e-6);
        if coef < 1.0 {
            tch::no_grad(|| {
                for g in &grads {
                    let mut g = g.shallow_clone();
                    let _ = g.g_mul_scalar_(coef);
                }
            });
        }
        total
    }

    /// One step at learning rate `lr`.
    pub fn step(&mut self, lr: f64) {
        let (momentum, dampening, nesterov) = (self.momentum, self.dampening, self.nesterov);
        tch::no_grad(|| {
            for p in &mut self.params {
                let grad = p.tensor.grad();
                if !grad.defined() {
                    continue;
                }
                let mut d_p = if p.weight_decay != 0.0 { &grad + &p.tensor * p.weight_decay } else { grad.shallow_clone() };
                if momentum != 0.0 {
                    let buf = match p.momentum_buffer.take() {
                        None => d_p.detach().copy(),
                        Some(mut buf) => {
                            let _ = buf.g_mul_scalar_(momentum);
                            let _ = buf.g_add_(&(&d_p * (1.0 - dampening)));
                            buf
                        }
                    };
                    d_p = if nesterov { &d_p + &buf * momentum } else { buf.shallow_clone() };
                    p.momentum_buffer = Some(buf);
                }
                let _ = p.tensor.g_sub_(&(d_p * lr));
            }
        });
    }

    /// Momentum buffers named `momentum_buffer.<parameter>`, for checkpoints.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.params
            .iter()
            .filter_map(|p| p.momentum_buffer.as_ref().map(|b| (format!("{BUFFER_PREFIX}{}", p.name), b.to_device(tch::Device::Cpu))))
            .collect()
    }

    /// Restores buffers saved by [`Sgd::state`]; any unknown or mis-shaped
    /// one is refused by name.
    pub fn load_state(&mut self, mut saved: HashMap<String, Tensor>) -> Result<(), String> {
        let mut problems = Vec::new();
        for p in &mut self.params {
            let Some(buf) = saved.remove(&format!("{BUFFER_PREFIX}{}", p.name)) else {
                p.momentum_buffer = None;
                continue;
            };
            if buf.size() != p.tensor.size() {
                problems.push(format!("{}: buffer {:?}, parameter {:?}", p.name, buf.size(), p.tensor.size()));
                continue;
            }
            p.momentum_buffer = Some(buf.to_kind(p.tensor.kind()).to_device(p.tensor.device()));
        }
        problems.extend(saved.keys().map(|k| format!("{k}: no such parameter")));
        if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) }
    }
}
