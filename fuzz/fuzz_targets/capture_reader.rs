#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tapstream_fuzz::capture_reader(data));
