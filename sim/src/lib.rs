//! redlock-sim (work in progress).
