//! Weighted fair shares with the largest-remainder method.

/// One eligible node as the target computation sees it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Share {
    pub(super) weight: u32,
    pub(super) current: u32,
}

/// Splits `partitions` over `shares` in proportion to weight: each gets `floor` or `ceil` of
/// its exact share, and the leftover goes to the largest remainders. Ties go to the node that
/// already holds more (fewer moves), then to the earlier node (deterministic).
pub(super) fn fair_targets(partitions: u32, shares: &[Share]) -> Vec<u32> {
    let weight_sum: u128 = shares.iter().map(|s| u128::from(s.weight)).sum();
    if weight_sum == 0 {
        return vec![0; shares.len()];
    }
    let mut targets = Vec::with_capacity(shares.len());
    let mut remainders = Vec::with_capacity(shares.len());
    for (i, share) in shares.iter().enumerate() {
        let exact = u128::from(partitions) * u128::from(share.weight);
        targets.push((exact / weight_sum) as u32);
        remainders.push((exact % weight_sum, share.current, i));
    }
    let assigned: u64 = targets.iter().map(|&t| u64::from(t)).sum();
    let leftover = u64::from(partitions).saturating_sub(assigned) as usize;
    remainders.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
    for &(_, _, i) in remainders.iter().take(leftover) {
        targets[i] += 1;
    }
    targets
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shares(ws: &[u32]) -> Vec<Share> {
        ws.iter()
            .map(|&weight| Share { weight, current: 0 })
            .collect()
    }

    #[test]
    fn splits_evenly_and_by_weight() {
        assert_eq!(fair_targets(10, &shares(&[1, 1])), vec![5, 5]);
        assert_eq!(fair_targets(10, &shares(&[1, 1, 1])), vec![4, 3, 3]);
        assert_eq!(fair_targets(10, &shares(&[1, 4])), vec![2, 8]);
        assert_eq!(fair_targets(0, &shares(&[1, 4])), vec![0, 0]);
        assert_eq!(fair_targets(3, &shares(&[0, 0])), vec![0, 0]);
    }

    #[test]
    fn ties_favour_the_current_holder() {
        let s = [
            Share {
                weight: 1,
                current: 0,
            },
            Share {
                weight: 1,
                current: 3,
            },
        ];
        assert_eq!(fair_targets(3, &s), vec![1, 2]);
    }
}
