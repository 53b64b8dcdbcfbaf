#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cryptonn_fuzz::targets::dataset_digits(data));
