//! Orders: the wire records of the matching side and the order result codes.
