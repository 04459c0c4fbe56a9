//! Fuzz entry points (feature `__fuzz`), shared by `fuzz/` targets and the
//! stable corpus-replay tests.
