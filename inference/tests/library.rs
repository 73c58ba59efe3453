//! Locating and loading the ONNX Runtime library.
//!
//! ONNX Runtime can be loaded once per process, so this file is its own test
//! binary with a single test that walks through the cases in order: a bad
//! library first (which must leave the process able to load a good one), then
//! the real one, then a conflicting second one.

use std::path::Path;

use tapstream_inference::{init_runtime, ort_library, InferenceError, ORT_LIBRARY_FILE};

#[test]
fn library_lookup_load_and_conflict() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));

    // An explicit path that does not exist is reported as such, with no
    // fallback to another library.
    let missing = here.join("tests/data/no-such-libonnxruntime.so");
    match ort_library(Some(&missing)) {
        Err(InferenceError::LibraryNotFound { searched }) => assert_eq!(searched, [missing]),
        other => panic!("missing explicit library: {other:?}"),
    }

    // A file that is not a shared library fails to load, with a clear error.
    let not_a_library = here.join("tests/data/make_models.py");
    match init_runtime(Some(&not_a_library)) {
        Err(e @ InferenceError::LibraryLoad { .. }) => {
            assert!(e.to_string().contains("fetch-onnxruntime.sh"), "{e}");
        }
        other => panic!("non-library file: {other:?}"),
    }

    let found = match ort_library(None) {
        Ok(path) => path,
        Err(e) => {
            assert!(
                e.to_string().contains("scripts/fetch-onnxruntime.sh"),
                "the error must say how to get the library: {e}"
            );
            if std::env::var("TAPSTREAM_REQUIRE_ORT").as_deref() == Ok("1") {
                panic!("ONNX Runtime is required (TAPSTREAM_REQUIRE_ORT=1): {e}");
            }
            eprintln!("skipping the rest of library_lookup_load_and_conflict: {e}");
            return;
        }
    };
    assert!(
        found.is_absolute() && found.is_file(),
        "{}",
        found.display()
    );

    // A directory stands for the library file inside it.
    let dir = found.parent().expect("library has a directory");
    if found.file_name() == Some(ORT_LIBRARY_FILE.as_ref()) {
        assert_eq!(ort_library(Some(dir)).ok(), Some(found.clone()));
    }

    // The earlier failure left the process able to load the real library,
    // and loading is idempotent.
    let loaded = init_runtime(None).expect("loading the library found");
    assert_eq!(loaded, found);
    assert_eq!(init_runtime(Some(&found)).ok(), Some(found.clone()));

    // A second, different library cannot be loaded into the same process.
    match init_runtime(Some(&not_a_library)) {
        Err(InferenceError::LibraryConflict { loaded, .. }) => assert_eq!(loaded, found),
        other => panic!("second library: {other:?}"),
    }
}
