//! Request bodies into events: one JSON event, a JSON array of events, or NDJSON (one event a
//! line; a line that is not JSON is that event's error, not the whole batch's).

use eventline_common::avro_json::FieldError;
use serde_json::Value as Json;

use super::error::ApiError;
use crate::ingest::Item;

pub const JSON: &str = "application/json";
pub const NDJSON: &str = "application/x-ndjson";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Json,
    Ndjson,
}

impl BodyKind {
    /// From the `Content-Type` header: none or `application/json` (any parameters) is JSON.
    pub fn from_content_type(value: Option<&str>) -> Result<Self, ApiError> {
        let Some(text) = value else { return Ok(BodyKind::Json) };
        let essence = text.split(';').next().unwrap_or_default().trim();
        if essence.eq_ignore_ascii_case(JSON) {
            Ok(BodyKind::Json)
        } else if essence.eq_ignore_ascii_case(NDJSON) {
            Ok(BodyKind::Ndjson)
        } else {
            Err(ApiError::UnsupportedMediaType(format!(
                "Content-Type `{text}` is not accepted: send {JSON} (one event, or an array of events to the batch route) or {NDJSON} (batch route)"
            )))
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            BodyKind::Json => "json",
            BodyKind::Ndjson => "ndjson",
        }
    }
}

/// The events of a batch, with the NDJSON line of each (1-based) when the body was NDJSON.
#[derive(Debug)]
pub struct Batch {
    pub items: Vec<Item>,
    pub lines: Option<Vec<usize>>,
}

/// One event.
pub fn single(bytes: &[u8]) -> Result<Json, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| malformed(e, bytes))
}

/// A batch of at most `max` events.
pub fn batch(kind: BodyKind, bytes: &[u8], max: usize) -> Result<Batch, ApiError> {
    let batch = match kind {
        BodyKind::Json => match serde_json::from_slice(bytes).map_err(|e| malformed(e, bytes))? {
            Json::Array(events) => {
                if events.len() > max {
                    return Err(ApiError::BatchTooLarge { count: events.len(), limit: max });
                }
                Batch { items: events.into_iter().map(Ok).collect(), lines: None }
            }
            _ => {
                return Err(ApiError::MalformedRequest(format!(
                    "a batch is a JSON array of events (or {NDJSON}, one event a line)"
                )))
            }
        },
        BodyKind::Ndjson => ndjson(bytes, max)?,
    };
    if batch.items.is_empty() {
        return Err(ApiError::MalformedRequest("the batch has no events".into()));
    }
    Ok(batch)
}

fn ndjson(bytes: &[u8], max: usize) -> Result<Batch, ApiError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| ApiError::MalformedRequest(format!("the NDJSON body is not UTF-8 (byte {})", e.valid_up_to())))?;
    let lines: Vec<(usize, &str)> = text
        .split('\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r')))
        .filter(|(_, l)| !l.trim().is_empty())
        .collect();
    if lines.len() > max {
        return Err(ApiError::BatchTooLarge { count: lines.len(), limit: max });
    }
    let items = lines
        .iter()
        .map(|(number, line)| {
            serde_json::from_str(line).map_err(|e| FieldError {
                path: "$".into(),
                message: format!("line {number} is not valid JSON: {} (column {})", without_position(&e), e.column()),
            })
        })
        .collect();
    Ok(Batch { items, lines: Some(lines.into_iter().map(|(n, _)| n).collect()) })
}

fn malformed(error: serde_json::Error, bytes: &[u8]) -> ApiError {
    let message = match std::str::from_utf8(bytes) {
        Err(e) => format!("{} (the body is not UTF-8 from byte {})", without_position(&error), e.valid_up_to()),
        Ok(_) => without_position(&error),
    };
    ApiError::MalformedJson { line: error.line(), column: error.column(), message }
}

/// serde_json's message without its trailing " at line L column C".
fn without_position(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_choose_the_body_kind() {
        assert_eq!(BodyKind::from_content_type(None).unwrap(), BodyKind::Json);
        assert_eq!(BodyKind::from_content_type(Some("application/json; charset=utf-8")).unwrap(), BodyKind::Json);
        assert_eq!(BodyKind::from_content_type(Some("Application/X-NDJSON")).unwrap(), BodyKind::Ndjson);
        let err = BodyKind::from_content_type(Some("text/plain")).unwrap_err();
        assert!(matches!(err, ApiError::UnsupportedMediaType(ref m) if m.contains("text/plain")), "{err}");
    }

    #[test]
    fn malformed_json_names_line_and_column() {
        let err = single(b"{\n  \"type\": \"OrderPlaced\",\n  \"data\": }").unwrap_err();
        let ApiError::MalformedJson { line, column, message } = err else { panic!("{err:?}") };
        assert_eq!((line, column), (3, 11));
        assert_eq!(message, "expected value");
    }

    #[test]
    fn a_json_batch_is_an_array_within_the_limit() {
        assert_eq!(batch(BodyKind::Json, b"[{}, 1]", 2).unwrap().items.len(), 2);
        assert!(matches!(
            batch(BodyKind::Json, b"[{}, {}, {}]", 2),
            Err(ApiError::BatchTooLarge { count: 3, limit: 2 })
        ));
        assert!(matches!(batch(BodyKind::Json, b"{}", 2), Err(ApiError::MalformedRequest(_))));
        assert!(matches!(batch(BodyKind::Json, b"[]", 2), Err(ApiError::MalformedRequest(_))));
        assert!(matches!(batch(BodyKind::Json, b"[{},", 2), Err(ApiError::MalformedJson { .. })));
    }

    #[test]
    fn ndjson_lines_are_events_and_a_bad_line_is_that_events_error() {
        let parsed = batch(BodyKind::Ndjson, b"{\"a\":1}\r\n\n  \nnot json\n{\"b\":2}\n", 3).unwrap();
        assert_eq!(parsed.lines, Some(vec![1, 4, 5]));
        assert!(parsed.items[0].is_ok() && parsed.items[2].is_ok());
        let error = parsed.items[1].as_ref().unwrap_err();
        assert!(error.message.starts_with("line 4 is not valid JSON"), "{error:?}");
        assert!(matches!(batch(BodyKind::Ndjson, b"1\n2\n3\n", 2), Err(ApiError::BatchTooLarge { count: 3, .. })));
        assert!(matches!(batch(BodyKind::Ndjson, b"\n\n", 2), Err(ApiError::MalformedRequest(_))));
        assert!(matches!(batch(BodyKind::Ndjson, b"\xff\n", 2), Err(ApiError::MalformedRequest(_))));
    }
}
