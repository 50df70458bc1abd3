//! The conference / supervision mixer on real signals: every participant speaks its own tone,
//! and each output is checked for the presence or absence of every tone (Goertzel).
//!
//! Tones are whole numbers of cycles per 20 ms frame at 16 kHz, so they are orthogonal over the
//! measured windows: an absent tone measures at the quantisation floor, far below the bounds.

use std::collections::HashMap;
use switchboard_media::mix::{MixMode, Mixer, ParticipantId};
use switchboard_media::signal::{mix as hard_clip_mix, sine, tone_dbfs};

const RATE: u32 = 16_000;
const FRAME: usize = 320;
/// Input level of each speaking tone.
const LEVEL: f64 = -12.0;
/// A tone this loud (dBFS) in an output is heard.
const PRESENT: f64 = -16.0;
/// A tone below this (dBFS) is not heard.
const ABSENT: f64 = -70.0;

const CALLER_HZ: f64 = 500.0;
const AGENT_HZ: f64 = 1100.0;
const SUPERVISOR_HZ: f64 = 1900.0;

/// Runs `ticks` ticks where each `(id, freq)` speaks a continuous tone; returns each
/// participant's concatenated output.
fn run(
    m: &mut Mixer,
    speakers: &[(ParticipantId, f64)],
    ticks: usize,
) -> HashMap<ParticipantId, Vec<i16>> {
    let signals: Vec<(ParticipantId, Vec<i16>)> = speakers
        .iter()
        .map(|&(id, f)| (id, sine(f, LEVEL, RATE, ticks * FRAME)))
        .collect();
    let mut out: HashMap<ParticipantId, Vec<i16>> = HashMap::new();
    for t in 0..ticks {
        for (id, s) in &signals {
            assert!(m.push(*id, &s[t * FRAME..(t + 1) * FRAME]));
        }
        for (id, frame) in m.mix() {
            assert_eq!(frame.len(), FRAME);
            out.entry(id).or_default().extend(frame);
        }
    }
    out
}

/// Asserts which of `tones` `who` hears in `out` (by `heard`), naming everything on failure.
fn check(out: &HashMap<ParticipantId, Vec<i16>>, who: ParticipantId, tones: &[(f64, bool)]) {
    let x = &out[&who];
    for &(f, heard) in tones {
        let level = tone_dbfs(x, f, RATE);
        if heard {
            assert!(
                level > PRESENT,
                "{who:?} should hear {f} Hz: {level:.1} dBFS"
            );
        } else {
            assert!(
                level < ABSENT,
                "{who:?} should not hear {f} Hz: {level:.1} dBFS"
            );
        }
    }
}

/// Caller and agent in a normal call, plus a supervisor in `mode`.
fn call_with_supervisor(
    mode: impl FnOnce(ParticipantId) -> MixMode,
) -> (Mixer, [ParticipantId; 3]) {
    let mut m = Mixer::new(RATE);
    let caller = m.add(MixMode::Normal);
    let agent = m.add(MixMode::Normal);
    let supervisor = m.add(mode(agent));
    (m, [caller, agent, supervisor])
}

fn speakers(ids: [ParticipantId; 3]) -> [(ParticipantId, f64); 3] {
    [
        (ids[0], CALLER_HZ),
        (ids[1], AGENT_HZ),
        (ids[2], SUPERVISOR_HZ),
    ]
}

#[test]
fn frame_size_follows_the_rate() {
    assert_eq!(Mixer::new(16_000).frame_len(), FRAME);
    assert_eq!(Mixer::new(8_000).frame_len(), 160);
    assert_eq!(Mixer::new(48_000).frame_len(), 960);
    let mut m = Mixer::new(RATE);
    assert!(m.is_empty());
    assert!(m.mix().is_empty(), "nobody, no output");
}

#[test]
fn mix_minus_nobody_hears_themselves() {
    let mut m = Mixer::new(RATE);
    let a = m.add(MixMode::Normal);
    let b = m.add(MixMode::Normal);
    let c = m.add(MixMode::Normal);
    assert_eq!(m.len(), 3);
    let out = run(
        &mut m,
        &[(a, CALLER_HZ), (b, AGENT_HZ), (c, SUPERVISOR_HZ)],
        10,
    );
    check(
        &out,
        a,
        &[(CALLER_HZ, false), (AGENT_HZ, true), (SUPERVISOR_HZ, true)],
    );
    check(
        &out,
        b,
        &[(CALLER_HZ, true), (AGENT_HZ, false), (SUPERVISOR_HZ, true)],
    );
    check(
        &out,
        c,
        &[(CALLER_HZ, true), (AGENT_HZ, true), (SUPERVISOR_HZ, false)],
    );
    // Nothing near full scale: the tones keep their level (no limiting, no loss).
    let level = tone_dbfs(&out[&a], AGENT_HZ, RATE);
    assert!((level - LEVEL).abs() < 0.2, "{level:.2}");
}

