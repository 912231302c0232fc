//! Which event types a client may publish, from the space-separated `scope` claim.
//!
//! The rule, in one place:
//! - `publish:*` allows every event type;
//! - `publish:<topic>/*` (e.g. `publish:orders/*`) allows every event type of that topic;
//! - `publish:<Type>` allows one type, by short (`OrderPlaced`) or full name
//!   (`com.eventline.commerce.OrderPlaced`).
//!
//! Any other scope is ignored. Names are case-sensitive, like the catalog's.

use std::collections::HashSet;

use eventline_common::catalog::EventSpec;

pub const PUBLISH_PREFIX: &str = "publish:";

/// The publish permissions of one client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes {
    all: bool,
    topics: HashSet<String>,
    types: HashSet<String>,
}

impl Scopes {
    /// Everything allowed (auth switched off).
    pub fn unrestricted() -> Self {
        Self { all: true, ..Self::default() }
    }

    /// Reads the scopes out of a claim's words.
    pub fn parse<'a>(words: impl IntoIterator<Item = &'a str>) -> Self {
        let mut scopes = Self::default();
        for word in words {
            let Some(target) = word.strip_prefix(PUBLISH_PREFIX) else { continue };
            if target == "*" {
                scopes.all = true;
            } else if let Some(topic) = target.strip_suffix("/*") {
                if !topic.is_empty() {
                    scopes.topics.insert(topic.to_owned());
                }
            } else if !target.is_empty() {
                scopes.types.insert(target.to_owned());
            }
        }
        scopes
    }

    pub fn allows(&self, event: &EventSpec) -> bool {
        self.all
            || self.topics.contains(&event.topic)
            || self.types.contains(&event.name)
            || self.types.contains(&event.full_name)
    }

    /// The scope that would allow `event` (for `WWW-Authenticate` and messages).
    pub fn needed_for(event: &EventSpec) -> String {
        format!("{PUBLISH_PREFIX}{}", event.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventline_common::catalog::Catalog;

    fn allowed(scope: &str) -> Vec<String> {
        let catalog = Catalog::embedded().unwrap();
        let scopes = Scopes::parse(scope.split_whitespace());
        catalog.events().filter(|e| scopes.allows(e)).map(|e| e.name.clone()).collect()
    }

    #[test]
    fn a_type_scope_allows_that_type_by_short_or_full_name() {
        assert_eq!(allowed("publish:OrderPlaced"), ["OrderPlaced"]);
        assert_eq!(allowed("publish:com.eventline.commerce.OrderShipped"), ["OrderShipped"]);
    }

    #[test]
    fn a_topic_scope_allows_every_type_of_the_topic() {
        let mut orders = allowed("publish:orders/*");
        orders.sort();
        assert_eq!(orders, ["OrderCancelled", "OrderPlaced", "OrderShipped"]);
    }

    #[test]
    fn the_wildcard_allows_everything_and_other_scopes_nothing() {
        assert_eq!(allowed("publish:*").len(), Catalog::embedded().unwrap().events().count());
        assert!(allowed("read:* openid publish: publish:/* orders/* publish:orderplaced").is_empty());
        assert!(allowed("").is_empty());
        assert_eq!(allowed("openid publish:PaymentFailed profile"), ["PaymentFailed"]);
    }
}
