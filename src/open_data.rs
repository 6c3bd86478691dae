//! Open data: line counts and zone occupancy aggregated per grid cell × hour × class, with
//! small cells withheld (docs/api.md "Open data", docs/design/0041). What leaves the box here
//! has no camera, line, zone, track or event id, no box and no image: only the grid cell
//! (`[[cameras]] grid_cell`; cameras without one publish nothing), the UTC hour, the class and
//! the aggregate. There are no totals across classes or hours, so a withheld cell cannot be
//! recovered by subtracting published ones.
//!
//! The API serves it (`GET /api/v1/open/counts`, `/open/occupancy`, JSON or CSV) and
//! [`publish_due`] appends each finished hour to the uplink outbox (kind `open_data`).

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use time::OffsetDateTime;

use crate::config::OpenDataConfig;
use crate::store::{Bucket, CountQuery, CountRow, OccupancyQuery, OccupancyRow, Store, StoreError};

/// Line crossings of one class in one grid cell and hour, summed over the cell's cameras,
/// lines and directions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpenCount {
    pub grid_cell: String,
    #[serde(with = "time::serde::rfc3339")]
    pub hour: OffsetDateTime,
    pub class: String,
    /// `None` when withheld (below `open_data.min_count`).
    pub count: Option<i64>,
    pub suppressed: bool,
}

/// Objects of one class inside the zones of one grid cell over one hour.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpenOccupancy {
    pub grid_cell: String,
    #[serde(with = "time::serde::rfc3339")]
    pub hour: OffsetDateTime,
    pub class: String,
    /// Mean number inside the cell's zones (summed over zones, 0.1), `None` when withheld.
    pub mean: Option<f64>,
    /// Largest number inside (summed over the zones' peaks, an upper bound), `None` when
    /// withheld (below `open_data.min_count`).
    pub peak: Option<i64>,
    pub suppressed: bool,
}

/// Camera id → grid cell, for the cameras that have one.
pub type Cells = HashMap<String, String>;

/// Aggregates hourly count rows per (cell, hour, class); withholds counts below `k`.
pub fn counts(rows: &[CountRow], cells: &Cells, k: u32) -> Vec<OpenCount> {
    let mut acc: BTreeMap<(OffsetDateTime, String, String), i64> = BTreeMap::new();
    for r in rows {
        if let Some(cell) = cells.get(&r.camera_id) {
            *acc.entry((r.bucket_start, cell.clone(), r.class.clone())).or_default() += r.count;
        }
    }
    acc.into_iter()
        .map(|((hour, grid_cell, class), n)| {
            let suppressed = n < i64::from(k);
            OpenCount { grid_cell, hour, class, count: (!suppressed).then_some(n), suppressed }
        })
        .collect()
}

/// Aggregates hourly occupancy rows per (cell, hour, class), without the all-classes rows;
/// withholds a cell whose summed peak is below `k`.
pub fn occupancy(rows: &[OccupancyRow], cells: &Cells, k: u32) -> Vec<OpenOccupancy> {
    let mut acc: BTreeMap<(OffsetDateTime, String, String), (f64, i64)> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.class != crate::rules::occupancy::ALL_CLASSES) {
        if let Some(cell) = cells.get(&r.camera_id) {
            let e = acc.entry((r.bucket_start, cell.clone(), r.class.clone())).or_default();
            e.0 += r.mean;
            e.1 += r.max;
        }
    }
    acc.into_iter()
        .map(|((hour, grid_cell, class), (mean, peak))| {
            let suppressed = peak < i64::from(k);
            OpenOccupancy {
                grid_cell,
                hour,
                class,
                mean: (!suppressed).then_some((mean * 10.0).round() / 10.0),
                peak: (!suppressed).then_some(peak),
                suppressed,
            }
        })
        .collect()
}

/// How the API reads one kind of open rows of `[since, until)` ([`read_counts`],
/// [`read_occupancy`]).
pub type Reader<T> = fn(
    &Store,
    &Cells,
    u32,
    Option<OffsetDateTime>,
    Option<OffsetDateTime>,
) -> Result<Vec<T>, StoreError>;

/// The open counts of `[since, until)` from the store.
pub fn read_counts(
    store: &Store,
    cells: &Cells,
    k: u32,
    since: Option<OffsetDateTime>,
    until: Option<OffsetDateTime>,
) -> Result<Vec<OpenCount>, StoreError> {
    let q =
        CountQuery { camera: None, line: None, class: None, since, until, bucket: Bucket::Hour };
    Ok(counts(&store.counts(&q)?, cells, k))
}

/// The open occupancy of `[since, until)` from the store.
pub fn read_occupancy(
    store: &Store,
    cells: &Cells,
    k: u32,
    since: Option<OffsetDateTime>,
    until: Option<OffsetDateTime>,
) -> Result<Vec<OpenOccupancy>, StoreError> {
    let q = OccupancyQuery {
        camera: None,
        zone: None,
        class: None,
        since,
        until,
        bucket: Bucket::Hour,
    };
    Ok(occupancy(&store.occupancy(&q)?, cells, k))
}