#[test]
fn two_parties_get_each_others_samples_bit_exact() {
    let mut m = Mixer::new(RATE);
    let a = m.add(MixMode::Normal);
    let b = m.add(MixMode::Normal);
    let x = sine(CALLER_HZ, -3.0, RATE, FRAME);
    let y = sine(AGENT_HZ, -1.0, RATE, FRAME);
    m.push(a, &x);
    m.push(b, &y);
    let out: HashMap<_, _> = m.mix().into_iter().collect();
    assert_eq!(out[&a], y);
    assert_eq!(out[&b], x);
}

#[test]
fn listen_supervisor_hears_both_and_is_heard_by_neither() {
    let (mut m, ids) = call_with_supervisor(|_| MixMode::Listen);
    let [caller, agent, supervisor] = ids;
    let out = run(&mut m, &speakers(ids), 10);
    check(
        &out,
        caller,
        &[(AGENT_HZ, true), (SUPERVISOR_HZ, false), (CALLER_HZ, false)],
    );
    check(
        &out,
        agent,
        &[(CALLER_HZ, true), (SUPERVISOR_HZ, false), (AGENT_HZ, false)],
    );
    check(
        &out,
        supervisor,
        &[(CALLER_HZ, true), (AGENT_HZ, true), (SUPERVISOR_HZ, false)],
    );
}

#[test]
fn whisper_reaches_the_agent_only() {
    let (mut m, ids) = call_with_supervisor(|agent| MixMode::Whisper { to: agent });
    let [caller, agent, supervisor] = ids;
    let out = run(&mut m, &speakers(ids), 10);
    check(&out, caller, &[(AGENT_HZ, true), (SUPERVISOR_HZ, false)]);
    check(&out, agent, &[(CALLER_HZ, true), (SUPERVISOR_HZ, true)]);
    check(
        &out,
        supervisor,
        &[(CALLER_HZ, true), (AGENT_HZ, true), (SUPERVISOR_HZ, false)],
    );
}

#[test]
fn barge_everyone_hears_everyone() {
    let (mut m, ids) = call_with_supervisor(|_| MixMode::Barge);
    let [caller, agent, supervisor] = ids;
    let out = run(&mut m, &speakers(ids), 10);
    check(
        &out,
        caller,
        &[(AGENT_HZ, true), (SUPERVISOR_HZ, true), (CALLER_HZ, false)],
    );
    check(
        &out,
        agent,
        &[(CALLER_HZ, true), (SUPERVISOR_HZ, true), (AGENT_HZ, false)],
    );
    check(
        &out,
        supervisor,
        &[(CALLER_HZ, true), (AGENT_HZ, true), (SUPERVISOR_HZ, false)],
    );
}

/// One supervisor through listen → whisper → barge → listen on the same call: each change
/// applies from the next tick.
#[test]
fn modes_change_during_the_call() {
    let (mut m, ids) = call_with_supervisor(|_| MixMode::Listen);
    let [caller, agent, supervisor] = ids;
    let phases = [
        (MixMode::Listen, false, false),
        (MixMode::Whisper { to: agent }, false, true),
        (MixMode::Barge, true, true),
        (MixMode::Listen, false, false),
    ];
    for (mode, caller_hears, agent_hears) in phases {
        assert!(m.set_mode(supervisor, mode));
        assert_eq!(m.mode(supervisor), Some(mode));
        let out = run(&mut m, &speakers(ids), 5);
        check(
            &out,
            caller,
            &[(SUPERVISOR_HZ, caller_hears), (AGENT_HZ, true)],
        );
        check(
            &out,
            agent,
            &[(SUPERVISOR_HZ, agent_hears), (CALLER_HZ, true)],
        );
        check(&out, supervisor, &[(CALLER_HZ, true), (AGENT_HZ, true)]);
    }
}

