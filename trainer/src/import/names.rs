//! Which zoo a state dict comes from, told by its tensor names, and its
//! names mapped to ours (PySlowFast's, which our network's variable paths
//! are).

use std::fmt;
use std::str::FromStr;

/// The zoos whose checkpoints are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zoo {
    /// PySlowFast's `.pyth` (and our own names): taken as they are.
    PySlowFast,
    /// pytorchvideo's `create_slowfast` (`blocks.N...`).
    PyTorchVideo,
    /// Caffe2's `.pkl` model zoo.
    Caffe2,
    /// PaddleVideo's `.pdparams`.
    PaddleVideo,
}

impl fmt::Display for Zoo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Zoo::PySlowFast => "pyslowfast",
            Zoo::PyTorchVideo => "pytorchvideo",
            Zoo::Caffe2 => "caffe2",
            Zoo::PaddleVideo => "paddlevideo",
        })
    }
}

impl FromStr for Zoo {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "pyslowfast" => Ok(Zoo::PySlowFast),
            "pytorchvideo" => Ok(Zoo::PyTorchVideo),
            "caffe2" => Ok(Zoo::Caffe2),
            "paddlevideo" => Ok(Zoo::PaddleVideo),
            _ => Err(format!("unknown checkpoint kind {s:?}: expected auto, pyslowfast, pytorchvideo, caffe2 or paddlevideo")),
        }
    }
}

/// The zoo whose names these are, from names only that zoo uses.
pub fn detect<'a>(names: impl IntoIterator<Item = &'a str> + Clone) -> Option<Zoo> {
    let any = |f: &dyn Fn(&str) -> bool| names.clone().into_iter().any(f);
    if any(&|n| n.starts_with("blocks.") && n.contains("multipathway")) {
        Some(Zoo::PyTorchVideo)
    } else if any(&|n| n.starts_with("s1.pathway0_stem.") || n.starts_with("s1_fuse.")) {
        Some(Zoo::PySlowFast)
    } else if any(&|n| n.ends_with("._mean") || n.ends_with("._variance") || n.contains("slow_path") || n.contains("fast_path")) {
        Some(Zoo::PaddleVideo)
    } else if any(&|n| n.ends_with("_bn_s") || n.ends_with("_bn_riv") || n.ends_with("_bn_rm") || n.starts_with("res_conv1_")) {
        Some(Zoo::Caffe2)
    } else {
        None
    }
}

/// Where a zoo's tensor goes in our network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// Our tensor `name`; `transposed` when the zoo stores it transposed.
    Weight { name: String, transposed: bool },
    /// Training state kept beside the weights (Caffe2's momentum blobs and
    /// solver counters): not imported.
    TrainingState,
}

/// Where `name` from `zoo` goes; `Err` says why it has no place.
pub fn place(zoo: Zoo, name: &str) -> Result<Place, String> {
    if zoo == Zoo::Caffe2 && caffe2_training_state(name) {
        return Ok(Place::TrainingState);
    }
    let ours = map(zoo, name)?;
    Ok(Place::Weight { transposed: transposed(zoo, &ours), name: ours })
}

/// Our name for `name` from `zoo`; `Err` says why it has none.
fn map(zoo: Zoo, name: &str) -> Result<String, String> {
    match zoo {
        Zoo::PySlowFast => Ok(name.to_string()),
        Zoo::PyTorchVideo => from_pytorchvideo(name).ok_or_else(|| format!("{name}: no counterpart in PySlowFast's SlowFast")),
        Zoo::PaddleVideo => from_paddlevideo(name).ok_or_else(|| format!("{name}: not a PaddleVideo SlowFast backbone or head tensor")),
        Zoo::Caffe2 => from_caffe2(name),
    }
}

/// Caffe2 blobs that are training state, not weights: the SGD momentum of
/// each blob and the solver's counters.
fn caffe2_training_state(name: &str) -> bool {
    name.ends_with("_momentum") || matches!(name, "lr" | "iter" | "model_iter" | "lr_x")
}

