//! shield-detect (being built).
