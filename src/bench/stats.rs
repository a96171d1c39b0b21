//! Figures of one scenario: requests, throughput, resources per second and latency percentiles.

use std::time::Duration;

pub struct Sample {
    requests: usize,
    errors: usize,
    resources: u64,
    elapsed: Duration,
    /// Latencies of the successful requests, sorted.
    latencies: Vec<Duration>,
}

impl Sample {
    /// From `(latency, ok, resources)` per request and the wall time the scenario ran.
    pub fn from_outcomes(outcomes: Vec<(Duration, bool, u64)>, elapsed: Duration) -> Sample {
        let requests = outcomes.len();
        let errors = outcomes.iter().filter(|o| !o.1).count();
        let resources = outcomes.iter().filter(|o| o.1).map(|o| o.2).sum();
        let mut latencies: Vec<Duration> = outcomes.iter().filter(|o| o.1).map(|o| o.0).collect();
        latencies.sort_unstable();
        Sample {
            requests,
            errors,
            resources,
            elapsed,
            latencies,
        }
    }

    /// The latency below which `p` percent of successful requests finished (nearest rank).
    pub fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * self.latencies.len() as f64).ceil() as usize;
        self.latencies[rank.clamp(1, self.latencies.len()) - 1]
    }

    pub fn header() -> String {
        format!(
            "{:<12} {:>9} {:>10} {:>12} {:>9} {:>9} {:>9} {:>9} {:>7}",
            "scenario",
            "requests",
            "req/s",
            "resources/s",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "max ms",
            "errors"
        )
    }

    pub fn row(&self, name: &str) -> String {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        format!(
            "{:<12} {:>9} {:>10.0} {:>12.0} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>7}",
            name,
            self.requests,
            (self.requests - self.errors) as f64 / secs,
            self.resources as f64 / secs,
            ms(self.percentile(50.0)),
            ms(self.percentile(95.0)),
            ms(self.percentile(99.0)),
            // a closed-loop sender waits out a stall once, so percentiles hide stalls: the
            // slowest answer shows them (a checkpoint holding the SQLite writer, say)
            ms(self.percentile(100.0)),
            self.errors
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank_over_successes() {
        let ms = Duration::from_millis;
        let mut outcomes: Vec<(Duration, bool, u64)> =
            (1..=100).map(|i| (ms(i), true, 1)).collect();
        outcomes.push((ms(10_000), false, 0));
        let s = Sample::from_outcomes(outcomes, Duration::from_secs(2));
        assert_eq!(s.percentile(50.0), ms(50));
        assert_eq!(s.percentile(95.0), ms(95));
        assert_eq!(s.percentile(99.0), ms(99));
        assert_eq!(s.percentile(100.0), ms(100));
        assert_eq!((s.requests, s.errors, s.resources), (101, 1, 100));
        assert!(s.row("x").contains("   50.00"), "{}", s.row("x"));
    }
}
