//! Following `Schema::Ref` to the named type it stands for.

use std::cell::OnceCell;

use apache_avro::schema::{Name, ResolvedSchema};
use apache_avro::Schema;

use super::error::{DatumError, DatumErrorKind};

/// The named types of one root schema, collected on the first reference (schemas without
/// references never pay for it).
pub(crate) struct Names<'s> {
    root: &'s Schema,
    resolved: OnceCell<Option<ResolvedSchema<'s>>>,
}

impl<'s> Names<'s> {
    pub(crate) fn new(root: &'s Schema) -> Self {
        Self { root, resolved: OnceCell::new() }
    }

    /// `schema` itself, or the named type it refers to. Never returns a `Schema::Ref`.
    #[inline]
    pub(crate) fn resolve(&self, schema: &'s Schema) -> Result<&'s Schema, DatumError> {
        match schema {
            Schema::Ref { name } => self.lookup(name),
            other => Ok(other),
        }
    }

    #[cold]
    fn lookup(&self, name: &Name) -> Result<&'s Schema, DatumError> {
        let resolved = self.resolved.get_or_init(|| ResolvedSchema::try_from(self.root).ok());
        resolved
            .as_ref()
            .and_then(|names| names.get_names().get(name).copied())
            .filter(|found| !matches!(found, Schema::Ref { .. }))
            .ok_or_else(|| DatumErrorKind::UnknownName(name.fullname(None)).into())
    }
}
