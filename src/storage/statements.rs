//! Every statement Gavel prepares on its connections. Each one is declared beside the call that
//! runs it; a statement missing here fails its call with a clear error, which every storage test
//! would meet.

use super::pg::{Client, StatementDef, Statements};
use super::StoreError;
use super::{auctions, bid_pages, bids, history, keys};

pub(crate) static PING: StatementDef = StatementDef {
    name: "ping",
    sql: "SELECT 1::int4",
    param_types: &[],
};

/// Prepared on every connection of the server, in this order.
pub static STATEMENTS: Statements = &[
    &PING,
    &auctions::GET_AUCTION,
    &auctions::GET_AUCTIONS,
    &auctions::INSERT_AUCTION,
    &auctions::LIST_ALL,
    &auctions::LIST_SCHEDULED,
    &auctions::LIST_OPEN,
    &auctions::LIST_CLOSED,
    &auctions::CREATE_AUCTION_KEYED,
    &auctions::STORED_AUCTION,
    &bids::PLACE_BIDS,
    &bid_pages::LIST_BIDS,
    &bid_pages::LIST_BIDS_BEFORE,
    &bid_pages::LIST_BIDS_MANY,
    &keys::SWEEP_KEYS,
    &history::AUCTION_HISTORY,
    &history::AUCTION_HISTORIES,
];

/// One round trip that proves the connection and the server answer.
pub fn ping(client: &Client) -> Result<(), StoreError> {
    client.query(&PING, &[])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::STATEMENTS;

    #[test]
    fn every_statement_is_listed_once_under_its_own_name() {
        for (i, s) in STATEMENTS.iter().enumerate() {
            assert!(!s.name.is_empty());
            for other in &STATEMENTS[..i] {
                assert!(!std::ptr::eq(*s, *other), "{} listed twice", s.name);
                assert_ne!(s.name, other.name);
            }
        }
    }
}
