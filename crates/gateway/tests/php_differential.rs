//! The gateway's reading of request bodies against real PHP.
//!
//! A seeded generator writes hostile bodies — names and values over an
//! alphabet of NUL, control characters, spaces, `.`, `[`, `]`, `+`, `%`,
//! `&`, `;`, `=`, quotes, backslashes and bytes that are not UTF-8, very
//! long and deeply nested names, field counts around `max_input_vars`,
//! and multipart bodies with PHP's every quirk (quoting, junk between
//! parts, missing dispositions, uploads, `MAX_FILE_SIZE`, lines longer
//! than PHP's buffer) — plus every case the gateway is known to have to
//! refuse. For each body:
//!
//! 1. the model ([`redcap::php_form`]) must build exactly the `$_POST` and
//!    `$_FILES` that PHP builds (`php -S` running `tests/php/echo.php`);
//! 2. if the gateway accepts the body ([`gateway::form::check`], and for
//!    multipart [`gateway::upload::read`]), the canonical body it would
//!    forward — with a token added, as on the request path — must make PHP
//!    build exactly the `$_POST` (and file) the gateway decided on.
//!
//! So no body the gateway forwards is read differently by PHP, and the
//! sandbox, which reads bodies with the same model (whole, where the
//! gateway streams), reads them as REDCap would. The run is
//! reproducible: `PHP_DIFFERENTIAL_SEED` (default fixed) and
//! `PHP_DIFFERENTIAL_BODIES` (default 100,000); a failure prints the
//! body's number and bytes. PHP comes from `WARDEN_TEST_PHP` or `php` on
//! the PATH (`scripts/test` installs Debian's `php-cli`); without it the
//! test is skipped, except under CI, where it fails.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gateway::form::{self, PROTECTED};
use redcap::php_form::{BodyKind, Key, Limits, Parsed, PhpArray, Value, multipart, urlencoded};

/// The limits both PHP and the model run with: small, so generated bodies
/// reach them.
const LIMITS: Limits = Limits {
    max_input_vars: 24,
    max_input_nesting_level: 6,
    max_file_uploads: 3,
    max_multipart_body_parts: None,
    upload_max_filesize: 3000,
};

struct Php {
    child: Child,
    port: u16,
}

