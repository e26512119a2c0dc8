//! Percentiles over collected samples.

use std::time::Duration;

/// Samples in milliseconds, sorted once for any number of percentiles.
pub struct Millis {
    sorted: Vec<f64>,
}

impl Millis {
    pub fn new(samples: &[Duration]) -> Millis {
        let mut sorted: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        sorted.sort_by(f64::total_cmp);
        Millis { sorted }
    }

    /// Nearest-rank percentile (`p` in 0..=100); 0 without samples.
    pub fn percentile(&self, p: f64) -> f64 {
        if self.sorted.is_empty() {
            return 0.0;
        }
        let rank = (p / 100.0 * self.sorted.len() as f64).ceil() as usize;
        self.sorted[rank.clamp(1, self.sorted.len()) - 1]
    }

    pub fn max(&self) -> f64 {
        self.sorted.last().copied().unwrap_or(0.0)
    }

    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let ms = Millis::new(&samples);
        assert_eq!(ms.percentile(50.0), 50.0);
        assert_eq!(ms.percentile(99.0), 99.0);
        assert_eq!(ms.percentile(100.0), 100.0);
        assert_eq!(ms.percentile(0.0), 1.0);
        assert_eq!(Millis::new(&[]).percentile(50.0), 0.0);
    }
}
