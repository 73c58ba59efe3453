#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tapstream_fuzz::eve_roundtrip(data));
