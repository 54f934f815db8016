//! journald source (being built).
