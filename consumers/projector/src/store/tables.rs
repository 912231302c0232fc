//! The tables of one generation and every SQL statement over them, formatted once per
//! generation (not per query), plus the DDL that creates and drops a generation's tables.
//!
//! Generation 1's tables come from migration 4000; later generations get the same columns and
//! indexes from [`TABLES_DDL`], the one template for both backends (the 4000 migrations are
//! the same text for PostgreSQL and SQLite; should they ever differ, split the template here).
//! The write lock row (`projector_write_lock`) is shared by every generation. [`ProjectorTables`]
//! is what [`eventline_common::generations`] needs of them to rebuild, swap and retire
//! generations.

use eventline_common::db::Backend;
use eventline_common::generations::{table_prefix, GenerationState, GenerationTables};

/// The projector's name, [`ConsumerService::NAME`](eventline_common::service::ConsumerService):
/// its rows of `eventline_generations` and its tables' prefix.
pub const SERVICE: &str = "projector";
/// The shared write lock: every write transaction (a batch, a generation transition) updates it
/// first, so they run one at a time.
pub const LOCK: &str = "UPDATE projector_write_lock SET version = version + 1 WHERE id = 1";
/// The projector's generations' numbers, oldest first (parameter: [`SERVICE`]).
pub(crate) const GENERATIONS: &str =
    "SELECT generation FROM eventline_generations WHERE service = $1 ORDER BY generation";

/// The projector's tables for [`eventline_common::generations`].
#[derive(Debug, Clone, Copy)]
pub struct ProjectorTables;

impl GenerationTables for ProjectorTables {
    fn write_lock(&self) -> &'static str {
        LOCK
    }

    fn create_statements(&self, prefix: &str) -> Vec<String> {
        templated(TABLES_DDL, prefix)
    }

    fn drop_statements(&self, prefix: &str) -> Vec<String> {
        TABLE_NAMES.iter().map(|name| format!("DROP TABLE IF EXISTS {prefix}{name}")).collect()
    }

    fn applied_events(&self, prefix: &str) -> Option<String> {
        Some(format!("SELECT COUNT(*) FROM {prefix}applied_events"))
    }

    /// Migration 4001's table, where the generations were kept before `eventline_generations`.
    fn legacy_table(&self) -> Option<&'static str> {
        Some("projector_generations")
    }
}

/// The applied-events table of a generation: in [`TABLES_DDL`] and, the same text, in
/// [`APPLIED_EVENTS_UPGRADE`].
macro_rules! applied_events_ddl {
    () => {
        "
CREATE TABLE {p}applied_events (
    event_ms BIGINT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (event_ms, event_id)
);
"
    };
}

/// The tables of a generation, created with the columns and indexes generation 1 has after
/// migration 4000 and [`APPLIED_EVENTS_UPGRADE`] (`{p}` is the table prefix). Keep in step with
/// `migrations/*/4000_projector_read_model.sql`; a test compares the two.
pub const TABLES_DDL: &str = concat!(
    "
CREATE TABLE {p}orders (
    order_id TEXT PRIMARY KEY,
    customer_id TEXT,
    currency TEXT,
    total_minor BIGINT NOT NULL,
    status TEXT NOT NULL,
    placed_at_ms BIGINT,
    cancelled_at_ms BIGINT,
    cancel_reason TEXT,
    shipped_at_ms BIGINT,
    carrier TEXT,
    tracking_number TEXT,
    captured_minor BIGINT NOT NULL,
    refunded_minor BIGINT NOT NULL,
    last_event_id TEXT NOT NULL,
    last_event_ms BIGINT NOT NULL
);
CREATE INDEX {p}orders_by_customer ON {p}orders (customer_id, placed_at_ms, order_id);
CREATE TABLE {p}customers (
    customer_id TEXT PRIMARY KEY,
    email TEXT,
    name TEXT,
    registered_at_ms BIGINT,
    order_count BIGINT NOT NULL,
    lifetime_value_minor BIGINT NOT NULL,
    last_event_id TEXT NOT NULL,
    last_event_ms BIGINT NOT NULL
);
CREATE TABLE {p}payments (
    payment_id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL,
    currency TEXT,
    status TEXT NOT NULL,
    authorized_minor BIGINT NOT NULL,
    captured_minor BIGINT NOT NULL,
    refunded_minor BIGINT NOT NULL,
    failure_reason TEXT,
    last_event_id TEXT NOT NULL,
    last_event_ms BIGINT NOT NULL
);
CREATE INDEX {p}payments_by_order ON {p}payments (order_id);
",
    applied_events_ddl!()
);

