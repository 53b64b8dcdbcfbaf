//! Repeated measurements and their medians, and the progress bars every section draws.
//!
//! The machine is shared and noisy: every figure is the median of several repetitions, and the
//! report keeps the minimum and maximum beside it.

use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

/// The spread of one repeated measurement, in the unit its name says.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    /// Median over the repetitions.
    pub median: f64,
    /// Fastest repetition.
    pub min: f64,
    /// Slowest repetition.
    pub max: f64,
    /// Repetitions.
    pub reps: usize,
}

/// The median of `values` (the mean of the two middle ones for an even count).
///
/// # Panics
/// If `values` is empty or contains NaN.
pub fn median(values: &[f64]) -> f64 {
    assert!(!values.is_empty(), "median of nothing");
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN timings"));
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

impl Sample {
    /// Summarises measured values.
    pub fn of(values: &[f64]) -> Self {
        Self {
            median: median(values),
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            reps: values.len(),
        }
    }
}

/// Runs `f` `reps` times and returns the wall time of each run in seconds, multiplied by
/// `scale` (e.g. 1e3 for milliseconds, or 1e6 / k for microseconds per item of a batch of k).
/// The closure's result is checked by the caller on the first run (it returns it).
pub fn time_reps<T>(
    reps: usize,
    scale: f64,
    bar: &ProgressBar,
    mut f: impl FnMut() -> anyhow::Result<T>,
) -> anyhow::Result<(Sample, T)> {
    let mut values = Vec::with_capacity(reps);
    let mut first = None;
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        let out = f()?;
        values.push(t.elapsed().as_secs_f64() * scale);
        first.get_or_insert(out);
        bar.inc(1);
    }
    let out = first.ok_or_else(|| anyhow::anyhow!("no repetition ran"))?;
    Ok((Sample::of(&values), out))
}

/// Shortest wall time of one sample of [`time_fast`]: long enough that timer resolution,
/// cold caches and CPU frequency ramps do not dominate a sub-millisecond operation.
const MIN_SAMPLE_SECONDS: f64 = 0.02;

/// Like [`time_reps`] for fast operations: one untimed warm-up call (whose result is
/// returned), then `reps` samples, each running `f` as often as fills
/// [`MIN_SAMPLE_SECONDS`] and recording the mean time per call. This is what criterion does
/// (warm-up, then iterations per sample), so the two harnesses agree on microsecond figures.
pub fn time_fast<T>(
    reps: usize,
    scale: f64,
    bar: &ProgressBar,
    mut f: impl FnMut() -> anyhow::Result<T>,
) -> anyhow::Result<(Sample, T)> {
    let t = Instant::now();
    let first = f()?;
    let warm = t.elapsed().as_secs_f64().max(1e-9);
    let iters = (MIN_SAMPLE_SECONDS / warm).ceil().clamp(1.0, 1e6) as usize;
    let mut values = Vec::with_capacity(reps);
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        for _ in 0..iters {
            std::hint::black_box(f()?);
        }
        values.push(t.elapsed().as_secs_f64() / iters as f64 * scale);
        bar.inc(1);
    }
    Ok((Sample::of(&values), first))
}

/// A bar with `len` steps, a section prefix and a message slot.
pub fn bar(prefix: &str, len: u64) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>12} [{bar:30.cyan/blue}] {pos:>4}/{len} {msg} ({elapsed}, ETA {eta})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(prefix.to_string());
    bar
}

/// Prints a section heading (above any bar).
pub fn section(title: &str, what: &str) {
    println!("\n== {title} ==\n{what}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        let s = Sample::of(&[5.0, 1.0, 9.0]);
        assert_eq!((s.median, s.min, s.max, s.reps), (5.0, 1.0, 9.0, 3));
    }
}
