//! Transcoding benchmark (issue 6): µs of CPU per 20 ms frame for each codec pair through
//! `switchboard_media::transcode::Transcoder` (decode → resample → re-frame → encode), and the
//! calls one core could transcode for Opus ↔ PCMU (both directions; target ≥ 250 per core).
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
use switchboard_media::signal::{amplitude, Noise};
use switchboard_media::transcode::Transcoder;

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
    let l16_8 = CodecKind::L16 { rate: 8000 };
    let l16_16 = CodecKind::L16 { rate: 16000 };
    let rows: [Row; 13] = [
        (pcmu, pcmu, false, None),
        (pcmu, CodecKind::Pcma, false, None),
        (pcmu, opus, false, None),
        (opus, pcmu, false, None),
        (pcmu, opus, false, Some(5)),
        (pcmu, opus, true, None),
        (opus, pcmu, true, None),
        (CodecKind::G722, pcmu, false, None),
        (pcmu, CodecKind::G722, false, None),
        (pcmu, l16_8, false, None),
        (l16_8, pcmu, false, None),
        (pcmu, l16_16, false, None),
        (l16_16, pcmu, false, None),
    ];
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
    println!("| Opus ↔ PCMU call (both directions, 50 frames/s each) | CPU µs per 20 ms | % of a core per call | calls per core | target ≥ 250 |");
    println!("|---|---:|---:|---:|---|");
    for (exact, complexity, how) in [
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
    ] {
        // The decoding direction has no encoder complexity to set.
        let both = us((opus, pcmu, exact, None)) + us((pcmu, opus, exact, complexity));
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
