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

/// Loads ONNX Runtime now, as [`OnnxEngine::load`](crate::OnnxEngine::load)
/// would, and returns the path of the library in use. Use it to fail fast at
/// start-up, or to report which library a process runs.
pub fn init_runtime(explicit: Option<&Path>) -> Result<PathBuf, InferenceError> {
    runtime(explicit).map(|rt| rt.path)
}