/// Rewrites a generation's `applied_events` from the first shape (keyed by the event id alone)
/// to the one keyed by (event time, event id) (see [`crate::store`]). The ids already there
/// keep time 0, "unknown": [`Tables::legacy_applied`] still finds them.
pub const APPLIED_EVENTS_UPGRADE: &str = concat!(
    "
CREATE TABLE {p}applied_events_upgrade AS SELECT event_id FROM {p}applied_events;
DROP TABLE {p}applied_events;
",
    applied_events_ddl!(),
    "
INSERT INTO {p}applied_events (event_ms, event_id) SELECT 0, event_id FROM {p}applied_events_upgrade;
DROP TABLE {p}applied_events_upgrade
"
);

/// The time under which ids applied before the upgrade are kept.
pub const UNKNOWN_TIME_MS: i64 = 0;

/// The column names of a table (none when it does not exist), parameter: the table name.
pub(crate) fn column_names(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "SELECT name FROM pragma_table_info($1)",
        Backend::Postgres => {
            "SELECT CAST(column_name AS TEXT) FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1"
        }
    }
}

/// The tables of a generation, in the order they are dropped.
const TABLE_NAMES: [&str; 4] = ["orders", "customers", "payments", "applied_events"];

pub(crate) const ORDER_COLUMNS: &str = "order_id, customer_id, currency, total_minor, placed_at_ms, cancelled_at_ms, \
     cancel_reason, shipped_at_ms, carrier, tracking_number, captured_minor, refunded_minor, last_event_id, last_event_ms";
pub(crate) const CUSTOMER_COLUMNS: &str =
    "customer_id, email, name, registered_at_ms, order_count, lifetime_value_minor, last_event_id, last_event_ms";
pub(crate) const PAYMENT_COLUMNS: &str =
    "payment_id, order_id, currency, authorized_minor, captured_minor, refunded_minor, \
     failure_reason, last_event_id, last_event_ms";

/// The SQL of one generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tables {
    generation: i64,
    prefix: String,
    pub(crate) claim_applied: RowsStatement,
    /// The same insert, answering with the pairs it added.
    pub(crate) claim_applied_returning: RowsStatement,
    /// The (time, id) pairs among the given ones applied before.
    pub(crate) applied_among: RowsStatement,
    /// Ids among the given ones applied before the upgrade to time-keyed ids (time unknown).
    pub(crate) legacy_applied: ListStatement,
    /// 1 when any id applied before that upgrade is kept, else 0.
    pub(crate) has_legacy_applied: String,
    pub(crate) upsert_orders: RowsStatement,
    pub(crate) upsert_customers: RowsStatement,
    pub(crate) upsert_payments: RowsStatement,
    pub(crate) orders_among: ListStatement,
    pub(crate) customers_among: ListStatement,
    pub(crate) payments_among: ListStatement,
    pub(crate) order: String,
    pub(crate) customer: String,
    pub(crate) payments_of_order: String,
    /// `customer_orders[status given as usize][cursor given as usize]`.
    customer_orders: [[String; 2]; 2],
    pub(crate) all_orders: String,
    pub(crate) all_customers: String,
    pub(crate) all_payments: String,
    pub(crate) all_applied: String,
}

