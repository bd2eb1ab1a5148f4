//! The File Repository (`content=fileRepository`): folders and files in and
//! out in every format, the answers' shapes, the rights each action needs,
//! DAG- and role-restricted folders, REDCap's quirks (any doc id of the
//! project exports; deleted files wait 30 days in the Recycle Bin), every
//! error by status and exact text, logging and persistence.

mod common;

use common::Sandbox;
use redcap::ApiError as E;
use serde_json::{Value, json};

/// Project 1 with DAGs `site_a` (id 1), `site_b` (id 2) and a File Upload
/// field `consent`; answers the creator's token.
async fn project(sb: &Sandbox) -> String {
    let admin = sb.create_project().await;
    let md = json!([
        {"field_name": "record_id", "form_name": "demographics", "field_type": "text", "field_label": "Record ID"},
        {"field_name": "consent", "form_name": "demographics", "field_type": "file", "field_label": "Consent"}
    ]);
    let a = sb.import(&admin, "metadata", md, &[]).await;
    assert_eq!((a.status, a.body.as_str()), (200, "2"));
    let a = sb
        .import(
            &admin,
            "dag",
            json!([{"data_access_group_name": "Site A", "unique_group_name": ""},
                   {"data_access_group_name": "Site B", "unique_group_name": ""}]),
            &[("action", "import")],
        )
        .await;
    assert_eq!(a.body, "2");
    admin
}

/// A fileRepository call with `format=json`.
async fn fr(sb: &Sandbox, token: &str, action: &str, extra: &[(&str, &str)]) -> common::Answer {
    let mut p = vec![("action", action)];
    p.extend_from_slice(extra);
    sb.call(token, "fileRepository", &p).await
}

async fn upload(
    sb: &Sandbox,
    token: &str,
    folder: Option<&str>,
    name: &str,
    bytes: &[u8],
) -> common::Answer {
    let mut p = vec![
        ("token", token),
        ("content", "fileRepository"),
        ("action", "import"),
        ("returnFormat", "json"),
    ];
    if let Some(f) = folder {
        p.push(("folder_id", f));
    }
    sb.post_multipart(&p, Some((name, None, bytes.to_vec())))
        .await
}

async fn list(sb: &Sandbox, token: &str, folder: Option<&str>) -> Value {
    let a = match folder {
        Some(f) => fr(sb, token, "list", &[("folder_id", f)]).await,
        None => fr(sb, token, "list", &[]).await,
    };
    assert_eq!(a.status, 200, "{}", a.body);
    a.json()
}

fn doc_id_of(listing: &Value, name: &str) -> String {
    listing
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in {listing}"))["doc_id"]
        .to_string()
}

async fn download(sb: &Sandbox, token: &str, doc_id: &str) -> common::BytesAnswer {
    sb.post_bytes(&[
        ("token", token),
        ("content", "fileRepository"),
        ("action", "export"),
        ("doc_id", doc_id),
        ("returnFormat", "json"),
    ])
    .await
}

fn edocs(sb: &Sandbox) -> usize {
    std::fs::read_dir(sb.dir.join("edocs")).map_or(0, |d| d.count())
}

