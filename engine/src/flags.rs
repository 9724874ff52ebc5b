//! Typed views of the flag fields of the wire records.
//!
//! A record keeps its flags as the plain integer it has on the wire, so encoding and decoding
//! stay a field copy. Business logic reads them through a newtype per record kind
//! (`transfer.flags().pending()`), so an account bit can never be tested against a transfer's
//! flags by mistake. The named bit constants stay on the newtypes for the wire code, the repl and
//! tests that build records by hand.

/// Declares a flags newtype `$ty($bits)` for the `flags` field of `$record`: a constant per named
/// bit (or mask), a predicate for each one that names it, `any` and `bits`, and
/// `$record::flags()`, the typed view. Each bit is named once, next to its value.
macro_rules! flags {
    (
        $(#[$meta:meta])*
        pub struct $ty:ident($bits:ty) for $record:ident {
            $( $(#[$doc:meta])* $bit:ident = $value:expr $(, $predicate:ident)?; )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct $ty(pub $bits);

        impl $ty {
            $(
                $(#[$doc])*
                pub const $bit: $bits = $value;
            )*

            $($(
                #[doc = concat!("Whether `", stringify!($bit), "` is set (any of its bits).")]
                #[inline(always)]
                #[must_use]
                pub const fn $predicate(self) -> bool {
                    self.0 & Self::$bit != 0
                }
            )?)*

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

        impl $record {
            /// The typed view of `flags`.
            #[inline(always)]
            #[must_use]
            pub const fn flags(&self) -> $ty {
                $ty(self.flags)
            }
        }
    };
}
