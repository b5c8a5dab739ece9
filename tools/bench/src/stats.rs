//! Percentiles, medians and how a figure is printed.

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    percentile(&sorted, 0.5)
}

/// " (median of 3: 0.67-0.91)" when there was more than one trial, else nothing.
pub fn spread(values: &[f64], decimals: usize) -> String {
    if values.len() < 2 {
        return String::new();
    }
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!(
        " (median of {}: {min:.decimals$}-{max:.decimals$})",
        values.len()
    )
}

/// Latencies in ms, summarised as (p50, p99, max).
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Summary {
    pub fn of(mut ms: Vec<f64>) -> Self {
        ms.sort_by(f64::total_cmp);
        Self {
            p50: percentile(&ms, 0.5),
            p99: percentile(&ms, 0.99),
            max: ms.last().copied().unwrap_or(f64::NAN),
        }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            self.p50, self.p99, self.max
        )
    }
}

/// A target's verdict as the table shows it.
pub fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_series() {
        let s = Summary::of((1..=100).map(f64::from).rev().collect());
        assert_eq!((s.p50, s.p99, s.max), (51.0, 99.0, 100.0));
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(spread(&[0.7, 0.9], 1), " (median of 2: 0.7-0.9)");
        assert!(percentile(&[], 0.5).is_nan());
    }
}
