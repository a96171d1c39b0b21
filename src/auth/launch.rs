//! EHR launch: the EHR asks for a launch handle (`POST /auth/launch`) carrying the context it
//! opens an app in (patient, encounter, intent, banner, style), and passes it to the app as
//! `launch`; the app sends it back at `/auth/authorize`. The handle is a short-lived JWT the
//! server signs for itself, so it needs no table and cannot be forged or altered.

use super::{Authority, now_secs};
use serde::{Deserialize, Serialize};

/// How long an EHR's launch handle may wait for the app.
const LAUNCH_LIFETIME: i64 = 3600;

/// What an EHR launch puts in the app's hands besides the patient's record.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LaunchContext {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encounter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub need_patient_banner: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smart_style_url: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Handle {
    iss: String,
    aud: String,
    sub: String,
    exp: i64,
    context: LaunchContext,
}

fn audience(authority: &Authority) -> String {
    format!("{}/launch", authority.issuer())
}

/// A launch handle for `context`, minted for the EHR `ehr` (the subject of its token).
pub fn mint(authority: &Authority, ehr: &str, context: LaunchContext) -> String {
    authority.sign(&Handle {
        iss: authority.issuer().to_string(),
        aud: audience(authority),
        sub: ehr.to_string(),
        exp: now_secs() + LAUNCH_LIFETIME,
        context,
    })
}

/// The context of a handle this server minted, or why it is not one.
pub fn open(authority: &Authority, handle: &str) -> Result<LaunchContext, String> {
    authority
        .verify_for::<Handle>(handle, &audience(authority))
        .map(|h| h.context)
        .map_err(|e| format!("the launch handle is not valid: {e}"))
}
