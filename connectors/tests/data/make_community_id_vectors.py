#!/usr/bin/env python3
"""Generates community_id_vectors.json with pycommunityid, the Community ID
reference implementation (https://github.com/corelight/pycommunityid, BSD).

    python3 -m venv /tmp/cid && /tmp/cid/bin/pip install communityid==1.5.0
    /tmp/cid/bin/python connectors/tests/data/make_community_id_vectors.py \
        > connectors/tests/data/community_id_vectors.json

Each vector is an array: [proto, saddr, daddr, sport, dport, seed, id], where
sport and dport are the ICMP type and code for ICMP/ICMPv6 and null for
protocols without ports, and id is the expected Community ID. The
tuples include every row of the spec's baseline (corelight/community-id-spec
baseline/README.md tables and baseline_*.json) and extra cases: both
directions, equal addresses, port-less protocols, each with the seeds 0,
1, 0x1234 and 65535; and with seed 0, every ICMP type 0..=44 and ICMPv6
type 0..=160 with two codes.
"""
import json
import communityid
from communityid import FlowTuple

V4A, V4B = "1.2.3.4", "5.6.7.8"
V6A = "fe80:1:203:405:607:809:a0b:c0d"
V6B = "fe80:1011:1213:1415:1617:1819:1a1b:1c1d"

tuples = []  # (proto, saddr, daddr, sport, dport)

def both(proto, a, b, sp, dp):
    tuples.append((proto, a, b, sp, dp))
    tuples.append((proto, b, a, dp, sp))

# Spec README tables.
for proto in (6, 17, 132):
    both(proto, V4A, V4B, 1122, 3344)
tuples += [(1, V4A, V4B, 8, 0), (1, V4B, V4A, 0, 0), (1, V4A, V4B, 11, 0)]
tuples += [(58, V6A, V6B, 128, 0), (58, V6B, V6A, 129, 0), (58, V6A, V6B, 146, 0)]
both(46, V4A, V4B, None, None)
both(46, V6A, V6B, None, None)
# Spec baseline_*.json tuples (ICMP rows give type, counterpart-or-code).
tuples += [
    (58, "fe80::200:86ff:fe05:80da", "fe80::260:97ff:fe07:69ea", 135, 0),
    (58, "fe80::260:97ff:fe07:69ea", "fe80::200:86ff:fe05:80da", 136, 0),
    (58, "fe80::260:97ff:fe07:69ea", "fe80::200:86ff:fe05:80da", 135, 0),
    (58, "fe80::200:86ff:fe05:80da", "fe80::260:97ff:fe07:69ea", 136, 0),
    (58, "3ffe:501:1800:2345::2", "3ffe:507:0:1:200:86ff:fe05:80da", 3, 0),
    (58, "3ffe:501:410:0:2c0:dfff:fe47:33e", "3ffe:507:0:1:200:86ff:fe05:80da", 1, 4),
    (58, "3ffe:507:0:1:200:86ff:fe05:80da", "3ffe:501:0:1001::2", 128, 0),
    (58, "3ffe:501:0:1001::2", "3ffe:507:0:1:200:86ff:fe05:80da", 129, 0),
    (58, "fe80::200:86ff:fe05:80da", "ff02::2", 133, 0),
    (58, "fe80::260:97ff:fe07:69ea", "ff02::1", 134, 0),
    (1, "192.168.0.89", "192.168.0.1", 8, 0),
    (1, "192.168.0.1", "192.168.0.89", 0, 0),
    (1, "10.0.0.1", "10.0.0.2", 11, 0),
]
both(6, "2001:470:e5bf:dead:4957:2174:e82c:4887", "2607:f8b0:400c:c03::1a", 63943, 25)
both(132, "192.168.170.8", "192.168.170.56", 7, 7)
both(6, "128.232.110.120", "66.35.250.204", 34855, 80)
both(17, "192.168.1.52", "8.8.8.8", 54585, 53)
both(46, "10.1.12.1", "10.1.12.2", None, None)
# Extra: v6 transports, equal addresses (ports decide), extreme ports.
for proto in (6, 17, 132):
    both(proto, V6A, V6B, 443, 51000)
    both(proto, "127.0.0.1", "127.0.0.1", 40000, 80)
    both(proto, "::1", "::1", 5353, 5353)
    both(proto, "0.0.0.0", "255.255.255.255", 0, 65535)
    both(proto, "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535, 0)
# Extra: port-less protocols, both families.
for proto in (0, 2, 41, 47, 50, 51, 89, 103, 112, 255):
    both(proto, V4A, V4B, None, None)
    both(proto, V6A, V6B, None, None)
both(47, "10.0.0.1", "10.0.0.1", None, None)
# Sweeps, seed 0 only: every ICMP type 0..=44 and ICMPv6 type 0..=160.
sweep = []
for t in range(0, 45):
    sweep += [(1, V4A, V4B, t, 0), (1, V4B, V4A, t, 3), (1, "9.9.9.9", "9.9.9.9", t, 3)]
for t in range(0, 161):
    sweep += [(58, V6A, V6B, t, 0), (58, V6B, V6A, t, 3)]

def calc(seed, tpls):
    cid = communityid.CommunityID(seed=seed)
    for proto, saddr, daddr, sport, dport in tpls:
        value = cid.calc(FlowTuple(proto, saddr, daddr, sport, dport))
        assert value, (proto, saddr, daddr, sport, dport, cid.get_error())
        yield [proto, saddr, daddr, sport, dport, seed, value]

out = []
for seed in (0, 1, 0x1234, 65535):
    out += calc(seed, tuples)
out += calc(0, sweep)
print("[")
print(",\n".join(json.dumps(v) for v in out))
print("]")
