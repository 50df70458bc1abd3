//! SVG line charts shared by the load generator's run chart (`load-tests/src/chart.rs`) and the
//! contact-centre reports (`actors/src/reports/`).
//!
//! Drawn with plotters' SVG backend only: text goes out as SVG `<text>` elements that the viewer
//! renders, so no system font is read (plotters is built without `ttf`).

pub use plotters;
use plotters::coord::Shift;
use plotters::prelude::*;

/// Blue (the first series colour).
pub const C_BLUE: RGBColor = RGBColor(31, 119, 180);
/// Orange.
pub const C_ORANGE: RGBColor = RGBColor(255, 127, 14);
/// Green.
pub const C_GREEN: RGBColor = RGBColor(44, 160, 44);
/// Red.
pub const C_RED: RGBColor = RGBColor(214, 39, 40);
/// Purple.
pub const C_PURPLE: RGBColor = RGBColor(148, 103, 189);
/// Brown.
pub const C_BROWN: RGBColor = RGBColor(140, 86, 75);
/// Pink.
pub const C_PINK: RGBColor = RGBColor(227, 119, 194);
/// Grey.
pub const C_GREY: RGBColor = RGBColor(127, 127, 127);

/// The series colours in order, for charts with a variable number of series.
pub const PALETTE: [RGBColor; 8] = [
    C_BLUE, C_ORANGE, C_GREEN, C_RED, C_PURPLE, C_BROWN, C_PINK, C_GREY,
];

/// One series of a panel: legend label, colour, points (`NaN` values split the line).
pub type Series<'a> = (&'a str, RGBColor, &'a Vec<(f64, f64)>);

/// The axes of a panel.
pub struct Axes<'a> {
    /// The caption above the panel.
    pub caption: &'a str,
    /// The x axis description.
    pub x_desc: &'a str,
    /// The y axis description.
    pub y_desc: &'a str,
    /// The x range.
    pub x: std::ops::Range<f64>,
    /// The y range; `None`: from 0 to a little above the largest value.
    pub y: Option<std::ops::Range<f64>>,
    /// Formats an x label.
    pub x_label: &'a dyn Fn(&f64) -> String,
}

/// Draws one panel: a titled chart with its series and a legend.
pub fn panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    axes: &Axes<'_>,
    series: &[Series<'_>],
) -> std::io::Result<()> {
    let y = axes.y.clone().unwrap_or_else(|| {
        let max = series
            .iter()
            .flat_map(|(_, _, pts)| pts.iter().map(|p| p.1))
            .filter(|v| v.is_finite())
            .fold(0.0_f64, f64::max);
        0.0..(max * 1.1).max(1.0)
    });
    // Enough decimals that neighbouring labels differ.
    let decimals = match y.end - y.start {
        r if r <= 5.0 => 2,
        r if r <= 50.0 => 1,
        _ => 0,
    };
    let mut chart = ChartBuilder::on(area)
        .caption(axes.caption, ("sans-serif", 16))
        .margin(8)
        .margin_right(20)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(axes.x.clone(), y)
        .map_err(io)?;
    chart
        .configure_mesh()
        .x_desc(axes.x_desc)
        .y_desc(axes.y_desc)
        .x_label_formatter(axes.x_label)
        .y_label_formatter(&|v| format!("{v:.decimals$}"))
        .light_line_style(RGBColor(240, 240, 240))
        .draw()
        .map_err(io)?;
    let mut any = false;
    for &(label, color, points) in series {
        let style = ShapeStyle::from(&color).stroke_width(2);
        let mut labelled = false;
        for segment in points
            .split(|p| !(p.0.is_finite() && p.1.is_finite()))
            .filter(|s| !s.is_empty())
        {
            let drawn = if segment.len() == 1 {
                // A lone point: a dot, or nothing would show.
                chart
                    .draw_series(segment.iter().map(|p| Circle::new(*p, 3, style.filled())))
                    .map_err(io)?
            } else {
                chart
                    .draw_series(LineSeries::new(segment.iter().copied(), style))
                    .map_err(io)?
            };
            if !labelled {
                drawn
                    .label(label)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
                labelled = true;
                any = true;
            }
        }
    }
    if any {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK.mix(0.3))
            .draw()
            .map_err(io)?;
    }
    Ok(())
}

/// Draws a white chart of `panels` stacked panels of `panel_height` under a title band and
/// returns the SVG text; `draw` fills the panels.
pub fn stacked(
    width: u32,
    panel_height: u32,
    panels: usize,
    title: &str,
    draw: impl FnOnce(&[DrawingArea<SVGBackend<'_>, Shift>]) -> std::io::Result<()>,
) -> std::io::Result<String> {
    const HEADER: u32 = 40;
    let mut svg = String::new();
    {
        let n = u32::try_from(panels.max(1)).unwrap_or(1);
        let root = SVGBackend::with_string(&mut svg, (width, HEADER + n * panel_height))
            .into_drawing_area();
        root.fill(&WHITE).map_err(io)?;
        let (header, body) = root.split_vertically(HEADER);
        header
            .draw_text(
                title,
                &("sans-serif", 18).into_font().color(&BLACK),
                (10, 12),
            )
            .map_err(io)?;
        let areas = body.split_evenly((panels.max(1), 1));
        draw(&areas)?;
        root.present().map_err(io)?;
    }
    Ok(svg)
}

/// A plotters error as an I/O error.
pub fn io(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// The contents of an SVG's `<text>` elements, trimmed (what tests look for).
pub fn texts(svg: &str) -> Vec<&str> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| {
            let body = &t[t.find('>')? + 1..];
            Some(body[..body.find("</text>")?].trim())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_panels_with_a_gap_and_a_lone_point() {
        let a = vec![(0.0, 1.0), (1.0, f64::NAN), (2.0, 3.0), (3.0, 4.0)];
        let b = vec![(1.0, 2.0)];
        let svg = stacked(600, 200, 2, "title here", |p| {
            let fmt = |v: &f64| format!("{v:.0}");
            let axes = |caption| Axes {
                caption,
                x_desc: "x",
                y_desc: "y",
                x: 0.0..3.0,
                y: None,
                x_label: &fmt,
            };
            panel(&p[0], &axes("first"), &[("a", C_BLUE, &a)])?;
            panel(&p[1], &axes("second"), &[("b", C_RED, &b)])
        })
        .expect("renders");
        assert!(svg.starts_with("<svg"));
        let t = texts(&svg);
        for want in ["title here", "first", "second", "a", "b"] {
            assert!(t.contains(&want), "{want:?} in {t:?}");
        }
        assert!(svg.contains("<circle"), "the lone point is a dot");
    }
}
