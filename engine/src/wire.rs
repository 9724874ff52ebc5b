//! Little-endian field access for the fixed-size wire records.
//!
//! Every record type encodes and decodes itself field by field with these helpers, in safe code,
//! so the byte layout is written down once per type and never depends on the host's endianness
//! or on `repr(C)` padding rules. Offsets are constants chosen by the caller; a wrong offset is a
//! bug and panics on the slice bounds check.

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
