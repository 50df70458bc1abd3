//! Speech recognition end to end: flite speaks, pocketsphinx listens, in 20 ms frames as a call
//! would deliver them. Also measures (prints) the telephone path: 8 kHz µ-law and back to 16 kHz.
//!
//! Needs the Debian packages `flite`, `pocketsphinx-en-us` and `libpocketsphinx-dev` (linking).

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use switchboard_media::asr::{spoken_digits, AsrEngine, AsrEvent, Grammar, PocketSphinx};
use switchboard_media::codec::g711::{linear_to_ulaw, ulaw_to_linear};
use switchboard_media::tts::{FliteTts, Tts};
use switchboard_media::Pcm;

fn cache_dir() -> PathBuf {
    // Shared by the tests of one run: flite renders each sentence once.
    std::env::temp_dir().join(format!("switchboard-asr-tts-{}", std::process::id()))
}

fn tts() -> FliteTts {
    let t = FliteTts::new(cache_dir());
    assert!(
        t.available(),
        "flite is not installed (Debian package `flite`)"
    );
    t
}

fn engine() -> PocketSphinx {
    PocketSphinx::new()
        .unwrap_or_else(|e| panic!("{e}: install pocketsphinx-en-us and libpocketsphinx-dev"))
}

/// 300 ms of silence, the speech, 1.2 s of silence (the VAD needs 700 ms to end the utterance).
fn padded(speech: &Pcm) -> Vec<i16> {
    let mut x = vec![0i16; 4800];
    x.extend_from_slice(&speech.samples);
    x.extend(std::iter::repeat_n(0, 19200));
    x
}

/// The telephone path: 16 kHz → 8 kHz → µ-law → linear → 16 kHz.
fn through_g711(speech: &Pcm) -> Pcm {
    let narrow = speech.resampled(8000).unwrap();
    let decoded: Vec<i16> = narrow
        .samples
        .iter()
        .map(|&s| ulaw_to_linear(linear_to_ulaw(s)))
        .collect();
    Pcm::new(8000, decoded).resampled(16000).unwrap()
}

struct Outcome {
    partials: Vec<String>,
    last: Option<AsrEvent>,
    busy: Duration,
    audio: Duration,
}

/// Pushes `x` in 20 ms frames; the events, and the time spent inside `push`.
fn recognise(engine: &PocketSphinx, grammar: Option<&Grammar>, x: &[i16]) -> Outcome {
    let mut rec = engine.start(grammar, Some("en-US")).unwrap();
    let mut partials = Vec::new();
    let mut last = None;
    let mut busy = Duration::ZERO;
    for frame in x.chunks(320) {
        let t = Instant::now();
        let events = rec.push(frame);
        busy += t.elapsed();
        for e in events {
            match e {
                AsrEvent::Partial { text } => partials.push(text),
                other => {
                    assert!(last.is_none(), "two results: {last:?} then {other:?}");
                    last = Some(other);
                }
            }
        }
    }
    if last.is_none() {
        last = rec.finish();
    } else {
        assert_eq!(rec.finish(), None);
    }
    Outcome {
        partials,
        last,
        busy,
        audio: Duration::from_micros(x.len() as u64 * 1_000_000 / 16000),
    }
}

fn final_text(o: &Outcome) -> Option<&str> {
    match &o.last {
        Some(AsrEvent::Final { text, .. }) => Some(text),
        _ => None,
    }
}

fn menu() -> Grammar {
    Grammar::phrases(["billing", "technical support", "support"])
}

#[test]
fn menu_choices_and_digits_at_16_khz() {
    let tts = tts();
    let engine = engine();
    let cases: [(&str, Grammar, &str); 3] = [
        ("billing", menu(), "billing"),
        ("technical support", menu(), "technical support"),
        ("one two three", Grammar::digits(), "one two three"),
    ];
    let (mut busy, mut audio) = (Duration::ZERO, Duration::ZERO);
    for voice in ["kal16", "slt"] {
        for (said, grammar, want) in &cases {
            let speech = tts.render(said, Some(voice), 16000).unwrap();
            let o = recognise(&engine, Some(grammar), &padded(&speech));
            println!(
                "16 kHz {voice:>5} {said:>18}: {:?} partials {:?}",
                o.last, o.partials
            );
            assert_eq!(final_text(&o), Some(*want), "{voice} {said}: {:?}", o.last);
            busy += o.busy;
            audio += o.audio;
        }
    }
    assert_eq!(spoken_digits("one two three").as_deref(), Some("123"));
    println!(
        "grammar recognition real-time factor: {:.3} ({:?} of CPU for {:?} of audio, debug build)",
        busy.as_secs_f64() / audio.as_secs_f64(),
        busy,
        audio
    );
}

