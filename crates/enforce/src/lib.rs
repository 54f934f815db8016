//! shield-enforce (being built).
