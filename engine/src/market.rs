//! Markets: the wire record that defines a tradable pair and its creation result codes.
