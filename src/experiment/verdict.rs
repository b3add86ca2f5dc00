//! A finished run against the baseline: the verdict on the primary metric (judged against the
//! spread of the baseline's seeds), the key-metrics table with regressions, and the config diff.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use super::keys::{config, metric};
use crate::wandb::Row;

/// Which way a metric improves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Lower is better (losses, latencies).
    Lower,
    /// Higher is better (accuracy, throughput).
    Higher,
}

impl FromStr for Direction {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Self> {
        match text {
            "lower" => Ok(Direction::Lower),
            "higher" => Ok(Direction::Higher),
            _ => anyhow::bail!("unknown direction {text:?}: expected lower or higher"),
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Lower => "lower",
            Direction::Higher => "higher",
        })
    }
}

impl Direction {
    /// Guessed from a metric's name, for the metrics table; `None` when the name says nothing.
    pub fn guess(key: &str) -> Option<Direction> {
        let key = key.to_ascii_lowercase();
        let any = |words: &[&str]| words.iter().any(|w| key.contains(w));
        if any(&[
            "loss",
            "error",
            "perplexity",
            "_ms",
            "latency",
            "time",
            "nll",
        ]) {
            Some(Direction::Lower)
        } else if any(&["acc", "tokens_per_sec", "throughput", "f1", "bleu", "score"]) {
            Some(Direction::Higher)
        } else {
            None
        }
    }

    /// `delta` (run − baseline) as a signed improvement: positive is better.
    fn gain(self, delta: f64) -> f64 {
        match self {
            Direction::Lower => -delta,
            Direction::Higher => delta,
        }
    }
}

/// The outcome of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Better,
    Worse,
    WithinNoise,
    /// No finished baseline run to compare with.
    NoBaseline,
    /// The run (or the baseline) lacks the primary metric.
    NoMetric,
    Failed,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Better => "better",
            Verdict::Worse => "worse",
            Verdict::WithinNoise => "within-noise",
            Verdict::NoBaseline => "no-baseline",
            Verdict::NoMetric => "no-metric",
            Verdict::Failed => "failed",
        }
    }

    /// How the verdict reads in a report.
    pub fn badge(self) -> &'static str {
        match self {
            Verdict::Better => "🟢 better",
            Verdict::Worse => "🔴 worse",
            Verdict::WithinNoise => "⚪ within noise",
            Verdict::NoBaseline => "⚪ no baseline",
            Verdict::NoMetric => "⚪ metric missing",
            Verdict::Failed => "❌ failed",
        }
    }

    /// The PR label that goes with it, if any.
    pub fn label(self) -> Option<&'static str> {
        let index = match self {
            Verdict::Better => 0,
            Verdict::Worse => 1,
            Verdict::Failed => 2,
            _ => return None,
        };
        Some(LABELS[index].0)
    }
}

/// Every label mlwf manages: name, colour, description.
pub const LABELS: &[(&str, &str, &str)] = &[
    (
        "mlwf:better",
        "2da44e",
        "mlwf: the latest run beats the baseline",
    ),
    (
        "mlwf:worse",
        "cf222e",
        "mlwf: the latest run is worse than the baseline",
    ),
    ("mlwf:failed", "6e7781", "mlwf: the latest run failed"),
];

/// The primary metric and how to judge it.
#[derive(Debug, Clone)]
pub struct Judging {
    pub metric: String,
    pub direction: Direction,
    /// Relative change below which a difference is noise, when the baseline has one seed (and
    /// the least band when it has several).
    pub noise_threshold: f64,
}

impl Default for Judging {
    /// The command line's defaults: `val/loss`, lower is better, 1% noise.
    fn default() -> Self {
        Self {
            metric: metric::VAL_LOSS.into(),
            direction: Direction::Lower,
            noise_threshold: 0.01,
        }
    }
}

/// The primary metric of a run against the baseline's seeds.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Comparison {
    pub verdict: Verdict,
    pub value: Option<f64>,
    /// Mean of the baseline seeds' values.
    pub baseline: Option<f64>,
    /// Sample standard deviation of the seeds (with two or more).
    pub spread: Option<f64>,
    pub seeds: usize,
    /// Half-width of the band within which a difference is noise.
    pub noise: Option<f64>,
    /// Run − baseline.
    pub delta: Option<f64>,
    /// Run − baseline, in % of the baseline.
    pub delta_pct: Option<f64>,
}

