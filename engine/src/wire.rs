//! Little-endian field access for the fixed-size wire records, and `wire_record!`, which declares
//! one.
//!
//! Every record type encodes and decodes itself field by field with these helpers, in safe code,
//! so the byte layout is written down once per type (each field's offset next to the field in its
//! `wire_record!`) and never depends on the host's endianness or on `repr(C)` padding rules. A
//! wrong offset fails the compile-time `offset_of` check.

#[inline(always)]
pub(crate) fn read_u128(bytes: &[u8], offset: usize) -> u128 {
    let mut field = [0u8; 16];
    field.copy_from_slice(&bytes[offset..offset + 16]);
    u128::from_le_bytes(field)
}

#[inline(always)]
pub(crate) fn read_u64(bytes: &[u8], offset: usize) -> u64 {
    let mut field = [0u8; 8];
    field.copy_from_slice(&bytes[offset..offset + 8]);
    u64::from_le_bytes(field)
}

#[inline(always)]
pub(crate) fn read_u32(bytes: &[u8], offset: usize) -> u32 {
    let mut field = [0u8; 4];
    field.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_le_bytes(field)
}

#[inline(always)]
pub(crate) fn read_u16(bytes: &[u8], offset: usize) -> u16 {
    let mut field = [0u8; 2];
    field.copy_from_slice(&bytes[offset..offset + 2]);
    u16::from_le_bytes(field)
}

#[inline(always)]
pub(crate) fn write_u128(bytes: &mut [u8], offset: usize, value: u128) {
    bytes[offset..offset + 16].copy_from_slice(&value.to_le_bytes());
}

#[inline(always)]
pub(crate) fn write_u64(bytes: &mut [u8], offset: usize, value: u64) {
    bytes[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
}

#[inline(always)]
pub(crate) fn write_u32(bytes: &mut [u8], offset: usize, value: u32) {
    bytes[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
}

#[inline(always)]
pub(crate) fn write_u16(bytes: &mut [u8], offset: usize, value: u16) {
    bytes[offset..offset + 2].copy_from_slice(&value.to_le_bytes());
}

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

impl WireField for u8 {
    const ZERO: u8 = 0;
    #[inline(always)]
    fn read(bytes: &[u8], offset: usize) -> u8 {
        bytes[offset]
    }
    #[inline(always)]
    fn write(self, bytes: &mut [u8], offset: usize) {
        bytes[offset] = self;
    }
}

/// Implements `WireField` for unsigned integers through their `read_*` and `write_*` helpers.
macro_rules! wire_integer {
    ($($int:ty: $read:ident, $write:ident;)*) => {
        $(
            impl WireField for $int {
                const ZERO: $int = 0;
                #[inline(always)]
                fn read(bytes: &[u8], offset: usize) -> $int {
                    $read(bytes, offset)
                }
                #[inline(always)]
                fn write(self, bytes: &mut [u8], offset: usize) {
                    $write(bytes, offset, self);
                }
            }
        )*
    };
}

wire_integer! {
    u16: read_u16, write_u16;
    u32: read_u32, write_u32;
    u64: read_u64, write_u64;
    u128: read_u128, write_u128;
}

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

/// Golden-test helper: bytes `0, 1, 2, ...` of a field written as one little-endian integer,
/// so every byte of a record is distinct and a layout slip shows up as a misplaced byte.
#[cfg(test)]
pub(crate) fn pattern_u128(start: u8) -> u128 {
    let mut bytes = [0u8; 16];
    for (index, byte) in bytes.iter_mut().enumerate() {
        *byte = start.wrapping_add(index as u8);
    }
    u128::from_le_bytes(bytes)
}

#[cfg(test)]
pub(crate) fn pattern_u64(start: u8) -> u64 {
    let mut bytes = [0u8; 8];
    for (index, byte) in bytes.iter_mut().enumerate() {
        *byte = start.wrapping_add(index as u8);
    }
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
pub(crate) fn pattern_u32(start: u8) -> u32 {
    u32::from_le_bytes([start, start + 1, start + 2, start + 3])
}

#[cfg(test)]
pub(crate) fn pattern_u16(start: u8) -> u16 {
    u16::from_le_bytes([start, start + 1])
}

/// The expected encoding of a record whose fields are all `pattern_*(offset)`: byte i is i.
#[cfg(test)]
pub(crate) fn identity_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    for (index, byte) in bytes.iter_mut().enumerate() {
        *byte = index as u8;
    }
    bytes
}