impl Drop for Php {
    /// `php -S` with workers forks them; killing the server alone leaves
    /// them running, so the whole process group (started for it) goes.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_php() -> Option<Php> {
    let php = std::env::var("WARDEN_TEST_PHP").unwrap_or_else(|_| "php".into());
    if Command::new(&php).arg("-v").output().is_err() {
        assert!(
            std::env::var("CI").is_err(),
            "PHP is not installed ({php}); scripts/test installs Debian's php-cli"
        );
        eprintln!("php_differential: skipped, no PHP ({php})");
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/php/echo.php");
    let child = Command::new(&php)
        .args([
            "-n",
            "-d",
            "display_errors=0",
            "-d",
            "log_errors=0",
            "-d",
            &format!("max_input_vars={}", LIMITS.max_input_vars),
            "-d",
            &format!("max_input_nesting_level={}", LIMITS.max_input_nesting_level),
            "-d",
            &format!("max_file_uploads={}", LIMITS.max_file_uploads),
            "-d",
            &format!("upload_max_filesize={}", LIMITS.upload_max_filesize),
            "-d",
            "post_max_size=64M",
            "-S",
            &format!("127.0.0.1:{port}"),
        ])
        .arg(&script)
        .env("PHP_CLI_SERVER_WORKERS", "4")
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start php -S");
    let php = Php { child, port };
    for _ in 0..200 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(php);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("php -S did not start on port {port}");
}

/// What PHP built: `$_POST` and `$_FILES`.
#[derive(Debug, PartialEq)]
struct Seen {
    post: PhpArray,
    files: PhpArray,
}

fn ask_php(port: u16, content_type: &[u8], body: &[u8]) -> Seen {
    let mut last = None;
    for _ in 0..5 {
        match try_php(port, content_type, body) {
            Ok(seen) => return seen,
            Err(e) => {
                last = Some(e);
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    panic!("PHP did not answer: {last:?}");
}

fn try_php(port: u16, content_type: &[u8], body: &[u8]) -> std::io::Result<Seen> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = Vec::with_capacity(body.len() + 200);
    req.extend_from_slice(b"POST / HTTP/1.0\r\nHost: 127.0.0.1\r\n");
    if !content_type.is_empty() {
        req.extend_from_slice(b"Content-Type: ");
        req.extend_from_slice(content_type);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    req.extend_from_slice(body);
    s.write_all(&req)?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer)?;
    let at = memchr::memmem::find(&answer, b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no header end"))?;
    let json: serde_json::Value = serde_json::from_slice(&answer[at + 4..])
        .map_err(|e| std::io::Error::other(format!("{e}: {}", String::from_utf8_lossy(&answer))))?;
    Ok(Seen {
        post: decode_array(&json["post"]),
        files: decode_array(&json["files"]),
    })
}

fn decode_array(v: &serde_json::Value) -> PhpArray {
    let mut a = PhpArray::new();
    for item in v["a"].as_array().expect("an array") {
        let key = match item[0].as_str().unwrap() {
            "i" => Key::Int(item[1].as_str().unwrap().parse().unwrap()),
            _ => Key::Str(hex::decode(item[1].as_str().unwrap()).unwrap()),
        };
        a.update(key, decode_value(&item[2]));
    }
    a
}

fn decode_value(v: &serde_json::Value) -> Value {
    if let Some(s) = v.get("s") {
        Value::Str(hex::decode(s.as_str().unwrap()).unwrap())
    } else if let Some(i) = v.get("i") {
        Value::Int(i.as_str().unwrap().parse().unwrap())
    } else {
        Value::Array(decode_array(v))
    }
}

/// splitmix64: each body has its own stream, so body N can be replayed
/// alone.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const HOSTILE: &[u8] = b"\0\x01\t\n\r .[]+%&;=\"'\\-_/:\x7f\x80\xff\xc3\xa9aAbz09";

fn hostile_bytes(rng: &mut Rng, max: usize) -> Vec<u8> {
    let n = rng.below(max + 1);
    (0..n)
        .map(|_| {
            if rng.chance(30) {
                (rng.next() & 0xff) as u8
            } else {
                *rng.pick(HOSTILE)
            }
        })
        .collect()
}

fn key_text(rng: &mut Rng) -> Vec<u8> {
    match rng.below(12) {
        0 => Vec::new(),
        1 => b" ".to_vec(),
        2 => b"  ".to_vec(),
        3 => rng
            .pick(&[
                "0",
                "1",
                "5",
                "17",
                "05",
                "-1",
                "-0",
                "+3",
                "9223372036854775807",
                "9223372036854775808",
                "123456789",
            ])
            .as_bytes()
            .to_vec(),
        4 => b" 0".to_vec(),
        5 => b"\t1".to_vec(),
        6 => b"a[b".to_vec(),
        7 => b"x.y z".to_vec(),
        _ => hostile_bytes(rng, 5)
            .into_iter()
            .filter(|&c| c != b']')
            .collect(),
    }
}

/// A name that tries to be, or to land on, a parameter the gateway
/// protects.
fn gen_name(rng: &mut Rng) -> Vec<u8> {
    let mut base: Vec<u8> = match rng.below(10) {
        0..=3 => PROTECTED[rng.below(PROTECTED.len())].0.as_bytes().to_vec(),
        4 => rng
            .pick(&["a", "b", "c", "x", "file", "MAX_FILE_SIZE", "max.file size"])
            .as_bytes()
            .to_vec(),
        5 => rng.pick(&["0", "7", "-1", "05"]).as_bytes().to_vec(),
        6 => Vec::new(),
        _ => hostile_bytes(rng, 8),
    };
    if rng.chance(15) {
        let spaces = 1 + rng.below(3);
        base.splice(0..0, std::iter::repeat_n(b' ', spaces));
    }
    if rng.chance(25) && !base.is_empty() {
        let at = rng.below(base.len() + 1);
        base.insert(at, *rng.pick(b"\0. []+\x01\xff"));
    }
    if rng.chance(50) {
        let groups = if rng.chance(5) {
            LIMITS.max_input_nesting_level - 1 + rng.below(3)
        } else {
            1 + rng.below(3)
        };
        for g in 0..groups {
            base.push(b'[');
            base.extend(key_text(rng));
            let last = g + 1 == groups;
            if !(last && rng.chance(10)) {
                base.push(b']');
            }
            if last && rng.chance(10) {
                base.extend(hostile_bytes(rng, 3));
            }
        }
    }
    if rng.chance(2) {
        base.extend(std::iter::repeat_n(b'n', 5000 + rng.below(500)));
    }
    base
}

fn gen_value(rng: &mut Rng) -> Vec<u8> {
    match rng.below(8) {
        0 => Vec::new(),
        1 => rng
            .pick(&[
                "record", "export", "import", "json", "csv", "user", "delete", "1",
            ])
            .as_bytes()
            .to_vec(),
        _ => hostile_bytes(rng, 12),
    }
}

/// urlencodes bytes the way clients (and attackers) do: some escaped, some
/// raw, some escapes broken.
fn url_piece(rng: &mut Rng, bytes: &[u8], out: &mut Vec<u8>) {
    for &b in bytes {
        if b.is_ascii_alphanumeric() && !rng.chance(3) {
            out.push(b);
            continue;
        }
        match rng.below(10) {
            0..=5 => out.extend(format!("%{b:02X}").as_bytes()),
            6 => out.extend(format!("%{b:02x}").as_bytes()),
            7 => {
                out.push(b'%');
                out.push(*rng.pick(b"zG%"));
            }
            8 if b == b' ' => out.push(b'+'),
            _ => out.push(b),
        }
    }
}

const SEPARATORS: &[&[u8]] = &[b"&", b"&", b"&", b"&", b"&&", b";"];

fn gen_urlencoded(rng: &mut Rng) -> Vec<u8> {
    let fields = if rng.chance(8) {
        LIMITS.max_input_vars - 2 + rng.below(5)
    } else {
        rng.below(8)
    };
    let mut body = Vec::new();
    for i in 0..fields {
        if i > 0 {
            let sep = rng.pick(SEPARATORS);
            body.extend_from_slice(sep);
        }
        let name = gen_name(rng);
        url_piece(rng, &name, &mut body);
        if !rng.chance(8) {
            body.push(b'=');
            let value = gen_value(rng);
            url_piece(rng, &value, &mut body);
        }
    }
    if rng.chance(5) {
        body.push(b'&');
    }
    body
}

/// A `name="…"` parameter in one of PHP's quoting styles.
fn cd_param(rng: &mut Rng, key: &str, value: &[u8], out: &mut Vec<u8>) {
    out.extend(key.as_bytes());
    out.push(b'=');
    match rng.below(6) {
        0 => out.extend(value),
        1 => {
            out.push(b'\'');
            out.extend(value);
            out.push(b'\'');
        }
        _ => {
            out.push(b'"');
            for &c in value {
                if (c == b'"' || c == b'\\') && !rng.chance(10) {
                    out.push(b'\\');
                }
                out.push(c);
            }
            out.push(b'"');
        }
    }
}

fn gen_multipart(rng: &mut Rng) -> (Vec<u8>, Vec<u8>) {
    let boundary: Vec<u8> = rng
        .pick(&[
            &b"B"[..],
            b"----xyz",
            b"a b",
            b"x;y",
            b"WardenBoundary",
            b"==",
        ])
        .to_vec();
    let ct: Vec<u8> = match rng.below(6) {
        0 => [&b"multipart/form-data; boundary=\""[..], &boundary, b"\""].concat(),
        1 => [
            &b"Multipart/Form-Data; BOUNDARY=\""[..],
            &boundary,
            b"\"; charset=x",
        ]
        .concat(),
        2 => [
            &b"multipart/form-data; xboundary=\""[..],
            &boundary,
            b"\"; boundary=nope",
        ]
        .concat(),
        _ if !boundary.contains(&b';') => {
            [&b"multipart/form-data; boundary="[..], &boundary].concat()
        }
        _ => [&b"multipart/form-data; boundary=\""[..], &boundary, b"\""].concat(),
    };
    let dash = [&b"--"[..], &boundary].concat();
    let eol = |rng: &mut Rng| -> &'static [u8] { if rng.chance(90) { b"\r\n" } else { b"\n" } };
    let mut body = Vec::new();
    if rng.chance(8) {
        body.extend(hostile_bytes(rng, 10));
        body.extend(b"\r\n");
    }
    let parts = if rng.chance(5) {
        LIMITS.max_input_vars - 1 + rng.below(4)
    } else {
        rng.below(6)
    };
    for _ in 0..parts {
        body.extend(&dash);
        if rng.chance(3) {
            body.extend(hostile_bytes(rng, 3));
        }
        body.extend(eol(rng));
        if !rng.chance(4) {
            body.extend(*rng.pick(&[
                &b"Content-Disposition"[..],
                b"Content-Disposition",
                b"content-disposition",
                b"CONTENT-DISPOSITION",
                b"Content-Disposition ",
            ]));
            body.extend(*rng.pick(&[&b": "[..], b":", b":  "]));
            body.extend(*rng.pick(&[&b"form-data"[..], b"form-data", b"attachment", b""]));
            let upload = rng.chance(25);
            if !rng.chance(5) {
                body.extend(b"; ");
                let name_key = *rng.pick(&["name", "name", "NAME", "name ", "filename"]);
                let name = gen_name(rng);
                cd_param(rng, name_key, &name, &mut body);
                if rng.chance(5) {
                    body.extend(b"; ");
                    let name = gen_name(rng);
                    cd_param(rng, "name", &name, &mut body);
                }
            }
            if upload {
                body.extend(b"; ");
                let filename: Vec<u8> = match rng.below(5) {
                    0 => Vec::new(),
                    1 => b"dir/sub\\a.txt".to_vec(),
                    _ => hostile_bytes(rng, 6),
                };
                cd_param(rng, "filename", &filename, &mut body);
            }
            if rng.chance(4) {
                body.extend(b"\r\n continued");
            }
            body.extend(eol(rng));
            if upload || rng.chance(5) {
                body.extend(*rng.pick(&[
                    &b"Content-Type: text/plain"[..],
                    b"Content-Type: application/pdf; name=x",
                    b"content-type:image/png",
                ]));
                body.extend(eol(rng));
            }
        } else if rng.chance(50) {
            body.extend(b"X-Other: 1");
            body.extend(eol(rng));
        }
        body.extend(eol(rng));
        let value = if rng.chance(10) {
            let mut v = hostile_bytes(rng, 8);
            v.extend(*rng.pick(&[&b"\r\n--"[..], b"\n--", b"--"]));
            v.extend(&boundary);
            v.extend(hostile_bytes(rng, 8));
            v
        } else if rng.chance(4) {
            vec![b'x'; 2500 + rng.below(5000)]
        } else {
            gen_value(rng)
        };
        body.extend(value);
        if !rng.chance(5) {
            body.extend(eol(rng));
        }
    }
    if !rng.chance(10) {
        body.extend(&dash);
        body.extend(b"--");
        body.extend(eol(rng));
    }
    if rng.chance(5) {
        body.extend(hostile_bytes(rng, 10));
    }
    (ct, body)
}

/// A multipart body as a client library writes one (CRLF, quoted names,
/// one file at most), with hostile names and values: most of these pass the
/// gateway, so the forwarded body's round trip is exercised.
fn gen_clean_multipart(rng: &mut Rng) -> (Vec<u8>, Vec<u8>) {
    let ct = b"multipart/form-data; boundary=Clean0Boundary".to_vec();
    let mut body = Vec::new();
    let fields = rng.below(6);
    let file_at = rng.chance(70).then(|| rng.below(fields + 1));
    for i in 0..=fields {
        if file_at == Some(i) {
            body.extend(
                b"--Clean0Boundary\r\nContent-Disposition: form-data; name=\"file\"; filename=",
            );
            let mut filename = hostile_bytes(rng, 10);
            filename.retain(|&c| c != b'\n' && c != 0);
            body.extend(redcap::php_form::canonical::quote_multipart(&filename));
            if rng.chance(70) {
                body.extend(*rng.pick(&[
                    &b"\r\nContent-Type: text/plain"[..],
                    b"\r\nContent-Type: application/pdf; x=y",
                ]));
            }
            body.extend(b"\r\n\r\n");
            let size = if rng.chance(10) {
                2900 + rng.below(200)
            } else {
                rng.below(400)
            };
            body.extend((0..size).map(|_| (rng.next() & 0xff) as u8));
            body.extend(b"\r\n");
        }
        if i == fields {
            break;
        }
        let mut name = gen_name(rng);
        name.retain(|&c| c != b'\n' && c != 0);
        body.extend(b"--Clean0Boundary\r\nContent-Disposition: form-data; name=");
        body.extend(redcap::php_form::canonical::quote_multipart(&name));
        body.extend(b"\r\n\r\n");
        body.extend(gen_value(rng));
        body.extend(b"\r\n");
    }
    body.extend(b"--Clean0Boundary--\r\n");
    (ct, body)
}

/// Bodies every run includes: the reported smuggling, and what the gateway
/// refused before.
fn known_cases() -> Vec<(Vec<u8>, Vec<u8>)> {
    let form = b"application/x-www-form-urlencoded".to_vec();
    let mut cases: Vec<(Vec<u8>, Vec<u8>)> = [
        &b"content=version&content%00=user"[..],
        b"content=record&action=export&format=json&action%00=delete&records%5B0%5D=1",
        b"content=record&%20content=user",
        b"content=record&+content=user",
        b"content[]=record",
        b"content%5B%5D=record",
        b"content=record&content=user",
        b"mobile.app=1&content=version",
        b"mobile app=1&content=version",
        b"content=version&playground=1&mobile_app=1",
        b"token=K&content=record&format=json&records%5B0%5D=1&records%5B1%5D=2&fields=a%2Cb&type=flat",
        b"content=record&records%00[0]=2",
        b"content=record&records[0]x=2",
        b"content=record&records[-1]=2&records[]=3",
    ]
    .iter()
    .map(|b| (form.clone(), b.to_vec()))
    .collect();
    let ct = b"multipart/form-data; boundary=B".to_vec();
    for body in [
        &b"--B\r\nContent-Disposition: form-data; name=\"content\"\r\n\r\nversion\r\n--B\r\nContent-Disposition: form-data; name=\"content\\0\"\r\n\r\nuser\r\n--B--\r\n"[..],
        b"--B\r\nContent-Disposition: form-data; name=\"content\"\r\n\r\nfile\r\n--B\r\nContent-Disposition: form-data; name=\"action\"\r\n\r\nimport\r\n--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\nhello\r\n--B--\r\n",
        b"--B\r\nContent-Disposition: form-data; name=\"content\"\r\n\r\n--B\r\nContent-Disposition: form-data; name=\"content\"\r\n\r\nuser\r\n--B--\r\n",
    ] {
        cases.push((ct.clone(), body.to_vec()));
    }
    cases
}

fn escape(b: &[u8]) -> String {
    b.iter()
        .flat_map(|&c| std::ascii::escape_default(c))
        .map(char::from)
        .collect()
}

/// What the model makes of a body, and what the gateway would forward.
struct Verdict {
    parsed: Parsed,
    /// `None` if the gateway refuses the body.
    forwarded: Option<Forwarded>,
}

/// The body the gateway would send, and what it decided on.
struct Forwarded {
    content_type: Vec<u8>,
    body: Vec<u8>,
    post: PhpArray,
    /// The upload: part name, file name, size.
    file: Option<(Vec<u8>, Vec<u8>, i64)>,
}

fn urlencoded_forward(f: &form::Form) -> Forwarded {
    Forwarded {
        content_type: b"application/x-www-form-urlencoded".to_vec(),
        body: f.encode().into_bytes(),
        post: f.post().clone(),
        file: None,
    }
}

fn model(rt: &tokio::runtime::Runtime, spool: &Path, ct: &[u8], body: &[u8]) -> Verdict {
    match BodyKind::of(ct) {
        BodyKind::Urlencoded => {
            let parsed = urlencoded::parse(body, &LIMITS);
            let forwarded = form::check(parsed.clone(), &LIMITS).ok().and_then(|mut f| {
                f.take("token");
                f.set("token", "0123456789ABCDEF0123456789ABCDEF");
                (f.field_count() <= LIMITS.max_input_vars).then(|| urlencoded_forward(&f))
            });
            Verdict { parsed, forwarded }
        }
        BodyKind::Multipart => {
            let Ok(boundary) = multipart::boundary(ct) else {
                return Verdict {
                    parsed: Parsed::default(),
                    forwarded: None,
                };
            };
            let mut parser = multipart::Parser::new(&boundary, &LIMITS);
            let mut events = Vec::new();
            // Odd chunk sizes: the parser must not care.
            for chunk in body.chunks(977) {
                parser.feed(chunk, &mut events);
            }
            let parsed = parser.finish(&mut events);
            // What the sandbox reads: the same model, in one piece.
            let (whole, _) = redcap::php_form::parse_buffered(ct, body, &LIMITS).unwrap();
            assert_eq!(whole, parsed, "chunked and whole reads differ");
            let forwarded = rt.block_on(async {
                let (mut f, upload) = gateway::upload::read(
                    axum::body::Body::from(body.to_vec()),
                    ct,
                    spool,
                    &LIMITS,
                    u64::MAX,
                )
                .await
                .ok()?;
                f.take("token");
                f.set("token", "0123456789ABCDEF0123456789ABCDEF");
                if f.field_count() + usize::from(upload.is_some()) > LIMITS.max_input_vars {
                    return None;
                }
                match upload {
                    None => Some(urlencoded_forward(&f)),
                    Some(u) => {
                        let (ct, _len, out) = gateway::upload::outgoing(&f, &u).await.ok()?;
                        use http_body_util::BodyExt;
                        let bytes = out.collect().await.ok()?.to_bytes().to_vec();
                        Some(Forwarded {
                            content_type: ct.into_bytes(),
                            body: bytes,
                            post: f.post().clone(),
                            file: Some((
                                u.field.as_bytes().to_vec(),
                                u.filename.clone(),
                                u.size as i64,
                            )),
                        })
                    }
                }
            });
            Verdict { parsed, forwarded }
        }
        BodyKind::Other => Verdict {
            parsed: Parsed::default(),
            forwarded: None,
        },
    }
}

#[test]
fn the_gateway_reads_every_body_as_php_does() {
    let Some(php) = start_php() else { return };
    let seed: u64 = std::env::var("PHP_DIFFERENTIAL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_261_204);
    let count: usize = std::env::var("PHP_DIFFERENTIAL_BODIES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let known = known_cases();
    let total = known.len() + count;
    let next = AtomicUsize::new(0);
    let accepted = AtomicUsize::new(0);
    let reached = [(); 4].map(|_| AtomicUsize::new(0));
    let spool = tempfile::tempdir().unwrap();
    eprintln!("php_differential: seed {seed}, {total} bodies");
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return;
                    }
                    let (ct, body) = if i < known.len() {
                        known[i].clone()
                    } else {
                        let mut rng = Rng(seed ^ (i as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
                        match rng.below(10) {
                            0..=4 => (b"application/x-www-form-urlencoded".to_vec(), gen_urlencoded(&mut rng)),
                            5..=7 => gen_multipart(&mut rng),
                            _ => gen_clean_multipart(&mut rng),
                        }
                    };
                    let what = || {
                        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("php-differential");
                        let _ = std::fs::create_dir_all(&dir);
                        let _ = std::fs::write(dir.join(format!("{i}.body")), &body);
                        let _ = std::fs::write(dir.join(format!("{i}.content-type")), &ct);
                        format!(
                            "body #{i} (seed {seed}; saved in {})\n  Content-Type: {}\n  body: \"{}\"",
                            dir.display(),
                            escape(&ct),
                            escape(&body)
                        )
                    };
                    let verdict = model(&rt, spool.path(), &ct, &body);
                    let seen = ask_php(php.port, &ct, &body);
                    assert_eq!(verdict.parsed.post, seen.post, "$_POST differs for {}", what());
                    assert_eq!(verdict.parsed.files, seen.files, "$_FILES differs for {}", what());
                    if verdict.parsed.vars > LIMITS.max_input_vars {
                        reached[0].fetch_add(1, Ordering::Relaxed);
                    }
                    if !verdict.parsed.notes.is_empty() {
                        reached[1].fetch_add(1, Ordering::Relaxed);
                    }
                    if !verdict.parsed.files.is_empty() {
                        reached[2].fetch_add(1, Ordering::Relaxed);
                    }
                    let Some(fwd) = verdict.forwarded else {
                        continue;
                    };
                    accepted.fetch_add(1, Ordering::Relaxed);
                    let again = ask_php(php.port, &fwd.content_type, &fwd.body);
                    assert_eq!(
                        again.post,
                        fwd.post,
                        "the forwarded body is read differently for {}\n  forwarded: \"{}\"",
                        what(),
                        escape(&fwd.body)
                    );
                    if let Some((field, filename, size)) = fwd.file {
                        reached[3].fetch_add(1, Ordering::Relaxed);
                        let entry = again.files.get(&Key::from_bytes(&field)).and_then(Value::as_array);
                        let get = |k: &str| entry.and_then(|e| e.get_name(k)).cloned();
                        assert_eq!(get("full_path"), Some(Value::Str(filename)), "{}", what());
                        assert_eq!(get("error"), Some(Value::Int(0)), "{}", what());
                        assert_eq!(get("size"), Some(Value::Int(size)), "{}", what());
                    }
                }
            });
        }
    });
    let [limit, noted, uploads, forwarded_files] = reached.map(|r| r.into_inner());
    let accepted = accepted.into_inner();
    eprintln!(
        "php_differential: {total} bodies agree with PHP; {accepted} accepted and read back identically ({forwarded_files} with a file); {limit} over max_input_vars, {noted} multipart surprises, {uploads} with $_FILES"
    );
    // The generator must reach what it is for.
    assert!(accepted > total / 20, "too few accepted bodies: {accepted}");
    assert!(limit > 0 && noted > 0 && uploads > 0 && forwarded_files > 0);
}
