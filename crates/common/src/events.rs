//! The example commerce domain's events as Rust types, mirroring `schemas/*.avsc`.
//!
//! Timestamps are `DateTime<Utc>` carried as Avro `timestamp-millis`; money is integer minor
//! units plus an ISO 4217 currency. Tests check every type against its schema in the catalog.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A domain event type of the catalog.
pub trait DomainEvent: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The short type name; also the schema's record name and the catalog key.
    const NAME: &'static str;
    /// The aggregate id: the Kafka key.
    fn key(&self) -> &str;
}

macro_rules! domain_event {
    ($ty:ident, $key:ident) => {
        impl DomainEvent for $ty {
            const NAME: &'static str = stringify!($ty);
            fn key(&self) -> &str {
                &self.$key
            }
        }
    };
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerRegistered {
    pub customer_id: String,
    pub email: String,
    pub name: String,
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub registered_at: DateTime<Utc>,
}
domain_event!(CustomerRegistered, customer_id);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerEmailChanged {
    pub customer_id: String,
    pub new_email: String,
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub changed_at: DateTime<Utc>,
}
domain_event!(CustomerEmailChanged, customer_id);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderLine {
    pub sku: String,
    pub quantity: i32,
    pub unit_price_minor: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub order_id: String,
    pub customer_id: String,
    pub lines: Vec<OrderLine>,
    pub currency: String,
    pub total_minor: i64,
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub placed_at: DateTime<Utc>,
}
domain_event!(OrderPlaced, order_id);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CancellationReason {
    CustomerRequest,
    OutOfStock,
    PaymentFailed,
    FraudSuspected,
    Other,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderCancelled {
    pub order_id: String,
    pub reason: CancellationReason,
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub cancelled_at: DateTime<Utc>,
}
domain_event!(OrderCancelled, order_id);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderShipped {
    pub order_id: String,
    pub carrier: String,
    pub tracking_number: Option<String>,
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub shipped_at: DateTime<Utc>,
}
domain_event!(OrderShipped, order_id);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentAuthorized {
    pub payment_id: String,
    pub order_id: String,
    pub amount_minor: i64,
    pub currency: String,
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub authorized_at: DateTime<Utc>,
}
domain_event!(PaymentAuthorized, order_id);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentCaptured {
    pub payment_id: String,
    pub order_id: String,
    pub amount_minor: i64,
    pub currency: String,
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub captured_at: DateTime<Utc>,
}
domain_event!(PaymentCaptured, order_id);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentFailed {
    pub payment_id: String,
    pub order_id: String,
    pub reason: String,
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub failed_at: DateTime<Utc>,
}
domain_event!(PaymentFailed, order_id);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentRefunded {
    pub payment_id: String,
    pub order_id: String,
    pub amount_minor: i64,
    pub currency: String,
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub refunded_at: DateTime<Utc>,
}
domain_event!(PaymentRefunded, order_id);

/// A sample of each event type, for tests, examples and benchmarks.
pub mod samples {
    use super::*;
    use chrono::TimeZone;

    pub fn at(millis: i64) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(millis).single().unwrap_or_default()
    }

    pub fn order_placed(order_id: &str) -> OrderPlaced {
        let lines = vec![
            OrderLine { sku: "SKU-RED-MUG".into(), quantity: 2, unit_price_minor: 1250 },
            OrderLine { sku: "SKU-TEA-250G".into(), quantity: 1, unit_price_minor: 899 },
            OrderLine { sku: "SKU-SPOON".into(), quantity: 4, unit_price_minor: 150 },
        ];
        let total_minor = lines.iter().map(|l| i64::from(l.quantity) * l.unit_price_minor).sum();
        OrderPlaced {
            order_id: order_id.into(),
            customer_id: "cust-42".into(),
            lines,
            currency: "EUR".into(),
            total_minor,
            placed_at: at(1_795_000_000_000),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::samples::*;
    use super::*;
    use crate::avro::{self, SchemaId};
    use crate::catalog::Catalog;
    use apache_avro::Schema;
    use proptest::prelude::*;

    fn schema_of<E: DomainEvent>() -> Schema {
        (*Catalog::embedded().unwrap().event(E::NAME).unwrap().schema).clone()
    }

    fn round_trip<E: DomainEvent + PartialEq + std::fmt::Debug>(event: E) {
        let schema = schema_of::<E>();
        let bytes = avro::encode(SchemaId(1), &schema, &event).unwrap();
        let back: E = avro::decode(&bytes[avro::HEADER_LEN..], &schema, None).unwrap();
        assert_eq!(back, event, "{} did not round-trip", E::NAME);
    }

    /// Appends a field with a default to `schema`: a BACKWARD-compatible change.
    fn with_added_field<E: DomainEvent>() -> Schema {
        let catalog = Catalog::embedded().unwrap();
        let mut json: serde_json::Value = serde_json::from_str(&catalog.event(E::NAME).unwrap().schema_json).unwrap();
        json["fields"].as_array_mut().unwrap().push(serde_json::json!(
            {"name": "added_later", "type": ["null", "string"], "default": null}
        ));
        Schema::parse_str(&json.to_string()).unwrap()
    }

    fn evolves<E: DomainEvent + PartialEq + std::fmt::Debug>(event: E) {
        let v1 = schema_of::<E>();
        let v2 = with_added_field::<E>();
        let bytes = avro::encode(SchemaId(1), &v1, &event).unwrap();
        let value = avro::decode_value(&bytes[avro::HEADER_LEN..], &v1, Some(&v2)).unwrap();
        let apache_avro::types::Value::Record(fields) = &value else { panic!("not a record") };
        assert_eq!(
            fields.last().unwrap(),
            &("added_later".to_owned(), apache_avro::types::Value::Union(0, Box::new(apache_avro::types::Value::Null)))
        );
        // And the old type still reads data resolved into the new schema's shape.
        let back: E = apache_avro::from_value(&value).unwrap();
        assert_eq!(back, event);
    }

    fn all_events() -> Vec<Box<dyn Fn()>> {
        let t = at(1_795_000_000_123);
        vec![
            Box::new(move || {
                round_trip(CustomerRegistered {
                    customer_id: "c1".into(),
                    email: "a@example.com".into(),
                    name: "Ada".into(),
                    registered_at: t,
                })
            }),
            Box::new(move || {
                round_trip(CustomerEmailChanged {
                    customer_id: "c1".into(),
                    new_email: "b@example.com".into(),
                    changed_at: t,
                })
            }),
            Box::new(|| round_trip(order_placed("o1"))),
            Box::new(move || {
                round_trip(OrderCancelled {
                    order_id: "o1".into(),
                    reason: CancellationReason::OutOfStock,
                    cancelled_at: t,
                })
            }),
            Box::new(move || {
                round_trip(OrderShipped {
                    order_id: "o1".into(),
                    carrier: "DHL".into(),
                    tracking_number: Some("JD0001".into()),
                    shipped_at: t,
                })
            }),
            Box::new(move || {
                round_trip(OrderShipped {
                    order_id: "o1".into(),
                    carrier: "DHL".into(),
                    tracking_number: None,
                    shipped_at: t,
                })
            }),
            Box::new(move || {
                round_trip(PaymentAuthorized {
                    payment_id: "p1".into(),
                    order_id: "o1".into(),
                    amount_minor: 3999,
                    currency: "EUR".into(),
                    authorized_at: t,
                })
            }),
            Box::new(move || {
                round_trip(PaymentCaptured {
                    payment_id: "p1".into(),
                    order_id: "o1".into(),
                    amount_minor: 3999,
                    currency: "EUR".into(),
                    captured_at: t,
                })
            }),
            Box::new(move || {
                round_trip(PaymentFailed {
                    payment_id: "p1".into(),
                    order_id: "o1".into(),
                    reason: "card declined".into(),
                    failed_at: t,
                })
            }),
            Box::new(move || {
                round_trip(PaymentRefunded {
                    payment_id: "p1".into(),
                    order_id: "o1".into(),
                    amount_minor: 1000,
                    currency: "EUR".into(),
                    refunded_at: t,
                })
            }),
        ]
    }

    #[test]
    fn every_event_type_round_trips_through_its_catalog_schema() {
        for check in all_events() {
            check();
        }
    }

    #[test]
    fn every_schema_reads_old_data_after_adding_a_field_with_a_default() {
        let t = at(1_795_000_000_123);
        evolves(CustomerRegistered {
            customer_id: "c1".into(),
            email: "a@example.com".into(),
            name: "Ada".into(),
            registered_at: t,
        });
        evolves(CustomerEmailChanged { customer_id: "c1".into(), new_email: "b@example.com".into(), changed_at: t });
        evolves(order_placed("o1"));
        evolves(OrderCancelled { order_id: "o1".into(), reason: CancellationReason::Other, cancelled_at: t });
        evolves(OrderShipped { order_id: "o1".into(), carrier: "UPS".into(), tracking_number: None, shipped_at: t });
        evolves(PaymentAuthorized {
            payment_id: "p".into(),
            order_id: "o".into(),
            amount_minor: 1,
            currency: "EUR".into(),
            authorized_at: t,
        });
        evolves(PaymentCaptured {
            payment_id: "p".into(),
            order_id: "o".into(),
            amount_minor: 1,
            currency: "EUR".into(),
            captured_at: t,
        });
        evolves(PaymentFailed { payment_id: "p".into(), order_id: "o".into(), reason: "r".into(), failed_at: t });
        evolves(PaymentRefunded {
            payment_id: "p".into(),
            order_id: "o".into(),
            amount_minor: 1,
            currency: "EUR".into(),
            refunded_at: t,
        });
    }

    #[test]
    fn every_catalog_type_has_a_rust_type_with_a_matching_key() {
        let catalog = Catalog::embedded().unwrap();
        let names = [
            CustomerRegistered::NAME,
            CustomerEmailChanged::NAME,
            OrderPlaced::NAME,
            OrderCancelled::NAME,
            OrderShipped::NAME,
            PaymentAuthorized::NAME,
            PaymentCaptured::NAME,
            PaymentFailed::NAME,
            PaymentRefunded::NAME,
        ];
        let listed: Vec<&str> = catalog.events().map(|e| e.name.as_str()).collect();
        for name in listed {
            assert!(names.contains(&name), "{name} has no Rust type");
        }
        assert_eq!(order_placed("o9").key(), "o9");
    }

    proptest! {
        #[test]
        fn random_orders_round_trip(
            order_id in "[a-z0-9-]{1,36}", customer_id in ".{0,40}", currency in "[A-Z]{3}",
            lines in proptest::collection::vec(("[A-Z-]{1,20}", 1..1000i32, 0..10_000_000i64), 0..20),
            millis in 0..4_102_444_800_000i64,
        ) {
            let lines: Vec<OrderLine> = lines.into_iter().map(|(sku, quantity, unit_price_minor)| OrderLine { sku, quantity, unit_price_minor }).collect();
            let total_minor = lines.iter().map(|l| i64::from(l.quantity) * l.unit_price_minor).sum();
            let order = OrderPlaced { order_id, customer_id, lines, currency, total_minor, placed_at: at(millis) };
            let schema = schema_of::<OrderPlaced>();
            let bytes = avro::encode(SchemaId(3), &schema, &order).unwrap();
            let back: OrderPlaced = avro::decode(&bytes[avro::HEADER_LEN..], &schema, None).unwrap();
            prop_assert_eq!(back, order);
        }
    }
}
