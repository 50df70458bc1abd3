//! Reading SIPp's output and per-process CPU time.
//!
//! SIPp 3.6 writes `-trace_stat` files as `;`-separated CSV with one header line and one line
//! per `-fd` period; the last line carries the cumulative `(C)` counters of the whole run.
//! `-trace_rtt` writes `<scenario>_<pid>_rtt.csv` with one `Date_ms;response_time_ms;rtd_no`
//! line per measured response (1 ms resolution).
//!
//! Also: per-process CPU time, memory and process trees from `/proc` (for the server under
//! test), whether a UDP port is bound yet, and the RTP flows of a libpcap capture
//! (`dumpcap -P`), which `bench-calls` uses to count the media packets SIPp sends and gets back.

use std::fmt;
use std::path::Path;

/// The cumulative counters of one SIPp run, from the last line of its `-trace_stat` file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StatSummary {
    /// `SuccessfulCall(C)`.
    pub successful: u64,
    /// `FailedCall(C)`.
    pub failed: u64,
    /// `Retransmissions(C)`.
    pub retransmissions: u64,
    /// Seconds from `StartTime` to `CurrentTime` of the last line (µs precision, unlike
    /// `ElapsedTime(C)`, which SIPp rounds to the second).
    pub elapsed_s: f64,
}

/// Why a SIPp file could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormatError(pub String);

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FormatError {}

/// Parses a `-trace_stat` CSV and returns the cumulative counters of its last line.
pub fn parse_stat_csv(text: &str) -> Result<StatSummary, FormatError> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines
        .next()
        .ok_or_else(|| err("empty stat file"))?
        .split(';')
        .collect();
    let last = lines
        .next_back()
        .ok_or_else(|| err("stat file has no data line"))?;
    let values: Vec<&str> = last.split(';').collect();
    let field = |name: &str| -> Result<&str, FormatError> {
        let i = header
            .iter()
            .position(|h| h.trim() == name)
            .ok_or_else(|| err(format!("no column {name}")))?;
        values
            .get(i)
            .map(|v| v.trim())
            .ok_or_else(|| err(format!("short data line: no {name}")))
    };
    let count = |name: &str| -> Result<u64, FormatError> {
        let v = field(name)?;
        v.parse()
            .map_err(|_| err(format!("{name} is not a count: {v:?}")))
    };
    let start = epoch_of(field("StartTime")?)?;
    let now = epoch_of(field("CurrentTime")?)?;
    Ok(StatSummary {
        successful: count("SuccessfulCall(C)")?,
        failed: count("FailedCall(C)")?,
        retransmissions: count("Retransmissions(C)")?,
        elapsed_s: (now - start).max(0.0),
    })
}

/// SIPp time fields read `2026-11-24<TAB>10:25:33.633301<TAB>1795515933.633301`: the last
/// whitespace-separated token is the Unix time in seconds.
fn epoch_of(field: &str) -> Result<f64, FormatError> {
    field
        .split_whitespace()
        .next_back()
        .and_then(|t| t.parse::<f64>().ok())
        .ok_or_else(|| err(format!("not a SIPp time: {field:?}")))
}

/// One line of a `-trace_rtt` file.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RttSample {
    /// When the response arrived, in ms since SIPp started (`Date_ms`).
    pub at_ms: f64,
    /// The response time in ms (`response_time_ms`).
    pub rtt_ms: f64,
}

/// Parses a `-trace_rtt` CSV (header line skipped).
pub fn parse_rtt_csv(text: &str) -> Result<Vec<RttSample>, FormatError> {
    let mut out = Vec::new();
    for line in text.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let mut cols = line.split(';').map(str::trim);
        let (Some(at), Some(rtt)) = (cols.next(), cols.next()) else {
            return Err(err(format!("short rtt line: {line:?}")));
        };
        let num = |v: &str| {
            v.parse::<f64>()
                .map_err(|_| err(format!("bad rtt line: {line:?}")))
        };
        out.push(RttSample {
            at_ms: num(at)?,
            rtt_ms: num(rtt)?,
        });
    }
    Ok(out)
}

/// Answers per second over the window in which responses arrived (first to last response,
/// plus one interval of the offered `rate`), which leaves out SIPp's start-up and shutdown.
/// `None` with fewer than two samples.
pub fn answered_per_second(samples: &[RttSample], rate: f64) -> Option<f64> {
    if samples.len() < 2 {
        return None;
    }
    let first = samples
        .iter()
        .map(|s| s.at_ms)
        .fold(f64::INFINITY, f64::min);
    let last = samples
        .iter()
        .map(|s| s.at_ms)
        .fold(f64::NEG_INFINITY, f64::max);
    let window_s = (last - first) / 1000.0 + 1.0 / rate.max(1.0);
    Some(samples.len() as f64 / window_s)
}

