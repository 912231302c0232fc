//! The query API (JSON):
//! - `GET /v1/orders/{order_id}`: an order with its payments;
//! - `GET /v1/customers/{customer_id}`: a customer with order count and lifetime value;
//! - `GET /v1/customers/{customer_id}/orders?status=&limit=&cursor=`: the customer's orders,
//!   newest first, keyset-paginated (`next_cursor` in the answer, absent on the last page).
//!
//! Every route takes `?after=topic:partition:offset` (or the `Eventline-Position` header) for
//! read-your-writes: the answer waits until the read model has applied that event, at most
//! `wait_timeout`, and otherwise is `412` problem `urn:eventline:problem:not-caught-up` with
//! `Retry-After: 1` and the position. Absent rows are `404` problem+json.
//!
//! Each request reads the generation of the read model that is active when it starts (one
//! lookup), waits on that generation's consumer group, and reads only its tables.

pub mod error;
pub mod position;
mod views;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use crate::domain::OrderStatus;
use crate::generations::ActiveStore;
use crate::store::{Cursor, Store};
pub use error::ApiError;
pub use position::{Waiter, POSITION_HEADER};
use views::{CustomerView, OrderPage, OrderView};

pub const ORDER_PATH: &str = "/v1/orders/{order_id}";
pub const CUSTOMER_PATH: &str = "/v1/customers/{customer_id}";
pub const CUSTOMER_ORDERS_PATH: &str = "/v1/customers/{customer_id}/orders";

/// What the routes share.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// Each request reads the generation active when it starts (see [`ActiveStore`]).
    pub read_models: ActiveStore,
    pub waiter: Waiter,
    pub default_page_size: u32,
    pub max_page_size: u32,
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route(ORDER_PATH, get(get_order))
        .route(CUSTOMER_PATH, get(get_customer))
        .route(CUSTOMER_ORDERS_PATH, get(list_customer_orders))
        .with_state(state)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadParams {
    after: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    after: Option<String>,
    status: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

fn query<T>(params: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    params
        .map(|Query(params)| params)
        .map_err(|rejection| ApiError::BadRequest { parameter: "query", detail: rejection.body_text() })
}

/// The active generation's store, once the request's position (if any) is applied there.
async fn resolve(state: &ApiState, after: Option<&str>, headers: &HeaderMap) -> Result<Store, ApiError> {
    let position = position::requested(after, headers)?;
    let (generation, store) = state.read_models.current().await?;
    if let Some(position) = position {
        state.waiter.wait_for(&generation.group_id, &position).await?;
    }
    Ok(store)
}

async fn get_order(
    State(state): State<ApiState>,
    Path(order_id): Path<String>,
    headers: HeaderMap,
    params: Result<Query<ReadParams>, QueryRejection>,
) -> Result<Json<OrderView>, ApiError> {
    let params = query(params)?;
    let store = resolve(&state, params.after.as_deref(), &headers).await?;
    let not_found = || ApiError::NotFound { what: "order", id: order_id.clone() };
    let order = store.order(&order_id).await?.filter(|o| o.placed_at.is_some()).ok_or_else(not_found)?;
    let payments = store.payments_of_order(&order_id).await?;
    Ok(Json(OrderView::new(order, payments)))
}

async fn get_customer(
    State(state): State<ApiState>,
    Path(customer_id): Path<String>,
    headers: HeaderMap,
    params: Result<Query<ReadParams>, QueryRejection>,
) -> Result<Json<CustomerView>, ApiError> {
    let params = query(params)?;
    let store = resolve(&state, params.after.as_deref(), &headers).await?;
    let customer = store
        .customer(&customer_id)
        .await?
        .filter(|c| c.registered_at.is_some())
        .ok_or(ApiError::NotFound { what: "customer", id: customer_id })?;
    Ok(Json(CustomerView::from(customer)))
}

async fn list_customer_orders(
    State(state): State<ApiState>,
    Path(customer_id): Path<String>,
    headers: HeaderMap,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<OrderPage>, ApiError> {
    let params = query(params)?;
    let status = params
        .status
        .as_deref()
        .map(|text| {
            OrderStatus::parse(text).ok_or_else(|| ApiError::BadRequest {
                parameter: "status",
                detail: "expected one of placed, paid, shipped, cancelled".to_owned(),
            })
        })
        .transpose()?;
    let limit = match params.limit.as_deref() {
        None => state.default_page_size,
        Some(text) => text.parse::<u32>().ok().filter(|n| (1..=state.max_page_size).contains(n)).ok_or_else(|| {
            ApiError::BadRequest {
                parameter: "limit",
                detail: format!("expected an integer from 1 to {}", state.max_page_size),
            }
        })?,
    };
    let cursor = params
        .cursor
        .as_deref()
        .map(|text| {
            Cursor::parse(text).ok_or_else(|| ApiError::BadRequest {
                parameter: "cursor",
                detail: "expected the next_cursor of a previous page".to_owned(),
            })
        })
        .transpose()?;
    let store = resolve(&state, params.after.as_deref(), &headers).await?;
    if store.customer(&customer_id).await?.is_none() {
        return Err(ApiError::NotFound { what: "customer", id: customer_id });
    }
    let mut orders = store.customer_orders(&customer_id, status, limit + 1, cursor.as_ref()).await?;
    let more = orders.len() > limit as usize;
    orders.truncate(limit as usize);
    let next_cursor = if more { orders.last().and_then(Cursor::after).map(|c| c.to_string()) } else { None };
    Ok(Json(OrderPage { orders: orders.into_iter().map(|o| OrderView::new(o, Vec::new())).collect(), next_cursor }))
}
