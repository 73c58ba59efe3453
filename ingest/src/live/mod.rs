//! Live capture from a network interface through libpcap.
//!
//! Why it exists: a sensor beside a tap reads packets as they arrive, not
//! from a file. This module opens an interface with the settings an operator
//! tunes (BPF filter, snap length, kernel buffer, immediate mode or read
//! timeout, promiscuous mode), optionally joins an AF_PACKET fanout group so
//! several capture threads share one interface (the kernel hashes each flow
//! to one socket), and yields the same [`RawPacket`]s as the file reader, so
//! everything after the source is one code path.
//!
//! The handle is opened once, by a process that may still hold the
//! privileges capture needs; reading needs none, so the caller can drop them
//! before the first packet. Kernel and interface drops come from
//! `pcap_stats`, widened from libpcap's 32-bit counters to totals that do not
//! wrap.

mod source;

pub use source::LiveSource;

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use pcap::{Active, Capture, Precision};

use crate::capture::RawPacket;

/// How to open an interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveConfig {
    /// Interface name (`eth0`, `any`, …).
    pub interface: String,
    /// BPF filter expression (tcpdump syntax); empty for none.
    pub filter: String,
    /// Bytes kept of each packet.
    pub snaplen: u32,
    /// Kernel ring buffer size in bytes.
    pub buffer_bytes: u32,
    /// Deliver each packet as soon as it arrives (no batching in the kernel).
    pub immediate: bool,
    /// How long one read waits for packets before it returns empty-handed
    /// (also in immediate mode and on an idle link, so the reader can
    /// notice a stop request); also the kernel's block timeout.
    pub timeout: Duration,
    /// Put the interface into promiscuous mode.
    pub promiscuous: bool,
    /// Join AF_PACKET fanout group `Some(id)` (hash by flow), so several
    /// handles on the interface each get whole flows. Linux only.
    pub fanout: Option<u16>,
}

/// Why an interface could not be opened or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LiveError {
    /// libpcap refused to open or activate the interface (no such device,
    /// no permission, interface down, bad setting).
    #[error("cannot capture on {interface}: {source}")]
    Open {
        /// The interface.
        interface: String,
        /// libpcap's reason.
        #[source]
        source: pcap::Error,
    },
    /// The BPF filter does not compile for this interface's link type.
    #[error("invalid capture filter {filter:?} on {interface}: {source}")]
    Filter {
        /// The interface.
        interface: String,
        /// The expression.
        filter: String,
        /// libpcap's reason.
        #[source]
        source: pcap::Error,
    },
    /// The kernel refused the fanout group (another group type or flags use
    /// that id, or not Linux).
    #[error("cannot join fanout group {group} on {interface}: {source}")]
    Fanout {
        /// The interface.
        interface: String,
        /// The group id.
        group: u16,
        /// The kernel's reason.
        #[source]
        source: io::Error,
    },
    /// A setting is out of the range libpcap takes.
    #[error("capture setting {name} = {value} is out of range ({why})")]
    Setting {
        /// The setting.
        name: &'static str,
        /// Its value.
        value: String,
        /// The allowed range.
        why: &'static str,
    },
    /// Reading failed (the interface went away or went down).
    #[error("capture on {interface} failed: {source}")]
    Read {
        /// The interface.
        interface: String,
        /// libpcap's reason.
        #[source]
        source: pcap::Error,
    },
}

/// What one read gave.
#[derive(Debug)]
pub enum Next<'a> {
    /// A packet.
    Packet(RawPacket<'a>),
    /// The read timeout passed with no packet.
    Timeout,
}

/// Totals since the handle was opened (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LiveStats {
    /// Packets the kernel passed the filter (libpcap's `ps_recv`; on Linux
    /// this includes packets later dropped).
    pub received: u64,
    /// Packets dropped because the kernel buffer was full (`ps_drop`).
    pub dropped: u64,
    /// Packets dropped by the interface or its driver (`ps_ifdrop`).
    pub if_dropped: u64,
}

/// An open interface.
pub struct LiveCapture {
    /// In non-blocking mode: libpcap's own wait can sleep forever on an idle
    /// link (with TPACKET_V3 the kernel wakes readers only for a block that
    /// holds packets), so the wait is a `poll` of ours, bounded by `timeout_ms`.
    cap: Capture<Active>,
    timeout_ms: i32,
    /// The last read found the ring empty: wait before reading again.
    drained: bool,
    /// Time spent waiting for packets so far.
    waited: Duration,
    interface: String,
    link_type: u32,
    /// The last raw `pcap_stats` values and their widened totals.
    last: [u32; 3],
    totals: LiveStats,
}

impl std::fmt::Debug for LiveCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveCapture")
            .field("interface", &self.interface)
            .field("link_type", &self.link_type)
            .finish_non_exhaustive()
    }
}

