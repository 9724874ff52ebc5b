//! Typed views of the flag fields of the wire records.
//!
//! A record keeps its flags as the plain integer it has on the wire, so encoding and decoding
//! stay a field copy. Business logic reads them through a newtype per record kind
//! (`transfer.flags().pending()`), so an account bit can never be tested against a transfer's
//! flags by mistake. The named bit constants stay on the newtypes for the wire code, the repl and
//! tests that build records by hand.

/// Declares a predicate per named bit on a flags newtype `$ty($bits)`.
macro_rules! flag_predicates {
    ($ty:ident($bits:ty) { $($(#[$doc:meta])* $predicate:ident = $bit:ident;)* }) => {
        impl $ty {
            $(
                $(#[$doc])*
                #[inline(always)]
                #[must_use]
                pub const fn $predicate(self) -> bool {
                    self.0 & Self::$bit != 0
                }
            )*

            /// Whether any bit of `mask` is set.
            #[inline(always)]
            #[must_use]
            pub const fn any(self, mask: $bits) -> bool {
                self.0 & mask != 0
            }

            /// The bits as they are on the wire.
            #[inline(always)]
            #[must_use]
            pub const fn bits(self) -> $bits {
                self.0
            }
        }
    };
}