impl Tables {
    /// The tables of `generation` (prefix [`table_prefix`]).
    pub fn of(generation: i64) -> Self {
        let p = table_prefix(SERVICE, generation);
        Self {
            generation,
            claim_applied: RowsStatement::new(
                format!("INSERT INTO {p}applied_events (event_ms, event_id) VALUES "),
                2,
                " ON CONFLICT (event_ms, event_id) DO NOTHING",
            ),
            claim_applied_returning: RowsStatement::new(
                format!("INSERT INTO {p}applied_events (event_ms, event_id) VALUES "),
                2,
                " ON CONFLICT (event_ms, event_id) DO NOTHING RETURNING event_ms, event_id",
            ),
            applied_among: RowsStatement::new(
                format!("SELECT event_ms, event_id FROM {p}applied_events WHERE (event_ms, event_id) IN (VALUES "),
                2,
                ")",
            ),
            legacy_applied: ListStatement::new(format!(
                "SELECT event_id FROM {p}applied_events WHERE event_ms = {UNKNOWN_TIME_MS} AND event_id IN ("
            )),
            has_legacy_applied: format!(
                "SELECT COUNT(*) FROM (SELECT 1 FROM {p}applied_events WHERE event_ms = {UNKNOWN_TIME_MS} LIMIT 1) AS legacy"
            ),
            upsert_orders: RowsStatement::new(
                format!(
                    "INSERT INTO {p}orders (order_id, customer_id, currency, total_minor, status, \
                     placed_at_ms, cancelled_at_ms, cancel_reason, shipped_at_ms, carrier, tracking_number, \
                     captured_minor, refunded_minor, last_event_id, last_event_ms) VALUES "
                ),
                15,
                " ON CONFLICT (order_id) DO UPDATE SET customer_id = excluded.customer_id, currency = excluded.currency, \
                 total_minor = excluded.total_minor, status = excluded.status, placed_at_ms = excluded.placed_at_ms, \
                 cancelled_at_ms = excluded.cancelled_at_ms, cancel_reason = excluded.cancel_reason, \
                 shipped_at_ms = excluded.shipped_at_ms, carrier = excluded.carrier, tracking_number = excluded.tracking_number, \
                 captured_minor = excluded.captured_minor, refunded_minor = excluded.refunded_minor, \
                 last_event_id = excluded.last_event_id, last_event_ms = excluded.last_event_ms",
            ),
            upsert_customers: RowsStatement::new(
                format!(
                    "INSERT INTO {p}customers (customer_id, email, name, registered_at_ms, \
                     order_count, lifetime_value_minor, last_event_id, last_event_ms) VALUES "
                ),
                8,
                " ON CONFLICT (customer_id) DO UPDATE SET email = excluded.email, name = excluded.name, \
                 registered_at_ms = excluded.registered_at_ms, order_count = excluded.order_count, \
                 lifetime_value_minor = excluded.lifetime_value_minor, last_event_id = excluded.last_event_id, \
                 last_event_ms = excluded.last_event_ms",
            ),
            upsert_payments: RowsStatement::new(
                format!(
                    "INSERT INTO {p}payments (payment_id, order_id, currency, status, \
                     authorized_minor, captured_minor, refunded_minor, failure_reason, last_event_id, last_event_ms) VALUES "
                ),
                10,
                " ON CONFLICT (payment_id) DO UPDATE SET order_id = excluded.order_id, currency = excluded.currency, \
                 status = excluded.status, authorized_minor = excluded.authorized_minor, \
                 captured_minor = excluded.captured_minor, refunded_minor = excluded.refunded_minor, \
                 failure_reason = excluded.failure_reason, last_event_id = excluded.last_event_id, \
                 last_event_ms = excluded.last_event_ms",
            ),
            orders_among: ListStatement::new(format!("SELECT {ORDER_COLUMNS} FROM {p}orders WHERE order_id IN (")),
            customers_among: ListStatement::new(format!(
                "SELECT {CUSTOMER_COLUMNS} FROM {p}customers WHERE customer_id IN ("
            )),
            payments_among: ListStatement::new(format!(
                "SELECT {PAYMENT_COLUMNS} FROM {p}payments WHERE payment_id IN ("
            )),
            order: format!("SELECT {ORDER_COLUMNS} FROM {p}orders WHERE order_id = $1"),
            customer: format!("SELECT {CUSTOMER_COLUMNS} FROM {p}customers WHERE customer_id = $1"),
            payments_of_order: format!(
                "SELECT {PAYMENT_COLUMNS} FROM {p}payments WHERE order_id = $1 ORDER BY payment_id"
            ),
            customer_orders: [
                [customer_orders(&p, false, false), customer_orders(&p, false, true)],
                [customer_orders(&p, true, false), customer_orders(&p, true, true)],
            ],
            all_orders: format!("SELECT {ORDER_COLUMNS} FROM {p}orders"),
            all_customers: format!("SELECT {CUSTOMER_COLUMNS} FROM {p}customers"),
            all_payments: format!("SELECT {PAYMENT_COLUMNS} FROM {p}payments"),
            all_applied: format!("SELECT event_ms, event_id FROM {p}applied_events"),
            prefix: p,
        }
    }

