//! Pages of a list, and what a bids page asks for.

/// A page of results plus whether more rows followed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub more: bool,
}

impl<T> Page<T> {
    /// A page of at most `limit` items from the `limit + 1` fetched: the extra one only says
    /// that more follow.
    pub fn from_fetched(mut items: Vec<T>, limit: i64) -> Page<T> {
        let limit = usize::try_from(limit).unwrap_or(0);
        let more = items.len() > limit;
        items.truncate(limit);
        Page { items, more }
    }
}

/// What a bids page asks for: the auction, how many bids and below which id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PageQuery {
    pub auction_id: i64,
    pub before_id: Option<i64>,
    pub limit: i64,
}

#[cfg(test)]
mod tests {
    use super::Page;

    #[test]
    fn the_extra_item_fetched_only_says_more_follow() {
        let at = Page::from_fetched(vec![1, 2, 3], 3);
        assert_eq!((at.items, at.more), (vec![1, 2, 3], false));
        let past = Page::from_fetched(vec![1, 2, 3, 4], 3);
        assert_eq!((past.items, past.more), (vec![1, 2, 3], true));
    }
}
