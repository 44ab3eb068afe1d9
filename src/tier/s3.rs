//! The shared tier's store over the S3 API: GET, PUT (optionally `If-None-Match: *`) and
//! DELETE of single objects, signed with SigV4 (`aws-sigv4`, the signer of AWS's own SDK).
//!
//! Any S3-compatible store serves: SeaweedFS, Garage, MinIO, Ceph RGW, AWS S3. Addressing is
//! path-style (`endpoint/bucket/key`) unless the config asks for virtual-hosted
//! (`bucket.endpoint/key`). Requests go to the configured endpoint only: no redirect is
//! followed, so the store's keys never reach another host, and the keys never appear in a log
//! or a message. Each request has its own short timeout: a store that does not answer is a
//! store that is down, and the tier goes to the upstreams.
//!
//! A store that does not implement conditional writes (it answers `If-None-Match: *` with 501)
//! is told once in the log; from then on leases are plain writes, so two nodes racing for an
//! object may both fetch it (never a wrong byte: objects are checked when read).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use reqwest::{Method, StatusCode};

use super::{ObjectStore, Put, StoreError};
use crate::credentials::StoreKeys;

/// The largest answer read: blocks are at most a block, a listing of millions of files is a
/// few hundred MB.
const MAX_OBJECT: u64 = 1 << 30;

/// Where the store is and how to address it (`[shared_cache]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Settings {
    /// `http(s)://host[:port]`, no path.
    pub endpoint: String,
    /// The bucket (created beforehand by whoever runs the store).
    pub bucket: String,
    /// Prepended to every name: empty, or ending in `/`.
    pub prefix: String,
    /// The SigV4 signing region.
    pub region: String,
    /// `bucket.host` rather than `host/bucket`.
    pub virtual_host: bool,
    /// How long one request may take.
    pub timeout: Duration,
}

/// An S3 bucket (and prefix) as an [`ObjectStore`].
pub struct S3Store {
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
    settings: S3Settings,
    /// URL of the bucket, ending in `/`.
    base: String,
    keys: Option<StoreKeys>,
    /// Whether `If-None-Match: *` is honoured (until the store says otherwise).
    conditional: AtomicBool,
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Store")
            .field("store", &self.describe())
            .finish_non_exhaustive()
    }
}

/// An S3 error document's code and message.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename = "Error")]
struct S3Error {
    #[serde(rename = "Code", default)]
    code: String,
    #[serde(rename = "Message", default)]
    message: String,
}