#[tokio::test]
async fn folders_and_files_go_in_list_come_out_and_are_logged() {
    let sb = Sandbox::start().await;
    let admin = project(&sb).await;

    // Create Folder answers [{"folder_id": N}] with an integer.
    let a = fr(&sb, &admin, "createFolder", &[("name", "Protocols")]).await;
    assert_eq!((a.status, a.body.as_str()), (200, r#"[{"folder_id":1}]"#));
    assert_eq!(a.content_type, "application/json; charset=utf-8");
    let a = fr(
        &sb,
        &admin,
        "createFolder",
        &[("name", "sub"), ("folder_id", "1")],
    )
    .await;
    assert_eq!(a.json(), json!([{"folder_id": 2}]));
    // CSV and XML shapes of the same answer.
    let a = sb
        .post(&[
            ("token", &admin),
            ("content", "fileRepository"),
            ("action", "createFolder"),
            ("name", "consents 10"),
            ("format", "csv"),
        ])
        .await;
    assert_eq!(
        (a.body.as_str(), a.content_type.as_str()),
        ("folder_id\n3", "text/csv; charset=utf-8")
    );
    let a = sb
        .post(&[
            ("token", &admin),
            ("content", "fileRepository"),
            ("action", "createFolder"),
            ("name", "Consents 9"),
            ("format", "xml"),
        ])
        .await;
    assert_eq!(
        a.body,
        "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<items>\n<item><folder_id>4</folder_id></item>\n</items>\n"
    );

    // Files: at the top level and in a folder; empty 200 answers.
    let a = upload(&sb, &admin, None, "b.txt", b"bee").await;
    assert_eq!((a.status, a.body.as_str()), (200, ""));
    assert_eq!(a.content_type, "application/json; charset=utf-8");
    let binary: Vec<u8> = (0..=255u8).collect();
    assert_eq!(
        upload(&sb, &admin, None, "A.bin", &binary).await.status,
        200
    );
    assert_eq!(
        upload(&sb, &admin, Some("1"), "in.txt", b"inside")
            .await
            .status,
        200
    );
    // The same name in the same directory becomes "name (1).ext".
    assert_eq!(
        upload(&sb, &admin, None, "b.txt", b"second").await.status,
        200
    );
    // REDCap's file-name sanitising.
    assert_eq!(
        upload(&sb, &admin, None, "w*e|i?rd:.txt", b"w")
            .await
            .status,
        200
    );

    // List: folders first, then files, each in natural case-insensitive order.
    let top = list(&sb, &admin, None).await;
    let ids =
        |names: &[&str]| -> Vec<String> { names.iter().map(|n| doc_id_of(&top, n)).collect() };
    let docs = ids(&["A.bin", "b.txt", "b (1).txt", "weird.txt"]);
    let n = |i: usize| docs[i].parse::<u64>().unwrap();
    // "b (1).txt" sorts before "b.txt": a space is less than a dot.
    assert_eq!(
        top,
        json!([
            {"folder_id": 4, "name": "Consents 9"},
            {"folder_id": 3, "name": "consents 10"},
            {"folder_id": 1, "name": "Protocols"},
            {"doc_id": n(0), "name": "A.bin"},
            {"doc_id": n(2), "name": "b (1).txt"},
            {"doc_id": n(1), "name": "b.txt"},
            {"doc_id": n(3), "name": "weird.txt"}
        ])
    );
    let inside = list(&sb, &admin, Some("1")).await;
    assert_eq!(inside[0], json!({"folder_id": 2, "name": "sub"}));
    assert_eq!(inside[1]["name"], "in.txt");
    assert_eq!(list(&sb, &admin, Some("2")).await, json!([]));

    // CSV: both id columns, one empty; XML: ids bare, names in CDATA.
    let a = sb
        .post(&[
            ("token", &admin),
            ("content", "fileRepository"),
            ("action", "list"),
            ("folder_id", "1"),
            ("format", "csv"),
        ])
        .await;
    let in_id = inside[1]["doc_id"].to_string();
    assert_eq!(
        a.body,
        format!("folder_id,doc_id,name\n2,,sub\n,{in_id},in.txt")
    );
    let a = sb
        .post(&[
            ("token", &admin),
            ("content", "fileRepository"),
            ("action", "list"),
            ("folder_id", "1"),
            ("format", "xml"),
        ])
        .await;
    assert_eq!(
        a.body,
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<items>\n<item><folder_id>2</folder_id><name><![CDATA[sub]]></name></item>\n<item><doc_id>{in_id}</doc_id><name><![CDATA[in.txt]]></name></item>\n</items>\n"
        )
    );
    // An empty directory: [] / an empty CSV body.
    let a = sb
        .post(&[
            ("token", &admin),
            ("content", "fileRepository"),
            ("action", "list"),
            ("folder_id", "2"),
            ("format", "csv"),
        ])
        .await;
    assert_eq!((a.status, a.body.as_str()), (200, ""));

    // Export: the bytes, REDCap's download headers.
    let d = download(&sb, &admin, &docs[0]).await;
    assert_eq!(d.status, 200);
    assert_eq!(d.bytes, binary);
    assert_eq!(
        d.header("content-type"),
        "application/octet-stream; name=\"A.bin\""
    );
    assert_eq!(d.header("content-security-policy"), "script-src 'none'");
    let d = download(&sb, &admin, &in_id).await;
    assert_eq!(d.bytes, b"inside");
    assert_eq!(
        d.header("content-type"),
        "text/plain; name=\"in.txt\";charset=UTF-8"
    );
    let d = download(&sb, &admin, &docs[2]).await;
    assert_eq!(d.bytes, b"second");
    assert_eq!(
        d.header("content-type"),
        "text/plain; name=\"b (1).txt\";charset=UTF-8"
    );

    // Delete: an empty 200; the file leaves the listing (Recycle Bin) but
    // can still be exported, as in REDCap; its name is free again.
    let a = fr(&sb, &admin, "delete", &[("doc_id", &docs[1])]).await;
    assert_eq!((a.status, a.body.as_str()), (200, ""));
    let names: Vec<Value> = list(&sb, &admin, None)
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].clone())
        .collect();
    assert!(!names.contains(&json!("b.txt")), "{names:?}");
    assert!(names.contains(&json!("b (1).txt")), "{names:?}");
    assert_eq!(download(&sb, &admin, &docs[1]).await.bytes, b"bee");
    assert_eq!(
        upload(&sb, &admin, None, "b.txt", b"third").await.status,
        200
    );
    assert!(doc_id_of(&list(&sb, &admin, None).await, "b.txt") != docs[1]);

    // Logging: Manage/Design rows with REDCap's descriptions.
    let log = sb
        .call(&admin, "log", &[("logtype", "manage")])
        .await
        .json();
    let details: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["details"].as_str().unwrap())
        .collect();
    for d in [
        "Create folder in File Repository (API)",
        "Upload file to File Repository (API)",
        "Export list of files/folders from File Repository (API)",
        "Download file from File Repository (API)",
        "Delete file from File Repository (API)",
    ] {
        assert!(details.contains(&d), "{d} not logged: {details:?}");
    }

    // Everything survives a restart.
    let sb = sb.restart().await;
    assert_eq!(list(&sb, &admin, Some("1")).await, inside);
    assert_eq!(download(&sb, &admin, &docs[0]).await.bytes, binary);
}

