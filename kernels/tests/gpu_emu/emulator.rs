//! Builds the C++ emulator of the CUDA kernels (`emu.cpp` beside this
//! file). Shared, through `#[path]`, by the kernels crate's emulation test
//! and the root crate's kernel tests (`tests/it.rs` declares it once).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Compiles the emulator into `dir` from the kernels crate at `kernels`;
/// `None` (after saying so, naming `test`) when there is no C++ compiler. A
/// kernel source that does not compile as C++ is a test failure.
pub fn build_emulator(kernels: &Path, dir: &Path, test: &str) -> Option<PathBuf> {
    let exe = dir.join("emu");
    let status = Command::new("c++")
        .args([
            "-O2",
            "-std=c++17",
            "-Wall",
            "-Werror",
            "-Wno-unused-function",
            // GCC cannot see that a role initializes its part before storing it.
            "-Wno-maybe-uninitialized",
            // `#pragma unroll` is for NVRTC.
            "-Wno-unknown-pragmas",
        ])
        .arg("-I")
        .arg(kernels.join("src/gpu"))
        .arg(kernels.join("tests/gpu_emu/emu.cpp"))
        .arg("-o")
        .arg(&exe)
        .status();
    match status {
        Ok(s) if s.success() => Some(exe),
        Ok(s) => panic!("the kernel source does not compile as C++ ({s})"),
        Err(e) => {
            eprintln!("{test}: skipped, no C++ compiler ({e})");
            None
        }
    }
}
