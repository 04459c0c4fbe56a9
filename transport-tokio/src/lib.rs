//! redlock-tokio (work in progress).
