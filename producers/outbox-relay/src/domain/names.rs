//! The outbox table's and the notification channel's names, checked once where config enters.
//!
//! Both end up inside SQL text (identifiers cannot be bound as parameters), so only plain
//! PostgreSQL identifiers are accepted: a letter or `_`, then letters, digits or `_`, at most 63
//! bytes. The table may be schema-qualified (`app.outbox`). Names are used unquoted, so
//! PostgreSQL folds them to lower case exactly as it does in the upstream's own SQL.

use std::fmt;

/// PostgreSQL's identifier limit (NAMEDATALEN - 1).
const MAX_IDENTIFIER_BYTES: usize = 63;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{name}` is not a valid {what}: {problem}")]
pub struct InvalidName {
    pub name: String,
    pub what: &'static str,
    pub problem: &'static str,
}

/// `[schema.]table`, both plain identifiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    schema: Option<String>,
    table: String,
}

impl TableName {
    pub fn parse(text: &str) -> Result<Self, InvalidName> {
        let what = "outbox table name ([schema.]table)";
        let (schema, table) = match text.split_once('.') {
            Some((schema, table)) => (Some(schema), table),
            None => (None, text),
        };
        if let Some(schema) = schema {
            identifier(schema).map_err(|problem| InvalidName { name: text.to_owned(), what, problem })?;
        }
        identifier(table).map_err(|problem| InvalidName { name: text.to_owned(), what, problem })?;
        Ok(Self { schema: schema.map(str::to_lowercase), table: table.to_lowercase() })
    }

    /// The table without its schema: the stem of the index, function and trigger names.
    pub fn bare(&self) -> &str {
        &self.table
    }

    /// A name derived from the table's (`<table>_<suffix>`) in the table's schema, cut to fit
    /// PostgreSQL's identifier limit.
    pub fn derived(&self, suffix: &str) -> String {
        let keep = MAX_IDENTIFIER_BYTES.saturating_sub(suffix.len() + 1).min(self.table.len());
        let stem = &self.table[..keep];
        match &self.schema {
            Some(schema) => format!("{schema}.{stem}_{suffix}"),
            None => format!("{stem}_{suffix}"),
        }
    }

    /// The bare derived name (for indexes and triggers, which live in the table's schema).
    pub fn derived_bare(&self, suffix: &str) -> String {
        let full = self.derived(suffix);
        match full.split_once('.') {
            Some((_, name)) => name.to_owned(),
            None => full,
        }
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(schema) => write!(f, "{schema}.{}", self.table),
            None => f.write_str(&self.table),
        }
    }
}

/// A LISTEN/NOTIFY channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelName(String);

impl ChannelName {
    pub fn parse(text: &str) -> Result<Self, InvalidName> {
        identifier(text).map_err(|problem| InvalidName {
            name: text.to_owned(),
            what: "notification channel name",
            problem,
        })?;
        Ok(Self(text.to_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn identifier(text: &str) -> Result<(), &'static str> {
    let mut chars = text.chars();
    match chars.next() {
        None => return Err("it is empty"),
        Some(first) if !(first.is_ascii_alphabetic() || first == '_') => {
            return Err("it must start with a letter or `_`");
        }
        Some(_) => {}
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err("only letters, digits and `_` are allowed");
    }
    if text.len() > MAX_IDENTIFIER_BYTES {
        return Err("it is longer than 63 bytes");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_schema_qualified_tables_parse_and_fold_to_lower_case() {
        assert_eq!(TableName::parse("eventline_outbox").unwrap().to_string(), "eventline_outbox");
        let qualified = TableName::parse("App.Outbox").unwrap();
        assert_eq!(qualified.to_string(), "app.outbox");
        assert_eq!(qualified.bare(), "outbox");
        assert_eq!(qualified.derived("notify"), "app.outbox_notify");
        assert_eq!(qualified.derived_bare("pending"), "outbox_pending");
    }

    #[test]
    fn anything_that_could_break_out_of_an_identifier_is_refused() {
        for bad in ["", "1table", "out box", "outbox;drop table x", "a.b.c", "\"quoted\"", "x.", ".x", "tab-le"] {
            assert!(TableName::parse(bad).is_err(), "{bad}");
        }
        for bad in ["", "chan nel", "chan'nel", "9x"] {
            assert!(ChannelName::parse(bad).is_err(), "{bad}");
        }
        let long = "a".repeat(64);
        assert!(TableName::parse(&long).unwrap_err().to_string().contains("63 bytes"));
    }

    #[test]
    fn derived_names_fit_the_identifier_limit() {
        let table = TableName::parse(&"t".repeat(63)).unwrap();
        let derived = table.derived("pending");
        assert_eq!(derived.len(), 63);
        assert!(derived.ends_with("_pending"));
    }
}
