#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| airlock_policy::fuzz_parse(data));