#[tokio::test]
async fn rights_follow_redcaps_gate_and_the_file_repository_right() {
    let sb = Sandbox::start().await;
    let admin = project(&sb).await;
    assert_eq!(upload(&sb, &admin, None, "x.txt", b"x").await.status, 200);
    let doc = doc_id_of(&list(&sb, &admin, None).await, "x.txt");

    // API Export and Import but no File Repository right: 403 everywhere.
    let apis = sb
        .user_with_token(
            1,
            json!({"username": "norepo", "api_export": 1, "api_import": 1}),
        )
        .await;
    for (action, extra) in [
        ("list", vec![]),
        ("createFolder", vec![("name", "x")]),
        ("export", vec![("doc_id", doc.as_str())]),
        ("delete", vec![("doc_id", doc.as_str())]),
    ] {
        fr(&sb, &apis, action, &extra)
            .await
            .assert_error(403, &E::NoFileRepositoryRight.message());
    }
    let a = sb
        .post_multipart(
            &[
                ("token", &apis),
                ("content", "fileRepository"),
                ("action", "import"),
                ("returnFormat", "json"),
            ],
            Some(("y.txt", None, b"y".to_vec())),
        )
        .await;
    a.assert_error(403, &E::NoFileRepositoryRight.message());

    // The right but no API rights: list passes REDCap's gate; the others need
    // API Export (export) or API Import (createFolder, import, delete).
    let bare = sb
        .user_with_token(1, json!({"username": "bare", "file_repository": 1}))
        .await;
    assert_eq!(list(&sb, &bare, None).await[0]["name"], "x.txt");
    fr(&sb, &bare, "export", &[("doc_id", &doc)])
        .await
        .assert_error(403, &E::NoApiExport.message());
    for (action, extra) in [
        ("createFolder", vec![("name", "x")]),
        ("delete", vec![("doc_id", doc.as_str())]),
    ] {
        fr(&sb, &bare, action, &extra)
            .await
            .assert_error(403, &E::NoApiImport.message());
    }
    let a = sb
        .post_multipart(
            &[
                ("token", &bare),
                ("content", "fileRepository"),
                ("action", "import"),
                ("returnFormat", "json"),
            ],
            Some(("y.txt", None, b"y".to_vec())),
        )
        .await;
    a.assert_error(403, &E::NoApiImport.message());

    // Unknown actions.
    fr(&sb, &admin, "rename", &[])
        .await
        .assert_error(400, &E::InvalidAction.message());
    fr(&sb, &admin, "", &[])
        .await
        .assert_error(400, &E::InvalidAction.message());
}

