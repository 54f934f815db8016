//! shield-union (being built).
