//! `gridwatch bench-uplink` (filled in below).