#[tokio::test]
async fn dag_and_role_restricted_folders_are_out_of_reach_of_others() {
    let sb = Sandbox::start().await;
    let admin = project(&sb).await;
    let rights = json!({"file_repository": 1, "api_export": 1, "api_import": 1});
    let mut a_row = rights.clone();
    a_row["username"] = json!("alice");
    a_row["data_access_group"] = json!("site_a");
    let alice = sb.user_with_token(1, a_row).await;
    let mut b_row = rights.clone();
    b_row["username"] = json!("bob");
    b_row["data_access_group"] = json!("site_b");
    let bob = sb.user_with_token(1, b_row).await;

    // Two roles with the right, one member each.
    let a = sb
        .import(
            &admin,
            "userRole",
            json!([{"unique_role_name": "", "role_label": "Monitors",
                    "file_repository": 1, "api_export": 1, "api_import": 1},
                   {"unique_role_name": "", "role_label": "Others",
                    "file_repository": 1, "api_export": 1, "api_import": 1}]),
            &[],
        )
        .await;
    assert_eq!(a.body, "2", "{}", a.body);
    let roles = sb.call(&admin, "userRole", &[]).await.json();
    let unique = |label: &str| -> String {
        roles
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["role_label"] == label)
            .unwrap()["unique_role_name"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let mona = sb.user_with_token(1, json!({"username": "mona"})).await;
    let olga = sb.user_with_token(1, json!({"username": "olga"})).await;
    let a = sb
        .import(
            &admin,
            "userRoleMapping",
            json!([{"username": "mona", "unique_role_name": unique("Monitors")},
                   {"username": "olga", "unique_role_name": unique("Others")}]),
            &[],
        )
        .await;
    assert_eq!(a.body, "2", "{}", a.body);

    // Folders: for site_a (DAG id 1), for the role (id 1), for everyone.
    let a = fr(
        &sb,
        &admin,
        "createFolder",
        &[("name", "A only"), ("dag_id", "1")],
    )
    .await;
    assert_eq!(a.json(), json!([{"folder_id": 1}]));
    let a = fr(
        &sb,
        &admin,
        "createFolder",
        &[("name", "Monitors only"), ("role_id", "1")],
    )
    .await;
    assert_eq!(a.json(), json!([{"folder_id": 2}]));
    // An unknown DAG or role id is dropped: an unrestricted folder.
    let a = fr(
        &sb,
        &admin,
        "createFolder",
        &[("name", "Open"), ("dag_id", "99"), ("role_id", "98")],
    )
    .await;
    assert_eq!(a.json(), json!([{"folder_id": 3}]));
    assert_eq!(
        upload(&sb, &admin, Some("1"), "a-secret.txt", b"site a")
            .await
            .status,
        200
    );
    let secret = doc_id_of(&list(&sb, &admin, Some("1")).await, "a-secret.txt");

    let names = |v: Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        names(list(&sb, &admin, None).await),
        ["A only", "Monitors only", "Open"]
    );
    // As in REDCap, a restriction binds only users who are in some DAG (or
    // some role): users in none see DAG- (role-) restricted folders.
    assert_eq!(
        names(list(&sb, &alice, None).await),
        ["A only", "Monitors only", "Open"]
    );
    assert_eq!(
        names(list(&sb, &bob, None).await),
        ["Monitors only", "Open"]
    );
    assert_eq!(names(list(&sb, &olga, None).await), ["A only", "Open"]);
    assert_eq!(
        names(list(&sb, &mona, None).await),
        ["A only", "Monitors only", "Open"]
    );
    assert_eq!(names(list(&sb, &alice, Some("1")).await), ["a-secret.txt"]);

    // Bob does not reach site_a's folder, nor Olga the Monitors' one: list,
    // import, createFolder.
    let inaccessible = |id: &str| {
        E::RepositoryFolderInaccessible {
            folder_id: id.into(),
        }
        .message()
    };
    fr(&sb, &bob, "list", &[("folder_id", "1")])
        .await
        .assert_error(400, &inaccessible("1"));
    fr(&sb, &olga, "list", &[("folder_id", "2")])
        .await
        .assert_error(400, &inaccessible("2"));
    upload(&sb, &olga, Some("2"), "x.txt", b"x")
        .await
        .assert_error(400, &inaccessible("2"));
    assert_eq!(list(&sb, &bob, Some("2")).await, json!([]));
    fr(
        &sb,
        &bob,
        "createFolder",
        &[("name", "x"), ("folder_id", "1")],
    )
    .await
    .assert_error(400, &inaccessible("1"));
    upload(&sb, &bob, Some("1"), "x.txt", b"x")
        .await
        .assert_error(400, &inaccessible("1"));
    // A folder that does not exist answers the same.
    fr(&sb, &alice, "list", &[("folder_id", "77")])
        .await
        .assert_error(400, &inaccessible("77"));
    // Alice works inside her DAG's folder.
    assert_eq!(
        upload(&sb, &alice, Some("1"), "mine.txt", b"m")
            .await
            .status,
        200
    );

    // REDCap checks neither DAG nor role on export and delete by doc id:
    // Bob downloads a file of site_a's folder.
    let d = download(&sb, &bob, &secret).await;
    assert_eq!((d.status, d.bytes.as_slice()), (200, b"site a".as_slice()));

    // Nor whether the doc is the repository's: a File Upload field's file
    // (of a record in site_a) downloads by its doc id.
    let a = sb
        .import(
            &admin,
            "record",
            json!([{"record_id": "1", "redcap_data_access_group": "site_a"}]),
            &[],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = sb
        .post_multipart(
            &[
                ("token", &admin),
                ("content", "file"),
                ("action", "import"),
                ("record", "1"),
                ("field", "consent"),
                ("returnFormat", "json"),
            ],
            Some(("consent.pdf", Some("application/pdf"), b"%PDF".to_vec())),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let record_doc = (secret.parse::<u64>().unwrap() + 2).to_string();
    let d = download(&sb, &bob, &record_doc).await;
    assert_eq!(
        (d.status, d.bytes.as_slice(), d.header("content-type")),
        (
            200,
            b"%PDF".as_slice(),
            "application/pdf; name=\"consent.pdf\""
        )
    );
    // Deleting that doc id answers 200 and leaves the record's file alone.
    assert_eq!(
        fr(&sb, &admin, "delete", &[("doc_id", &record_doc)])
            .await
            .status,
        200
    );
    let d = sb
        .post_bytes(&[
            ("token", &admin),
            ("content", "file"),
            ("action", "export"),
            ("record", "1"),
            ("field", "consent"),
            ("returnFormat", "json"),
        ])
        .await;
    assert_eq!(d.bytes, b"%PDF");
}

/// An action, its parameters and the error it must answer.
type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, E);

#[tokio::test]
async fn errors_answer_redcaps_texts_in_each_format() {
    let sb = Sandbox::start().await;
    let admin = project(&sb).await;
    assert_eq!(
        fr(&sb, &admin, "createFolder", &[("name", "Dup & 'co'")])
            .await
            .status,
        200
    );
    let cases: Vec<Case> = vec![
        ("createFolder", vec![], E::RepositoryFolderNameMissing),
        (
            "createFolder",
            vec![("name", "")],
            E::RepositoryFolderNameMissing,
        ),
        (
            "createFolder",
            vec![("name", "x"), ("folder_id", "abc")],
            E::RepositoryFolderIdInvalid,
        ),
        (
            "createFolder",
            vec![("name", "x"), ("folder_id", "9")],
            E::RepositoryFolderInaccessible {
                folder_id: "9".into(),
            },
        ),
        (
            "createFolder",
            vec![("name", "Dup & 'co'")],
            E::RepositoryFolderExists {
                name: "Dup & 'co'".into(),
            },
        ),
        ("export", vec![], E::RepositoryDocInvalid),
        ("export", vec![("doc_id", "x1")], E::RepositoryDocInvalid),
        ("export", vec![("doc_id", "404")], E::RepositoryDocInvalid),
        ("delete", vec![("doc_id", "404")], E::RepositoryDocInvalid),
        (
            "list",
            vec![("folder_id", "5")],
            E::RepositoryFolderInaccessible {
                folder_id: "5".into(),
            },
        ),
    ];
    for (action, extra, expect) in &cases {
        for rf in ["json", "csv", "xml"] {
            let mut p = vec![
                ("token", admin.as_str()),
                ("content", "fileRepository"),
                ("action", *action),
                ("returnFormat", rf),
            ];
            p.extend_from_slice(extra);
            let a = sb.post(&p).await;
            let want = match rf {
                "json" => format!(
                    "{{\"error\":{}}}",
                    serde_json::to_string(&expect.message())
                        .unwrap()
                        .replace('/', "\\/")
                ),
                "csv" => format!("ERROR: {}", expect.message()),
                _ => format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\" ?><hash><error>{}</error></hash>",
                    expect.message()
                ),
            };
            assert_eq!(
                (a.status, a.body.as_str()),
                (expect.status(), want.as_str()),
                "{action} {extra:?} ({rf})"
            );
        }
    }
    assert_eq!(
        E::RepositoryFolderExists {
            name: "Dup & 'co'".into()
        }
        .message(),
        "ERROR: The folder name \"Dup &amp; &#039;co&#039;\" could not be created because a folder with that same name already exists in this directory. You should create a new folder with a different name instead."
    );
    // Import without a file part, and with a part PHP would report failed.
    let p = [
        ("token", admin.as_str()),
        ("content", "fileRepository"),
        ("action", "import"),
        ("returnFormat", "json"),
    ];
    sb.post_multipart(&p, None)
        .await
        .assert_error(400, &E::NoFileUploaded.message());
    sb.post_multipart(&p, Some(("", None, b"x".to_vec())))
        .await
        .assert_error(400, &E::FileUploadProblem.message());
    // A non-integer folder_id on list or import means the top level.
    assert_eq!(
        fr(&sb, &admin, "list", &[("folder_id", "top")])
            .await
            .status,
        200
    );
    let mut q = p.to_vec();
    q.push(("folder_id", "nope"));
    assert_eq!(
        sb.post_multipart(&q, Some(("t.txt", None, b"t".to_vec())))
            .await
            .status,
        200
    );
    assert_eq!(list(&sb, &admin, None).await[1]["name"], "t.txt");
}

