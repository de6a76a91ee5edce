use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{TimeDelta, Utc};
use serde::Serialize;
use sqlx::PgPool;
use tower_http::compression::CompressionLayer;
use tower_http::cors::CorsLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::cache::Cache;
use crate::db::{self, BidOutcome, NewAuction};
use crate::error::ApiError;
use crate::input::{self, Fields};
use crate::model::{Auction, Bid, Status};

const MAX_AUCTION_PAGE: i64 = 200;
const MAX_BID_PAGE: i64 = 500;
const DEFAULT_PAGE: i64 = 50;
const MAX_DURATION_SECS: i64 = 31_536_000;
const MAX_EXTENSION_SECS: i64 = 3600;

/// /ready must answer within a second even when a dependency hangs.
const READY_CHECK_TIMEOUT: Duration = Duration::from_millis(800);

pub struct AppState {
    pub pool: PgPool,
    pub cache: Option<Cache>,
}

type Shared = State<Arc<AppState>>;
type ApiResult = Result<Response, ApiError>;

pub fn router(state: Arc<AppState>, request_timeout: Duration) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/api/auctions", get(list_auctions).post(create_auction))
        .route("/api/auctions/{id}", get(get_auction))
        .route("/api/bids", axum::routing::post(place_bid))
        .route("/api/bids/{auction_id}", get(list_bids))
        .fallback(|| async { ApiError::NotFound })
        .with_state(state)
        .layer(DefaultBodyLimit::max(input::MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            request_timeout,
        ))
        .layer(axum::middleware::map_response(json_error_bodies))
        .layer(CompressionLayer::new())
        .layer(
            CorsLayer::new()
                .allow_origin(tower_http::cors::Any)
                .allow_methods([Method::GET, Method::HEAD, Method::POST])
                .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION])
                .expose_headers([header::LOCATION, header::RETRY_AFTER]),
        )
        .layer(TraceLayer::new_for_http())
}

/// Error responses made by the router (405) or the timeout layer carry no body; give them the
/// API's JSON error body, keeping their headers (`Allow`).
async fn json_error_bodies(res: Response) -> Response {
    let status = res.status();
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return res;
    }
    let (mut parts, _) = res.into_parts();
    let replacement = ApiError::from_status(status).into_response();
    let (new_parts, body) = replacement.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    for (name, value) in &new_parts.headers {
        parts.headers.insert(name.clone(), value.clone());
    }
    Response::from_parts(parts, body)
}

#[derive(Serialize)]
struct Readiness {
    status: &'static str,
    postgres: &'static str,
    redis: &'static str,
}

#[derive(Serialize)]
struct AuctionPage {
    auctions: Vec<Auction>,
    next_after_id: Option<i64>,
}

#[derive(Serialize)]
struct BidPage {
    bids: Vec<Bid>,
    next_before_id: Option<i64>,
}

async fn health() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"status":"ok"}"#,
    )
        .into_response()
}