/// PySlowFast's Caffe2 name conversion (`slowfast/utils/c2_model_loading.py`,
/// `get_name_convert_func`): these substitutions, applied in this order
/// to every name, the non-local ones included so that a checkpoint of
/// that variant maps fully and is then refused by the strict loader, not
/// half-loaded.
const CAFFE2_RULES: [(&str, &str); 29] = [
    (r"^nonlocal_conv([0-9]+)_([0-9]+)_(.*)", r"s${1}.pathway0_nonlocal${2}_${3}"),
    (r"^(.*)_nonlocal([0-9]+)_(theta)(.*)", r"${1}_nonlocal${2}.conv_${3}${4}"),
    (r"^(.*)_nonlocal([0-9]+)_(g)(.*)", r"${1}_nonlocal${2}.conv_${3}${4}"),
    (r"^(.*)_nonlocal([0-9]+)_(phi)(.*)", r"${1}_nonlocal${2}.conv_${3}${4}"),
    (r"^(.*)_nonlocal([0-9]+)_(out)(.*)", r"${1}_nonlocal${2}.conv_${3}${4}"),
    (r"^(.*)_nonlocal([0-9]+)_(bn)_(.*)", r"${1}_nonlocal${2}.${3}.${4}"),
    (r"^t_pool1_subsample_bn_(.*)", r"s1_fuse.bn.${1}"),
    (r"^t_pool1_subsample_(.*)", r"s1_fuse.conv_f2s.${1}"),
    (r"^t_res([0-9]+)_([0-9]+)_branch2c_bn_subsample_bn_(.*)", r"s${1}_fuse.bn.${3}"),
    (r"^t_res([0-9]+)_([0-9]+)_branch2c_bn_subsample_(.*)", r"s${1}_fuse.conv_f2s.${3}"),
    (r"^res([0-9]+)_([0-9]+)_branch([0-9]+)([a-z])_(.*)", r"s${1}.pathway0_res${2}.branch${3}.${4}_${5}"),
    (r"^res_conv1_bn_(.*)", r"s1.pathway0_stem.bn.${1}"),
    (r"^conv1_xy(.*)", r"s1.pathway0_stem.conv_xy${1}"),
    (r"^conv1_(.*)", r"s1.pathway0_stem.conv.${1}"),
    (r"^res([0-9]+)_([0-9]+)_branch([0-9]+)_(.*)", r"s${1}.pathway0_res${2}.branch${3}_${4}"),
    (r"^res_conv1_(.*)", r"s1.pathway0_stem.conv.${1}"),
    (r"^t_res([0-9]+)_([0-9]+)_branch([0-9]+)([a-z])_(.*)", r"s${1}.pathway1_res${2}.branch${3}.${4}_${5}"),
    (r"^t_res_conv1_bn_(.*)", r"s1.pathway1_stem.bn.${1}"),
    (r"^t_conv1_(.*)", r"s1.pathway1_stem.conv.${1}"),
    (r"^t_res([0-9]+)_([0-9]+)_branch([0-9]+)_(.*)", r"s${1}.pathway1_res${2}.branch${3}_${4}"),
    (r"^t_res_conv1_(.*)", r"s1.pathway1_stem.conv.${1}"),
    (r"pred_(.*)", r"head.projection.${1}"),
    (r"(.*)b_bn_fc(.*)", r"${1}se.fc${2}"),
    (r"conv_5(.*)", r"head.conv_5${1}"),
    (r"lin_5(.*)", r"head.lin_5${1}"),
    (r"(.*)bn.b\z", r"${1}bn.bias"),
    (r"(.*)bn.s\z", r"${1}bn.weight"),
    (r"(.*)bn.rm\z", r"${1}bn.running_mean"),
    (r"(.*)bn.riv\z", r"${1}bn.running_var"),
];

/// The last two of PySlowFast's rules, kept apart: `regex` has no
/// look-behind, and these only rename a `_b` / `_w` suffix.
fn caffe2_suffix(name: &str) -> String {
    for (suffix, field) in [("b", "bias"), ("w", "weight")] {
        if let Some(stem) = name.strip_suffix(suffix)
            && let Some(stem) = stem.strip_suffix(['.', '_'])
        {
            return format!("{stem}.{field}");
        }
    }
    name.to_string()
}

