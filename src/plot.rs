//! A latency distribution drawn as an SVG file, written by hand: the latency at each percentile
//! on a logarithmic "nines" axis (50%, 90%, 99%, 99.9%, ...), the usual way to show tails.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

const WIDTH: f64 = 800.0;
const HEIGHT: f64 = 480.0;
const MARGIN_LEFT: f64 = 80.0;
const MARGIN_RIGHT: f64 = 20.0;
const MARGIN_TOP: f64 = 40.0;
const MARGIN_BOTTOM: f64 = 60.0;
/// The plot reaches 99.999% (five nines).
const NINES_MAX: f64 = 5.0;

/// Renders the histogram (values in nanoseconds) as an SVG document.
pub fn render(title: &str, histogram: &Histogram<u64>) -> String {
    let plot_width = WIDTH - MARGIN_LEFT - MARGIN_RIGHT;
    let plot_height = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM;
    let latency_max_us = (histogram.max() as f64 / 1_000.0).max(1.0);
    let x_of = |nines: f64| MARGIN_LEFT + nines / NINES_MAX * plot_width;
    let y_of = |latency_us: f64| MARGIN_TOP + plot_height * (1.0 - latency_us / latency_max_us);

    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"16\">{}</text>\n",
        WIDTH / 2.0,
        escape(title)
    );
    // Axes.
    let _ = writeln!(
        svg,
        "<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" stroke=\"black\"/>\
         <line x1=\"{0}\" y1=\"{2}\" x2=\"{3}\" y2=\"{2}\" stroke=\"black\"/>",
        MARGIN_LEFT,
        MARGIN_TOP,
        MARGIN_TOP + plot_height,
        MARGIN_LEFT + plot_width
    );
    for (nines, label) in [
        (0.0, "0%"),
        (1.0, "90%"),
        (2.0, "99%"),
        (3.0, "99.9%"),
        (4.0, "99.99%"),
        (5.0, "99.999%"),
    ] {
        let x = x_of(nines);
        let _ = writeln!(
            svg,
            "<line x1=\"{x}\" y1=\"{0}\" x2=\"{x}\" y2=\"{1}\" stroke=\"#ddd\"/>\
             <text x=\"{x}\" y=\"{2}\" text-anchor=\"middle\">{label}</text>",
            MARGIN_TOP,
            MARGIN_TOP + plot_height,
            MARGIN_TOP + plot_height + 18.0
        );
    }
    for step in 0..=4 {
        let latency_us = latency_max_us * f64::from(step) / 4.0;
        let y = y_of(latency_us);
        let _ = writeln!(
            svg,
            "<line x1=\"{0}\" y1=\"{y}\" x2=\"{1}\" y2=\"{y}\" stroke=\"#ddd\"/>\
             <text x=\"{2}\" y=\"{3}\" text-anchor=\"end\">{latency_us:.0} us</text>",
            MARGIN_LEFT,
            MARGIN_LEFT + plot_width,
            MARGIN_LEFT - 6.0,
            y + 4.0
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">percentile</text>\
         <text x=\"18\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 18 {})\">\
         request latency</text>",
        MARGIN_LEFT + plot_width / 2.0,
        HEIGHT - 16.0,
        MARGIN_TOP + plot_height / 2.0,
        MARGIN_TOP + plot_height / 2.0
    );
    // The curve: 200 points evenly spaced in nines.
    let mut points = String::new();
    if !histogram.is_empty() {
        for step in 0..=200 {
            let nines = NINES_MAX * f64::from(step) / 200.0;
            let quantile = 1.0 - 10f64.powf(-nines);
            let latency_us = histogram.value_at_quantile(quantile) as f64 / 1_000.0;
            let _ = write!(points, "{:.1},{:.1} ", x_of(nines), y_of(latency_us));
        }
    }
    let _ = writeln!(
        svg,
        "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\" points=\"{}\"/>\n</svg>",
        points.trim_end()
    );
    svg
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_curve_for_recorded_values() {
        let mut histogram = Histogram::<u64>::new(3).expect("valid precision");
        for value in 1..=1_000u64 {
            histogram.record(value * 1_000).expect("in range");
        }
        let svg = render("latency <test>", &histogram);
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("latency &lt;test&gt;"));
        assert!(svg.contains("<polyline"));
        assert_eq!(svg.matches(',').count(), 201);
        assert!(svg.trim_end().ends_with("</svg>"));
    }
}
