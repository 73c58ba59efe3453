//! The one error type of this crate.
//!
//! Model loading is where a deployment goes wrong (a missing library, a model
//! trained on other features, a tampered file), so every refusal is its own
//! variant that names the problem and says what to do about it, and callers can
//! match on the variant instead of parsing messages.

use std::path::PathBuf;

/// Everything that can go wrong while locating ONNX Runtime, loading and
/// verifying a model, or running it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InferenceError {
    /// No ONNX Runtime shared library was found in any of the places searched.
    #[error(
        "ONNX Runtime library not found (looked for {}); run scripts/fetch-onnxruntime.sh \
         from the repository, or point ORT_DYLIB_PATH or inference.onnxruntime_library at \
         libonnxruntime.so.{}",
        display_paths(searched),
        crate::library::ORT_VERSION
    )]
    LibraryNotFound {
        /// Every path that was tried, in order.
        searched: Vec<PathBuf>,
    },

    /// The ONNX Runtime library exists but could not be loaded (not a shared
    /// library, wrong architecture, a version older than `ort` needs, …).
    #[error(
        "could not load ONNX Runtime from {}: {message}; run scripts/fetch-onnxruntime.sh \
         to get a known-good libonnxruntime.so.{}",
        path.display(),
        crate::library::ORT_VERSION
    )]
    LibraryLoad {
        /// The library file.
        path: PathBuf,
        /// What the loader said.
        message: String,
    },

    /// A process can load only one ONNX Runtime library, and another one was
    /// requested after the first was loaded.
    #[error(
        "ONNX Runtime is already loaded from {} in this process; it cannot also load {} \
         (use one library path for every model)",
        loaded.display(),
        requested.display()
    )]
    LibraryConflict {
        /// The library in use.
        loaded: PathBuf,
        /// The library asked for later.
        requested: PathBuf,
    },

    /// An engine setting is out of range; nothing was loaded.
    #[error("invalid inference setting `{field}`: {reason}")]
    InvalidConfig {
        /// The setting, as named in [`OnnxConfig`](crate::OnnxConfig).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// The model file could not be read.
    #[error("could not read model {}", path.display())]
    ReadModel {
        /// The model file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The configured SHA-256 pin is not 64 hexadecimal digits.
    #[error("invalid model SHA-256 pin {pin:?}: it must be 64 hexadecimal digits (`sha256sum MODEL` prints it)")]
    InvalidPin {
        /// The pin as configured.
        pin: String,
    },

    /// The model file's SHA-256 differs from the configured pin.
    #[error(
        "model {} has SHA-256 {actual}, but the configuration pins {expected}; the file is \
         not the model that was approved (replace the file, or update the pin if the new \
         model is intended)",
        path.display()
    )]
    Sha256Mismatch {
        /// The model file.
        path: PathBuf,
        /// The pin (lower-case hex).
        expected: String,
        /// The file's digest (lower-case hex).
        actual: String,
    },

    /// ONNX Runtime refused the model file itself (not valid ONNX, an
    /// unsupported opset or operator, …).
    #[error("ONNX Runtime could not load model {}", path.display())]
    LoadModel {
        /// The model file.
        path: PathBuf,
        /// ONNX Runtime's error.
        #[source]
        source: ort::Error,
    },

    /// The model file is refused by tapstream's own checks of its graph:
    /// custom operators, external data outside its directory, or a file its
    /// ONNX reader cannot parse although ONNX Runtime can.
    #[error("model {} is refused: {reason}", path.display())]
    UnsafeModel {
        /// The model file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// The precision the model declares (`tapstream.precision`) does not
    /// match its graph.
    #[error(
        "model declares precision {declared} but {found}; set tapstream.precision to what the          graph is, or export the right variant (deploy/training/precision.py)"
    )]
    PrecisionMismatch {
        /// What `tapstream.precision` says.
        declared: crate::contract::Precision,
        /// What the graph holds.
        found: String,
    },

    /// ONNX Runtime refused the capped CPU arena.
    #[error("could not cap ONNX Runtime's CPU memory arena: {message}")]
    ArenaSetup {
        /// ONNX Runtime's message.
        message: String,
    },

    /// A required `tapstream.*` metadata key is absent from the model.
    #[error(
        "model metadata has no `{key}`; the model's contract is incomplete (export it with \
         the tapstream training recipe, which writes every tapstream.* metadata_props key)"
    )]
    MissingMetadata {
        /// The missing key.
        key: &'static str,
    },

    /// A `tapstream.*` metadata value cannot be parsed or is inconsistent.
    #[error("model metadata `{key}` is invalid: {reason}")]
    InvalidMetadata {
        /// The offending key.
        key: &'static str,
        /// What is wrong with its value.
        reason: String,
    },

    /// The model was trained on another feature schema than this build
    /// extracts.
    #[error(
        "model expects feature schema {found:?}, but this build extracts {expected:?}; use a \
         model trained on {expected:?} features"
    )]
    SchemaMismatch {
        /// The schema this build extracts.
        expected: &'static str,
        /// The schema the model names.
        found: String,
    },

    /// The model was trained on another version of the feature schema.
    #[error(
        "model expects feature schema version {found:?}, but this build extracts version \
         {expected}; retrain or re-export the model for version {expected}"
    )]
    SchemaVersionMismatch {
        /// The schema version this build extracts.
        expected: u32,
        /// The version the model names.
        found: String,
    },

    /// The model asks for a feature the extractor does not produce.
    #[error(
        "model feature {name:?} is not a column of the {schema} schema (see \
         kernels::schema::FEATURES for the exact names)"
    )]
    UnknownFeature {
        /// The unknown name.
        name: String,
        /// The schema searched.
        schema: &'static str,
    },

    /// The model names a feature its schema version does not have.
    #[error(
        "model feature {name:?} came with context schema version {since}, but the model \
         names version {version}; re-export it with version {since} or later"
    )]
    FeatureNewerThanSchema {
        /// The feature.
        name: String,
        /// The version that introduced it.
        since: u32,
        /// The version the model names.
        version: u32,
    },

    /// The model names one feature twice.
    #[error("model feature {name:?} is listed twice in tapstream.features")]
    DuplicateFeature {
        /// The repeated name.
        name: String,
    },

    /// An external scaler's `mean` or `scale` does not have one entry per
    /// feature.
    #[error(
        "model scaler `{field}` has {found} entries but the model has {expected} features; \
         tapstream.scaler needs one mean and one scale per feature"
    )]
    ScalerLength {
        /// `mean` or `scale`.
        field: &'static str,
        /// The number of features.
        expected: usize,
        /// The number of entries found.
        found: usize,
    },

    /// The model's default threshold is not a probability.
    #[error("model threshold {value} is outside [0, 1]; tapstream.threshold must be a score between 0 and 1")]
    ThresholdOutOfRange {
        /// The value read.
        value: f32,
    },

    /// The benign label is not one of the model's labels.
    #[error("model benign label {label:?} is not among its labels {labels:?}")]
    UnknownBenignLabel {
        /// The benign label named.
        label: String,
        /// The model's labels.
        labels: Vec<String>,
    },

    /// The model's input does not match the contract: exactly one `f32`
    /// tensor of shape `[batch, features]`.
    #[error("model input does not fit the contract: {reason}")]
    BadInput {
        /// What is wrong.
        reason: String,
    },

    /// The model's output does not match `tapstream.output` and the labels.
    #[error("model output does not fit the contract: {reason}")]
    BadOutput {
        /// What is wrong.
        reason: String,
    },

    /// [`Engine::infer`](crate::Engine::infer) was given an input whose length
    /// is not `rows × features`.
    #[error("inference input has {found} values, but {rows} rows of {features} features need {}", rows.saturating_mul(*features))]
    InputSize {
        /// Rows requested.
        rows: usize,
        /// Features per row in the model.
        features: usize,
        /// Values supplied.
        found: usize,
    },

    /// The model returned an output of an unexpected shape at run time.
    #[error("model returned output of shape {found:?} for {rows} rows; expected {expected}")]
    OutputShape {
        /// Rows in the batch.
        rows: usize,
        /// The expected shape, in words.
        expected: String,
        /// The shape returned.
        found: Vec<i64>,
    },

    /// A bound output was read as host memory but lives on a device.
    #[error("the model output is in {memory} memory, not host memory; read it on the device")]
    NotHostMemory {
        /// Where it is.
        memory: String,
    },

    /// ONNX Runtime failed at run time (creating the environment or a tensor,
    /// or running the session).
    #[error("ONNX Runtime failed while {context}")]
    Runtime {
        /// What was being done.
        context: &'static str,
        /// ONNX Runtime's error.
        #[source]
        source: ort::Error,
    },
}

fn display_paths(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "nowhere".to_owned();
    }
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
