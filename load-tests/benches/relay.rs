//! Relay micro-benchmark: N concurrent G.711-like calls (172-byte RTP packets, 50 packets/s each
//! way) through N [`RelaySession`]s, for a few seconds.
//!
//! `cargo bench -p switchboard-load --bench relay` with knobs in the environment:
//! `RELAY_CALLS` (1000), `RELAY_SECONDS` (5), `RELAY_THREADS` (relay runtime workers, 1),
//! `RELAY_MODE` (`all`, or one of `plain`, `record`, `transcode`, `player`, `conference`,
//! `conference8`).
//!
//! Modes, each on a fresh runtime and fresh sessions:
//!
//! * `plain`: the pass-through relay with both legs set to PCMU (as a call sets them), the cost
//!   every call pays;
//! * `record`: the same traffic and formats with a stereo WAV recording running on every session
//!   (the pumps copy packets to the tap task, which runs two jitter buffers and decoders and
//!   writes 32 KB/s per call to files in the temp directory). When `plain` ran too (`all`), the
//!   summary prints the ratio of the two and the recording's own cost per call;
//! * `transcode`: leg A PCMU, leg B PCMA (the callee side sends PCMA): every packet goes through
//!   the transcoding path (jitter buffer, decode, encode, playout timer in the pump); the summary
//!   prints the ratio to `plain`;
//! * `player`: no generator; every session plays a looping 1 kHz PCMU clip into leg A, and the
//!   cost is per 20 ms packet the players sent (delivered to the sink).
//! * `conference` / `conference8`: both legs PCMU, the sessions in pairs in [`Room`]s of four
//!   participants (legs A and B of two sessions) mixing at 16 / 8 kHz; every leg's audio goes
//!   through the tap (jitter buffer, decode, resample to the room), the mix, and a live stream
//!   (resample, encode, pace). The cost is per participant per 20 ms tick, everything included
//!   (pumps, taps, rooms, streams); the room task's own share is printed apart. Not in `all`:
//!   use `RELAY_CALLS` ≈ 50–200 (the default 1000 calls would be 2000 participants).
//!
//! The generator is deliberately cheap so that the relay's cost can be read: all caller legs are
//! served by one socket and all callee legs by another (every session latches to those), a sender
//! thread paces the packets with `sendmmsg` in 2 ms slices, and two receiver threads drain with
//! `recvmmsg`. CPU is read per thread from `/proc/self/task/*/stat` (utime + stime): the relay
//! runtime's threads are named `relay-rt`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_media::codec::CodecKind;
use switchboard_media::conference::Room;
use switchboard_media::mix::MixMode;
use switchboard_media::signal::sine;
use switchboard_media::{Leg, LegFormat, Pcm, PortAllocator, RelayConfig, RelaySession};

const PAYLOAD: usize = 160;
const PACKET: usize = 12 + PAYLOAD;
const PPS_PER_DIRECTION: u64 = 50;
const SLICES_PER_TICK: usize = 10; // 20 ms tick = 10 slices of 2 ms

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Plain,
    Record,
    Transcode,
    Player,
    /// Rooms mixing at this rate.
    Conference(u32),
}

const PCMU: LegFormat = LegFormat {
    codec: CodecKind::Pcmu,
    payload_type: 0,
    dtmf_payload_type: None,
};

const PCMA: LegFormat = LegFormat {
    codec: CodecKind::Pcma,
    payload_type: 8,
    dtmf_payload_type: None,
};

/// What one mode measured.
#[derive(Clone, Copy, Debug)]
struct Measured {
    mode: Mode,
    calls: usize,
    /// Relay runtime CPU, in cores (CPU seconds per second).
    cores: f64,
    /// Relay runtime CPU per packet the relay forwarded, µs.
    us_per_packet: f64,
}

fn main() {
    let calls = env("RELAY_CALLS", 1000) as usize;
    let seconds = env("RELAY_SECONDS", 5);
    let threads = env("RELAY_THREADS", 1) as usize;
    raise_nofile(calls as u64 * 4 + 256);
    let modes = match std::env::var("RELAY_MODE").as_deref() {
        Ok("plain") => vec![Mode::Plain],
        Ok("record") => vec![Mode::Record],
        Ok("transcode") => vec![Mode::Transcode],
        Ok("player") => vec![Mode::Player],
        Ok("conference") => vec![Mode::Conference(16000)],
        Ok("conference8") => vec![Mode::Conference(8000)],
        _ => vec![Mode::Plain, Mode::Record, Mode::Transcode, Mode::Player],
    };
    let mut results = Vec::new();
    for mode in modes {
        results.push(run(mode, calls, seconds, threads));
        println!();
    }
    summary(&results);
}

