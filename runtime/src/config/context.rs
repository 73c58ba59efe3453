//! `[context]`: the host and service context stage (its switch and memcap).

use serde::{Deserialize, Serialize};
use tapstream_kernels::ContextConfig;

use super::{in_range, ConfigError};

/// When the context stage runs.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ContextMode {
    /// When the model's contract names context features (and for
    /// `tapstream features --context`).
    #[default]
    Auto,
    /// Always: `tapstream features` writes the context columns too.
    On,
    /// Never: a model that needs context features is refused.
    Off,
}

/// `[context]`: what each flow's hosts and service did before it started
/// (`kernels::context`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ContextSection {
    /// `auto` (default), `on` or `off`.
    pub enabled: ContextMode,
    /// Memory cap of the context table, MiB (1 to 1,048,576; default 64).
    /// When full, the table drops its least recently touched quarter
    /// (counted) and stays in emergency mode until it is at most 70 % full.
    pub memcap_mib: u64,
}

impl Default for ContextSection {
    fn default() -> Self {
        ContextSection {
            enabled: ContextMode::Auto,
            memcap_mib: ContextConfig::DEFAULT_MEMCAP_MIB as u64,
        }
    }
}

impl ContextSection {
    /// Checks the memcap's range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        in_range("context.memcap_mib", self.memcap_mib, 1..=1 << 20)
    }

    /// The table limits this section asks for.
    pub fn table(&self) -> ContextConfig {
        ContextConfig::with_memcap_mib(usize::try_from(self.memcap_mib).unwrap_or(usize::MAX))
    }

    /// Whether the stage runs, given whether the consumer needs context rows.
    pub fn runs(&self, needed: bool) -> bool {
        match self.enabled {
            ContextMode::Auto => needed,
            ContextMode::On => true,
            ContextMode::Off => false,
        }
    }
}
