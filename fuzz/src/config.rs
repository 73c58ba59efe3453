//! `config`: any text as a configuration file.

use std::path::Path;

use tapstream_runtime::config::{Config, ConfigError};

/// Target `config`: the input as TOML text through [`Config::parse`] (which
/// validates). Any text must give a config or an error, never a panic. A
/// config that passes must also work downstream: the per-shard flow table
/// settings derived from it are valid for any shard count, the helpers the
/// pipeline calls after validation return, and it prints (as
/// `tapstream config FILE` prints it) to TOML that parses and prints again
/// to the same text.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz.toml");
    let cfg = match Config::parse(text, path) {
        Ok(cfg) => cfg,
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.is_empty());
            if let ConfigError::Parse { message, .. } = &e {
                assert!(!message.contains('\n'), "a parse error is one line");
            }
            return;
        }
    };
    for shards in [1, 3, 256] {
        let flow = cfg.flow.flow_config(shards);
        if let Err(e) = flow.validate() {
            panic!("a valid config gives an invalid flow table ({shards} shards): {e}");
        }
    }
    assert!(cfg.worker_threads() >= 1);
    assert!(cfg.decoder_threads() >= 1);
    assert_eq!(
        cfg.inference.execution_providers().len(),
        cfg.inference.providers.len()
    );
    let _ = cfg.inference.cpu_arena_limit();
    let _ = cfg.output.limit.settings();
    // Printing redacts literal secrets (Kafka properties and passwords
    // become "<redacted>"), so the printed text need not give back `cfg`
    // itself; it must parse, and print again to the same text.
    let print = |c: &Config| match toml::to_string_pretty(c) {
        Ok(p) => p,
        Err(e) => panic!("a valid config does not print: {e}\n{c:?}"),
    };
    let printed = print(&cfg);
    match Config::parse(&printed, path) {
        Ok(again) => {
            assert_eq!(print(&again), printed, "printed, parsed and printed again");
            if !printed.contains("<redacted>") {
                assert_eq!(again, cfg, "printed as:\n{printed}");
            }
        }
        Err(e) => panic!("the printed config does not parse ({e}):\n{printed}"),
    }
}
