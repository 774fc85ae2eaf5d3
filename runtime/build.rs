//! Records where set-up put ONNX Runtime and OpenVINO (`ORT_DYLIB_PATH`
//! and `OPENVINO_DYLIB_PATH` at build time, symlinks resolved), so
//! installed binaries and the element find them without the variables.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    for (var, recorded) in [("ORT_DYLIB_PATH", "SLOWFAST_ORT_BUILD_PATH"), ("OPENVINO_DYLIB_PATH", "SLOWFAST_OPENVINO_BUILD_PATH")] {
        println!("cargo:rerun-if-env-changed={var}");
        let path = std::env::var_os(var)
            .filter(|p| !p.is_empty())
            .and_then(|p| std::fs::canonicalize(p).ok())
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        println!("cargo:rustc-env={recorded}={path}");
    }
}