fn hour_text(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// `grid_cell,hour,class,count,suppressed`; a withheld count is empty.
pub fn counts_csv(rows: &[OpenCount]) -> String {
    let mut s = crate::csv::record(&["grid_cell", "hour", "class", "count", "suppressed"]);
    for r in rows {
        let n = r.count.map(|n| n.to_string()).unwrap_or_default();
        s += &crate::csv::record(&[
            r.grid_cell.clone(),
            hour_text(r.hour),
            r.class.clone(),
            n,
            r.suppressed.to_string(),
        ]);
    }
    s
}

/// `grid_cell,hour,class,mean,peak,suppressed`; withheld values are empty.
pub fn occupancy_csv(rows: &[OpenOccupancy]) -> String {
    let mut s = crate::csv::record(&["grid_cell", "hour", "class", "mean", "peak", "suppressed"]);
    for r in rows {
        let mean = r.mean.map(|m| format!("{m:.1}")).unwrap_or_default();
        let peak = r.peak.map(|n| n.to_string()).unwrap_or_default();
        s += &crate::csv::record(&[
            r.grid_cell.clone(),
            hour_text(r.hour),
            r.class.clone(),
            mean,
            peak,
            r.suppressed.to_string(),
        ]);
    }
    s
}

/// The hours published at most this far back after a pause (a box that was off for longer
/// publishes the last day only).
pub const MAX_BACKFILL_HOURS: i64 = 24;

const HOUR: time::Duration = time::Duration::HOUR;

fn floor_hour(t: OffsetDateTime) -> OffsetDateTime {
    let ms = crate::store::to_ms(t);
    let start = crate::store::bucket_start(ms, 3_600_000);
    crate::store::from_ms(start).unwrap_or(t)
}

/// Appends the open data of every finished hour not yet published to the outbox: hours that
/// ended at least `publish_delay_secs` before `now`, from the hour after the last published
/// one (at most [`MAX_BACKFILL_HOURS`] back). The first call on a box only records the hour
/// it runs in as the first to publish. Cells come from the uplink context (the config's
/// cameras). Returns how many hours were appended.
pub fn publish_due(
    store: &Store,
    cfg: &OpenDataConfig,
    now: OffsetDateTime,
) -> Result<usize, StoreError> {
    let delay = time::Duration::seconds_f64(cfg.publish_delay_secs);
    // The last hour that has ended `delay` ago.
    let last_due = floor_hour(now - delay) - HOUR;
    let earliest = last_due - time::Duration::hours(MAX_BACKFILL_HOURS - 1);
    let mut hour = match store.open_data_last_hour()? {
        Some(h) => (h + HOUR).max(earliest),
        None => {
            // The first run publishes from the hour it starts in on: nothing from before
            // the box published (an empty hour would say "nothing happened").
            store.start_open_data(floor_hour(now) - HOUR)?;
            return Ok(0);
        }
    };
    let cells: Cells = store
        .uplink_context()
        .cameras
        .iter()
        .filter_map(|(id, c)| Some((id.clone(), c.grid_cell.clone()?)))
        .collect();
    let k = cfg.min_count;
    let mut n = 0;
    while hour <= last_due {
        let (since, until) = (Some(hour), Some(hour + HOUR));
        let detail = serde_json::json!({
            "hour": hour_text(hour),
            "min_count": k,
            "counts": read_counts(store, &cells, k, since, until)?,
            "occupancy": read_occupancy(store, &cells, k, since, until)?,
        });
        if store.append_open_data(hour, detail)?.is_some() {
            n += 1;
        }
        hour += HOUR;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::CrossDir;
    use time::macros::datetime;

    fn cells() -> Cells {
        [("cam1", "C3"), ("cam2", "C3"), ("cam3", "D4")]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn count(camera: &str, class: &str, n: i64) -> CountRow {
        CountRow {
            camera_id: camera.into(),
            line: "gate".into(),
            class: class.into(),
            direction: CrossDir::AToB,
            bucket_start: datetime!(2026-03-01 10:00 UTC),
            count: n,
            mean_speed_kmh: None,
            speed_count: 0,
        }
    }

    #[test]
    fn counts_sum_per_cell_and_withhold_small_ones() {
        let rows = [
            count("cam1", "car", 7),
            count("cam2", "car", 5), // same cell: 12 cars
            count("cam1", "person", 3),
            count("cam3", "car", 40),
            count("cam9", "car", 99), // no grid cell: never published
        ];
        let out = counts(&rows, &cells(), 10);
        let got: Vec<(&str, &str, Option<i64>, bool)> = out
            .iter()
            .map(|r| (r.grid_cell.as_str(), r.class.as_str(), r.count, r.suppressed))
            .collect();
        assert_eq!(
            got,
            [
                ("C3", "car", Some(12), false),
                ("C3", "person", None, true),
                ("D4", "car", Some(40), false)
            ]
        );
        let csv = counts_csv(&out);
        assert_eq!(csv.lines().nth(2), Some("C3,2026-03-01T10:00:00Z,person,,true"));
        assert!(csv.ends_with("\r\n"));
        assert!(!csv.contains("cam") && !csv.contains("gate"), "{csv}");
    }

    #[test]
    fn occupancy_drops_totals_and_withholds_small_peaks() {
        let row = |camera: &str, class: &str, mean: f64, max: i64| OccupancyRow {
            camera_id: camera.into(),
            zone: "plaza".into(),
            class: class.into(),
            bucket_start: datetime!(2026-03-01 10:00 UTC),
            samples: 100,
            mean,
            max,
        };
        let rows = [
            row("cam1", "person", 4.04, 9),
            row("cam2", "person", 2.0, 6),
            row("cam1", "*", 6.0, 15),
            row("cam3", "person", 1.0, 2),
        ];
        let out = occupancy(&rows, &cells(), 10);
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!((out[0].mean, out[0].peak, out[0].suppressed), (Some(6.0), Some(15), false));
        assert_eq!((out[1].grid_cell.as_str(), out[1].mean, out[1].suppressed), ("D4", None, true));
        assert!(occupancy_csv(&out).ends_with("D4,2026-03-01T10:00:00Z,person,,,true\r\n"));
    }

    /// Each finished hour is appended once, `publish_delay_secs` after it ends, also across a
    /// restart; a fresh box starts with the hour it first runs in; the envelope carries the
    /// aggregates and nothing that names a camera.
    #[test]
    fn finished_hours_are_published_once() {
        use crate::store::outbox::{CameraMeta, UplinkContext, OPEN_DATA_LANE};
        use crate::types::CountDelta;
        let dir = tempfile::tempdir().unwrap();
        let open = || {
            let store = Store::open(dir.path()).unwrap();
            let meta = |cell: Option<&str>| CameraMeta {
                grid_cell: cell.map(String::from),
                ..Default::default()
            };
            store.set_uplink_context(UplinkContext {
                box_id: "box-1".into(),
                public_url: String::new(),
                cameras: [("cam1".to_string(), meta(Some("C3"))), ("cam9".to_string(), meta(None))]
                    .into_iter()
                    .collect(),
            });
            store
        };
        let store = open();
        let at = datetime!(2026-03-01 11:30 UTC);
        let delta = |camera: &str, n| CountDelta {
            camera_id: camera.into(),
            line: "gate".into(),
            class: "car".into(),
            direction: CrossDir::AToB,
            at,
            count: n,
            speed_kmh: None,
        };
        store.add_counts(&[delta("cam1", 12), delta("cam9", 50)]).unwrap();
        let cfg = OpenDataConfig::default();
        // First run at 11:10: the first hour to publish is 11:00, published at 12:05.
        assert_eq!(publish_due(&store, &cfg, datetime!(2026-03-01 11:10 UTC)).unwrap(), 0);
        assert_eq!(publish_due(&store, &cfg, datetime!(2026-03-01 12:04 UTC)).unwrap(), 0);
        assert_eq!(publish_due(&store, &cfg, datetime!(2026-03-01 12:06 UTC)).unwrap(), 1);
        assert_eq!(publish_due(&store, &cfg, datetime!(2026-03-01 12:59 UTC)).unwrap(), 0);
        let page = store.feed_page(0, 100).unwrap();
        assert_eq!(page.changes.len(), 1);
        let env: serde_json::Value = serde_json::from_str(&page.changes[0].1).unwrap();
        assert_eq!(
            (env["kind"].as_str(), env["camera_id"].as_str()),
            (Some("open_data"), Some(OPEN_DATA_LANE))
        );
        assert_eq!(env["at"], "2026-03-01T11:00:00Z");
        assert_eq!(
            env["detail"]["counts"],
            serde_json::json!([{"grid_cell": "C3", "hour": "2026-03-01T11:00:00Z", "class": "car", "count": 12, "suppressed": false}])
        );
        assert!(!page.changes[0].1.contains("cam1") && !page.changes[0].1.contains("cam9"));
        // After a restart at 15:10: hours 12, 13 and 14, and never 11 again.
        drop(store);
        let store = open();
        assert_eq!(publish_due(&store, &cfg, datetime!(2026-03-01 15:10 UTC)).unwrap(), 3);
        assert_eq!(publish_due(&store, &cfg, datetime!(2026-03-01 15:10 UTC)).unwrap(), 0);
        assert_eq!(store.feed_page(0, 100).unwrap().changes.len(), 4);
        // A week off: only the last day is published.
        let n = publish_due(&store, &cfg, datetime!(2026-03-08 15:10 UTC)).unwrap();
        assert_eq!(n, MAX_BACKFILL_HOURS as usize);
    }
}
