//! Placeholder: limits tests.
