//! Curves of a run against its baseline as a mermaid `xychart-beta`, which GitHub renders in
//! comments: no image host, no upload.

use std::fmt::Write as _;

use super::markdown::{code_block, num};
use crate::experiment::verdict::number;
use crate::wandb::Row;

/// Points per line: enough to show the shape, few enough to keep the comment small.
const POINTS: usize = 24;

/// `(step, value)` of `key` in history rows, finite values only, in step order.
pub fn series(history: &[Row], key: &str) -> Vec<(f64, f64)> {
    let mut points: Vec<(f64, f64)> = history
        .iter()
        .filter_map(|row| {
            let step = number(row.get("_step"))?;
            let value = number(row.get(key))?;
            value.is_finite().then_some((step, value))
        })
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    points
}

/// A chart of `key` for the run (first line) and the baseline (second), or `None` when the
/// run has fewer than two points of it.
pub fn chart(key: &str, run: &[(f64, f64)], baseline: &[(f64, f64)]) -> Option<String> {
    if run.len() < 2 {
        return None;
    }
    let lines: Vec<&[(f64, f64)]> = [run, baseline]
        .into_iter()
        .filter(|s| s.len() >= 2)
        .collect();
    let first = lines.iter().map(|s| s[0].0).fold(f64::INFINITY, f64::min);
    let last = lines
        .iter()
        .map(|s| s[s.len() - 1].0)
        .fold(f64::NEG_INFINITY, f64::max);
    let grid: Vec<f64> = (0..POINTS)
        .map(|i| first + (last - first) * i as f64 / (POINTS - 1) as f64)
        .collect();
    let sampled: Vec<Vec<f64>> = lines
        .iter()
        .map(|s| grid.iter().map(|&x| interpolate(s, x)).collect())
        .collect();
    let (lo, hi) = sampled
        .iter()
        .flatten()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let pad = ((hi - lo) * 0.05).max(1e-6);
    let mut text = String::from("xychart-beta\n");
    let title = key.replace('"', "'");
    let _ = writeln!(text, "    title \"{title}\"");
    let steps: Vec<String> = grid
        .iter()
        .map(|x| format!("{}", x.round() as i64))
        .collect();
    let _ = writeln!(text, "    x-axis \"step\" [{}]", steps.join(", "));
    let _ = writeln!(
        text,
        "    y-axis \"{title}\" {} --> {}",
        num(lo - pad),
        num(hi + pad)
    );
    for line in &sampled {
        let values: Vec<String> = line.iter().map(|v| num(*v)).collect();
        let _ = writeln!(text, "    line [{}]", values.join(", "));
    }
    Some(code_block("mermaid", &text))
}

/// The value at `x` by linear interpolation, held flat beyond either end.
fn interpolate(points: &[(f64, f64)], x: f64) -> f64 {
    let i = points.partition_point(|p| p.0 < x);
    if i == 0 {
        return points[0].1;
    }
    if i == points.len() {
        return points[i - 1].1;
    }
    let ((x0, y0), (x1, y1)) = (points[i - 1], points[i]);
    if x1 == x0 {
        return y1;
    }
    y0 + (y1 - y0) * (x - x0) / (x1 - x0)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn series_skip_rows_without_the_key_and_non_finite_values() {
        let rows: Vec<Row> = [
            json!({"_step": 2, "val/loss": 1.0}),
            json!({"_step": 0, "val/loss": 2.0}),
            json!({"_step": 1, "train/loss": 3.0}),
            json!({"_step": 3, "val/loss": "NaN"}),
        ]
        .into_iter()
        .map(|v| v.as_object().unwrap().clone())
        .collect();
        assert_eq!(series(&rows, "val/loss"), [(0.0, 2.0), (2.0, 1.0)]);
    }

    #[test]
    fn lines_share_one_step_grid() {
        let run = [(0.0, 2.0), (100.0, 1.0)];
        let base = [(0.0, 2.0), (50.0, 1.5)];
        let text = chart("val/loss", &run, &base).unwrap();
        assert!(text.starts_with("```mermaid\nxychart-beta\n"));
        let lines: Vec<&str> = text.lines().filter(|l| l.contains("line [")).collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].ends_with("1.0000]"), "{}", lines[0]);
        // The baseline is held at its last value past step 50.
        assert!(lines[1].ends_with("1.5000]"), "{}", lines[1]);
        assert!(chart("val/loss", &run[..1], &base).is_none());
        assert_eq!(interpolate(&run, 25.0), 1.75);
    }
}
