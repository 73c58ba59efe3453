//! Every kernel compiles to PTX with NVRTC (no GPU needed).
//!
//! Needs the `cuda` feature and libnvrtc on the library path (CI installs the
//! PyPI wheel `nvidia-cuda-nvrtc==13.0.88`). Without NVRTC the test says so
//! and returns, unless `TAPSTREAM_REQUIRE_NVRTC=1` makes that a failure.
//! With `TAPSTREAM_PTX_DIR` set, the PTX is also written there.
#![cfg(feature = "cuda")]

use tapstream_kernels::gpu::cuda::{arch_for, compile_ptx};
use tapstream_kernels::gpu::{GpuError, KERNELS};

#[test]
fn every_kernel_compiles_to_ptx() {
    // Hopper (H100/H200) first: the GPU host's architecture.
    for (major, minor) in [(9, 0), (8, 0), (7, 5), (10, 0)] {
        let arch = arch_for(major, minor);
        let ptx = match compile_ptx(arch) {
            Ok(p) => p.to_src(),
            Err(GpuError::Unavailable(why)) => {
                assert!(
                    std::env::var_os("TAPSTREAM_REQUIRE_NVRTC").is_none(),
                    "NVRTC is required here: {why}"
                );
                eprintln!("every_kernel_compiles_to_ptx: skipped, {why}");
                return;
            }
            Err(e) => panic!("{arch}: {e}"),
        };
        // For inspection (e.g. `ptxas -v` for registers and spills).
        if let Some(dir) = std::env::var_os("TAPSTREAM_PTX_DIR") {
            std::fs::write(std::path::Path::new(&dir).join(format!("{arch}.ptx")), &ptx).unwrap();
        }
        for k in KERNELS {
            assert!(
                ptx.contains(&format!(".entry {k}(")),
                "{arch}: kernel {k} missing from the PTX"
            );
        }
        assert!(
            ptx.contains(&format!(".target sm_{}", &arch["compute_".len()..])),
            "{arch}"
        );
        // No FMA contraction: the CPU twin rounds every product separately.
        assert!(
            !ptx.contains("fma.rn.f64"),
            "{arch}: fused multiply-add in the PTX"
        );
    }
}

#[test]
fn a_broken_kernel_is_a_compile_error_not_a_panic() {
    // The same entry point with the source made invalid must fail to compile.
    let bad = "extern \"C\" __global__ void build_perm(int* x) { undefined_symbol(x); }";
    let opts = cudarc::nvrtc::CompileOptions::default();
    // SAFETY: only checks that the library can be loaded.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        eprintln!("a_broken_kernel_is_a_compile_error_not_a_panic: skipped, no NVRTC");
        return;
    }
    assert!(cudarc::nvrtc::compile_ptx_with_opts(bad, opts).is_err());
}
