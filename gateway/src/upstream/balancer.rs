//! Weighted round-robin over an upstream's nodes.
//!
//! nginx's *smooth* weighted round-robin spreads a heavy node's turns
//! between the others (weights 5,1,1 give `a a b a c a a`, not
//! `a a a a a b c`). Its state changes on every pick, which would need a
//! lock; instead the whole cycle is computed once per configuration and
//! picks walk it with one atomic increment.

use std::cmp::Reverse;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The longest schedule kept. Larger weight sums are scaled down to it,
/// which keeps the ratios to within 1/MAX_SCHEDULE.
const MAX_SCHEDULE: u64 = 4096;

pub(crate) struct Balancer {
    /// Node indices in smooth-WRR order; one full cycle.
    schedule: Box<[u32]>,
    next: AtomicUsize,
}

impl Balancer {
    /// `weights[i]` is node `i`'s weight; zero-weight nodes are never picked.
    pub(crate) fn new(weights: &[u32]) -> Balancer {
        Balancer {
            schedule: smooth_schedule(&reduce(weights)).into_boxed_slice(),
            next: AtomicUsize::new(0),
        }
    }

    /// The next node index; `None` when no node has a weight.
    pub(crate) fn pick(&self) -> Option<usize> {
        if self.schedule.is_empty() {
            return None;
        }
        let turn = self.next.fetch_add(1, Ordering::Relaxed) % self.schedule.len();
        Some(self.schedule[turn] as usize)
    }

    /// The number of picks after which the sequence repeats.
    pub(crate) fn cycle_len(&self) -> usize {
        self.schedule.len()
    }
}

/// Divides the weights by their common divisor, then scales them down if
/// their sum would make the schedule too long (a non-zero weight stays at
/// least 1).
fn reduce(weights: &[u32]) -> Vec<u64> {
    let divisor = weights
        .iter()
        .fold(0, |acc, &w| gcd(acc, u64::from(w)))
        .max(1);
    let reduced: Vec<u64> = weights.iter().map(|&w| u64::from(w) / divisor).collect();
    let total: u64 = reduced.iter().sum();
    if total <= MAX_SCHEDULE {
        return reduced;
    }
    reduced
        .iter()
        .map(|&w| {
            if w == 0 {
                0
            } else {
                (w * MAX_SCHEDULE / total).max(1)
            }
        })
        .collect()
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// One cycle of nginx's smooth weighted round-robin: every node gains its
/// weight, the richest (first on ties) is picked and pays the total.
fn smooth_schedule(weights: &[u64]) -> Vec<u32> {
    let total: u64 = weights.iter().sum();
    let total_signed = i128::from(total);
    let mut current = vec![0i128; weights.len()];
    let mut schedule = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (credit, &weight) in current.iter_mut().zip(weights) {
            *credit += i128::from(weight);
        }
        let best = (0..current.len())
            .filter(|&i| weights[i] > 0)
            .max_by_key(|&i| (current[i], Reverse(i)))
            .unwrap_or(0);
        current[best] -= total_signed;
        schedule.push(best as u32);
    }
    schedule
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picks(balancer: &Balancer, n: usize) -> Vec<usize> {
        (0..n).map(|_| balancer.pick().unwrap()).collect()
    }

    #[test]
    fn matches_nginx_smooth_order() {
        // The sequence from nginx's commit introducing smooth WRR.
        let balancer = Balancer::new(&[5, 1, 1]);
        assert_eq!(picks(&balancer, 7), [0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(
            picks(&balancer, 7),
            [0, 0, 1, 0, 2, 0, 0],
            "the cycle repeats"
        );
    }

    #[test]
    fn distribution_follows_weights() {
        let balancer = Balancer::new(&[3, 2, 0, 5]);
        let mut counts = [0usize; 4];
        for node in picks(&balancer, 10_000) {
            counts[node] += 1;
        }
        assert_eq!(counts, [3000, 2000, 0, 5000]);
    }

    #[test]
    fn common_divisors_shorten_the_cycle() {
        assert_eq!(Balancer::new(&[100, 300]).cycle_len(), 4);
        assert_eq!(Balancer::new(&[7]).cycle_len(), 1);
    }

    #[test]
    fn huge_weights_are_scaled_keeping_ratios() {
        let balancer = Balancer::new(&[u32::MAX, u32::MAX / 3, 1]);
        assert!(balancer.cycle_len() as u64 <= MAX_SCHEDULE + 3);
        let mut counts = [0usize; 3];
        for node in picks(&balancer, balancer.cycle_len()) {
            counts[node] += 1;
        }
        let ratio = counts[0] as f64 / counts[1] as f64;
        assert!((ratio - 3.0).abs() < 0.01, "{counts:?}");
        assert!(counts[2] >= 1, "a tiny weight still gets a turn");
    }

    #[test]
    fn no_weight_no_pick() {
        assert_eq!(Balancer::new(&[]).pick(), None);
        assert_eq!(Balancer::new(&[0, 0]).pick(), None);
    }
}
