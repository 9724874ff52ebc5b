//! Placeholder: bad_input tests.