#[test]
fn muted_participants_still_hear_but_are_not_heard() {
    let (mut m, ids) = call_with_supervisor(|_| MixMode::Barge);
    let [caller, agent, supervisor] = ids;
    assert!(m.set_muted(caller, true));
    let out = run(&mut m, &speakers(ids), 10);
    check(&out, caller, &[(AGENT_HZ, true), (SUPERVISOR_HZ, true)]);
    check(&out, agent, &[(CALLER_HZ, false), (SUPERVISOR_HZ, true)]);
    check(&out, supervisor, &[(CALLER_HZ, false), (AGENT_HZ, true)]);

    // A muted whisperer is heard by no one either.
    assert!(m.set_mode(supervisor, MixMode::Whisper { to: agent }));
    assert!(m.set_muted(supervisor, true));
    let out = run(&mut m, &speakers(ids), 10);
    check(&out, agent, &[(SUPERVISOR_HZ, false), (CALLER_HZ, false)]);
    check(&out, supervisor, &[(AGENT_HZ, true)]);

    assert!(m.set_muted(caller, false));
    assert!(m.set_muted(supervisor, false));
    let out = run(&mut m, &speakers(ids), 10);
    check(&out, agent, &[(SUPERVISOR_HZ, true), (CALLER_HZ, true)]);
    check(&out, caller, &[(SUPERVISOR_HZ, false), (AGENT_HZ, true)]);
}

#[test]
fn missing_input_is_silence() {
    let mut m = Mixer::new(RATE);
    let a = m.add(MixMode::Normal);
    let b = m.add(MixMode::Normal);
    // A short frame is padded with silence, a long one cut.
    assert!(m.push(a, &[1000; 100]));
    let out: HashMap<_, _> = m.mix().into_iter().collect();
    assert_eq!(&out[&b][..100], &[1000; 100][..]);
    assert!(out[&b][100..].iter().all(|&s| s == 0));
    assert!(out[&a].iter().all(|&s| s == 0), "b never pushed");
    assert!(m.push(a, &[7; 1000]));
    let out: HashMap<_, _> = m.mix().into_iter().collect();
    assert_eq!(out[&b], vec![7; FRAME]);
    // Nobody pushed this tick: silence, not last tick's frame again.
    let out = m.mix();
    assert!(out.iter().all(|(_, f)| f.iter().all(|&s| s == 0)));
}

#[test]
fn removed_participants_are_gone() {
    let (mut m, ids) = call_with_supervisor(|agent| MixMode::Whisper { to: agent });
    let [caller, agent, supervisor] = ids;
    assert!(m.remove(agent));
    assert!(!m.remove(agent));
    assert!(!m.push(agent, &[1; FRAME]));
    assert!(!m.set_mode(agent, MixMode::Normal));
    assert!(!m.set_muted(agent, true));
    assert_eq!(m.mode(agent), None);
    let out = run(
        &mut m,
        &[(caller, CALLER_HZ), (supervisor, SUPERVISOR_HZ)],
        10,
    );
    assert_eq!(out.len(), 2, "no output for a removed participant");
    // The whisper's target is gone: nobody hears the supervisor; the supervisor hears the caller.
    check(&out, caller, &[(SUPERVISOR_HZ, false)]);
    check(&out, supervisor, &[(CALLER_HZ, true)]);
    // A new participant gets a new id, never the removed one's.
    let newcomer = m.add(MixMode::Normal);
    assert_ne!(newcomer, agent);
}

