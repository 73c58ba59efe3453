//! Helpers shared by the inference crate's integration tests.

use tapstream_inference::init_runtime;

/// `true` when ONNX Runtime is available; otherwise prints a skip line and
/// returns `false`, or fails the test when `TAPSTREAM_REQUIRE_ORT=1`.
pub fn have_ort(test: &str) -> bool {
    match init_runtime(None) {
        Ok(_) => true,
        Err(e) => {
            if std::env::var("TAPSTREAM_REQUIRE_ORT").as_deref() == Ok("1") {
                panic!("{test}: ONNX Runtime is required (TAPSTREAM_REQUIRE_ORT=1): {e}");
            }
            eprintln!("skipping {test}: {e}");
            false
        }
    }
}