/// `setsockopt(SOL_PACKET, PACKET_FANOUT)` (linux/if_packet.h; kernel ABI).
const PACKET_FANOUT: libc::c_int = 18;
/// Fanout by the kernel's flow hash (symmetric in both directions).
const PACKET_FANOUT_HASH: u32 = 0;

impl LiveCapture {
    /// Opens and activates `cfg.interface`, sets the filter and joins the
    /// fanout group. Needs CAP_NET_RAW (and CAP_NET_ADMIN for promiscuous
    /// mode) on Linux.
    pub fn open(cfg: &LiveConfig) -> Result<LiveCapture, LiveError> {
        let interface = cfg.interface.clone();
        let snaplen = i32::try_from(cfg.snaplen)
            .ok()
            .filter(|&s| s > 0)
            .ok_or_else(|| LiveError::Setting {
                name: "snaplen",
                value: cfg.snaplen.to_string(),
                why: "1 to 2147483647 bytes",
            })?;
        let buffer = i32::try_from(cfg.buffer_bytes)
            .ok()
            .filter(|&s| s > 0)
            .ok_or_else(|| LiveError::Setting {
                name: "buffer",
                value: cfg.buffer_bytes.to_string(),
                why: "1 byte to 2 GiB",
            })?;
        let timeout_ms = i32::try_from(cfg.timeout.as_millis())
            .ok()
            .filter(|&t| t > 0)
            .ok_or_else(|| LiveError::Setting {
                name: "timeout",
                value: format!("{:?}", cfg.timeout),
                why: "1 ms to 24 days",
            })?;
        let open_err = |source| LiveError::Open {
            interface: interface.clone(),
            source,
        };
        let mut cap = Capture::from_device(interface.as_str())
            .map_err(open_err)?
            .snaplen(snaplen)
            .buffer_size(buffer)
            .promisc(cfg.promiscuous)
            .immediate_mode(cfg.immediate)
            .timeout(timeout_ms)
            .precision(Precision::Micro)
            .open()
            .map_err(open_err)?
            .setnonblock()
            .map_err(open_err)?;
        if !cfg.filter.trim().is_empty() {
            cap.filter(&cfg.filter, true)
                .map_err(|source| LiveError::Filter {
                    interface: interface.clone(),
                    filter: cfg.filter.clone(),
                    source,
                })?;
        }
        if let Some(group) = cfg.fanout {
            join_fanout(&cap, group).map_err(|source| LiveError::Fanout {
                interface: interface.clone(),
                group,
                source,
            })?;
        }
        // DLT values equal LINKTYPE values for every link type a Linux
        // interface reports except raw IP (DLT 12), which the decoder knows.
        let link_type =
            u32::try_from(cap.get_datalink().0).unwrap_or(crate::capture::LINKTYPE_UNKNOWN);
        Ok(LiveCapture {
            cap,
            timeout_ms,
            drained: false,
            waited: Duration::ZERO,
            interface,
            link_type,
            last: [0; 3],
            totals: LiveStats::default(),
        })
    }

    /// The interface name.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// The interface's link type (pcap `LINKTYPE_*`).
    pub fn link_type(&self) -> u32 {
        self.link_type
    }

    /// The next packet, or [`Next::Timeout`] when none came within the read
    /// timeout (or a signal interrupted the wait). A call right after the
    /// ring ran empty may also say `Timeout` at once; the next one waits.
    pub fn next_packet(&mut self) -> Result<Next<'_>, LiveError> {
        if self.drained {
            let mut fd = libc::pollfd {
                fd: self.cap.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let t = std::time::Instant::now();
            // SAFETY: one valid pollfd, for the duration of the call.
            let rc = unsafe { libc::poll(&mut fd, 1, self.timeout_ms) };
            self.waited += t.elapsed();
            if rc <= 0 {
                // Nothing within the timeout, or EINTR (a signal): the
                // caller gets to look at its clock and its stop flag.
                return Ok(Next::Timeout);
            }
            self.drained = false;
        }
        match self.cap.next_packet() {
            Ok(p) => {
                let h = p.header;
                // time_t and suseconds_t are narrower than i64 on some targets.
                #[allow(clippy::useless_conversion)]
                let ts_us = i64::from(h.ts.tv_sec)
                    .saturating_mul(1_000_000)
                    .saturating_add(i64::from(h.ts.tv_usec));
                Ok(Next::Packet(RawPacket {
                    ts_us,
                    link_type: self.link_type,
                    orig_len: h.len.max(p.data.len() as u32),
                    data: p.data,
                }))
            }
            Err(pcap::Error::TimeoutExpired) => {
                self.drained = true;
                Ok(Next::Timeout)
            }
            Err(source) => Err(LiveError::Read {
                interface: self.interface.clone(),
                source,
            }),
        }
    }

    /// Time spent waiting for packets (an idle link) since the handle was
    /// opened.
    pub fn waited(&self) -> Duration {
        self.waited
    }

