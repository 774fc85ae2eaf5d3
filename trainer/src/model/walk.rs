//! One walk of the network for every use of it. Each module describes its
//! computation once, as calls on a [`Backend`]; backends run it on tensors
//! ([`Forward`]: training and eval), on shapes ([`Shapes`]: input checks and
//! FLOPs), collect its BatchNorms ([`BatchNorms`]), or write ONNX nodes (the
//! export's). A new layer is added in its module's `walk` and every backend
//! follows.

use std::convert::Infallible;
use std::fmt;

use tch::Tensor;

use super::ModelError;
use super::head::Head;
use super::layers::{BatchNorm3d, Conv3d, MaxPool3d, Shape};

/// The operations SlowFast is made of. Layers with variables carry their
/// own module paths; the others are named by [`Op`]. `'m` is the model's
/// lifetime, so a backend may keep references to its layers.
pub trait Backend<'m> {
    type Value;
    type Error;

    /// A conv and the BatchNorm after it, as one operation so that eval
    /// backends can fold the two.
    fn conv_bn(&mut self, conv: &'m Conv3d, bn: &'m BatchNorm3d, x: &Self::Value) -> Result<Self::Value, Self::Error>;
    fn relu(&mut self, op: Op<'_>, x: Self::Value) -> Result<Self::Value, Self::Error>;
    fn max_pool(&mut self, op: Op<'_>, pool: &MaxPool3d, x: Self::Value) -> Result<Self::Value, Self::Error>;
    /// `[a, b]` along the channels.
    fn concat(&mut self, op: Op<'_>, a: &Self::Value, b: &Self::Value) -> Result<Self::Value, Self::Error>;
    fn add(&mut self, op: Op<'_>, a: &Self::Value, b: &Self::Value) -> Result<Self::Value, Self::Error>;
    /// The classifier on both pathways' features. Train and eval, tensors
    /// and ONNX differ in it (dropout, softmax, Gemm or MatMul) more than
    /// they share, so each backend writes it whole.
    fn head(&mut self, head: &'m Head, slow: &Self::Value, fast: &Self::Value) -> Result<Self::Value, Self::Error>;
}

/// A node without variables: its module's path and its own name there
/// (`s2.pathway0_res0` and `branch2.a_relu`), joined only by backends that
/// name nodes, so the tensor forward never formats a string.
#[derive(Debug, Clone, Copy)]
pub struct Op<'a> {
    pub module: &'a str,
    pub name: &'static str,
}

impl fmt::Display for Op<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.module, self.name)
    }
}

/// The libtorch forward. Panics (libtorch errors, sync-BN failures) are
/// caught around the whole walk by `SlowFast::forward_t`.
#[derive(Debug, Clone, Copy)]
pub struct Forward {
    pub train: bool,
    /// Probabilities instead of logits (eval only).
    pub softmax: bool,
}

impl<'m> Backend<'m> for Forward {
    type Value = Tensor;
    type Error = Infallible;

    fn conv_bn(&mut self, conv: &'m Conv3d, bn: &'m BatchNorm3d, x: &Tensor) -> Result<Tensor, Infallible> {
        Ok(bn.forward_t(&conv.forward(x), self.train))
    }

    fn relu(&mut self, _: Op<'_>, x: Tensor) -> Result<Tensor, Infallible> {
        Ok(x.relu())
    }

    fn max_pool(&mut self, _: Op<'_>, pool: &MaxPool3d, x: Tensor) -> Result<Tensor, Infallible> {
        Ok(pool.forward(&x))
    }

    fn concat(&mut self, _: Op<'_>, a: &Tensor, b: &Tensor) -> Result<Tensor, Infallible> {
        Ok(Tensor::cat(&[a, b], 1))
    }

    fn add(&mut self, _: Op<'_>, a: &Tensor, b: &Tensor) -> Result<Tensor, Infallible> {
        Ok(a + b)
    }

