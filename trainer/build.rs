//! Puts libtorch's directory in the rpath of every binary and test of this
//! crate, so nothing has to export LD_LIBRARY_PATH (torch-sys adds none),
//! and compiles the C++ shim over libtorch's c10d (`csrc/c10d.cpp`) that
//! distributed training calls.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-changed=csrc/c10d.cpp");
    let Ok(dir) = std::env::var("LIBTORCH") else {
        panic!("LIBTORCH is not set: run `. scripts/setup.sh` (it links libtorch under .deps/)");
    };
    let root = PathBuf::from(dir);
    let root = root.canonicalize().unwrap_or(root);
    let lib = root.join("lib");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());

    let mut build = cc::Build::new();
    build
        .cpp(true)
        .file("csrc/c10d.cpp")
        .include(root.join("include"))
        .include(root.join("include/torch/csrc/api/include"))
        .flag("-std=c++17")
        // libtorch's headers are not warning-clean under -Wall.
        .flag("-w")
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        // ProcessGroupGloo.hpp is empty without it; Gloo's headers come from
        // Debian's libgloo-dev, its symbols from libtorch_cpu.
        .define("USE_C10D_GLOO", None);
    if std::env::var_os("CARGO_FEATURE_NCCL").is_some() {
        build.define("SLOWFAST_NCCL", None).define("USE_C10D_NCCL", None);
        // ProcessGroupNCCL.hpp pulls in CUDA's, cuBLAS', cuSPARSE's and
        // NCCL's headers: a full `torch` wheel install has them beside
        // torch/ in nvidia/*/include; a CUDA toolkit in /usr/local/cuda.
        for dir in cuda_include_dirs(&root) {
            build.include(dir);
        }
    }
    build.compile("slowfast_c10d");
    println!("cargo:rustc-link-search=native={}", lib.display());
    if std::env::var_os("CARGO_FEATURE_NCCL").is_some() {
        // `--as-needed` would drop libtorch_cuda, where ProcessGroupNCCL lives.
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
}

fn cuda_include_dirs(torch: &std::path::Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(site) = torch.parent()
        && let Ok(entries) = std::fs::read_dir(site.join("nvidia"))
    {
        for e in entries.flatten() {
            for sub in ["include", "cu13/include", "cu12/include"] {
                let d = e.path().join(sub);
                if d.is_dir() {
                    dirs.push(d);
                }
            }
        }
    }
    let toolkit = PathBuf::from(std::env::var("CUDA_HOME").unwrap_or_else(|_| "/usr/local/cuda".into())).join("include");
    if toolkit.is_dir() {
        dirs.push(toolkit);
    }
    dirs
}
