//! `gridwatch eval mot` (placeholder).
