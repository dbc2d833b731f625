#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| secretdrop::fuzz_entry::admission(data));
