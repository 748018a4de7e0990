//! A minimal reader of the protobuf wire format.
//!
//! The proxy keeps payloads as bytes; it only needs to walk them to check they are well formed,
//! to pick out entity key fields, and to split descriptor sets without re-encoding them. This
//! reader borrows the input and never allocates.

use std::fmt;

/// The wire-format error at a byte offset of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    /// What was wrong.
    pub reason: &'static str,
    /// Offset of the problem in the input.
    pub offset: usize,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.reason, self.offset)
    }
}

/// A field's value as it appears on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireValue<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 1.
    Fixed64(u64),
    /// Wire type 2: strings, bytes, messages and packed repeated scalars.
    LengthDelimited(&'a [u8]),
    /// Wire types 3..4: a proto2 group, as the bytes between its start and end tags.
    Group(&'a [u8]),
    /// Wire type 5.
    Fixed32(u32),
}

/// Iterates over the fields of one message: `(field number, value, offset of the tag)`.
pub struct FieldReader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Added to offsets in errors, so nested readers report positions in the outer input.
    base: usize,
}

/// Deepest group nesting the reader follows before giving up.
const MAX_GROUP_DEPTH: u32 = 64;

impl<'a> FieldReader<'a> {
    /// Reads the fields of the message encoded in `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self::nested(buf, 0)
    }

    /// Reads a message embedded at offset `base` of some outer input.
    pub fn nested(buf: &'a [u8], base: usize) -> Self {
        FieldReader { buf, pos: 0, base }
    }

    fn error(&self, reason: &'static str) -> WireError {
        WireError {
            reason,
            offset: self.base + self.pos,
        }
    }

    fn read_varint(&mut self) -> Result<u64, WireError> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let Some(&byte) = self.buf.get(self.pos) else {
                return Err(self.error("truncated varint"));
            };
            self.pos += 1;
            if shift == 63 && byte > 1 {
                return Err(self.error("varint overflows 64 bits"));
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.error("varint longer than 10 bytes"))
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], WireError> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|&end| end <= self.buf.len())
            .ok_or_else(|| self.error("field runs past the end of the message"))?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn read_tag(&mut self) -> Result<(u32, u8), WireError> {
        let tag = self.read_varint()?;
        let number = u32::try_from(tag >> 3).map_err(|_| self.error("field number too large"))?;
        if number == 0 || number > 536_870_911 {
            return Err(self.error("invalid field number"));
        }
        Ok((number, (tag & 7) as u8))
    }

    /// Skips a group whose start tag (field `number`) was just read; returns its contents.
    fn skip_group(&mut self, number: u32, depth: u32) -> Result<&'a [u8], WireError> {
        if depth > MAX_GROUP_DEPTH {
            return Err(self.error("groups nested too deeply"));
        }
        let start = self.pos;
        loop {
            if self.pos >= self.buf.len() {
                return Err(self.error("group without end tag"));
            }
            let before_tag = self.pos;
            let (inner, wire_type) = self.read_tag()?;
            match wire_type {
                4 if inner == number => return Ok(&self.buf[start..before_tag]),
                4 => return Err(self.error("mismatched group end tag")),
                3 => {
                    self.skip_group(inner, depth + 1)?;
                }
                _ => {
                    self.read_value(wire_type)?;
                }
            }
        }
    }

    fn read_value(&mut self, wire_type: u8) -> Result<WireValue<'a>, WireError> {
        Ok(match wire_type {
            0 => WireValue::Varint(self.read_varint()?),
            1 => {
                let bytes = self.take(8)?;
                WireValue::Fixed64(u64::from_le_bytes(bytes.try_into().unwrap_or([0; 8])))
            }
            2 => {
                let len = self.read_varint()?;
                let len = usize::try_from(len).map_err(|_| self.error("length too large"))?;
                WireValue::LengthDelimited(self.take(len)?)
            }
            5 => {
                let bytes = self.take(4)?;
                WireValue::Fixed32(u32::from_le_bytes(bytes.try_into().unwrap_or([0; 4])))
            }
            _ => return Err(self.error("invalid wire type")),
        })
    }

    /// The offset, in the outer input, of the next byte this reader will read.
    pub fn offset(&self) -> usize {
        self.base + self.pos
    }
}

