//! Dataverse guestbooks: the form some datasets ask a downloader to fill in before each download.
//!
//! Since Dataverse 6.10 a `GET /api/access/datafile/{id}` of a file whose dataset has an enabled
//! guestbook answers `400` with "You may not download this file without the required Guestbook
//! response for guestbookID {id}." (inside Dataverse's JSON error, `{"status": "ERROR",
//! "message": "Bad Request. ... Details: You may not download ..."}`). The documented way on is a
//! `POST` to the same URL with `{"guestbookResponse": {"name", "email", "institution",
//! "position"}}`; Dataverse records the response and answers `{"status": "OK", "data":
//! {"signedUrl": "..."}}`, a URL for `GET` on the same file that carries the response's id and
//! stays good for one minute (`GUESTBOOK_RESPONSE_SIGNEDURL_TIMEOUT_MINUTES` in Dataverse's
//! `Access.java`).
//!
//! medimg answers with the user's own details from `[guestbook]` in the config, and only when the
//! host asks: reads in the next [`SIGNED_REUSE`] reuse the signed URL (or the presigned storage
//! URL it redirects to, until that expires), a later one gives a new response, as a browser gives
//! one per download. Without `[guestbook]`, the read is refused with
//! what to add. This module holds the pure parts (what the host's answers say, what is sent); the
//! requests are made by [`super::http`].

use serde::Serialize;

/// How long a signed URL from a guestbook response is reused: Dataverse makes it good for one
/// minute; half of that leaves room for clock skew and a slow request.
pub const SIGNED_REUSE: std::time::Duration = std::time::Duration::from_secs(30);

/// The user's answers to a guestbook (`[guestbook]` in the config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Guestbook {
    /// Full name.
    pub name: String,
    /// E-mail address.
    pub email: String,
    /// Institution, if given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub institution: Option<String>,
    /// Position, if given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<String>,
}

impl Guestbook {
    /// The body of the `POST` that answers a guestbook.
    pub fn body(&self) -> String {
        serde_json::json!({ "guestbookResponse": self }).to_string()
    }
}

/// Whether a byte URL is a Dataverse file access URL, the only kind that asks for a guestbook.
pub fn is_datafile_url(url: &str) -> bool {
    reqwest::Url::parse(url).is_ok_and(|u| u.path().starts_with("/api/access/datafile/"))
}

/// Whether an error answer's body is Dataverse saying a guestbook response is missing; its
/// message, for the user, if so.
pub fn demand(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let message = v["message"].as_str()?;
    message
        .to_ascii_lowercase()
        .contains("required guestbook response")
        .then(|| detail(message))
}

/// The signed URL in the answer to a guestbook response.
pub fn signed_url(body: &[u8]) -> Result<String, String> {
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| format!("the answer to the guestbook response is not JSON ({e})"))?;
    v["data"]["signedUrl"]
        .as_str()
        .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
        .map(str::to_string)
        .ok_or_else(|| "the answer to the guestbook response has no data.signedUrl".to_string())
}

/// What an error answer to a guestbook response says (a required field missing, a custom
/// question unanswered), for the user.
pub fn refusal(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(detail))
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned())
}

/// The part of Dataverse's "Bad Request. ... Details: X - please check your code ..." that says
/// what is wrong.
fn detail(message: &str) -> String {
    let m = message.split_once("Details: ").map_or(message, |(_, d)| d);
    m.split_once(" - please check")
        .map_or(m, |(d, _)| d)
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataverse_answers_are_read() {
        // Dataverse's 400, as its WebApplicationExceptionHandler writes a BadRequestException.
        let asked = br#"{"status":"ERROR","code":400,"message":"Bad Request. The API request cannot be completed with the parameters supplied. Details: You may not download this file without the required Guestbook response for guestbookID 7. - please check your code for typos, or consult our API guide at http://guides.dataverse.org.","requestUrl":"https://dv.org/api/v1/access/datafile/3","requestMethod":"GET"}"#;
        assert_eq!(
            demand(asked).as_deref(),
            Some(
                "You may not download this file without the required Guestbook response for guestbookID 7."
            )
        );
        assert_eq!(
            demand(br#"{"status":"ERROR","message":"Bad Request."}"#),
            None
        );
        assert_eq!(demand(b"<html>400</html>"), None);
        assert_eq!(
            signed_url(br#"{"status":"OK","data":{"signedUrl":"https://dv.org/api/access/datafile/3?gbrecs=true&until=x&user=guest&method=GET&token=ab"}}"#).unwrap(),
            "https://dv.org/api/access/datafile/3?gbrecs=true&until=x&user=guest&method=GET&token=ab"
        );
        assert!(
            signed_url(br#"{"status":"OK","data":{"signedUrl":"file:///etc/passwd"}}"#).is_err()
        );
        assert!(signed_url(b"{}").is_err());
        assert!(is_datafile_url(
            "https://dv.org/api/access/datafile/3?format=original"
        ));
        assert!(!is_datafile_url("https://dv.org/api/datasets/3"));
    }

    #[test]
    fn the_body_carries_only_what_was_given() {
        let g = Guestbook {
            name: "Ada Lovelace".into(),
            email: "ada@example.org".into(),
            institution: None,
            position: Some("Postdoc".into()),
        };
        let v: serde_json::Value = serde_json::from_str(&g.body()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"guestbookResponse": {"name": "Ada Lovelace", "email": "ada@example.org", "position": "Postdoc"}})
        );
    }
}
