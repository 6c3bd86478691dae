//! `GET /api/v1/open/counts` and `/open/occupancy`: the open-data statistics (crate::open_data),
//! as JSON or CSV, for principals with `open_data` (every role; tokens of role `open_data`
//! can read nothing else). A principal limited to some cameras gets the cells of those.

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use time::OffsetDateTime;

use super::auth::Principal;
use super::{blocking, check_span, parse_time, query_params, ApiError, ApiState};
use crate::open_data::{self, Cells};

#[derive(Debug, PartialEq)]
struct OpenQuery {
    since: Option<OffsetDateTime>,
    until: Option<OffsetDateTime>,
    csv: bool,
}

/// `since`, `until` (RFC 3339, whole hours are the buckets) and `format` (`json`, `csv`);
/// anything else is a 400 naming the parameter.
fn parse_query(raw: Option<&str>) -> Result<OpenQuery, ApiError> {
    let mut q = OpenQuery { since: None, until: None, csv: false };
    for (key, value) in query_params(raw)? {
        match key.as_str() {
            "since" => q.since = Some(parse_time(&key, &value)?),
            "until" => q.until = Some(parse_time(&key, &value)?),
            "format" => {
                q.csv = match value.as_str() {
                    "json" => false,
                    "csv" => true,
                    v => {
                        return Err(ApiError::bad_param(
                            "format",
                            format!("query parameter `format` must be `json` or `csv`, got `{v}`"),
                        ))
                    }
                }
            }
            _ => {
                return Err(ApiError::bad_param(
                    &key,
                    format!("unknown query parameter `{key}` (allowed: since, until, format)"),
                ))
            }
        }
    }
    check_span(q.since, q.until)?;
    Ok(q)
}

/// The grid cells of the cameras `p` may see.
fn cells(st: &ApiState, p: &Principal) -> Cells {
    let filter = p.filter(&st.registry);
    st.registry
        .all()
        .into_iter()
        .filter(|c| filter.as_ref().is_none_or(|f| f.allows_camera(&c.id)))
        .filter_map(|c| Some((c.id, c.grid_cell?)))
        .collect()
}

fn csv_response(body: String) -> Response {
    let mut resp = body.into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    resp
}

/// Reads the open rows of the query's span with `read`, as JSON (`{"min_count", key: rows}`)
/// or CSV (`csv`).
async fn serve<T: serde::Serialize + Send + 'static>(
    st: ApiState,
    p: Principal,
    raw: Option<String>,
    key: &'static str,
    read: open_data::Reader<T>,
    csv: fn(&[T]) -> String,
) -> Result<Response, ApiError> {
    let q = parse_query(raw.as_deref())?;
    let (cells, k, s) = (cells(&st, &p), st.open_data.min_count, st.store.clone());
    let rows = blocking(move || Ok(read(&s, &cells, k, q.since, q.until)?)).await?;
    Ok(if q.csv {
        csv_response(csv(&rows))
    } else {
        Json(serde_json::json!({"min_count": k, key: rows})).into_response()
    })
}

pub(super) async fn counts(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    serve(st, p, raw, "counts", open_data::read_counts, open_data::counts_csv).await
}

pub(super) async fn occupancy(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    serve(st, p, raw, "occupancy", open_data::read_occupancy, open_data::occupancy_csv).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_checked() {
        let q = parse_query(Some("since=2026-03-01T10:00:00Z&format=csv")).unwrap();
        assert!(q.csv && q.since.is_some() && q.until.is_none());
        assert!(!parse_query(None).unwrap().csv);
        for (raw, param) in [
            ("format=xml", "format"),
            ("bucket=minute", "bucket"),
            ("camera=cam1", "camera"),
            ("since=yesterday", "since"),
            ("format=csv&format=json", "format"),
            ("since=2026-03-01T11:00:00Z&until=2026-03-01T10:00:00Z", "until"),
        ] {
            assert_eq!(
                parse_query(Some(raw)).unwrap_err().parameter.as_deref(),
                Some(param),
                "{raw}"
            );
        }
    }
}
