//! Avro's zig-zag variable-length integers (`int` and `long` share the encoding).

use super::error::DatumErrorKind;

/// The longest varint of a 64-bit value.
const MAX_LEN: usize = 10;

/// Appends `value` zig-zag encoded.
#[inline]
pub(crate) fn write_long(out: &mut Vec<u8>, value: i64) {
    let mut z = ((value << 1) ^ (value >> 63)) as u64;
    if z < 0x80 {
        out.push(z as u8);
        return;
    }
    out.reserve(MAX_LEN);
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// Reads a zig-zag varint from the front of `input` and advances past it. Like apache-avro it
/// accepts up to 10 bytes and refuses longer runs.
#[inline]
pub(crate) fn read_long(input: &mut &[u8]) -> Result<i64, DatumErrorKind> {
    if let Some((&byte, rest)) = input.split_first() {
        if byte < 0x80 {
            *input = rest;
            return Ok(i64::from(byte >> 1) ^ -i64::from(byte & 1));
        }
    }
    let mut z = 0u64;
    for (i, &byte) in input.iter().take(MAX_LEN).enumerate() {
        z |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            *input = input.get(i + 1..).unwrap_or_default();
            return Ok(((z >> 1) as i64) ^ -((z & 1) as i64));
        }
    }
    Err(if input.len() >= MAX_LEN { DatumErrorKind::VarintTooLong } else { DatumErrorKind::UnexpectedEnd })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_encodings() {
        for (value, bytes) in [(0i64, vec![0u8]), (-1, vec![1]), (1, vec![2]), (-64, vec![0x7f]), (64, vec![0x80, 1])] {
            let mut out = Vec::new();
            write_long(&mut out, value);
            assert_eq!(out, bytes, "{value}");
        }
        let mut out = Vec::new();
        write_long(&mut out, i64::MIN);
        assert_eq!(out.len(), 10);
    }

    #[test]
    fn truncated_and_overlong_varints_are_errors() {
        assert_eq!(read_long(&mut &[0x80u8, 0x80][..]), Err(DatumErrorKind::UnexpectedEnd));
        assert_eq!(read_long(&mut &[][..]), Err(DatumErrorKind::UnexpectedEnd));
        assert_eq!(read_long(&mut &[0xffu8; 11][..]), Err(DatumErrorKind::VarintTooLong));
    }

    proptest! {
        #[test]
        fn round_trips_and_matches_apache_avro(value in any::<i64>()) {
            let mut ours = Vec::new();
            write_long(&mut ours, value);
            let theirs = apache_avro::to_avro_datum(&apache_avro::Schema::Long, apache_avro::types::Value::Long(value));
            prop_assert_eq!(Some(&ours), theirs.as_ref().ok());
            let mut input = &ours[..];
            prop_assert_eq!(read_long(&mut input), Ok(value));
            prop_assert!(input.is_empty());
        }
    }
}
