//! Helpers of the S3 tests (tests/targets_s3*.rs): the test bed with SeaweedFS, boto3 to
//! look at the server side, and the JSON error of a failed `target check`. Include with
//! `#[path = "common/s3.rs"] mod s3;` next to `mod common;` and the `tb` module.
#![allow(dead_code)]

use std::process::{Command, Stdio};

use super::common::{stderr, Sim};
use super::tb::Testbed;

pub const T: &str = "testbed-s3";
/// Where the sim's archives go: the URL's prefix, then the appliance id.
pub const HOME: &str = "fleet/hsm-sim/";

/// Runs `script` with boto3; `s3` is a client with the key `who` ("ADMIN", "" for the
/// appliance's read-write key, "RO"). Returns stdout; panics on failure.
pub fn py(tb: &Testbed, who: &str, script: &str) -> String {
    py_try(tb, who, script).unwrap_or_else(|e| panic!("boto3 failed: {e}"))
}

/// [`py`], with the failure's stderr as the error.
pub fn py_try(tb: &Testbed, who: &str, script: &str) -> Result<String, String> {
    let key = |k: &str| match who {
        "" => format!("S3_{k}"),
        w => format!("S3_{w}_{k}"),
    };
    let prelude = format!(
        r#"
import boto3, botocore.config, json, sys
s3 = boto3.client("s3", endpoint_url="{url}", region_name="us-east-1",
    aws_access_key_id="{id}", aws_secret_access_key=open("{secret}").read().strip(),
    config=botocore.config.Config(s3={{"addressing_style": "path"}}, retries={{"max_attempts": 1}}))
B = "{bucket}"
def keys(prefix):
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=B, Prefix=prefix):
        out += [o["Key"] for o in page.get("Contents", [])]
    return out
def uploads(prefix):
    return [u["Key"] for u in s3.list_multipart_uploads(Bucket=B, Prefix=prefix).get("Uploads", [])]
def versions(prefix):
    r = s3.list_object_versions(Bucket=B, Prefix=prefix)
    return [(v["Key"], v["VersionId"]) for v in r.get("Versions", []) + r.get("DeleteMarkers", [])]
"#,
        url = tb.get("S3_URL"),
        id = tb.get(&key("ACCESS_KEY")),
        secret = tb.get(&key("SECRET_FILE")),
        bucket = tb.get("S3_BUCKET"),
    );
    let out = Command::new(tb.get("S3_PYTHON"))
        .arg("-c")
        .arg(format!("{prelude}\n{script}"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A test bed with SeaweedFS, and a fresh simulator with its `[targets]` attached.
pub fn setup() -> (Sim, Testbed) {
    let tb = Testbed::up_with(&[("TESTBED_S3", "1")]);
    let sim = Sim::new();
    tb.attach(&sim, |t| t);
    (sim, tb)
}

/// Appends `lines` to `[targets.testbed-s3]` (the last table of the config).
pub fn s3_config(sim: &Sim, lines: &str) {
    sim.edit_config(|c| format!("{}\n{lines}\n", c.trim_end()));
}

/// `--json target check NAME`: exit code and the error object.
pub fn check_fails(sim: &Sim, name: &str) -> (i32, serde_json::Value, String) {
    let out = sim.run(&["--json", "target", "check", name]);
    let err = stderr(&out);
    let line = err
        .lines()
        .rev()
        .find(|l| l.starts_with("{\"error\""))
        .unwrap_or_else(|| panic!("no JSON error in {err}"));
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    (out.status.code().unwrap(), v["error"].clone(), err)
}
