//! shield-sources (being built).
