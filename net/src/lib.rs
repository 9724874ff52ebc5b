//! The clearline network layer: the PROTOCOL.md frame codec, the mio server and a blocking client.
#![forbid(unsafe_code)]
