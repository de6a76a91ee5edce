//! PostgreSQL backend messages through the splitter and the reply demultiplexer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gavel::fuzzing::pg_messages(data));
