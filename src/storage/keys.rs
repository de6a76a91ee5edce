//! Idempotency keys in the database: the answer codes the key functions return, and the
//! deletion of expired keys.

use super::pg::{Client, StatementDef, Type};
use super::{only_row, StoreError};
use crate::domain::idempotency::Keyed;

pub(crate) static SWEEP_KEYS: StatementDef = StatementDef {
    name: "sweep_keys",
    sql: "SELECT gavel_sweep_keys($1)",
    param_types: &[Type::INT4],
};

/// What a key function says of a request: decided now (0), replayed (1), key reused (2).
pub(crate) fn keyed_from_code(code: i16) -> Result<Keyed<()>, StoreError> {
    match code {
        0 => Ok(Keyed::Fresh(())),
        1 => Ok(Keyed::Replayed(())),
        2 => Ok(Keyed::Reused),
        _ => Err(StoreError::internal("unknown replay code")),
    }
}

/// Deletes up to `limit` expired idempotency keys; returns how many went.
pub fn sweep_keys(client: &Client, limit: i32) -> Result<i32, StoreError> {
    let rows = client.query(&SWEEP_KEYS, &[&limit])?;
    let row = only_row(&rows, &SWEEP_KEYS)?;
    Ok(row.get(0)?)
}