/// The ratios to the plain relay, for the modes that ran.
fn summary(results: &[Measured]) {
    let Some(plain) = results.iter().find(|m| m.mode == Mode::Plain) else {
        return;
    };
    println!(
        "summary ({} calls, relay CPU per call and per packet relayed):",
        plain.calls
    );
    let per_call = |m: &Measured| 100.0 * m.cores / m.calls as f64;
    println!(
        "  plain (no tap)     : {:.4} % of a core per call, {:.2} µs per packet",
        per_call(plain),
        plain.us_per_packet
    );
    for m in results {
        let what = match m.mode {
            Mode::Record => "with recording tap",
            Mode::Transcode => "transcoding PCMU↔PCMA",
            _ => continue,
        };
        let extra = per_call(m) - per_call(plain);
        println!(
            "  {what:<19}: {:.4} % of a core per call, {:.2} µs per packet = {:.2}× plain; \
             its own cost {:.4} % of a core per call ({:.1} µs CPU per 20 ms)",
            per_call(m),
            m.us_per_packet,
            m.us_per_packet / plain.us_per_packet,
            extra,
            extra / 100.0 * 20_000.0
        );
    }
}

fn run(mode: Mode, calls: usize, seconds: u64, threads: usize) -> Measured {
    let ticks_hz = 1000 / 20;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("relay-rt")
        .enable_all()
        .build()
        .expect("relay runtime");
    let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let ports = PortAllocator::new(local, 22000, 29999).expect("port range");

    let rss_before = rss_kib();
    let sessions: Vec<Arc<RelaySession>> = (0..calls)
        .map(|_| {
            Arc::new(
                RelaySession::start(rt.handle(), &ports, RelayConfig::default()).expect("session"),
            )
        })
        .collect();
    let rss_after = rss_kib();

    // The two "phones": x plays every caller, y every callee.
    let x = sink();
    let y = sink();
    for s in &sessions {
        s.set_remote(Leg::A, Some(x.local_addr().unwrap()));
        s.set_remote(Leg::B, Some(y.local_addr().unwrap()));
    }
    let to_a: Vec<SocketAddr> = sessions.iter().map(|s| s.local_addr(Leg::A)).collect();
    let to_b: Vec<SocketAddr> = sessions.iter().map(|s| s.local_addr(Leg::B)).collect();
    let rec_dir = std::env::temp_dir().join(format!("relay-bench-{}", std::process::id()));
    let mut rooms = Vec::new();
    match mode {
        Mode::Plain => {
            for s in &sessions {
                s.set_format(Leg::A, Some(PCMU));
                s.set_format(Leg::B, Some(PCMU));
            }
        }
        Mode::Transcode => {
            for s in &sessions {
                s.set_format(Leg::A, Some(PCMU));
                s.set_format(Leg::B, Some(PCMA));
            }
        }
        Mode::Conference(rate) => {
            for pair in sessions.chunks(2) {
                let room = Room::start_with_rate(rt.handle(), rate).expect("room rate");
                for s in pair {
                    for leg in [Leg::A, Leg::B] {
                        s.set_format(leg, Some(PCMU));
                        room.join(s.clone(), leg, MixMode::Normal).expect("join");
                    }
                }
                rooms.push(room);
            }
        }
        Mode::Record => {
            for (i, s) in sessions.iter().enumerate() {
                s.set_format(Leg::A, Some(PCMU));
                s.set_format(Leg::B, Some(PCMU));
                s.start_recording(&rec_dir.join(format!("{i}.wav")))
                    .expect("recording");
            }
        }
        Mode::Player => {
            let clip = Pcm::new(8000, sine(1000.0, -10.0, 8000, 8000));
            for (i, s) in sessions.iter().enumerate() {
                s.set_format(Leg::A, Some(PCMU));
                s.play(Leg::A, clip.clone(), 0, i as u64);
            }
        }
    }

    let stop = Arc::new(AtomicBool::new(false));
    let received = [Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0))];
    let receivers: Vec<_> = [(x.try_clone().unwrap(), 0), (y.try_clone().unwrap(), 1)]
        .into_iter()
        .map(|(sock, i)| {
            let (stop, count) = (stop.clone(), received[i].clone());
            std::thread::Builder::new()
                .name("gen-recv".into())
                .spawn(move || drain(&sock, &stop, &count))
                .unwrap()
        })
        .collect();

    let sent = Arc::new(AtomicU64::new(0));
    let sending = Arc::new(AtomicBool::new(mode != Mode::Player));
    let sender = {
        let (sent, sending) = (sent.clone(), sending.clone());
        let (x, y) = (x.try_clone().unwrap(), y.try_clone().unwrap());
        // The callee side speaks PCMA when its leg is PCMA.
        let y_pt = if mode == Mode::Transcode { 8 } else { 0 };
        std::thread::Builder::new()
            .name("gen-send".into())
            .spawn(move || generate(&x, &y, y_pt, &to_a, &to_b, &sending, &sent))
            .unwrap()
    };

    // Warm up 1 s (latching, first packets), then measure.
    std::thread::sleep(Duration::from_secs(1));
    let (cpu0, t0) = (cpu_by_thread(), Instant::now());
    let (rx0, tx0) = (total(&received), sent.load(Relaxed));
    let fwd0: u64 = forwarded(&sessions);
    std::thread::sleep(Duration::from_secs(seconds));
    let (cpu1, wall) = (cpu_by_thread(), t0.elapsed().as_secs_f64());
    let (rx1, tx1) = (total(&received), sent.load(Relaxed));
    let fwd1: u64 = forwarded(&sessions);

    sending.store(false, Relaxed);
    sender.join().unwrap();
    std::thread::sleep(Duration::from_millis(500)); // drain
    stop.store(true, Relaxed);
    for r in receivers {
        r.join().unwrap();
    }

    let (mut lost, mut dropped, mut foreign, mut accepted) = (0, 0, 0, 0);
    for s in &sessions {
        let st = s.stats();
        for d in [st.a_to_b, st.b_to_a] {
            lost += d.lost;
            dropped += d.dropped;
            foreign += d.foreign;
            accepted += d.packets;
        }
    }
    let total_sent = sent.load(Relaxed);
    let total_rx = total(&received);

    let hz = clock_ticks();
    let secs = |name: &str, cpu: &[(String, u64)]| {
        cpu.iter()
            .filter(|(n, _)| name.is_empty() || n == name)
            .map(|(_, t)| *t)
            .sum::<u64>() as f64
            / hz
    };
    let relay_cpu = secs("relay-rt", &cpu1) - secs("relay-rt", &cpu0);
    let gen_cpu = (secs("gen-send", &cpu1) - secs("gen-send", &cpu0))
        + (secs("gen-recv", &cpu1) - secs("gen-recv", &cpu0));
    let proc_cpu = secs("", &cpu1) - secs("", &cpu0);
    let offered = calls as u64 * 2 * PPS_PER_DIRECTION;

    println!(
        "relay benchmark ({mode:?}): {calls} calls, {threads} relay thread(s), {seconds} s measured"
    );
    println!(
        "  offered into relay : {offered} pkt/s ({} per call each way, {PACKET}-byte packets)",
        PPS_PER_DIRECTION
    );
    println!(
        "  generator sent     : {:.0} pkt/s",
        (tx1 - tx0) as f64 / wall
    );
    println!(
        "  relay forwarded    : {:.0} pkt/s",
        (fwd1 - fwd0) as f64 / wall
    );
    println!(
        "  delivered to phones: {:.0} pkt/s",
        (rx1 - rx0) as f64 / wall
    );
    println!(
        "  whole run          : sent {total_sent}, relay accepted {accepted}, delivered {total_rx}, \
         end-to-end loss {} ({:.4} %)",
        total_sent.saturating_sub(total_rx),
        100.0 * total_sent.saturating_sub(total_rx) as f64 / total_sent.max(1) as f64
    );
    println!(
        "  relay counters     : rtp seq loss {lost}, dropped {dropped}, foreign {foreign} (ticks/s {ticks_hz})"
    );
    if let Mode::Conference(rate) = mode {
        let participants = 2.0 * calls as f64;
        let ticks = wall * 50.0;
        let room: (f64, f64) = rooms.iter().map(|r| r.stats()).fold((0.0, 0.0), |acc, s| {
            (
                acc.0 + s.busy.as_secs_f64(),
                acc.1 + s.participant_ticks as f64,
            )
        });
        println!(
            "  conference         : {} rooms of 4 at {rate} Hz, {participants} participants",
            rooms.len()
        );
        println!(
            "  conference CPU     : {:.1} % of a core = {:.2} µs per participant per 20 ms tick \
             (pumps + taps + rooms + streams); room tasks alone {:.2} µs",
            100.0 * relay_cpu / wall,
            1e6 * relay_cpu / (participants * ticks),
            1e6 * room.0 / room.1.max(1.0)
        );
    } else if mode == Mode::Player {
        println!(
            "  relay CPU          : {:.1} % of a core = {:.4} % per call (players only)",
            100.0 * relay_cpu / wall,
            100.0 * relay_cpu / wall / calls as f64
        );
    } else {
        println!(
            "  relay CPU          : {:.1} % of a core = {:.4} % per call = {:.2} µs per packet relayed",
            100.0 * relay_cpu / wall,
            100.0 * relay_cpu / wall / calls as f64,
            1e6 * relay_cpu / (fwd1 - fwd0).max(1) as f64
        );
    }
    if mode == Mode::Player {
        println!(
            "  player CPU         : {:.2} µs per 20 ms packet played ({:.0} packets/s delivered)",
            1e6 * relay_cpu / (rx1 - rx0).max(1) as f64,
            (rx1 - rx0) as f64 / wall
        );
    }
    println!(
        "  generator CPU      : {:.1} % of a core; whole process {:.1} % ({:.4} % per call)",
        100.0 * gen_cpu / wall,
        100.0 * proc_cpu / wall,
        100.0 * proc_cpu / wall / calls as f64
    );
    println!(
        "  memory             : {:.1} KiB RSS per session ({} KiB for {calls})",
        (rss_after.saturating_sub(rss_before)) as f64 / calls as f64,
        rss_after.saturating_sub(rss_before)
    );
    if mode == Mode::Record {
        let infos = rt.block_on(async {
            let mut n = 0;
            for s in &sessions {
                n += usize::from(s.stop_recording().await.is_some());
            }
            n
        });
        println!("  recordings         : {infos} finished");
        let _ = std::fs::remove_dir_all(&rec_dir);
    }
    drop(rooms);
    drop(sessions);
    rt.shutdown_timeout(Duration::from_secs(2));
    Measured {
        mode,
        calls,
        cores: relay_cpu / wall,
        us_per_packet: 1e6 * relay_cpu / (fwd1 - fwd0).max(1) as f64,
    }
}

