//! Finding and loading the ONNX Runtime shared library, once per process.
//!
//! tapstream loads ONNX Runtime at run time (ort's `load-dynamic`), so it
//! builds without network access or a C++ toolchain, and one binary can use
//! whichever library a host provides. The price is that the library must be
//! found: this module searches a fixed, documented list of places and, when
//! it finds nothing, says how to get the library instead of letting `ort`
//! panic on first use. ONNX Runtime allows one library and one environment
//! per process, so both are created here once and shared by every session.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::environment::Environment;

use crate::InferenceError;

/// The ONNX Runtime version `scripts/fetch-onnxruntime.sh` installs and the
/// one tapstream is tested with.
pub const ORT_VERSION: &str = "1.31.1";

/// File name of the library that `scripts/fetch-onnxruntime.sh` installs.
pub const ORT_LIBRARY_FILE: &str = "libonnxruntime.so.1.31.1";

/// Directory, relative to the repository root, where
/// `scripts/fetch-onnxruntime.sh` puts the library.
pub const DEPS_DIR: &str = ".deps/onnxruntime";

/// Environment variable naming the library file (ort's own convention).
pub const ORT_DYLIB_PATH: &str = "ORT_DYLIB_PATH";

/// Locates the ONNX Runtime shared library, in this order:
///
/// 1. `explicit` (the `inference.onnxruntime_library` setting), if given;
/// 2. the `ORT_DYLIB_PATH` environment variable, if set and non-empty;
/// 3. `.deps/onnxruntime/libonnxruntime.so.1.31.1` under the current
///    directory or any of its ancestors, then under the executable's
///    directory or any of its ancestors (so `target/release/tapstream` finds
///    the repository's `.deps`).
///
/// A path given by 1 or 2 is used as is: if it is missing, the search stops
/// with an error naming it rather than silently using another library. A
/// directory there stands for the library file inside it.
pub fn ort_library(explicit: Option<&Path>) -> Result<PathBuf, InferenceError> {
    let from_env = std::env::var_os(ORT_DYLIB_PATH)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    if let Some(given) = explicit.map(Path::to_path_buf).or(from_env) {
        let path = if given.is_dir() {
            given.join(ORT_LIBRARY_FILE)
        } else {
            given
        };
        return if path.is_file() {
            Ok(absolute(&path))
        } else {
            Err(InferenceError::LibraryNotFound {
                searched: vec![path],
            })
        };
    }

    let mut searched = Vec::new();
    let cwd = std::env::current_dir().ok();
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf));
    for start in cwd.iter().chain(exe_dir.iter()) {
        for dir in start.ancestors() {
            let candidate = dir.join(DEPS_DIR).join(ORT_LIBRARY_FILE);
            if candidate.is_file() {
                return Ok(absolute(&candidate));
            }
            if !searched.contains(&candidate) {
                searched.push(candidate);
            }
        }
    }
    Err(InferenceError::LibraryNotFound { searched })
}