/// Deleted files wait 30 days in the Recycle Bin; then the next File
/// Repository request of the project forgets them and unlinks their bytes.
#[tokio::test]
async fn the_recycle_bin_is_emptied_after_thirty_days() {
    let sb = Sandbox::start().await;
    let admin = project(&sb).await;
    assert_eq!(
        upload(&sb, &admin, None, "old.txt", b"old").await.status,
        200
    );
    assert_eq!(
        upload(&sb, &admin, None, "keep.txt", b"keep").await.status,
        200
    );
    let top = list(&sb, &admin, None).await;
    let (old, keep) = (doc_id_of(&top, "old.txt"), doc_id_of(&top, "keep.txt"));
    assert_eq!(
        fr(&sb, &admin, "delete", &[("doc_id", &old)]).await.status,
        200
    );
    assert_eq!(edocs(&sb), 2);

    // Thirty-one days pass (the deletion date is moved back while stopped).
    let dir = sb.dir.clone();
    let mut sb = sb;
    sb.server.take().unwrap().stop().await.unwrap();
    {
        let conn = rusqlite::Connection::open(dir.join("sandbox.db")).unwrap();
        let n = conn
            .execute(
                "UPDATE redcap_docs SET delete_date = '2000-01-01 00:00:00' WHERE doc_id = ?1",
                [old.parse::<i64>().unwrap()],
            )
            .unwrap();
        assert_eq!(n, 1);
    }
    let sb = Sandbox::start_in(&dir).await;
    assert_eq!(
        download(&sb, &admin, &old).await.bytes,
        b"old",
        "still in the bin"
    );
    assert_eq!(
        list(&sb, &admin, None).await,
        json!([{"doc_id": keep.parse::<u64>().unwrap(), "name": "keep.txt"}])
    );
    fr(&sb, &admin, "export", &[("doc_id", &old)])
        .await
        .assert_error(400, &E::RepositoryDocInvalid.message());
    assert_eq!(edocs(&sb), 1);
    assert_eq!(download(&sb, &admin, &keep).await.bytes, b"keep");
}