impl<'a> Iterator for FieldReader<'a> {
    type Item = Result<(u32, WireValue<'a>, usize), WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let tag_offset = self.offset();
        let result = self.read_tag().and_then(|(number, wire_type)| {
            let value = match wire_type {
                3 => WireValue::Group(self.skip_group(number, 0)?),
                4 => return Err(self.error("group end tag without start")),
                _ => self.read_value(wire_type)?,
            };
            Ok((number, value, tag_offset))
        });
        if result.is_err() {
            // Stop after the first error: the rest of the input cannot be framed.
            self.pos = self.buf.len();
        }
        Some(result)
    }
}

/// Checks that `buf` is a well-formed sequence of fields (not checking field types).
pub fn check_well_formed(buf: &[u8]) -> Result<(), WireError> {
    FieldReader::new(buf).try_for_each(|field| field.map(|_| ()))
}

/// Appends a length-delimited field to `out`.
pub fn put_length_delimited(out: &mut Vec<u8>, number: u32, bytes: &[u8]) {
    put_varint(out, (u64::from(number) << 3) | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[derive(Clone, PartialEq, prost::Message)]
    struct Sample {
        #[prost(string, tag = "1")]
        name: String,
        #[prost(int64, tag = "2")]
        count: i64,
        #[prost(fixed32, tag = "3")]
        small: u32,
        #[prost(double, tag = "4")]
        real: f64,
        #[prost(int32, repeated, tag = "5")]
        list: Vec<i32>,
    }

    #[test]
    fn reads_every_wire_type() {
        let bytes = Sample {
            name: "cart".into(),
            count: -3,
            small: 7,
            real: 1.5,
            list: vec![1, 2, 3],
        }
        .encode_to_vec();
        let fields: Vec<_> = FieldReader::new(&bytes)
            .map(|f| f.map(|(n, v, _)| (n, v)))
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(fields[0], (1, WireValue::LengthDelimited(b"cart")));
        assert_eq!(fields[1], (2, WireValue::Varint(-3i64 as u64)));
        assert_eq!(fields[2], (3, WireValue::Fixed32(7)));
        assert_eq!(fields[3], (4, WireValue::Fixed64(1.5f64.to_bits())));
        assert_eq!(fields[4], (5, WireValue::LengthDelimited(&[1, 2, 3])));
    }

    #[test]
    fn rejects_malformed_input() {
        for bad in [
            &[0x0a, 0x05, b'a'][..], // length past end
            &[0x08][..],             // missing varint
            &[
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            ][..], // too long
            &[0x0f][..],             // wire type 7
            &[0x00, 0x01][..],       // field number 0
            &[0x0b, 0x08, 0x01][..], // group without end
            &[0x0c][..],             // end tag alone
        ] {
            assert!(
                check_well_formed(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn reads_groups() {
        // field 1 start group, field 2 varint 1, field 1 end group, field 3 varint 5
        let bytes = [0x0b, 0x10, 0x01, 0x0c, 0x18, 0x05];
        let fields: Vec<_> = FieldReader::new(&bytes).collect::<Result<_, _>>().unwrap();
        assert_eq!(fields[0].1, WireValue::Group(&[0x10, 0x01]));
        assert_eq!(fields[1].1, WireValue::Varint(5));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = check_well_formed(&bytes);
        }

        #[test]
        fn round_trips_length_delimited(number in 1u32..1000, payload in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let mut out = Vec::new();
            put_length_delimited(&mut out, number, &payload);
            let fields: Vec<_> = FieldReader::new(&out).collect::<Result<_, _>>().unwrap();
            proptest::prop_assert_eq!(fields, vec![(number, WireValue::LengthDelimited(&payload[..]), 0)]);
        }
    }
}
