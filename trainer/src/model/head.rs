//! `head`: pool each pathway, concatenate, dropout, `projection` (PySlowFast
//! `ResNetBasicHead`). In eval the reference returns softmax probabilities.

use tch::{Kind, Tensor, nn};

use super::config::HeadPool;
use super::layers::{Shape, path_name};

#[derive(Debug)]
pub struct Head {
    pub projection: nn::Linear,
    pub dim_in: i64,
    pub num_classes: i64,
    pub dropout: f64,
    pub pool: HeadPool,
    pub name: String,
}

impl Head {
    pub fn new(p: nn::Path, dim_in: i64, num_classes: i64, dropout: f64, fc_init_std: f64, pool: HeadPool) -> Self {
        let config = nn::LinearConfig {
            ws_init: nn::Init::Randn { mean: 0.0, stdev: fc_init_std },
            bs_init: Some(nn::Init::Const(0.0)),
            bias: true,
        };
        let projection = nn::linear(&p / "projection", dim_in, num_classes, config);
        Head { projection, dim_in, num_classes, dropout, pool, name: path_name(&p) }
    }

    /// `softmax` asks for probabilities (PySlowFast's eval output) instead of
    /// logits. With a fixed pool kernel the softmax is taken per position
    /// before averaging, as the reference does.
    pub fn forward_t(&self, slow: &Tensor, fast: &Tensor, train: bool, softmax: bool) -> Tensor {
        let finish = |x: Tensor| if softmax { x.softmax(-1, Kind::Float) } else { x };
        match &self.pool {
            HeadPool::Global => {
                let pooled: Vec<Tensor> = [slow, fast].iter().map(|x| x.mean_dim(&[2i64, 3, 4][..], false, x.kind())).collect();
                let x = Tensor::cat(&pooled, 1).dropout(self.dropout, train);
                finish(x.apply(&self.projection))
            }
            HeadPool::Kernel { slow: ks, fast: kf } => {
                let pooled = [
                    slow.avg_pool3d(*ks, [1; 3], [0; 3], false, true, None::<i64>),
                    fast.avg_pool3d(*kf, [1; 3], [0; 3], false, true, None::<i64>),
                ];
                // [N, C, T, H, W] -> [N, T, H, W, C]: one prediction per position.
                let x = Tensor::cat(&pooled, 1).permute([0, 2, 3, 4, 1]).dropout(self.dropout, train);
                finish(x.apply(&self.projection)).mean_dim(&[1i64, 2, 3][..], false, Kind::Float)
            }
        }
    }

    /// Positions left after pooling, or `None` where a fixed kernel is larger
    /// than the feature map.
    pub fn positions(&self, slow: Shape, fast: Shape) -> Option<i64> {
        match &self.pool {
            HeadPool::Global => Some(1),
            HeadPool::Kernel { slow: ks, fast: kf } => {
                let out = |s: Shape, k: &[i64; 3]| -> Option<[i64; 3]> {
                    let o = [s[2] - k[0] + 1, s[3] - k[1] + 1, s[4] - k[2] + 1];
                    o.iter().all(|&v| v >= 1).then_some(o)
                };
                let (a, b) = (out(slow, ks)?, out(fast, kf)?);
                (a == b).then(|| a.iter().product())
            }
        }
    }
}