    /// Kernel and interface counters so far.
    pub fn stats(&mut self) -> Result<LiveStats, LiveError> {
        let s = self.cap.stats().map_err(|source| LiveError::Read {
            interface: self.interface.clone(),
            source,
        })?;
        let now = [s.received, s.dropped, s.if_dropped];
        let totals = [
            &mut self.totals.received,
            &mut self.totals.dropped,
            &mut self.totals.if_dropped,
        ];
        for ((t, last), v) in totals.into_iter().zip(&mut self.last).zip(now) {
            *t += u64::from(v.wrapping_sub(*last));
            *last = v;
        }
        Ok(self.totals)
    }
}

/// Joins AF_PACKET fanout group `group` with the flow hash.
#[cfg(target_os = "linux")]
fn join_fanout(cap: &Capture<Active>, group: u16) -> io::Result<()> {
    // No PACKET_FANOUT_FLAG_DEFRAG: it would hand over reassembled datagrams
    // instead of the packets on the wire. Non-first fragments carry no ports,
    // so they cannot join a flow wherever they land.
    let arg: u32 = u32::from(group) | (PACKET_FANOUT_HASH << 16);
    // SAFETY: the fd is the handle's open socket for the duration of the
    // call, and `arg` is a live u32 of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            cap.as_raw_fd(),
            libc::SOL_PACKET,
            PACKET_FANOUT,
            (&arg as *const u32).cast(),
            std::mem::size_of::<u32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn join_fanout(_cap: &Capture<Active>, _group: u16) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "AF_PACKET fanout exists on Linux only",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(interface: &str) -> LiveConfig {
        LiveConfig {
            interface: interface.into(),
            filter: String::new(),
            snaplen: 65535,
            buffer_bytes: 4 << 20,
            immediate: true,
            timeout: Duration::from_millis(50),
            promiscuous: false,
            fanout: None,
        }
    }

    #[test]
    fn missing_interface_is_a_clear_error() {
        let e = LiveCapture::open(&cfg("tapstream-no-such-if0")).unwrap_err();
        assert!(matches!(e, LiveError::Open { .. }), "{e}");
        assert!(e.to_string().contains("tapstream-no-such-if0"), "{e}");
    }

    #[test]
    fn settings_out_of_range_are_refused_before_opening() {
        let mut c = cfg("lo");
        c.snaplen = 0;
        let e = LiveCapture::open(&c).unwrap_err();
        assert!(
            matches!(
                e,
                LiveError::Setting {
                    name: "snaplen",
                    ..
                }
            ),
            "{e}"
        );
        let mut c = cfg("lo");
        c.timeout = Duration::ZERO;
        let e = LiveCapture::open(&c).unwrap_err();
        assert!(
            matches!(
                e,
                LiveError::Setting {
                    name: "timeout",
                    ..
                }
            ),
            "{e}"
        );
        let mut c = cfg("lo");
        c.buffer_bytes = u32::MAX;
        let e = LiveCapture::open(&c).unwrap_err();
        assert!(
            matches!(e, LiveError::Setting { name: "buffer", .. }),
            "{e}"
        );
    }

    /// Needs CAP_NET_RAW (CI runs as root); skipped otherwise.
    #[test]
    fn loopback_yields_packets_and_counts_with_a_filter_and_fanout() {
        let mut c = cfg("lo");
        c.filter = "udp and port 47999".into();
        c.fanout = Some(4711);
        let mut cap = match LiveCapture::open(&c) {
            Ok(cap) => cap,
            Err(LiveError::Open { source, .. }) => {
                eprintln!("skipping: cannot capture on lo here ({source})");
                return;
            }
            Err(e) => panic!("{e}"),
        };
        assert_eq!(cap.link_type(), 1, "Linux loopback is Ethernet-framed");
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..5 {
            sock.send_to(b"tapstream", "127.0.0.1:47999").unwrap();
        }
        // Other loopback traffic is filtered out; wait out a few timeouts.
        let mut seen = 0;
        let mut timeouts = 0;
        while seen < 5 && timeouts < 40 {
            match cap.next_packet().unwrap() {
                Next::Packet(p) => {
                    assert!(p.data.ends_with(b"tapstream"));
                    assert!(p.ts_us > 1_600_000_000_000_000);
                    assert_eq!(p.orig_len as usize, p.data.len());
                    seen += 1;
                }
                Next::Timeout => timeouts += 1,
            }
        }
        assert_eq!(seen, 5);
        let s = cap.stats().unwrap();
        assert!(s.received >= 5, "{s:?}");
        assert_eq!(s.dropped, 0);
    }

    #[test]
    fn a_bad_filter_names_itself() {
        let mut c = cfg("lo");
        c.filter = "port nonsense-port".into();
        match LiveCapture::open(&c) {
            Err(LiveError::Filter { filter, .. }) => assert_eq!(filter, "port nonsense-port"),
            Err(LiveError::Open { source, .. }) => {
                eprintln!("skipping: cannot capture on lo here ({source})")
            }
            other => panic!("{other:?}"),
        }
    }
}
