//! `--plot DIR`: SVG charts of the memory-manager scaling curves and the host-pressure
//! comparison, drawn with `plotters` (SVG backend only: no fonts or bitmaps needed).

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::mm::{MmBench, SIZES};
use super::pressure::PressureBench;

/// File name of the memory-manager chart.
pub const MM_FILE: &str = "mm-scaling.svg";
/// File name of the host-pressure chart.
pub const PRESSURE_FILE: &str = "host-pressure.svg";

const SIZE: (u32, u32) = (800, 480);

/// Any drawing error as an `anyhow` error (plotters' errors borrow the backend's type).
fn drawing<T, E: std::error::Error + Send + Sync + 'static>(
    result: std::result::Result<T, DrawingAreaErrorKind<E>>,
) -> Result<T> {
    result.map_err(|error| anyhow!("drawing the chart: {error}"))
}

/// Median guest ns per operation against pages (log scale), one line per operation, with
/// the min-max range of the runs as a bar at each point.
pub fn mm_chart(bench: &MmBench, path: &Path) -> Result<()> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    draw_mm(&root, bench)?;
    drawing(root.present()).with_context(|| format!("writing {}", path.display()))
}

fn draw_mm<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, bench: &MmBench) -> Result<()>
where
    DB::ErrorType: 'static,
{
    drawing(root.fill(&WHITE))?;
    let top = bench
        .rows
        .iter()
        .map(|r| r.ns_per_op.max)
        .fold(1.0, f64::max);
    let first = SIZES[0] as f64;
    let last = SIZES[SIZES.len() - 1] as f64;
    let mut chart = drawing(
        ChartBuilder::on(root)
            .caption(
                "bench::mm: guest ns per operation (median, min-max bars)",
                ("sans-serif", 20),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            // Headroom above the curves for the legend.
            .build_cartesian_2d((first * 0.8..last * 1.25).log_scale(), 0.0..top * 1.5),
    )?;
    drawing(
        chart
            .configure_mesh()
            .x_desc("pages (log scale)")
            .y_desc("ns per operation")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw(),
    )?;
    for (index, summary) in bench.ops.iter().enumerate() {
        let color = Palette99::pick(index).to_rgba();
        let rows: Vec<_> = bench.rows.iter().filter(|r| r.op == summary.op).collect();
        let label = format!(
            "{} (scaling {:.2}x, {:.2} ESSA/op)",
            summary.op, summary.scaling, summary.essa_per_op
        );
        drawing(chart.draw_series(LineSeries::new(
            rows.iter().map(|r| (r.pages as f64, r.ns_per_op.median)),
            color.stroke_width(2),
        )))?
        .label(label)
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
        drawing(
            chart.draw_series(
                rows.iter()
                    .map(|r| Circle::new((r.pages as f64, r.ns_per_op.median), 3, color.filled())),
            ),
        )?;
        drawing(chart.draw_series(rows.iter().map(|r| {
            let x = r.pages as f64;
            PathElement::new([(x, r.ns_per_op.min), (x, r.ns_per_op.max)], color)
        })))?;
    }
    legend(&mut chart)?;
    Ok(())
}

/// The series legend, top right, as both charts draw it.
fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    drawing(
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw(),
    )
}

/// Grouped bars: frames dropped without I/O, paged out and refaulted, hinting on and off.
pub fn pressure_chart(bench: &PressureBench, path: &Path) -> Result<()> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    draw_pressure(&root, bench)?;
    drawing(root.present()).with_context(|| format!("writing {}", path.display()))
}