async fn ready(State(app): Shared) -> Response {
    let pg = tokio::time::timeout(READY_CHECK_TIMEOUT, db::ping(&app.pool));
    let redis = async {
        match &app.cache {
            None => "disabled",
            Some(cache) => {
                if cache.ping().await {
                    "up"
                } else {
                    "down"
                }
            }
        }
    };
    let (pg, redis) = tokio::join!(pg, redis);
    let postgres_up = matches!(pg, Ok(Ok(())));
    let (status, word) = match (postgres_up, redis) {
        (false, _) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        (true, "up") => (StatusCode::OK, "ready"),
        (true, _) => (StatusCode::OK, "degraded"),
    };
    let body = Readiness {
        status: word,
        postgres: if postgres_up { "up" } else { "down" },
        redis,
    };
    let mut res = (status, Json(body)).into_response();
    if !postgres_up {
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    res
}

type RawPath = Result<Path<String>, axum::extract::rejection::PathRejection>;

/// Anything in the ID position that is not an ID, undecodable text included, names no resource.
fn path_id(raw: RawPath) -> Result<i64, ApiError> {
    let Path(raw) = raw.map_err(|_| ApiError::NotFound)?;
    input::parse_id(&raw).ok_or(ApiError::NotFound)
}

fn created(location: String, body: impl serde::Serialize) -> Response {
    let mut res = (StatusCode::CREATED, Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        res.headers_mut().insert(header::LOCATION, value);
    }
    res
}

enum End {
    At(chrono::DateTime<Utc>),
    After(i64),
}

fn new_auction(f: &Fields) -> Result<NewAuction, ApiError> {
    let title = f.string("title")?;
    let seller_id = f.id("seller_id")?;
    let start_price = f.money("start_price")?;
    let min_increment = f
        .opt_money("min_increment")?
        .unwrap_or(rust_decimal::Decimal::ONE);
    let starts_at = f.opt_time("starts_at")?;
    let ends_at = match (f.raw("ends_at"), f.raw("duration_seconds")) {
        (Some(_), Some(_)) => {
            return Err(ApiError::field(
                "duration_seconds",
                "may not be given together with ends_at",
            ))
        }
        (None, None) => {
            return Err(ApiError::field(
                "ends_at",
                "or duration_seconds is required",
            ))
        }
        (Some(_), None) => End::At(f.opt_time("ends_at")?.unwrap_or_default()),
        (None, Some(_)) => End::After(
            f.opt_int("duration_seconds", 1, MAX_DURATION_SECS)?
                .unwrap_or_default(),
        ),
    };
    let extension_seconds = f
        .opt_int("extension_seconds", 0, MAX_EXTENSION_SECS)?
        .unwrap_or(0);

    let title = title.trim();
    let chars = title.chars().count();
    if !(1..=200).contains(&chars) {
        return Err(ApiError::field("title", "must be 1 to 200 characters"));
    }
    if title.chars().any(char::is_control) {
        return Err(ApiError::field(
            "title",
            "may not contain control characters",
        ));
    }

    let now = input::truncate_micros(Utc::now());
    let starts_at = starts_at.unwrap_or(now);
    let max_duration = TimeDelta::seconds(MAX_DURATION_SECS);
    let (ends_at, end_field) = match ends_at {
        End::At(at) => {
            if at <= starts_at {
                return Err(ApiError::field("ends_at", "must be after starts_at"));
            }
            if at - starts_at > max_duration {
                return Err(ApiError::field(
                    "ends_at",
                    "must be at most 365 days after starts_at",
                ));
            }
            (at, "ends_at")
        }
        End::After(secs) => (starts_at + TimeDelta::seconds(secs), "duration_seconds"),
    };
    if ends_at <= now {
        return Err(ApiError::field(
            end_field,
            "the auction must end in the future",
        ));
    }
    Ok(NewAuction {
        title: title.to_owned(),
        seller_id,
        start_price,
        min_increment,
        starts_at,
        ends_at,
        extension_seconds: extension_seconds as i32,
    })
}

async fn create_auction(
    State(app): Shared,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let fields = Fields::parse(&headers, body)?;
    let new = new_auction(&fields)?;
    let auction = db::insert_auction(&app.pool, &new).await?;
    if let Some(cache) = &app.cache {
        let state = db::AuctionState {
            seller_id: auction.seller_id,
            starts_at: auction.starts_at,
            ends_at: auction.ends_at,
            current_price: None,
            min_next_bid: auction.min_next_bid,
        };
        cache.remember(auction.id, &state).await;
    }
    Ok(created(format!("/api/auctions/{}", auction.id), &auction))
}

async fn get_auction(State(app): Shared, id: RawPath) -> ApiResult {
    let id = path_id(id)?;
    let auction = db::get_auction(&app.pool, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(auction).into_response())
}

/// Query parameters in order; the first occurrence of a name wins.
struct Params(Vec<(String, String)>);

impl Params {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn int(&self, name: &'static str, min: i64, max: i64) -> Result<Option<i64>, ApiError> {
        self.get(name)
            .map(|v| {
                input::int_in_range(v, min, max).ok_or_else(|| input::range_error(name, min, max))
            })
            .transpose()
    }
}

type RawParams = Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>;

fn params(query: RawParams) -> Result<Params, ApiError> {
    query
        .map(|Query(pairs)| Params(pairs))
        .map_err(|_| ApiError::field("query", "is not a valid query string"))
}

async fn list_auctions(State(app): Shared, query: RawParams) -> ApiResult {
    let params = params(query)?;
    let status = params
        .get("status")
        .map(|s| {
            Status::parse(s)
                .ok_or_else(|| ApiError::field("status", "must be one of scheduled, open, closed"))
        })
        .transpose()?;
    let limit = params
        .int("limit", 1, MAX_AUCTION_PAGE)?
        .unwrap_or(DEFAULT_PAGE);
    let after_id = params.int("after_id", 0, i64::MAX)?.unwrap_or(0);
    let page = db::list_auctions(&app.pool, status, after_id, limit).await?;
    let next = page.more.then(|| page.items.last().map(|a| a.id)).flatten();
    Ok(Json(AuctionPage {
        auctions: page.items,
        next_after_id: next,
    })
    .into_response())
}

async fn place_bid(
    State(app): Shared,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let fields = Fields::parse(&headers, body)?;
    let auction_id = fields.id("auction_id")?;
    let amount = fields.money("amount")?;
    let bidder_id = fields.id("bidder_id")?;

    if let Some(cache) = &app.cache {
        if let Some((current_price, min_next_bid)) = cache
            .lookup(auction_id)
            .await
            .and_then(|c| c.certainly_too_low(bidder_id, amount, Utc::now()))
        {
            return Err(ApiError::BidTooLow {
                current_price,
                min_next_bid,
            });
        }
    }

    let (outcome, state) = db::place_bid(&app.pool, auction_id, bidder_id, amount).await?;
    if let (Some(cache), Some(state)) = (&app.cache, &state) {
        cache.remember(auction_id, state).await;
    }
    match outcome {
        BidOutcome::Accepted(bid) => Ok(created(format!("/api/bids/{auction_id}"), &bid)),
        BidOutcome::NotFound => Err(ApiError::NotFound),
        BidOutcome::NotOpen(status) => Err(ApiError::AuctionNotOpen(status.as_str())),
        BidOutcome::Forbidden => Err(ApiError::Forbidden(
            "a seller may not bid on their own auction",
        )),
        BidOutcome::TooLow => {
            let state = state.ok_or(ApiError::Internal)?;
            Err(ApiError::BidTooLow {
                current_price: state.current_price,
                min_next_bid: state.min_next_bid,
            })
        }
    }
}

async fn list_bids(State(app): Shared, auction_id: RawPath, query: RawParams) -> ApiResult {
    let auction_id = path_id(auction_id)?;
    let params = params(query)?;
    let limit = params
        .int("limit", 1, MAX_BID_PAGE)?
        .unwrap_or(DEFAULT_PAGE);
    let before_id = params.int("before_id", 1, i64::MAX)?;
    let page = db::list_bids(&app.pool, auction_id, before_id, limit)
        .await?
        .ok_or(ApiError::NotFound)?;
    let next = page.more.then(|| page.items.last().map(|b| b.id)).flatten();
    Ok(Json(BidPage {
        bids: page.items,
        next_before_id: next,
    })
    .into_response())
}
