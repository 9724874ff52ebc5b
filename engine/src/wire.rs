//! Little-endian field access for the fixed-size wire records, and `wire_record!`, which declares
//! one.
//!
//! Every record type encodes and decodes itself field by field through `WireField`, in safe code,
//! so the byte layout is written down once per type (each field's offset next to the field in its
//! `wire_record!`) and never depends on the host's endianness or on `repr(C)` padding rules. A
//! wrong offset fails the compile-time `offset_of` check.

/// A fixed-width field of a wire record: how it reads and writes itself at a byte offset, and its
/// zero value (every record's `Default`).
pub(crate) trait WireField: Copy {
    /// All bits zero.
    const ZERO: Self;
    /// Reads the field at `offset`, little-endian.
    fn read(bytes: &[u8], offset: usize) -> Self;
    /// Writes the field at `offset`, little-endian.
    fn write(self, bytes: &mut [u8], offset: usize);
}

/// Implements `WireField` for unsigned integers: little-endian, `size_of` bytes.
macro_rules! wire_integer {
    ($($int:ty),*) => {$(
        impl WireField for $int {
            const ZERO: $int = 0;
            #[inline(always)]
            fn read(bytes: &[u8], offset: usize) -> $int {
                const SIZE: usize = core::mem::size_of::<$int>();
                let mut field = [0u8; SIZE];
                field.copy_from_slice(&bytes[offset..offset + SIZE]);
                <$int>::from_le_bytes(field)
            }
            #[inline(always)]
            fn write(self, bytes: &mut [u8], offset: usize) {
                let field = self.to_le_bytes();
                bytes[offset..offset + field.len()].copy_from_slice(&field);
            }
        }
    )*};
}

wire_integer!(u8, u16, u32, u64, u128);

/// Reserved and padding bytes, copied as they are.
impl<const N: usize> WireField for [u8; N] {
    const ZERO: [u8; N] = [0; N];
    #[inline(always)]
    fn read(bytes: &[u8], offset: usize) -> [u8; N] {
        let mut field = [0u8; N];
        field.copy_from_slice(&bytes[offset..offset + N]);
        field
    }
    #[inline(always)]
    fn write(self, bytes: &mut [u8], offset: usize) {
        bytes[offset..offset + N].copy_from_slice(&self);
    }
}

/// Declares a wire record: the struct with every field's byte offset written next to it, and from
/// that one list the compile-time size and offset checks, `SIZE`, `encode`, `decode` and an
/// all-zero `Default`. The offsets are those of docs/protocol.md section 6; the checks make a
/// wrong one fail to compile, and the golden tests pin the bytes.
macro_rules! wire_record {
    (
        $(#[$meta:meta])*
        pub struct $name:ident($size:literal bytes) {
            $( $(#[$field_meta:meta])* pub $field:ident: $ty:tt @ $offset:literal, )*
        }
    ) => {
        $(#[$meta])*
        pub struct $name {
            $( $(#[$field_meta])* pub $field: $ty, )*
        }

        const _: () = assert!(core::mem::size_of::<$name>() == $size);
        $( const _: () = assert!(core::mem::offset_of!($name, $field) == $offset); )*

        impl Default for $name {
            fn default() -> $name {
                $name { $( $field: <$ty as $crate::wire::WireField>::ZERO, )* }
            }
        }

        impl $name {
            /// Encoded size in bytes.
            pub const SIZE: usize = $size;

            /// Writes the little-endian encoding.
            #[inline]
            pub fn encode(&self, bytes: &mut [u8; $size]) {
                $( $crate::wire::WireField::write(self.$field, bytes, $offset); )*
            }

            /// Reads the little-endian encoding. Never fails: every byte pattern decodes to some
            /// record (enum bytes, flags and reserved fields are checked where it is validated).
            #[inline]
            pub fn decode(bytes: &[u8; $size]) -> $name {
                $name { $( $field: $crate::wire::WireField::read(bytes, $offset), )* }
            }
        }
    };
}

/// Golden-test helper: a field whose bytes are `start, start + 1, ...` once encoded, so every
/// byte of a record is distinct and a layout slip shows up as a misplaced byte.
#[cfg(test)]
pub(crate) fn pattern<Field: WireField>(start: u8) -> Field {
    let bytes: [u8; 16] = core::array::from_fn(|index| start.wrapping_add(index as u8));
    Field::read(&bytes, 0)
}

/// The expected encoding of a record whose fields are all `pattern(offset)`: byte i is i.
#[cfg(test)]
pub(crate) fn identity_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    for (index, byte) in bytes.iter_mut().enumerate() {
        *byte = index as u8;
    }
    bytes
}
