//! Placeholder: crash tests.
