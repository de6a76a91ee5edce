//! Money and RFC 3339 time texts: exact parsing against a reference, and round trips.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gavel::fuzzing::money(data));
