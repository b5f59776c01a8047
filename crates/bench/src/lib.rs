//! Measurement tools for `loadtest/memory.sh`; see the binaries.