/// Judges `run`'s summary against the primary metric's values in the baseline seeds.
///
/// The noise band is the larger of `noise_threshold × |baseline|` and twice the seeds'
/// standard deviation: two seeds of the same code differing by x mean a change of x is not
/// evidence of anything.
pub fn compare(run: &Row, seeds: &[f64], judging: &Judging) -> Comparison {
    let value = number(run.get(&judging.metric));
    let seeds: Vec<f64> = seeds.iter().copied().filter(|v| v.is_finite()).collect();
    let mut comparison = Comparison {
        verdict: Verdict::NoBaseline,
        value,
        baseline: None,
        spread: None,
        seeds: seeds.len(),
        noise: None,
        delta: None,
        delta_pct: None,
    };
    if seeds.is_empty() {
        return comparison;
    }
    let mean = seeds.iter().sum::<f64>() / seeds.len() as f64;
    let spread = (seeds.len() >= 2).then(|| {
        let var = seeds.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (seeds.len() - 1) as f64;
        var.sqrt()
    });
    let noise = (judging.noise_threshold * mean.abs()).max(2.0 * spread.unwrap_or(0.0));
    comparison.baseline = Some(mean);
    comparison.spread = spread;
    comparison.noise = Some(noise);
    let Some(value) = value.filter(|v| v.is_finite()) else {
        comparison.verdict = Verdict::NoMetric;
        return comparison;
    };
    let delta = value - mean;
    comparison.delta = Some(delta);
    comparison.delta_pct = (mean != 0.0).then(|| 100.0 * delta / mean.abs());
    comparison.verdict = if delta.abs() <= noise {
        Verdict::WithinNoise
    } else if judging.direction.gain(delta) > 0.0 {
        Verdict::Better
    } else {
        Verdict::Worse
    };
    comparison
}

/// One line of the key-metrics table.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MetricRow {
    pub key: String,
    pub baseline: Option<f64>,
    pub run: Option<f64>,
    pub delta: Option<f64>,
    pub delta_pct: Option<f64>,
    /// Worse than the baseline by more than the noise threshold, in the metric's direction.
    pub regression: bool,
}

/// Summary metrics worth a row: the primary first, then numeric non-internal keys both runs
/// share, then those only one has; at most `limit`.
pub fn metric_rows(run: &Row, baseline: &Row, judging: &Judging, limit: usize) -> Vec<MetricRow> {
    let numeric = |row: &Row| -> BTreeSet<String> {
        row.iter()
            .filter(|(k, v)| !k.starts_with('_') && number(Some(v)).is_some())
            .map(|(k, _)| k.clone())
            .collect()
    };
    let (ours, theirs) = (numeric(run), numeric(baseline));
    let mut keys = vec![judging.metric.clone()];
    keys.extend(ours.intersection(&theirs).cloned());
    keys.extend(ours.symmetric_difference(&theirs).cloned());
    let mut seen = BTreeSet::new();
    keys.retain(|k| seen.insert(k.clone()));
    keys.into_iter()
        .take(limit)
        .map(|key| {
            let run_value = number(run.get(&key));
            let base = number(baseline.get(&key));
            let delta = run_value.zip(base).map(|(r, b)| r - b);
            let delta_pct = delta
                .zip(base)
                .filter(|(_, b)| *b != 0.0)
                .map(|(d, b)| 100.0 * d / b.abs());
            let direction = if key == judging.metric {
                Some(judging.direction)
            } else {
                Direction::guess(&key)
            };
            let regression = match (direction, delta, base) {
                (Some(direction), Some(delta), Some(base)) => {
                    direction.gain(delta) < -(judging.noise_threshold * base.abs())
                }
                (Some(_), None, Some(_)) => run_value.is_some_and(|v| !v.is_finite()),
                _ => false,
            };
            MetricRow {
                key,
                baseline: base,
                run: run_value,
                delta,
                delta_pct,
                regression,
            }
        })
        .collect()
}