fn forwarded(sessions: &[Arc<RelaySession>]) -> u64 {
    sessions
        .iter()
        .map(|s| {
            let st = s.stats();
            st.a_to_b.forwarded + st.b_to_a.forwarded
        })
        .sum()
}

fn total(c: &[Arc<AtomicU64>; 2]) -> u64 {
    c[0].load(Relaxed) + c[1].load(Relaxed)
}

fn sink() -> UdpSocket {
    let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let r = socket2::SockRef::from(&s);
    r.set_recv_buffer_size(4 << 20).unwrap();
    r.set_send_buffer_size(4 << 20).unwrap();
    r.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    s
}

/// Paces 50 packets/s per call and direction in 2 ms slices with sendmmsg; `x` sends PCMU (PT 0)
/// to the A legs, `y` payload type `y_pt` to the B legs (160 zero bytes: valid G.711).
fn generate(
    x: &UdpSocket,
    y: &UdpSocket,
    y_pt: u8,
    to_a: &[SocketAddr],
    to_b: &[SocketAddr],
    sending: &AtomicBool,
    sent: &AtomicU64,
) {
    let n = to_a.len();
    let mut packets: Vec<[u8; PACKET]> = (0..2 * n)
        .map(|i| {
            let mut p = [0u8; PACKET];
            p[0] = 0x80;
            if i >= n {
                p[1] = y_pt;
            }
            p[8..12].copy_from_slice(&(i as u32).to_be_bytes());
            p
        })
        .collect();
    let dests: Vec<libc::sockaddr_in> = to_a.iter().chain(to_b).map(sockaddr).collect();
    let start = Instant::now();
    let mut seq: u16 = 0;
    let mut slice_no: u64 = 0;
    while sending.load(Relaxed) {
        let slice = (slice_no as usize) % SLICES_PER_TICK;
        if slice == 0 {
            seq = seq.wrapping_add(1);
        }
        let lo = n * slice / SLICES_PER_TICK;
        let hi = n * (slice + 1) / SLICES_PER_TICK;
        for (sock, offset) in [(x, 0), (y, n)] {
            let idx: Vec<usize> = (lo + offset..hi + offset).collect();
            for i in &idx {
                packets[*i][2..4].copy_from_slice(&seq.to_be_bytes());
                let ts = u32::from(seq) * 160;
                packets[*i][4..8].copy_from_slice(&ts.to_be_bytes());
            }
            for chunk in idx.chunks(64) {
                sent.fetch_add(sendmmsg(sock, &packets, &dests, chunk), Relaxed);
            }
        }
        slice_no += 1;
        let next = start + Duration::from_micros(2000 * slice_no);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
}

fn sockaddr(a: &SocketAddr) -> libc::sockaddr_in {
    let SocketAddr::V4(v4) = a else {
        panic!("IPv4 only")
    };
    sockaddr_v4(v4)
}

fn sockaddr_v4(a: &SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(a.ip().octets()),
        },
        sin_zero: [0; 8],
    }
}

