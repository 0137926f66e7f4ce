//! Which products a recommendation carries, and whether the period allows one: pure.

use std::collections::{BTreeSet, HashSet};

use chrono::{DateTime, Duration, Utc};

use super::Product;
use super::ports::View;

/// The last `n` distinct products viewed, most recent first, never one the person bought.
pub fn pick(views: &[View], bought: &BTreeSet<String>, n: usize) -> Vec<Product> {
    let mut ordered: Vec<&View> = views.iter().collect();
    // Stable: views at the same instant keep their arrival order, the later one first once reversed.
    ordered.sort_by_key(|v| v.at);
    let mut seen = HashSet::new();
    ordered
        .into_iter()
        .rev()
        .filter(|v| !bought.contains(&v.product.id))
        .filter(|v| seen.insert(v.product.id.clone()))
        .take(n)
        .map(|v| v.product.clone())
        .collect()
}

/// Whether a recommendation may go out at `now`: none yet, or the last one a whole period ago.
pub fn period_allows(last: Option<DateTime<Utc>>, period: Duration, now: DateTime<Utc>) -> bool {
    last.is_none_or(|at| now - at >= period)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(id: &str, secs: i64) -> View {
        View {
            event_id: format!("e-{id}-{secs}"),
            at: DateTime::from_timestamp(1_764_000_000 + secs, 0).unwrap(),
            product: Product {
                id: id.into(),
                name: format!("Produto {id}"),
                url: None,
                image_url: None,
                price: None,
                currency: None,
                category: None,
            },
        }
    }

    #[test]
    fn the_last_distinct_products_come_most_recent_first_without_bought_ones() {
        let views = [
            view("a", 1),
            view("b", 2),
            view("a", 3),
            view("c", 4),
            view("d", 5),
        ];
        let bought = BTreeSet::from(["d".to_string()]);
        let ids: Vec<String> = pick(&views, &bought, 2).into_iter().map(|p| p.id).collect();
        assert_eq!(ids, ["c", "a"]);
        let all: Vec<String> = pick(&views, &BTreeSet::new(), 10)
            .into_iter()
            .map(|p| p.id)
            .collect();
        assert_eq!(all, ["d", "c", "a", "b"]);
    }

    #[test]
    fn one_recommendation_per_period() {
        let now = DateTime::from_timestamp(1_764_000_000, 0).unwrap();
        let day = Duration::hours(24);
        assert!(period_allows(None, day, now));
        assert!(!period_allows(Some(now - Duration::hours(23)), day, now));
        assert!(period_allows(Some(now - day), day, now));
    }
}
