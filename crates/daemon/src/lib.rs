//! shield-daemon (being built).
