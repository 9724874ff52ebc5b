//! Latency percentile plots in the HdrHistogram style, drawn as SVG with `plotters`.
//!
//! The x axis is the percentile on a log scale of 1/(1-p): 50%, 90%, 99%, 99.9%, ... each one
//! step further right, so the tail gets as much room as the body. The y axis is latency, on a
//! log scale by default, so one huge maximum cannot flatten p50 to p99.9 into the floor; a
//! linear scale is available. Each curve may bring reference lines (the baselines measured in
//! its run: one disk sync, the loopback echo), drawn as horizontal dashed lines.
//!
//! Both axes are drawn on plain linear coordinates of already transformed values (x in "nines",
//! y in log10 microseconds), so one chart type serves every scale and the tick labels are
//! chosen here rather than by the library.
//!
//! Only the SVG backend is used: no fonts are loaded and no system library is needed; text is
//! left to the SVG viewer.

use std::ops::Range;

use hdrhistogram::Histogram;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::benchmark::BoxError;
use crate::cli::PlotScale;

const WIDTH: u32 = 960;
const HEIGHT: u32 = 600;
/// Curve points per unit of x (one "nine").
const STEPS_PER_NINE: f64 = 100.0;
/// The percentiles marked on a single curve, with their labels.
const MARKS: [(f64, &str); 5] = [
    (50.0, "p50"),
    (90.0, "p90"),
    (99.0, "p99"),
    (99.9, "p99.9"),
    (99.99, "p99.99"),
];
/// Curve colors, in the order of the runs.
const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];
/// Reference line colors when only one curve is drawn: the disk, the network.
const REFERENCE_COLORS: [RGBColor; 2] = [RGBColor(214, 39, 40), RGBColor(110, 110, 110)];

/// A linear axis over `range` whose ticks are exactly `ticks` (values already transformed).
struct TickedAxis {
    range: Range<f64>,
    ticks: Vec<f64>,
}

impl Ranged for TickedAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let span = self.range.end - self.range.start;
        let fraction = if span > 0.0 {
            (value - self.range.start) / span
        } else {
            0.0
        };
        // `as` saturates, so a value far outside the range lands at the edge of the canvas.
        limit.0 + (f64::from(limit.1 - limit.0) * fraction).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, _hint: Hint) -> Vec<f64> {
        self.ticks.clone()
    }

    fn range(&self) -> Range<f64> {
        self.range.clone()
    }
}

/// What a reference line stands for, which decides its look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferenceKind {
    /// The disk (one sync): dashed, red when one run is drawn.
    Disk,
    /// The network (the loopback echo): dotted, gray when one run is drawn.
    Network,
}

/// A horizontal line at a known latency, such as a baseline.
#[derive(Debug, Clone)]
pub struct Reference {
    /// Shown in the legend.
    pub label: String,
    /// Where the line is drawn.
    pub latency_ns: u64,
    /// Decides the line's look.
    pub kind: ReferenceKind,
}

/// One run's latency distribution and its reference lines.
pub struct Curve<'a> {
    /// Shown in the legend.
    pub label: String,
    /// Latencies in nanoseconds.
    pub histogram: &'a Histogram<u64>,
    /// Baselines of the same run.
    pub references: Vec<Reference>,
}

/// x of a quantile: log10(1 / (1 - q)), the number of nines (0.5 -> 0.30, 0.99 -> 2).
pub fn nines(quantile: f64) -> f64 {
    -(1.0 - quantile).max(1e-12).log10()
}

/// Where a curve ends: the quantile of the largest value, 1 - 1/count, and at least 99%.
fn nines_end(histogram: &Histogram<u64>) -> f64 {
    (histogram.len().max(1) as f64).log10().max(2.0)
}

/// The points of a curve: (nines, microseconds), ending at the maximum.
fn curve_points(histogram: &Histogram<u64>) -> Vec<(f64, f64)> {
    if histogram.is_empty() {
        return Vec::new();
    }
    let end = nines_end(histogram);
    let steps = (end * STEPS_PER_NINE).ceil() as u32;
    let mut points: Vec<(f64, f64)> = (0..steps)
        .map(|step| {
            let x = f64::from(step) / STEPS_PER_NINE;
            let quantile = 1.0 - 10f64.powf(-x);
            (x, microseconds(histogram.value_at_quantile(quantile)))
        })
        .collect();
    points.push((end, microseconds(histogram.max())));
    points
}