/// The `p`-th percentile (0–100, nearest rank) of an ascending slice; 0 when it is empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// CPU time (user + system, all threads) that process `pid` has used so far, in clock ticks,
/// from `/proc/PID/stat`. In this VM `/proc/stat` misses timer-driven CPU; per-process
/// counters do not.
pub fn proc_cpu_ticks(pid: u32) -> std::io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_proc_stat_ticks(&stat)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "bad /proc/PID/stat"))
}

/// utime + stime (fields 14 and 15) of a `/proc/PID/stat` line. The command name (field 2) is
/// in parentheses and may hold spaces, so fields are counted after the last `)`.
pub fn parse_proc_stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state): utime (14) is fields[11], stime (15) fields[12].
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second (`getconf CLK_TCK`), 100 when it cannot be asked.
pub fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// A `kB` field (`VmRSS`, `VmHWM`, …) of `/proc/PID/status`, in KiB.
pub fn proc_status_kib(pid: u32, field: &str) -> std::io::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    kib_field(&text, field).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("no {field} in /proc/{pid}/status"),
        )
    })
}

/// Proportional set size of process `pid` in KiB (`Pss` of `/proc/PID/smaps_rollup`): pages
/// shared by several processes (Kamailio's shared memory) are divided among them, so that the
/// Pss of a process tree adds up, unlike its RSS.
pub fn proc_pss_kib(pid: u32) -> std::io::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
    kib_field(&text, "Pss").ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("no Pss in /proc/{pid}/smaps_rollup"),
        )
    })
}

/// The value of a `Name:   123 kB` line.
fn kib_field(text: &str, field: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (name, rest) = l.split_once(':')?;
        if name.trim() != field {
            return None;
        }
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// The command name (`/proc/PID/comm`) of process `pid`.
pub fn proc_comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// `pid` and all its descendants (children, grandchildren, …), `pid` first; empty when `pid`
/// does not exist. Read from the parent pid (field 4) of every `/proc/N/stat`.
pub fn process_tree(pid: u32) -> Vec<u32> {
    if !Path::new(&format!("/proc/{pid}")).exists() {
        return Vec::new();
    }
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(n) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Ok(stat) = std::fs::read_to_string(format!("/proc/{n}/stat")) {
                if let Some(ppid) = parse_proc_stat_ppid(&stat) {
                    parents.push((n, ppid));
                }
            }
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let p = tree[i];
        tree.extend(parents.iter().filter(|&&(_, pp)| pp == p).map(|&(c, _)| c));
        i += 1;
    }
    tree
}

/// The parent pid (field 4) of a `/proc/PID/stat` line.
pub fn parse_proc_stat_ppid(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// True when some UDP socket is bound to `port` on any IPv4 or IPv6 address (`/proc/net/udp`,
/// `/proc/net/udp6`): a server has started listening.
pub fn udp_port_bound(port: u16) -> bool {
    ["/proc/net/udp", "/proc/net/udp6"].iter().any(|f| {
        std::fs::read_to_string(f)
            .map(|t| proc_net_udp_has_port(&t, port))
            .unwrap_or(false)
    })
}

/// True when a `/proc/net/udp` table lists a socket whose local port is `port`.
pub fn proc_net_udp_has_port(table: &str, port: u16) -> bool {
    table.lines().skip(1).any(|l| {
        l.split_whitespace()
            .nth(1)
            .and_then(|local| local.rsplit_once(':'))
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
            == Some(port)
    })
}

/// One RTP flow of a capture: the packets from one UDP source port to one destination port
/// with one SSRC.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RtpFlow {
    pub src_port: u16,
    pub dst_port: u16,
    pub ssrc: u32,
    /// Packets captured.
    pub packets: u64,
    /// Extended (wrap-corrected) lowest and highest sequence numbers seen.
    pub first_seq: i64,
    pub last_seq: i64,
}

impl RtpFlow {
    /// Packets missing between the first and the last one seen (RFC 3550 "cumulative lost":
    /// duplicates can make it negative, clamped to 0).
    pub fn lost(&self) -> u64 {
        (self.last_seq - self.first_seq + 1 - self.packets as i64).max(0) as u64
    }
}

