//! PNG plots of the simulation's figures (plotters, bitmap backend, embedded DejaVu Sans so the
//! output does not depend on the system's fonts).

use std::path::Path;
use std::sync::OnceLock;

use crate::{FigureResult, Row};
use plotters::prelude::*;
use plotters::style::FontStyle;

/// DejaVu Sans (Bitstream Vera license, free to embed).
const FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
const FONT_NAME: &str = "sans-serif";

/// Plot size in pixels.
pub const SIZE: (u32, u32) = (1000, 700);

/// Colours for non-model series (matplotlib's tab10).
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Why a figure could not be plotted.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The embedded font did not load.
    #[error("the embedded DejaVu Sans font could not be loaded")]
    Font,
    /// The figure has nothing to draw.
    #[error("figure {0} has no rows to plot")]
    Empty(String),
    /// Drawing or writing the PNG failed.
    #[error("drawing figure {figure} into {path} failed: {detail}")]
    Draw {
        /// The figure.
        figure: String,
        /// The PNG file.
        path: String,
        /// What failed.
        detail: String,
    },
}

/// Registers the embedded font once.
fn register_font() -> Result<(), PlotError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED
        .get_or_init(|| plotters::style::register_font(FONT_NAME, FontStyle::Normal, FONT).is_ok());
    if ok {
        Ok(())
    } else {
        Err(PlotError::Font)
    }
}

/// A series' colour: fixed per trust model, the palette otherwise.
fn colour(series: &str, index: usize) -> RGBColor {
    if series.starts_with("neutral") {
        PALETTE[0]
    } else if series.starts_with("optimistic") {
        PALETTE[2]
    } else if series.starts_with("pessimistic") {
        PALETTE[3]
    } else {
        PALETTE[index % PALETTE.len()]
    }
}

/// Series in order of first appearance, each with its rows sorted by x.
fn series_of(rows: &[Row]) -> Vec<(String, Vec<&Row>)> {
    let mut out: Vec<(String, Vec<&Row>)> = Vec::new();
    for row in rows {
        match out.iter_mut().find(|(name, _)| *name == row.series) {
            Some((_, list)) => list.push(row),
            None => out.push((row.series.clone(), vec![row])),
        }
    }
    for (_, list) in &mut out {
        list.sort_by(|a, b| a.x.total_cmp(&b.x));
    }
    out
}

fn padded(min: f64, max: f64) -> (f64, f64) {
    let span = (max - min).abs().max(1e-9);
    (min - 0.05 * span, max + 0.05 * span)
}

/// Draws `result` to `path` (PNG, [`SIZE`]): one line per series with its points, a band of ±1
/// standard deviation over runs, axis labels with units, a legend and a footnote with the fixed
/// parameters, horizon and repetitions.
///
/// # Errors
/// If the figure has no rows or drawing/encoding fails.
pub fn plot_figure(result: &FigureResult, path: &Path) -> Result<(), PlotError> {
    register_font()?;
    let spec = &result.spec;
    if result.rows.is_empty() {
        return Err(PlotError::Empty(spec.id.to_string()));
    }
    let draw_err = |e: &dyn std::fmt::Display| PlotError::Draw {
        figure: spec.id.to_string(),
        path: path.display().to_string(),
        detail: e.to_string(),
    };
    let series = series_of(&result.rows);
    let xs = result.rows.iter().map(|r| r.x);
    let (x_min, x_max) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
        (lo.min(x), hi.max(x))
    });
    let (y_min, y_max) = result
        .rows
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), r| {
            (lo.min(r.y - r.y_std), hi.max(r.y + r.y_std))
        });
    let (x_lo, x_hi) = if x_min == x_max {
        (x_min - 1.0, x_max + 1.0)
    } else {
        padded(x_min, x_max)
    };
    let (y_lo, y_hi) = padded(
        y_min.min(if spec.quantity == crate::Quantity::AverageRisk {
            y_min
        } else {
            0.0
        }),
        y_max,
    );

    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| draw_err(&e))?;
    let (plot_area, foot) = root.split_vertically(SIZE.1 - 46);
    let mut chart = ChartBuilder::on(&plot_area)
        .caption(&spec.title, (FONT_NAME, 24))
        .margin(16)
        .x_label_area_size(56)
        .y_label_area_size(76)
        .build_cartesian_2d(x_lo..x_hi, y_lo..y_hi)
        .map_err(|e| draw_err(&e))?;
    chart
        .configure_mesh()
        .x_desc(spec.x_label.as_str())
        .y_desc(spec.y_label.as_str())
        .label_style((FONT_NAME, 16))
        .axis_desc_style((FONT_NAME, 18))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(|e| draw_err(&e))?;

    for (index, (name, rows)) in series.iter().enumerate() {
        let colour = colour(name, index);
        let previous_scale = name.contains("N=W_prev");
        let points: Vec<(f64, f64)> = rows.iter().map(|r| (r.x, r.y)).collect();
        if rows.len() > 1 {
            let mut band: Vec<(f64, f64)> = rows.iter().map(|r| (r.x, r.y + r.y_std)).collect();
            band.extend(rows.iter().rev().map(|r| (r.x, r.y - r.y_std)));
            chart
                .draw_series(std::iter::once(Polygon::new(
                    band,
                    colour.mix(0.10).filled(),
                )))
                .map_err(|e| draw_err(&e))?;
        } else if let Some(r) = rows.first() {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(r.x, r.y - r.y_std), (r.x, r.y + r.y_std)],
                    colour.stroke_width(2),
                )))
                .map_err(|e| draw_err(&e))?;
        }
        let width = if previous_scale { 1 } else { 2 };
        let style = colour.stroke_width(width);
        chart
            .draw_series(LineSeries::new(points.clone(), style))
            .map_err(|e| draw_err(&e))?
            .label(name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], colour.stroke_width(width + 1))
            });
        if previous_scale {
            chart
                .draw_series(
                    points
                        .iter()
                        .map(|p| TriangleMarker::new(*p, 5, colour.filled())),
                )
                .map_err(|e| draw_err(&e))?;
        } else {
            chart
                .draw_series(points.iter().map(|p| Circle::new(*p, 3, colour.filled())))
                .map_err(|e| draw_err(&e))?;
        }
    }
    // Legend where the curves are not: upper left if they rise, upper right if they fall.
    let rising = series
        .iter()
        .filter(|(_, rows)| match (rows.first(), rows.last()) {
            (Some(a), Some(b)) => b.y > a.y,
            _ => false,
        });
    let position = if rising.count() * 2 > series.len() {
        SeriesLabelPosition::UpperLeft
    } else {
        SeriesLabelPosition::UpperRight
    };
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.9))
        .border_style(RGBColor(120, 120, 120))
        .label_font((FONT_NAME, 15))
        .draw()
        .map_err(|e| draw_err(&e))?;

    let notes = [
        format!("Fixed: {}.", spec.fixed),
        format!(
            "Each point: mean of {} runs (band: ±1 standard deviation over runs), base seed {}; real auditor engine, paper mode.",
            spec.runs, spec.seed
        ),
    ];
    for (i, note) in notes.into_iter().enumerate() {
        let y = 4 + 20 * i32::try_from(i).unwrap_or(0);
        foot.draw(&Text::new(
            note,
            (12, y),
            (FONT_NAME, 13).into_font().color(&RGBColor(60, 60, 60)),
        ))
        .map_err(|e| draw_err(&e))?;
    }
    root.present().map_err(|e| draw_err(&e))?;
    Ok(())
}