fn microseconds(nanoseconds: u64) -> f64 {
    nanoseconds as f64 / 1_000.0
}

/// A latency in microseconds as people read it: `850 us`, `1.48 ms`, `72.2 ms`, `1.2 s`.
pub fn format_latency_us(latency_us: f64) -> String {
    if latency_us >= 1_000_000.0 {
        format!("{} s", significant(latency_us / 1_000_000.0))
    } else if latency_us >= 1_000.0 {
        format!("{} ms", significant(latency_us / 1_000.0))
    } else if latency_us >= 1.0 {
        format!("{} us", significant(latency_us))
    } else {
        format!("{} ns", significant(latency_us * 1_000.0))
    }
}

/// Three significant digits, without trailing zeros.
fn significant(value: f64) -> String {
    let text = if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    };
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// The label of an x tick: `50%`, `90%`, `99.9%`, or `max` at `end` of a single curve.
fn percentile_label(x: f64, max_at: Option<f64>) -> String {
    if max_at.is_some_and(|end| (x - end).abs() < 1e-9) {
        return "max".to_string();
    }
    let percentile = 100.0 * (1.0 - 10f64.powf(-x));
    let text = format!("{percentile:.6}");
    format!("{}%", text.trim_end_matches('0').trim_end_matches('.'))
}

