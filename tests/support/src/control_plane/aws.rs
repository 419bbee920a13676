//! The AWS wire formats the control plane answers in: error bodies, STS `AssumeRole`'s
//! XML, form and path decoding, timestamps.

use std::time::Duration;

use hyper::{Response, StatusCode};

use super::{ACCOUNT, Shared};
use crate::http::{Body, reply};

pub(super) fn aws_error(status: StatusCode, error_type: &str, message: &str) -> Response<Body> {
    let mut r = reply(
        status,
        serde_json::json!({ "Type": "User", "message": message }).to_string(),
    );
    r.headers_mut()
        .insert("x-amzn-ErrorType", error_type.parse().unwrap());
    r
}

pub(super) fn xml(status: StatusCode, body: String) -> Response<Body> {
    let mut r = reply(status, body);
    r.headers_mut()
        .insert("Content-Type", "text/xml".parse().unwrap());
    r
}

/// Decodes `application/x-www-form-urlencoded` and percent-encoded path segments.
pub(super) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(super) fn form_value(form: &str, key: &str) -> Option<String> {
    form.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (percent_decode(k) == key).then(|| percent_decode(v))
    })
}

pub(super) fn assume_role(shared: &Shared, form: &str, n: u64) -> Response<Body> {
    let role = form_value(form, "RoleArn").unwrap_or_default();
    let session = form_value(form, "RoleSessionName").unwrap_or_else(|| "session".into());
    let denied = |why: &str| {
        // Expected once per version: the server checks that a request without the external
        // id is refused, i.e. that the trust policy enforces it.
        tracing::debug!(%role, why, "AssumeRole denied");
        xml(
            StatusCode::FORBIDDEN,
            format!(
                "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error>\
                 <Type>Sender</Type><Code>AccessDenied</Code><Message>User is not authorized \
                 to perform: sts:AssumeRole on resource: {role} ({why})</Message></Error>\
                 <RequestId>local-{n}</RequestId></ErrorResponse>"
            ),
        )
    };
    match (form_value(form, "ExternalId"), &shared.external_id) {
        (None, _) => return denied("the trust policy requires sts:ExternalId"),
        (Some(got), Some(want)) if &got != want => return denied("wrong sts:ExternalId"),
        _ => {}
    }
    let role_name = role.rsplit('/').next().unwrap_or("role");
    let expiration = (std::time::SystemTime::now() + Duration::from_secs(3600))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    xml(
        StatusCode::OK,
        format!(
            "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
             <AssumeRoleResult><Credentials><AccessKeyId>ASIALOCAL{n:011}</AccessKeyId>\
             <SecretAccessKey>local-secret</SecretAccessKey><SessionToken>local-token-{n}\
             </SessionToken><Expiration>{}</Expiration></Credentials><AssumedRoleUser>\
             <AssumedRoleId>AROALOCAL:{session}</AssumedRoleId><Arn>arn:aws:sts::{ACCOUNT}:\
             assumed-role/{role_name}/{session}</Arn></AssumedRoleUser></AssumeRoleResult>\
             <ResponseMetadata><RequestId>local-{n}</RequestId></ResponseMetadata>\
             </AssumeRoleResponse>",
            rfc3339(expiration)
        ),
    )
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub(super) fn rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