    pub fn generation(&self) -> i64 {
        self.generation
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `projector_…orders`, `…customers`, `…payments`, `…applied_events`.
    pub fn names(&self) -> Vec<String> {
        TABLE_NAMES.iter().map(|name| format!("{}{name}", self.prefix)).collect()
    }

    /// A page of a customer's placed orders; parameters: customer, then the status if
    /// `with_status`, then the cursor's time and order id if `with_cursor`, then the limit.
    pub(crate) fn customer_orders(&self, with_status: bool, with_cursor: bool) -> &str {
        &self.customer_orders[usize::from(with_status)][usize::from(with_cursor)]
    }

    /// The statements that create this generation's tables and indexes.
    pub fn create_statements(&self) -> Vec<String> {
        templated(TABLES_DDL, &self.prefix)
    }

    /// The statements that upgrade this generation's `applied_events` (see
    /// [`APPLIED_EVENTS_UPGRADE`]).
    pub fn upgrade_statements(&self) -> Vec<String> {
        templated(APPLIED_EVENTS_UPGRADE, &self.prefix)
    }

    /// The statements that drop this generation's tables (with their indexes); absent tables
    /// are fine, so an interrupted cleanup can run again.
    pub fn drop_statements(&self) -> Vec<String> {
        ProjectorTables.drop_statements(&self.prefix)
    }
}

/// `template`'s `;`-separated statements with `{p}` replaced by `prefix`.
fn templated(template: &str, prefix: &str) -> Vec<String> {
    template
        .split(';')
        .map(str::trim)
        .filter(|statement| !statement.is_empty())
        .map(|statement| statement.replace("{p}", prefix))
        .collect()
}

/// The most bind parameters one multi-row statement gets (PostgreSQL allows 65,535 and SQLite
/// 32,766); past a few hundred, fewer statements stop paying.
const MAX_PARAMETERS: usize = 960;

/// `$first, $first+1, …` for `count` parameters on PostgreSQL; `?, ?, …` on SQLite. sqlx-sqlite
/// asks SQLite for the name of every parameter it binds, which SQLite finds by a linear scan of
/// the named ones: numbered (`$n`) parameters make a statement cost O(n²) in its parameters (at
/// 1,000 that lookup was a quarter of the projector's CPU), anonymous ones have no name to find.
fn placeholders(out: &mut String, backend: Backend, first: usize, count: usize) {
    for i in 0..count {
        if i > 0 {
            out.push_str(", ");
        }
        match backend {
            Backend::Postgres => {
                out.push('$');
                out.push_str(&(first + i).to_string());
            }
            Backend::Sqlite => out.push('?'),
        }
    }
}

/// A multi-row `INSERT … VALUES (…), (…) [ON CONFLICT …]` of rows with `columns` values each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RowsStatement {
    head: String,
    columns: usize,
    tail: &'static str,
}

