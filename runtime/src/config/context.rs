//! `[context]`: the host and service context stage (its switch and memcap).

use serde::{Deserialize, Serialize};
use tapstream_kernels::ContextConfig;

use super::{in_range, Config, ConfigError, Device, Placement};

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
    /// When full, the table drops its expired entries and, if that frees
    /// less than a quarter, its least recently touched quarter (counted),
    /// and stays in emergency mode until it is at most 70 % full.
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

/// Why a run cannot make context features: the one place that decides,
/// for choosing the default model ([`crate::model::spec_for`]) and for
/// refusing a run that needs them (the topology).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoContext {
    /// Flow rows read from Kafka carry no packets.
    FlowRows,
    /// `[context] enabled = "off"`.
    Off,
    /// `inference.placement = "workers"` scores before the context stage.
    WorkersPlacement,
    /// `gpu.device = "cuda"`: the GPU extractor does not report flow starts.
    CudaFeatures,
}

impl NoContext {
    /// Why a run set up as `cfg` cannot make context features, if it cannot
    /// (`flows_input`: it scores flow rows from Kafka).
    pub fn of(cfg: &Config, flows_input: bool) -> Option<Self> {
        if flows_input {
            Some(NoContext::FlowRows)
        } else if cfg.context.enabled == ContextMode::Off {
            Some(NoContext::Off)
        } else if cfg.inference.placement == Placement::Workers {
            Some(NoContext::WorkersPlacement)
        } else if cfg.gpu.device == Device::Cuda {
            Some(NoContext::CudaFeatures)
        } else {
            None
        }
    }

    /// What to change.
    pub fn fix(self) -> String {
        let schema = tapstream_kernels::schema::SCHEMA_NAME;
        match self {
            NoContext::FlowRows => format!("score flow rows with a model of the {schema} schema"),
            NoContext::Off => {
                format!("set it to \"auto\" or use a model of the {schema} schema")
            }
            NoContext::WorkersPlacement => "use placement = \"consumer\"".into(),
            NoContext::CudaFeatures => "use gpu.device = \"cpu\" or \"auto\"".into(),
        }
    }
}

impl std::fmt::Display for NoContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NoContext::FlowRows => "flow rows from Kafka carry no packets",
            NoContext::Off => "[context] enabled = \"off\"",
            NoContext::WorkersPlacement => {
                "inference.placement = \"workers\" scores before the context stage makes its rows"
            }
            NoContext::CudaFeatures => {
                "gpu.device = \"cuda\" (the GPU extractor does not report flow starts yet; the \
                 context stage's CUDA twin is GPU work)"
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_setting_that_rules_context_out_is_named() {
        let mut cfg = Config::default();
        assert_eq!(NoContext::of(&cfg, false), None);
        assert_eq!(NoContext::of(&cfg, true), Some(NoContext::FlowRows));
        cfg.gpu.device = Device::Cuda;
        assert_eq!(NoContext::of(&cfg, false), Some(NoContext::CudaFeatures));
        cfg.inference.placement = Placement::Workers;
        assert_eq!(
            NoContext::of(&cfg, false),
            Some(NoContext::WorkersPlacement)
        );
        cfg.context.enabled = ContextMode::Off;
        assert_eq!(NoContext::of(&cfg, false), Some(NoContext::Off));
        for why in [
            NoContext::FlowRows,
            NoContext::Off,
            NoContext::WorkersPlacement,
            NoContext::CudaFeatures,
        ] {
            assert!(!why.to_string().is_empty() && !why.fix().is_empty());
        }
    }
}
