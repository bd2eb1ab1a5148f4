//! The REDCap API surface: transport, processing order, error catalogue,
//! users/roles/DAGs/records and their rights.

mod common;

use common::{GENERIC_403, SUPER, Sandbox};
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn only_post_is_implemented() {
    let sb = Sandbox::start().await;
    let c = reqwest::Client::new();
    for method in [Method::GET, Method::PUT, Method::DELETE] {
        let r = c.request(method, &sb.api).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 501);
        assert_eq!(
            r.text().await.unwrap(),
            "The requested method is not implemented."
        );
    }
}

#[tokio::test]
async fn token_failures_answer_the_generic_403_in_each_return_format() {
    let sb = Sandbox::start().await;
    let token = sb.create_project().await;
    // Missing token, default format (XML).
    let a = sb.post(&[("content", "version")]).await;
    assert_eq!(a.status, 403);
    assert_eq!(
        a.body,
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\" ?><hash><error>{GENERIC_403}</error></hash>"
        )
    );
    assert!(a.content_type.starts_with("text/xml"));
    // CSV and JSON shapes; returnFormat wins over format.
    let a = sb
        .post(&[
            ("content", "version"),
            ("format", "json"),
            ("returnFormat", "csv"),
        ])
        .await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (403, format!("ERROR: {GENERIC_403}").as_str())
    );
    let trailing_newline = format!("{token}\n");
    let lower = token.to_lowercase();
    for bad in [
        trailing_newline.as_str(),
        "0123456789ABCDEF0123456789ABCDEF",
        "not-a-token",
        lower.as_str(),
    ] {
        sb.call(bad, "project", &[])
            .await
            .assert_error(403, GENERIC_403);
    }
    // A JSON body is not $_POST: the token is missing.
    let r = reqwest::Client::new()
        .post(&sb.api)
        .json(&json!({"token": token, "content": "version"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    // A super token is only for version and Create Project.
    sb.call(SUPER, "project", &[])
        .await
        .assert_error(403, GENERIC_403);
}

#[tokio::test]
async fn super_token_rules_and_version() {
    let sb = Sandbox::start().await;
    let a = sb.call(SUPER, "version", &[]).await;
    assert_eq!((a.status, a.body.as_str()), (200, "15.7.6"));
    let api_120 = redcap::ApiError::SuperTokenRequired.message();
    let wrong = "F".repeat(64);
    sb.call(&wrong, "version", &[])
        .await
        .assert_error(403, &api_120);
    sb.import(
        &wrong,
        "project",
        json!([{"project_title": "x", "purpose": 0}]),
        &[],
    )
    .await
    .assert_error(403, &api_120);
    let token = sb.create_project().await;
    sb.import(
        &token,
        "project",
        json!([{"project_title": "x", "purpose": 0}]),
        &[],
    )
    .await
    .assert_error(403, &api_120);
    let a = sb.call(&token, "version", &[]).await;
    assert_eq!((a.status, a.body.as_str()), (200, "15.7.6"));
    // Create Project validation.
    sb.import(SUPER, "project", json!([{"project_title": "x"}]), &[])
        .await
        .assert_error(400, &redcap::ApiError::ProjectAttributesMissing.message());
    sb.import(
        SUPER,
        "project",
        json!([{"project_title": "x", "purpose": 0}, {"project_title": "y", "purpose": 0}]),
        &[],
    )
    .await
    .assert_error(400, &redcap::ApiError::OneProjectOnly.message());
    // CSV data works too, and the answer is the bare token.
    let a = sb
        .post(&[
            ("token", SUPER),
            ("content", "project"),
            ("format", "csv"),
            ("data", "project_title,purpose\nCSV trial,0\n"),
        ])
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body.len(), 32);
}

#[tokio::test]
async fn project_info_and_creator_rights() {
    let sb = Sandbox::start().await;
    let token = sb.create_project().await;
    let info = sb.call(&token, "project", &[]).await.json();
    assert_eq!(info["project_title"], "Trial");
    assert_eq!(info["purpose"], 2);
    assert_eq!(info["in_production"], 0);
    let users = sb.call(&token, "user", &[]).await.json();
    let me = &users[0];
    assert_eq!(me["username"], "site_admin");
    assert_eq!(me["api_export"], 1);
    assert_eq!(me["api_import"], 1);
    assert_eq!(me["mobile_app"], 1);
    assert_eq!(me["user_rights"], 1);
    assert_eq!(me["forms"], json!({"my_first_instrument": 138}));
    assert_eq!(me["forms_export"], json!({"my_first_instrument": 1}));
}

#[tokio::test]
async fn processing_order_and_request_shape_errors() {
    let sb = Sandbox::start().await;
    let token = sb.create_project().await;
    use redcap::ApiError as E;
    sb.call(&token, "nonsense", &[])
        .await
        .assert_error(400, &E::InvalidContent.message());
    // Unimplemented methods answer like unknown ones.
    sb.call(&token, "tableau", &[])
        .await
        .assert_error(400, &E::InvalidContent.message());
    sb.call(&token, "user", &[("action", "rename")])
        .await
        .assert_error(400, &E::InvalidAction.message());
    let a = sb.call(&token, "record", &[("data", "[{")]).await;
    a.assert_error(400, "The data being imported is not formatted correctly. PHP error from JSON decoder: Syntax error. The JSON must be in an array, as in [{ ... }].");
    // Bad data is refused before the content is looked at (§1.3 step 5 < 6).
    sb.call(&token, "nonsense", &[("data", "[{")])
        .await
        .assert_error(
            400,
            &E::BadJson {
                decoder: "Syntax error".into(),
            }
            .message(),
        );
    // But the token comes first.
    sb.call("BAD", "nonsense", &[("data", "[{")])
        .await
        .assert_error(403, GENERIC_403);
    let a = sb
        .post(&[
            ("token", &token),
            ("content", "record"),
            ("format", "xml"),
            ("data", "<records><item>"),
        ])
        .await;
    assert_eq!(a.status, 400);
    assert!(
        a.body
            .contains("The data being imported is not formatted correctly. Error: "),
        "{}",
        a.body
    );
}

#[tokio::test]
async fn php_post_rules_apply() {
    let sb = Sandbox::start().await;
    let token = sb.create_project().await;
    // Last duplicate wins.
    let a = sb
        .post(&[
            ("token", "WRONG"),
            ("token", &token),
            ("content", "version"),
        ])
        .await;
    assert_eq!((a.status, a.body.as_str()), (200, "15.7.6"));
    // `return.Format` is PHP's `return_Format`, not `returnFormat`: the
    // error stays XML.
    let a = sb
        .post(&[("content", "version"), ("return.Format", "json")])
        .await;
    assert!(a.body.starts_with("<?xml"), "{}", a.body);
    // Multipart bodies are read too.
    let form = reqwest::multipart::Form::new()
        .text("token", token.clone())
        .text("content", "version");
    let r = reqwest::Client::new()
        .post(&sb.api)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.text().await.unwrap(), "15.7.6");
}

