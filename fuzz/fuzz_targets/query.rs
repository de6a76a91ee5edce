//! Query strings: parsing, and percent-encoded values coming back as themselves.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gavel::fuzzing::query(data));
