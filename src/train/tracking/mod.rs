//! Everything a training run tells W&B besides its metrics rows: system metrics, console
//! output, prediction tables, checkpoints (as model artifacts), and the guard that always
//! finishes the run with the right exit code.

pub mod checkpoint;
pub mod console;
pub mod guard;
pub mod sysmetrics;
pub mod table;
pub mod uploads;

use serde_json::Value;

/// An f32 metric as JSON by its shortest decimal form: `0.02f32` becomes `0.02`, not the
/// `0.019999999552965164` that widening to f64 gives. Non-finite values become `null`.
pub fn f32_json(value: f32) -> Value {
    value
        .to_string()
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn f32_metrics_keep_their_short_form() {
        assert_eq!(f32_json(0.02), json!(0.02));
        assert_eq!(f32_json(1.0), json!(1.0));
        assert_eq!(f32_json(3.4028235e38), json!(3.4028235e38));
        assert_eq!(f32_json(f32::NAN), Value::Null);
        assert_eq!(f32_json(f32::INFINITY), Value::Null);
    }
}
