//! Helpers for unit tests.

/// A xorshift64 generator: cheap, reproducible pseudo-random numbers for tests that feed parsers
/// arbitrary input.
pub(crate) fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    }
}
