//! Nothing here: the crate holds the criterion micro-benchmarks (`benches/micro.rs`), kept
//! apart so that criterion is built only by `cargo bench`, never by the test suite.
