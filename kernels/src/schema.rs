//! The feature schema: the exact CSV columns of the improved CIC-IDS2017 dataset.
//!
//! Column names and order come from the improved CICFlowMeter (Engelen et al.)
//! as published with the CIC-IDS2017 re-extraction, minus `id`, `Label` and
//! `Attempted Category`. Models name the numeric columns they consume in their
//! ONNX metadata; [`SCHEMA_NAME`] and [`SCHEMA_VERSION`] identify this list.

/// Schema name a model's `tapstream.schema` metadata must carry.
pub const SCHEMA_NAME: &str = "cic-ids2017-improved";
/// Schema version a model's `tapstream.schema_version` metadata must carry.
pub const SCHEMA_VERSION: u32 = 1;

/// All CSV columns written by `tapstream features`, in order.
pub const CSV_COLUMNS: [&str; 88] = [
    "Flow ID",
    "Src IP",
    "Src Port",
    "Dst IP",
    "Dst Port",
    "Protocol",
    "Timestamp",
    "Flow Duration",
    "Total Fwd Packet",
    "Total Bwd packets",
    "Total Length of Fwd Packet",
    "Total Length of Bwd Packet",
    "Fwd Packet Length Max",
    "Fwd Packet Length Min",
    "Fwd Packet Length Mean",
    "Fwd Packet Length Std",
    "Bwd Packet Length Max",
    "Bwd Packet Length Min",
    "Bwd Packet Length Mean",
    "Bwd Packet Length Std",
    "Flow Bytes/s",
    "Flow Packets/s",
    "Flow IAT Mean",
    "Flow IAT Std",
    "Flow IAT Max",
    "Flow IAT Min",
    "Fwd IAT Total",
    "Fwd IAT Mean",
    "Fwd IAT Std",
    "Fwd IAT Max",
    "Fwd IAT Min",
    "Bwd IAT Total",
    "Bwd IAT Mean",
    "Bwd IAT Std",
    "Bwd IAT Max",
    "Bwd IAT Min",
    "Fwd PSH Flags",
    "Bwd PSH Flags",
    "Fwd URG Flags",
    "Bwd URG Flags",
    "Fwd RST Flags",
    "Bwd RST Flags",
    "Fwd Header Length",
    "Bwd Header Length",
    "Fwd Packets/s",
    "Bwd Packets/s",
    "Packet Length Min",
    "Packet Length Max",
    "Packet Length Mean",
    "Packet Length Std",
    "Packet Length Variance",
    "FIN Flag Count",
    "SYN Flag Count",
    "RST Flag Count",
    "PSH Flag Count",
    "ACK Flag Count",
    "URG Flag Count",
    "CWR Flag Count",
    "ECE Flag Count",
    "Down/Up Ratio",
    "Average Packet Size",
    "Fwd Segment Size Avg",
    "Bwd Segment Size Avg",
    "Fwd Bytes/Bulk Avg",
    "Fwd Packet/Bulk Avg",
    "Fwd Bulk Rate Avg",
    "Bwd Bytes/Bulk Avg",
    "Bwd Packet/Bulk Avg",
    "Bwd Bulk Rate Avg",
    "Subflow Fwd Packets",
    "Subflow Fwd Bytes",
    "Subflow Bwd Packets",
    "Subflow Bwd Bytes",
    "FWD Init Win Bytes",
    "Bwd Init Win Bytes",
    "Fwd Act Data Pkts",
    "Fwd Seg Size Min",
    "Active Mean",
    "Active Std",
    "Active Max",
    "Active Min",
    "Idle Mean",
    "Idle Std",
    "Idle Max",
    "Idle Min",
    "ICMP Code",
    "ICMP Type",
    "Total TCP Flow Time",
];

/// How a numeric feature is typed (and printed in CSV).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An integer count, length, duration (µs) or flag; printed without a decimal point.
    Integer,
    /// A real-valued statistic; printed as the shortest round-trip decimal.
    Float,
}

