//! `--redcap-version`: the fields that appear by version (`redcap-api.md`
//! §4.9, §6.5) and the form-rights encoding (§4.4), per version played.

mod common;

use common::{SUPER, Sandbox};
use serde_json::json;

#[tokio::test]
async fn fields_and_encodings_follow_the_version_played() {
    // (version, api_modules, email_logging, bitmask forms,
    //  project_pi_email, data_access_group_label)
    let cases = [
        ("14.0.2", false, false, false, false, false),
        ("14.0.3", true, false, false, false, false),
        ("14.4.0", true, true, false, false, false),
        ("15.5.0", true, true, false, false, false),
        ("15.6.0", true, true, true, false, false),
        ("15.7.6", true, true, true, false, false),
        ("15.8.2", true, true, true, true, false),
        ("16.0.0", true, true, true, true, true),
    ];
    for (version, api_modules, email_logging, bitmask, pi_email, dag_label) in cases {
        let sb = Sandbox::start_with(|c| c.version = version.parse().unwrap()).await;
        let a = sb.call(SUPER, "version", &[]).await;
        assert_eq!(a.body, version);
        let token = sb.create_project().await;
        sb.standard_metadata(&token).await;
        let a = sb
            .import(
                &token,
                "dag",
                json!([{"data_access_group_name": "Site A", "unique_group_name": ""}]),
                &[("action", "import")],
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.body);
        let a = sb
            .import(
                &token,
                "user",
                json!([{"username": "ann", "data_access_group": "site_a", "forms": {"demographics": 2}}]),
                &[],
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.body);
        let users = sb.call(&token, "user", &[]).await.json();
        let ann = users
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["username"] == "ann")
            .unwrap()
            .as_object()
            .unwrap()
            .clone();
        assert_eq!(
            ann.contains_key("api_modules"),
            api_modules,
            "{version}: {ann:?}"
        );
        assert_eq!(
            ann.contains_key("email_logging"),
            email_logging,
            "{version}: {ann:?}"
        );
        // Read only: legacy 2, bitmask 129 (§4.4).
        assert_eq!(
            ann["forms"]["demographics"],
            if bitmask { json!(129) } else { json!(2) },
            "{version}"
        );
        assert_eq!(
            ann.get("data_access_group_label"),
            dag_label.then(|| json!("Site A")).as_ref(),
            "{version}: {ann:?}"
        );
        let info = sb.call(&token, "project", &[]).await.json();
        assert_eq!(
            info.as_object().unwrap().contains_key("project_pi_email"),
            pi_email,
            "{version}: {info}"
        );
    }
}