/// Reads a libpcap capture (`dumpcap -P`, `tcpdump -w`; not pcapng) of IPv4/UDP packets and
/// returns its RTP flows (version-2 packets of at least 12 bytes), sorted by ports and SSRC.
/// Snap length 64 is enough (only the headers are read). Link types: Ethernet (what Linux
/// gives for `lo`), Linux cooked (v1, v2), BSD loopback and raw IP.
pub fn parse_pcap_rtp(data: &[u8]) -> Result<Vec<RtpFlow>, FormatError> {
    if data.len() < 24 {
        return Err(err("pcap file shorter than its header"));
    }
    let magic = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
    let little = match magic {
        0xa1b2_c3d4 | 0xa1b2_3c4d => true,
        0xd4c3_b2a1 | 0x4d3c_b2a1 => false,
        0x0a0d_0d0a => return Err(err("pcapng file: capture with `dumpcap -P`")),
        _ => return Err(err(format!("not a pcap file (magic {magic:#x})"))),
    };
    let u32_at = |b: &[u8], i: usize| {
        let v = [b[i], b[i + 1], b[i + 2], b[i + 3]];
        if little {
            u32::from_le_bytes(v)
        } else {
            u32::from_be_bytes(v)
        }
    };
    let linktype = u32_at(data, 20);
    let mut flows: std::collections::HashMap<(u16, u16, u32), (RtpFlow, i64)> =
        std::collections::HashMap::new();
    let mut at = 24;
    while at + 16 <= data.len() {
        let incl = u32_at(data, at + 8) as usize;
        let start = at + 16;
        let end = start
            .checked_add(incl)
            .filter(|&e| e <= data.len())
            .ok_or_else(|| err("truncated pcap record"))?;
        at = end;
        let frame = &data[start..end];
        let ip = match linktype {
            1 if frame.len() >= 14 && frame[12..14] == [0x08, 0x00] => &frame[14..],
            113 if frame.len() >= 16 && frame[14..16] == [0x08, 0x00] => &frame[16..],
            276 if frame.len() >= 20 && frame[0..2] == [0x08, 0x00] => &frame[20..],
            0 if frame.len() >= 4 => &frame[4..],
            12 | 101 => frame,
            _ => continue,
        };
        if ip.len() < 20 || ip[0] >> 4 != 4 || ip[9] != 17 {
            continue;
        }
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let Some(udp) = ip.get(ihl..) else { continue };
        if udp.len() < 8 + 12 || udp[8] >> 6 != 2 {
            continue;
        }
        let src_port = u16::from_be_bytes([udp[0], udp[1]]);
        let dst_port = u16::from_be_bytes([udp[2], udp[3]]);
        let seq = u16::from_be_bytes([udp[10], udp[11]]);
        let ssrc = u32::from_be_bytes([udp[16], udp[17], udp[18], udp[19]]);
        let (flow, ext) = flows.entry((src_port, dst_port, ssrc)).or_insert_with(|| {
            (
                RtpFlow {
                    src_port,
                    dst_port,
                    ssrc,
                    packets: 0,
                    first_seq: i64::from(seq),
                    last_seq: i64::from(seq),
                },
                i64::from(seq),
            )
        });
        // Extend the 16-bit sequence number from the previous packet of the flow.
        let delta = i64::from(seq.wrapping_sub(*ext as u16) as i16);
        *ext += delta;
        flow.packets += 1;
        flow.first_seq = flow.first_seq.min(*ext);
        flow.last_seq = flow.last_seq.max(*ext);
    }
    let mut out: Vec<RtpFlow> = flows.into_values().map(|(f, _)| f).collect();
    out.sort_by_key(|f| (f.src_port, f.dst_port, f.ssrc));
    Ok(out)
}