/// Config keys whose values differ: `(key, baseline, run)`, sorted by key.
pub fn config_diff(run: &Row, baseline: &Row) -> Vec<(String, Option<Value>, Option<Value>)> {
    let keys: BTreeSet<&String> = run.keys().chain(baseline.keys()).collect();
    keys.into_iter()
        .filter(|k| !k.starts_with('_') && !config::INCIDENTAL.contains(&k.as_str()))
        .filter_map(|k| {
            let (b, r) = (baseline.get(k), run.get(k));
            (b != r).then(|| (k.clone(), b.cloned(), r.cloned()))
        })
        .collect()
}

/// A JSON number, or the strings W&B writes for non-finite floats.
pub fn number(value: Option<&Value>) -> Option<f64> {
    match value? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.as_str() {
            "NaN" | "nan" => Some(f64::NAN),
            "Infinity" | "inf" => Some(f64::INFINITY),
            "-Infinity" | "-inf" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn row(value: Value) -> Row {
        value.as_object().unwrap().clone()
    }

    fn judging() -> Judging {
        Judging::default()
    }

    #[test]
    fn the_seeds_spread_sets_the_noise_band() {
        let seeds = [1.00, 1.04, 0.96];
        let better = compare(&row(json!({"val/loss": 0.80})), &seeds, &judging());
        assert_eq!(better.verdict, Verdict::Better);
        assert_eq!(better.seeds, 3);
        assert!((better.spread.unwrap() - 0.04).abs() < 1e-9);
        assert!((better.noise.unwrap() - 0.08).abs() < 1e-9);
        assert!((better.delta_pct.unwrap() + 20.0).abs() < 1e-9);
        // 5% better, but the seeds differ by 4%: noise.
        let noise = compare(&row(json!({"val/loss": 0.95})), &seeds, &judging());
        assert_eq!(noise.verdict, Verdict::WithinNoise);
        let worse = compare(&row(json!({"val/loss": 1.2})), &seeds, &judging());
        assert_eq!(worse.verdict, Verdict::Worse);
    }

    #[test]
    fn one_seed_uses_the_threshold_and_direction_flips() {
        let higher = Judging {
            metric: "val/accuracy".into(),
            direction: Direction::Higher,
            noise_threshold: 0.05,
        };
        let run = row(json!({"val/accuracy": 0.9}));
        assert_eq!(compare(&run, &[0.8], &higher).verdict, Verdict::Better);
        assert_eq!(
            compare(&run, &[0.88], &higher).verdict,
            Verdict::WithinNoise
        );
        assert_eq!(compare(&run, &[], &higher).verdict, Verdict::NoBaseline);
        let missing = compare(&row(json!({"val/accuracy": "NaN"})), &[0.8], &higher);
        assert_eq!(missing.verdict, Verdict::NoMetric);
    }

    #[test]
    fn metric_rows_flag_regressions_in_each_metrics_direction() {
        let run = row(
            json!({"val/loss": 1.0, "val/accuracy": 0.5, "train/tokens_per_sec": 900.0,
            "_step": 10, "note": "x", "only_run": 1}),
        );
        let base =
            row(json!({"val/loss": 1.1, "val/accuracy": 0.7, "train/tokens_per_sec": 1000.0}));
        let rows = metric_rows(&run, &base, &judging(), 10);
        let keys: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "val/loss",
                "train/tokens_per_sec",
                "val/accuracy",
                "only_run"
            ]
        );
        let flagged: Vec<&str> = rows
            .iter()
            .filter(|r| r.regression)
            .map(|r| r.key.as_str())
            .collect();
        assert_eq!(flagged, ["train/tokens_per_sec", "val/accuracy"]);
    }

    #[test]
    fn config_diff_skips_recorded_noise() {
        let run =
            row(json!({"optim.learning_rate": 0.001, "commit": "a", "train.seed": 1, "new": true}));
        let base = row(json!({"optim.learning_rate": 0.0003, "commit": "b", "train.seed": 1}));
        assert_eq!(
            config_diff(&run, &base),
            vec![
                ("new".to_owned(), None, Some(json!(true))),
                (
                    "optim.learning_rate".to_owned(),
                    Some(json!(0.0003)),
                    Some(json!(0.001))
                ),
            ]
        );
    }
}
