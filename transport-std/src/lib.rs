//! redlock-std (work in progress).