impl RowsStatement {
    fn new(head: String, columns: usize, tail: &'static str) -> Self {
        Self { head, columns, tail }
    }

    /// How many rows one statement takes.
    pub(crate) fn rows_per_statement(&self) -> usize {
        (MAX_PARAMETERS / self.columns).max(1)
    }

    /// The statement for `rows` rows.
    pub(crate) fn sql(&self, backend: Backend, rows: usize) -> String {
        let mut sql = String::with_capacity(self.head.len() + self.tail.len() + rows * self.columns * 6);
        sql.push_str(&self.head);
        for row in 0..rows {
            if row > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            placeholders(&mut sql, backend, row * self.columns + 1, self.columns);
            sql.push(')');
        }
        sql.push_str(self.tail);
        sql
    }
}

/// A `SELECT … WHERE key IN (…)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListStatement {
    head: String,
}

impl ListStatement {
    fn new(head: String) -> Self {
        Self { head }
    }

    pub(crate) const KEYS_PER_STATEMENT: usize = MAX_PARAMETERS;

    /// The statement for `keys` keys.
    pub(crate) fn sql(&self, backend: Backend, keys: usize) -> String {
        let mut sql = String::with_capacity(self.head.len() + keys * 6 + 1);
        sql.push_str(&self.head);
        placeholders(&mut sql, backend, 1, keys);
        sql.push(')');
        sql
    }
}

fn customer_orders(prefix: &str, with_status: bool, with_cursor: bool) -> String {
    let mut sql =
        format!("SELECT {ORDER_COLUMNS} FROM {prefix}orders WHERE customer_id = $1 AND placed_at_ms IS NOT NULL");
    let mut next = 2;
    if with_status {
        sql.push_str(&format!(" AND status = ${next}"));
        next += 1;
    }
    if with_cursor {
        sql.push_str(&format!(
            " AND (placed_at_ms < ${a} OR (placed_at_ms = ${a} AND order_id < ${b}))",
            a = next,
            b = next + 1
        ));
        next += 2;
    }
    sql.push_str(&format!(" ORDER BY placed_at_ms DESC, order_id DESC LIMIT ${next}"));
    sql
}