/// Loud parties: outputs stay in range without wrapping, and the limiter scales instead of
/// clipping, so no intermodulation appears (hard clipping of the same sum shows plenty).
#[test]
fn loud_mixes_are_limited_not_clipped() {
    let mut m = Mixer::new(RATE);
    let loud: Vec<(ParticipantId, f64)> = [500.0, 700.0, 1100.0, 1300.0]
        .into_iter()
        .map(|f| (m.add(MixMode::Normal), f))
        .collect();
    let ticks = 20;
    let n = ticks * FRAME;
    let inputs: Vec<Vec<i16>> = loud.iter().map(|&(_, f)| sine(f, -1.0, RATE, n)).collect();
    let mut out: HashMap<ParticipantId, Vec<i16>> = HashMap::new();
    for t in 0..ticks {
        for ((id, _), x) in loud.iter().zip(&inputs) {
            m.push(*id, &x[t * FRAME..(t + 1) * FRAME]);
        }
        for (id, frame) in m.mix() {
            out.entry(id).or_default().extend(frame);
        }
    }

    for (k, (id, _)) in loud.iter().enumerate() {
        let y = &out[id];
        // The exact sum of the others, in i32.
        let sum: Vec<i32> = (0..n)
            .map(|i| {
                (0..inputs.len())
                    .filter(|&j| j != k)
                    .map(|j| i32::from(inputs[j][i]))
                    .sum()
            })
            .collect();
        assert!(
            sum.iter().any(|s| s.abs() > 60_000),
            "the test is loud enough"
        );
        // No wrap-around: every sample keeps the sign of the exact sum.
        for (i, (&s, &v)) in sum.iter().zip(y).enumerate() {
            assert!(v == 0 || (s > 0) == (v > 0), "sample {i}: sum {s}, out {v}");
        }
        // After the first frame (the limiter is settled), the output is the scaled sum.
        let settled = &y[FRAME..];
        let peak = settled.iter().map(|v| v.unsigned_abs()).max().unwrap_or(0);
        assert!(peak > 30_000, "uses the range: {peak}");
        for (j, &(_, f)) in loud.iter().enumerate() {
            let level = tone_dbfs(settled, f, RATE);
            if j == k {
                assert!(level < ABSENT, "{id:?} hears itself at {f} Hz: {level:.1}");
            } else {
                assert!(level > -15.0, "{id:?} misses {f} Hz: {level:.1}");
            }
        }
    }

    // Third-order intermodulation of 500 and 700 Hz lands on 300 and 900 Hz: the limited mix of
    // those two has none, the hard-clipped one a lot.
    let mut m = Mixer::new(RATE);
    let a = m.add(MixMode::Normal);
    let b = m.add(MixMode::Normal);
    let c = m.add(MixMode::Normal);
    let out = run_loud(&mut m, &[(a, 500.0), (b, 700.0)], ticks);
    let limited = &out[&c][FRAME..];
    let clipped = hard_clip_mix(&sine(500.0, -1.0, RATE, n), &sine(700.0, -1.0, RATE, n));
    let clipped = &clipped[FRAME..];
    for im in [300.0, 900.0] {
        let ours = tone_dbfs(limited, im, RATE);
        let hard = tone_dbfs(clipped, im, RATE);
        println!("IM3 at {im} Hz: limiter {ours:.1} dBFS, hard clip {hard:.1} dBFS");
        assert!(
            ours < -60.0,
            "limiter intermodulation at {im} Hz: {ours:.1} dBFS"
        );
        assert!(
            hard > ours + 20.0,
            "hard clip {hard:.1} vs limiter {ours:.1}"
        );
    }
}

/// As [`run`], with every tone at -1 dBFS.
fn run_loud(
    m: &mut Mixer,
    speakers: &[(ParticipantId, f64)],
    ticks: usize,
) -> HashMap<ParticipantId, Vec<i16>> {
    let n = ticks * FRAME;
    let signals: Vec<_> = speakers
        .iter()
        .map(|&(id, f)| (id, sine(f, -1.0, RATE, n)))
        .collect();
    let mut out: HashMap<ParticipantId, Vec<i16>> = HashMap::new();
    for t in 0..ticks {
        for (id, s) in &signals {
            m.push(*id, &s[t * FRAME..(t + 1) * FRAME]);
        }
        for (id, frame) in m.mix() {
            out.entry(id).or_default().extend(frame);
        }
    }
    out
}

/// Once the mix is quiet again the limiter lets go: the gain comes back to 1 within
/// `RELEASE_MS`, after which outputs are bit-exact again.
#[test]
fn limiter_releases_when_the_mix_gets_quiet() {
    let mut m = Mixer::new(RATE);
    let a = m.add(MixMode::Normal);
    let b = m.add(MixMode::Normal);
    let c = m.add(MixMode::Normal);
    let _ = run_loud(&mut m, &[(a, 500.0), (b, 700.0)], 5);
    let quiet = sine(500.0, -20.0, RATE, FRAME);
    let release_ticks = (switchboard_media::mix::RELEASE_MS / 20) as usize;
    let mut last = Vec::new();
    for _ in 0..=release_ticks {
        m.push(a, &quiet);
        last = m
            .mix()
            .into_iter()
            .find(|(id, _)| *id == c)
            .map(|x| x.1)
            .unwrap_or_default();
    }
    assert_eq!(last, quiet, "gain back to 1");
}

/// A rough cost figure, no assertion on time: `cargo test -p switchboard-media --test mix --release
/// -- --ignored --nocapture mix_cost`.
#[test]
#[ignore = "measurement, prints only"]
fn mix_cost() {
    for parties in [3usize, 10, 50] {
        let mut m = Mixer::new(RATE);
        let ids: Vec<_> = (0..parties).map(|_| m.add(MixMode::Normal)).collect();
        let x = sine(440.0, -12.0, RATE, FRAME);
        let ticks = 2_000;
        let start = std::time::Instant::now();
        for _ in 0..ticks {
            for &id in &ids {
                m.push(id, &x);
            }
            std::hint::black_box(m.mix());
        }
        let per_tick = start.elapsed() / ticks;
        println!("{parties} parties: {per_tick:?} per 20 ms tick");
    }
}
