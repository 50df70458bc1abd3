//! Transcoding benchmark (issue 6): µs of CPU per 20 ms frame for every ordered pair of PCMU,
//! PCMA, G.722, Opus, L16/8k and L16/16k through `switchboard_media::transcode::Transcoder`
//! (decode → resample → re-frame → encode; the diagonal is pass-through), as a table and a
//! matrix; the Opus ↔ PCMU pair also through `JitterTranscoder` (the jitter buffer the relay
//! puts in front of the transcoder); and the calls one core could transcode for Opus ↔ PCMU
//! (both directions; target ≥ 250 per core).
//!
//! Run with `cargo bench -p switchboard-load --bench transcode` (or `-- --seconds N --runs N`).
//! Each pair transcodes `--seconds` (default 10) of a speech-like signal (a 150 Hz voice with
//! harmonics to 3.4 kHz, a slow vibrato and -40 dBFS noise), `--runs` times (default 7), on one
//! thread. The table gives the median run in CPU time of the thread (other load on the machine
//! inflates wall time, shown too, far more than CPU time). The signal is pre-encoded, so only
//! the transcoder is timed.
//!
//! Opus: 20 ms frames, FEC on, libopus's default complexity (9); the Opus stream comes from a
//! 48 kHz encoder, as a WebRTC peer's would. `Transcoder::new` runs the Opus side at the PCMU
//! side's 8 kHz (no resampler); the `exact` rows force Opus to 48 kHz PCM with resampling
//! (`Transcoder::exact`), the cost without that choice; one row sets the Opus encoder to
//! complexity 5 (`Transcoder::set_encoder_complexity`).

use std::hint::black_box;
use std::time::Instant;
use switchboard_media::codec::CodecKind;
use switchboard_media::jitter::Packet;
use switchboard_media::signal::{amplitude, Noise};
use switchboard_media::transcode::{JitterTranscoder, Transcoder};

struct Args {
    seconds: u32,
    runs: usize,
}

fn args() -> Args {
    let mut a = Args {
        seconds: 10,
        runs: 7,
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    for (k, flag) in v.iter().enumerate() {
        let num = v.get(k + 1).and_then(|s| s.parse::<u32>().ok());
        match (flag.as_str(), num) {
            ("--seconds", Some(n)) => a.seconds = n.max(1),
            ("--runs", Some(n)) => a.runs = n.max(1) as usize,
            _ => {}
        }
    }
    a
}

/// A voiced, speech-like signal at `rate`: 150 Hz fundamental (±10 Hz vibrato at 3 Hz) with
/// harmonics falling 6 dB per octave up to 3.4 kHz, plus -40 dBFS white noise.
fn speechlike(rate: u32, seconds: u32) -> Vec<i16> {
    let n = (rate * seconds) as usize;
    let noise = Noise::new(7).white(-40.0, n);
    let a = amplitude(-16.0);
    let mut phase = 0f64;
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            let f0 = 150.0 + 10.0 * (2.0 * std::f64::consts::PI * 3.0 * t).sin();
            phase += 2.0 * std::f64::consts::PI * f0 / f64::from(rate);
            let mut v = 0.0;
            let mut h = 1.0;
            while h * 150.0 < 3400.0 {
                v += (h * phase).sin() / h;
                h += 1.0;
            }
            (a * v * 0.5 + f64::from(noise[i])).clamp(-32768.0, 32767.0) as i16
        })
        .collect()
}

fn encode(kind: CodecKind, pcm: &[i16]) -> Vec<Vec<u8>> {
    let mut enc = kind.codec();
    pcm.chunks(kind.samples_per_frame())
        .map(|f| {
            let mut p = Vec::new();
            enc.encode(f, &mut p);
            p
        })
        .collect()
}

/// CPU time this thread has used, in µs.
fn thread_cpu_us() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return f64::NAN;
    }
    ts.tv_sec as f64 * 1e6 + ts.tv_nsec as f64 / 1e3
}

