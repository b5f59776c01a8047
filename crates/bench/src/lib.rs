//! Measurement tools for `loadtest/memory.sh`; see the binaries.
#![allow(clippy::unwrap_used, clippy::expect_used)]