impl S3Store {
    /// A store at `settings`, signing with `keys` (unsigned requests without them).
    pub fn new(settings: S3Settings, keys: Option<StoreKeys>) -> std::io::Result<S3Store> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("medimg-tier")
            .enable_all()
            .build()?;
        let client = reqwest::Client::builder()
            .user_agent(crate::source::http::USER_AGENT)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(settings.timeout)
            .timeout(settings.timeout)
            .pool_max_idle_per_host(32)
            .build()
            .map_err(std::io::Error::other)?;
        let base = match settings.endpoint.split_once("://") {
            Some((scheme, host)) if settings.virtual_host => {
                format!("{scheme}://{}.{host}/", settings.bucket)
            }
            _ => format!("{}/{}/", settings.endpoint, settings.bucket),
        };
        Ok(S3Store {
            client,
            runtime,
            settings,
            base,
            keys,
            conditional: AtomicBool::new(true),
        })
    }

    fn url(&self, name: &str) -> String {
        format!("{}{}{name}", self.base, self.settings.prefix)
    }

    fn unavailable(&self, message: String) -> StoreError {
        StoreError::Unavailable {
            store: self.describe(),
            message,
        }
    }

    /// Send one request; the status and body of the answer.
    fn send(
        &self,
        method: Method,
        name: &str,
        body: &[u8],
        if_none_match: bool,
    ) -> Result<(StatusCode, Vec<u8>), StoreError> {
        let url = self.url(name);
        let mut headers: Vec<(String, String)> = Vec::new();
        if if_none_match {
            headers.push(("if-none-match".into(), "*".into()));
        }
        if let Some(keys) = &self.keys {
            headers.extend(self.sign(keys, &method, &url, &headers, body)?);
        }
        let mut rb = self.client.request(method, &url);
        for (k, v) in &headers {
            rb = rb.header(k.as_str(), v.as_str());
        }
        if !body.is_empty() {
            rb = rb.body(body.to_vec());
        }
        self.runtime.block_on(async {
            let resp = rb.send().await.map_err(|e| {
                let what = if e.is_timeout() {
                    format!("no answer within {}s", self.settings.timeout.as_secs_f64())
                } else {
                    // reqwest's chain names the cause (connection refused, reset, DNS).
                    let mut m = e.to_string();
                    let mut src = std::error::Error::source(&e);
                    while let Some(s) = src {
                        m = format!("{m}: {s}");
                        src = s.source();
                    }
                    m
                };
                self.unavailable(what)
            })?;
            let status = resp.status();
            if resp.content_length().is_some_and(|n| n > MAX_OBJECT) {
                return Err(self.unavailable(format!(
                    "{name}: an answer of {} bytes, more than any object medimg writes",
                    resp.content_length().unwrap_or(0)
                )));
            }
            let bytes = resp
                .bytes()
                .await
                .map_err(|e| self.unavailable(format!("the answer broke off: {e}")))?;
            Ok((status, bytes.to_vec()))
        })
    }

    /// The SigV4 headers for a request.
    fn sign(
        &self,
        keys: &StoreKeys,
        method: &Method,
        url: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<Vec<(String, String)>, StoreError> {
        use aws_sigv4::http_request::{
            PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest,
            SigningSettings, UriPathNormalizationMode, sign,
        };
        let identity = aws_credential_types::Credentials::new(
            keys.access_key_id.clone(),
            keys.secret_access_key.expose(),
            keys.session_token.as_ref().map(|t| t.expose().to_string()),
            None,
            "medimg",
        )
        .into();
        // S3 signs the payload's hash in x-amz-content-sha256 and takes paths as they are.
        let mut settings = SigningSettings::default();
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let refused = |m: String| StoreError::Refused {
            store: self.describe(),
            message: format!("cannot sign a request: {m}"),
        };
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.settings.region)
            .name("s3")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| refused(e.to_string()))?
            .into();
        let request = SignableRequest::new(
            method.as_str(),
            url,
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::Bytes(body),
        )
        .map_err(|e| refused(e.to_string()))?;
        let (instructions, _) = sign(request, &params)
            .map_err(|e| refused(e.to_string()))?
            .into_parts();
        Ok(instructions
            .headers()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }

    /// The store's answer as an error: a refusal, or (5xx, throttling) unavailability.
    fn answer_error(&self, status: StatusCode, body: &[u8], what: &str) -> StoreError {
        let e: S3Error = quick_xml::de::from_reader(body).unwrap_or_default();
        let message = format!("{what}: HTTP {} {} {}", status.as_u16(), e.code, e.message)
            .trim_end()
            .to_string();
        if status == StatusCode::TOO_MANY_REQUESTS || e.code == "SlowDown" {
            StoreError::Throttled {
                store: self.describe(),
                message,
            }
        } else if status.is_server_error() {
            self.unavailable(message)
        } else if e.code == "NoSuchBucket" {
            StoreError::Refused {
                store: self.describe(),
                message: format!(
                    "there is no bucket {:?}: create it on the store first",
                    self.settings.bucket
                ),
            }
        } else {
            StoreError::Refused {
                store: self.describe(),
                message,
            }
        }
    }

    fn is_no_such_key(body: &[u8]) -> bool {
        let e: S3Error = quick_xml::de::from_reader(body).unwrap_or_default();
        e.code != "NoSuchBucket"
    }
}

impl ObjectStore for S3Store {
    fn get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let (status, body) = self.send(Method::GET, name, &[], false)?;
        match status {
            s if s.is_success() => Ok(Some(body)),
            StatusCode::NOT_FOUND if S3Store::is_no_such_key(&body) => Ok(None),
            s => Err(self.answer_error(s, &body, &format!("GET {name}"))),
        }
    }

    fn put(&self, name: &str, body: &[u8], if_absent: bool) -> Result<Put, StoreError> {
        let conditional = if_absent && self.conditional.load(Ordering::Relaxed);
        let (status, answer) = self.send(Method::PUT, name, body, conditional)?;
        match status {
            s if s.is_success() => Ok(Put::Done),
            // 409: another conditional write of the same name is in progress (S3's
            // ConditionalRequestConflict); it wins, as if it were done.
            StatusCode::PRECONDITION_FAILED | StatusCode::CONFLICT if conditional => {
                Ok(Put::Exists)
            }
            StatusCode::NOT_IMPLEMENTED if conditional => {
                tracing::warn!(
                    "shared cache {}: the store does not implement conditional writes \
                     (If-None-Match); nodes racing for an object may each fetch it",
                    self.describe()
                );
                self.conditional.store(false, Ordering::Relaxed);
                self.put(name, body, false)
            }
            s => Err(self.answer_error(s, &answer, &format!("PUT {name}"))),
        }
    }

    fn delete(&self, name: &str) -> Result<(), StoreError> {
        let (status, body) = self.send(Method::DELETE, name, &[], false)?;
        match status {
            s if s.is_success() || s == StatusCode::NOT_FOUND => Ok(()),
            s => Err(self.answer_error(s, &body, &format!("DELETE {name}"))),
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} bucket {}{}",
            self.settings.endpoint,
            self.settings.bucket,
            if self.settings.prefix.is_empty() {
                String::new()
            } else {
                format!(" prefix {}", self.settings.prefix)
            }
        )
    }
}
