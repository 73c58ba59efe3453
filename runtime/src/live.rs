//! The live sources of `tapstream run --interface`: the configured number
//! of capture threads on one interface, opened (with the privileges that
//! takes) before anything else starts.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{Context, Result};
use tapstream_ingest::live::{LiveCapture, LiveSource};
use tapstream_ingest::PacketSource;

use crate::config::Config;

/// Opens `capture.threads` handles on the interface (`cli` overrides
/// `capture.interface`), in one fanout group when there are several.
pub fn open_captures(cfg: &Config, cli: Option<&str>) -> Result<Vec<LiveCapture>> {
    let interface = cli
        .map(str::to_string)
        .or_else(|| cfg.capture.interface.clone())
        .context("live capture needs an interface: --interface IF or capture.interface")?;
    let threads = cfg.capture.threads.max(1);
    let fanout = (threads > 1).then(|| match cfg.capture.fanout_group {
        // Distinct per process, so two sensors on one host do not merge.
        0 => (std::process::id() & 0xffff) as u16,
        g => g,
    });
    (0..threads)
        .map(|_| {
            LiveCapture::open(&cfg.capture.live_config(&interface, fanout))
                .map_err(anyhow::Error::from)
        })
        .collect()
}

/// The open handles as sources, read until `term` is set.
pub fn sources(captures: Vec<LiveCapture>, term: &Arc<AtomicBool>) -> Vec<Box<dyn PacketSource>> {
    captures
        .into_iter()
        .map(|c| Box::new(LiveSource::new(c, term.clone())) as Box<dyn PacketSource>)
        .collect()
}
