//! A consumer group member's assignment as the broker hands it out in DescribeGroups: the bytes
//! of Kafka's `ConsumerProtocolAssignment`, written by the group's leader. Pure decoding, no I/O.
//!
//! ```text
//! version         i16      (0 to 3 today; later versions only append fields, so any
//!                           version >= 0 is read as far as these fields go)
//! topic count     i32
//!   per topic:    name: i16 length + UTF-8 bytes
//!                 partition count i32, then that many i32 partitions
//! user data       i32 length (-1: none) + bytes
//! ```
//!
//! Every field is big-endian. The bytes come from another client, so whatever they hold ends in a
//! value or an [`AssignmentError`], never a panic.

use serde::{Deserialize, Serialize};

/// The partitions of one topic assigned to a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicPartitions {
    pub topic: String,
    /// In the order the assignment lists them.
    pub partitions: Vec<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssignmentError {
    #[error("the assignment ends at byte {at} where its {field} should be")]
    Truncated { field: &'static str, at: usize },
    #[error("the assignment has version {0}; consumer assignments have versions from 0")]
    Version(i16),
    #[error("the assignment's {field} is {value} at byte {at}; it cannot be negative")]
    Negative { field: &'static str, value: i32, at: usize },
    #[error("the assignment's topic name at byte {at} is not UTF-8")]
    TopicName { at: usize },
}

/// The topics and partitions in `bytes`, a `ConsumerProtocolAssignment`.
pub fn decode(bytes: &[u8]) -> Result<Vec<TopicPartitions>, AssignmentError> {
    let mut reader = Reader { bytes, at: 0 };
    let version = reader.i16("version")?;
    if version < 0 {
        return Err(AssignmentError::Version(version));
    }
    let topic_count = reader.count("topic count")?;
    // No capacity from the counts: they are the sender's word, and the bytes run out first.
    let mut topics = Vec::new();
    for _ in 0..topic_count {
        let name_at = reader.at;
        let name_len = reader.i16("topic name length")?;
        let name_len = usize::try_from(name_len).map_err(|_| AssignmentError::Negative {
            field: "topic name length",
            value: i32::from(name_len),
            at: name_at,
        })?;
        let name_at = reader.at;
        let name = std::str::from_utf8(reader.take(name_len, "topic name")?)
            .map_err(|_| AssignmentError::TopicName { at: name_at })?;
        let partition_count = reader.count("partition count")?;
        let mut partitions = Vec::new();
        for _ in 0..partition_count {
            partitions.push(reader.i32("partition")?);
        }
        topics.push(TopicPartitions { topic: name.to_owned(), partitions });
    }
    let user_data_at = reader.at;
    let user_data_len = reader.i32("user data length")?;
    if user_data_len != -1 {
        let len = usize::try_from(user_data_len).map_err(|_| AssignmentError::Negative {
            field: "user data length",
            value: user_data_len,
            at: user_data_at,
        })?;
        reader.take(len, "user data")?;
    }
    Ok(topics)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize, field: &'static str) -> Result<&'a [u8], AssignmentError> {
        let end = self.at.checked_add(len).filter(|end| *end <= self.bytes.len());
        let slice = end.and_then(|end| self.bytes.get(self.at..end));
        let slice = slice.ok_or(AssignmentError::Truncated { field, at: self.at })?;
        self.at += len;
        Ok(slice)
    }

    fn i16(&mut self, field: &'static str) -> Result<i16, AssignmentError> {
        let mut buf = [0; 2];
        buf.copy_from_slice(self.take(2, field)?);
        Ok(i16::from_be_bytes(buf))
    }

    fn i32(&mut self, field: &'static str) -> Result<i32, AssignmentError> {
        let mut buf = [0; 4];
        buf.copy_from_slice(self.take(4, field)?);
        Ok(i32::from_be_bytes(buf))
    }

    /// An array length, which must not be negative.
    fn count(&mut self, field: &'static str) -> Result<i32, AssignmentError> {
        let at = self.at;
        let value = self.i32(field)?;
        if value < 0 {
            return Err(AssignmentError::Negative { field, value, at });
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encodes an assignment the way Kafka's `ConsumerProtocol.serializeAssignment` does.
    fn encode(version: i16, topics: &[(&str, &[i32])], user_data: Option<&[u8]>) -> Vec<u8> {
        let mut bytes = version.to_be_bytes().to_vec();
        bytes.extend(i32::try_from(topics.len()).unwrap().to_be_bytes());
        for (topic, partitions) in topics {
            bytes.extend(i16::try_from(topic.len()).unwrap().to_be_bytes());
            bytes.extend(topic.as_bytes());
            bytes.extend(i32::try_from(partitions.len()).unwrap().to_be_bytes());
            for partition in *partitions {
                bytes.extend(partition.to_be_bytes());
            }
        }
        match user_data {
            Some(data) => {
                bytes.extend(i32::try_from(data.len()).unwrap().to_be_bytes());
                bytes.extend(data);
            }
            None => bytes.extend((-1i32).to_be_bytes()),
        }
        bytes
    }

    fn tp(topic: &str, partitions: &[i32]) -> TopicPartitions {
        TopicPartitions { topic: topic.to_owned(), partitions: partitions.to_vec() }
    }

    #[test]
    fn topics_and_partitions_are_read_in_order() {
        let bytes = encode(0, &[("orders", &[2, 0]), ("customers", &[1])], None);
        assert_eq!(decode(&bytes).unwrap(), [tp("orders", &[2, 0]), tp("customers", &[1])]);
    }

    #[test]
    fn user_data_is_skipped_and_an_empty_assignment_is_valid() {
        let bytes = encode(1, &[("orders", &[0])], Some(b"sticky-state"));
        assert_eq!(decode(&bytes).unwrap(), [tp("orders", &[0])]);
        assert_eq!(decode(&encode(0, &[], None)).unwrap(), []);
        assert_eq!(decode(&encode(0, &[("orders", &[])], Some(b""))).unwrap(), [tp("orders", &[])]);
    }

    #[test]
    fn later_versions_are_read_as_far_as_the_known_fields_go() {
        let mut bytes = encode(7, &[("orders", &[3])], None);
        bytes.extend([0xAB; 9]);
        assert_eq!(decode(&bytes).unwrap(), [tp("orders", &[3])]);
    }

    /// An assignment librdkafka 2.12 wrote as group leader, read back from Apache Kafka 4.1.1's
    /// DescribeGroups (groups_tail.rs): version 0, `customers` partitions 0 to 2, empty user data.
    #[test]
    fn a_real_assignment_decodes() {
        let bytes = [
            0, 0, 0, 0, 0, 1, 0, 9, b'c', b'u', b's', b't', b'o', b'm', b'e', b'r', b's', 0, 0, 0, 3, 0, 0, 0, 0, 0, 0,
            0, 1, 0, 0, 0, 2, 0, 0, 0, 0,
        ];
        assert_eq!(decode(&bytes).unwrap(), [tp("customers", &[0, 1, 2])]);
    }

    #[test]
    fn every_truncation_is_an_error_naming_the_missing_field() {
        let bytes = encode(3, &[("orders", &[0, 1]), ("refunds", &[4])], Some(b"data"));
        assert!(decode(&bytes).is_ok());
        for len in 0..bytes.len() {
            let error = decode(&bytes[..len]).unwrap_err();
            assert!(matches!(error, AssignmentError::Truncated { at, .. } if at <= len), "{len}: {error}");
        }
        let error = decode(&bytes[..5]).unwrap_err();
        assert_eq!(error.to_string(), "the assignment ends at byte 2 where its topic count should be");
    }

    #[test]
    fn negative_counts_and_lengths_are_errors() {
        let cases: [(&[u8], &str); 5] = [
            (&[0xFF, 0xFF, 0, 0, 0, 0], "version -1"),
            (&[0, 0, 0xFF, 0xFF, 0xFF, 0xFF], "topic count is -1 at byte 2"),
            (&[0, 0, 0, 0, 0, 1, 0xFF, 0xFE], "topic name length is -2 at byte 6"),
            (&[0, 0, 0, 0, 0, 1, 0, 1, b'a', 0x80, 0, 0, 0], "partition count is -2147483648 at byte 9"),
            (&[0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFE], "user data length is -2 at byte 6"),
        ];
        for (bytes, says) in cases {
            let error = decode(bytes).unwrap_err().to_string();
            assert!(error.contains(says), "{bytes:?}: {error}");
        }
    }

    #[test]
    fn a_topic_name_that_is_not_utf8_is_an_error() {
        let bytes = [0, 0, 0, 0, 0, 1, 0, 2, 0xC3, 0x28, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF];
        assert_eq!(decode(&bytes).unwrap_err(), AssignmentError::TopicName { at: 8 });
    }

    #[test]
    fn huge_counts_run_out_of_bytes_instead_of_allocating() {
        let bytes = [0, 0, 0x7F, 0xFF, 0xFF, 0xFF, 0, 1, b'a', 0x7F, 0xFF, 0xFF, 0xFF, 0, 0, 0, 1];
        assert!(matches!(decode(&bytes), Err(AssignmentError::Truncated { field: "partition", .. })));
    }

    /// Garbage of every length from a fixed-seed generator: an answer, never a panic.
    #[test]
    fn garbage_never_panics() {
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        for len in 0..64usize {
            for _ in 0..200 {
                let bytes: Vec<u8> = (0..len)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        state.to_be_bytes()[0]
                    })
                    .collect();
                let _answer = decode(&bytes);
            }
        }
    }
}