#[test]
fn silence_and_noise_give_no_match_and_finish_ends_early() {
    let engine = engine();
    let silence = vec![0i16; 16000 * 2];
    let o = recognise(&engine, Some(&menu()), &silence);
    assert_eq!(o.last, Some(AsrEvent::NoMatch));

    // Cut mid-utterance (the caller hangs up): finish gives the result so far.
    let speech = tts()
        .render("technical support", Some("kal16"), 16000)
        .unwrap();
    let mut rec = engine.start(Some(&menu()), None).unwrap();
    let mut x = vec![0i16; 4800];
    x.extend_from_slice(&speech.samples);
    for frame in x.chunks(320) {
        for e in rec.push(frame) {
            assert!(matches!(e, AsrEvent::Partial { .. }), "{e:?}");
        }
    }
    let end = rec.finish();
    println!("finish mid-utterance: {end:?}");
    assert!(matches!(end, Some(AsrEvent::Final { .. })), "{end:?}");
    assert_eq!(rec.finish(), None);
    assert!(rec.push(&x[..320]).is_empty());

    // Odd-sized pushes give the same result as 20 ms frames.
    let mut rec = engine.start(Some(&menu()), None).unwrap();
    let mut events = Vec::new();
    for piece in padded(&speech).chunks(77) {
        events.extend(rec.push(piece));
    }
    assert!(
        matches!(events.last(), Some(AsrEvent::Final { text, .. }) if text == "technical support"),
        "{events:?}"
    );

    // Errors: words not in the dictionary, an empty grammar, another language.
    assert!(engine
        .start(Some(&Grammar::phrases(["zzqxv"])), None)
        .is_err());
    assert!(engine.start(Some(&Grammar::phrases([""])), None).is_err());
    assert!(engine.start(None, Some("fr-FR")).is_err());
    assert!(PocketSphinx::with_model_dir(PathBuf::from("/nonexistent")).is_err());
    assert_eq!(engine.name(), "pocketsphinx");
}

#[test]
fn free_speech_with_the_language_model() {
    let tts = tts();
    let engine = engine();
    for voice in ["kal16", "slt"] {
        let speech = tts
            .render("please transfer me to billing", Some(voice), 16000)
            .unwrap();
        let o = recognise(&engine, None, &padded(&speech));
        println!(
            "free speech {voice}: {:?} (real-time factor {:.3})",
            o.last,
            o.busy.as_secs_f64() / o.audio.as_secs_f64()
        );
        let text = final_text(&o).unwrap_or_default();
        assert!(text.starts_with("please transfer"), "{:?}", o.last);
    }
}

/// The G.711 question: does a menu grammar still work on 8 kHz µ-law audio? Measured for both
/// flite voices and printed; asserted for the case that was reliable (kal16, menu grammar).
#[test]
fn telephone_band_menu_recognition() {
    let tts = tts();
    let engine = engine();
    let phrases = ["billing", "technical support", "support"];
    let digits = ["one two three", "four five six", "seven eight nine oh"];
    let started = SystemTime::now();
    for voice in ["kal16", "slt"] {
        let (mut menu_ok, mut digits_ok) = (0, 0);
        for said in phrases {
            let speech = tts.render(said, Some(voice), 16000).unwrap();
            let o = recognise(&engine, Some(&menu()), &padded(&through_g711(&speech)));
            let got = final_text(&o);
            println!("8 kHz mu-law {voice:>5} menu   {said:>20} -> {:?}", o.last);
            if got == Some(said) {
                menu_ok += 1;
            }
            if voice == "kal16" {
                assert_eq!(got, Some(said), "kal16 over G.711: {:?}", o.last);
            }
        }
        for said in digits {
            let speech = tts.render(said, Some(voice), 16000).unwrap();
            let o = recognise(
                &engine,
                Some(&Grammar::digits()),
                &padded(&through_g711(&speech)),
            );
            println!("8 kHz mu-law {voice:>5} digits {said:>20} -> {:?}", o.last);
            if final_text(&o) == Some(said) {
                digits_ok += 1;
            }
        }
        println!(
            "TELEPHONE PATH {voice}: menu {menu_ok}/{} digits {digits_ok}/{}",
            phrases.len(),
            digits.len()
        );
    }
    let _ = started;

    // A bigger menu, measured only.
    let choices = [
        "billing",
        "technical support",
        "sales",
        "new account",
        "cancel my order",
        "operator",
    ];
    let big = Grammar::phrases(choices);
    for voice in ["kal16", "slt"] {
        let (mut wide, mut narrow) = (0, 0);
        for said in choices {
            let speech = tts.render(said, Some(voice), 16000).unwrap();
            let a = recognise(&engine, Some(&big), &padded(&speech));
            let b = recognise(&engine, Some(&big), &padded(&through_g711(&speech)));
            wide += usize::from(final_text(&a) == Some(said));
            narrow += usize::from(final_text(&b) == Some(said));
            if final_text(&b) != Some(said) {
                println!("6-choice menu {voice} over G.711: {said:?} -> {:?}", b.last);
            }
        }
        println!(
            "TELEPHONE PATH {voice} 6-choice menu: 16 kHz {wide}/{n}, G.711 {narrow}/{n}",
            n = choices.len()
        );
    }
}