fn sendmmsg(
    sock: &UdpSocket,
    packets: &[[u8; PACKET]],
    dests: &[libc::sockaddr_in],
    idx: &[usize],
) -> u64 {
    let mut iovs: Vec<libc::iovec> = idx
        .iter()
        .map(|&i| libc::iovec {
            iov_base: packets[i].as_ptr() as *mut libc::c_void,
            iov_len: PACKET,
        })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = idx
        .iter()
        .zip(iovs.iter_mut())
        .map(|(&i, iov)| {
            // SAFETY: mmsghdr is plain old data; all-zero is a valid value.
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_name = &dests[i] as *const _ as *mut libc::c_void;
            m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect();
    let mut done = 0usize;
    while done < msgs.len() {
        // SAFETY: msgs[done..] point at live iovecs, packet buffers and sockaddrs.
        let r = unsafe {
            libc::sendmmsg(
                sock.as_raw_fd(),
                msgs[done..].as_mut_ptr(),
                (msgs.len() - done) as u32,
                0,
            )
        };
        if r <= 0 {
            break;
        }
        done += r as usize;
    }
    done as u64
}

fn drain(sock: &UdpSocket, stop: &AtomicBool, count: &AtomicU64) {
    const BATCH: usize = 64;
    let mut bufs = vec![[0u8; 2048]; BATCH];
    while !stop.load(Relaxed) {
        let mut iovs: Vec<libc::iovec> = bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr() as *mut libc::c_void,
                iov_len: b.len(),
            })
            .collect();
        let mut msgs: Vec<libc::mmsghdr> = iovs
            .iter_mut()
            .map(|iov| {
                // SAFETY: plain old data.
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                m.msg_hdr.msg_iov = iov;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        // SAFETY: the buffers outlive the call. Blocking with SO_RCVTIMEO; MSG_WAITFORONE returns
        // as soon as one datagram is there.
        let r = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                msgs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if r > 0 {
            count.fetch_add(r as u64, Relaxed);
        }
    }
}

/// (thread name, utime + stime in clock ticks) for every thread of this process.
fn cpu_by_thread() -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for e in dir.flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_string();
        let f: Vec<&str> = stat[close + 2..].split(' ').collect();
        // After the comm: state is field 3, utime 14, stime 15 (1-based) → indexes 11, 12.
        let t = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        out.push((name, t(11) + t(12)));
    }
    out
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn raise_nofile(want: u64) {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: r is a valid rlimit to fill / read.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < want {
            r.rlim_cur = want.min(r.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}
