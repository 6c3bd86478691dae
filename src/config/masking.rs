//! Masking of faces and number plates in served stills: `[masking]` (the face model) and
//! `[cameras.masking]` (per-camera policy). See docs/security.md "Masking" and ADR 0042.

use std::path::PathBuf;

use serde::Deserialize;

/// The face model's manifest when `[masking] face_model` is not set, looked up against the
/// config file's directory, then the current directory.
pub const DEFAULT_FACE_MODEL: &str = "models/blazeface-back-256/model.toml";

/// `[masking]`: box-wide settings of the masker.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaskingConfig {
    /// Manifest of the face detector (`[output] kind = "blazeface"`). Default
    /// `models/blazeface-back-256/model.toml` (shipped).
    pub face_model: Option<PathBuf>,
}

/// `[cameras.masking]`: what the masked view of this camera's stills hides. Every field
/// defaults to true.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CameraMaskingConfig {
    /// Mask this camera's stills at all. `false`: the masked view is the original (for a
    /// camera that sees no public space); still refused to nobody, still audited when asked
    /// for `unmasked`.
    pub enabled: bool,
    /// Faces: every face the face model finds, and the head of every person the camera's
    /// detector finds.
    pub faces: bool,
    /// Number plates: the plate band (the lower part) of every car, bus, truck and
    /// motorcycle the camera's detector finds.
    pub plates: bool,
}

impl Default for CameraMaskingConfig {
    fn default() -> Self {
        CameraMaskingConfig { enabled: true, faces: true, plates: true }
    }
}