fn rights(username: &str, extra: Value) -> Value {
    let mut row = json!({"username": username});
    for (k, v) in extra.as_object().unwrap() {
        row[k] = v.clone();
    }
    row
}

#[tokio::test]
async fn entry_gates_and_method_privileges() {
    let sb = Sandbox::start().await;
    let admin = sb.create_project().await;
    use redcap::ApiError as E;
    let none = sb.user_with_token(1, rights("nobody", json!({}))).await;
    sb.call(&none, "user", &[])
        .await
        .assert_error(403, "You do not have API Export privileges");
    sb.import(&none, "user", json!([{"username": "x"}]), &[])
        .await
        .assert_error(403, "You do not have API Import/Update privileges");
    sb.call(&none, "version", &[])
        .await
        .assert_error(403, "You do not have API Export privileges");
    let exporter = sb
        .user_with_token(
            1,
            rights("exporter", json!({"api_export": 1, "api_import": 1})),
        )
        .await;
    sb.call(&exporter, "user", &[])
        .await
        .assert_error(400, &E::UserRightsExportPrivilege.message());
    sb.call(&exporter, "userRole", &[])
        .await
        .assert_error(400, &E::UserRightsExportPrivilege.message());
    sb.import(&exporter, "user", json!([{"username": "x"}]), &[])
        .await
        .assert_error(400, &E::UserRightsImportPrivilege.message());
    sb.import(&exporter, "userRole", json!([{"role_label": "x"}]), &[])
        .await
        .assert_error(400, &E::UserRoleImportPrivilege.message());
    sb.call(&exporter, "dag", &[])
        .await
        .assert_error(400, &E::DagExportPrivilege.message());
    sb.import(
        &exporter,
        "dag",
        json!([{"data_access_group_name": "x", "unique_group_name": ""}]),
        &[("action", "import")],
    )
    .await
    .assert_error(400, &E::DagImportPrivilege.message());
    sb.import(
        &exporter,
        "metadata",
        json!([{"field_name": "x", "form_name": "f", "field_type": "text"}]),
        &[],
    )
    .await
    .assert_error(400, &E::DesignPrivilege.message());
    // Delete users needs API Import and Delete Record at the entry (§10.2).
    sb.call(
        &exporter,
        "user",
        &[("action", "delete"), ("users[0]", "nobody")],
    )
    .await
    .assert_error(403, "You do not have Delete Record privileges");
    sb.call(
        &exporter,
        "record",
        &[("action", "delete"), ("records[0]", "1")],
    )
    .await
    .assert_error(403, "You do not have Delete Record privileges");
    let deleter = sb
        .user_with_token(1, rights("deleter", json!({"record_delete": 1})))
        .await;
    sb.call(
        &deleter,
        "user",
        &[("action", "delete"), ("users[0]", "nobody")],
    )
    .await
    .assert_error(403, "You do not have API Import/Update privileges");
    sb.call(
        &deleter,
        "record",
        &[("action", "delete"), ("records[0]", "1")],
    )
    .await
    .assert_error(400, &E::RecordDeleteNeedsImport.message());
    // Log export gates.
    let logless = sb
        .user_with_token(
            1,
            rights(
                "logless",
                json!({"api_export": 1, "forms_export": {"my_first_instrument": 1}}),
            ),
        )
        .await;
    sb.call(&logless, "log", &[])
        .await
        .assert_error(403, &E::NoLoggingRight.message());
    let noexport = sb
        .user_with_token(
            1,
            rights("noexport", json!({"api_export": 1, "logging": 1})),
        )
        .await;
    sb.call(&noexport, "log", &[])
        .await
        .assert_error(403, &E::NoExportAccess.message());
    sb.call(&noexport, "record", &[])
        .await
        .assert_error(403, &E::NoExportAccess.message());
    // Administrators bypass everything.
    let (s, _) = sb
        .admin(
            Method::POST,
            "/sandbox/users",
            Some(json!({"username": "nobody", "administrator": true})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(sb.call(&none, "user", &[]).await.status, 200);
    assert_eq!(sb.call(&admin, "log", &[]).await.status, 200);
}

#[tokio::test]
async fn import_users_and_the_dag_reset() {
    let sb = Sandbox::start().await;
    let admin = sb.create_project().await;
    let a = sb
        .import(
            &admin,
            "dag",
            json!([{"data_access_group_name": "Site A", "unique_group_name": ""}]),
            &[("action", "import")],
        )
        .await;
    assert_eq!((a.status, a.body.as_str()), (200, "1"));
    let a = sb
        .import(&admin, "user", json!([{"username": "Alice", "api_export": 1, "data_access_group": "site_a", "forms": {"my_first_instrument": 2}}]), &[])
        .await;
    assert_eq!((a.status, a.body.as_str()), (200, "1"));
    let users = sb.call(&admin, "user", &[]).await.json();
    let alice = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "alice")
        .unwrap()
        .clone();
    assert_eq!(alice["data_access_group"], "site_a");
    assert_eq!(alice["data_access_group_id"], 1);
    assert_eq!(alice["forms"]["my_first_instrument"], 129);
    assert_eq!(alice["api_export"], 1);
    assert_eq!(alice["design"], 0);
    // Update only api_import, leaving out data_access_group: the DAG is gone
    // and the other rights stay (§4.6).
    let a = sb
        .import(
            &admin,
            "user",
            json!([{"username": "alice", "api_import": 1}]),
            &[],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let users = sb.call(&admin, "user", &[]).await.json();
    let alice = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "alice")
        .unwrap()
        .clone();
    assert_eq!(alice["data_access_group"], "");
    assert_eq!(alice["data_access_group_id"], "");
    assert_eq!(alice["api_export"], 1);
    assert_eq!(alice["api_import"], 1);
    // Legacy and bitmask codes are both accepted and mean the same.
    sb.import(
        &admin,
        "user",
        json!([{"username": "alice", "forms": {"my_first_instrument": 1}}]),
        &[],
    )
    .await;
    let legacy = sb.call(&admin, "user", &[]).await.json();
    sb.import(
        &admin,
        "user",
        json!([{"username": "alice", "forms": {"my_first_instrument": 130}}]),
        &[],
    )
    .await;
    assert_eq!(sb.call(&admin, "user", &[]).await.json(), legacy);
    // Validation errors.
    use redcap::ApiError as E;
    sb.import(&admin, "user", json!([{"username": "alice", "design": 5}]), &[])
        .await
        .assert_error(400, "The field named \"design\" for user \"alice\" with value \"5\" is not a valid rights value. It must be 0 or 1.");
    sb.import(&admin, "user", json!([{"username": "alice", "forms": {"nope": 1}}]), &[])
        .await
        .assert_error(400, "The form named \"nope\" is incorrect for the user \"alice\" The form does not exist in this project.");
    sb.import(
        &admin,
        "user",
        json!([{"username": "alice", "forms": {"my_first_instrument": 7}}]),
        &[],
    )
    .await
    .assert_error(
        400,
        &E::InvalidFormRight {
            form: "my_first_instrument".into(),
            user: "alice".into(),
            value: "7".into(),
        }
        .message(),
    );
    sb.import(&admin, "user", json!([{"username": "alice", "data_access_group": "nowhere"}]), &[])
        .await
        .assert_error(400, "data_access_group \"nowhere\" is not a valid unique Data Access Group name for this project.");
    // CSV import with forms as a cell.
    let a = sb
        .post(&[
            ("token", &admin),
            ("content", "user"),
            ("format", "csv"),
            (
                "data",
                "username,api_export,forms\ncarol,1,\"my_first_instrument:129\"\n",
            ),
        ])
        .await;
    assert_eq!((a.status, a.body.as_str()), (200, "1"));
    let csv = sb
        .post(&[("token", &admin), ("content", "user"), ("format", "csv")])
        .await;
    assert!(csv.body.starts_with("username,email,firstname,lastname,expiration,data_access_group,data_access_group_id,design,"), "{}", csv.body);
    assert!(csv.body.contains("\ncarol,,,,,,,0,"), "{}", csv.body);
    assert!(
        csv.body
            .contains(",my_first_instrument:129,my_first_instrument:0\n"),
        "{}",
        csv.body
    );
    // Delete users.
    let a = sb
        .call(
            &admin,
            "user",
            &[("action", "delete"), ("users[]", "carol")],
        )
        .await;
    assert_eq!((a.status, a.body.as_str()), (200, "1"));
}

#[tokio::test]
async fn mobile_app_right_escalates_with_mobile_app_1() {
    let sb = Sandbox::start().await;
    sb.create_project().await;
    let mobile = sb
        .user_with_token(1, rights("mobile", json!({"mobile_app": 1})))
        .await;
    sb.call(&mobile, "user", &[])
        .await
        .assert_error(403, "You do not have API Export privileges");
    let a = sb.call(&mobile, "user", &[("mobile_app", "1")]).await;
    assert_eq!(a.status, 200, "{}", a.body);
    // It can even rewrite its own rights.
    let a = sb
        .import(
            &mobile,
            "user",
            json!([{"username": "mobile", "design": 1, "api_export": 1}]),
            &[("mobile_app", "1")],
        )
        .await;
    assert_eq!((a.status, a.body.as_str()), (200, "1"));
    // Without the Mobile App right the flag does nothing.
    let plain = sb.user_with_token(1, rights("plain", json!({}))).await;
    sb.call(&plain, "user", &[("mobile_app", "1")])
        .await
        .assert_error(403, "You do not have API Export privileges");
}

#[tokio::test]
async fn roles_override_user_rights() {
    let sb = Sandbox::start().await;
    let admin = sb.create_project().await;
    let bob = sb
        .user_with_token(1, rights("bob", json!({"api_export": 1, "user_rights": 2})))
        .await;
    assert_eq!(sb.call(&bob, "user", &[]).await.status, 200);
    let a = sb
        .import(
            &admin,
            "userRole",
            json!([{"unique_role_name": "", "role_label": "Monitors", "api_export": 0}]),
            &[],
        )
        .await;
    assert_eq!((a.status, a.body.as_str()), (200, "1"));
    let roles = sb.call(&admin, "userRole", &[]).await.json();
    let role = roles[0]["unique_role_name"].as_str().unwrap().to_owned();
    assert!(role.starts_with("U-") && role.len() == 12, "{role}");
    assert_eq!(roles[0]["design"], "0");
    assert_eq!(roles[0]["forms"]["my_first_instrument"], 128);
    let a = sb
        .import(
            &admin,
            "userRoleMapping",
            json!([{"username": "bob", "unique_role_name": role}]),
            &[],
        )
        .await;
    assert_eq!((a.status, a.body.as_str()), (200, "1"));
    sb.call(&bob, "user", &[])
        .await
        .assert_error(403, "You do not have API Export privileges");
    // A user in a role cannot be edited through Import Users.
    sb.import(
        &admin,
        "user",
        json!([{"username": "bob", "api_export": 1}]),
        &[],
    )
    .await
    .assert_error(
        400,
        &redcap::ApiError::UserInRole { user: "bob".into() }.message(),
    );
    let mapping = sb.call(&admin, "userRoleMapping", &[]).await.json();
    assert!(
        mapping
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["username"] == "bob" && m["unique_role_name"] == role.as_str())
    );
    // Deleting the role gives bob his own rights back.
    let a = sb
        .call(
            &admin,
            "userRole",
            &[("action", "delete"), ("roles[0]", &role)],
        )
        .await;
    assert_eq!((a.status, a.body.as_str()), (200, "1"));
    assert_eq!(sb.call(&bob, "user", &[]).await.status, 200);
    sb.import(
        &admin,
        "userRole",
        json!([{"unique_role_name": "U-NOPE", "role_label": "x"}]),
        &[],
    )
    .await
    .assert_error(400, "Invalid Unique Role Names: U-NOPE");
    sb.import(&admin, "userRole", json!([{"unique_role_name": ""}]), &[])
        .await
        .assert_error(400, "The Role Label is blank.");
}

