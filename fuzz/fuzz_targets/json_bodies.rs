//! Bid and auction JSON bodies, with their money and time fields.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gavel::fuzzing::json_bodies(data));
