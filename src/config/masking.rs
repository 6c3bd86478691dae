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

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::Path;

    const BASE: &str = "box_id='b'\ndata_dir='/tmp'\n[models]\n";
    const CAM: &str = "[[cameras]]\nid='cam'\nurl='x.mp4'\nmodels=[]\nenabled=false\n";

    #[test]
    fn policy_defaults_on_and_errors_name_the_field() {
        let cfg = Config::parse(&format!("{BASE}{CAM}"), Path::new("/")).unwrap();
        let m = cfg.cameras[0].masking;
        assert!(m.enabled && m.faces && m.plates);
        assert_eq!(
            cfg.face_model(),
            Path::new(super::DEFAULT_FACE_MODEL),
            "not beside the config (/): the current directory's"
        );

        let t = format!("{BASE}{CAM}[cameras.masking]\nplates = false\n");
        let cfg = Config::parse(&t, Path::new("/")).unwrap();
        assert!(cfg.cameras[0].masking.faces && !cfg.cameras[0].masking.plates);

        let t = format!("{BASE}{CAM}[cameras.masking]\nblur = true\n");
        let e = Config::parse(&t, Path::new("/")).unwrap_err().to_string();
        assert!(e.contains("blur") && e.contains("camera `cam`"), "{e}");

        let t = format!("{BASE}[masking]\nface_model = 'nope/model.toml'\n{CAM}");
        let e = Config::parse(&t, Path::new("/")).unwrap_err().to_string();
        assert!(e.contains("masking.face_model") && e.contains("/nope/model.toml"), "{e}");
    }
}