#[tokio::test]
async fn dags_and_user_dag_mapping() {
    let sb = Sandbox::start().await;
    let admin = sb.create_project().await;
    let a = sb
        .import(
            &admin,
            "dag",
            json!([
                {"data_access_group_name": "Boston General Hospital", "unique_group_name": ""},
                {"data_access_group_name": "Site A", "unique_group_name": ""},
                {"data_access_group_name": "site a", "unique_group_name": ""}
            ]),
            &[("action", "import")],
        )
        .await;
    assert_eq!((a.status, a.body.as_str()), (200, "3"));
    let dags = sb.call(&admin, "dag", &[]).await.json();
    let names: Vec<&str> = dags
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["unique_group_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["boston_general_hos", "site_a", "site_ab"]);
    // §10.9: data without action=import is an export.
    let a = sb
        .import(
            &admin,
            "dag",
            json!([{"data_access_group_name": "X", "unique_group_name": ""}]),
            &[],
        )
        .await;
    assert_eq!(a.json().as_array().unwrap().len(), 3);
    sb.import(&admin, "dag", json!([{"data_access_group_name": "X"}]), &[("action", "import")])
        .await
        .assert_error(400, "One or more components are missing in your input data. The following attributes are required: data_access_group_name, unique_group_name");
    // Rename changes the unique name.
    sb.import(
        &admin,
        "dag",
        json!([{"data_access_group_name": "Boston", "unique_group_name": "boston_general_hos"}]),
        &[("action", "import")],
    )
    .await;
    let dags = sb.call(&admin, "dag", &[]).await.json();
    assert_eq!(dags[0]["unique_group_name"], "boston");
    // User-DAG mapping.
    let site = sb.user_with_token(1, rights("site", json!({"api_export": 1, "api_import": 1, "data_access_groups": 1, "data_access_group": "site_a"}))).await;
    let map = sb.call(&admin, "userDagMapping", &[]).await.json();
    assert!(
        map.as_array()
            .unwrap()
            .iter()
            .any(|m| m["username"] == "site" && m["redcap_data_access_group"] == "site_a")
    );
    // DAG members may not use the DAG methods.
    sb.call(&site, "dag", &[])
        .await
        .assert_error(403, &redcap::ApiError::DagMemberForbidden.message());
    sb.import(
        &site,
        "userDagMapping",
        json!([{"username": "site", "redcap_data_access_group": ""}]),
        &[],
    )
    .await
    .assert_error(400, &redcap::ApiError::DagMappingByDagMember.message());
    // A DAG member sees only its DAG in the mapping export.
    let mine = sb.call(&site, "userDagMapping", &[]).await.json();
    assert_eq!(mine.as_array().unwrap().len(), 1);
    let a = sb
        .import(
            &admin,
            "userDagMapping",
            json!([{"username": "site", "redcap_data_access_group": "site_ab"}]),
            &[],
        )
        .await;
    assert_eq!((a.status, a.body.as_str()), (200, "1"));
    // Delete: unknown names refused; members become unassigned.
    sb.call(
        &admin,
        "dag",
        &[("action", "delete"), ("dags[0]", "nowhere")],
    )
    .await
    .assert_error(
        400,
        &redcap::ApiError::UnknownDagsToDelete {
            names: vec!["nowhere".into()],
        }
        .message(),
    );
    let a = sb
        .call(
            &admin,
            "dag",
            &[("action", "delete"), ("dags[0]", "site_ab")],
        )
        .await;
    assert_eq!((a.status, a.body.as_str()), (200, "1"));
    let map = sb.call(&admin, "userDagMapping", &[]).await.json();
    assert!(
        map.as_array()
            .unwrap()
            .iter()
            .any(|m| m["username"] == "site" && m["redcap_data_access_group"] == "")
    );
    // Switch DAG answers with HTTP 200.
    let a = sb
        .call(&admin, "dag", &[("action", "switch"), ("dag", "nowhere")])
        .await;
    assert_eq!((a.status, a.body.as_str()), (200, "ERROR: Invalid DAG"));
}

#[tokio::test]
async fn records_flat_json_with_dags_and_rights() {
    let sb = Sandbox::start().await;
    let admin = sb.create_project().await;
    sb.standard_metadata(&admin).await;
    sb.import(&admin, "dag", json!([{"data_access_group_name": "Site A", "unique_group_name": ""}, {"data_access_group_name": "Site B", "unique_group_name": ""}]), &[("action", "import")]).await;
    let a = sb
        .import(
            &admin,
            "record",
            json!([
                {"record_id": "1", "name": "Ann", "age": "40", "redcap_data_access_group": "site_a"},
                {"record_id": "2", "name": "Ben", "symptoms___1": "1", "arm": "b", "redcap_data_access_group": "site_b"},
                {"record_id": "10", "name": "Cid"}
            ]),
            &[("returnContent", "ids")],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json(), json!(["1", "2", "10"]));
    let all = sb
        .call(&admin, "record", &[("exportDataAccessGroups", "true")])
        .await
        .json();
    assert_eq!(all.as_array().unwrap().len(), 3);
    assert_eq!(
        all[1],
        json!({"record_id": "2", "redcap_data_access_group": "site_b", "name": "Ben", "age": "", "demographics_complete": "0",
               "symptoms___1": "1", "symptoms___2": "0", "arm": "b", "visit_complete": "0"})
    );
    assert_eq!(all[2]["record_id"], "10");
    // Filters.
    let some = sb
        .call(
            &admin,
            "record",
            &[
                ("records", "1,10"),
                ("fields[0]", "record_id"),
                ("fields[1]", "age"),
            ],
        )
        .await
        .json();
    assert_eq!(
        some,
        json!([{"record_id": "1", "age": "40"}, {"record_id": "10", "age": ""}])
    );
    let forms = sb
        .call(
            &admin,
            "record",
            &[("forms[0]", "visit"), ("records[0]", "2")],
        )
        .await
        .json();
    assert_eq!(
        forms,
        json!([{"symptoms___1": "1", "symptoms___2": "0", "arm": "b", "visit_complete": "0"}])
    );
    sb.call(&admin, "record", &[("fields", "nope")])
        .await
        .assert_error(
            400,
            "The following values in the parameter \"fields\" are not valid: 'nope'",
        );
    // A site user: own DAG only, no DAG column, de-identified export drops the name.
    let site = sb
        .user_with_token(1, rights("site_a_user", json!({"api_export": 1, "api_import": 1, "record_create": 1, "data_access_group": "site_a",
            "forms": {"demographics": 1, "visit": 1}, "forms_export": {"demographics": 2, "visit": 1}})))
        .await;
    let mine = sb
        .call(&site, "record", &[("exportDataAccessGroups", "true")])
        .await
        .json();
    assert_eq!(
        mine,
        json!([{"record_id": "1", "age": "40", "demographics_complete": "0", "symptoms___1": "0", "symptoms___2": "0", "arm": "", "visit_complete": "0"}])
    );
    // DAG import rules (§5.5).
    sb.import(
        &site,
        "record",
        json!([{"record_id": "5", "redcap_data_access_group": "site_b"}]),
        &[],
    )
    .await
    .assert_error(400, &redcap::ApiError::IllegalDagField.message());
    sb.import(&site, "record", json!([{"record_id": "2", "age": "3"}]), &[])
        .await
        .assert_error(400, "The following records cannot be modified because they do not belong to your Data Access Group: 2");
    let a = sb
        .import(
            &site,
            "record",
            json!([{"record_id": "10", "age": "3"}]),
            &[],
        )
        .await;
    a.assert_error(400, "\"10\",\"record_id\",\"10\",\"This record cannot be imported because it already exists in the project and belongs to another Data Access Group.\"");
    // New records land in the caller's DAG; auto-numbering uses `<group_id>-<n>`.
    let a = sb
        .import(
            &site,
            "record",
            json!([{"record_id": "x", "age": "7"}]),
            &[("forceAutoNumber", "true"), ("returnContent", "auto_ids")],
        )
        .await;
    assert_eq!(a.json(), json!(["1-1,x"]));
    let mine = sb
        .call(&site, "record", &[("fields", "record_id")])
        .await
        .json();
    assert_eq!(mine, json!([{"record_id": "1"}, {"record_id": "1-1"}]));
    // Return content shapes.
    let a = sb
        .import(
            &admin,
            "record",
            json!([{"record_id": "1", "age": "41"}]),
            &[],
        )
        .await;
    assert_eq!(a.body, "{\"count\": 1}");
    let a = sb
        .import(
            &admin,
            "record",
            json!([{"record_id": "1", "age": "42"}]),
            &[("returnContent", "nothing")],
        )
        .await;
    assert_eq!((a.status, a.body.as_str()), (200, ""));
    let a = sb
        .post(&[
            ("token", &admin),
            ("content", "record"),
            ("format", "csv"),
            ("data", "record_id,age\n1,43\n"),
        ])
        .await;
    assert_eq!((a.status, a.body.as_str()), (200, "1"));
    let a = sb
        .post(&[
            ("token", &admin),
            ("content", "record"),
            ("format", "json"),
            ("returnFormat", "xml"),
            ("data", "[{\"record_id\":\"1\"}]"),
        ])
        .await;
    assert_eq!(
        a.body,
        "<?xml version=\"1.0\" encoding=\"UTF-8\" ?><count>1</count>"
    );
    // overwriteBehavior: blanks are ignored unless overwrite.
    sb.import(
        &admin,
        "record",
        json!([{"record_id": "1", "age": ""}]),
        &[],
    )
    .await;
    assert_eq!(
        sb.call(&admin, "record", &[("records", "1"), ("fields", "age")])
            .await
            .json(),
        json!([{"age": "43"}])
    );
    sb.import(
        &admin,
        "record",
        json!([{"record_id": "1", "age": ""}]),
        &[("overwriteBehavior", "overwrite")],
    )
    .await;
    assert_eq!(
        sb.call(&admin, "record", &[("records", "1"), ("fields", "age")])
            .await
            .json(),
        json!([{"age": ""}])
    );
    // Validation lines.
    let a = sb
        .import(
            &admin,
            "record",
            json!([{"record_id": "1", "bogus": "x", "arm": "z"}]),
            &[],
        )
        .await;
    assert_eq!(a.status, 400);
    let msg = a.json()["error"].as_str().unwrap().to_owned();
    assert_eq!(msg.lines().count(), 2, "{msg}");
    // Delete.
    use redcap::ApiError as E;
    sb.call(&admin, "record", &[("action", "delete"), ("records", "1")])
        .await
        .assert_error(400, &E::RecordsNotArray.message());
    sb.call(&admin, "record", &[("action", "delete")])
        .await
        .assert_error(400, &E::NoRecordsGiven.message());
    sb.call(&admin, "record", &[("action", "delete"), ("records[0]", "1"), ("records[1]", "99")])
        .await
        .assert_error(400, "One or more of the records provided cannot be deleted because they do not exist in the project. The following records do not exist: 99");
    let a = sb
        .call(
            &admin,
            "record",
            &[
                ("action", "delete"),
                ("records[0]", "1"),
                ("records[1]", "2"),
            ],
        )
        .await;
    assert_eq!((a.status, a.body.as_str()), (200, "2"));
    assert_eq!(
        sb.call(&admin, "record", &[("fields", "record_id")])
            .await
            .json(),
        json!([{"record_id": "10"}, {"record_id": "1-1"}])
    );
}

#[tokio::test]
async fn field_names_instruments_and_next_record_name() {
    let sb = Sandbox::start().await;
    let admin = sb.create_project().await;
    sb.standard_metadata(&admin).await;
    let names = sb
        .call(&admin, "exportFieldNames", &[("field", "symptoms")])
        .await
        .json();
    assert_eq!(
        names,
        json!([
            {"original_field_name": "symptoms", "choice_value": "1", "export_field_name": "symptoms___1"},
            {"original_field_name": "symptoms", "choice_value": "2", "export_field_name": "symptoms___2"}
        ])
    );
    // The whole list: each instrument's fields, then its status field; no
    // File Upload fields (PyCap's doctest), calc fields kept.
    let md = json!([
        {"field_name": "record_id", "form_name": "f1", "field_type": "text", "field_label": "ID"},
        {"field_name": "intro", "form_name": "f1", "field_type": "descriptive", "field_label": "Hi"},
        {"field_name": "doc", "form_name": "f1", "field_type": "file", "field_label": "Doc"},
        {"field_name": "sig", "form_name": "f1", "field_type": "file", "field_label": "Sig", "text_validation_type_or_show_slider_number": "signature"},
        {"field_name": "w", "form_name": "f2", "field_type": "text", "field_label": "W"},
        {"field_name": "bmi", "form_name": "f2", "field_type": "calc", "field_label": "BMI", "select_choices_or_calculations": "[w]*2"},
        {"field_name": "cb", "form_name": "f2", "field_type": "checkbox", "field_label": "CB", "select_choices_or_calculations": "A, a | 2, b"}
    ]);
    let other = sb.create_project().await;
    let a = sb.import(&other, "metadata", md, &[]).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let names = sb.call(&other, "exportFieldNames", &[]).await.json();
    let brief: Vec<String> = names
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            format!(
                "{}/{}/{}",
                n["original_field_name"].as_str().unwrap(),
                n["choice_value"].as_str().unwrap(),
                n["export_field_name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        brief,
        [
            "record_id//record_id",
            "f1_complete//f1_complete",
            "w//w",
            "bmi//bmi",
            "cb/A/cb___a",
            "cb/2/cb___2",
            "f2_complete//f2_complete"
        ]
    );
    let one = sb
        .call(&other, "exportFieldNames", &[("field", "f2_complete")])
        .await
        .json();
    assert_eq!(
        one,
        json!([{"original_field_name": "f2_complete", "choice_value": "", "export_field_name": "f2_complete"}])
    );
    let forms = sb.call(&admin, "instrument", &[]).await.json();
    assert_eq!(forms[0]["instrument_name"], "demographics");
    assert_eq!(forms[1]["instrument_name"], "visit");
    let next = sb.call(&admin, "generateNextRecordName", &[]).await;
    assert_eq!((next.status, next.body.as_str()), (200, "1"));
    sb.import(&admin, "record", json!([{"record_id": "7"}]), &[])
        .await;
    assert_eq!(
        sb.call(&admin, "generateNextRecordName", &[]).await.body,
        "8"
    );
    let md = sb
        .call(&admin, "metadata", &[("fields[0]", "age")])
        .await
        .json();
    assert_eq!(md.as_array().unwrap().len(), 1);
    assert_eq!(
        md[0]["text_validation_type_or_show_slider_number"],
        "integer"
    );
}

#[tokio::test]
async fn raw_or_label() {
    let sb = Sandbox::start().await;
    let admin = sb.create_project().await;
    sb.standard_metadata(&admin).await;
    sb.import(
        &admin,
        "record",
        json!([{"record_id": "1", "symptoms___2": "1", "arm": "b", "visit_complete": "2"}]),
        &[],
    )
    .await;
    let rows = sb
        .call(
            &admin,
            "record",
            &[("forms", "visit"), ("rawOrLabel", "label")],
        )
        .await
        .json();
    assert_eq!(
        rows,
        json!([{"symptoms___1": "Unchecked", "symptoms___2": "Checked", "arm": "B", "visit_complete": "Complete"}])
    );
    let rows = sb
        .call(
            &admin,
            "record",
            &[
                ("forms", "visit"),
                ("rawOrLabel", "label"),
                ("exportCheckboxLabel", "true"),
            ],
        )
        .await
        .json();
    assert_eq!(rows[0]["symptoms___1"], "");
    assert_eq!(rows[0]["symptoms___2"], "Cough");
}

#[tokio::test]
async fn xml_data_for_create_project_and_users() {
    let sb = Sandbox::start().await;
    let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\" ?><item><project_title>XML &amp; co</project_title><purpose>1</purpose><purpose_other>Demo</purpose_other></item>";
    let a = sb
        .post(&[
            ("token", SUPER),
            ("content", "project"),
            ("format", "xml"),
            ("data", xml),
        ])
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let token = a.body;
    assert_eq!(
        sb.call(&token, "project", &[]).await.json()["project_title"],
        "XML & co"
    );
    let users = "<users><item><username>xavier</username><api_export>1</api_export><forms><my_first_instrument>129</my_first_instrument></forms></item></users>";
    let a = sb
        .post(&[
            ("token", &token),
            ("content", "user"),
            ("format", "xml"),
            ("data", users),
        ])
        .await;
    assert_eq!((a.status, a.body.as_str()), (200, "1"));
    let out = sb
        .post(&[("token", &token), ("content", "user"), ("format", "xml")])
        .await;
    assert!(
        out.body.contains("<item><username>xavier</username>"),
        "{}",
        out.body
    );
    assert!(
        out.body
            .contains("<forms><my_first_instrument>129</my_first_instrument></forms>"),
        "{}",
        out.body
    );
    // purpose 1 needs purpose_other.
    let a = sb
        .post(&[
            ("token", SUPER),
            ("content", "project"),
            ("format", "json"),
            ("data", r#"[{"project_title":"x","purpose":1}]"#),
        ])
        .await;
    a.assert_error(400, &redcap::ApiError::PurposeOtherMissing.message());
}

#[tokio::test]
async fn more_catalogue_errors_rename_and_form_rights() {
    let sb = Sandbox::start().await;
    let admin = sb.create_project().await;
    sb.standard_metadata(&admin).await;
    sb.import(
        &admin,
        "dag",
        json!([{"data_access_group_name": "Site A", "unique_group_name": ""}]),
        &[("action", "import")],
    )
    .await;
    sb.import(
        &admin,
        "record",
        json!([{"record_id": "1", "name": "Ann", "redcap_data_access_group": "site_a"}]),
        &[],
    )
    .await;
    sb.import(
        &admin,
        "record",
        json!([{"record_id": "2", "redcap_data_access_group": "mars"}]),
        &[],
    )
    .await
    .assert_error(
        400,
        "The following Data Access Group are invalid for the redcap_data_access_group field: mars",
    );
    sb.call(
        &admin,
        "userRole",
        &[("action", "delete"), ("roles[0]", "U-NOPE")],
    )
    .await
    .assert_error(
        400,
        &redcap::ApiError::UnknownRolesToDelete {
            names: vec!["U-NOPE".into()],
        }
        .message(),
    );
    sb.import(
        &admin,
        "dag",
        json!([{"data_access_group_name": "X", "unique_group_name": "nope"}]),
        &[("action", "import")],
    )
    .await
    .assert_error(
        400,
        &redcap::ApiError::UnknownDagToRename {
            name: "nope".into(),
        }
        .message(),
    );
    // A blank DAG value unassigns only with overwriteBehavior=overwrite (§5.6).
    sb.import(
        &admin,
        "record",
        json!([{"record_id": "1", "redcap_data_access_group": ""}]),
        &[],
    )
    .await;
    let dag_of_1 = |v: Value| {
        v[0]["redcap_data_access_group"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let exp = [
        ("records", "1"),
        ("fields", "record_id"),
        ("exportDataAccessGroups", "1"),
    ];
    assert_eq!(
        dag_of_1(sb.call(&admin, "record", &exp).await.json()),
        "site_a"
    );
    sb.import(
        &admin,
        "record",
        json!([{"record_id": "1", "redcap_data_access_group": ""}]),
        &[("overwriteBehavior", "overwrite")],
    )
    .await;
    assert_eq!(dag_of_1(sb.call(&admin, "record", &exp).await.json()), "");

    // Rename: entry gate, 200-with-message validation, success.
    let norename = sb
        .user_with_token(1, rights("norename", json!({"api_import": 1})))
        .await;
    sb.call(
        &norename,
        "record",
        &[
            ("action", "rename"),
            ("record", "1"),
            ("new_record_name", "9"),
        ],
    )
    .await
    .assert_error(403, "You do not have Rename Record privileges");
    for (params, message) in [
        (vec![], "Current record name must be provided."),
        (vec![("record", "77")], "Current Record does not exists."),
        (vec![("record", "1")], "New record name must be provided."),
    ] {
        let mut p = vec![("action", "rename")];
        p.extend(params);
        let a = sb.call(&admin, "record", &p).await;
        assert_eq!((a.status, a.body.as_str()), (200, message));
    }
    let a = sb
        .call(
            &admin,
            "record",
            &[
                ("action", "rename"),
                ("record", "1"),
                ("new_record_name", "100"),
            ],
        )
        .await;
    assert_eq!((a.status, a.body.as_str()), (200, "1"));
    assert_eq!(
        sb.call(&admin, "record", &[("fields", "record_id,name")])
            .await
            .json(),
        json!([{"record_id": "100", "name": "Ann"}])
    );

    // Per-form rights on import: read-only forms cannot be written.
    let reader = sb
        .user_with_token(
            1,
            rights(
                "reader",
                json!({"api_import": 1, "forms": {"demographics": 2, "visit": 1}}),
            ),
        )
        .await;
    let a = sb
        .import(
            &reader,
            "record",
            json!([{"record_id": "100", "name": "Bo", "arm": "a"}]),
            &[],
        )
        .await;
    a.assert_error(
        400,
        &format!(
            "\"100\",\"name\",\"Bo\",\"{}\"",
            redcap::error::ValidationLine::NO_FORM_EDIT
        ),
    );
    let a = sb
        .import(
            &reader,
            "record",
            json!([{"record_id": "100", "arm": "a"}]),
            &[],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    // Creating records needs the Create Records right.
    let a = sb
        .import(
            &reader,
            "record",
            json!([{"record_id": "300", "arm": "a"}]),
            &[],
        )
        .await;
    a.assert_error(
        400,
        &format!(
            "\"300\",\"record_id\",\"300\",\"{}\"",
            redcap::error::ValidationLine::NO_RECORD_CREATE
        ),
    );

    // Export Logging's numeric dag filter keeps rows on records that were in
    // that DAG when the row was written (record 1 was, before the reset).
    sb.import(
        &admin,
        "record",
        json!([{"record_id": "5", "age": "1", "redcap_data_access_group": "site_a"}]),
        &[],
    )
    .await;
    let rows = sb
        .call(&admin, "log", &[("logtype", "record"), ("dag", "1")])
        .await
        .json();
    assert!(!rows.as_array().unwrap().is_empty());
    let records: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["record"].as_str().unwrap())
        .collect();
    assert!(
        records.contains(&"5") && records.iter().all(|r| ["1", "5"].contains(r)),
        "{rows}"
    );
}