fn from_caffe2(name: &str) -> Result<String, String> {
    static RULES: std::sync::OnceLock<Vec<(regex::Regex, &'static str)>> = std::sync::OnceLock::new();
    let rules = RULES.get_or_init(|| CAFFE2_RULES.iter().filter_map(|(re, to)| regex::Regex::new(re).ok().map(|re| (re, *to))).collect());
    if rules.len() != CAFFE2_RULES.len() {
        return Err("the Caffe2 name rules do not compile".into());
    }
    let mut out = name.to_string();
    for (re, to) in rules {
        out = re.replace_all(&out, *to).into_owned();
    }
    Ok(caffe2_suffix(&out))
}

/// Whether our tensor `ours` is stored transposed by `zoo`: Paddle's
/// `Linear` keeps its weight as [in, out], torch's as [out, in].
fn transposed(zoo: Zoo, ours: &str) -> bool {
    zoo == Zoo::PaddleVideo && ours == "head.projection.weight"
}

/// PaddleVideo's `ResNetSlowFast` and `SlowFastHead` under a recognizer
/// (`backbone.`, `head.`): PySlowFast's module tree with Paddle's layer
/// names (`_conv`, `_bn`, `_conv_f2s`) and BN statistics (`_mean`,
/// `_variance`).
fn from_paddlevideo(name: &str) -> Option<String> {
    if let Some(f @ ("weight" | "bias")) = name.strip_prefix("head.projection.") {
        return Some(format!("head.projection.{f}"));
    }
    let rest = name.strip_prefix("backbone.")?;
    let parts: Vec<&str> = rest.split('.').collect();
    let (last, path) = parts.split_last()?;
    let field = match *last {
        "_mean" => "running_mean",
        "_variance" => "running_var",
        f @ ("weight" | "bias") => f,
        _ => return None,
    };
    let path: Vec<&str> = path
        .iter()
        .map(|p| match *p {
            "_conv" => "conv",
            "_bn" => "bn",
            "_conv_f2s" => "conv_f2s",
            p => p,
        })
        .collect();
    Some(format!("{}.{field}", path.join(".")))
}

const BN_FIELDS: [&str; 5] = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"];

/// pytorchvideo's `create_slowfast` tree: `blocks.0` the stems, `blocks.1-4`
/// the stages, each with the lateral fusion after it (`blocks.0-3`), and
/// the last block the head.
fn from_pytorchvideo(name: &str) -> Option<String> {
    let p: Vec<&str> = name.split('.').collect();
    if p.first() != Some(&"blocks") {
        return None;
    }
    let k: usize = p.get(1)?.parse().ok()?;
    let bn = |f: &str| BN_FIELDS.contains(&f);
    match p.get(2..)? {
        ["proj", f @ ("weight" | "bias")] => Some(format!("head.projection.{f}")),
        ["multipathway_fusion", "conv_fast_to_slow", "weight"] if k <= 3 => Some(format!("s{}_fuse.conv_f2s.weight", k + 1)),
        ["multipathway_fusion", "norm", f] if k <= 3 && bn(f) => Some(format!("s{}_fuse.bn.{f}", k + 1)),
        ["multipathway_blocks", pw @ ("0" | "1"), rest @ ..] => match (k, rest) {
            (0, ["conv", "weight"]) => Some(format!("s1.pathway{pw}_stem.conv.weight")),
            (0, ["norm", f]) if bn(f) => Some(format!("s1.pathway{pw}_stem.bn.{f}")),
            (1..=4, ["res_blocks", i, rest @ ..]) => {
                let i: usize = i.parse().ok()?;
                let block = format!("s{}.pathway{pw}_res{i}", k + 1);
                match rest {
                    ["branch1_conv", "weight"] => Some(format!("{block}.branch1.weight")),
                    ["branch1_norm", f] if bn(f) => Some(format!("{block}.branch1_bn.{f}")),
                    ["branch2", layer, f] => {
                        let ours = match *layer {
                            "conv_a" if *f == "weight" => "a",
                            "conv_b" if *f == "weight" => "b",
                            "conv_c" if *f == "weight" => "c",
                            "norm_a" if bn(f) => "a_bn",
                            "norm_b" if bn(f) => "b_bn",
                            "norm_c" if bn(f) => "c_bn",
                            _ => return None,
                        };
                        Some(format!("{block}.branch2.{ours}.{f}"))
                    }
                    _ => None,
                }
            }
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pytorchvideo_names_map_to_pyslowfast_names() {
        let cases = [
            ("blocks.0.multipathway_blocks.1.conv.weight", "s1.pathway1_stem.conv.weight"),
            ("blocks.0.multipathway_blocks.0.norm.running_var", "s1.pathway0_stem.bn.running_var"),
            ("blocks.0.multipathway_fusion.conv_fast_to_slow.weight", "s1_fuse.conv_f2s.weight"),
            ("blocks.3.multipathway_fusion.norm.num_batches_tracked", "s4_fuse.bn.num_batches_tracked"),
            ("blocks.1.multipathway_blocks.0.res_blocks.0.branch1_conv.weight", "s2.pathway0_res0.branch1.weight"),
            ("blocks.4.multipathway_blocks.1.res_blocks.2.branch2.norm_b.bias", "s5.pathway1_res2.branch2.b_bn.bias"),
            ("blocks.2.multipathway_blocks.0.res_blocks.3.branch2.conv_c.weight", "s3.pathway0_res3.branch2.c.weight"),
            ("blocks.6.proj.weight", "head.projection.weight"),
        ];
        for (theirs, ours) in cases {
            assert_eq!(map(Zoo::PyTorchVideo, theirs).as_deref(), Ok(ours), "{theirs}");
        }
        for bad in
            ["blocks.4.multipathway_fusion.conv_fast_to_slow.weight", "blocks.1.multipathway_blocks.2.conv.weight", "head.x", "blocks.x"]
        {
            assert!(map(Zoo::PyTorchVideo, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paddlevideo_names_map_to_pyslowfast_names() {
        let cases = [
            ("backbone.s1.pathway0_stem._conv.weight", "s1.pathway0_stem.conv.weight"),
            ("backbone.s1.pathway1_stem._bn._variance", "s1.pathway1_stem.bn.running_var"),
            ("backbone.s3_fuse._conv_f2s.weight", "s3_fuse.conv_f2s.weight"),
            ("backbone.s2_fuse._bn._mean", "s2_fuse.bn.running_mean"),
            ("backbone.s4.pathway1_res5.branch2.b_bn.bias", "s4.pathway1_res5.branch2.b_bn.bias"),
            ("backbone.s2.pathway0_res0.branch1_bn._mean", "s2.pathway0_res0.branch1_bn.running_mean"),
            ("head.projection.weight", "head.projection.weight"),
        ];
        for (theirs, ours) in cases {
            assert_eq!(map(Zoo::PaddleVideo, theirs).as_deref(), Ok(ours), "{theirs}");
        }
        let head = |zoo, name| place(zoo, name).unwrap();
        assert_eq!(
            head(Zoo::PaddleVideo, "head.projection.weight"),
            Place::Weight { name: "head.projection.weight".into(), transposed: true }
        );
        assert_eq!(
            head(Zoo::PyTorchVideo, "blocks.6.proj.weight"),
            Place::Weight { name: "head.projection.weight".into(), transposed: false }
        );
        for bad in ["neck.x.weight", "backbone.s1.pathway0_stem._bn._other", "head.fc.weight"] {
            assert!(map(Zoo::PaddleVideo, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn zoos_are_told_by_their_names() {
        assert_eq!(detect(["blocks.0.multipathway_blocks.0.conv.weight"]), Some(Zoo::PyTorchVideo));
        assert_eq!(detect(["s1.pathway0_stem.conv.weight", "head.projection.weight"]), Some(Zoo::PySlowFast));
        assert_eq!(detect(["backbone.slow_path.conv1._conv.weight", "x._mean"]), Some(Zoo::PaddleVideo));
        assert_eq!(detect(["res_conv1_bn_s", "conv1_w"]), Some(Zoo::Caffe2));
        assert_eq!(detect(["fc.weight"]), None);
    }

    #[test]
    fn caffe2_names_map_as_pyslowfast_converts_them() {
        let cases = [
            ("conv1_w", "s1.pathway0_stem.conv.weight"),
            ("res_conv1_bn_riv", "s1.pathway0_stem.bn.running_var"),
            ("t_conv1_w", "s1.pathway1_stem.conv.weight"),
            ("t_res_conv1_bn_s", "s1.pathway1_stem.bn.weight"),
            ("res2_0_branch2a_bn_s", "s2.pathway0_res0.branch2.a_bn.weight"),
            ("t_res5_2_branch2c_w", "s5.pathway1_res2.branch2.c.weight"),
            ("res3_0_branch1_w", "s3.pathway0_res0.branch1.weight"),
            ("t_res4_0_branch1_bn_rm", "s4.pathway1_res0.branch1_bn.running_mean"),
            ("t_pool1_subsample_w", "s1_fuse.conv_f2s.weight"),
            ("t_pool1_subsample_bn_b", "s1_fuse.bn.bias"),
            ("t_res3_3_branch2c_bn_subsample_w", "s3_fuse.conv_f2s.weight"),
            ("t_res4_5_branch2c_bn_subsample_bn_rm", "s4_fuse.bn.running_mean"),
            ("pred_w", "head.projection.weight"),
            ("pred_b", "head.projection.bias"),
            ("nonlocal_conv3_1_theta_w", "s3.pathway0_nonlocal1.conv_theta.weight"),
        ];
        for (theirs, ours) in cases {
            assert_eq!(map(Zoo::Caffe2, theirs).as_deref(), Ok(ours), "{theirs}");
        }
        for state in ["res2_0_branch2a_w_momentum", "lr", "model_iter"] {
            assert_eq!(place(Zoo::Caffe2, state), Ok(Place::TrainingState), "{state}");
        }
        assert!(matches!(place(Zoo::Caffe2, "pred_w"), Ok(Place::Weight { .. })));
    }
}