/// Ticks of a log axis between `low` and `high` (microseconds), at 1, 2 and 5 of each decade,
/// or at every integer multiple when that gives too few.
fn log_ticks(low: f64, high: f64) -> Vec<f64> {
    let decade_first = low.log10().floor() as i32;
    let decade_last = high.log10().ceil() as i32;
    let pick = |multiples: &[f64]| -> Vec<f64> {
        (decade_first..=decade_last)
            .flat_map(|decade| multiples.iter().map(move |m| m * 10f64.powi(decade)))
            .filter(|value| *value >= low && *value <= high)
            .collect()
    };
    let ticks = pick(&[1.0, 2.0, 5.0]);
    if ticks.len() >= 4 {
        ticks
    } else {
        pick(&[1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
    }
}

/// Ticks of a linear axis from 0 to `high`: about six round steps.
fn linear_ticks(high: f64) -> Vec<f64> {
    let raw = high / 6.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|step| *step >= raw)
        .unwrap_or(10.0 * magnitude);
    (0..=((high / step).floor() as u32))
        .map(|index| f64::from(index) * step)
        .collect()
}

/// The y axis in drawing units: log10(us) on a log scale, us on a linear one.
struct YAxis {
    range: Range<f64>,
    ticks: Vec<f64>,
    /// Microseconds to drawing units.
    to_y: fn(f64) -> f64,
    /// Drawing units to microseconds.
    from_y: fn(f64) -> f64,
}

/// The y axis covering `low_us..high_us` with some room on both sides.
fn y_axis(scale: PlotScale, low_us: f64, high_us: f64) -> YAxis {
    match scale {
        PlotScale::Log => {
            let (low, high) = (low_us / 1.4, high_us * 1.6);
            YAxis {
                range: low.log10()..high.log10(),
                ticks: log_ticks(low, high).into_iter().map(f64::log10).collect(),
                to_y: f64::log10,
                from_y: |y| 10f64.powf(y),
            }
        }
        PlotScale::Linear => {
            let high = high_us * 1.08;
            YAxis {
                range: 0.0..high,
                ticks: linear_ticks(high),
                to_y: |y| y,
                from_y: |y| y,
            }
        }
    }
}

/// Renders the curves into an SVG document. With one curve, the standard percentiles and the
/// maximum are marked and labeled with their values; with several, each curve is named in the
/// legend.
///
/// # Errors
///
/// When the drawing library fails (it only writes into a string).
pub fn render(title: &str, curves: &[Curve<'_>], scale: PlotScale) -> Result<String, BoxError> {
    let single = curves.len() == 1;
    let points: Vec<Vec<(f64, f64)>> = curves.iter().map(|c| curve_points(c.histogram)).collect();
    let x_end = curves
        .iter()
        .map(|curve| nines_end(curve.histogram))
        .fold(2.0, f64::max);

    // The latency range covers every curve and every reference line.
    let mut low_us = f64::INFINITY;
    let mut high_us = 0f64;
    for value in points.iter().flatten().map(|(_, y)| *y).chain(
        curves
            .iter()
            .flat_map(|curve| curve.references.iter())
            .map(|reference| microseconds(reference.latency_ns)),
    ) {
        low_us = low_us.min(value);
        high_us = high_us.max(value);
    }
    if !low_us.is_finite() || high_us <= 0.0 {
        low_us = 1.0;
        high_us = 1_000.0;
    }
    let low_us = low_us.max(0.001);
    let high_us = high_us.max(low_us * 10.0);

    let YAxis {
        range: y_range,
        ticks: y_ticks,
        to_y,
        from_y,
    } = y_axis(scale, low_us, high_us);
    let max_at = single.then_some(x_end);
    let mut x_ticks: Vec<f64> = [0.5, 0.9, 0.99, 0.999, 0.9999, 0.99999, 0.999999, 0.9999999]
        .into_iter()
        .map(nines)
        .filter(|x| *x <= x_end + 1e-9)
        .collect();
    if let Some(end) = max_at {
        // The maximum gets its own tick; a percentile tick too close to it would overlap.
        x_ticks.retain(|x| end - x > 0.25);
        x_ticks.push(end);
    }

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(18)
            .x_label_area_size(52)
            .y_label_area_size(84)
            .build_cartesian_2d(
                TickedAxis {
                    range: 0.0..x_end + 0.08,
                    ticks: x_ticks,
                },
                TickedAxis {
                    range: y_range,
                    ticks: y_ticks,
                },
            )
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("percentile (log scale of 1/(1-p))")
            .y_desc(match scale {
                PlotScale::Log => "request latency (log scale)",
                PlotScale::Linear => "request latency",
            })
            .x_label_formatter(&|x| percentile_label(*x, max_at))
            .y_label_formatter(&|y| format_latency_us(from_y(*y)))
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(225, 225, 225))
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 15))
            .draw()
            .map_err(plot_error)?;

        for (index, (curve, points)) in curves.iter().zip(&points).enumerate() {
            let color = COLORS[index % COLORS.len()];
            let line = ShapeStyle::from(color).stroke_width(2);
            chart
                .draw_series(LineSeries::new(
                    points.iter().map(|(x, y)| (*x, to_y(*y))),
                    line,
                ))
                .map_err(plot_error)?
                .label(curve.label.clone())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 24, y)], line));
            for reference in &curve.references {
                let (single_color, dash, gap) = match reference.kind {
                    ReferenceKind::Disk => (REFERENCE_COLORS[0], 8, 5),
                    ReferenceKind::Network => (REFERENCE_COLORS[1], 2, 4),
                };
                let reference_color = if single { single_color } else { color };
                let style = ShapeStyle::from(reference_color).stroke_width(1);
                let y = to_y(microseconds(reference.latency_ns));
                chart
                    .draw_series(DashedLineSeries::new(
                        [(0.0, y), (x_end, y)],
                        dash,
                        gap,
                        style,
                    ))
                    .map_err(plot_error)?
                    .label(reference.label.clone())
                    .legend(move |(x, y)| {
                        DashedPathElement::new([(x, y), (x + 24, y)], dash, gap, style)
                    });
            }
            if single {
                mark_percentiles(&mut chart, curve.histogram, color, to_y)?;
            } else if let Some(&(x, y)) = points.last() {
                // The maximum of each run, where its curve ends.
                chart
                    .draw_series([Circle::new((x, to_y(y)), 4, color.filled())])
                    .map_err(plot_error)?;
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.9))
            .border_style(RGBColor(180, 180, 180))
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<TickedAxis, TickedAxis>>;

/// Marks p50 to p99.99 (those the run has enough requests for) and the maximum, each with a dot
/// and its value beside it.
fn mark_percentiles(
    chart: &mut Chart<'_, '_>,
    histogram: &Histogram<u64>,
    color: RGBColor,
    to_y: fn(f64) -> f64,
) -> Result<(), BoxError> {
    if histogram.is_empty() {
        return Ok(());
    }
    let end = nines_end(histogram);
    let mut marks: Vec<(f64, u64, &str)> = MARKS
        .iter()
        .map(|&(percentile, label)| {
            let quantile = percentile / 100.0;
            (
                nines(quantile),
                histogram.value_at_quantile(quantile),
                label,
            )
        })
        .filter(|(x, _, _)| *x <= end - 0.2)
        .collect();
    marks.push((end, histogram.max(), "max"));
    let text_style = TextStyle::from(("sans-serif", 13).into_font()).color(&BLACK);
    for (x, latency_ns, label) in marks {
        let y = to_y(microseconds(latency_ns));
        let text = format!("{label} {}", format_latency_us(microseconds(latency_ns)));
        // The curve rises to the right, so above-left and below-right of a dot are clear of it.
        // Near the y axis the text goes below-right, so it does not cross the axis.
        let (position, offset) = if x < 0.6 {
            (Pos::new(HPos::Left, VPos::Top), (6, 4))
        } else {
            (Pos::new(HPos::Right, VPos::Bottom), (-5, -5))
        };
        chart
            .draw_series([EmptyElement::at((x, y))
                + Circle::new((0, 0), 4, color.filled())
                + Text::new(text, offset, text_style.pos(position))])
            .map_err(plot_error)?;
    }
    Ok(())
}

