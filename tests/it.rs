//! Integration tests: one binary, one module per area (ripgrep's layout).
//!
//! Tests over `../shared/data` print a line and return when that directory
//! is absent (a user's clone); CI always has it.

// `[output.limit]` end to end, and the EVE file re-opened on SIGHUP.
mod alert_output;
// The command line on the demo capture and on bad input.
mod cli;
// Host and service context: exact for any shape, switch and errors.
mod context;
// Flows do not depend on the number of decoder threads.
mod decoders;
// IP defragmentation: fragmented captures give the flows of whole ones.
mod defrag;
// The device's flag_scores kernel, emulated, against read_output.
mod gpu_flag_scores;
// The device's model-input kernel, emulated, against select_features.
mod gpu_model_input;
// `tapstream eval`: labelled directories, JSON numbers, HTML, read errors.
mod eval;
// The Kafka source against librdkafka's in-process broker.
mod kafka;
// `tapstream learn`: an anomaly model from benign traffic, run and evaluated.
mod learn;
// `tapstream model report`: JSON sanity, robustness, errors.
mod model_report;
// Where the model runs: the consumer or the flow workers.
mod placement;
// FP16 and INT8 variants of the default model against FP32.
mod precision;
// Hot reload of the model (in process, and SIGHUP to a running tapstream).
mod reload;
// Live capture in a network namespace pair (sensor mode).
mod sensor;
// Every shared capture through `tapstream run`: exit codes, no panics,
// packet conservation.
mod shared_captures;
// Community ID of tapstream's flows against Suricata 7's.
mod suricata;
// Shared helpers.
mod util;
// The C++ emulator of the CUDA kernels (shared with the kernels crate).
#[path = "../kernels/tests/gpu_emu/emulator.rs"]
mod emulator;
