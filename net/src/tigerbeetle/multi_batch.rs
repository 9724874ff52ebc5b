//! Multi-batch bodies: several batches of one operation in one message.
//!
//! A body is `payload ‖ trailer`. The payload is every batch's elements end to end, in batch
//! order. The trailer is a run of u16 words whose length is `2·N + 2` bytes rounded up to a
//! multiple of the element size of that direction (the event size in requests, the result size
//! in replies). Read from the end: the last word is the batch count N (1..=65,534); the N words
//! before it are the batches' element counts, batch 0 nearest the end; every word in front of
//! them is `0xFFFF` padding. A reply has the same N as its request, in the same order.
//!
//! Decoding checks every rule (padding, counts, sizes) before anything trusts the counts.

/// The most batches in one body.
pub const BATCHES_MAX: usize = 65_534;

const PADDING: u16 = 0xFFFF;

/// Why a body is not a valid multi-batch encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MultiBatchError {
    /// The body is too short for a trailer, or its batch count is 0 or above [`BATCHES_MAX`].
    TrailerInvalid,
    /// A padding word is not `0xFFFF`.
    PaddingInvalid,
    /// The counts do not add up to the payload's size.
    CountsInvalid,
}

/// Bytes of trailer for `batch_count` batches of elements of `element_size` bytes.
pub fn trailer_size(batch_count: usize, element_size: usize) -> usize {
    let words_size = 2 * batch_count + 2;
    words_size.div_ceil(element_size) * element_size
}

/// A decoded body: the payload and the per-batch counts, read from the trailer on demand.
#[derive(Clone, Copy, Debug)]
pub struct Batches<'a> {
    payload: &'a [u8],
    trailer: &'a [u8],
    batch_count: usize,
    element_size: usize,
}

impl<'a> Batches<'a> {
    /// Checks `body` as a multi-batch body of elements of `element_size` bytes.
    ///
    /// # Errors
    ///
    /// The first rule that fails.
    ///
    /// # Panics
    ///
    /// If `element_size` is 0 (a caller's mistake, never client input).
    pub fn decode(body: &'a [u8], element_size: usize) -> Result<Batches<'a>, MultiBatchError> {
        assert!(element_size > 0, "element size");
        if body.len() < 2 || body.len() % 2 != 0 {
            return Err(MultiBatchError::TrailerInvalid);
        }
        let batch_count = usize::from(word(body, body.len() / 2 - 1));
        if batch_count == 0 || batch_count > BATCHES_MAX {
            return Err(MultiBatchError::TrailerInvalid);
        }
        let trailer_size = trailer_size(batch_count, element_size);
        if trailer_size > body.len() {
            return Err(MultiBatchError::TrailerInvalid);
        }
        let (payload, trailer) = body.split_at(body.len() - trailer_size);
        let words = trailer.len() / 2;
        let padding_words = words - batch_count - 1;
        if (0..padding_words).any(|index| word(trailer, index) != PADDING) {
            return Err(MultiBatchError::PaddingInvalid);
        }
        let batches = Batches {
            payload,
            trailer,
            batch_count,
            element_size,
        };
        let mut elements = 0usize;
        for index in 0..batch_count {
            elements += batches.count(index) as usize;
        }
        if elements.checked_mul(element_size) != Some(payload.len()) {
            return Err(MultiBatchError::CountsInvalid);
        }
        Ok(batches)
    }

    /// How many batches.
    pub fn batch_count(&self) -> usize {
        self.batch_count
    }

    /// Elements in batch `index` (0-based, below [`Batches::batch_count`]).
    pub fn count(&self, index: usize) -> u32 {
        let words = self.trailer.len() / 2;
        u32::from(word(self.trailer, words - 2 - index))
    }

    /// Elements over all batches.
    pub fn element_count(&self) -> usize {
        self.payload.len() / self.element_size
    }

    /// The batches' elements, in order, each batch as a slice of whole elements.
    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        let mut offset = 0usize;
        (0..self.batch_count).map(move |index| {
            let size = self.count(index) as usize * self.element_size;
            let batch = &self.payload[offset..offset + size];
            offset += size;
            batch
        })
    }
}

fn word(bytes: &[u8], index: usize) -> u16 {
    u16::from_le_bytes([bytes[2 * index], bytes[2 * index + 1]])
}

/// Appends the trailer for `counts` (batch order) to `body`, whose payload holds
/// `Σ counts` elements of `element_size` bytes.
pub fn encode_trailer(body: &mut Vec<u8>, counts: &[u16], element_size: usize) {
    let size = trailer_size(counts.len(), element_size);
    let padding_words = size / 2 - counts.len() - 1;
    for _ in 0..padding_words {
        body.extend_from_slice(&PADDING.to_le_bytes());
    }
    for count in counts.iter().rev() {
        body.extend_from_slice(&count.to_le_bytes());
    }
    let batch_count = u16::try_from(counts.len()).unwrap_or(u16::MAX);
    body.extend_from_slice(&batch_count.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seven_batches_decode_as_in_the_reference_example() {
        let counts = [1u16, 2, 0, 1, 2, 0, 1];
        let mut body = Vec::new();
        for (index, count) in counts.iter().enumerate() {
            for _ in 0..*count {
                body.extend([index as u8; 128]);
            }
        }
        encode_trailer(&mut body, &counts, 128);
        assert_eq!(body.len(), 1024);
        // 56 padding words, then the counts from batch 6 down to 0, then 7.
        assert!(body[896..896 + 112].iter().all(|byte| *byte == 0xFF));
        let tail: Vec<u16> = (0..8)
            .map(|index| word(&body, (896 + 112) / 2 + index))
            .collect();
        assert_eq!(tail, [1, 0, 2, 1, 0, 2, 1, 7]);
        let batches = Batches::decode(&body, 128).unwrap();
        assert_eq!(batches.batch_count(), 7);
        assert_eq!(batches.element_count(), 7);
        let sizes: Vec<usize> = batches.iter().map(<[u8]>::len).collect();
        assert_eq!(sizes, [128, 256, 0, 128, 256, 0, 128]);
        assert_eq!(batches.iter().nth(4).unwrap()[0], 4);
    }

    #[test]
    fn an_empty_create_reply_is_sixteen_bytes() {
        let mut body = Vec::new();
        encode_trailer(&mut body, &[0], 16);
        let mut expected = vec![0xFF; 12];
        expected.extend([0, 0, 1, 0]);
        assert_eq!(body, expected);
    }

    #[test]
    fn bad_bodies_are_refused() {
        assert_eq!(
            Batches::decode(&[], 16).unwrap_err(),
            MultiBatchError::TrailerInvalid
        );
        // N = 0.
        assert_eq!(
            Batches::decode(
                &[0xFF; 14].iter().copied().chain([0, 0]).collect::<Vec<_>>(),
                16
            )
            .unwrap_err(),
            MultiBatchError::TrailerInvalid
        );
        // Padding not 0xFFFF.
        let mut body = Vec::new();
        encode_trailer(&mut body, &[0], 16);
        body[0] = 0;
        assert_eq!(
            Batches::decode(&body, 16).unwrap_err(),
            MultiBatchError::PaddingInvalid
        );
        // A count with no payload behind it.
        let mut body = Vec::new();
        encode_trailer(&mut body, &[1], 16);
        assert_eq!(
            Batches::decode(&body, 16).unwrap_err(),
            MultiBatchError::CountsInvalid
        );
        // A huge count must not overflow or index out of range.
        let mut body = vec![0u8; 16];
        encode_trailer(&mut body, &[u16::MAX - 1], 16);
        assert!(Batches::decode(&body, 16).is_err());
    }
}