/// REDCap's foreign keys: deleting a DAG (or a role) deletes the folders
/// restricted to it; their sub-folders and files land at the top level,
/// in everyone's reach.
#[tokio::test]
async fn deleting_a_dag_or_role_takes_its_folders_and_frees_their_contents() {
    let sb = Sandbox::start().await;
    let admin = project(&sb).await;
    let a = fr(
        &sb,
        &admin,
        "createFolder",
        &[("name", "A only"), ("dag_id", "1")],
    )
    .await;
    assert_eq!(a.json(), json!([{"folder_id": 1}]));
    let a = fr(
        &sb,
        &admin,
        "createFolder",
        &[("name", "A sub"), ("folder_id", "1")],
    )
    .await;
    assert_eq!(a.json(), json!([{"folder_id": 2}]));
    assert_eq!(
        upload(&sb, &admin, Some("1"), "a.txt", b"site a")
            .await
            .status,
        200
    );
    let a = sb
        .import(
            &admin,
            "userRole",
            json!([{"unique_role_name": "", "role_label": "Monitors"}]),
            &[],
        )
        .await;
    assert_eq!(a.body, "1");
    let a = fr(
        &sb,
        &admin,
        "createFolder",
        &[("name", "Monitors only"), ("role_id", "1")],
    )
    .await;
    assert_eq!(a.json(), json!([{"folder_id": 3}]));
    let bob = sb
        .user_with_token(
            1,
            json!({"username": "bob", "file_repository": 1, "data_access_group": "site_b"}),
        )
        .await;
    let names = |v: Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(list(&sb, &bob, None).await), ["Monitors only"]);

    let a = sb
        .call(
            &admin,
            "dag",
            &[("action", "delete"), ("dags[0]", "site_a")],
        )
        .await;
    assert_eq!(a.body, "1", "{}", a.body);
    assert_eq!(
        names(list(&sb, &bob, None).await),
        ["A sub", "Monitors only", "a.txt"]
    );
    fr(&sb, &admin, "list", &[("folder_id", "1")])
        .await
        .assert_error(
            400,
            &E::RepositoryFolderInaccessible {
                folder_id: "1".into(),
            }
            .message(),
        );
    let roles = sb.call(&admin, "userRole", &[]).await.json();
    let role = roles[0]["unique_role_name"].as_str().unwrap().to_owned();
    let a = sb
        .call(
            &admin,
            "userRole",
            &[("action", "delete"), ("roles[0]", &role)],
        )
        .await;
    assert_eq!(a.body, "1", "{}", a.body);
    assert_eq!(names(list(&sb, &admin, None).await), ["A sub", "a.txt"]);
    // Restart: the same.
    let sb = sb.restart().await;
    assert_eq!(names(list(&sb, &bob, None).await), ["A sub", "a.txt"]);
}
