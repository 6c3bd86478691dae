//! Start-up reconciliation (stub).

use crate::store::{Store, StoreError};

#[derive(Debug, Default)]
pub struct ReconcileReport;

impl std::fmt::Display for ReconcileReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "reconciled")
    }
}

pub fn reconcile(_store: &Store) -> Result<ReconcileReport, StoreError> {
    Ok(ReconcileReport)
}
