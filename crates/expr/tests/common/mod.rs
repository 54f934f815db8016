//! Shared helpers of the integration tests and benchmarks.
#![allow(dead_code)] // each test binary uses a part.

pub mod event;