/// Source codec, target codec, whether to keep the PCM rates exactly (no Opus rate choice),
/// and the Opus encoder complexity (`None`: libopus's default, 9).
type Row = (CodecKind, CodecKind, bool, Option<i32>);

fn transcoder(row: Row) -> Transcoder {
    let (from, to, exact, complexity) = row;
    let made = if exact {
        Transcoder::exact(from, to)
    } else {
        Transcoder::new(from, to)
    };
    let mut t = match made {
        Ok(t) => t,
        Err(e) => panic!("{from:?} -> {to:?}: {e}"),
    };
    if let Some(c) = complexity {
        assert!(t.set_encoder_complexity(c), "{row:?}");
    }
    t
}

/// Median (CPU, wall) µs per input frame over `runs` runs (after one warm-up run), each a
/// fresh transcoder over all `payloads`; the median is taken on CPU time.
fn time_row(row: Row, payloads: &[Vec<u8>], runs: usize) -> (f64, f64) {
    let mut per_frame: Vec<(f64, f64)> = (0..runs + 1)
        .map(|_| {
            let mut t = transcoder(row);
            let mut out = Vec::with_capacity(2);
            let (cpu, wall) = (thread_cpu_us(), Instant::now());
            for p in payloads {
                out.clear();
                t.push_into(black_box(p), &mut out);
                black_box(&out);
            }
            let n = payloads.len() as f64;
            (
                (thread_cpu_us() - cpu) / n,
                wall.elapsed().as_secs_f64() * 1e6 / n,
            )
        })
        .collect();
    per_frame.remove(0); // warm-up
    per_frame.sort_by(|a, b| a.0.total_cmp(&b.0));
    per_frame[per_frame.len() / 2]
}

/// Median CPU µs per input frame of the relay's transcoding path for `row`: the transcoder
/// behind its jitter buffer ([`JitterTranscoder`]), packets pushed in order every 20 ms of a
/// simulated clock and played out on the same clock (push, pop, decode, encode).
fn time_jittered(row: Row, payloads: &[Vec<u8>], runs: usize) -> f64 {
    let step = row.0.timestamp_per_frame();
    let packets: Vec<Packet> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| Packet {
            ssrc: 1,
            seq: i as u16,
            timestamp: step.wrapping_mul(i as u32),
            marker: false,
            payload: p.clone(),
        })
        .collect();
    let mut per_frame: Vec<f64> = (0..runs + 1)
        .map(|_| {
            let mut jt = JitterTranscoder::new(transcoder(row));
            let mut out = Vec::with_capacity(2);
            let cpu = thread_cpu_us();
            for (i, p) in packets.iter().enumerate() {
                let now = i as u64 * 20;
                jt.push(black_box(p.clone()), now);
                if jt.poll_timeout().is_some_and(|t| t <= now + 19) {
                    out.clear();
                    jt.handle_timeout(now + 19, &mut out);
                    black_box(&out);
                }
            }
            (thread_cpu_us() - cpu) / packets.len() as f64
        })
        .collect();
    per_frame.remove(0); // warm-up
    per_frame.sort_by(f64::total_cmp);
    per_frame[per_frame.len() / 2]
}

fn name(k: CodecKind) -> String {
    match k {
        CodecKind::Opus { rate } => format!("Opus/{}k", rate / 1000),
        CodecKind::L16 { rate } => format!("L16/{}k", rate / 1000),
        other => other.sdp_name().to_string(),
    }
}