fn plot_error<E: std::fmt::Debug>(error: E) -> BoxError {
    format!("cannot draw the plot: {error:?}").into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Asserts that each of `labels` is the text of one of `texts`.
    /// A curve without references.
    fn plain<'a>(label: &str, histogram: &'a Histogram<u64>) -> Curve<'a> {
        Curve {
            label: label.into(),
            histogram,
            references: Vec::new(),
        }
    }

    fn assert_has_labels(texts: &[(String, f64)], labels: &[&str]) {
        for label in labels {
            assert!(
                texts.iter().any(|(text, _)| text == label),
                "no {label} in {texts:?}"
            );
        }
    }

    /// The `cy` of every `<circle>` and the text and `y` of every `<text>` in an SVG document.
    fn circles_and_texts(svg: &str) -> (Vec<f64>, Vec<(String, f64)>) {
        let attribute = |element: &str, name: &str| -> f64 {
            let start = element.find(&format!(" {name}=\"")).expect("attribute") + name.len() + 3;
            let end = start + element[start..].find('"').expect("closing quote");
            element[start..end].parse().expect("a number")
        };
        let circles = svg
            .split("<circle")
            .skip(1)
            .map(|element| attribute(element, "cy"))
            .collect();
        let texts = svg
            .split("<text")
            .skip(1)
            .map(|element| {
                let body_start = element.find('>').expect("tag end") + 1;
                let body_end = element.find("</text>").expect("text end");
                (
                    element[body_start..body_end].trim().to_string(),
                    attribute(element, "y"),
                )
            })
            .collect();
        (circles, texts)
    }

    /// 20,000 requests shaped like a durable one-transfer run: most between 180 and 300 us, a
    /// tail to 5 ms, and one of 72.2 ms: the run whose linear plot put p50 to p99.9 within two
    /// pixels of the floor.
    fn run_with_a_huge_maximum() -> Histogram<u64> {
        let mut histogram = crate::benchmark::histogram();
        let mut random = crate::benchmark::Random(7);
        for (count, low_ns, high_ns) in [
            (18_000, 180_000, 300_000),
            (1_800, 300_000, 450_000),
            (180, 450_000, 1_500_000),
            (19, 1_500_000, 5_000_000),
        ] {
            for _ in 0..count {
                let latency_ns = low_ns + random.below(high_ns - low_ns);
                histogram.record(latency_ns).expect("in range");
            }
        }
        histogram.record(72_200_000).expect("in range");
        histogram
    }

    /// The heights of the marks (p50, p90, p99, p99.9, p99.99, max) of a one-curve plot.
    fn mark_heights(svg: &str) -> [f64; 6] {
        let (circles, _) = circles_and_texts(svg);
        circles[..]
            .try_into()
            .unwrap_or_else(|_| panic!("six marks, not {circles:?}"))
    }

    #[test]
    fn huge_maximum_leaves_the_percentiles_apart() {
        let histogram = run_with_a_huge_maximum();
        let curve = Curve {
            label: "request latency".into(),
            histogram: &histogram,
            references: vec![
                Reference {
                    label: "one disk sync, p50".into(),
                    latency_ns: 122_000,
                    kind: ReferenceKind::Disk,
                },
                Reference {
                    label: "loopback echo, p50".into(),
                    latency_ns: 20_000,
                    kind: ReferenceKind::Network,
                },
            ],
        };
        let svg = render("1 transfer per request", &[curve], PlotScale::Log).expect("renders");
        let [p50, p90, p99, p999, p9999, max] = mark_heights(&svg);
        // SVG y grows downward: each mark above the previous, p50 and p99 far apart.
        assert!(p50 - p99 >= 25.0, "p50 at y {p50}, p99 at y {p99}");
        assert!(p99 - p999 >= 25.0, "p99 at y {p99}, p99.9 at y {p999}");
        assert!(p50 > p90 && p90 > p99 && p99 > p999 && p999 > p9999 && p9999 > max);
        assert!(p9999 - max >= 25.0, "p99.99 at y {p9999}, max at y {max}");
        // On a linear axis the same run flattens: p50 to p99.9 within a few pixels.
        let curve = plain("request latency", &histogram);
        let linear = render("linear", &[curve], PlotScale::Linear).expect("renders");
        let [p50_linear, _, p99_linear, _, _, max_linear] = mark_heights(&linear);
        assert!(p50_linear - p99_linear < 4.0, "{p50_linear} {p99_linear}");
        assert!(p50_linear - max_linear > 300.0, "{p50_linear} {max_linear}");
        let (_, texts) = circles_and_texts(&svg);
        // Each mark's label sits at its height, with its value.
        let label_y = |prefix: &str| {
            texts
                .iter()
                .find(|(text, _)| text.starts_with(prefix))
                .unwrap_or_else(|| panic!("no label {prefix:?} in {texts:?}"))
                .1
        };
        assert!(label_y("p50 ") - label_y("p99 ") >= 30.0);
        assert_has_labels(&texts, &["max 72.2 ms"]);
        // The y axis is labeled in microseconds below 1 ms and in milliseconds above.
        assert_has_labels(
            &texts,
            &["100 us", "200 us", "500 us", "1 ms", "10 ms", "50 ms"],
        );
        // The x axis names the percentiles, the legend the curve and both references, and the
        // title stands above.
        assert_has_labels(
            &texts,
            &[
                "50%",
                "90%",
                "99%",
                "99.9%",
                "max",
                "one disk sync, p50",
                "loopback echo, p50",
                "1 transfer per request",
            ],
        );
    }

    #[test]
    fn linear_scale_spans_zero_to_the_maximum() {
        let histogram = run_with_a_huge_maximum();
        let curve = plain("run", &histogram);
        let svg = render("linear", &[curve], PlotScale::Linear).expect("renders");
        let (_, texts) = circles_and_texts(&svg);
        assert_has_labels(&texts, &["0 ns", "20 ms", "60 ms"]);
    }

    #[test]
    fn several_curves_share_one_plot_with_a_legend() {
        let fast = run_with_a_huge_maximum();
        let mut slow = crate::benchmark::histogram();
        for value in 1..=1_000u64 {
            slow.record(1_000_000 + value * 1_000).expect("in range");
        }
        let curves = [
            plain("sync none", &fast),
            Curve {
                label: "sync data".into(),
                histogram: &slow,
                references: vec![Reference {
                    label: "sync data: one disk sync, p50".into(),
                    latency_ns: 100_000,
                    kind: ReferenceKind::Disk,
                }],
            },
        ];
        let svg = render("compare", &curves, PlotScale::Log).expect("renders");
        let (circles, texts) = circles_and_texts(&svg);
        // One dot per run, at its maximum.
        assert_eq!(circles.len(), 2, "{circles:?}");
        assert_has_labels(
            &texts,
            &[
                "sync none",
                "sync data",
                "sync data: one disk sync, p50",
                "99.99%",
            ],
        );
        assert!(!texts.iter().any(|(text, _)| text == "max"));
    }

    #[test]
    fn empty_histogram_still_draws_axes() {
        let empty = crate::benchmark::histogram();
        let curve = plain("nothing", &empty);
        let svg = render("empty", &[curve], PlotScale::Log).expect("renders");
        assert!(svg.contains("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn formats_latencies_and_percentiles() {
        let check = |us: f64, expected: &str| assert_eq!(format_latency_us(us), expected);
        check(0.25, "250 ns");
        check(1.0, "1 us");
        check(235.0, "235 us");
        check(1_480.0, "1.48 ms");
        check(72_200.0, "72.2 ms");
        check(2_000_000.0, "2 s");
        assert_eq!(percentile_label(nines(0.5), None), "50%");
        assert_eq!(percentile_label(nines(0.999), None), "99.9%");
        assert_eq!(percentile_label(nines(0.99999), None), "99.999%");
        assert_eq!(percentile_label(4.3, Some(4.3)), "max");
        assert_eq!(log_ticks(90.0, 1_100.0), vec![100.0, 200.0, 500.0, 1_000.0]);
        assert_eq!(linear_ticks(70.0), vec![0.0, 20.0, 40.0, 60.0]);
    }
}
