//! `clearline benchmark compare a.json b.json ...`: saved runs side by side.
//!
//! Prints what each run was (its settings, commit and machine), the settings that differ, and
//! one Markdown table: throughput, every percentile and the baselines, each run's value with its
//! ratio to the first run (for latency, below 1 is faster; for throughput, above 1). With
//! `--plot` it draws every run's percentile curve on one plot with a legend, each run's
//! baselines as reference lines in its color.
//!
//! Reads only report files; measures nothing.

use std::path::Path;

use crate::benchmark::{counted, thousands, BoxError};
use crate::cli::CompareArgs;
use crate::plot::{format_latency_us, Curve};
use crate::report::{self, Latency, Report, PERCENTILES};

/// A loaded report and the name it goes by in the table and legend.
struct Run {
    label: String,
    report: Report,
}

/// Runs `benchmark compare`.
pub fn run(args: &CompareArgs) -> Result<(), Box<dyn std::error::Error>> {
    run_inner(args).map_err(|error| error.to_string().into())
}

fn run_inner(args: &CompareArgs) -> Result<(), BoxError> {
    let mut runs = Vec::with_capacity(args.files.len());
    for path in &args.files {
        runs.push(Run {
            label: label(path),
            report: report::read(path)?,
        });
    }
    // Two files with the same name in different folders keep their paths apart.
    for index in 0..runs.len() {
        if runs
            .iter()
            .filter(|run| run.label == runs[index].label)
            .count()
            > 1
        {
            runs[index].label = args.files[index].display().to_string();
        }
    }
    say!("{}", describe_runs(&runs));
    if runs.len() > 1 {
        say!("each ratio is to {}", runs[0].label);
    }
    say!("{}", table(&runs));
    if let Some(path) = &args.plot {
        let histograms = runs
            .iter()
            .map(|run| {
                report::decode_histogram(&run.report.latency.histogram)
                    .map_err(|error| format!("{}: {error}", run.label).into())
            })
            .collect::<Result<Vec<_>, BoxError>>()?;
        let curves: Vec<Curve<'_>> = runs
            .iter()
            .zip(&histograms)
            .map(|(run, histogram)| Curve {
                label: format!(
                    "{}: {} {}s/s",
                    run.label,
                    thousands(run.report.throughput.events_per_s.round() as u64),
                    run.report.throughput.event_name
                ),
                histogram,
                references: crate::benchmark::references(
                    &run.report,
                    (runs.len() > 1).then_some(run.label.as_str()),
                ),
            })
            .collect();
        let title = plot_title(&runs);
        let svg = crate::plot::render(&title, &curves, args.plot_scale)?;
        std::fs::write(path, svg)
            .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
        say!("latency percentiles drawn in {}", path.display());
    }
    Ok(())
}

/// A run's name: its file name without `.json`.
fn label(path: &Path) -> String {
    path.file_stem().map_or_else(
        || path.display().to_string(),
        |stem| stem.to_string_lossy().to_string(),
    )
}

fn plot_title(runs: &[Run]) -> String {
    let first = runs[0].report.config.describe();
    if runs.iter().all(|run| run.report.config.describe() == first) {
        format!("clearline benchmark: {first}")
    } else {
        let labels: Vec<&str> = runs.iter().map(|run| run.label.as_str()).collect();
        format!("clearline benchmark: {}", labels.join(" vs "))
    }
}