/// The numeric features, in the order of a feature row (`[f64; NUM_FEATURES]`).
/// These are the CSV columns minus `Flow ID`, `Src IP`, `Dst IP` and `Timestamp`.
pub const FEATURES: [(&str, Kind); 84] = [
    ("Src Port", Kind::Integer),
    ("Dst Port", Kind::Integer),
    ("Protocol", Kind::Integer),
    ("Flow Duration", Kind::Integer),
    ("Total Fwd Packet", Kind::Integer),
    ("Total Bwd packets", Kind::Integer),
    ("Total Length of Fwd Packet", Kind::Integer),
    ("Total Length of Bwd Packet", Kind::Integer),
    ("Fwd Packet Length Max", Kind::Integer),
    ("Fwd Packet Length Min", Kind::Integer),
    ("Fwd Packet Length Mean", Kind::Float),
    ("Fwd Packet Length Std", Kind::Float),
    ("Bwd Packet Length Max", Kind::Integer),
    ("Bwd Packet Length Min", Kind::Integer),
    ("Bwd Packet Length Mean", Kind::Float),
    ("Bwd Packet Length Std", Kind::Float),
    ("Flow Bytes/s", Kind::Float),
    ("Flow Packets/s", Kind::Float),
    ("Flow IAT Mean", Kind::Float),
    ("Flow IAT Std", Kind::Float),
    ("Flow IAT Max", Kind::Integer),
    ("Flow IAT Min", Kind::Integer),
    ("Fwd IAT Total", Kind::Integer),
    ("Fwd IAT Mean", Kind::Float),
    ("Fwd IAT Std", Kind::Float),
    ("Fwd IAT Max", Kind::Integer),
    ("Fwd IAT Min", Kind::Integer),
    ("Bwd IAT Total", Kind::Integer),
    ("Bwd IAT Mean", Kind::Float),
    ("Bwd IAT Std", Kind::Float),
    ("Bwd IAT Max", Kind::Integer),
    ("Bwd IAT Min", Kind::Integer),
    ("Fwd PSH Flags", Kind::Integer),
    ("Bwd PSH Flags", Kind::Integer),
    ("Fwd URG Flags", Kind::Integer),
    ("Bwd URG Flags", Kind::Integer),
    ("Fwd RST Flags", Kind::Integer),
    ("Bwd RST Flags", Kind::Integer),
    ("Fwd Header Length", Kind::Integer),
    ("Bwd Header Length", Kind::Integer),
    ("Fwd Packets/s", Kind::Float),
    ("Bwd Packets/s", Kind::Float),
    ("Packet Length Min", Kind::Integer),
    ("Packet Length Max", Kind::Integer),
    ("Packet Length Mean", Kind::Float),
    ("Packet Length Std", Kind::Float),
    ("Packet Length Variance", Kind::Float),
    ("FIN Flag Count", Kind::Integer),
    ("SYN Flag Count", Kind::Integer),
    ("RST Flag Count", Kind::Integer),
    ("PSH Flag Count", Kind::Integer),
    ("ACK Flag Count", Kind::Integer),
    ("URG Flag Count", Kind::Integer),
    ("CWR Flag Count", Kind::Integer),
    ("ECE Flag Count", Kind::Integer),
    ("Down/Up Ratio", Kind::Float),
    ("Average Packet Size", Kind::Float),
    ("Fwd Segment Size Avg", Kind::Float),
    ("Bwd Segment Size Avg", Kind::Float),
    ("Fwd Bytes/Bulk Avg", Kind::Integer),
    ("Fwd Packet/Bulk Avg", Kind::Integer),
    ("Fwd Bulk Rate Avg", Kind::Integer),
    ("Bwd Bytes/Bulk Avg", Kind::Integer),
    ("Bwd Packet/Bulk Avg", Kind::Integer),
    ("Bwd Bulk Rate Avg", Kind::Integer),
    ("Subflow Fwd Packets", Kind::Integer),
    ("Subflow Fwd Bytes", Kind::Integer),
    ("Subflow Bwd Packets", Kind::Integer),
    ("Subflow Bwd Bytes", Kind::Integer),
    ("FWD Init Win Bytes", Kind::Integer),
    ("Bwd Init Win Bytes", Kind::Integer),
    ("Fwd Act Data Pkts", Kind::Integer),
    ("Fwd Seg Size Min", Kind::Integer),
    ("Active Mean", Kind::Float),
    ("Active Std", Kind::Float),
    ("Active Max", Kind::Integer),
    ("Active Min", Kind::Integer),
    ("Idle Mean", Kind::Float),
    ("Idle Std", Kind::Float),
    ("Idle Max", Kind::Integer),
    ("Idle Min", Kind::Integer),
    ("ICMP Code", Kind::Integer),
    ("ICMP Type", Kind::Integer),
    ("Total TCP Flow Time", Kind::Integer),
];

/// Number of numeric features in a row.
pub const NUM_FEATURES: usize = FEATURES.len();

/// Index of a numeric feature by its exact column name.
pub fn feature_index(name: &str) -> Option<usize> {
    FEATURES.iter().position(|(n, _)| *n == name)
}