fn main() {
    let a = args();
    let (pcmu, opus) = (CodecKind::Pcmu, CodecKind::Opus { rate: 48000 });
    let codecs = [
        pcmu,
        CodecKind::Pcma,
        CodecKind::G722,
        opus,
        CodecKind::L16 { rate: 8000 },
        CodecKind::L16 { rate: 16000 },
    ];
    // Every ordered pair (the diagonal is pass-through), then the Opus variants.
    let mut rows: Vec<Row> = Vec::new();
    for from in codecs {
        for to in codecs {
            rows.push((from, to, false, None));
        }
    }
    rows.extend([
        (pcmu, opus, false, Some(5)),
        (pcmu, opus, true, None),
        (opus, pcmu, true, None),
    ]);
    println!(
        "transcode: {} s of speech-like audio per pair, median of {} runs, 1 thread",
        a.seconds, a.runs
    );
    println!();
    println!("| from | to | PCM rates (decode → encode) | CPU µs / 20 ms frame | wall µs | % of a core per stream |");
    println!("|---|---|---|---:|---:|---:|");
    let mut results = Vec::new();
    for row in rows {
        let (from, to, exact, complexity) = row;
        let payloads = encode(from, &speechlike(from.sample_rate(), a.seconds));
        let (us, wall) = time_row(row, &payloads, a.runs);
        let mut how = match transcoder(row).pcm_rates() {
            Some((d, e)) => format!("{d} → {e}"),
            None => "pass-through".to_string(),
        };
        if exact {
            how.push_str(" (exact)");
        }
        if let Some(c) = complexity {
            how.push_str(&format!(", complexity {c}"));
        }
        println!(
            "| {} | {} | {} | {:.2} | {:.2} | {:.3} |",
            name(from),
            name(to),
            how,
            us,
            wall,
            us / 20_000.0 * 100.0
        );
        results.push((row, us));
    }
    let us = |row: Row| {
        results
            .iter()
            .find(|(r, _)| *r == row)
            .map_or(f64::NAN, |(_, us)| *us)
    };
    println!();
    println!("CPU µs per 20 ms frame, from (rows) → to (columns):");
    println!();
    let header: Vec<String> = codecs.iter().map(|&k| name(k)).collect();
    println!("| from \\ to | {} |", header.join(" | "));
    println!("|---|{}", "---:|".repeat(codecs.len()));
    for from in codecs {
        let cells: Vec<String> = codecs
            .iter()
            .map(|&to| format!("{:.2}", us((from, to, false, None))))
            .collect();
        println!("| {} | {} |", name(from), cells.join(" | "));
    }
    // The relay's path: the same transcoders behind the jitter buffer.
    let jittered: Vec<(Row, f64)> = [(opus, pcmu, false, None), (pcmu, opus, false, None)]
        .into_iter()
        .map(|row| {
            let payloads = encode(row.0, &speechlike(row.0.sample_rate(), a.seconds));
            (row, time_jittered(row, &payloads, a.runs))
        })
        .collect();
    println!();
    println!(
        "| through the jitter buffer (relay path) | CPU µs / 20 ms frame | transcoder alone |"
    );
    println!("|---|---:|---:|");
    for (row, j) in &jittered {
        println!(
            "| {} → {} | {:.2} | {:.2} |",
            name(row.0),
            name(row.1),
            j,
            us(*row)
        );
    }
    println!();
    println!("| Opus ↔ PCMU call (both directions, 50 frames/s each) | CPU µs per 20 ms | % of a core per call | calls per core | target ≥ 250 |");
    println!("|---|---:|---:|---:|---|");
    let mut lines: Vec<(String, f64)> = [
        (false, None, "Transcoder::new: Opus at 8 kHz, complexity 9"),
        (
            false,
            Some(5),
            "Transcoder::new: Opus at 8 kHz, complexity 5",
        ),
        (
            true,
            None,
            "Transcoder::exact: Opus at 48 kHz + resampling, complexity 9",
        ),
    ]
    .into_iter()
    .map(|(exact, complexity, how)| {
        // The decoding direction has no encoder complexity to set.
        let both = us((opus, pcmu, exact, None)) + us((pcmu, opus, exact, complexity));
        (how.to_string(), both)
    })
    .collect();
    lines.push((
        "JitterTranscoder (relay path): Opus at 8 kHz, complexity 9, jitter buffer".to_string(),
        jittered.iter().map(|(_, j)| j).sum(),
    ));
    for (how, both) in lines {
        let calls = 20_000.0 / both;
        println!(
            "| {} | {:.2} | {:.3} | {:.0} | {} |",
            how,
            both,
            both / 20_000.0 * 100.0,
            calls,
            if calls >= 250.0 { "met" } else { "missed" }
        );
    }
}