fn err(msg: impl Into<String>) -> FormatError {
    FormatError(msg.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_csv_last_line_counts() {
        let text = "StartTime;CurrentTime;ElapsedTime(C);SuccessfulCall(C);FailedCall(C);Retransmissions(C);\n\
            2026-11-24\t10:25:50.051121\t1795515950.051121;2026-11-24\t10:25:51.0\t1795515951.0;00:00:01;100;0;0;\n\
            2026-11-24\t10:25:50.051121\t1795515950.051121;2026-11-24\t10:26:00.192669\t1795515960.192669;00:00:10;200000;3;7;\n";
        let s = parse_stat_csv(text).unwrap();
        assert_eq!((s.successful, s.failed, s.retransmissions), (200000, 3, 7));
        assert!((s.elapsed_s - 10.141548).abs() < 1e-3, "{}", s.elapsed_s);
    }

    #[test]
    fn stat_csv_errors() {
        assert!(parse_stat_csv("").is_err());
        assert!(parse_stat_csv("SuccessfulCall(C)\n").is_err());
        assert!(parse_stat_csv("StartTime;CurrentTime\n1;2\n").is_err());
    }

    #[test]
    fn rtt_csv_and_percentiles() {
        let text = "Date_ms;response_time_ms;rtd_no\n4.001;0;1\n504.001;4;1\n1004.001;1.5;1\n";
        let samples = parse_rtt_csv(text).unwrap();
        assert_eq!(
            samples[1],
            RttSample {
                at_ms: 504.001,
                rtt_ms: 4.0
            }
        );
        let mut v: Vec<f64> = samples.iter().map(|s| s.rtt_ms).collect();
        v.sort_by(f64::total_cmp);
        assert_eq!(v, vec![0.0, 1.5, 4.0]);
        assert_eq!(percentile(&v, 50.0), 1.5);
        assert_eq!(percentile(&v, 99.0), 4.0);
        assert_eq!(percentile(&v, 0.0), 0.0);
        assert_eq!(percentile(&[], 99.0), 0.0);
        // Three answers over 1 s plus one 2 Hz interval.
        assert_eq!(answered_per_second(&samples, 2.0), Some(2.0));
        assert_eq!(answered_per_second(&samples[..1], 2.0), None);
        assert!(parse_rtt_csv("h\n1;x;1\n").is_err());
        assert!(parse_rtt_csv("h\n1\n").is_err());
    }

    #[test]
    fn proc_stat_fields() {
        let line =
            "7203 (sipp (uas) x) S 1 7203 7203 0 -1 4194560 1000 0 0 0 120 34 0 0 20 0 1 0 1 2 3";
        assert_eq!(parse_proc_stat_ticks(line), Some(154));
        assert_eq!(parse_proc_stat_ticks("garbage"), None);
        let me = proc_cpu_ticks(std::process::id()).unwrap();
        assert!(me < u64::MAX);
    }

    #[test]
    fn proc_status_and_tree() {
        let text = "Name:\tx\nVmPeak:\t  9000 kB\nVmRSS:\t  1234 kB\n";
        assert_eq!(kib_field(text, "VmRSS"), Some(1234));
        assert_eq!(kib_field(text, "VmHWM"), None);
        let me = std::process::id();
        assert!(proc_status_kib(me, "VmRSS").unwrap() > 0);
        assert_eq!(process_tree(me)[0], me);
        assert!(process_tree(u32::MAX).is_empty());
        let line = "7203 (sipp (uas) x) S 77 7203 7203 0 -1 4194560";
        assert_eq!(parse_proc_stat_ppid(line), Some(77));
    }

    #[test]
    fn proc_net_udp_ports() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
            \x20 1: 0100007F:3E80 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 0000000000000000 0\n";
        assert!(proc_net_udp_has_port(table, 16000));
        assert!(!proc_net_udp_has_port(table, 16001));
    }

    /// A pcap file (Ethernet link type, little endian) with the given UDP payloads.
    fn pcap(packets: &[(u16, u16, Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::new();
        for v in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 64, 1] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for (sport, dport, payload) in packets {
            let mut frame = vec![0u8; 12];
            frame.extend_from_slice(&[0x08, 0x00]);
            let total = 20 + 8 + payload.len();
            let mut ip = vec![0x45, 0, (total >> 8) as u8, total as u8, 0, 0, 0, 0, 64, 17];
            ip.extend_from_slice(&[0, 0, 127, 0, 0, 1, 127, 0, 0, 1]);
            frame.extend_from_slice(&ip);
            frame.extend_from_slice(&sport.to_be_bytes());
            frame.extend_from_slice(&dport.to_be_bytes());
            frame.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
            frame.extend_from_slice(&[0, 0]);
            frame.extend_from_slice(payload);
            let snap = frame.len().min(64);
            for v in [0u32, 0, snap as u32, frame.len() as u32] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(&frame[..snap]);
        }
        out
    }

    fn rtp(seq: u16, ssrc: u32) -> Vec<u8> {
        let mut p = vec![0x80, 8];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&[0; 4]);
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&[0xd5; 160]);
        p
    }

    #[test]
    fn pcap_rtp_flows_and_loss() {
        let mut packets = Vec::new();
        // Flow A: 65534, 65535, 0, (1 lost), 2: wraps, one lost.
        for seq in [65534u16, 65535, 0, 2] {
            packets.push((16100, 40000, rtp(seq, 0xCA11_0000)));
        }
        // Flow B: 3 packets, none lost; a non-RTP datagram is ignored.
        for seq in [10u16, 11, 12] {
            packets.push((40002, 16200, rtp(seq, 7)));
        }
        packets.push((40002, 16200, b"hello, not rtp at all".to_vec()));
        let flows = parse_pcap_rtp(&pcap(&packets)).unwrap();
        assert_eq!(flows.len(), 2);
        assert_eq!(
            (flows[0].src_port, flows[0].packets, flows[0].lost()),
            (16100, 4, 1)
        );
        assert_eq!(flows[0].ssrc, 0xCA11_0000);
        assert_eq!(
            (flows[1].dst_port, flows[1].packets, flows[1].lost()),
            (16200, 3, 0)
        );
        assert!(parse_pcap_rtp(b"short").is_err());
        assert!(parse_pcap_rtp(&[0x0a, 0x0d, 0x0d, 0x0a].repeat(8)).is_err());
        let mut truncated = pcap(&packets[..1]);
        truncated.pop();
        assert!(parse_pcap_rtp(&truncated).is_err());
    }
}
