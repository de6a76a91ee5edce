//! The HTTP request head: scanner and parser, against httparse.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gavel::fuzzing::head(data));
