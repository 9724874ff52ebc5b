//! How a workload picks the accounts of its transfers: uniformly among `count` accounts, or by
//! Zipf's law with exponent 1 (account `k` with weight `1 / k`), as the history benches measure
//! both.

use crate::Rng;

/// A way of choosing account ids `1..=count`.
pub enum AccountPicker {
    /// Every account equally likely.
    Uniform {
        /// Accounts to choose from.
        count: u64,
    },
    /// Account `k` (1-based) with weight `1 / k`; `cdf[k - 1]` is the probability of choosing an
    /// account at most `k`.
    Zipfian {
        /// The cumulative distribution, ascending, ending at 1.
        cdf: Vec<f64>,
    },
}

impl AccountPicker {
    /// Zipf's law over `count` accounts (at least 1).
    pub fn zipfian(count: usize) -> AccountPicker {
        assert!(count > 0, "zipfian(0) has no account to pick");
        let mut cdf = Vec::with_capacity(count);
        let mut sum = 0.0;
        for rank in 1..=count {
            sum += 1.0 / rank as f64;
            cdf.push(sum);
        }
        for value in &mut cdf {
            *value /= sum;
        }
        AccountPicker::Zipfian { cdf }
    }

    /// An account id, never 0.
    pub fn pick(&self, rng: &mut Rng) -> u128 {
        match self {
            AccountPicker::Uniform { count } => u128::from(rng.below(*count)) + 1,
            AccountPicker::Zipfian { cdf } => {
                let u = rng.unit();
                cdf.partition_point(|&p| p < u).min(cdf.len() - 1) as u128 + 1
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::AccountPicker;
    use crate::Rng;

    #[test]
    fn picks_stay_in_range_and_zipfian_favours_low_ranks() {
        let mut rng = Rng::new(7);
        let uniform = AccountPicker::Uniform { count: 10 };
        let zipfian = AccountPicker::zipfian(1000);
        let mut first = 0;
        for _ in 0..10_000 {
            assert!((1..=10).contains(&uniform.pick(&mut rng)));
            let account = zipfian.pick(&mut rng);
            assert!((1..=1000).contains(&account));
            first += u32::from(account == 1);
        }
        // P(1) = 1 / H(1000), about 0.134.
        assert!(
            (1100..1600).contains(&first),
            "account 1 picked {first} times"
        );
    }
}
