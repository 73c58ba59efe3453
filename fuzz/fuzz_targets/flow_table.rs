#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tapstream_fuzz::flow_table(data));