/// Whether a stored state allows applying batches (see [`GenerationState::is_writable`]).
pub(crate) fn writable(state: Option<GenerationState>) -> bool {
    state.is_some_and(GenerationState::is_writable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_row_statements_number_their_parameters_row_after_row() {
        let tables = Tables::of(1);
        let sql = tables.claim_applied.sql(Backend::Postgres, 2);
        assert_eq!(
            sql,
            "INSERT INTO projector_applied_events (event_ms, event_id) VALUES ($1, $2), ($3, $4) \
             ON CONFLICT (event_ms, event_id) DO NOTHING"
        );
        assert_eq!(
            tables.applied_among.sql(Backend::Postgres, 2),
            "SELECT event_ms, event_id FROM projector_applied_events \
             WHERE (event_ms, event_id) IN (VALUES ($1, $2), ($3, $4))"
        );
        let sql = tables.upsert_customers.sql(Backend::Postgres, 2);
        assert!(sql.contains("VALUES ($1, $2, $3, $4, $5, $6, $7, $8), ($9, $10,"), "{sql}");
        assert!(sql.ends_with("last_event_ms = excluded.last_event_ms"), "{sql}");
        assert_eq!(
            tables.payments_among.sql(Backend::Postgres, 2),
            format!("SELECT {PAYMENT_COLUMNS} FROM projector_payments WHERE payment_id IN ($1, $2)")
        );
        assert!(tables.upsert_orders.rows_per_statement() * 15 <= MAX_PARAMETERS);
    }

    #[test]
    fn sqlite_statements_take_anonymous_parameters() {
        let tables = Tables::of(1);
        assert!(tables.claim_applied.sql(Backend::Sqlite, 2).contains("VALUES (?, ?), (?, ?) ON CONFLICT"));
        assert!(tables
            .legacy_applied
            .sql(Backend::Sqlite, 3)
            .ends_with("WHERE event_ms = 0 AND event_id IN (?, ?, ?)"));
    }

    #[test]
    fn the_first_generation_reads_the_original_tables() {
        let tables = Tables::of(1);
        assert_eq!(tables.prefix(), "projector_");
        assert_eq!(
            tables.names(),
            ["projector_orders", "projector_customers", "projector_payments", "projector_applied_events"]
        );
        assert!(tables.order.contains("FROM projector_orders WHERE"));
    }

    #[test]
    fn later_generations_have_tables_of_their_own_in_every_statement() {
        let tables = Tables::of(7);
        assert_eq!(tables.prefix(), "projector_g7_");
        for sql in [
            &tables.claim_applied.sql(Backend::Postgres, 2),
            &tables.claim_applied_returning.sql(Backend::Postgres, 2),
            &tables.applied_among.sql(Backend::Postgres, 2),
            &tables.legacy_applied.sql(Backend::Postgres, 2),
            &tables.has_legacy_applied,
            &tables.upsert_orders.sql(Backend::Postgres, 2),
            &tables.upsert_customers.sql(Backend::Postgres, 2),
            &tables.upsert_payments.sql(Backend::Postgres, 2),
            &tables.orders_among.sql(Backend::Postgres, 2),
            &tables.customers_among.sql(Backend::Postgres, 2),
            &tables.payments_among.sql(Backend::Postgres, 2),
            &tables.order,
            &tables.customer,
            &tables.payments_of_order,
            &tables.all_orders,
            &tables.all_applied,
        ] {
            assert!(sql.contains("projector_g7_"), "{sql}");
        }
        for with_status in [false, true] {
            for with_cursor in [false, true] {
                assert!(tables.customer_orders(with_status, with_cursor).contains("FROM projector_g7_orders"));
            }
        }
        let create = tables.create_statements();
        assert_eq!(create.len(), 6, "four tables and two indexes");
        assert!(create.iter().all(|s| s.contains("projector_g7_") && !s.contains("{p}")));
        assert!(create[1].starts_with("CREATE INDEX projector_g7_orders_by_customer ON projector_g7_orders"));
        assert_eq!(tables.drop_statements()[3], "DROP TABLE IF EXISTS projector_g7_applied_events");
        let upgrade = tables.upgrade_statements();
        assert_eq!(upgrade.len(), 5);
        assert!(upgrade[3].contains(&format!("SELECT {UNKNOWN_TIME_MS}, event_id")), "{}", upgrade[3]);
        assert!(upgrade.iter().all(|s| s.contains("projector_g7_applied_events") && !s.contains("{p}")));
    }

    #[test]
    fn the_parameters_of_a_page_are_numbered_in_order() {
        let tables = Tables::of(2);
        assert!(tables.customer_orders(false, false).ends_with("LIMIT $2"));
        assert!(tables.customer_orders(true, false).contains("status = $2"));
        assert!(tables.customer_orders(true, true).contains("placed_at_ms < $3"));
        assert!(tables.customer_orders(true, true).ends_with("LIMIT $5"));
        assert!(tables.customer_orders(false, true).ends_with("LIMIT $4"));
    }

    #[test]
    fn only_building_and_active_generations_are_written() {
        assert!(writable(Some(GenerationState::Active)));
        assert!(writable(Some(GenerationState::Building)));
        assert!(!writable(Some(GenerationState::Previous)));
        assert!(!writable(Some(GenerationState::Retired)));
        assert!(!writable(None));
    }
}
