//! Records where set-up put ONNX Runtime (`ORT_DYLIB_PATH` at build time,
//! symlinks resolved), so installed binaries and the element find it
//! without the variable.

fn main() {
    println!("cargo:rerun-if-env-changed=ORT_DYLIB_PATH");
    println!("cargo:rerun-if-changed=build.rs");
    let recorded = std::env::var_os("ORT_DYLIB_PATH")
        .filter(|p| !p.is_empty())
        .and_then(|p| std::fs::canonicalize(p).ok())
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    println!("cargo:rustc-env=SLOWFAST_ORT_BUILD_PATH={recorded}");
}
