//! The stages a run's packets pass after their source, each on threads of
//! its own: `decode`, the flow workers (`worker`, fed through an `inbox`),
//! and the consumer ([`consumer`]: alerts through [`alerts`], further
//! [`detectors`] and the `sink` thread, CSV export, or discard). [`crate::topology`] wires them.

pub mod alerts;
pub mod consumer;
pub mod context;
pub(crate) mod decode;
pub mod detectors;
pub(crate) mod inbox;
pub mod learning;
pub(crate) mod sink;
pub(crate) mod worker;
