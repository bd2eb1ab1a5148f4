//! The AWS backend against a real moto server (started by scripts/test):
//! the shared contract, native staging labels, and one-line errors for a
//! denied call and an unreachable endpoint.

#![cfg(feature = "aws")]

mod contract;

use secrets::*;

use aws_sdk_secretsmanager::config::{Credentials, Region};
use contract::{meta, name, value};

fn endpoint() -> Option<String> {
    const VAR: &str = "WARDEN_TEST_AWS_ENDPOINT";
    match std::env::var(VAR) {
        Ok(e) if !e.is_empty() => Some(e),
        _ if std::env::var_os("CI").is_some() => {
            panic!("{VAR} is not set: run the tests through scripts/test, which starts moto")
        }
        _ => {
            eprintln!("skipped: {VAR} is not set; run through scripts/test to start moto");
            None
        }
    }
}

fn unique(what: &str) -> String {
    let mut b = [0u8; 6];
    getrandom::fill(&mut b).unwrap();
    format!("{what}-{}", hex::encode(b))
}

/// moto checks no signature; these static test credentials only have to
/// exist. Passed in, not through the environment, so no test changes the
/// process environment.
fn sdk() -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(
            aws_sdk_secretsmanager::config::SharedCredentialsProvider::new(Credentials::new(
                "testing",
                "testing",
                None,
                None,
                "warden-tests",
            )),
        )
        .build()
}

fn options(endpoint: &str, prefix: &str) -> AwsStoreOptions {
    AwsStoreOptions {
        region: Some("us-east-1".into()),
        endpoint_url: Some(endpoint.to_string()),
        prefix: prefix.to_string(),
        recovery_window_days: 7,
        kms_key_id: None,
    }
}

async fn new_store() -> Option<Box<AwsStore>> {
    let ep = endpoint()?;
    Some(Box::new(
        AwsStore::with_sdk_config(options(&ep, &format!("{}/", unique("contract"))), sdk())
            .unwrap(),
    ))
}

contract_suite!(optional: new_store());

fn one_line(e: &StoreError) -> String {
    let msg = e.to_string();
    assert_eq!(msg.lines().count(), 1, "{msg}");
    assert!(msg.contains("fix:"), "no fix in: {msg}");
    msg
}

/// The labels are AWS's own: another AWS client sees AWSCURRENT,
/// AWSPENDING and AWSPREVIOUS where the store put them.
#[tokio::test]
async fn labels_are_the_native_staging_labels() {
    let Some(ep) = endpoint() else { return };
    let prefix = format!("{}/", unique("native"));
    let store = AwsStore::with_sdk_config(options(&ep, &prefix), sdk()).unwrap();
    let n = name("site/etl");
    let v1 = store
        .put(&n, value("one"), meta("1"), Label::Current)
        .await
        .unwrap();
    let v2 = store
        .put(&n, value("two"), meta("2"), Label::Current)
        .await
        .unwrap();
    let v3 = store
        .put(&n, value("three"), meta("3"), Label::Pending)
        .await
        .unwrap();
    let conf = aws_sdk_secretsmanager::config::Builder::from(&sdk())
        .endpoint_url(&ep)
        .build();
    let client = aws_sdk_secretsmanager::Client::from_conf(conf);
    let d = client
        .describe_secret()
        .secret_id(format!("{prefix}site/etl"))
        .send()
        .await
        .unwrap();
    let stages = d.version_ids_to_stages().unwrap();
    assert_eq!(stages[&v1.0], ["AWSPREVIOUS"]);
    assert_eq!(stages[&v2.0], ["AWSCURRENT"]);
    assert_eq!(stages[&v3.0], ["AWSPENDING"]);
    let raw = client
        .get_secret_value()
        .secret_id(format!("{prefix}site/etl"))
        .version_stage("AWSCURRENT")
        .send()
        .await
        .unwrap();
    let payload: serde_json::Value = serde_json::from_str(raw.secret_string().unwrap()).unwrap();
    assert_eq!(payload["value"], "two");
    assert_eq!(payload["meta"]["reason"], "2");
}

/// Secrets Manager answers a call the IAM policy does not allow with
/// `AccessDeniedException`. moto enforces no IAM policy, so a one-shot
/// responder answers exactly as AWS does (awsJson 1.1 error shape).
#[tokio::test]
async fn a_denied_call_is_one_line_naming_the_store_and_the_fix() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let ep = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in listener.incoming().take(8) {
            let mut s = stream.unwrap();
            let mut buf = [0u8; 8192];
            let _ = s.read(&mut buf);
            let body = r#"{"__type":"AccessDeniedException","Message":"User: arn:aws:iam::123456789012:user/warden is not authorized to perform: secretsmanager:GetSecretValue on resource: redcap-warden/a because no identity-based policy allows the secretsmanager:GetSecretValue action"}"#;
            let _ = write!(
                s,
                "HTTP/1.1 400 Bad Request\r\nContent-Type: application/x-amz-json-1.1\r\nx-amzn-RequestId: 0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let store = AwsStore::with_sdk_config(options(&ep, "redcap-warden/"), sdk()).unwrap();
    let e = store
        .get(&name("a"), &Selector::Label(Label::Current))
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Denied { .. }), "{e}");
    let msg = one_line(&e);
    assert!(
        msg.starts_with("aws secrets manager store (region us-east-1")
            && msg.contains("AccessDeniedException")
            && msg.contains("IAM policy allows secretsmanager:GetSecretValue"),
        "{msg}"
    );
}

#[tokio::test]
async fn an_unreachable_endpoint_is_one_line() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let ep = format!("http://127.0.0.1:{port}");
    let store = AwsStore::with_sdk_config(options(&ep, "x/"), sdk()).unwrap();
    let e = store.list().await.unwrap_err();
    assert!(matches!(e, StoreError::Unreachable { .. }), "{e}");
    assert!(one_line(&e).contains(&ep));
    assert!(!store.check().await.unwrap().ok());
}

#[test]
fn a_recovery_window_aws_refuses_is_refused_up_front() {
    let e = AwsStore::new(AwsStoreOptions {
        recovery_window_days: 3,
        ..options("http://127.0.0.1:1", "x/")
    })
    .err()
    .unwrap();
    assert!(e.to_string().contains("7 to 30"), "{e}");
}

/// A secret written by other tooling (a bare JSON string, not `{value,
/// meta}`) is reported as not ours, without quoting what it holds.
#[tokio::test]
async fn a_foreign_secret_is_reported_without_its_value() {
    let Some(ep) = endpoint() else { return };
    let prefix = format!("{}/", unique("foreign"));
    let conf = aws_sdk_secretsmanager::config::Builder::from(&sdk())
        .endpoint_url(&ep)
        .build();
    let client = aws_sdk_secretsmanager::Client::from_conf(conf);
    client
        .create_secret()
        .name(format!("{prefix}other"))
        .secret_string(format!("\"{}\"", contract::CANARY))
        .send()
        .await
        .unwrap();
    let store = AwsStore::with_sdk_config(options(&ep, &prefix), sdk()).unwrap();
    let e = store
        .get(&name("other"), &Selector::Label(Label::Current))
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");
    let msg = one_line(&e);
    assert!(!msg.contains(contract::CANARY), "{msg}");
    assert!(msg.contains("not a redcap-warden payload"), "{msg}");
}