    fn head(&mut self, head: &'m Head, slow: &Tensor, fast: &Tensor) -> Result<Tensor, Infallible> {
        Ok(head.forward_t(slow, fast, self.train, self.softmax))
    }
}

/// Compute of one forward pass, counted as fvcore does (multiply-accumulates).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlopCount {
    pub conv_macs: i64,
    pub linear_macs: i64,
    /// Elements through BatchNorm.
    pub bn_elements: i64,
}

impl FlopCount {
    /// fvcore counts an affine BatchNorm in eval as 2 per element (scale
    /// and shift); ReLU, pooling and additions count as nothing.
    pub fn total(&self) -> i64 {
        self.conv_macs + self.linear_macs + 2 * self.bn_elements
    }

    pub fn gmacs(&self) -> f64 {
        self.total() as f64 / 1e9
    }
}

/// Feature shapes, counting the compute spent on them. The head refuses
/// final maps its pool kernels do not fit; it returns `[N, classes, 1, 1, 1]`.
#[derive(Debug, Default)]
pub struct Shapes {
    pub count: FlopCount,
}

impl<'m> Backend<'m> for Shapes {
    type Value = Shape;
    type Error = ModelError;

    fn conv_bn(&mut self, conv: &'m Conv3d, _: &'m BatchNorm3d, x: &Shape) -> Result<Shape, ModelError> {
        let out = conv.out_shape(*x);
        self.count.conv_macs += conv.macs(*x);
        self.count.bn_elements += BatchNorm3d::elements(out);
        Ok(out)
    }

    fn relu(&mut self, _: Op<'_>, x: Shape) -> Result<Shape, ModelError> {
        Ok(x)
    }

    fn max_pool(&mut self, _: Op<'_>, pool: &MaxPool3d, x: Shape) -> Result<Shape, ModelError> {
        Ok(pool.out_shape(x))
    }

    fn concat(&mut self, _: Op<'_>, a: &Shape, b: &Shape) -> Result<Shape, ModelError> {
        Ok([a[0], a[1] + b[1], a[2], a[3], a[4]])
    }

    fn add(&mut self, _: Op<'_>, _: &Shape, b: &Shape) -> Result<Shape, ModelError> {
        Ok(*b)
    }

    fn head(&mut self, head: &'m Head, slow: &Shape, fast: &Shape) -> Result<Shape, ModelError> {
        let positions = head.positions(*slow, *fast).ok_or_else(|| ModelError::Input {
            pathway: "slow",
            why: format!("final feature maps {:?} / {:?} do not fit the head's pool kernels {:?}", &slow[2..], &fast[2..], head.pool),
        })?;
        self.count.linear_macs += slow[0] * positions * head.dim_in * head.num_classes;
        Ok([slow[0], head.num_classes, 1, 1, 1])
    }
}

/// Every BatchNorm layer, in forward order.
#[derive(Debug, Default)]
pub struct BatchNorms<'m>(pub Vec<&'m BatchNorm3d>);

impl<'m> Backend<'m> for BatchNorms<'m> {
    type Value = ();
    type Error = Infallible;

    fn conv_bn(&mut self, _: &'m Conv3d, bn: &'m BatchNorm3d, _: &()) -> Result<(), Infallible> {
        self.0.push(bn);
        Ok(())
    }

    fn relu(&mut self, _: Op<'_>, _: ()) -> Result<(), Infallible> {
        Ok(())
    }

    fn max_pool(&mut self, _: Op<'_>, _: &MaxPool3d, _: ()) -> Result<(), Infallible> {
        Ok(())
    }

    fn concat(&mut self, _: Op<'_>, _: &(), _: &()) -> Result<(), Infallible> {
        Ok(())
    }

    fn add(&mut self, _: Op<'_>, _: &(), _: &()) -> Result<(), Infallible> {
        Ok(())
    }

    fn head(&mut self, _: &'m Head, _: &(), _: &()) -> Result<(), Infallible> {
        Ok(())
    }
}
