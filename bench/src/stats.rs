//! Latency samples and error counts, gathered per task and merged at the end.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// Latency samples in microseconds. Each task keeps its own and they are merged once, so
/// recording costs a push and percentiles are exact.
#[derive(Default)]
pub struct Latencies {
    us: Vec<u32>,
}

impl Latencies {
    pub fn record(&mut self, d: Duration) {
        self.us.push(d.as_micros().min(u32::MAX as u128) as u32);
    }

    pub fn merge(&mut self, other: Latencies) {
        self.us.extend(other.us);
    }

    pub fn len(&self) -> usize {
        self.us.len()
    }

    /// p50, p90, p99, p99.9 and max as JSON (all in µs; null with no samples).
    pub fn summary(mut self, prefix: &str) -> Value {
        self.us.sort_unstable();
        let pick = |q: f64| -> Value {
            if self.us.is_empty() {
                return Value::Null;
            }
            // Nearest rank: the smallest sample with at least q of all samples at or below it.
            let rank = ((q * self.us.len() as f64).ceil() as usize).clamp(1, self.us.len());
            json!(self.us[rank - 1])
        };
        json!({
            format!("{prefix}p50_us"): pick(0.50),
            format!("{prefix}p90_us"): pick(0.90),
            format!("{prefix}p99_us"): pick(0.99),
            format!("{prefix}p999_us"): pick(0.999),
            format!("{prefix}max_us"): pick(1.0),
        })
    }
}

/// Errors counted by their message, so ten thousand identical failures print as one line.
#[derive(Default)]
pub struct Errors {
    by_message: BTreeMap<String, u64>,
}

impl Errors {
    pub fn add(&mut self, message: impl Into<String>) {
        *self.by_message.entry(message.into()).or_default() += 1;
    }

    pub fn merge(&mut self, other: Errors) {
        for (m, n) in other.by_message {
            *self.by_message.entry(m).or_default() += n;
        }
    }

    pub fn total(&self) -> u64 {
        self.by_message.values().sum()
    }

    /// `{"message": count}` for the ten most frequent messages.
    pub fn to_json(&self) -> Value {
        let mut v: Vec<_> = self.by_message.iter().collect();
        v.sort_by(|a, b| b.1.cmp(a.1));
        Value::Object(
            v.into_iter()
                .take(10)
                .map(|(m, n)| (m.clone(), json!(n)))
                .collect(),
        )
    }
}

/// Seconds as a JSON number rounded to milliseconds.
pub fn secs(d: Duration) -> Value {
    json!((d.as_secs_f64() * 1000.0).round() / 1000.0)
}

/// `count / seconds`, rounded to one decimal.
pub fn rate(count: u64, d: Duration) -> Value {
    if d.is_zero() {
        return Value::Null;
    }
    json!((count as f64 / d.as_secs_f64() * 10.0).round() / 10.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let mut l = Latencies::default();
        for us in (1..=100).rev() {
            l.record(Duration::from_micros(us));
        }
        let s = l.summary("");
        assert_eq!(s["p50_us"], 50);
        assert_eq!(s["p99_us"], 99);
        assert_eq!(s["max_us"], 100);
        assert_eq!(Latencies::default().summary("x_")["x_p50_us"], Value::Null);
    }

    #[test]
    fn errors_grouped() {
        let mut a = Errors::default();
        a.add("refused");
        let mut b = Errors::default();
        b.add("refused");
        b.add("timeout");
        a.merge(b);
        assert_eq!(a.total(), 3);
        assert_eq!(a.to_json(), json!({"refused": 2, "timeout": 1}));
    }
}
