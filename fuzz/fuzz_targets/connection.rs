//! A whole connection on an in-memory stream: split reads, pipelining against requests one by one.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gavel::fuzzing::connection(data));