fn absolute(path: &Path) -> PathBuf {
    // `ort` resolves relative paths against the executable's directory, not
    // the current one; hand it an absolute path so the file we checked is the
    // file it loads.
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The loaded runtime: which library, and the process-wide environment.
#[derive(Clone)]
pub(crate) struct Runtime {
    pub(crate) path: PathBuf,
    pub(crate) environment: Environment,
}

static RUNTIME: Mutex<Option<Runtime>> = Mutex::new(None);

/// Loads ONNX Runtime (found by [`ort_library`]) and creates its environment,
/// once per process; later calls return the same runtime. A failed attempt
/// is not remembered, so a later call (after the library is installed) can
/// succeed.
pub(crate) fn runtime(explicit: Option<&Path>) -> Result<Runtime, InferenceError> {
    // A poisoned lock only means another thread panicked while holding it;
    // the `Option` inside is still consistent.
    let mut slot = RUNTIME.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(rt) = slot.as_ref() {
        if let Some(requested) = explicit {
            let requested = absolute(&if requested.is_dir() {
                requested.join(ORT_LIBRARY_FILE)
            } else {
                requested.to_path_buf()
            });
            if requested != rt.path {
                return Err(InferenceError::LibraryConflict {
                    loaded: rt.path.clone(),
                    requested,
                });
            }
        }
        return Ok(rt.clone());
    }

    let path = ort_library(explicit)?;
    let builder = ort::init_from(&path).map_err(|e| InferenceError::LibraryLoad {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let environment = builder
        .with_name("tapstream")
        .with_telemetry(false)
        .build()
        .map_err(|source| InferenceError::Runtime {
            context: "creating the ONNX Runtime environment",
            source,
        })?;
    tracing::info!(
        message = "loaded ONNX Runtime",
        path = %path.display(),
    );
    let rt = Runtime { path, environment };
    *slot = Some(rt.clone());
    Ok(rt)
}

/// The cap on the process's shared CPU arena, once one is registered.
static ARENA_CAP: Mutex<Option<usize>> = Mutex::new(None);

/// Caps ONNX Runtime's CPU memory arena at `max_bytes`: registers a shared
/// arena allocator with that `max_mem` on the environment, which sessions
/// then use (`session.use_env_allocators`). One cap per process, like the
/// environment; asking for another is an error.
pub(crate) fn cap_cpu_arena(rt: &Runtime, max_bytes: usize) -> Result<(), InferenceError> {
    let mut slot = ARENA_CAP.lock().unwrap_or_else(|e| e.into_inner());
    match *slot {
        Some(cap) if cap == max_bytes => return Ok(()),
        Some(cap) => {
            return Err(InferenceError::InvalidConfig {
                field: "cpu_arena_limit",
                reason: format!(
                    "this process's CPU arena is already capped at {cap} bytes, and the cap is per process"
                ),
            })
        }
        None => {}
    }
    let api = ort::api();
    let keys = [c"max_mem".as_ptr()];
    let values = [max_bytes];
    let mut cfg = std::ptr::null_mut();
    // SAFETY: the key and value arrays hold one entry each and outlive the
    // call; `cfg` receives a new arena configuration owned here.
    ort_status(unsafe { (api.CreateArenaCfgV2)(keys.as_ptr(), values.as_ptr(), 1, &mut cfg) })?;
    let mut info = std::ptr::null_mut();
    // SAFETY: writes a new CPU memory description into `info`.
    let made = ort_status(unsafe {
        (api.CreateCpuMemoryInfo)(
            ort::sys::OrtAllocatorType::OrtArenaAllocator,
            ort::sys::OrtMemType::OrtMemTypeDefault,
            &mut info,
        )
    });
    let registered = made.and_then(|()| {
        // SAFETY: the environment lives as long as the process's runtime;
        // ONNX Runtime copies what it needs from `info` and `cfg`.
        ort_status(unsafe {
            (api.CreateAndRegisterAllocator)(
                ort::AsPointer::ptr(&rt.environment).cast_mut(),
                info,
                cfg,
            )
        })
    });
    // SAFETY: both were created above (a null `info` is allowed) and are not
    // used again.
    unsafe {
        if !info.is_null() {
            (api.ReleaseMemoryInfo)(info);
        }
        (api.ReleaseArenaCfg)(cfg);
    }
    registered?;
    *slot = Some(max_bytes);
    tracing::info!(
        message = "capped ONNX Runtime's CPU arena",
        bytes = max_bytes
    );
    Ok(())
}

/// An ONNX Runtime status as a result (releasing it).
fn ort_status(s: ort::sys::OrtStatusPtr) -> Result<(), InferenceError> {
    if s.0.is_null() {
        return Ok(());
    }
    let api = ort::api();
    // SAFETY: a non-null status carries a message that lives until it is
    // released, which happens after the copy.
    let message = unsafe {
        let m = (api.GetErrorMessage)(s.0);
        let text = if m.is_null() {
            "unknown error".to_string()
        } else {
            std::ffi::CStr::from_ptr(m).to_string_lossy().into_owned()
        };
        (api.ReleaseStatus)(s.0);
        text
    };
    Err(InferenceError::ArenaSetup { message })
}

/// Loads ONNX Runtime now, as [`OnnxEngine::load`](crate::OnnxEngine::load)
/// would, and returns the path of the library in use. Use it to fail fast at
/// start-up, or to report which library a process runs.
pub fn init_runtime(explicit: Option<&Path>) -> Result<PathBuf, InferenceError> {
    runtime(explicit).map(|rt| rt.path)
}