/// One line per run (what, which commit, where) and the settings that differ.
fn describe_runs(runs: &[Run]) -> String {
    let mut text = String::new();
    for run in runs {
        let report = &run.report;
        let commit = match (&report.commit, report.commit_dirty) {
            (Some(commit), Some(true)) => format!("commit {} (modified)", short(commit)),
            (Some(commit), _) => format!("commit {}", short(commit)),
            (None, _) => "commit unknown".to_string(),
        };
        let machine = &report.machine;
        text.push_str(&format!(
            "{}: {}; {commit}; {}, {}, kernel {}\n",
            run.label,
            report.config.describe(),
            machine.cpu_model.as_deref().unwrap_or("unknown CPU"),
            counted(u64::from(machine.cores), "core"),
            machine.kernel.as_deref().unwrap_or("unknown"),
        ));
    }
    let settings = |run: &Run| -> Vec<(String, String)> {
        let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(&run.report.config) else {
            return Vec::new();
        };
        fields
            .into_iter()
            .map(|(name, value)| (name, value.to_string().trim_matches('"').to_string()))
            .collect()
    };
    let mut names: Vec<String> = runs
        .iter()
        .flat_map(settings)
        .map(|(name, _)| name)
        .collect();
    names.sort();
    names.dedup();
    for name in names {
        let values: Vec<String> = runs
            .iter()
            .map(|run| {
                settings(run)
                    .into_iter()
                    .find(|(field, _)| *field == name)
                    .map_or_else(|| "(none)".to_string(), |(_, value)| value)
            })
            .collect();
        if values.iter().any(|value| *value != values[0]) {
            text.push_str(&format!("differs: {name}: {}\n", values.join(" / ")));
        }
    }
    text
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

/// A cell of the table: a value, shown as text, and the number ratios are taken of.
struct Cell {
    text: String,
    value: f64,
}

/// The side-by-side table, in Markdown.
fn table(runs: &[Run]) -> String {
    let mut rows: Vec<(String, Vec<Option<Cell>>)> = Vec::new();
    rows.push((
        "throughput (events/s)".to_string(),
        runs.iter()
            .map(|run| {
                let throughput = &run.report.throughput;
                Some(Cell {
                    text: format!(
                        "{} {}s/s",
                        thousands(throughput.events_per_s.round() as u64),
                        throughput.event_name
                    ),
                    value: throughput.events_per_s,
                })
            })
            .collect(),
    ));
    rows.push((
        "requests/s".to_string(),
        runs.iter()
            .map(|run| {
                let per_s = run.report.throughput.requests_per_s;
                Some(Cell {
                    text: thousands(per_s.round() as u64),
                    value: per_s,
                })
            })
            .collect(),
    ));
    for percentile in PERCENTILES {
        let name = if percentile >= 100.0 {
            "max".to_string()
        } else {
            format!("p{percentile}")
        };
        rows.push((
            format!("latency {name}"),
            runs.iter()
                .map(|run| latency_cell(run.report.latency.at(percentile)))
                .collect(),
        ));
    }
    for (name, pick) in [
        (
            "baseline: one disk sync, p50",
            (|report: &Report| report.baselines.sync.as_ref()) as fn(&Report) -> Option<&Latency>,
        ),
        ("baseline: loopback echo, p50", |report: &Report| {
            report.baselines.echo.as_ref()
        }),
    ] {
        rows.push((
            name.to_string(),
            runs.iter()
                .map(|run| latency_cell(pick(&run.report).and_then(Latency::median_ns)))
                .collect(),
        ));
    }
    rows.push((
        "peak memory (MiB)".to_string(),
        runs.iter()
            .map(|run| {
                run.report.resources.rss_peak_bytes.map(|bytes| Cell {
                    text: thousands(bytes >> 20),
                    value: bytes as f64,
                })
            })
            .collect(),
    ));

    let mut header = vec!["".to_string()];
    for (index, run) in runs.iter().enumerate() {
        header.push(run.label.clone());
        if index > 0 {
            header.push("ratio".to_string());
        }
    }
    let mut lines = vec![header];
    for (name, cells) in rows {
        let mut line = vec![name];
        for (index, cell) in cells.iter().enumerate() {
            line.push(
                cell.as_ref()
                    .map_or_else(|| "-".to_string(), |cell| cell.text.clone()),
            );
            if index > 0 {
                line.push(match (&cells[0], cell) {
                    (Some(first), Some(cell)) if first.value > 0.0 => {
                        ratio(cell.value / first.value)
                    }
                    _ => "-".to_string(),
                });
            }
        }
        lines.push(line);
    }
    markdown(&lines)
}

/// A ratio with two decimals, or three significant digits below 0.1 (`25.22x`, `0.28x`,
/// `0.0103x`), so a hundredfold change does not read as `0.01x`.
fn ratio(value: f64) -> String {
    if value >= 0.1 || value <= 0.0 {
        format!("{value:.2}x")
    } else {
        let decimals = (2.0 - value.log10().floor()).min(9.0) as usize;
        format!("{value:.decimals$}x")
    }
}

fn latency_cell(latency_ns: Option<u64>) -> Option<Cell> {
    latency_ns.map(|latency_ns| Cell {
        text: format_latency_us(latency_ns as f64 / 1_000.0),
        value: latency_ns as f64,
    })
}

/// Lays out rows as a Markdown table with aligned columns; the first column left-aligned, the
/// others right-aligned.
fn markdown(lines: &[Vec<String>]) -> String {
    let columns = lines.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|column| {
            lines
                .iter()
                .filter_map(|line| line.get(column))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
                .max(3)
        })
        .collect();
    let mut text = String::new();
    for (index, line) in lines.iter().enumerate() {
        let cells: Vec<String> = widths
            .iter()
            .enumerate()
            .map(|(column, width)| {
                let cell = line.get(column).map_or("", String::as_str);
                if column == 0 {
                    format!("{cell:<width$}")
                } else {
                    format!("{cell:>width$}")
                }
            })
            .collect();
        text.push_str(&format!("| {} |\n", cells.join(" | ")));
        if index == 0 {
            let rules: Vec<String> = widths
                .iter()
                .enumerate()
                .map(|(column, width)| {
                    if column == 0 {
                        "-".repeat(*width)
                    } else {
                        format!("{}:", "-".repeat(width - 1))
                    }
                })
                .collect();
            text.push_str(&format!("| {} |\n", rules.join(" | ")));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_keep_three_digits_when_small() {
        assert_eq!(ratio(25.2249), "25.22x");
        assert_eq!(ratio(1.0), "1.00x");
        assert_eq!(ratio(0.2801), "0.28x");
        assert_eq!(ratio(0.01033), "0.0103x");
        assert_eq!(ratio(0.0746), "0.0746x");
        assert_eq!(ratio(0.0), "0.00x");
    }

    #[test]
    fn markdown_aligns_columns() {
        let lines = vec![
            vec!["".to_string(), "a".to_string(), "b".to_string()],
            vec!["p50".to_string(), "235 us".to_string(), "56 us".to_string()],
        ];
        assert_eq!(
            markdown(&lines),
            "|     |      a |     b |\n\
             | --- | -----: | ----: |\n\
             | p50 | 235 us | 56 us |\n"
        );
    }
}
