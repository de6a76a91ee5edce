//! Pages of a list, and what a bids page asks for.

/// A page of results plus whether more rows followed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub more: bool,
}

/// What a bids page asks for: the auction, how many bids and below which id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PageQuery {
    pub auction_id: i64,
    pub before_id: Option<i64>,
    pub limit: i64,
}
