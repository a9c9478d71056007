#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| airlock_detect::fuzz::stream_equivalence(data));
