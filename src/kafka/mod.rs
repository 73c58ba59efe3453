//! The Kafka side of the pipeline: what Kafka messages become.
//!
//! Why a module of the binary's crate and not of `connectors`: turning a
//! message into pipeline input needs the feature schema (`kernels`) and the
//! flow ids of the flow table (`ingest`), and only the binary sees both.
//!
//! - [`flows`]: the `flows` message format (one feature row per message,
//!   JSON or CSV) decoded into a feature row and a `FlowMeta`.

pub mod flows;
