//! gridwatch: edge video analytics. Stages: ingest → infer → rules → store → api.
//! See docs/architecture.md.

pub mod accounts;
pub mod analytics;
pub mod api;
pub mod app;
pub mod auth;
pub mod bench;
pub mod check;
pub mod cli;
pub mod clock;
pub mod config;
pub mod csv;
pub mod eval;
pub mod evidence;
pub mod fire;
pub mod geometry;
pub mod gst;
pub mod health;
pub mod infer;
pub mod ingest;
pub mod masked_video;
pub mod masking;
#[cfg(test)]
pub(crate) mod mutate;
pub mod open_data;
pub mod record;
pub mod redact;
pub mod rules;
pub mod service;
pub mod store;
pub mod tls;
pub mod track;
pub mod types;
pub mod uplink;
