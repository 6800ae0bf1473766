//! Fuzz stage: delta debugging (ddmin) over a failing session's steps, against the live target.

use std::future::Future;

/// Shrink `items` to a smaller list that still makes `still_fails` true,
/// with at most `budget` tests (Zeller's ddmin: remove chunks, halving the
/// chunk size when no chunk can go; ends 1-minimal when the budget allows).
pub async fn ddmin<T: Clone, F, Fut>(
    items: Vec<T>,
    budget: usize,
    mut still_fails: F,
) -> (Vec<T>, usize)
where
    F: FnMut(Vec<T>) -> Fut,
    Fut: Future<Output = bool>,
{
    let mut cur = items;
    let mut n = 2usize;
    let mut tests = 0usize;
    while !cur.is_empty() && tests < budget {
        let len = cur.len();
        let chunk = len.div_ceil(n);
        let mut reduced = false;
        let mut start = 0;
        while start < len && tests < budget {
            let cand: Vec<T> = cur[..start]
                .iter()
                .chain(&cur[(start + chunk).min(len)..])
                .cloned()
                .collect();
            tests += 1;
            if still_fails(cand.clone()).await {
                cur = cand;
                n = n.saturating_sub(1).max(2);
                reduced = true;
                break;
            }
            start += chunk;
        }
        if !reduced {
            if chunk <= 1 {
                break;
            }
            n = (n * 2).min(len);
        }
    }
    (cur, tests)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn ddmin_finds_the_two_steps_that_matter() {
        let items: Vec<u32> = (0..40).collect();
        let (min, tests) = block_on(ddmin(items, 500, |c: Vec<u32>| async move {
            c.contains(&7) && c.contains(&31)
        }));
        assert_eq!(min, vec![7, 31]);
        assert!(tests < 200, "{tests}");
    }

    #[test]
    fn ddmin_keeps_the_order_and_respects_the_budget() {
        let items: Vec<u32> = (0..64).collect();
        let (min, tests) = block_on(ddmin(items.clone(), 3, |c: Vec<u32>| async move {
            c.contains(&5)
        }));
        assert!(tests <= 3);
        assert!(min.contains(&5));
        assert!(min.windows(2).all(|w| w[0] < w[1]));
        // A failure that needs everything stays whole.
        let (all, _) = block_on(ddmin(items.clone(), 100, |c: Vec<u32>| async move {
            c.len() == 64
        }));
        assert_eq!(all, items);
    }
}
