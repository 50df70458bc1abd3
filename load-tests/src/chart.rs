//! The SVG chart of a run: stacked panels over the run's seconds (from [`Report::samples`]):
//! calls per second, concurrent calls, setup latency percentiles and MOS.
//!
//! Drawn with plotters' SVG backend only: text goes out as SVG `<text>` elements that the
//! viewer renders, so no system font is read (plotters is built without `ttf`).
//!
//! MOS is scored per stream when the stream ends: the MOS panel draws, per second, the mean of
//! the streams that ended in it ([`Sample::mos`]), and the run's mean as a horizontal line.

use crate::report::{Report, Sample};
use std::path::Path;
use switchboard_chart::{panel, stacked, Axes, Series, C_BLUE, C_GREEN, C_ORANGE, C_PURPLE, C_RED};

/// Width of the chart in pixels.
const WIDTH: u32 = 1000;
/// Height of one panel in pixels.
const PANEL_HEIGHT: u32 = 260;

/// Panel titles (also what the tests look for).
const TITLE_CPS: &str = "Calls per second";
const TITLE_CONCURRENT: &str = "Concurrent calls";
const TITLE_SETUP: &str = "Setup latency (ms)";
const TITLE_MOS: &str = "MOS";

/// Writes the chart of `report` to `path` as an SVG file.
pub fn write_svg(report: &Report, path: &Path) -> std::io::Result<()> {
    std::fs::write(path, render(report)?)
}

/// Draws the chart and returns the SVG text.
fn render(report: &Report) -> std::io::Result<String> {
    stacked(WIDTH, PANEL_HEIGHT, 4, &title(report), |panels| {
        let samples = &report.samples;
        let x_end = samples
            .iter()
            .map(|s| s.t)
            .filter(|t| t.is_finite())
            .fold(1.0_f64, f64::max);
        let x = 0.0..x_end;
        let mut it = panels.iter();
        let mut next = || {
            it.next()
                .ok_or_else(|| switchboard_chart::io("missing panel"))
        };

        // Calls per second: started, answered, failed.
        let answered = per_second(samples, |s| s.answered);
        let failed = per_second(samples, |s| s.failed);
        let started: Vec<(f64, f64)> = samples.iter().map(|s| (s.t, s.cps)).collect();
        seconds_panel(
            next()?,
            TITLE_CPS,
            "calls/s",
            x.clone(),
            &[
                ("started", C_BLUE, &started),
                ("answered", C_GREEN, &answered),
                ("failed", C_RED, &failed),
            ],
            None,
        )?;

        // Concurrent calls.
        let up: Vec<(f64, f64)> = samples.iter().map(|s| (s.t, s.concurrent as f64)).collect();
        seconds_panel(
            next()?,
            TITLE_CONCURRENT,
            "calls",
            x.clone(),
            &[("up", C_BLUE, &up)],
            None,
        )?;

        // Setup latency percentiles: gaps where no call was answered in a second.
        let p50 = optional(samples, |s| s.setup_p50_ms);
        let p90 = optional(samples, |s| s.setup_p90_ms);
        let p99 = optional(samples, |s| s.setup_p99_ms);
        seconds_panel(
            next()?,
            TITLE_SETUP,
            "ms",
            x.clone(),
            &[
                ("p50", C_GREEN, &p50),
                ("p90", C_ORANGE, &p90),
                ("p99", C_RED, &p99),
            ],
            None,
        )?;

        // MOS over time: the mean of the streams that ended in each second, beside the run's
        // mean.
        let per_second: Vec<(f64, f64)> = report
            .samples
            .iter()
            .filter_map(|s| s.mos.filter(|m| m.is_finite()).map(|m| (s.t, m)))
            .collect();
        let mos = report.media.as_ref().and_then(|m| m.mean_mos);
        let (mos_title, mos_line) = match mos.filter(|m| m.is_finite()) {
            Some(m) => (
                format!("{TITLE_MOS}: run mean {m:.2} (E-model, per stream at its end)"),
                vec![(0.0, m), (x_end, m)],
            ),
            None => (format!("{TITLE_MOS}: no media in this run"), Vec::new()),
        };
        seconds_panel(
            next()?,
            &mos_title,
            "MOS",
            x,
            &[
                ("streams ended that second", C_BLUE, &per_second),
                ("run mean", C_PURPLE, &mos_line),
            ],
            Some(1.0..5.0),
        )
    })
}