/// Named indices into a feature row, so extractor code never uses bare numbers.
#[allow(missing_docs)]
pub mod idx {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 1;
    pub const PROTOCOL: usize = 2;
    pub const FLOW_DURATION: usize = 3;
    pub const TOTAL_FWD_PACKET: usize = 4;
    pub const TOTAL_BWD_PACKETS: usize = 5;
    pub const TOTAL_LENGTH_OF_FWD_PACKET: usize = 6;
    pub const TOTAL_LENGTH_OF_BWD_PACKET: usize = 7;
    pub const FWD_PACKET_LENGTH_MAX: usize = 8;
    pub const FWD_PACKET_LENGTH_MIN: usize = 9;
    pub const FWD_PACKET_LENGTH_MEAN: usize = 10;
    pub const FWD_PACKET_LENGTH_STD: usize = 11;
    pub const BWD_PACKET_LENGTH_MAX: usize = 12;
    pub const BWD_PACKET_LENGTH_MIN: usize = 13;
    pub const BWD_PACKET_LENGTH_MEAN: usize = 14;
    pub const BWD_PACKET_LENGTH_STD: usize = 15;
    pub const FLOW_BYTES_S: usize = 16;
    pub const FLOW_PACKETS_S: usize = 17;
    pub const FLOW_IAT_MEAN: usize = 18;
    pub const FLOW_IAT_STD: usize = 19;
    pub const FLOW_IAT_MAX: usize = 20;
    pub const FLOW_IAT_MIN: usize = 21;
    pub const FWD_IAT_TOTAL: usize = 22;
    pub const FWD_IAT_MEAN: usize = 23;
    pub const FWD_IAT_STD: usize = 24;
    pub const FWD_IAT_MAX: usize = 25;
    pub const FWD_IAT_MIN: usize = 26;
    pub const BWD_IAT_TOTAL: usize = 27;
    pub const BWD_IAT_MEAN: usize = 28;
    pub const BWD_IAT_STD: usize = 29;
    pub const BWD_IAT_MAX: usize = 30;
    pub const BWD_IAT_MIN: usize = 31;
    pub const FWD_PSH_FLAGS: usize = 32;
    pub const BWD_PSH_FLAGS: usize = 33;
    pub const FWD_URG_FLAGS: usize = 34;
    pub const BWD_URG_FLAGS: usize = 35;
    pub const FWD_RST_FLAGS: usize = 36;
    pub const BWD_RST_FLAGS: usize = 37;
    pub const FWD_HEADER_LENGTH: usize = 38;
    pub const BWD_HEADER_LENGTH: usize = 39;
    pub const FWD_PACKETS_S: usize = 40;
    pub const BWD_PACKETS_S: usize = 41;
    pub const PACKET_LENGTH_MIN: usize = 42;
    pub const PACKET_LENGTH_MAX: usize = 43;
    pub const PACKET_LENGTH_MEAN: usize = 44;
    pub const PACKET_LENGTH_STD: usize = 45;
    pub const PACKET_LENGTH_VARIANCE: usize = 46;
    pub const FIN_FLAG_COUNT: usize = 47;
    pub const SYN_FLAG_COUNT: usize = 48;
    pub const RST_FLAG_COUNT: usize = 49;
    pub const PSH_FLAG_COUNT: usize = 50;
    pub const ACK_FLAG_COUNT: usize = 51;
    pub const URG_FLAG_COUNT: usize = 52;
    pub const CWR_FLAG_COUNT: usize = 53;
    pub const ECE_FLAG_COUNT: usize = 54;
    pub const DOWN_UP_RATIO: usize = 55;
    pub const AVERAGE_PACKET_SIZE: usize = 56;
    pub const FWD_SEGMENT_SIZE_AVG: usize = 57;
    pub const BWD_SEGMENT_SIZE_AVG: usize = 58;
    pub const FWD_BYTES_BULK_AVG: usize = 59;
    pub const FWD_PACKET_BULK_AVG: usize = 60;
    pub const FWD_BULK_RATE_AVG: usize = 61;
    pub const BWD_BYTES_BULK_AVG: usize = 62;
    pub const BWD_PACKET_BULK_AVG: usize = 63;
    pub const BWD_BULK_RATE_AVG: usize = 64;
    pub const SUBFLOW_FWD_PACKETS: usize = 65;
    pub const SUBFLOW_FWD_BYTES: usize = 66;
    pub const SUBFLOW_BWD_PACKETS: usize = 67;
    pub const SUBFLOW_BWD_BYTES: usize = 68;
    pub const FWD_INIT_WIN_BYTES: usize = 69;
    pub const BWD_INIT_WIN_BYTES: usize = 70;
    pub const FWD_ACT_DATA_PKTS: usize = 71;
    pub const FWD_SEG_SIZE_MIN: usize = 72;
    pub const ACTIVE_MEAN: usize = 73;
    pub const ACTIVE_STD: usize = 74;
    pub const ACTIVE_MAX: usize = 75;
    pub const ACTIVE_MIN: usize = 76;
    pub const IDLE_MEAN: usize = 77;
    pub const IDLE_STD: usize = 78;
    pub const IDLE_MAX: usize = 79;
    pub const IDLE_MIN: usize = 80;
    pub const ICMP_CODE: usize = 81;
    pub const ICMP_TYPE: usize = 82;
    pub const TOTAL_TCP_FLOW_TIME: usize = 83;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_features_are_csv_columns_in_order() {
        let from_csv: Vec<&str> = CSV_COLUMNS
            .iter()
            .copied()
            .filter(|c| !matches!(*c, "Flow ID" | "Src IP" | "Dst IP" | "Timestamp"))
            .collect();
        let names: Vec<&str> = FEATURES.iter().map(|(n, _)| *n).collect();
        assert_eq!(from_csv, names);
    }

    #[test]
    fn index_lookup() {
        assert_eq!(feature_index("Flow Duration"), Some(idx::FLOW_DURATION));
        assert_eq!(feature_index("Total TCP Flow Time"), Some(NUM_FEATURES - 1));
        assert_eq!(feature_index("Label"), None);
    }
}
