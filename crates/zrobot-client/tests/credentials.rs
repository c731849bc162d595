//! Where the client's credentials go: to the robot they were configured for
//! and nowhere else, and no more of them than a request needs. Real HTTP
//! servers on loopback that record what they receive.

use std::sync::{Arc, Mutex, OnceLock};

use zrobot_client::{Client, ClientError, Credentials, ServiceFilter, MAX_SECRETS_PER_REQUEST};

/// A server on loopback that records each request head and answers it with
/// what `answer` makes of the head.
async fn server(answer: fn(&str) -> String) -> (String, Arc<Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let heads = Arc::new(Mutex::new(Vec::new()));
    let record = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut got = Vec::new();
            let mut buf = vec![0u8; 64 * 1024];
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            let head = String::from_utf8_lossy(&got).into_owned();
            record.lock().unwrap().push(head.clone());
            let _ = s.write_all(answer(&head).as_bytes()).await;
            let _ = s.shutdown().await;
        }
    });
    (url, heads)
}

fn secrets_in(head: &str) -> Vec<String> {
    head.lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("zrobotsecret")
                .then(|| value.trim().trim_start_matches("Bearer").to_owned())
        })
        .map(|v| v.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}

fn json(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Where the redirecting server sends its clients, known once the other
/// server listens.
static TARGET: OnceLock<String> = OnceLock::new();

/// Attack: a robot answers 307 to another host; reqwest follows redirects
/// and strips only `Authorization`, so `ZrobotAdmin`, `ZrobotUser` and
/// `ZrobotSecret` went along. Now the client follows none: the other host
/// gets nothing, and the error names the robot, the `Location` and the fix.
#[tokio::test]
async fn a_redirect_is_not_followed_and_names_the_location() {
    let (elsewhere, stolen) = server(|_| json("[]")).await;
    TARGET
        .set(elsewhere.replace("127.0.0.1", "localhost"))
        .unwrap();
    let (robot, asked) = server(|_| {
        format!(
            "HTTP/1.1 307 Temporary Redirect\r\nlocation: {}/services\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            TARGET.get().unwrap()
        )
    })
    .await;
    let mut credentials = Credentials::secrets(["s1", "s2"]);
    credentials.admin_jwt = Some("admin-token".into());
    credentials.user_jwt = Some("user-token".into());
    let client = Client::new(&robot, credentials).unwrap();
    let e = client
        .services(&ServiceFilter::default())
        .await
        .unwrap_err();
    match &e {
        ClientError::Redirect { code, location, .. } => {
            assert_eq!(*code, 307);
            assert!(location.ends_with("/services"), "{location}");
        }
        other => panic!("expected a redirect error, got {other:?}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains(&robot) && msg.contains(TARGET.get().unwrap()) && msg.contains("final URL"),
        "{msg}"
    );
    assert_eq!(asked.lock().unwrap().len(), 1);
    assert!(
        stolen.lock().unwrap().is_empty(),
        "{:?}",
        stolen.lock().unwrap()
    );
}

fn service(n: u64) -> String {
    format!(
        r#"{{"guid":"00000000-0000-4000-8000-{n:012}","name":"s{n}","template":"t","version":"1.0.0","state":[],"public":false}}"#
    )
}

/// A robot refuses a `ZrobotSecret` header listing more than a few hundred
/// secrets; a client holding more sends its list in batches within
/// [`MAX_SECRETS_PER_REQUEST`] and merges the answers, each service once.
#[tokio::test]
async fn a_long_list_of_secrets_goes_in_batches_the_robot_accepts() {
    // Each secret `N` grants the service whose guid ends in N; one public
    // service is in every answer.
    let (robot, heads) = server(|head| {
        let mut services = vec![service(999_999)];
        for s in secrets_in(head) {
            services.push(service(s.parse().unwrap()));
        }
        json(&format!("[{}]", services.join(",")))
    })
    .await;
    let held: Vec<String> = (0..600).map(|n| n.to_string()).collect();
    let client = Client::new(&robot, Credentials::secrets(held.clone())).unwrap();
    let found = client.services(&ServiceFilter::default()).await.unwrap();
    assert_eq!(found.len(), 601);
    let mut names: Vec<String> = found.iter().map(|s| s.name.clone()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 601);
    let heads = heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 3);
    let mut sent = Vec::new();
    for h in &heads {
        let batch = secrets_in(h);
        assert!(batch.len() <= MAX_SECRETS_PER_REQUEST, "{}", batch.len());
        sent.extend(batch);
    }
    sent.sort();
    let mut want = held;
    want.sort();
    assert_eq!(sent, want);
}
