//! The SVG plots (plotters, no system fonts needed): test accuracy per epoch, training seconds
//! per epoch by mode (log scale), and the breakdown of secure training time.

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::prelude::*;

/// One line of the accuracy plot: a mode and its accuracy after each epoch.
pub struct Series<'a> {
    /// Legend label.
    pub label: &'a str,
    /// One value per epoch.
    pub values: &'a [f64],
    /// Line width in pixels (a wide line under a thin one keeps identical curves visible).
    pub width: u32,
}

const PALETTE: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
];

fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("plotting: {e}")
}

/// Test accuracy (%) against epoch, one line per mode with data.
pub fn accuracy_per_epoch(path: &Path, series: &[Series<'_>], caption: &str) -> Result<()> {
    let root = SVGBackend::new(path, (720, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let epochs = series
        .iter()
        .map(|s| s.values.len())
        .max()
        .unwrap_or(1)
        .max(1);
    let all: Vec<f64> = series
        .iter()
        .flat_map(|s| s.values.iter().map(|v| 100.0 * v))
        .collect();
    let lo = all.iter().copied().fold(100.0f64, f64::min);
    let lo = (lo - 1.0).clamp(0.0, 99.0).floor();
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(52)
        .build_cartesian_2d(0.5f64..(epochs as f64 + 0.5), lo..100.0)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc("test accuracy (%)")
        .x_labels(epochs.min(10))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()
        .map_err(err)?;
    for (i, s) in series
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.values.is_empty())
    {
        let color = PALETTE[i % PALETTE.len()];
        let width = s.width;
        let pts: Vec<(f64, f64)> = s
            .values
            .iter()
            .enumerate()
            .map(|(e, v)| (e as f64 + 1.0, 100.0 * v))
            .collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(width)))
            .map_err(err)?
            .label(s.label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(width))
            });
        chart
            .draw_series(
                pts.into_iter()
                    .map(|p| Circle::new(p, 2 + width as i32, color.filled())),
            )
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Bars of `values` (labels below), on a log-scale y axis titled `y_desc`; `None` values are
/// left out and named in the caption's note.
pub fn bars_log(
    path: &Path,
    caption: &str,
    y_desc: &str,
    bars: &[(&str, Option<f64>)],
) -> Result<()> {
    let root = SVGBackend::new(path, (720, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let present: Vec<f64> = bars
        .iter()
        .filter_map(|b| b.1)
        .filter(|v| *v > 0.0)
        .collect();
    let lo = present.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = present.iter().copied().fold(0.0f64, f64::max);
    let (lo, hi) = if present.is_empty() {
        (0.1, 1.0)
    } else {
        (lo / 3.0, hi * 3.0)
    };
    let labels: Vec<String> = bars.iter().map(|b| b.0.to_string()).collect();
    let n = bars.len().max(1);
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..n as f64, (lo..hi).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc(y_desc)
        .x_labels(n * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - i as f64 - 0.5).abs() < 0.01 {
                labels.get(i).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .draw()
        .map_err(err)?;
    for (i, (name, v)) in bars.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        match v {
            Some(v) if *v > 0.0 => {
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(i as f64 + 0.2, lo), (i as f64 + 0.8, *v)],
                        color.filled(),
                    )))
                    .map_err(err)?;
                chart
                    .draw_series(std::iter::once(Text::new(
                        format_value(*v),
                        (i as f64 + 0.25, *v * 1.6),
                        ("sans-serif", 14),
                    )))
                    .map_err(err)?;
            }
            _ => {
                chart
                    .draw_series(std::iter::once(Text::new(
                        format!("{name}: not measured"),
                        (i as f64 + 0.1, (lo * hi).sqrt()),
                        ("sans-serif", 14),
                    )))
                    .map_err(err)?;
            }
        }
    }
    root.present().map_err(err)?;
    Ok(())
}

/// Horizontal shares (%) of secure training time, or a placeholder saying why there are none.
pub fn breakdown(path: &Path, caption: &str, parts: &[(&str, f64)], note: &str) -> Result<()> {
    let root = SVGBackend::new(path, (720, 360)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let total: f64 = parts.iter().map(|p| p.1).sum();
    if parts.is_empty() || total <= 0.0 {
        root.draw(&Text::new(
            caption.to_string(),
            (20, 30),
            ("sans-serif", 18),
        ))
        .map_err(err)?;
        root.draw(&Text::new(note.to_string(), (20, 80), ("sans-serif", 14)))
            .map_err(err)?;
        root.present().map_err(err)?;
        return Ok(());
    }
    let n = parts.len();
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(150)
        .build_cartesian_2d(0f64..100.0, 0f64..n as f64)
        .map_err(err)?;
    let labels: Vec<String> = parts.iter().map(|p| p.0.to_string()).collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc("share of secure training time (%)")
        .y_labels(n * 2 + 1)
        .y_label_formatter(&|y| {
            let i = y.floor() as usize;
            if (y - i as f64 - 0.5).abs() < 0.01 {
                labels
                    .get(n.saturating_sub(i + 1))
                    .cloned()
                    .unwrap_or_default()
            } else {
                String::new()
            }
        })
        .draw()
        .map_err(err)?;
    for (k, (_, v)) in parts.iter().enumerate() {
        let i = n - k - 1;
        let share = 100.0 * v / total;
        let color = PALETTE[k % PALETTE.len()];
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(0.0, i as f64 + 0.2), (share, i as f64 + 0.8)],
                color.filled(),
            )))
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(Text::new(
                format!("{share:.1} % ({v:.2} s)"),
                ((share + 1.0).min(80.0), i as f64 + 0.4),
                ("sans-serif", 14),
            )))
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

fn format_value(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0} s")
    } else if v >= 1.0 {
        format!("{v:.1} s")
    } else {
        format!("{v:.3} s")
    }
}
