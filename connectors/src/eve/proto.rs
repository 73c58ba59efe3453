//! IP protocol names as Suricata writes them in EVE's `proto` field.
//!
//! Suricata 7 takes the name from a built-in copy of the IANA protocol
//! number registry (keywords, e.g. `IPv6-ICMP`, not `ICMPv6`) and writes the
//! decimal number for protocols above 143. SIEM parsers and dashboards match
//! on these exact strings, so tapstream uses the same table.

/// Suricata 7's `known_proto` table (`src/util-proto-name.c`), indexed by
/// IP protocol number. Numbers from 144 on have no name.
const NAMES: [&str; 144] = [
    "HOPOPT",          // 0
    "ICMP",            // 1
    "IGMP",            // 2
    "GGP",             // 3
    "IP-in-IP",        // 4
    "ST",              // 5
    "TCP",             // 6
    "CBT",             // 7
    "EGP",             // 8
    "IGP",             // 9
    "BBN-RCC-MON",     // 10
    "NVP-II",          // 11
    "PUP",             // 12
    "ARGUS",           // 13
    "EMCON",           // 14
    "XNET",            // 15
    "CHAOS",           // 16
    "UDP",             // 17
    "MUX",             // 18
    "DCN-MEAS",        // 19
    "HMP",             // 20
    "PRM",             // 21
    "XNS-IDP",         // 22
    "TRUNK-1",         // 23
    "TRUNK-2",         // 24
    "LEAF-1",          // 25
    "LEAF-2",          // 26
    "RDP",             // 27
    "IRTP",            // 28
    "ISO-TP4",         // 29
    "NETBLT",          // 30
    "MFE-NSP",         // 31
    "MERIT-INP",       // 32
    "DCCP",            // 33
    "3PC",             // 34
    "IDPR",            // 35
    "XTP",             // 36
    "DDP",             // 37
    "IDPR-CMTP",       // 38
    "TP++",            // 39
    "IL",              // 40
    "IPv6",            // 41
    "SDRP",            // 42
    "IPv6-Route",      // 43
    "IPv6-Frag",       // 44
    "IDRP",            // 45
    "RSVP",            // 46
    "GRE",             // 47
    "DSR",             // 48
    "BNA",             // 49
    "ESP",             // 50
    "AH",              // 51
    "I-NLSP",          // 52
    "SwIPe",           // 53
    "NARP",            // 54
    "MOBILE",          // 55
    "TLSP",            // 56
    "SKIP",            // 57
    "IPv6-ICMP",       // 58
    "IPv6-NoNxt",      // 59
    "IPv6-Opts",       // 60
    "Any",             // 61: any host internal protocol
    "CFTP",            // 62
    "Any",             // 63: any local network
    "SAT-EXPAK",       // 64
    "KRYPTOLAN",       // 65
    "RVD",             // 66
    "IPPC",            // 67
    "Any",             // 68: any distributed file system
    "SAT-MON",         // 69
    "VISA",            // 70
    "IPCU",            // 71
    "CPNX",            // 72
    "CPHB",            // 73
    "WSN",             // 74
    "PVP",             // 75
    "BR-SAT-MON",      // 76
    "SUN-ND",          // 77
    "WB-MON",          // 78
    "WB-EXPAK",        // 79
    "ISO-IP",          // 80
    "VMTP",            // 81
    "SECURE-VMTP",     // 82
    "VINES",           // 83
    "TTP",             // 84
    "NSFNET-IGP",      // 85
    "DGP",             // 86
    "TCF",             // 87
    "EIGRP",           // 88
    "OSPF",            // 89
    "Sprite-RPC",      // 90
    "LARP",            // 91
    "MTP",             // 92
    "AX.25",           // 93
    "OS",              // 94
    "MICP",            // 95
    "SCC-SP",          // 96
    "ETHERIP",         // 97
    "ENCAP",           // 98
    "Any",             // 99: any private encryption scheme
    "GMTP",            // 100
    "IFMP",            // 101
    "PNNI",            // 102
    "PIM",             // 103
    "ARIS",            // 104
    "SCPS",            // 105
    "QNX",             // 106
    "A/N",             // 107
    "IPComp",          // 108
    "SNP",             // 109
    "Compaq-Peer",     // 110
    "IPX-in-IP",       // 111
    "VRRP",            // 112
    "PGM",             // 113
    "Any",             // 114: any 0-hop protocol
    "L2TP",            // 115
    "DDX",             // 116
    "IATP",            // 117
    "STP",             // 118
    "SRP",             // 119
    "UTI",             // 120
    "SMP",             // 121
    "SM",              // 122
    "PTP",             // 123
    "IS-IS",           // 124
    "FIRE",            // 125
    "CRTP",            // 126
    "CRUDP",           // 127
    "SSCOPMCE",        // 128
    "IPLT",            // 129
    "SPS",             // 130
    "PIPE",            // 131
    "SCTP",            // 132
    "FC",              // 133
    "RSVP-E2E-IGNORE", // 134
    "Mobility",        // 135
    "UDPLite",         // 136
    "MPLS-in-IP",      // 137
    "manet",           // 138
    "HIP",             // 139
    "Shim6",           // 140
    "WESP",            // 141
    "ROHC",            // 142
    "Ethernet",        // 143
];

/// Suricata's EVE name for IP protocol `proto` (`"TCP"`, `"UDP"`,
/// `"ICMP"`, `"IPv6-ICMP"`, `"SCTP"`, `"GRE"`, `"ESP"`, …), or `None` for
/// numbers Suricata writes as decimal (144 and above).
pub fn proto_name(proto: u8) -> Option<&'static str> {
    NAMES.get(usize::from(proto)).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_suricata() {
        assert_eq!(proto_name(1), Some("ICMP"));
        assert_eq!(proto_name(6), Some("TCP"));
        assert_eq!(proto_name(17), Some("UDP"));
        assert_eq!(proto_name(47), Some("GRE"));
        assert_eq!(proto_name(50), Some("ESP"));
        assert_eq!(proto_name(58), Some("IPv6-ICMP"));
        assert_eq!(proto_name(132), Some("SCTP"));
        assert_eq!(proto_name(143), Some("Ethernet"));
        assert_eq!(proto_name(144), None);
        assert_eq!(proto_name(255), None);
    }
}
