//! The RESP framer and decoder, against the redis crate.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gavel::fuzzing::resp(data));