/// One panel over the run's seconds.
fn seconds_panel(
    area: &switchboard_chart::plotters::drawing::DrawingArea<
        switchboard_chart::plotters::prelude::SVGBackend<'_>,
        switchboard_chart::plotters::coord::Shift,
    >,
    caption: &str,
    y_desc: &str,
    x: std::ops::Range<f64>,
    series: &[Series<'_>],
    y: Option<std::ops::Range<f64>>,
) -> std::io::Result<()> {
    let fmt = |v: &f64| format!("{v:.1}");
    let axes = Axes {
        caption,
        x_desc: "time (s)",
        y_desc,
        x,
        y,
        x_label: &fmt,
    };
    panel(area, &axes, series)
}

/// The header line: role, target, rate and the verdict.
fn title(r: &Report) -> String {
    let s = &r.settings;
    format!(
        "switchboard load {}{}: {:.0} calls/s asked, {} answered, {} failed in {:.1} s: {}",
        s.role,
        s.target
            .as_deref()
            .map_or_else(String::new, |t| format!(" → {t}")),
        s.rate,
        r.totals.answered,
        r.totals.failed,
        r.elapsed_s,
        if r.passed { "PASS" } else { "FAIL" }
    )
}

/// Per-second rate of a cumulative counter (difference from the previous sample, over the time
/// between them).
fn per_second(samples: &[Sample], counter: impl Fn(&Sample) -> u64) -> Vec<(f64, f64)> {
    let mut prev = (0.0, 0u64);
    samples
        .iter()
        .map(|s| {
            let dt = s.t - prev.0;
            let dv = counter(s).saturating_sub(prev.1) as f64;
            prev = (s.t, counter(s));
            (s.t, if dt > 1e-3 { dv / dt } else { dv })
        })
        .collect()
}

/// The points of an optional per-sample value; `NaN` marks a gap (no value that second).
fn optional(samples: &[Sample], value: impl Fn(&Sample) -> Option<f64>) -> Vec<(f64, f64)> {
    samples
        .iter()
        .map(|s| (s.t, value(s).unwrap_or(f64::NAN)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Criteria, MediaSummary, Percentiles, Settings, Totals};

    fn report(media: bool, samples: usize) -> Report {
        let samples: Vec<Sample> = (1..=samples)
            .map(|i| {
                let t = i as f64;
                Sample {
                    t,
                    cps: 100.0 * t,
                    concurrent: 10 * i as u64,
                    started: (50 * i * (i + 1)) as u64,
                    answered: (50 * i * (i + 1)) as u64 - 5,
                    failed: (i / 3) as u64,
                    retransmissions: 0,
                    // A gap in the third second: nothing answered.
                    setup_p50_ms: (i != 3).then_some(1.0 + t),
                    setup_p90_ms: (i != 3).then_some(2.0 + t),
                    setup_p99_ms: (i != 3).then_some(5.0 + 2.0 * t),
                    // Streams end from the sixth second on.
                    mos: (i > 5).then_some(4.3 + 0.01 * t),
                }
            })
            .collect();
        Report {
            settings: Settings {
                role: "uac".into(),
                target: Some("127.0.0.1:5080".into()),
                rate: 500.0,
                ramp: 0.0,
                calls: Some(1000),
                time_limit: None,
                duration_ms: 0,
                max_concurrent: 10_000,
                workers: None,
            },
            elapsed_s: samples.len() as f64,
            workers: Vec::new(),
            totals: Totals {
                started: 1000,
                answered: 998,
                failed: 2,
                ..Totals::default()
            },
            answered_per_s: 99.8,
            answer_window_s: None,
            answered_per_s_in_window: None,
            setup: Percentiles::default(),
            ringing: Percentiles::default(),
            media: media.then(|| MediaSummary {
                streams: 998,
                mean_mos: Some(4.41),
                min_mos: Some(4.3),
                ..MediaSummary::default()
            }),
            samples,
            criteria: Criteria {
                max_failed: 0,
                max_loss_percent: 0.0,
            },
            passed: false,
        }
    }

    use switchboard_chart::texts;

    #[test]
    fn a_synthetic_run_renders_every_panel() {
        let svg = render(&report(true, 10)).expect("renders");
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
        assert!(svg.trim_end().ends_with("</svg>"));
        let texts = texts(&svg);
        for title in [TITLE_CPS, TITLE_CONCURRENT, TITLE_SETUP] {
            assert!(texts.contains(&title), "no panel {title:?} in {texts:?}");
        }
        assert!(
            texts
                .iter()
                .any(|t| t.starts_with(TITLE_MOS) && t.contains("run mean 4.41")),
            "MOS panel"
        );
        for label in [
            "started",
            "answered",
            "failed",
            "up",
            "p50",
            "p90",
            "p99",
            "streams ended that second",
            "run mean",
        ] {
            assert!(texts.contains(&label), "no legend {label:?}");
        }
        // Lines were drawn: polylines for the series (the setup ones split by the gap).
        assert!(svg.matches("<polyline").count() >= 8, "series drawn");
    }

    #[test]
    fn written_to_a_file_without_media_or_samples() {
        let dir = std::env::temp_dir().join(format!("chart-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("run.svg");
        write_svg(&report(false, 0), &path).expect("writes");
        let text = std::fs::read_to_string(&path).expect("reads back");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(!text.is_empty());
        let texts = texts(&text);
        assert!(texts.contains(&TITLE_SETUP), "{texts:?}");
        assert!(texts.contains(&"MOS: no media in this run"), "{texts:?}");
    }
}
