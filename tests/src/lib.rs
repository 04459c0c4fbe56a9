//! Test harness: real redis-server processes (work in progress).
