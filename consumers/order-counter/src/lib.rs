//! Counts the orders placed, per currency, and serves the counts at `GET /orders/count`.
use axum::{extract::State, http::StatusCode, routing::get, Json, Router};
use eventline_common::db::Database;
use eventline_common::events::OrderPlaced;
use eventline_common::kafka::consumer::{Batch, ConsumerSettings, Handler, HandlerError, OffsetMode, OffsetStore};
use eventline_common::service::{BasicSettings, ConsumerRun, ConsumerService, ServiceContext};

pub struct OrderCounter {
    db: Database,
}

impl ConsumerService for OrderCounter {
    const NAME: &'static str = "order_counter"; // [consumers.order_counter], `eventline run order_counter`
    type Settings = BasicSettings;
    type Handler = OrderCounter;

    fn default_settings() -> BasicSettings {
        let mut consumer = ConsumerSettings::new("order-counter", ["orders"]);
        consumer.event_types = vec!["OrderPlaced".into()];
        consumer.offset_mode = OffsetMode::Transactional; // counts and offsets commit together
        BasicSettings::new("127.0.0.1:8090", consumer)
    }

    async fn build(ctx: &ServiceContext<BasicSettings>) -> anyhow::Result<Self> {
        let table = "CREATE TABLE IF NOT EXISTS order_counts (currency TEXT PRIMARY KEY, orders BIGINT NOT NULL)";
        sqlx::query(table).execute(ctx.db.pool()).await?;
        Ok(Self { db: ctx.db.clone() })
    }

    fn handler(&self, _run: &ConsumerRun) -> OrderCounter {
        OrderCounter { db: self.db.clone() }
    }

    fn routes(&self) -> Router {
        Router::new().route("/orders/count", get(counts)).with_state(self.db.clone())
    }
}

impl Handler for OrderCounter {
    async fn handle(&self, batch: &Batch) -> Result<(), HandlerError> {
        let mut tx = self.db.pool().begin().await.map_err(HandlerError::retryable)?;
        for event in batch {
            let order: OrderPlaced = event.event()?; // an order that does not fit is dead-lettered alone
            sqlx::query(
                "INSERT INTO order_counts (currency, orders) VALUES ($1, 1) \
                 ON CONFLICT (currency) DO UPDATE SET orders = order_counts.orders + 1",
            )
            .bind(&order.currency)
            .execute(&mut *tx)
            .await
            .map_err(HandlerError::retryable)?;
        }
        OffsetStore::save(&mut tx, batch.group(), batch.positions()).await.map_err(HandlerError::retryable)?;
        tx.commit().await.map_err(HandlerError::retryable)
    }
}

/// `{"EUR": 3, "USD": 1}`
async fn counts(State(db): State<Database>) -> Result<Json<serde_json::Map<String, serde_json::Value>>, StatusCode> {
    let rows: Vec<(String, i64)> = sqlx::query_as("SELECT currency, orders FROM order_counts")
        .fetch_all(db.pool())
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    Ok(Json(rows.into_iter().map(|(currency, orders)| (currency, orders.into())).collect()))
}