fn draw_pressure<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    bench: &PressureBench,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    drawing(root.fill(&WHITE))?;
    let (on, off) = (&bench.hinting_on, &bench.hinting_off);
    let groups = [
        (
            "dropped without I/O",
            on.dropped_without_io,
            off.dropped_without_io,
        ),
        ("paged out (host I/O)", on.paged_out, off.paged_out),
        ("guest refaults", on.guest_refaults, off.guest_refaults),
    ];
    let top = groups
        .iter()
        .map(|(_, a, b)| a.max.max(b.max))
        .fold(1.0, f64::max);
    // The category names sit below zero, inside the plot, so no axis labels are needed.
    let floor = -top * 0.08;
    let mut chart = drawing(
        ChartBuilder::on(root)
            .caption(
                format!(
                    "host reclaims {:.0} page-cache frames: hinting on vs off",
                    on.cache_frames.median
                ),
                ("sans-serif", 20),
            )
            .margin(12)
            .x_label_area_size(10)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..groups.len() as f64, floor..top * 1.3),
    )?;
    drawing(
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_desc("frames (median)")
            .y_label_formatter(&|y| {
                if *y < 0.0 {
                    String::new()
                } else {
                    format!("{y:.0}")
                }
            })
            .draw(),
    )?;
    let sides = [
        ("hinting on (cmma=model)", 0usize),
        ("hinting off (cmma=off)", 1),
    ];
    for (name, side) in sides {
        let color = Palette99::pick(side).to_rgba();
        let left = 0.12 + side as f64 * 0.38;
        let bars = groups.iter().enumerate().map(|(group, (_, on, off))| {
            let value = if side == 0 { on.median } else { off.median };
            let x = group as f64 + left;
            Rectangle::new([(x, 0.0), (x + 0.36, value)], color.filled())
        });
        drawing(chart.draw_series(bars))?
            .label(name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
        let values = groups.iter().enumerate().map(|(group, (_, on, off))| {
            let value = if side == 0 { on.median } else { off.median };
            Text::new(
                format!("{value:.0}"),
                (group as f64 + left + 0.1, value + top * 0.06),
                ("sans-serif", 14),
            )
        });
        drawing(chart.draw_series(values))?;
    }
    let names = groups.iter().enumerate().map(|(group, (name, _, _))| {
        Text::new(
            name.to_string(),
            (group as f64 + 0.2, floor * 0.35),
            ("sans-serif", 15),
        )
    });
    drawing(chart.draw_series(names))?;
    legend(&mut chart)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::Stats;
    use crate::bench::mm::{self, MmSample};
    use crate::bench::pressure::PressureSide;

    fn mm_bench() -> MmBench {
        let run: Vec<MmSample> = mm::ESSA_MINIMUM
            .iter()
            .flat_map(|m| {
                SIZES.map(|pages| MmSample {
                    op: m.op.to_string(),
                    pages,
                    ns_per_op: 1000 + pages / 100,
                    essa_per_op: m.minimum,
                })
            })
            .collect();
        let (rows, ops) = mm::summarize(&[run]).unwrap();
        MmBench {
            qemu: String::new(),
            machine: String::new(),
            kernel_args: Vec::new(),
            repeat: 1,
            rows,
            ops,
            scaling_goal: mm::SCALING_GOAL,
        }
    }

    #[test]
    fn the_mm_chart_has_a_line_and_a_legend_entry_per_operation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(MM_FILE);
        mm_chart(&mm_bench(), &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
        for op in mm::ESSA_MINIMUM.map(|m| m.op) {
            assert!(
                svg.contains(&format!("\n{op} (scaling ")),
                "legend for {op}"
            );
        }
        assert!(svg.contains("100000"), "the 100k tick label");
        assert!(svg.matches("<polyline").count() >= 6);
    }

    #[test]
    fn the_pressure_chart_has_both_sides() {
        let stats = |v: f64| Stats {
            min: v,
            median: v,
            max: v,
        };
        let side = |dropped, paged| PressureSide {
            cache_frames: stats(1024.0),
            dropped_without_io: stats(dropped),
            paged_out: stats(paged),
            guest_refaults: stats(dropped),
        };
        let bench = PressureBench {
            qemu: String::new(),
            machine: String::new(),
            kernel_args: Vec::new(),
            repeat: 1,
            hinting_on: side(1000.0, 24.0),
            hinting_off: side(0.0, 1024.0),
            page_outs_avoided: 1000.0,
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PRESSURE_FILE);
        pressure_chart(&bench, &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        for text in [
            "hinting on (cmma=model)",
            "hinting off (cmma=off)",
            "dropped without I/O",
            "\n1000\n",
            "\n24\n",
        ] {
            assert!(svg.contains(text), "{text} missing");
        }
    }

    #[test]
    fn an_unwritable_path_is_an_error() {
        let error = mm_chart(&mm_bench(), Path::new("/nonexistent/dir/x.svg"));
        assert!(error.is_err());
    }
}
